//! Start, instances, signals, stop; privileges and what reaches the log.

use crate::harness::{is_root, Daemon, Opts, TestDb};
use inquery::{Lookup, UserStatus};
use nix::sys::signal::Signal;

#[test]
fn three_instances_are_served_by_one_process_and_found_by_clients() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default().arg("-i").arg("3"));
    let names: Vec<String> =
        d.fifos.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["infifo.1", "infifo.2", "infifo.3"]);
    for f in &d.fifos {
        assert_eq!(
            d.client_for(f).user_status("testuser@example.com").unwrap(),
            UserStatus::Active
        );
    }
    // A client resolving INFIFODIR + relative INFIFO finds the instances, as IndiMail's does.
    let mut c = d.client();
    c.target =
        inquery::resolve::Target::Instances { dir: d.fifo_dir.clone(), name: "infifo".into() };
    for _ in 0..20 {
        assert_eq!(c.user_status("olduser@example.com").unwrap(), UserStatus::Inactive);
    }
    let s = c.stats().unwrap();
    assert_eq!(s.kinds["user"].requests, 23, "one process counted every instance's requests");
}

#[test]
fn term_finishes_removes_the_fifos_and_exits_zero() {
    let db = TestDb::new();
    let mut d = Daemon::start(&db, Opts::default().arg("-i").arg("2"));
    d.client().user_status("testuser@example.com").unwrap();
    let fifos = d.fifos.clone();
    let st = d.stop();
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
    for f in fifos {
        assert!(!f.exists(), "{} left behind", f.display());
    }
    let log = d.log_text();
    assert!(log.contains("stopping: FIFOs removed"));
    assert!(log.contains("stopped"));
    // A client now finds no daemon, at once.
    assert!(matches!(d.client().ping(), Err(inquery::Error::NotRunning(_))));
}

#[test]
fn a_second_daemon_on_the_same_fifo_refuses_to_start() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let out = std::process::Command::new(crate::harness::bin("inlookup"))
        .env("INFIFODIR", &d.fifo_dir)
        .env("FIFOTMPDIR", &d.tmp)
        .args(["--user", "nobody"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(111));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already serving"));
    assert!(d.client().ping().is_ok(), "the first one is unharmed");
}

#[test]
fn the_daemon_never_serves_as_root() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let uids: Vec<&str> = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .collect();
    assert!(uids.iter().all(|u| *u != "0"), "uids {uids:?}");
    if is_root() {
        let out = std::process::Command::new(crate::harness::bin("inlookup"))
            .env("INFIFODIR", d.dir.join("other"))
            .env("FIFOTMPDIR", &d.tmp)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(111));
        assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to run as root"));
    }
}

#[test]
fn usr1_logs_counters_usr2_toggles_debug_and_no_secret_reaches_the_log() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let c = d.client();
    c.passwd("alice@example.com").unwrap();
    c.passwd("alice@example.com").unwrap();
    d.signal(Signal::SIGUSR1);
    d.wait_log("pwd: 2 requests, 1 hits, 0 negative hits, 1 misses");
    assert!(d
        .log_text()
        .contains("queries User:Relay:Password:Limit:Alias:Host:Domain = 0:0:2:0:0:0:0"));
    assert!(c.stats().unwrap().debug);
    d.signal(Signal::SIGUSR2);
    d.wait_log("debug off");
    assert!(!c.stats().unwrap().debug);
    let lines = d.log_text().lines().count();
    c.user_status("testuser@example.com").unwrap();
    assert_eq!(d.log_text().lines().count(), lines, "no per-request line with debug off");
    d.signal(Signal::SIGUSR2);
    d.wait_log("debug on");
    let log = d.log_text();
    for secret in ["alicehash", "SCRAM-SHA-256", "Z3k9dEmoHash", "$5$"] {
        assert!(!log.contains(secret), "{secret} reached the log:\n{log}");
    }
    assert!(
        log.contains("Query [Password Query], User alice@example.com"),
        "IndiMail-style debug line"
    );
}

#[test]
fn start_up_mistakes_are_said_once_and_name_what_is_wrong() {
    let inlookup = || std::process::Command::new(crate::harness::bin("inlookup"));
    // A fatal error: one line, `fatal:`, not an `error:` line before it.
    let mut cmd = inlookup();
    cmd.args(["-f", "/proc/inl-no-such-dir/sub/infifo"]).env("FIFOTMPDIR", "/tmp");
    if is_root() {
        cmd.args(["--user", "nobody"]);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(111));
    let err = String::from_utf8_lossy(&out.stderr);
    let fatal: Vec<&str> = err.lines().filter(|l| l.contains("inl-no-such-dir")).collect();
    assert_eq!(fatal.len(), 1, "said once: {err}");
    // The directory that could not be made, not the FIFO.
    assert!(fatal[0].contains("fatal: /proc/inl-no-such-dir/sub: mkdir"), "{err}");
    // No workers: refused, not silently one.
    let out = inlookup().args(["--workers", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(100));
    assert!(String::from_utf8_lossy(&out.stderr).contains("THREAD_COUNT: 0 workers"));
    // The man page's DESCRIPTION says more than its NAME line.
    let man = String::from_utf8(inlookup().arg("--generate-man").output().unwrap().stdout).unwrap();
    let section = |name: &str| {
        man.split(&format!(".SH {name}\n"))
            .nth(1)
            .and_then(|s| s.split("\n.SH").next())
            .unwrap_or("")
            .to_string()
    };
    let (name, description) = (section("NAME"), section("DESCRIPTION"));
    assert!(
        !description.is_empty() && !name.contains(description.trim()),
        "{name} / {description}"
    );
}

#[test]
fn a_debug_line_shows_remoteip_only_when_there_is_one() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let c = d.client();
    assert!(c.passwd("alice@example.com").unwrap().is_some());
    assert!(c.relay_allowed("alice@example.com", "192.0.2.10").unwrap());
    d.wait_log("RemoteIp 192.0.2.10");
    let log = d.log_text();
    let pwd = log.lines().find(|l| l.contains("Query [Password Query]")).expect(&log);
    assert!(pwd.ends_with("User alice@example.com"), "{pwd}");
}
