//! TCP keepalive on the daemon's MySQL connections, as the kernel reports it: a dead MySQL
//! peer must be found in about a minute, not after the kernel's two hours. (The IMAP
//! sockets' keepalive is checked on the socket itself in `imap/src/conn.rs`.)

use crate::harness::{mysql_addr, Daemon, Opts, TestDb};
use inquery::Lookup;
use std::process::Command;

/// The daemon's established TCP connections to `port`, as `ss -tnpo` prints them.
fn connections_of(pid: i32, port: u16) -> Vec<String> {
    let out = Command::new("ss")
        .args(["-t", "-n", "-p", "-o", "-H", "state", "established"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .expect("run ss (iproute2)");
    assert!(out.status.success(), "ss: {}", String::from_utf8_lossy(&out.stderr));
    let needle = format!("pid={pid},");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Seconds left on a `timer:(keepalive,…)` of an `ss -o` line, if it has one.
fn keepalive_secs(line: &str) -> Option<f64> {
    let t = line.split("timer:(keepalive,").nth(1)?;
    let first = t.split(',').next()?;
    // "16sec", "1min30sec", "899ms"
    let mut secs = 0.0;
    let mut num = String::new();
    let mut rest = first;
    while !rest.is_empty() {
        let c = rest.chars().next()?;
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            rest = &rest[1..];
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let (mult, len) = if rest.starts_with("min") {
            (60.0, 3)
        } else if rest.starts_with("sec") {
            (1.0, 3)
        } else if rest.starts_with("ms") {
            (0.001, 2)
        } else {
            return None;
        };
        secs += n * mult;
        rest = &rest[len..];
    }
    Some(secs)
}

#[test]
fn keepalive_timer_units_parse() {
    assert_eq!(keepalive_secs("x timer:(keepalive,16sec,0) users"), Some(16.0));
    assert_eq!(keepalive_secs("timer:(keepalive,1min30sec,0)"), Some(90.0));
    assert_eq!(keepalive_secs("timer:(keepalive,899ms,0)"), Some(0.899));
    assert_eq!(keepalive_secs("timer:(on,200ms,0)"), None);
}

#[test]
fn mysql_connections_carry_the_configured_keepalive() {
    let db = TestDb::new();
    let d = Daemon::start(
        &db,
        Opts::default()
            .env("TCP_KEEPALIVE_IDLE", "17")
            .env("TCP_KEEPALIVE_INTVL", "5")
            .env("TCP_KEEPALIVE_CNT", "2")
            .env("THREAD_COUNT", "2"),
    );
    let c = d.client();
    // Two different misses at once make both workers connect.
    std::thread::scope(|s| {
        s.spawn(|| c.user_status("testuser@example.com").unwrap());
        s.spawn(|| c.passwd("alice@example.com").unwrap());
    });
    let (_, port) = mysql_addr();
    let conns = connections_of(d.pid(), port);
    assert!(!conns.is_empty(), "no MySQL connection of pid {} seen by ss", d.pid());
    for l in &conns {
        let left = keepalive_secs(l).unwrap_or_else(|| panic!("no keepalive timer: {l}"));
        // The kernel's default would show up to 7200 s; ours counts down from 17.
        assert!(left <= 17.0, "keepalive idle not applied ({left} s left): {l}");
    }
}
