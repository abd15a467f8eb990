//! The IMAP calls from the other two clients, against a real Dovecot and the real daemon:
//! the C ABI (`cabi_imap.c`, built with `cc` against `inquery.h` and libinquery) and
//! `inquerytest imap`. Both log in, run commands, log out, log in again on the parked
//! connection and check passwords; neither lets a password reach a log or an output.

use crate::harness::{bin, build_dir, entries, root, Daemon, TempDir, TestDb};
use crate::imap::Dovecot;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// `cabi_imap.c`, built against the header and the shared library.
fn build_c() -> (PathBuf, TempDir) {
    let dir = TempDir::new("cabi-imap");
    let exe = dir.join("cabi_imap");
    let lib = build_dir();
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
        .arg(&exe)
        .arg(format!("-I{}", root().join("inquery/include").display()))
        .arg(root().join("tests/e2e/cabi_imap.c"))
        .arg(format!("-L{}", lib.display()))
        .arg("-linquery")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .output()
        .expect("run cc");
    assert!(out.status.success(), "cc:\n{}", String::from_utf8_lossy(&out.stderr));
    (exe, dir)
}

/// A control directory whose timeoutread leaves room for IMAP (a refused login takes 2 s).
fn patient_control() -> TempDir {
    let control = TempDir::new("imap-ctl");
    std::fs::write(control.join("timeoutread"), "20\n").expect("write timeoutread");
    control
}

/// Runs the C program with the variables a mail program would have, the password in
/// CABI_PASSWORD.
fn run_c(exe: &PathBuf, d: &Daemon, control: &TempDir, password: &str, args: &[&str]) -> String {
    let out = Command::new(exe)
        .env_clear()
        .env("INFIFO", &d.fifos[0])
        .env("FIFOTMPDIR", &d.tmp)
        .env("CONTROLDIR", &control.path)
        .env("CABI_PASSWORD", password)
        .args(args)
        .output()
        .expect("run cabi_imap");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "cabi_imap {args:?}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `inquerytest -i FIFO ARGS` with `stdin` on its standard input.
fn inquerytest(d: &Daemon, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(bin("inquerytest"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FIFOTMPDIR", &d.tmp)
        .env("CONTROLDIR", &d.control)
        .arg("-i")
        .arg(&d.fifos[0])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run inquerytest");
    // A program that exits before reading all of it is no error here.
    let _ = child.stdin.take().expect("stdin").write_all(stdin.as_bytes());
    child.wait_with_output().expect("wait for inquerytest")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Exit code `code`, stdout returned; on a mismatch both outputs are shown.
fn expect(o: &Output, code: i32) -> String {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Exactly one line on stderr, `inquerytest: ...`.
fn one_error_line(o: &Output) -> String {
    let e = text(&o.stderr);
    assert_eq!(e.lines().count(), 1, "want one line: {e:?}");
    assert!(e.starts_with("inquerytest: ") && !e.contains("panicked"), "{e}");
    e
}

fn assert_never_logged(d: &Daemon, secrets: &[&str]) {
    let log = d.log_text();
    assert!(log.contains("debug: "), "the daemon ran with debug lines:\n{log}");
    for s in secrets {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(s)).collect();
        assert!(lines.is_empty(), "{s} logged: {lines:?}");
    }
}

#[test]
fn a_c_program_logs_in_runs_commands_logs_out_and_is_reused() {
    let dv = Dovecot::start();
    dv.adduser("frank", "Pw-walrus-19");
    let db = TestDb::new();
    let d = Daemon::start(&db, dv.opts());
    let (exe, _dir) = build_c();
    let control = patient_control();

    let out =
        run_c(&exe, &d, &control, "Pw-walrus-19", &["session", "frank", "Key-lynx-4", "192.0.2.7"]);
    assert_eq!(
        out,
        "login: 0 reused=0\n\
         a1: OK outlen=strlen last=\"a1 OK\" found\n\
         a2: OK outlen=strlen last=\"a2 OK\" found\n\
         a3: NO outlen=strlen last=\"a3 NO\"\n\
         a4: -1 errno=EPERM code=2\n\
         a5: -1 errno=EINVAL code=1\n\
         small buffer: -1 errno=ERANGE kept=\"* CAPAB\" outlen>8=1\n\
         logout: 0 parked=1\n\
         a8: -1 errno=ENOENT code=3\n\
         login again: 0 reused=1\n\
         a9: OK outlen=strlen last=\"a9 OK\"\n\
         logout: 0\n\
         logout again: -1 errno=ENOENT code=3\n\
         auth: 1\n"
    );
    // The second login and the auth check reused the first's connection.
    dv.wait_logins("frank", 1);

    // Four threads, each its own session: every login after a thread's first is reused.
    let out = run_c(&exe, &d, &control, "Pw-walrus-19", &["threads", "4", "3", "frank"]);
    assert_eq!(out, "threads=4 rounds=3 reused=8 failures=0\n");
    dv.wait_logins("frank", 5);

    // Last (Dovecot then slows logins from this address): a wrong password.
    let out = run_c(&exe, &d, &control, "Wrong-heron-23", &["wrong", "frank"]);
    assert_eq!(
        out,
        "auth: 0\nlogin: -1 errno=EACCES code=6 reused=-1\nerror says authentication: 1\n"
    );
    assert!(entries(&d.tmp).is_empty(), "no reply FIFO left");
    assert_never_logged(&d, &["Pw-walrus-19", "Wrong-heron-23", "Key-lynx-4"]);
}

#[test]
fn inquerytest_imap_reads_the_password_from_stdin_or_a_file_and_never_shows_it() {
    let dv = Dovecot::start();
    let (pw, wrong, key) = ("Pw-narwhal-53", "Wrong-ibex-08", "Key-tapir-61");
    dv.adduser("erin", pw);
    let db = TestDb::new();
    let d = Daemon::start(&db, dv.opts());
    let stdin = format!("{pw}\n");
    let mut outputs = Vec::new();

    let o = inquerytest(&d, &["imap", "login", "erin", key, "--ip", "192.0.2.9"], &stdin);
    let s = expect(&o, 0);
    assert!(
        s.starts_with("erin: logged in, on a new IMAP connection\ncapabilities: IMAP4REV1 "),
        "{s}"
    );
    outputs.push(o);

    let o = inquerytest(&d, &["imap", "cmd", key, "a1 SELECT INBOX"], "");
    let s = expect(&o, 0);
    assert!(s.contains(" EXISTS\r\n"), "the server's bytes, CRLFs kept: {s:?}");
    assert!(s.lines().last().unwrap().starts_with("a1 OK [READ-WRITE]"), "{s}");
    outputs.push(o);

    let o = inquerytest(&d, &["imap", "cmd", key, "a2 SELECT NoSuchBox"], "");
    assert!(expect(&o, 1).lines().last().unwrap().starts_with("a2 NO "), "a NO is exit 1");
    outputs.push(o);

    let o = inquerytest(&d, &["--json", "imap", "cmd", key, "a3 NOOP"], "");
    let v: serde_json::Value = serde_json::from_str(&expect(&o, 0)).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["tag"].as_str(), v["status"].as_str()),
        (Some(true), Some("a3"), Some("OK"))
    );
    assert!(v["response"].as_str().unwrap().starts_with("a3 OK"), "{v}");
    outputs.push(o);

    let o = inquerytest(&d, &["imap", "cmd", key, "a4 LOGOUT"], "");
    expect(&o, 1);
    assert!(one_error_line(&o).starts_with("inquerytest: imap cmd a4 LOGOUT: refused: "));
    outputs.push(o);

    let o = inquerytest(&d, &["imap", "logout", key], "");
    assert_eq!(expect(&o, 0), "logged out; the connection is parked for the same login\n");
    outputs.push(o);

    // The same login again, the password from a file: the parked connection.
    let file = TempDir::new("imap-pw");
    std::fs::write(file.join("pw"), &stdin).unwrap();
    let pwfile = file.join("pw").to_string_lossy().into_owned();
    let args =
        ["--json", "imap", "login", "erin", key, "--ip", "192.0.2.9", "--password-file", &pwfile];
    let o = inquerytest(&d, &args, "");
    let v: serde_json::Value = serde_json::from_str(&expect(&o, 0)).unwrap();
    assert_eq!((v["ok"].as_bool(), v["reused"].as_bool()), (Some(true), Some(true)), "{v}");
    outputs.push(o);
    let o = inquerytest(&d, &["--json", "imap", "logout", key], "");
    assert_eq!(expect(&o, 0), "{\"ok\":true,\"parked\":true}\n");
    outputs.push(o);

    // Failures: one clear line, exit 1; with --json the daemon's failure reply too.
    let o = inquerytest(&d, &["--json", "imap", "logout", key], "");
    let v: serde_json::Value = serde_json::from_str(&expect(&o, 1)).unwrap();
    assert_eq!(v["error"]["code"], "no_session", "{v}");
    assert!(one_error_line(&o).starts_with("inquerytest: imap logout: no_session: "));
    outputs.push(o);

    let o = inquerytest(&d, &["imap", "auth", "erin"], &stdin);
    assert_eq!(expect(&o, 0), "erin: valid password (from inlookup's auth cache)\n");
    outputs.push(o);

    let o = inquerytest(&d, &["imap", "login", "erin", "other-key", pw], "");
    expect(&o, 100);
    assert!(one_error_line(&o).contains("not taken from the command line"), "{o:?}");
    outputs.push(o);
    let o = inquerytest(&d, &["imap", "login", "erin", "other-key"], "");
    expect(&o, 100);
    assert!(one_error_line(&o).contains("no password"));

    // Last (Dovecot then slows logins from this address): a wrong password.
    let wrong_stdin = format!("{wrong}\n");
    let o = inquerytest(&d, &["imap", "login", "erin", "other-key"], &wrong_stdin);
    assert_eq!(expect(&o, 1), "");
    assert_eq!(
        one_error_line(&o),
        "inquerytest: imap login erin: auth_failed: [AUTHENTICATIONFAILED] Authentication failed.\n"
    );
    outputs.push(o);
    let o = inquerytest(&d, &["--json", "imap", "auth", "erin"], &wrong_stdin);
    let v: serde_json::Value = serde_json::from_str(&expect(&o, 1)).unwrap();
    assert_eq!((v["ok"].as_bool(), v["valid"].as_bool()), (Some(true), Some(false)), "{v}");
    assert!(one_error_line(&o).contains("erin: invalid user or password"));
    outputs.push(o);

    dv.wait_logins("erin", 1); // one IMAP login for all of ours
    for o in &outputs {
        for secret in [pw, wrong] {
            let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
            assert!(!all.contains(secret), "{secret} printed: {all}");
        }
    }
    assert_never_logged(&d, &[pw, wrong, key]);
}
