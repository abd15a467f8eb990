//! A fleet on MySQL replication (INVALIDATE=binlog): a real primary and replica MariaDB
//! replicating, one daemon tailing the primary's binlog and one the replica's
//! (log_slave_updates), both caching for a day: a change on the primary is answered by
//! both, the replica's restart is resumed, a purged binlog is one full flush, a server
//! logging statements is a clear warning and TTLs only.

use crate::harness::{Daemon, Opts, OwnMariadb, TestDb};
use inlookup_core::admin::InvalidationStatus;
use inquery::Lookup;
use mysql::prelude::Queryable;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// Every kind cached for a day: only invalidation can show a change.
const A_DAY: &str = "user=86400/86400,relay=86400/86400,pwd=86400/86400,host=86400/86400,alias=86400/86400,limit=86400/86400,domain=86400/86400";

/// Polls `check` until it holds; no upper bound is asserted on how long it took, only that
/// it happens at all (the deadline is generous, for a loaded machine).
fn eventually(what: &str, daemons: &[&Daemon], mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        if Instant::now() > deadline {
            for d in daemons {
                eprintln!("--- {} ---\n{}", d.log.display(), d.log_text());
            }
            panic!("never: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn invalidation(d: &Daemon) -> InvalidationStatus {
    d.client().ping().unwrap().invalidation.expect("PING has an invalidation section")
}

fn tailing(primary_of_reads: &OwnMariadb, db: &TestDb, from: Option<&OwnMariadb>) -> Daemon {
    let mut opts = Opts::default().env("INVALIDATE", "binlog").env("CACHE_TTL", A_DAY);
    if let Some(f) = from {
        opts = opts.env("INVALIDATE_FROM", &format!("127.0.0.1:{}", f.port));
    }
    let d = Daemon::start_on("127.0.0.1", primary_of_reads.port, &db.name, opts);
    eventually("the invalidation stream is up", &[&d], || invalidation(&d).state == "up");
    d
}

/// Waits until the replica has the test database's demo rows (the last one inserted is
/// relay's).
fn replicated(replica: &OwnMariadb, db: &TestDb) {
    let q = format!("SELECT COUNT(*) FROM {}.relay", db.name);
    eventually("the replica has the demo rows", &[], || {
        replica.admin().query_first::<u64, _>(&q).ok().flatten().unwrap_or(0) > 0
    });
}

/// Declared in drop order: daemons, then the database, then the servers.
struct Fleet {
    a: Daemon,
    b: Daemon,
    db: TestDb,
    replica: OwnMariadb,
    primary: OwnMariadb,
}

fn fleet() -> Fleet {
    let primary = OwnMariadb::start_binlog(1, "ROW");
    let replica = OwnMariadb::start_binlog(2, "ROW");
    replica.replicate_from(&primary);
    let db = TestDb::on("127.0.0.1", primary.port);
    replicated(&replica, &db);
    let a = tailing(&primary, &db, None);
    let b = tailing(&replica, &db, Some(&replica));
    Fleet { a, b, db, replica, primary }
}

fn alice_hash(d: &Daemon) -> String {
    d.client().passwd("alice@example.com").unwrap().expect("alice").passwd
}

#[test]
fn changes_on_the_primary_reach_both_daemons() {
    let f = fleet();
    let both = [&f.a, &f.b];
    for d in both {
        let c = d.client();
        assert!(alice_hash(d).ends_with("$5$demo$alicehash"));
        assert!(c.aliases("info@example.com").unwrap().is_empty());
        assert_eq!(c.host("alice@example.com").unwrap().unwrap().host, "10.0.0.5");
        assert_eq!(c.real_domain("example.net").unwrap(), "example.net");
        assert!(c.passwd("alice@example.net").unwrap().is_none());
        assert_eq!(c.limits("example.com").unwrap().unwrap().maxpopaccounts, 100);
        // Cached: asked again, a hit (for a day).
        let hits = c.stats().unwrap().kinds["pwd"].hits;
        alice_hash(d);
        assert_eq!(c.stats().unwrap().kinds["pwd"].hits, hits + 1);
    }
    f.db.exec("UPDATE indimail SET pw_passwd = '$5$changed' WHERE pw_name = 'alice'");
    f.db.exec("INSERT INTO valias (alias, domain, valias_line) VALUES ('info', 'example.com', '&alice@example.com')");
    f.db.exec("UPDATE hostcntrl SET host = '10.0.0.9' WHERE pw_name = 'alice'");
    f.db.exec("INSERT INTO aliasdomain (alias, domain) VALUES ('example.net', 'example.com')");
    f.db.exec("UPDATE vlimits SET maxpopaccounts = 7 WHERE domain = 'example.com'");
    for d in both {
        let c = d.client();
        eventually("the new password", &both, || alice_hash(d).ends_with("$5$changed"));
        eventually("the new alias", &both, || {
            c.aliases("info@example.com").unwrap() == ["&alice@example.com"]
        });
        eventually("the moved mail store", &both, || {
            c.host("alice@example.com").unwrap().unwrap().host == "10.0.0.9"
        });
        eventually("the alias domain", &both, || {
            c.real_domain("example.net").unwrap() == "example.com"
                && c.passwd("alice@example.net").unwrap().is_some()
        });
        eventually("the domain's limits", &both, || {
            c.limits("example.com").unwrap().unwrap().maxpopaccounts == 7
        });
        let s = c.stats().unwrap().invalidation.unwrap();
        assert_eq!(s.state, "up");
        assert!(s.events >= 5 && s.keys_evicted >= 5, "{s:?}");
        assert_eq!(s.full_flushes, 0, "{s:?}");
        // binlog.NNNNNN:OFFSET, the file name exactly as the server has it.
        let p = s.position.clone().unwrap_or_default();
        let (file, _) = p.split_once(':').unwrap_or_default();
        assert!(file.len() == "binlog.000001".len() && file.starts_with("binlog.0"), "{s:?}");
    }
    assert_ne!(invalidation(&f.a).server_id, invalidation(&f.b).server_id);
    assert_eq!(invalidation(&f.b).source, format!("127.0.0.1:{}", f.replica.port));
    assert_eq!(invalidation(&f.a).source, format!("127.0.0.1:{}", f.primary.port));
}

#[test]
fn a_restarted_replica_is_resumed_and_nothing_stale_survives() {
    let f = fleet();
    assert!(alice_hash(&f.b).ends_with("$5$demo$alicehash"));
    let before = invalidation(&f.b);
    f.replica.stop();
    eventually("the replica's daemon sees its stream down", &[&f.b], || {
        invalidation(&f.b).state == "down"
    });
    // Changed while the replica is away: it applies this after its restart.
    f.db.exec("UPDATE indimail SET pw_passwd = '$5$while-down' WHERE pw_name = 'alice'");
    f.replica.restart();
    eventually("the change made while the replica was down", &[&f.b], || {
        f.b.client()
            .passwd("alice@example.com")
            .ok()
            .flatten()
            .is_some_and(|p| p.passwd.ends_with("$5$while-down"))
    });
    let after = invalidation(&f.b);
    assert_eq!(after.state, "up");
    assert!(after.connects > before.connects, "{after:?}");
    assert_eq!(
        after.full_flushes,
        before.full_flushes,
        "resumed at its position: {after:?}\n{}",
        f.b.log_text()
    );
    assert!(f.b.log_text().contains("resuming at binlog."), "{}", f.b.log_text());
    assert!(alice_hash(&f.a).ends_with("$5$while-down"));
}

/// The binlog dump threads serving this daemon's server id (`SHOW PROCESSLIST`).
fn dump_threads(server: &OwnMariadb) -> Vec<u64> {
    let rows: Vec<(u64, String)> =
        server.admin().query("SELECT ID, COMMAND FROM information_schema.PROCESSLIST").unwrap();
    rows.into_iter().filter(|(_, c)| c.starts_with("Binlog Dump")).map(|(id, _)| id).collect()
}

#[test]
fn a_binlog_purged_past_the_position_is_one_full_flush() {
    let primary = OwnMariadb::start_binlog(1, "ROW");
    let db = TestDb::on("127.0.0.1", primary.port);
    let d = tailing(&primary, &db, None);
    assert!(alice_hash(&d).ends_with("$5$demo$alicehash"));
    let before = invalidation(&d);
    // The daemon stopped, its stream killed on the server: while it cannot reconnect, the
    // change goes into a binlog that is then purged.
    d.signal(Signal::SIGSTOP);
    let mut admin = primary.admin();
    for id in dump_threads(&primary) {
        let _ = admin.query_drop(format!("KILL {id}"));
    }
    eventually("the dump thread is gone", &[&d], || dump_threads(&primary).is_empty());
    db.exec("UPDATE indimail SET pw_passwd = '$5$purged' WHERE pw_name = 'alice'");
    admin.query_drop("FLUSH BINARY LOGS").unwrap();
    let logs = |admin: &mut mysql::Conn| -> Vec<String> {
        let rows: Vec<(String, u64)> = admin.query("SHOW BINARY LOGS").unwrap();
        rows.into_iter().map(|(f, _)| f).collect()
    };
    let newest = logs(&mut admin).last().unwrap().clone();
    // MariaDB keeps a binlog until its checkpoint (written after FLUSH, in the
    // background) says crash recovery no longer needs it: PURGE until it is gone.
    eventually("the old binlogs are purged", &[&d], || {
        admin.query_drop(format!("PURGE BINARY LOGS TO '{newest}'")).unwrap();
        logs(&mut primary.admin()) == [newest.clone()]
    });
    d.signal(Signal::SIGCONT);
    eventually("one full flush, the stream up again", &[&d], || {
        let s = invalidation(&d);
        s.state == "up" && s.full_flushes == before.full_flushes + 1
    });
    assert!(alice_hash(&d).ends_with("$5$purged"), "nothing stale survives the flush");
    assert!(d.log_text().contains("cannot resume at"), "{}", d.log_text());
    // Exactly one: it reads on from the current position, no further flush.
    std::thread::sleep(Duration::from_millis(1500));
    let s = invalidation(&d);
    assert_eq!((s.state.as_str(), s.full_flushes), ("up", before.full_flushes + 1), "{s:?}");
    drop(d);
}

#[test]
fn a_server_logging_statements_is_a_clear_warning_and_ttls_only() {
    let primary = OwnMariadb::start_binlog(1, "STATEMENT");
    let db = TestDb::on("127.0.0.1", primary.port);
    let d = Daemon::start_on(
        "127.0.0.1",
        primary.port,
        &db.name,
        Opts::default().env("INVALIDATE", "binlog"),
    );
    eventually("the stream is down with its reason", &[&d], || {
        let s = invalidation(&d);
        s.state == "down"
            && s.reason.as_deref().is_some_and(|r| r.contains("binlog_format is STATEMENT"))
    });
    let s = invalidation(&d);
    assert!(s.reason.as_deref().unwrap().contains("set binlog_format=ROW"), "{s:?}");
    d.wait_log("binlog_format is STATEMENT");
    d.wait_log("answers live out their TTLs until it is back");
    // Still serving, from MySQL and the cache.
    assert!(alice_hash(&d).ends_with("$5$demo$alicehash"));
    let stats = d.client().stats().unwrap();
    assert_eq!(stats.invalidation.unwrap().state, "down");
    drop(d);
}

#[test]
fn invalidation_is_off_by_default_and_says_so() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let s = invalidation(&d);
    assert_eq!((s.state.as_str(), s.events), ("off", 0));
    assert!(d.log_text().contains("invalidation off (TTLs only)"));
}

// ---- MYSQL_REPLICAS: reads on the replica, failover ----

/// A primary and a replica replicating, the test database on both, and a daemon reading
/// from the replica (MYSQL_REPLICAS) with the primary behind it; PWD answers are not
/// cached, so every question reaches a server.
struct Replicated {
    d: Daemon,
    db: TestDb,
    replica: OwnMariadb,
    primary: OwnMariadb,
}

fn replicated_daemon() -> Replicated {
    replicated_daemon_with(&[])
}

fn replicated_daemon_with(env: &[(&str, &str)]) -> Replicated {
    let primary = OwnMariadb::start_binlog(1, "ROW");
    let replica = OwnMariadb::start_binlog(2, "ROW");
    replica.replicate_from(&primary);
    let db = TestDb::on("127.0.0.1", primary.port);
    replicated(&replica, &db);
    let opts = Opts::default()
        .env("MYSQL_REPLICAS", &format!("127.0.0.1:{}", replica.port))
        .env("REPLICA_CHECK_SECS", "1")
        .env("CACHE_TTL", "pwd=0/0");
    let opts = env.iter().fold(opts, |o, (k, v)| o.env(k, v));
    let d = Daemon::start_on("127.0.0.1", primary.port, &db.name, opts);
    Replicated { d, db, replica, primary }
}

fn server(d: &Daemon, role: &str) -> inlookup_core::admin::ServerHealth {
    let servers = d.client().ping().unwrap().servers;
    servers.into_iter().find(|s| s.role == role).expect("the server is in PING's servers")
}

#[test]
fn reads_go_to_the_replica_and_move_to_the_primary_within_the_request_that_finds_it_dead() {
    let r = replicated_daemon();
    for _ in 0..3 {
        assert!(alice_hash(&r.d).ends_with("$5$demo$alicehash"));
    }
    let (p, rep) = (server(&r.d, "primary"), server(&r.d, "replica"));
    assert_eq!((p.lookups, rep.lookups, rep.state.as_str()), (0, 3, "up"), "{p:?} {rep:?}");
    assert_eq!(rep.address, format!("127.0.0.1:{}", r.replica.port));
    r.replica.stop();
    // The very next request is answered: from the primary, after the replica failed.
    assert!(alice_hash(&r.d).ends_with("$5$demo$alicehash"));
    let (p, rep) = (server(&r.d, "primary"), server(&r.d, "replica"));
    assert_eq!(rep.state, "down", "{rep:?}");
    assert!(rep.failures >= 1 && p.lookups >= 1, "{p:?} {rep:?}");
    assert!(r.d.log_text().contains(&format!("replica 127.0.0.1:{} is down", r.replica.port)));
    // Back: retried after its back-off, it serves again.
    r.replica.restart();
    eventually("the replica serves again", &[&r.d], || {
        let _ = alice_hash(&r.d);
        server(&r.d, "replica").state == "up"
    });
    let before = server(&r.d, "replica").lookups;
    alice_hash(&r.d);
    assert_eq!(server(&r.d, "replica").lookups, before + 1);
}

#[test]
fn with_the_primary_dead_reads_continue_from_the_replica() {
    let r = replicated_daemon();
    assert!(alice_hash(&r.d).ends_with("$5$demo$alicehash"));
    r.primary.stop();
    assert!(alice_hash(&r.d).ends_with("$5$demo$alicehash"));
    // The replica has lost its primary (IO thread reconnecting, lag NULL, SQL thread
    // running): lag checks go on, and it keeps serving, the freshest copy left.
    std::thread::sleep(Duration::from_millis(2500));
    for _ in 0..3 {
        assert!(alice_hash(&r.d).ends_with("$5$demo$alicehash"));
    }
    let rep = server(&r.d, "replica");
    assert_eq!((rep.state.as_str(), rep.lag_secs), ("up", None), "{rep:?}");
    assert_eq!(server(&r.d, "primary").lookups, 0);
    drop(r.d);
    drop(r.db);
}

#[test]
fn a_replica_whose_sql_thread_is_stopped_is_skipped() {
    let r = replicated_daemon();
    assert!(alice_hash(&r.d).ends_with("$5$demo$alicehash"));
    r.replica.admin().query_drop("STOP SLAVE SQL_THREAD").unwrap();
    r.db.exec("UPDATE indimail SET pw_passwd = '$5$behind' WHERE pw_name = 'alice'");
    eventually("the replica skipped, the primary's answer", &[&r.d], || {
        let rep = server(&r.d, "replica");
        rep.state == "skipped" && alice_hash(&r.d).ends_with("$5$behind")
    });
    let rep = server(&r.d, "replica");
    assert!(rep.reason.as_deref().is_some_and(|w| w.contains("SQL thread stopped")), "{rep:?}");
    assert!(r.d.log_text().contains("skipped: its SQL thread is stopped"));
    let p = server(&r.d, "primary").lookups;
    alice_hash(&r.d);
    assert_eq!(server(&r.d, "primary").lookups, p + 1, "the primary serves");
    // Started again: it catches up and serves again.
    r.replica.admin().query_drop("START SLAVE SQL_THREAD").unwrap();
    eventually("the replica serves again", &[&r.d], || server(&r.d, "replica").state == "up");
}

/// A replica that applies changes late (MariaDB's delayed replication: MASTER_DELAY) falls
/// behind by more than MAX_REPLICATION_LAG: it is skipped with its lag as the reason, and
/// the primary gives the fresh answer; once it has caught up it serves again.
#[test]
fn a_replica_further_behind_than_max_replication_lag_is_skipped() {
    let r = replicated_daemon_with(&[("MAX_REPLICATION_LAG", "2")]);
    assert!(alice_hash(&r.d).ends_with("$5$demo$alicehash"));
    let mut admin = r.replica.admin();
    admin.query_drop("STOP SLAVE").unwrap();
    admin.query_drop("CHANGE MASTER TO MASTER_DELAY = 8").unwrap();
    admin.query_drop("START SLAVE").unwrap();
    r.db.exec("UPDATE indimail SET pw_passwd = '$5$delayed' WHERE pw_name = 'alice'");
    eventually("the lagging replica skipped, the primary's answer", &[&r.d], || {
        let rep = server(&r.d, "replica");
        rep.state == "skipped" && alice_hash(&r.d).ends_with("$5$delayed")
    });
    let rep = server(&r.d, "replica");
    assert!(rep.lag_secs.is_some_and(|l| l > 2), "{rep:?}");
    let p = server(&r.d, "primary").lookups;
    alice_hash(&r.d);
    assert_eq!(server(&r.d, "primary").lookups, p + 1, "the primary serves");
    // The delay passes, the change is applied, the lag falls: the replica serves again,
    // with the new row.
    eventually("the replica caught up and serves again", &[&r.d], || {
        server(&r.d, "replica").state == "up"
    });
    let before = server(&r.d, "replica").lookups;
    assert!(alice_hash(&r.d).ends_with("$5$delayed"));
    assert_eq!(server(&r.d, "replica").lookups, before + 1);
}

/// Two replicas share the reads evenly (round-robin); the primary serves none while both
/// are healthy.
#[test]
fn reads_are_spread_evenly_over_healthy_replicas() {
    let primary = OwnMariadb::start_binlog(1, "ROW");
    let (r1, r2) = (OwnMariadb::start_binlog(2, "ROW"), OwnMariadb::start_binlog(3, "ROW"));
    r1.replicate_from(&primary);
    r2.replicate_from(&primary);
    let db = TestDb::on("127.0.0.1", primary.port);
    replicated(&r1, &db);
    replicated(&r2, &db);
    let opts = Opts::default()
        .env("MYSQL_REPLICAS", &format!("127.0.0.1:{},127.0.0.1:{}", r1.port, r2.port))
        .env("CACHE_TTL", "pwd=0/0");
    let d = Daemon::start_on("127.0.0.1", primary.port, &db.name, opts);
    for _ in 0..10 {
        assert!(alice_hash(&d).ends_with("$5$demo$alicehash"));
    }
    let servers = d.client().ping().unwrap().servers;
    let lookups = |port: u16| {
        let address = format!("127.0.0.1:{port}");
        servers.iter().find(|s| s.address == address).map(|s| s.lookups)
    };
    assert_eq!(
        (lookups(r1.port), lookups(r2.port), lookups(primary.port)),
        (Some(5), Some(5), Some(0)),
        "{servers:?}"
    );
    drop(d);
    drop(db);
}
