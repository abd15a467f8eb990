//! No client can hurt another: reply FIFOs kept full, answers too long for a classic reply,
//! abandoned reply FIFOs, and backends that are down or misconfigured, against the real
//! daemon and MariaDB. Each test fails on a daemon without the fix it is about.

use crate::harness::*;
use inquery::{Error, Lookup, QueryKind, UserStatus};
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A control directory of the test's own: timeoutread and timeoutwrite in seconds.
fn control(dir: &TempDir, read: u64, write: u64) -> PathBuf {
    let c = dir.join("control");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("timeoutread"), format!("{read}\n")).unwrap();
    std::fs::write(c.join("timeoutwrite"), format!("{write}\n")).unwrap();
    c
}

/// A reply FIFO a hostile client opened read-write and filled, so nothing more fits.
fn full_fifo(path: &Path) -> OwnedFd {
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o660)).unwrap();
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        path,
        Mode::from_bits_truncate(0o660),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .unwrap();
    let fd = open(path, OFlag::O_RDWR | OFlag::O_NONBLOCK, Mode::empty()).unwrap();
    while nix::unistd::write(&fd, &[0u8; 4096]).is_ok() {}
    fd
}

fn frame(kind: u8, email: &str, reply: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    inlookup_core::wire::encode_request(kind, email.as_bytes(), reply.as_os_str().as_bytes(), b"")
        .unwrap()
}

/// `n` alias lines for `user@example.com`: about 60 bytes each.
fn many_aliases(db: &TestDb, user: &str, n: usize) {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!("('{user}','example.com','&forward-to-someone-far-away-{i:03}@example.org')")
        })
        .collect();
    db.exec(&format!("INSERT INTO valias (alias, domain, valias_line) VALUES {}", lines.join(",")));
}

/// Polls STATS until `done` holds (the daemon counts asynchronously), at most `within`.
fn stats_until(
    c: &inquery::Client,
    within: Duration,
    done: impl Fn(&inlookup_core::admin::StatsReport) -> bool,
) -> inlookup_core::admin::StatsReport {
    let deadline = Instant::now() + within;
    loop {
        let s = c.stats().unwrap();
        if done(&s) || Instant::now() >= deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_that_keeps_its_reply_fifo_full_stalls_nobody() {
    let db = TestDb::new();
    many_aliases(&db, "many", 120);
    let t = TempDir::new("full-fifos");
    // timeoutwrite 10 s: a daemon that waited on a full FIFO would hold every other client
    // of that thread past its 2 s read timeout.
    let ctl = control(&t, 2, 10);
    let d = Daemon::start(&db, Opts::default().env("CONTROLDIR", ctl.to_str().unwrap()));
    let c = d.client();
    assert!(c.passwd("alice@example.com").unwrap().is_some(), "now a cache hit");
    // Four hostile requests, each replying into a FIFO its client keeps full: a cache hit
    // and a PING (answered on the I/O thread), a miss (on a worker), and an ALIAS-FULL
    // whose 7 KB reply goes to the writer thread of large replies.
    let hostile: Vec<(PathBuf, OwnedFd)> = (0..4)
        .map(|i| {
            let p = d.tmp.join(format!("hostile{i}"));
            let fd = full_fifo(&p);
            (p, fd)
        })
        .collect();
    d.write_raw(&frame(QueryKind::Pwd.byte(), "alice@example.com", &hostile[0].0));
    d.write_raw(&frame(QueryKind::Ping.byte(), "", &hostile[1].0));
    d.write_raw(&frame(QueryKind::User.byte(), "nobody-here@example.com", &hostile[2].0));
    d.write_raw(&frame(QueryKind::AliasFull.byte(), "many@example.com", &hostile[3].0));
    // Everyone else is answered within their 2 s read timeout, the large reply included.
    for _ in 0..3 {
        assert!(c.passwd("alice@example.com").unwrap().is_some());
        assert!(c.ping().is_ok());
        assert_eq!(c.user_status("testuser@example.com").unwrap(), UserStatus::Active);
        assert_eq!(c.aliases("many@example.com").unwrap().len(), 120);
    }
    let s = stats_until(&c, Duration::from_secs(5), |s| s.failed_replies >= 3);
    assert!(s.failed_replies >= 3, "the three small replies failed at once: {}", s.failed_replies);
    for (p, _) in &hostile[..3] {
        assert!(
            !p.exists(),
            "{}: the name of a FIFO that could not take its reply is removed",
            p.display()
        );
    }
    assert!(
        !d.log_text().contains("warn: reply to"),
        "a full FIFO is the client's problem: debug only"
    );
}

#[test]
fn an_answer_too_long_for_alias_is_minus_one_there_never_cached_as_such_and_whole_for_our_clients()
{
    let db = TestDb::new();
    many_aliases(&db, "many", 120);
    let d = Daemon::start(&db, Opts::default());
    // IndiMail's client asks ALIAS and reads at most PIPE_BUF: it gets -1, twice.
    for name in ["classic1", "classic2"] {
        let r = d.reply_fifo(name);
        d.write_raw(&r.frame(QueryKind::Alias.byte(), "many@example.com", ""));
        assert_eq!(r.int(Duration::from_secs(2)), Some(-1));
    }
    let c = d.client();
    let s = c.stats().unwrap();
    let alias = &s.kinds["alias"];
    assert_eq!(
        (alias.misses, alias.hits, alias.oversized),
        (1, 1, 2),
        "a hit on the whole answer, not a cached -1"
    );
    assert_eq!(alias.backend_errors, 0);
    // Our client gets the whole list, and so does inquerytest -q 5.
    let lines = c.aliases("many@example.com").unwrap();
    assert_eq!(lines.len(), 120);
    assert!(lines.iter().all(|l| l.starts_with("&forward-to-someone-far-away-")));
    let out = std::process::Command::new(bin("inquerytest"))
        .env("FIFOTMPDIR", &d.tmp)
        .args(["-q", "5", "-i", d.fifos[0].to_str().unwrap(), "many@example.com"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(shown.matches("forward-to-someone-far-away-").count(), 120, "{shown}");
    // Logged with its size and a hash of the key, never the content or the address.
    let log = d.log_text();
    let line = log.lines().find(|l| l.contains("longer than a classic reply")).expect(&log);
    assert!(
        line.contains("bytes") && !line.contains("many@") && !line.contains("forward"),
        "{line}"
    );
}

#[test]
fn abandoned_reply_fifos_are_swept_and_nothing_else_is() {
    let db = TestDb::new();
    let t = TempDir::new("sweep");
    // Old after timeoutread + timeoutwrite = 2 s; swept every second.
    let ctl = control(&t, 1, 1);
    let d = Daemon::start(&db, Opts::default().env("CONTROLDIR", ctl.to_str().unwrap()));
    // Mode 0660, as clients make them (FIFOTMPDIR's group is the daemon's).
    let fifo = |name: &str| {
        let p = d.tmp.join(name);
        nix::unistd::mkfifo(&p, Mode::from_bits_truncate(0o660)).unwrap();
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &p,
            Mode::from_bits_truncate(0o660),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .unwrap();
        p
    };
    // What clients that died after their reply leave: IndiMail's pid+time names, ours.
    let abandoned = [fifo("123451733000000"), fifo("inquery.4242.00ff00ff00ff00ff")];
    // What must stay: a FIFO of another program, a client still reading (a long IMAP
    // request), a plain file with a reply FIFO's name, a symlink with one to a FIFO elsewhere.
    let other = fifo("someone-elses.fifo");
    let reading = fifo("inquery.4243.0123456789abcdef");
    let _reader = open(&reading, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()).unwrap();
    let plain = d.tmp.join("987651733000000");
    std::fs::write(&plain, b"keep").unwrap();
    let target = t.join("elsewhere.fifo");
    nix::unistd::mkfifo(&target, Mode::from_bits_truncate(0o600)).unwrap();
    let link = d.tmp.join("555551733000000");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let c = d.client();
    // Generous: 2 s to age, a sweep every second; the bound only stops a regression hanging.
    let s = stats_until(&c, Duration::from_secs(10), |s| s.swept_reply_fifos >= 2);
    assert_eq!(s.swept_reply_fifos, 2, "{}", d.log_text());
    for p in &abandoned {
        assert!(!p.exists(), "{} swept", p.display());
    }
    for p in [&other, &reading, &plain, &target] {
        assert!(p.exists(), "{} left alone", p.display());
    }
    assert!(std::fs::symlink_metadata(&link).is_ok(), "a symlink is never followed or removed");
    assert_eq!(std::fs::read(&plain).unwrap(), b"keep");
}

#[test]
fn a_misconfigured_backend_is_named_in_ping_stats_the_log_and_inquerytest_ping() {
    let db = TestDb::new();
    for (env, class) in [("MYSQL_USER", "access denied"), ("MYSQL_DATABASE", "unknown database")] {
        let d = Daemon::start(&db, Opts::default().env(env, "inl_no_such_thing"));
        let c = d.client();
        // The start-up check runs beside the start: wait for its verdict.
        let deadline = Instant::now() + Duration::from_secs(10);
        let health = loop {
            let p = c.ping().unwrap();
            if p.backends.iter().any(|b| b.state != inlookup_core::admin::BackendState::Unknown) {
                break p;
            }
            assert!(Instant::now() < deadline, "no health verdict: {p:?}");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(health.no_backend_up(), "{health:?}");
        let b = &health.backends[0];
        assert_eq!(b.error_class.as_deref(), Some(class), "{b:?}");
        assert!(!b.server.contains("PASSWD") && b.server.contains("mysql://"), "{}", b.server);
        assert!(
            d.log_text().contains(&format!("error: at start, the backend failed ({class})")),
            "{}",
            d.log_text()
        );
        let s = c.stats().unwrap();
        assert_eq!((s.backends[0].state, &s.backends[0].error_class), (b.state, &b.error_class));
        // A lookup fails with -1, as before, and inquerytest ping says why and exits 1.
        assert!(matches!(c.user_status("alice@example.com"), Err(Error::Backend)));
        let out = std::process::Command::new(bin("inquerytest"))
            .env("FIFOTMPDIR", &d.tmp)
            .args(["-i", d.fifos[0].to_str().unwrap(), "ping"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(shown.contains("DOWN") && shown.contains(class), "{shown}");
    }
    // A healthy one: up, and inquerytest ping exits 0.
    let d = Daemon::start(&db, Opts::default());
    let c = d.client();
    assert_eq!(c.user_status("alice@example.com").unwrap(), UserStatus::Active);
    let p = c.ping().unwrap();
    assert_eq!(p.backends[0].state, inlookup_core::admin::BackendState::Up, "{p:?}");
    let out = std::process::Command::new(bin("inquerytest"))
        .env("FIFOTMPDIR", &d.tmp)
        .args(["-i", d.fifos[0].to_str().unwrap(), "ping"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(" up for "));
}

#[test]
fn a_hup_during_a_mariadb_freeze_answers_misses_within_the_clients_timeout() {
    let own = OwnMariadb::start();
    let db = TestDb::on("127.0.0.1", own.port);
    let d = Daemon::start_on("127.0.0.1", own.port, &db.name, Opts::default());
    let c = d.client();
    assert_eq!(c.user_status("alice@example.com").unwrap(), UserStatus::Active);
    let pid: i32 =
        std::fs::read_to_string(own.dir.join("mysqld.pid")).unwrap().trim().parse().unwrap();
    let mariadb = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(mariadb, nix::sys::signal::Signal::SIGSTOP).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_log("HUP: flushed");
    // The reconnect meets a server that accepts the connection and never speaks. The
    // daemon's timeoutread is 2 s, so the worker gives up within it and the client gets
    // -1; this client waits 8 s (the old 20 s MySQL read timeout would have it time out).
    let mut patient = c.clone();
    patient.timeouts.read = Duration::from_secs(8);
    let r = patient.user_status("testuser@example.com");
    nix::sys::signal::kill(mariadb, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(matches!(r, Err(Error::Backend)), "{r:?}");
    let p = c.ping().unwrap();
    assert_eq!(p.backends[0].error_class.as_deref(), Some("timeout"), "{p:?}");
    // Once MariaDB runs again, the daemon answers without a restart.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.user_status("testuser@example.com").is_err() {
        assert!(Instant::now() < deadline, "no recovery:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.ping().unwrap().backends[0].state, inlookup_core::admin::BackendState::Up);
    drop(db);
}
