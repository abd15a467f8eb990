//! Each of IndiMail's seven kinds, found and not found, against the demo data.

use crate::harness::{Daemon, Opts, TempDir, TestDb};
use inquery::{Error, Lookup, QueryKind, UserStatus};

#[test]
fn user_reports_every_status() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let c = d.client();
    assert_eq!(c.user_status("testuser@example.com").unwrap(), UserStatus::Active);
    assert_eq!(c.user_status("nobody@example.com").unwrap(), UserStatus::Absent);
    assert_eq!(c.user_status("olduser@example.com").unwrap(), UserStatus::Inactive);
    assert_eq!(c.user_status("full@example.com").unwrap(), UserStatus::OverQuota);
    assert_eq!(c.user_status("sales@example.com").unwrap(), UserStatus::Alias);
    // Case and the alias domain are folded as MySQL and IndiMail do.
    assert_eq!(c.user_status("TestUser@Example.COM").unwrap(), UserStatus::Active);
    assert_eq!(c.user_status("testuser@example.org").unwrap(), UserStatus::Active);
}

#[test]
fn relay_needs_a_recent_row_for_that_ip() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let c = d.client();
    assert!(c.relay_allowed("alice@example.com", "192.0.2.10").unwrap());
    assert!(!c.relay_allowed("alice@example.com", "192.0.2.11").unwrap());
    assert!(!c.relay_allowed("bob@example.com", "192.0.2.10").unwrap());
    // A row older than RELAY_CLEAR_MINUTES (60 by default, as IndiMail's) does not count.
    db.exec("INSERT INTO relay VALUES ('old@example.com','192.0.2.20', UNIX_TIMESTAMP() - 4*3600)");
    assert!(!c.relay_allowed("old@example.com", "192.0.2.20").unwrap());
    db.exec("INSERT INTO relay VALUES ('hour@example.com','192.0.2.21', UNIX_TIMESTAMP() - 61*60)");
    assert!(!c.relay_allowed("hour@example.com", "192.0.2.21").unwrap(), "61 minutes: too old");
    db.exec(
        "INSERT INTO relay VALUES ('fresh@example.com','192.0.2.22', UNIX_TIMESTAMP() - 59*60)",
    );
    assert!(c.relay_allowed("fresh@example.com", "192.0.2.22").unwrap(), "59 minutes: still in");
    // Without an IP the client refuses before sending (IndiMail: EINVAL).
    assert!(matches!(c.relay_allowed("alice@example.com", ""), Err(Error::BadArgument(_))));
}

#[test]
fn pwd_gives_indimails_pwstruct_bytes() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let c = d.client();
    let (n, body) = c.raw(3, "alice@example.com", "").unwrap();
    let want = "PWSTRUCT=alice@example.com:{SCRAM-SHA-256}4096$c2FsdA==$c3RvcmVk$c2VydmVy,$5$demo$alicehash:1:0:Alice:/home/mail/example.com/alice:100000000:0\0";
    assert_eq!(String::from_utf8_lossy(&body), want);
    assert_eq!(n as usize, want.len(), "the length counts the trailing NUL");

    let pw = c.passwd("testuser@example.com").unwrap().expect("testuser exists");
    assert_eq!((pw.name.as_str(), pw.domain.as_str()), ("testuser", "example.com"));
    assert_eq!(pw.passwd, "$5$rounds=5000$demo$Z3k9dEmoHashOnlyForDemo0");
    assert_eq!((pw.uid, pw.gid, pw.shell.as_str(), pw.inactive), (1, 0, "524288000", false));

    let old = c.passwd("olduser@example.com").unwrap().expect("inactive users are found");
    assert!(old.inactive);

    let (n, body) = c.raw(3, "nobody@example.com", "").unwrap();
    assert_eq!((n, body.as_slice()), (41, &b"PWSTRUCT=No such user nobody@example.com\0"[..]));
    assert_eq!(c.passwd("nobody@example.com").unwrap(), None);
}

#[test]
fn host_gives_domain_host_port_or_nothing() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let c = d.client();
    let (n, body) = c.raw(4, "testuser@example.com", "").unwrap();
    assert_eq!((n, body.as_slice()), (25, &b"example.com:127.0.0.1:25\0"[..]));
    let h = c.host("alice@example.com").unwrap().unwrap();
    assert_eq!(
        (h.domain.as_str(), h.host.as_str(), h.port.as_str()),
        ("example.com", "10.0.0.5", "25")
    );
    assert_eq!(c.raw(4, "nobody@example.com", "").unwrap(), (0, vec![]));
    assert_eq!(c.host("nobody@example.com").unwrap(), None);
}

#[test]
fn alias_lists_lines_or_a_lone_nul() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let c = d.client();
    assert_eq!(
        c.aliases("sales@example.com").unwrap(),
        vec!["&alice@example.com", "&testuser@example.com"]
    );
    assert_eq!(c.raw(5, "alice@example.com", "").unwrap(), (1, vec![0]), "none: length 1, a NUL");
    assert!(c.aliases("alice@example.com").unwrap().is_empty());
}

#[test]
fn limit_gives_the_vlimits_record() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let c = d.client();
    let (n, body) = c.raw(6, "example.com", "").unwrap();
    assert_eq!((n, body.len()), (128, 128), "sizeof(struct vlimits) on x86-64");
    let l = c.limits("example.com").unwrap().expect("row");
    assert_eq!((l.maxpopaccounts, l.maxaliases, l.maxforwards), (100, 50, -1));
    assert_eq!(
        (l.diskquota, l.defaultquota, l.disable_imap, l.disable_pop, l.perm_quota),
        (1073741824, 52428800, 1, 0, 3)
    );
    assert_eq!(l.limit_type, 1);
    // A user's limits come from their domain; a user of a domain without a row gets defaults.
    assert_eq!(c.limits("alice@example.com").unwrap(), Some(l));
    let dflt = c.limits("someone@example.net").unwrap().expect("defaults for a user");
    assert_eq!((dflt.maxaliases, dflt.limit_type), (-1, 0));
    // A bare domain without a row: length 0, as the original.
    assert_eq!(c.raw(6, "example.net", "").unwrap(), (0, vec![]));
    assert_eq!(c.limits("example.net").unwrap(), None);
}

#[test]
fn domain_resolves_alias_domains_or_echoes() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let c = d.client();
    assert_eq!(c.real_domain("example.org").unwrap(), "example.com");
    assert_eq!(c.real_domain("example.net").unwrap(), "example.net");
    assert_eq!(c.raw(7, "example.net", "").unwrap(), (12, b"example.net\0".to_vec()));
    let answer = c.ask(QueryKind::Domain, "Example.ORG", "").unwrap();
    assert!(!answer.is_negative(), "an alias domain is a positive answer: {answer:?}");
}

#[test]
fn default_domain_applies_to_bare_names() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default().env("DEFAULT_DOMAIN", "example.com"));
    let c = d.client();
    assert_eq!(c.user_status("testuser").unwrap(), UserStatus::Active);
    assert_eq!(c.passwd("alice").unwrap().unwrap().domain, "example.com");
    // Both spellings share one cache entry.
    let s = c.stats().unwrap();
    c.passwd("alice@example.com").unwrap();
    let s2 = c.stats().unwrap();
    assert_eq!(s2.kinds["pwd"].hits, s.kinds["pwd"].hits + 1);
}

#[test]
fn host_of_a_user_whose_domain_is_not_distributed_is_the_local_ip_as_indimail_answers() {
    let db = TestDb::new();
    let t = TempDir::new("hostip");
    let ctl = t.join("control");
    std::fs::create_dir_all(&ctl).unwrap();
    for (f, v) in [("timeoutread", "2\n"), ("timeoutwrite", "2\n"), ("hostip", "192.0.2.99\n")] {
        std::fs::write(ctl.join(f), v).unwrap();
    }
    let d = Daemon::start(&db, Opts::default().env("CONTROLDIR", ctl.to_str().unwrap()));
    let c = d.client();
    // `full` has no hostcntrl row: its domain's mail store is this host (control/hostip).
    let (n, body) = c.raw(4, "full@example.com", "").unwrap();
    assert_eq!(String::from_utf8_lossy(&body), "example.com:192.0.2.99:25\0");
    assert_eq!(n as usize, body.len());
    // An inactive user (in indibak) lives here too; a user nobody has does not.
    assert_eq!(c.host("olduser@example.com").unwrap().unwrap().host, "192.0.2.99");
    assert_eq!(c.host("nobody@example.com").unwrap(), None);
    // A hostcntrl row still decides for a user of a distributed domain.
    assert_eq!(c.host("alice@example.com").unwrap().unwrap().host, "10.0.0.5");
}

#[test]
fn a_lookup_in_a_domain_whose_real_domain_is_known_is_one_select() {
    use crate::harness::OwnMariadb;
    use mysql::prelude::Queryable;
    // A MariaDB of the test's own, so that its Com_select counts this daemon's statements
    // only; one worker, so that one connection (already open) runs them all.
    let own = OwnMariadb::start();
    let db = TestDb::on("127.0.0.1", own.port);
    let d = Daemon::start_on(
        "127.0.0.1",
        own.port,
        &db.name,
        Opts::default().arg("--workers").arg("1"),
    );
    let c = d.client();
    assert_eq!(c.user_status("nobody@nowhere.example").unwrap(), UserStatus::Absent);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while c.ping().unwrap().backends[0].state != inlookup_core::admin::BackendState::Up {
        assert!(std::time::Instant::now() < deadline, "the start-up check never reported");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut admin = db.conn();
    let mut selects = || -> u64 {
        let row: Option<(String, u64)> =
            admin.query_first("SHOW GLOBAL STATUS LIKE 'Com_select'").unwrap();
        row.unwrap().1
    };
    let mut delta = |what: &dyn Fn()| {
        let before = selects();
        what();
        selects() - before
    };
    // example.com's real domain is not known yet: the alias domain lookup, then the user.
    assert_eq!(delta(&|| assert!(c.passwd("alice@example.com").unwrap().is_some())), 2);
    // Now it is known (kept apart from the cache): one statement per miss in that domain.
    assert_eq!(delta(&|| assert!(c.passwd("testuser@example.com").unwrap().is_some())), 1);
    assert_eq!(
        delta(&|| assert_eq!(c.user_status("full@example.com").unwrap(), UserStatus::OverQuota)),
        1
    );
    // An alias domain asked by DOMAIN first: then its users' misses are one statement too.
    assert_eq!(delta(&|| assert_eq!(c.real_domain("example.org").unwrap(), "example.com")), 1);
    assert_eq!(
        delta(&|| assert_eq!(c.user_status("alice@example.org").unwrap(), UserStatus::Active)),
        1
    );
}

#[test]
fn dash_c_preloads_recently_active_users_so_their_first_pwd_asks_mysql_nothing() {
    use crate::harness::OwnMariadb;
    use mysql::prelude::Queryable;
    let own = OwnMariadb::start();
    let db = TestDb::on("127.0.0.1", own.port);
    // alice (IMAP) and testuser (POP3) logged in just now; full two days ago; olduser is
    // inactive (indibak), which IndiMail's preload does not read either.
    db.exec(
        "INSERT INTO lastauth (user, domain, service, remote_ip, timestamp) VALUES \
         ('alice','example.com','imap','192.0.2.1',NOW()), \
         ('testuser','example.com','pop3','192.0.2.2',NOW() - INTERVAL 10 MINUTE), \
         ('full','example.com','imap','192.0.2.3',NOW() - INTERVAL 2 DAY), \
         ('olduser','example.com','imap','192.0.2.4',NOW())",
    );
    let d =
        Daemon::start_on("127.0.0.1", own.port, &db.name, Opts::default().arg("-c").arg("3600"));
    let c = d.client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while c.stats().unwrap().preloaded < 2 {
        assert!(std::time::Instant::now() < deadline, "nothing preloaded:\n{}", d.log_text());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(c.stats().unwrap().preloaded, 2);
    let mut admin = db.conn();
    let mut selects = || -> u64 {
        let row: Option<(String, u64)> =
            admin.query_first("SHOW GLOBAL STATUS LIKE 'Com_select'").unwrap();
        row.unwrap().1
    };
    let before = selects();
    let alice = c.passwd("alice@example.com").unwrap().unwrap();
    let testuser = c.passwd("testuser@example.com").unwrap().unwrap();
    assert_eq!(selects(), before, "answered from the preloaded cache, no SELECT");
    assert_eq!((alice.name.as_str(), testuser.name.as_str()), ("alice", "testuser"));
    let s = c.stats().unwrap();
    assert_eq!((s.kinds["pwd"].hits, s.kinds["pwd"].misses), (2, 0));
    // Not preloaded: a miss, as ever, and the same answer a preloaded entry would be.
    assert!(c.passwd("full@example.com").unwrap().is_some());
    assert_eq!(c.stats().unwrap().kinds["pwd"].misses, 1);
    assert!(d.log_text().contains("preloaded 2 PWD answers"), "{}", d.log_text());
    // A preloaded answer is byte for byte what a lookup gives.
    let (_, preloaded) = c.raw(3, "testuser@example.com", "").unwrap();
    c.flush(Some(QueryKind::Pwd), Some("testuser@example.com")).unwrap();
    let (_, looked_up) = c.raw(3, "testuser@example.com", "").unwrap();
    assert_eq!(String::from_utf8_lossy(&preloaded), String::from_utf8_lossy(&looked_up));
}

#[test]
fn dash_c_without_a_lastauth_table_says_so_and_serves() {
    let db = TestDb::new();
    db.exec("DROP TABLE lastauth");
    let d = Daemon::start(&db, Opts::default().arg("-c").arg("600"));
    d.wait_log("-c: no preload");
    let c = d.client();
    assert_eq!(c.user_status("alice@example.com").unwrap(), UserStatus::Active);
    assert_eq!(c.stats().unwrap().preloaded, 0);
}
