//! The C ABI end to end: `cabi.c`, built with `cc` against `inquery/include/inquery.h` and
//! libinquery through the pkg-config file made from `inquery/inquery.pc.in`, asks the real
//! daemon every kind, through `inquery()` and `inquery_r()`, from one thread and several.

use crate::harness::{build_dir, root, Daemon, Opts, TempDir, TestDb};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A C program built against an installed-looking libinquery.
pub(crate) struct CProgram {
    exe: PathBuf,
    _dir: TempDir,
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Lays out PREFIX/include/inquery.h, PREFIX/lib/libinquery.{so|a} and
/// PREFIX/lib/pkgconfig/inquery.pc (the template filled as its header says), then builds
/// `cabi.c` with the flags pkg-config gives.
pub(crate) fn build(static_link: bool) -> CProgram {
    let dir = TempDir::new("cabi");
    let (prefix, lib) = (dir.join("prefix"), dir.join("prefix/lib"));
    std::fs::create_dir_all(prefix.join("include")).expect("mkdir include");
    std::fs::create_dir_all(lib.join("pkgconfig")).expect("mkdir pkgconfig");
    std::fs::copy(root().join("inquery/include/inquery.h"), prefix.join("include/inquery.h"))
        .expect("copy inquery.h");
    let name = if static_link { "libinquery.a" } else { "libinquery.so" };
    std::os::unix::fs::symlink(build_dir().join(name), lib.join(name)).expect("symlink libinquery");
    let template =
        std::fs::read_to_string(root().join("inquery/inquery.pc.in")).expect("read inquery.pc.in");
    let pc: String = template
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            l.replace("@PREFIX@", &prefix.to_string_lossy())
                .replace("@LIBDIR@", &lib.to_string_lossy())
                .replace("@VERSION@", env!("CARGO_PKG_VERSION"))
                + "\n"
        })
        .collect();
    std::fs::write(lib.join("pkgconfig/inquery.pc"), pc).expect("write inquery.pc");

    let flags: Vec<String> = if have("pkg-config") {
        let mut pk = Command::new("pkg-config");
        pk.env("PKG_CONFIG_PATH", lib.join("pkgconfig")).args(["--cflags", "--libs"]);
        if static_link {
            pk.arg("--static");
        }
        let out = pk.arg("inquery").output().expect("run pkg-config");
        assert!(out.status.success(), "pkg-config: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout)
            .expect("pkg-config output")
            .split_whitespace()
            .map(str::to_string)
            .collect()
    } else {
        eprintln!("no pkg-config here: using the flags inquery.pc.in names");
        let mut f = vec![
            format!("-I{}/include", prefix.display()),
            format!("-L{}", lib.display()),
            "-linquery".into(),
        ];
        if static_link {
            f.extend(
                ["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"].map(String::from),
            );
        }
        f
    };
    let exe = dir.join(if static_link { "cabi-static" } else { "cabi" });
    let mut cc = Command::new("cc");
    cc.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
        .arg(&exe)
        .arg(root().join("tests/e2e/cabi.c"))
        .args(&flags);
    if !static_link {
        cc.arg(format!("-Wl,-rpath,{}", lib.display()));
    }
    let out = cc.output().expect("run cc");
    assert!(out.status.success(), "cc {flags:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    CProgram { exe, _dir: dir }
}

/// Runs the program against `fifo` with only the variables a mail program would have.
pub(crate) fn run(
    p: &CProgram,
    d: &Daemon,
    fifo: &Path,
    args: &[&str],
    env: &[(String, String)],
) -> Output {
    let out = Command::new(&p.exe)
        .env_clear()
        .env("INFIFO", fifo)
        .env("FIFOTMPDIR", &d.tmp)
        .env("CONTROLDIR", &d.control)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .output()
        .expect("run the C program");
    assert!(
        out.status.success(),
        "cabi {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What `cabi all` prints against the demo data: IndiMail's conventions, kind by kind.
pub(crate) const EXPECTED: &str = r#"1 testuser@example.com -: 0
1 nobody@example.com -: 1
1 olduser@example.com -: 2
1 full@example.com -: 3
1 sales@example.com -: 4
2 alice@example.com 192.0.2.10: 1
2 alice@example.com 192.0.2.11: 0
2 alice@example.com -: NULL userNotFound=0 errno=EINVAL
3 alice@example.com -: alice|{SCRAM-SHA-256}4096$c2FsdA==$c3RvcmVk$c2VydmVy,$5$demo$alicehash|1|0|Alice|/home/mail/example.com/alice|100000000 inactive=0
3 olduser@example.com -: olduser|$5$demo$oldhash|1|0|Old User|/home/mail/example.com/olduser|1000 inactive=1
3 nobody@example.com -: NULL userNotFound=1 errno=0
4 testuser@example.com -: "example.com:127.0.0.1:25"
4 nobody@example.com -: NULL userNotFound=1 errno=0
5 sales@example.com -: "&alice@example.com\n&testuser@example.com\n"
5 alice@example.com -: ""
6 example.com -: pop=100 aliases=50 forwards=-1 diskquota=1073741824 defaultquota=52428800 imap=1 pop3=0 perm_quota=3 type=1
6 someone@example.net -: pop=-1 aliases=-1 forwards=-1 diskquota=0 defaultquota=0 imap=0 pop3=0 perm_quota=0 type=0
6 example.net -: NULL userNotFound=1 errno=0
7 example.org -: "example.com"
7 example.net -: "example.net"
9 testuser@example.com -: NULL userNotFound=0 errno=EINVAL
"#;

#[test]
fn every_kind_through_inquery_and_inquery_r_from_a_c_program() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let prog = build(false);
    let fifo = d.fifos[0].clone();
    assert_eq!(stdout(&run(&prog, &d, &fifo, &["all"], &[])), EXPECTED);
    let r = stdout(&run(&prog, &d, &fifo, &["r"], &[]));
    assert_eq!(r, format!("{EXPECTED}small buffer: ERANGE\n"), "inquery_r answers as inquery does");
    assert!(crate::harness::entries(&d.tmp).is_empty(), "no reply FIFO left");
}

#[test]
fn the_static_library_links_with_the_pkg_config_flags_and_answers() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let prog = build(true);
    assert_eq!(stdout(&run(&prog, &d, &d.fifos[0].clone(), &["all"], &[])), EXPECTED);
}

#[test]
fn inquery_r_from_eight_threads_gets_every_answer_right() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default().arg("-i").arg("2"));
    let prog = build(false);
    // A relative INFIFO in INFIFODIR: the library finds both instances and spreads over them.
    let env = vec![("INFIFODIR".to_string(), d.fifo_dir.to_string_lossy().into_owned())];
    let out = run(&prog, &d, Path::new("infifo"), &["threads", "8", "25"], &env);
    assert_eq!(stdout(&out), "threads=8 queries=4200 mismatches=0 held=kept\n");
    let s = d.client().stats().unwrap();
    assert!(s.kinds["pwd"].requests >= 8 * 25 * 3, "{:?}", s.kinds["pwd"]);
    assert_eq!(s.refused_reply_paths, 0);
    assert!(crate::harness::entries(&d.tmp).is_empty(), "no reply FIFO left");
}

#[test]
fn failures_set_errno_and_the_fallback_answers_from_mysql() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let prog = build(false);
    let nowhere = d.dir.join("no-such-fifo");

    let out = stdout(&run(&prog, &d, &nowhere, &["down"], &[]));
    assert_eq!(
        out,
        format!("NULL userNotFound=0 errno=ENXIO\nerror: inlookup is not running (no reader on {})\nfallbacks=0\n", nowhere.display())
    );

    let mut env = db.mysql_env();
    env.push(("INQUERY_FALLBACK".into(), "1".into()));
    let out = stdout(&run(&prog, &d, &nowhere, &["down"], &env));
    assert_eq!(out, "0\nerror: -\nfallbacks=1\n", "answered from MySQL, and counted");

    // A daemon that does not answer: ETIMEDOUT after timeoutread.
    let control = TempDir::new("cabi-ctl");
    std::fs::write(control.join("timeoutread"), "1\n").unwrap();
    let env = vec![("CONTROLDIR".to_string(), control.path.to_string_lossy().into_owned())];
    d.signal(nix::sys::signal::Signal::SIGSTOP);
    let out = stdout(&run(&prog, &d, &d.fifos[0].clone(), &["down"], &env));
    d.signal(nix::sys::signal::Signal::SIGCONT);
    assert_eq!(out, "NULL userNotFound=0 errno=ETIMEDOUT\nerror: timed out after 1000 ms waiting for the reply\nfallbacks=0\n");
    assert!(crate::harness::entries(&d.tmp).is_empty(), "the timed-out reply FIFO was removed");
}
