//! The cache: hits without MySQL, negative caching, TTL expiry, serve-stale, HUP and FLUSH.

use crate::harness::{Daemon, Opts, OwnMariadb, TestDb};
use inquery::{Error, Lookup, QueryKind, UserStatus};
use nix::sys::signal::Signal;
use std::time::Duration;

#[test]
fn a_cached_answer_needs_no_mysql_and_the_daemon_recovers_when_it_returns() {
    let server = OwnMariadb::start();
    let db = TestDb::on("127.0.0.1", server.port);
    let d = Daemon::start(&db, Opts::default().arg("--serve-stale").arg("0"));
    let c = d.client();
    let first = c.passwd("alice@example.com").unwrap();
    assert!(first.is_some());
    assert_eq!(c.stats().unwrap().kinds["pwd"].misses, 1);

    server.stop();
    // The same question: answered from the cache, identical, with MySQL gone.
    assert_eq!(c.passwd("alice@example.com").unwrap(), first);
    assert_eq!(c.passwd("ALICE@example.com ").unwrap(), first, "same key after folding");
    let s = c.stats().unwrap();
    assert_eq!(s.kinds["pwd"].hits, 2);
    // A question never asked before cannot be answered: an error reply, quickly.
    // An error reply, not the client's timeout (which would be Error::Timeout).
    assert!(matches!(c.passwd("testuser@example.com"), Err(Error::Backend)));
    assert!(c.stats().unwrap().kinds["pwd"].backend_errors >= 1);

    server.restart();
    // Workers reconnect by themselves.
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(Some(pw)) = c.passwd("testuser@example.com") {
            assert_eq!(pw.name, "testuser");
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "no answer after MariaDB came back:\n{}", d.log_text());
}

#[test]
fn serve_stale_answers_from_an_expired_entry_while_mysql_is_down() {
    let server = OwnMariadb::start();
    let db = TestDb::on("127.0.0.1", server.port);
    let d = Daemon::start(&db, Opts::default().env("CACHE_TTL", "pwd=1/1,user=1/1"));
    let c = d.client();
    let first = c.passwd("alice@example.com").unwrap();
    assert_eq!(c.user_status("nobody@example.com").unwrap(), UserStatus::Absent);
    server.stop();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(c.passwd("alice@example.com").unwrap(), first, "expired, MySQL down: stale answer");
    assert_eq!(c.user_status("nobody@example.com").unwrap(), UserStatus::Absent);
    let s = c.stats().unwrap();
    assert_eq!(s.kinds["pwd"].stale_served, 1);
    assert_eq!(s.kinds["pwd"].expirations, 1);
    assert!(s.kinds["pwd"].backend_errors >= 1);
    assert!(d.log_text().contains("lookup failed"), "the failure is logged");
}

#[test]
fn without_serve_stale_an_expired_entry_is_an_error_when_mysql_is_down() {
    let server = OwnMariadb::start();
    let db = TestDb::on("127.0.0.1", server.port);
    let d = Daemon::start(&db, Opts::default().env("CACHE_TTL", "pwd=1/1").env("SERVE_STALE", "0"));
    let c = d.client();
    c.passwd("alice@example.com").unwrap();
    server.stop();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(matches!(c.passwd("alice@example.com"), Err(Error::Backend)));
    assert_eq!(c.stats().unwrap().kinds["pwd"].stale_served, 0);
}

#[test]
fn negative_answers_are_cached_for_the_negative_ttl_only() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default().env("CACHE_TTL", "user=60/1"));
    let c = d.client();
    assert_eq!(c.user_status("newbie@example.com").unwrap(), UserStatus::Absent);
    db.exec("INSERT INTO indimail (pw_name,pw_domain,pw_passwd,pw_uid,pw_gid,pw_gecos,pw_dir,pw_shell) VALUES ('newbie','example.com','x',1,0,'N','/d','1')");
    // Within the negative TTL: still the cached "absent".
    assert_eq!(c.user_status("newbie@example.com").unwrap(), UserStatus::Absent);
    let s = c.stats().unwrap();
    assert_eq!((s.kinds["user"].negative_hits, s.kinds["user"].misses), (1, 1));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(c.user_status("newbie@example.com").unwrap(), UserStatus::Active);
    let s = c.stats().unwrap();
    assert_eq!((s.kinds["user"].expirations, s.kinds["user"].misses), (1, 2));
}

#[test]
fn positive_answers_expire_after_their_ttl() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default().env("CACHE_TTL", "pwd=1/1"));
    let c = d.client();
    assert_eq!(c.passwd("alice@example.com").unwrap().unwrap().gecos, "Alice");
    db.exec("UPDATE indimail SET pw_gecos='Alice Changed' WHERE pw_name='alice'");
    assert_eq!(c.passwd("alice@example.com").unwrap().unwrap().gecos, "Alice", "cached");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(c.passwd("alice@example.com").unwrap().unwrap().gecos, "Alice Changed");
}

#[test]
fn hup_flushes_every_entry() {
    let db = TestDb::new();
    let mut d = Daemon::start(&db, Opts::default());
    let c = d.client();
    assert!(c.passwd("alice@example.com").unwrap().unwrap().passwd.ends_with("alicehash"));
    assert_eq!(c.user_status("testuser@example.com").unwrap(), UserStatus::Active);
    db.exec("UPDATE indimail SET pw_passwd='$5$new$hash', scram=NULL WHERE pw_name='alice'");
    db.exec("DELETE FROM indimail WHERE pw_name='testuser'");
    assert!(
        c.passwd("alice@example.com").unwrap().unwrap().passwd.ends_with("alicehash"),
        "cached"
    );
    let before = c.stats().unwrap().mysql_connects;
    d.signal(Signal::SIGHUP);
    d.wait_log("HUP: flushed");
    assert_eq!(c.stats().unwrap().cache_entries, 0);
    assert_eq!(c.passwd("alice@example.com").unwrap().unwrap().passwd, "$5$new$hash");
    assert_eq!(c.user_status("testuser@example.com").unwrap(), UserStatus::Absent);
    assert!(c.stats().unwrap().mysql_connects > before, "HUP reopens backend connections");
    assert!(d.stop().success());
}

#[test]
fn flush_by_kind_and_key() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let c = d.client();
    c.passwd("alice@example.com").unwrap();
    c.passwd("testuser@example.com").unwrap();
    c.user_status("alice@example.com").unwrap();
    assert_eq!(c.flush(Some(QueryKind::Pwd), Some("Alice@Example.com")).unwrap(), 1);
    assert_eq!(c.flush(Some(QueryKind::Pwd), Some("alice@example.com")).unwrap(), 0);
    assert_eq!(c.flush(Some(QueryKind::User), None).unwrap(), 1);
    assert_eq!(c.flush(None, None).unwrap(), 1, "testuser's pwd entry was left");
    // A flush that makes no sense is refused with an error reply.
    assert!(matches!(c.flush(Some(QueryKind::Ping), None), Err(Error::Backend)));
    assert!(matches!(c.raw(QueryKind::Flush.byte(), "{not json", ""), Ok((-1, _))));
}

#[test]
fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default().env("CACHE_ENTRIES", "2"));
    let c = d.client();
    c.passwd("alice@example.com").unwrap();
    c.passwd("testuser@example.com").unwrap();
    c.passwd("alice@example.com").unwrap(); // alice is now the most recent
    c.passwd("full@example.com").unwrap(); // evicts testuser
    let s = c.stats().unwrap();
    assert_eq!((s.cache_entries, s.cache_capacity, s.kinds["pwd"].evictions), (2, 2, 1));
    c.passwd("alice@example.com").unwrap();
    c.passwd("testuser@example.com").unwrap();
    let s = c.stats().unwrap();
    assert_eq!((s.kinds["pwd"].hits, s.kinds["pwd"].misses), (2, 4));
}

/// REFRESH_AHEAD: a hit in the last part of its TTL is answered from the cache and looked
/// up again in the background; the new answer replaces the entry with no client missing.
/// With it off, the same questions keep the old answer for the whole TTL.
#[test]
fn refresh_ahead_renews_a_hot_entry_in_the_background_without_a_miss() {
    for pct in ["90", "0"] {
        let db = TestDb::new();
        let opts = Opts::default().env("CACHE_TTL", "pwd=20/1").env("REFRESH_AHEAD", pct);
        let d = Daemon::start(&db, opts);
        let c = d.client();
        assert_eq!(c.passwd("alice@example.com").unwrap().unwrap().gecos, "Alice");
        db.exec("UPDATE indimail SET pw_gecos='Alice Refreshed' WHERE pw_name='alice'");
        // 2.5 s into a 20 s TTL: within its last 90 %.
        std::thread::sleep(Duration::from_millis(2500));
        let hit = c.passwd("alice@example.com").unwrap().unwrap();
        assert_eq!(hit.gecos, "Alice", "REFRESH_AHEAD={pct}: the hit is the cached answer");
        let mut seen = String::new();
        for _ in 0..50 {
            seen = c.passwd("alice@example.com").unwrap().unwrap().gecos;
            if seen != "Alice" {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let s = c.stats().unwrap();
        let pwd = &s.kinds["pwd"];
        assert_eq!(pwd.misses, 1, "REFRESH_AHEAD={pct}: only the first question missed");
        if pct == "0" {
            assert_eq!(seen, "Alice", "without refresh-ahead the entry keeps its TTL");
            assert_eq!(pwd.refreshed_ahead, 0);
        } else {
            assert_eq!(seen, "Alice Refreshed", "refreshed in the background:\n{}", d.log_text());
            assert_eq!(pwd.refreshed_ahead, 1, "one refresh, then a fresh entry");
        }
    }
}
