//! TLS to MySQL: IndiMail's `ssl` field (host.mysql, MYSQL_HOST's colon form, host.cntrl)
//! and mcdinfo's `use_ssl 1` give a TLS connection, checked against MYSQL_TLS_CA (and the
//! public roots) unless MYSQL_TLS_VERIFY=0. A throwaway MariaDB offers TLS with a test CA's
//! certificate; its user `tlsuser` is REQUIRE SSL, so an answer proves the connection was
//! TLS.

use crate::harness::*;
use inlookup_core::admin::BackendState;
use inquery::{Lookup, UserStatus};
use std::time::{Duration, Instant};

fn tls_server() -> (TempDir, std::path::PathBuf, OwnMariadb, TestDb) {
    let (files, ca, cert, key) = tls_files();
    let own = OwnMariadb::start_tls(Some((&ca, &cert, &key)));
    let db = TestDb::on("127.0.0.1", own.port);
    for host in ["%", "localhost", "127.0.0.1"] {
        db.exec(&format!(
            "CREATE USER IF NOT EXISTS 'tlsuser'@'{host}' IDENTIFIED BY 'pw' REQUIRE SSL"
        ));
        db.exec(&format!("GRANT ALL PRIVILEGES ON *.* TO 'tlsuser'@'{host}'"));
    }
    (files, ca, own, db)
}

/// A daemon on the TLS server as `tlsuser`, MYSQL_HOST in IndiMail's colon form with
/// `ssl` (or without) and these variables.
fn daemon(own: &OwnMariadb, db: &TestDb, ssl: bool, env: &[(&str, &str)]) -> Daemon {
    let host = if ssl { "127.0.0.1::::ssl" } else { "127.0.0.1" };
    let opts = Opts::default()
        .env("MYSQL_HOST", host)
        .env("MYSQL_USER", "tlsuser")
        .env("MYSQL_PASSWD", "pw");
    let opts = env.iter().fold(opts, |o, (k, v)| o.env(k, v));
    Daemon::start_on("127.0.0.1", own.port, &db.name, opts)
}

fn wait_down(d: &Daemon) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ping = d.client().ping().unwrap();
        if let Some(b) = ping.backends.iter().find(|b| b.state == BackendState::Down) {
            return b.error.clone().unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "never down: {:#?}", ping.backends);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_ssl_field_gives_a_verified_tls_connection_and_without_it_a_tls_only_user_is_refused() {
    let (_files, ca, own, db) = tls_server();
    let ca = ca.to_str().unwrap();
    let d = daemon(&own, &db, true, &[("MYSQL_TLS_CA", ca)]);
    let c = d.client();
    assert_eq!(c.user_status("alice@example.com").unwrap(), UserStatus::Active);
    assert!(c.passwd("testuser@example.com").unwrap().is_some());
    assert!(d.log_text().contains("(TLS)"), "the log says TLS: {}", d.log_text());
    drop(d);
    // No ssl field: plain, which the REQUIRE SSL user may not use.
    let d = daemon(&own, &db, false, &[("MYSQL_TLS_CA", ca)]);
    assert!(d.client().user_status("alice@example.com").is_err());
    let e = wait_down(&d);
    assert!(e.contains("Access denied"), "{e}");
}

#[test]
fn a_certificate_no_trusted_ca_signed_is_refused_unless_verification_is_off_by_name() {
    let (_files, _ca, own, db) = tls_server();
    let d = daemon(&own, &db, true, &[]);
    assert!(d.client().user_status("alice@example.com").is_err(), "the test CA is not trusted");
    let e = wait_down(&d);
    assert!(!e.is_empty());
    drop(d);
    let d = daemon(&own, &db, true, &[("MYSQL_TLS_VERIFY", "0")]);
    assert_eq!(d.client().user_status("alice@example.com").unwrap(), UserStatus::Active);
}
