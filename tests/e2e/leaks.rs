//! Reply FIFOs never pile up in FIFOTMPDIR: not after thousands of answered queries, not
//! after timeouts against a stopped daemon, not after the daemon is killed mid-query.

use crate::harness::{entries, Daemon, Opts, TestDb};
use inquery::{Client, Error, Lookup, Phase, QueryKind};
use nix::sys::signal::Signal;
use std::sync::Arc;
use std::time::Duration;

const MIX: [(QueryKind, &str, &str); 7] = [
    (QueryKind::User, "testuser@example.com", ""),
    (QueryKind::Relay, "alice@example.com", "192.0.2.10"),
    (QueryKind::Pwd, "alice@example.com", ""),
    (QueryKind::Host, "nobody@example.com", ""),
    (QueryKind::Alias, "sales@example.com", ""),
    (QueryKind::Limit, "example.com", ""),
    (QueryKind::Domain, "example.org", ""),
];

/// `threads` threads each asking `per_thread` questions of the mix; every result, in order.
fn burst(client: &Arc<Client>, threads: usize, per_thread: usize) -> Vec<Result<(), Error>> {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let c = client.clone();
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        let (kind, email, ip) = MIX[(t + i) % MIX.len()];
                        c.ask(kind, email, ip).map(drop)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles.into_iter().flat_map(|h| h.join().expect("a query thread panicked")).collect()
}

#[test]
fn thousands_of_queries_timeouts_and_a_killed_daemon_leave_no_reply_fifo() {
    let db = TestDb::new();
    let mut d = Daemon::start(&db, Opts::default());
    let mut asked = 0;

    // Answered: 8 threads × 400.
    let ok = burst(&Arc::new(d.client()), 8, 400);
    asked += ok.len();
    let failed: Vec<String> =
        ok.iter().filter_map(|r| r.as_ref().err().map(|e| e.to_string())).collect();
    assert!(failed.is_empty(), "{} failed, first: {:?}", failed.len(), failed.first());
    assert_eq!(entries(&d.tmp), Vec::<String>::new(), "after {asked} answered queries");

    // Stopped: every query times out waiting for the reply, and cleans up after itself.
    d.signal(Signal::SIGSTOP);
    let mut quick = d.client();
    quick.timeouts.read = Duration::from_millis(100);
    let timeouts = burst(&Arc::new(quick), 4, 25);
    asked += timeouts.len();
    assert!(timeouts.iter().all(|r| matches!(r, Err(Error::Timeout { phase: Phase::Read, .. }))));
    assert_eq!(
        entries(&d.tmp),
        Vec::<String>::new(),
        "after 100 timeouts, the daemon still stopped"
    );

    // Killed while queries wait for it: they time out; then every query finds no daemon.
    let mut waiting = d.client();
    waiting.timeouts.read = Duration::from_millis(1500);
    let waiting = Arc::new(waiting);
    let in_flight = std::thread::spawn({
        let c = waiting.clone();
        move || burst(&c, 8, 1)
    });
    std::thread::sleep(Duration::from_millis(300));
    d.signal(Signal::SIGKILL);
    d.child.take().unwrap().wait().unwrap();
    let cut = in_flight.join().unwrap();
    asked += cut.len();
    // Those already waiting time out; one that started late finds no daemon.
    assert!(
        cut.iter().all(|r| matches!(r, Err(Error::Timeout { .. } | Error::NotRunning(_)))),
        "{cut:?}"
    );
    let after = burst(&Arc::new(d.client()), 4, 150);
    asked += after.len();
    assert!(after.iter().all(|r| matches!(r, Err(Error::NotRunning(_)))));

    assert!(asked >= 3800, "{asked}");
    assert_eq!(entries(&d.tmp), Vec::<String>::new(), "FIFOTMPDIR after {asked} queries");
}
