//! The metrics listener, scraped by a real HTTP client (ureq) and read by a real parser of
//! the exposition format (prometheus-parse), against the numbers STATS gives.

use crate::harness::*;
use inquery::{Lookup, UserStatus};
use prometheus_parse::{Scrape, Value};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn scrape(port: u16) -> Result<Scrape, String> {
    let mut r =
        ureq::get(&format!("http://127.0.0.1:{port}/metrics")).call().map_err(|e| e.to_string())?;
    let ctype =
        r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let body = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).map_err(|e| e.to_string())
}

fn value(s: &Scrape, metric: &str, label: Option<(&str, &str)>) -> f64 {
    let found = s
        .samples
        .iter()
        .find(|x| x.metric == metric && label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)));
    match found.map(|x| &x.value) {
        Some(Value::Counter(v)) | Some(Value::Gauge(v)) | Some(Value::Untyped(v)) => *v,
        other => panic!("{metric} {label:?}: {other:?}"),
    }
}

#[test]
fn metrics_are_scraped_over_http_and_agree_with_stats() {
    let db = TestDb::new();
    let port = free_port();
    let d = Daemon::start(
        &db,
        Opts::default().arg("--metrics-listen").arg(&format!("127.0.0.1:{port}")),
    );
    let c = d.client();
    for _ in 0..3 {
        assert_eq!(c.user_status("alice@example.com").unwrap(), UserStatus::Active);
    }
    assert!(c.passwd("nobody@example.com").unwrap().is_none());
    let m = scrape(port).unwrap();
    let st = c.stats().unwrap();
    let user = &st.kinds["user"];
    assert_eq!(value(&m, "inlookup_requests_total", Some(("kind", "user"))), user.requests as f64);
    assert_eq!(value(&m, "inlookup_hits_total", Some(("kind", "user"))), 2.0);
    assert_eq!(value(&m, "inlookup_misses_total", Some(("kind", "user"))), 1.0);
    assert_eq!(value(&m, "inlookup_misses_total", Some(("kind", "pwd"))), 1.0);
    assert_eq!(value(&m, "inlookup_cache_capacity", None), st.cache_capacity as f64);
    assert_eq!(value(&m, "inlookup_workers", None), 4.0);
    assert_eq!(value(&m, "inlookup_queue_depth", None), 0.0);
    assert_eq!(value(&m, "inlookup_replies_failed_total", Some(("cause", "full"))), 0.0);
    let server = &st.backends[0].server;
    assert_eq!(value(&m, "inlookup_backend_up", Some(("server", server))), 1.0);
    assert!(value(&m, "inlookup_backend_connects_total", Some(("server", server))) >= 1.0);
    assert!(m.docs.contains_key("inlookup_imap_reused_total"), "every family has its HELP");
    // Unknown paths: 404.
    let e = ureq::get(&format!("http://127.0.0.1:{port}/")).call().unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
}

#[test]
fn a_scraper_outside_the_allow_list_gets_nothing() {
    let db = TestDb::new();
    let port = free_port();
    let opts = Opts::default()
        .arg("--metrics-listen")
        .arg(&format!("127.0.0.1:{port}"))
        .env("METRICS_ALLOW", "192.0.2.0/24");
    let d = Daemon::start(&db, opts);
    let e = scrape(port).unwrap_err();
    assert!(e.contains("403"), "{e}");
    assert!(d.client().ping().is_ok());
}

#[test]
fn a_bad_metrics_address_is_refused_at_start() {
    let out = std::process::Command::new(bin("inlookup"))
        .args(["--metrics-listen", "localhost", "-f", "/nonexistent/infifo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(100));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("METRICS_LISTEN") && err.contains("ADDRESS:PORT"), "{err}");
}
