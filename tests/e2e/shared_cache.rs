//! The shared-memory cache end to end: a real daemon publishes its cache in `INFIFO.cache`,
//! this process (a long-running client) and a C program calling `inquery()` read hits from
//! it without asking the daemon, and every flush, HUP, expiry and restart is honoured at
//! once. "Without asking" is checked on the daemon's side: its request counters do not move.

use crate::cabi;
use crate::harness::{Daemon, Opts, TestDb};
use inquery::{Client, Lookup, QueryKind};
use nix::sys::signal::Signal;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A daemon with the shared cache on, at its default place.
fn start(db: &TestDb, opts: Opts) -> Daemon {
    Daemon::start(db, opts.env("SHARED_CACHE", ""))
}

fn cache_path(d: &Daemon) -> PathBuf {
    let mut p = d.fifos[0].clone().into_os_string();
    p.push(".cache");
    PathBuf::from(p)
}

/// Requests the daemon has seen so far (PING and STATS included).
fn requests(d: &Daemon) -> u64 {
    d.client().with_shared(None).stats().unwrap().totals().requests
}

/// The questions of every kind, found and not found (kind byte, email, ip).
const QUESTIONS: &[(u8, &str, &str)] = &[
    (1, "testuser@example.com", ""),
    (1, "nobody@example.com", ""),
    (1, "sales@example.com", ""),
    (2, "alice@example.com", "192.0.2.10"),
    (2, "alice@example.com", "192.0.2.11"),
    (3, "alice@example.com", ""),
    (3, "nobody@example.com", ""),
    (4, "testuser@example.com", ""),
    (4, "nobody@example.com", ""),
    (5, "sales@example.com", ""),
    (5, "alice@example.com", ""),
    (36, "sales@example.com", ""),
    (6, "example.com", ""),
    (6, "someone@example.net", ""),
    (7, "example.org", ""),
    (7, "example.net", ""),
    // Folded as the daemon folds them: the same entries.
    (3, " Alice@Example.COM", ""),
    (1, "TestUser@example.com", ""),
];

#[test]
fn hits_through_the_mapping_are_the_fifo_replies_of_every_kind() {
    let db = TestDb::new();
    let d = start(&db, Opts::default());
    let path = cache_path(&d);
    let md = std::fs::metadata(&path).expect("the daemon made INFIFO.cache");
    assert_eq!(md.permissions().mode() & 0o777, 0o640, "whoever may ask may read, no more");
    assert_eq!(md.gid(), std::fs::metadata(&d.fifos[0]).unwrap().gid(), "the FIFO's group");
    let fifo = d.client().with_shared(None);
    let mapped = d.client();
    assert_eq!(mapped.shared.as_ref(), Some(&path), "a client finds it beside the FIFO");
    let from_fifo: Vec<_> =
        QUESTIONS.iter().map(|(k, e, ip)| fifo.raw(*k, e, ip).unwrap()).collect();
    let before = requests(&d);
    for ((k, e, ip), want) in QUESTIONS.iter().zip(&from_fifo) {
        assert_eq!(&mapped.raw(*k, e, ip).unwrap(), want, "kind {k} {e:?}: byte-identical");
    }
    // Typed answers too, through the same path.
    assert!(mapped.passwd("alice@example.com").unwrap().is_some());
    assert_eq!(requests(&d), before + 1, "only the STATS above reached the daemon");
    let st = fifo.stats().unwrap();
    let sh = st.shared_cache.expect("STATS describes the shared cache");
    assert_eq!(sh.path, path.display().to_string());
    assert!(sh.entries >= 15 && sh.published >= 15, "{sh:?}");
    assert_eq!(sh.too_big, 0);
    // A kind left out of SHARED_KINDS is asked of the daemon.
    let d2 = start(&db, Opts::default().env("SHARED_KINDS", "user"));
    let (fifo2, mapped2) = (d2.client().with_shared(None), d2.client());
    fifo2.raw(3, "alice@example.com", "").unwrap();
    fifo2.raw(1, "alice@example.com", "").unwrap();
    let before = requests(&d2);
    mapped2.raw(1, "alice@example.com", "").unwrap();
    assert_eq!(requests(&d2), before + 1, "USER is published");
    mapped2.raw(3, "alice@example.com", "").unwrap();
    assert_eq!(requests(&d2), before + 3, "PWD is not: asked over the FIFO");
}

#[test]
fn inquery_from_c_reads_the_mapping_with_the_same_answers() {
    let db = TestDb::new();
    let d = start(&db, Opts::default());
    let p = cabi::build(false);
    let off = [("SHARED_CACHE".to_string(), "off".to_string())];
    let first = cabi::stdout(&cabi::run(&p, &d, &d.fifos[0], &["all"], &off));
    assert_eq!(first, cabi::EXPECTED);
    let before = requests(&d);
    for mode in ["all", "r"] {
        let again = cabi::stdout(&cabi::run(&p, &d, &d.fifos[0], &[mode], &[]));
        assert!(again.starts_with(cabi::EXPECTED), "{mode}:\n{again}");
    }
    assert_eq!(requests(&d), before + 1, "every answer came from the mapping");
    // With the mapping off, the same program asks the daemon again.
    cabi::run(&p, &d, &d.fifos[0], &["all"], &off);
    assert!(requests(&d) > before + 10);
}

/// Waits until `f` holds, or panics after 5 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn passwd(c: &Client, email: &str) -> String {
    c.passwd(email).unwrap().expect("the user exists").passwd
}

#[test]
fn a_flush_a_hup_and_an_expiry_are_honoured_at_once() {
    let db = TestDb::new();
    let d = start(&db, Opts::default().env("CACHE_TTL", "user=2/2"));
    let c = d.client();
    let set = |h: &str| {
        db.exec(&format!(
            "UPDATE indimail SET pw_passwd = '{h}' WHERE pw_name = 'testuser' AND pw_domain = 'example.com'"
        ))
    };
    set("$5$one");
    c.flush(None, None).unwrap();
    assert_eq!(passwd(&c, "testuser@example.com"), "$5$one");
    set("$5$two");
    assert_eq!(passwd(&c, "testuser@example.com"), "$5$one", "cached, as over the FIFO");
    c.flush(Some(QueryKind::Pwd), Some("testuser@example.com")).unwrap();
    assert_eq!(passwd(&c, "testuser@example.com"), "$5$two", "FLUSH of one key");
    set("$5$three");
    c.flush(Some(QueryKind::Pwd), None).unwrap();
    assert_eq!(passwd(&c, "testuser@example.com"), "$5$three", "FLUSH of a kind");
    set("$5$four");
    c.flush(None, None).unwrap();
    assert_eq!(passwd(&c, "testuser@example.com"), "$5$four", "FLUSH of everything");
    set("$5$five");
    d.signal(Signal::SIGHUP);
    d.wait_log("HUP: flushed");
    assert_eq!(passwd(&c, "testuser@example.com"), "$5$five", "HUP");
    // USER's TTL is 2 s: once it has run out the mapping is not trusted.
    assert_eq!(c.raw(1, "testuser@example.com", "").unwrap().0, 0);
    db.exec("DELETE FROM indimail WHERE pw_name = 'testuser'");
    let t0 = Instant::now();
    assert_eq!(c.raw(1, "testuser@example.com", "").unwrap().0, 0, "still cached");
    std::thread::sleep(Duration::from_millis(2100).saturating_sub(t0.elapsed()));
    let before = requests(&d);
    let (n, _) = c.raw(1, "testuser@example.com", "").unwrap();
    assert_eq!(requests(&d), before + 2, "past its TTL the entry was asked of the daemon");
    assert_ne!(n, 0, "and the new status came back");
}

#[test]
fn a_long_running_client_follows_restarts_and_never_outlives_its_daemon() {
    let db = TestDb::new();
    let mut d = start(&db, Opts::default());
    let c = d.client();
    let path = cache_path(&d);
    assert_eq!(passwd(&c, "testuser@example.com"), passwd(&c, "testuser@example.com"));
    let before = requests(&d);
    passwd(&c, "testuser@example.com");
    assert_eq!(requests(&d), before + 1, "mapped and hit");

    // A clean stop retires and removes the file: the client asks the FIFO, finds nobody.
    d.stop();
    assert!(!path.exists());
    assert!(c.passwd("testuser@example.com").is_err(), "no answer outlives its daemon");

    // A new daemon: a new file, and the client (the same process) uses it.
    d.spawn(&db.host, db.port, &db.name, &Opts::default().env("SHARED_CACHE", ""));
    db.exec("UPDATE indimail SET pw_passwd = '$5$after' WHERE pw_name = 'testuser'");
    assert_eq!(passwd(&c, "testuser@example.com"), "$5$after");
    // A missing file is looked for again at most once a second.
    eventually("hits in the new daemon's mapping", || {
        let before = requests(&d);
        assert_eq!(passwd(&c, "testuser@example.com"), "$5$after");
        requests(&d) == before + 1
    });

    // Killed, it cannot retire its file: within about a second the client stops trusting it.
    d.signal(Signal::SIGKILL);
    if let Some(mut child) = d.child.take() {
        child.wait().unwrap();
    }
    assert!(path.exists(), "a killed daemon leaves its file");
    eventually("the client stops reading a dead daemon's table", || {
        c.passwd("testuser@example.com").is_err()
    });
    // Its successor replaces the file; the client's answers are its.
    d.spawn(&db.host, db.port, &db.name, &Opts::default().env("SHARED_CACHE", ""));
    db.exec("UPDATE indimail SET pw_passwd = '$5$third' WHERE pw_name = 'testuser'");
    assert_eq!(passwd(&c, "testuser@example.com"), "$5$third");
}

/// Started as root in a FIFO directory only root may write (a packaged service's
/// /run/indimail/inlookup), the daemon makes its file before it drops to its user: the file
/// is there, the user's, and written to. (Needs root; CI runs as root.)
#[test]
fn a_root_owned_fifo_directory_still_gets_the_file() {
    if !crate::harness::is_root() {
        eprintln!("not root: nothing to check here (the daemon cannot start as root)");
        return;
    }
    let db = TestDb::new();
    let mut d = Daemon::prepare(2, 2);
    nix::unistd::chown(
        &d.fifo_dir,
        Some(nix::unistd::Uid::from_raw(0)),
        Some(nix::unistd::Gid::from_raw(0)),
    )
    .unwrap();
    std::fs::set_permissions(&d.fifo_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.spawn(&db.host, db.port, &db.name, &Opts::default().env("SHARED_CACHE", ""));
    let path = cache_path(&d);
    let md = std::fs::metadata(&path).expect("made while still root");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(md.uid(), nobody.uid.as_raw(), "given to the daemon's user");
    let c = d.client();
    passwd(&c, "testuser@example.com");
    let before = requests(&d);
    passwd(&c, "testuser@example.com");
    assert_eq!(requests(&d), before + 1, "published by the unprivileged daemon, read here");
}
