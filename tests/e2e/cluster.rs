//! IndiMail's clustered layout: a central control database (`host.cntrl`: `hostcntrl`,
//! `host_table`, `smtp_port`, `aliasdomain`) and two mail store databases (`mcdinfo`), each
//! a MariaDB of the test's own. `dist.example` is distributed (alice on store A, bob and the
//! alias `sales` on store B, by `hostcntrl`); `local.example` is not (carol, on store A).
//! Every kind is answered from the user's own store; a store that is down costs only its
//! users an answer, and the central database down stops distributed lookups only.

use crate::harness::{Daemon, Opts, OwnMariadb, TestDb};
use inlookup_core::admin::BackendState;
use inquery::{Error, Lookup, UserStatus};
use std::time::{Duration, Instant};

/// The mail stores' mdahosts, as `host_table` spells them.
const IP_A: &str = "10.1.0.1";
const IP_B: &str = "10.1.0.2";

struct Cluster {
    // The databases first: they are dropped before their servers.
    central_db: TestDb,
    a_db: TestDb,
    b_db: TestDb,
    central: OwnMariadb,
    a: OwnMariadb,
    b: OwnMariadb,
}

/// A MySQL user with a password on a server (mcdinfo has no way to say "no password").
fn add_user(db: &TestDb) {
    for host in ["%", "localhost", "127.0.0.1"] {
        db.exec(&format!("CREATE USER IF NOT EXISTS 'inl'@'{host}' IDENTIFIED BY 'pw'"));
        db.exec(&format!("GRANT ALL PRIVILEGES ON *.* TO 'inl'@'{host}'"));
    }
}

fn user_row(db: &TestDb, table: &str, name: &str, domain: &str, gid: u32) {
    db.exec(&format!(
        "INSERT INTO {table} (pw_name, pw_domain, pw_passwd, pw_uid, pw_gid, pw_gecos, pw_dir, \
         pw_shell) VALUES ('{name}', '{domain}', '$5$h${name}', 1, {gid}, '{name}', \
         '/m/{domain}/{name}', '1000')"
    ));
}

impl Cluster {
    fn start() -> Cluster {
        let (central, a, b) = (OwnMariadb::start(), OwnMariadb::start(), OwnMariadb::start());
        let central_db = TestDb::on("127.0.0.1", central.port);
        let a_db = TestDb::on("127.0.0.1", a.port);
        let b_db = TestDb::on("127.0.0.1", b.port);
        for db in [&central_db, &a_db, &b_db] {
            add_user(db);
        }
        let c = &central_db;
        c.exec(
            "INSERT INTO hostcntrl (pw_name, pw_domain, pw_passwd, host) VALUES \
             ('alice', 'dist.example', 'x', 'hostA'), ('bob', 'dist.example', 'x', 'hostB'), \
             ('sales', 'dist.example', 'x', 'hostB'), ('ghost', 'dist.example', 'x', 'hostC')",
        );
        c.exec(&format!(
            "INSERT INTO host_table (host, ipaddr) VALUES ('hostA', '{IP_A}'), ('hostB', '{IP_B}')"
        ));
        c.exec(
            "INSERT INTO smtp_port (host, src_host, domain, port) VALUES \
             ('hostB', '*', 'dist.example', 587)",
        );
        c.exec("INSERT INTO aliasdomain (alias, domain) VALUES ('alias.example', 'local.example')");
        // Decoys on the central database: a lookup that went there would find these.
        user_row(c, "indimail", "bob", "dist.example", 0);
        user_row(c, "indimail", "carol", "local.example", 0);

        user_row(&a_db, "indimail", "alice", "dist.example", 0);
        user_row(&a_db, "indimail", "carol", "local.example", 0);
        user_row(&a_db, "indibak", "old", "local.example", 0);
        user_row(&a_db, "indimail", "dave", "auto.example", 0);
        a_db.exec("INSERT INTO valias (alias, domain, valias_line) VALUES ('team', 'local.example', '&carol@local.example')");
        a_db.exec("INSERT INTO vlimits (domain, maxpopaccounts) VALUES ('dist.example', 3), ('local.example', 11)");
        a_db.exec("INSERT INTO relay (email, ipaddr, timestamp) VALUES ('alice@dist.example', '192.0.2.50', UNIX_TIMESTAMP())");

        user_row(&b_db, "indimail", "bob", "dist.example", 16);
        b_db.exec("INSERT INTO valias (alias, domain, valias_line) VALUES ('sales', 'dist.example', '&bob@dist.example')");
        b_db.exec("INSERT INTO vlimits (domain, maxpopaccounts) VALUES ('dist.example', 7)");
        b_db.exec("INSERT INTO relay (email, ipaddr, timestamp) VALUES ('bob@dist.example', '192.0.2.60', UNIX_TIMESTAMP())");
        Cluster { central_db, a_db, b_db, central, a, b }
    }

    fn mcdinfo(&self) -> String {
        let record = |domain: &str, flag: &str, ip: &str, port: u16, db: &str| {
            format!(
                "domain {domain} {flag}\nserver   127.0.0.1\nmdahost  {ip}\nport     {port}\n\
                 use_ssl  0\ndatabase {db}\nuser     inl\npass     pw\n\n"
            )
        };
        format!(
            "# the mail stores\n{}{}{}",
            record("dist.example", "1", IP_A, self.a.port, &self.a_db.name),
            record("dist.example", "1", IP_B, self.b.port, &self.b_db.name),
            record("local.example", "0", IP_A, self.a.port, &self.a_db.name),
        )
    }

    /// The daemon: host.cntrl names the central database, host.mysql's variables store A.
    fn daemon(&self) -> Daemon {
        self.daemon_with(5, 5)
    }

    /// The same with IndiMail's back-off settings.
    fn daemon_with(&self, max_fail: u32, retry_secs: u64) -> Daemon {
        self.daemon_args(max_fail, retry_secs, &[], &[])
    }

    /// The same with more arguments and variables.
    fn daemon_args(
        &self,
        max_fail: u32,
        retry_secs: u64,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut d = Daemon::prepare(2, 2);
        std::fs::write(
            d.control.join("host.cntrl"),
            format!("127.0.0.1:inl:pw:{}\n", self.central.port),
        )
        .unwrap();
        std::fs::write(d.control.join("mcdinfo"), self.mcdinfo()).unwrap();
        std::fs::write(d.control.join("hostip"), format!("{IP_A}\n")).unwrap();
        // users/assign names a domain mcdinfo lacks: its automatic entry is the local
        // database (host.mysql's: store A here), mdahost the local IP.
        let users = d.dir.join("users");
        std::fs::create_dir_all(&users).unwrap();
        std::fs::write(
            users.join("assign"),
            "+auto.example-:auto.example:555:555:/m/auto.example:-::\n.\n",
        )
        .unwrap();
        let opts = Opts::default()
            .env("CNTRL_DATABASE", &self.central_db.name)
            .env("REAL_DOMAINS", "dist.example:local.example")
            .env("ASSIGNDIR", users.to_str().unwrap())
            .env("MAX_FAIL_ATTEMPTS", &max_fail.to_string())
            .env("MYSQL_RETRY_INTERVAL", &retry_secs.to_string());
        let opts = args.iter().fold(opts, |o, a| o.arg(a));
        let opts = env.iter().fold(opts, |o, (k, v)| o.env(k, v));
        d.spawn("127.0.0.1", self.a.port, &self.a_db.name, &opts);
        d
    }
}

/// Waits until PING says the database whose name contains `what` is in `state`.
fn wait_state(d: &Daemon, what: &str, state: BackendState) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ping = d.client().ping().unwrap();
        if ping.backends.iter().any(|b| b.server.contains(what) && b.state == state) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} never {state:?}: {:#?}", ping.backends);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_kind_is_answered_from_the_users_own_mail_store() {
    let cl = Cluster::start();
    let d = cl.daemon();
    let c = d.client();
    // USER: each user on its store (bob is over quota there, active on the central decoy).
    assert_eq!(c.user_status("alice@dist.example").unwrap(), UserStatus::Active);
    assert_eq!(c.user_status("bob@dist.example").unwrap(), UserStatus::OverQuota);
    assert_eq!(c.user_status("sales@dist.example").unwrap(), UserStatus::Alias);
    assert_eq!(c.user_status("nobody@dist.example").unwrap(), UserStatus::Absent);
    assert_eq!(c.user_status("carol@local.example").unwrap(), UserStatus::Active);
    assert_eq!(c.user_status("old@local.example").unwrap(), UserStatus::Inactive);
    assert_eq!(c.user_status("team@local.example").unwrap(), UserStatus::Alias);
    // A hostcntrl row whose host has no host_table row: an error, as IndiMail's findhost.
    assert!(matches!(c.user_status("ghost@dist.example"), Err(Error::Backend)));

    // PWD.
    let pw = c.passwd("bob@dist.example").unwrap().unwrap();
    assert_eq!((pw.name.as_str(), pw.dir.as_str()), ("bob", "/m/dist.example/bob"));
    assert_eq!(c.passwd("alice@dist.example").unwrap().unwrap().gid, 0);
    assert!(c.passwd("carol@local.example").unwrap().is_some());
    assert!(c.passwd("nobody@local.example").unwrap().is_none());

    // RELAY: the row on the user's store.
    assert!(c.relay_allowed("alice@dist.example", "192.0.2.50").unwrap());
    assert!(c.relay_allowed("bob@dist.example", "192.0.2.60").unwrap());
    assert!(!c.relay_allowed("bob@dist.example", "192.0.2.50").unwrap());

    // HOST: the central database for a distributed domain (smtp_port gives bob's port),
    // the domain's entry for the other.
    let h = c.host("alice@dist.example").unwrap().unwrap();
    assert_eq!((h.domain.as_str(), h.host.as_str(), h.port.as_str()), ("dist.example", IP_A, "25"));
    let h = c.host("bob@dist.example").unwrap().unwrap();
    assert_eq!((h.host.as_str(), h.port.as_str()), (IP_B, "587"));
    assert_eq!(c.host("carol@local.example").unwrap().unwrap().host, IP_A);
    assert_eq!(c.host("nobody@dist.example").unwrap(), None);
    assert_eq!(c.host("nobody@local.example").unwrap(), None);

    // A domain of users/assign only: its automatic entry, on the local database.
    assert_eq!(c.user_status("dave@auto.example").unwrap(), UserStatus::Active);
    assert_eq!(c.host("dave@auto.example").unwrap().unwrap().host, IP_A);

    // ALIAS.
    assert_eq!(c.aliases("sales@dist.example").unwrap(), ["&bob@dist.example"]);
    assert_eq!(c.aliases("team@local.example").unwrap(), ["&carol@local.example"]);
    assert!(c.aliases("alice@dist.example").unwrap().is_empty());

    // LIMIT: a user's domain record on the user's store; a bare domain on the local one.
    assert_eq!(c.limits("bob@dist.example").unwrap().unwrap().maxpopaccounts, 7);
    assert_eq!(c.limits("alice@dist.example").unwrap().unwrap().maxpopaccounts, 3);
    assert_eq!(c.limits("local.example").unwrap().unwrap().maxpopaccounts, 11);
    assert_eq!(c.limits("dist.example").unwrap().unwrap().maxpopaccounts, 3);

    // DOMAIN: the central aliasdomain; its users then resolve to the real domain's store.
    assert_eq!(c.real_domain("alias.example").unwrap(), "local.example");
    assert_eq!(c.real_domain("dist.example").unwrap(), "dist.example");
    assert_eq!(c.user_status("carol@alias.example").unwrap(), UserStatus::Active);

    // PING: one entry per database, named without passwords.
    wait_state(&d, &format!("{}/{}", cl.b.port, cl.b_db.name), BackendState::Up);
    let ping = c.ping().unwrap();
    // Central, local (host.mysql's root on store A), store A (mcdinfo's user), store B.
    assert_eq!(ping.backends.len(), 4, "{:#?}", ping.backends);
    assert!(ping.backends.iter().all(|b| !b.server.contains("pw")));
    assert!(ping.backends.iter().any(|b| b.server.contains("central")));
    assert!(!d.log_text().contains(":pw"), "a password in the log");

    // host.cntrl is watched: pointed elsewhere, the cache is flushed and the central
    // database's lookups fail; put back, they answer again, with no restart and no HUP.
    let cntrl = d.control.join("host.cntrl");
    let good = std::fs::read_to_string(&cntrl).unwrap();
    std::fs::write(&cntrl, "127.0.0.1:inl:pw:1\n").unwrap();
    let until = |what: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !what() {
            assert!(Instant::now() < deadline, "not seen:\n{}", d.log_text());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    until(&|| matches!(c.host("bob@dist.example"), Err(Error::Backend)));
    std::fs::write(&cntrl, good).unwrap();
    until(&|| c.host("bob@dist.example").is_ok_and(|h| h.is_some_and(|h| h.host == IP_B)));
    assert!(d.log_text().contains("cluster layout changed: flushed"), "{}", d.log_text());
}

#[test]
fn a_database_down_costs_only_its_own_users() {
    let cl = Cluster::start();
    let d = cl.daemon();
    let c = d.client();
    assert_eq!(c.user_status("bob@dist.example").unwrap(), UserStatus::OverQuota);
    assert!(c.passwd("alice@dist.example").unwrap().is_some());
    assert_eq!(c.user_status("alice@dist.example").unwrap(), UserStatus::Active);

    // Store B down: bob's new questions fail, his cached one is still answered; alice's
    // and carol's go on, and so does HOST (the central database alone).
    cl.b.stop();
    let b_name = format!("{}/{}", cl.b.port, cl.b_db.name);
    assert!(matches!(c.passwd("bob@dist.example"), Err(Error::Backend)));
    assert_eq!(c.user_status("bob@dist.example").unwrap(), UserStatus::OverQuota, "cached");
    assert!(matches!(c.aliases("sales@dist.example"), Err(Error::Backend)));
    assert_eq!(c.host("bob@dist.example").unwrap().unwrap().host, IP_B);
    assert!(c.passwd("carol@local.example").unwrap().is_some());
    assert_eq!(c.host("alice@dist.example").unwrap().unwrap().host, IP_A);
    assert!(c.relay_allowed("alice@dist.example", "192.0.2.50").unwrap());
    wait_state(&d, &b_name, BackendState::Down);
    let ping = c.ping().unwrap();
    let up: Vec<_> = ping.backends.iter().filter(|b| b.state == BackendState::Up).collect();
    assert_eq!(up.len(), 3, "only store B is down: {:#?}", ping.backends);

    cl.b.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.passwd("bob@dist.example").is_err() {
        assert!(Instant::now() < deadline, "store B never answered again:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }

    // The central database down: distributed lookups fail or come from the cache, never
    // wrong; a domain that is not distributed goes on (IndiMail's would answer nothing).
    cl.central.stop();
    assert_eq!(c.user_status("alice@dist.example").unwrap(), UserStatus::Active, "cached");
    assert!(matches!(c.aliases("alice@dist.example"), Err(Error::Backend)));
    assert_eq!(c.host("bob@dist.example").unwrap().unwrap().host, IP_B, "cached");
    assert!(matches!(c.host("sales@dist.example"), Err(Error::Backend)));
    assert!(matches!(c.user_status("nobody@dist.example"), Err(Error::Backend)));
    assert_eq!(c.user_status("carol@local.example").unwrap(), UserStatus::Active);
    assert_eq!(c.user_status("old@local.example").unwrap(), UserStatus::Inactive);
    assert_eq!(c.host("carol@local.example").unwrap().unwrap().host, IP_A);
    assert_eq!(c.aliases("team@local.example").unwrap(), ["&carol@local.example"]);
    assert_eq!(c.limits("local.example").unwrap().unwrap().maxpopaccounts, 11);
    wait_state(&d, "central", BackendState::Down);
    cl.central.restart();
}

/// Store B's health line (connects and failures are counted per database).
fn store_b(d: &Daemon, b_name: &str) -> inlookup_core::admin::BackendHealth {
    let ping = d.client().ping().unwrap();
    ping.backends.into_iter().find(|b| b.server.contains(b_name)).expect("store B's line")
}

#[test]
fn a_store_that_keeps_failing_is_left_alone_for_mysql_retry_interval() {
    const RETRY: u64 = 6;
    let cl = Cluster::start();
    let d = cl.daemon_with(1, RETRY);
    let c = d.client();
    let b_name = format!("{}/{}", cl.b.port, cl.b_db.name);
    assert!(c.passwd("bob@dist.example").unwrap().is_some());
    let connects = store_b(&d, &b_name).connects;
    cl.b.stop();
    // MAX_FAIL_ATTEMPTS 1: the first two failures are tries (a connect each, refused) ...
    let mut asked = 0;
    while store_b(&d, &b_name).failures < 2 {
        assert!(matches!(c.user_status("bob@dist.example"), Err(Error::Backend)));
        asked += 1;
        assert!(asked <= 2, "more than two failures needed: {:#?}", store_b(&d, &b_name));
    }
    let last_failure = Instant::now();
    // ... then no lookup tries store B until the interval has passed: every worker's
    // question fails at once, and the failures stop counting.
    for _ in 0..8 {
        assert!(matches!(c.aliases("sales@dist.example"), Err(Error::Backend)));
    }
    assert_eq!(store_b(&d, &b_name).failures, 2, "refused without a try");
    // The other store is not held back.
    assert!(c.passwd("alice@dist.example").unwrap().is_some());
    // Store B back at once: still left alone until the interval passes, then used again.
    cl.b.restart();
    // (bob's PWD is cached from the start; his USER answer never was: it must be asked.)
    while c.user_status("bob@dist.example").is_err() {
        assert!(last_failure.elapsed() < Duration::from_secs(RETRY + 30), "never retried");
        std::thread::sleep(Duration::from_millis(100));
    }
    let waited = last_failure.elapsed();
    assert!(
        waited >= Duration::from_millis(RETRY * 1000 - 500),
        "retried after {waited:?}, before MYSQL_RETRY_INTERVAL ({RETRY} s)"
    );
    let b = store_b(&d, &b_name);
    assert_eq!(b.state, BackendState::Up);
    assert!(b.connects > connects, "a new connection after the pause");
}

/// MariaDB's count of SELECTs on one server, over a connection kept for it (the crate's
/// connect runs a SELECT of its own).
fn selects(conn: &mut mysql::Conn) -> u64 {
    use mysql::prelude::Queryable;
    let row: Option<(String, u64)> =
        conn.query_first("SHOW GLOBAL STATUS LIKE 'Com_select'").unwrap();
    row.unwrap().1
}

#[test]
fn dash_c_preloads_from_every_mail_store_only_what_a_lookup_would_find_there() {
    let cl = Cluster::start();
    let login = |db: &TestDb, user: &str, domain: &str| {
        db.exec(&format!(
            "INSERT INTO lastauth (user, domain, service, remote_ip, timestamp) VALUES \
             ('{user}', '{domain}', 'imap', '192.0.2.9', NOW())"
        ));
    };
    login(&cl.a_db, "alice", "dist.example"); // hostcntrl: store A
    login(&cl.a_db, "carol", "local.example"); // not distributed: its first entry, A
    login(&cl.b_db, "bob", "dist.example"); // hostcntrl: store B
                                            // A stale copy of bob on store A, logged in there too: hostcntrl says B, so a lookup
                                            // would never find this row; it must not be preloaded.
    user_row(&cl.a_db, "indimail", "bob", "dist.example", 99);
    login(&cl.a_db, "bob", "dist.example");
    let d = cl.daemon_args(5, 5, &["-c", "3600"], &[]);
    let c = d.client();
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.stats().unwrap().preloaded < 3 {
        assert!(Instant::now() < deadline, "not preloaded:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut admin = [cl.central_db.conn(), cl.a_db.conn(), cl.b_db.conn()];
    let before = admin.each_mut().map(selects);
    let alice = c.passwd("alice@dist.example").unwrap().unwrap();
    let carol = c.passwd("carol@local.example").unwrap().unwrap();
    let bob = c.passwd("bob@dist.example").unwrap().unwrap();
    let after = admin.each_mut().map(selects);
    assert_eq!(after, before, "all three from the preloaded cache, no SELECT anywhere");
    assert_eq!((alice.name.as_str(), carol.name.as_str()), ("alice", "carol"));
    assert_eq!(bob.gid, 16, "bob's row on his own store B, not the stale copy on A");
    let s = c.stats().unwrap();
    assert_eq!(s.preloaded, 3, "the stale copy was left out");
    assert_eq!((s.kinds["pwd"].hits, s.kinds["pwd"].misses), (3, 0));
}

#[test]
fn with_a_pool_of_one_per_database_every_worker_shares_it_and_answers_right() {
    let cl = Cluster::start();
    let d = cl.daemon_args(5, 5, &["--workers", "8"], &[("MYSQL_POOL_PER_DB", "1")]);
    let connects_at_start = d.client().stats().unwrap().mysql_connects;
    std::thread::scope(|s| {
        for t in 0..16 {
            let c = d.client();
            s.spawn(move || {
                for i in 0..20 {
                    // Distinct keys (no coalescing, no cache hits): misses on every store.
                    let bob = c.passwd(&format!("bob{t}x{i}@dist.example")).unwrap();
                    assert!(bob.is_none(), "no such user");
                    let (who, gid) = if i % 2 == 0 { ("alice", 0) } else { ("bob", 16) };
                    if t == 0 {
                        let pw = c.passwd(&format!("{who}@dist.example")).unwrap().unwrap();
                        assert_eq!(pw.gid, gid, "{who} from his own store");
                    }
                    let carol = c.user_status(&format!("carol{t}x{i}@local.example")).unwrap();
                    assert_eq!(carol, UserStatus::Absent);
                }
            });
        }
    });
    assert_eq!(c_pwd(&d, "bob@dist.example"), 16);
    let s = d.client().stats().unwrap();
    assert_eq!(s.totals().backend_errors, 0, "nobody waited too long for the pool");
    // At most one connection per database (central, store A, store B) after the start-up
    // check's; eight workers with their own would have opened up to eight each.
    let opened = s.mysql_connects - connects_at_start;
    assert!(opened <= 3, "{opened} connections opened for 8 workers sharing 1 per database");
}

fn c_pwd(d: &Daemon, who: &str) -> u32 {
    d.client().passwd(who).unwrap().unwrap().gid
}
