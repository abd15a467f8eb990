//! Direct mode: the same answers as the daemon for the same data, every kind; the Querier's
//! modes and its fallback; reconnecting after MySQL restarts.

use crate::harness::{Daemon, Opts, OwnMariadb, TestDb};
use inlookup_core::LookupConfig;
use inquery::{Client, Direct, Error, Lookup, Mode, Querier, QueryKind, UserStatus};
use nix::sys::signal::Signal;
use std::sync::Arc;
use std::time::Duration;

/// Questions over the demo data: found and not found, case, alias domains, bare names.
const QUESTIONS: &[(QueryKind, &str, &str)] = &[
    (QueryKind::User, "testuser@example.com", ""),
    (QueryKind::User, "TestUser@Example.COM", ""),
    (QueryKind::User, "testuser@example.org", ""),
    (QueryKind::User, "nobody@example.com", ""),
    (QueryKind::User, "olduser@example.com", ""),
    (QueryKind::User, "full@example.com", ""),
    (QueryKind::User, "sales@example.com", ""),
    (QueryKind::User, "testuser", ""),
    (QueryKind::User, "@example.com", ""),
    (QueryKind::Relay, "alice@example.com", "192.0.2.10"),
    (QueryKind::Relay, "alice@example.com", "192.0.2.11"),
    (QueryKind::Relay, "bob@example.com", "192.0.2.10"),
    (QueryKind::Pwd, "alice@example.com", ""),
    (QueryKind::Pwd, "testuser@example.com", ""),
    (QueryKind::Pwd, "olduser@example.com", ""),
    (QueryKind::Pwd, "nobody@example.com", ""),
    (QueryKind::Pwd, "alice", ""),
    (QueryKind::Pwd, "Alice@Example.ORG", ""),
    (QueryKind::Host, "testuser@example.com", ""),
    (QueryKind::Host, "alice@example.com", ""),
    (QueryKind::Host, "nobody@example.com", ""),
    (QueryKind::Alias, "sales@example.com", ""),
    (QueryKind::Alias, "postmaster@example.com", ""),
    (QueryKind::Alias, "alice@example.com", ""),
    (QueryKind::Limit, "example.com", ""),
    (QueryKind::Limit, "example.org", ""),
    (QueryKind::Limit, "alice@example.com", ""),
    (QueryKind::Limit, "someone@example.net", ""),
    (QueryKind::Limit, "example.net", ""),
    (QueryKind::Domain, "example.org", ""),
    (QueryKind::Domain, "example.net", ""),
    (QueryKind::Domain, "example.com", ""),
];

fn direct_for(db: &TestDb, default_domain: Option<&str>) -> Direct {
    let config = LookupConfig {
        default_domain: default_domain.map(str::to_string),
        ..LookupConfig::default()
    };
    Direct::new(db.mysql_settings(), config)
}

#[test]
fn direct_mode_answers_every_kind_as_the_daemon_does() {
    let db = TestDb::new();
    // Longer aliases than one classic reply may carry: ALIAS gets -1 from the daemon, and
    // both modes give the whole list (the client through ALIAS-FULL).
    let lines: Vec<String> = (0..100)
        .map(|i| format!("('big','example.com','&someone-with-a-long-name-{i:03}@example.com')"))
        .collect();
    db.exec(&format!("INSERT INTO valias (alias, domain, valias_line) VALUES {}", lines.join(",")));
    let d = Daemon::start(&db, Opts::default().env("DEFAULT_DOMAIN", "example.com"));
    let (client, direct) = (d.client(), direct_for(&db, Some("example.com")));
    for &(kind, email, ip) in QUESTIONS {
        let via_daemon =
            client.ask(kind, email, ip).unwrap_or_else(|e| panic!("daemon {kind} {email}: {e}"));
        let via_mysql =
            direct.ask(kind, email, ip).unwrap_or_else(|e| panic!("direct {kind} {email}: {e}"));
        assert_eq!(via_mysql, via_daemon, "{kind} {email} {ip}");
    }
    let big = client.aliases("big@example.com").unwrap();
    assert_eq!(big.len(), 100, "the whole list through ALIAS-FULL");
    assert_eq!(direct.aliases("big@example.com").unwrap(), big, "direct mode gives it whole too");
    // Typed calls agree too, and one connection served them all.
    assert_eq!(direct.user_status("full@example.com").unwrap(), UserStatus::OverQuota);
    assert_eq!(direct.passwd("alice").unwrap(), client.passwd("alice").unwrap());
    assert_eq!(direct.limits("example.com").unwrap(), client.limits("example.com").unwrap());
    assert_eq!(direct.real_domain("example.org").unwrap(), "example.com");
    assert_eq!(
        direct.host("alice@example.com").unwrap(),
        client.host("alice@example.com").unwrap()
    );
    assert!(direct.relay_allowed("alice@example.com", "192.0.2.10").unwrap());
    assert_eq!(
        direct.aliases("sales@example.com").unwrap(),
        client.aliases("sales@example.com").unwrap()
    );
    assert_eq!(direct.connects(), 1);
    // Both refuse the same bad requests before asking anyone.
    assert!(matches!(direct.relay_allowed("alice@example.com", ""), Err(Error::BadArgument(_))));
    assert!(matches!(client.relay_allowed("alice@example.com", ""), Err(Error::BadArgument(_))));
}

#[test]
fn direct_mode_sees_changes_at_once_where_the_daemon_caches() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let (client, direct) = (d.client(), direct_for(&db, None));
    assert_eq!(client.user_status("new@example.com").unwrap(), UserStatus::Absent);
    db.exec("INSERT INTO indimail (pw_name,pw_domain,pw_passwd,pw_uid,pw_gid,pw_gecos,pw_dir,pw_shell) VALUES ('new','example.com','x',1,0,'N','/d','1')");
    assert_eq!(direct.user_status("new@example.com").unwrap(), UserStatus::Active);
    assert_eq!(
        client.user_status("new@example.com").unwrap(),
        UserStatus::Absent,
        "a cached negative, until its TTL or a FLUSH"
    );
    client.flush(Some(QueryKind::User), Some("new@example.com")).unwrap();
    assert_eq!(
        client.user_status("new@example.com").unwrap(),
        direct.user_status("new@example.com").unwrap()
    );
}

#[test]
fn the_querier_uses_the_mode_asked_and_falls_back_only_when_told() {
    let db = TestDb::new();
    let mut d = Daemon::start(&db, Opts::default());
    let shared = Arc::new(direct_for(&db, None));

    let daemon = Querier::with_parts(Mode::Daemon, d.client(), shared.clone());
    let direct = Querier::with_parts(Mode::Direct, d.client(), shared.clone());
    assert_eq!((daemon.mode(), direct.mode()), (Mode::Daemon, Mode::Direct));
    let before = d.client().stats().unwrap().kinds["pwd"].requests;
    assert_eq!(
        daemon.passwd("alice@example.com").unwrap(),
        direct.passwd("alice@example.com").unwrap()
    );
    assert_eq!(
        d.client().stats().unwrap().kinds["pwd"].requests,
        before + 1,
        "only the daemon querier asked the daemon"
    );
    assert!(matches!(direct.stats(), Err(Error::BadArgument(_))));
    assert!(daemon.ping().is_ok());

    // A daemon stopped with SIGSTOP is up but silent: a timeout, never a fallback.
    let mut slow = d.client();
    slow.timeouts.read = Duration::from_millis(200);
    let q = Querier::with_parts(Mode::Daemon, slow, shared.clone()).with_fallback(true);
    d.signal(Signal::SIGSTOP);
    assert!(matches!(q.user_status("alice@example.com"), Err(Error::Timeout { .. })));
    d.signal(Signal::SIGCONT);
    assert_eq!(q.fallbacks(), 0);

    // The daemon killed: without fallback an error, with it MySQL's answer, counted.
    d.signal(Signal::SIGKILL);
    d.child.take().unwrap().wait().unwrap();
    let strict = Querier::with_parts(Mode::Daemon, d.client(), shared.clone());
    assert!(matches!(strict.user_status("alice@example.com"), Err(Error::NotRunning(_))));
    let lenient = Querier::with_parts(Mode::Daemon, d.client(), shared.clone()).with_fallback(true);
    for _ in 0..3 {
        assert_eq!(lenient.user_status("alice@example.com").unwrap(), UserStatus::Active);
    }
    assert_eq!(lenient.passwd("nobody@example.com").unwrap(), None);
    assert_eq!((lenient.fallbacks(), strict.fallbacks()), (4, 0));
    // A FIFO that was never there counts as unreachable too.
    let gone = Querier::with_parts(Mode::Daemon, Client::for_fifo(d.dir.join("none")), shared)
        .with_fallback(true);
    assert!(gone.relay_allowed("alice@example.com", "192.0.2.10").unwrap());
    assert_eq!(gone.fallbacks(), 1);
    assert!(crate::harness::entries(&d.tmp).is_empty(), "no reply FIFO left");
}

#[test]
fn direct_mode_reconnects_after_mysql_restarts() {
    let own = OwnMariadb::start();
    let db = TestDb::on("127.0.0.1", own.port);
    let direct = direct_for(&db, None);
    assert_eq!(direct.user_status("testuser@example.com").unwrap(), UserStatus::Active);
    own.stop();
    assert!(
        matches!(direct.user_status("testuser@example.com"), Err(Error::Mysql(_))),
        "MySQL down is an error"
    );
    own.restart();
    assert_eq!(direct.user_status("testuser@example.com").unwrap(), UserStatus::Active);
    assert_eq!(direct.passwd("alice@example.com").unwrap().unwrap().name, "alice");
    assert!(direct.connects() >= 2, "a new connection after the restart");
}
