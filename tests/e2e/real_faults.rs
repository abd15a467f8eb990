//! Real faults under load (issue 10, item 7): MariaDB SIGKILLed and restarted, MariaDB
//! SIGSTOPped with the worker queue full, the daemon SIGKILLed, Dovecot SIGKILLed, each
//! against the real processes while clients keep asking. The tests count outcomes and
//! check every answer against the one expected for its key; the times in them are generous
//! bounds that only stop a regression from hanging (the benchmark measures the times).

use crate::harness::*;
use inquery::imap::{ImapError, ImapErrorCode, ImapStatus};
use inquery::{Client, Error, QueryKind};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Numbers for keys nobody asked before.
static N: AtomicUsize = AtomicUsize::new(0);

/// How a daemon of these tests is started: its database, options and timeouts, kept so that
/// it can be started again on the same FIFO after a SIGKILL.
#[derive(Clone)]
struct Spec {
    host: String,
    port: u16,
    db: String,
    opts: Opts,
    /// The daemon's timeoutread and timeoutwrite (CONTROLDIR), in seconds.
    timeouts: (u64, u64),
}

impl Spec {
    fn new(host: &str, port: u16, db: &str) -> Spec {
        Spec { host: host.into(), port, db: db.into(), opts: Opts::default(), timeouts: (2, 2) }
    }

    /// A daemon in directories of its own, as the harness makes them.
    fn start(&self) -> Daemon {
        let mut d = Daemon::prepare(self.timeouts.0, self.timeouts.1);
        self.respawn(&mut d);
        d
    }

    /// Starts the daemon (again) on `d`'s directories and FIFO, appending to its log, and
    /// waits until it answers PING.
    fn respawn(&self, d: &mut Daemon) {
        d.spawn(&self.host, self.port, &self.db, &self.opts);
    }
}

/// A client of `d` waiting at most `read` for a reply.
fn client(d: &Daemon, read: Duration) -> Client {
    let mut c = d.client();
    c.timeouts.read = read;
    c
}

/// What one request got.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    /// Exactly the answer expected for its key.
    Right,
    /// `-1`: the daemon's error reply.
    MinusOne,
    /// The client's own timeout.
    Timeout,
    /// No daemon reads the request FIFO (ENXIO or EPIPE).
    NotRunning,
    /// An answer, but not the one for this key.
    Wrong(String),
    /// Any other failure.
    Other(String),
}

fn classify(r: Result<(i32, Vec<u8>), Error>, want: &[u8]) -> Got {
    match r {
        Ok((-1, _)) | Err(Error::Backend) => Got::MinusOne,
        Ok((n, body)) if n as usize == body.len() && body == want => Got::Right,
        Ok((n, body)) => Got::Wrong(format!("{n} {:?}", String::from_utf8_lossy(&body))),
        Err(Error::Timeout { .. }) => Got::Timeout,
        Err(Error::NotRunning(_)) => Got::NotRunning,
        Err(e) => Got::Other(e.to_string()),
    }
}

/// As [`classify`], for a kind whose reply is a bare int.
fn classify_int(r: Result<(i32, Vec<u8>), Error>, want: i32) -> Got {
    match r {
        Ok((n, _)) if n == want => Got::Right,
        Ok((n, _)) if n != -1 => Got::Wrong(n.to_string()),
        r => classify(r, b""),
    }
}

/// The reply bytes of a PWD for a user nobody has: it names the key, so a reply meant for
/// another key is seen.
fn no_such_user(email: &str) -> Vec<u8> {
    format!("PWSTRUCT=No such user {email}\0").into_bytes()
}

/// The pid MariaDB's pid file names.
fn mariadb_pid(own: &OwnMariadb) -> Pid {
    let pid: i32 =
        std::fs::read_to_string(own.dir.join("mysqld.pid")).unwrap().trim().parse().unwrap();
    Pid::from_raw(pid)
}

/// True while `pid` exists and is not a zombie.
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')))
}

/// Waits (at most 15 s: generous, a SIGKILLed process is gone in milliseconds) until none
/// of `pids` runs.
fn wait_gone(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while pids.iter().any(|p| running(*p)) {
        assert!(Instant::now() < deadline, "still running after SIGKILL: {pids:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process stopped with SIGSTOP, continued when dropped, whatever happens.
struct Stopped(Pid);

impl Stopped {
    /// SIGSTOPs `pid` and waits until every one of its threads is stopped: kill() returns
    /// before a busy thread on the other CPU has taken the signal, and a query it is running
    /// then could still be answered. (At most 5 s: generous, a stop takes microseconds.)
    fn new(pid: Pid) -> Stopped {
        kill(pid, Signal::SIGSTOP).unwrap();
        let stopped = || {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return true };
            tasks.filter_map(Result::ok).all(|t| {
                std::fs::read_to_string(t.path().join("stat")).map_or(true, |st| {
                    st.rsplit(") ").next().is_some_and(|r| r.starts_with('T') || r.starts_with('t'))
                })
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !stopped() {
            assert!(Instant::now() < deadline, "MariaDB {pid} did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// The demo users whose PWD answers are the cache hits of these tests.
const HOT: [&str; 3] = ["alice@example.com", "testuser@example.com", "full@example.com"];

/// Their reply bytes, asked once (the first ask is a miss that fills the cache).
fn warm(c: &Client) -> Vec<Vec<u8>> {
    HOT.iter()
        .map(|e| {
            let (n, body) = c.raw(QueryKind::Pwd.byte(), e, "").unwrap();
            assert!(n > 0 && body.starts_with(b"PWSTRUCT="), "{e}: {n}");
            body
        })
        .collect()
}

/// One request of a load thread: what was asked, in which phase it started and ended,
/// what it got and how long it took.
#[derive(Debug)]
struct Call {
    what: &'static str,
    start: u8,
    end: u8,
    got: Got,
    took: Duration,
}

/// Runs `threads` load threads until `stop`: each in turn asks a hit (PWD of a hot user),
/// a miss (PWD of a user nobody has, a new key every time) and, when `user_too`, a USER of
/// a demo user (whose entry a short TTL expires, so serve-stale answers it while MySQL is
/// down). Returns a receiver of each thread's calls.
fn load(
    c: &Client,
    hot: &[Vec<u8>],
    threads: usize,
    user_too: bool,
    phase: &Arc<AtomicU8>,
    stop: &Arc<AtomicBool>,
) -> std::sync::mpsc::Receiver<Vec<Call>> {
    let (tx, rx) = std::sync::mpsc::channel();
    for t in 0..threads {
        let (c, hot, phase, stop, tx) =
            (c.clone(), hot.to_vec(), phase.clone(), stop.clone(), tx.clone());
        std::thread::spawn(move || {
            let mut calls = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let start = phase.load(Ordering::SeqCst);
                let t0 = Instant::now();
                let (what, got) = match i % if user_too { 3 } else { 2 } {
                    0 => {
                        let k = (i / 3 + t) % HOT.len();
                        ("hit", classify(c.raw(QueryKind::Pwd.byte(), HOT[k], ""), &hot[k]))
                    }
                    1 => {
                        let e = format!("ghost-{t}-{i}@example.com");
                        ("miss", classify(c.raw(QueryKind::Pwd.byte(), &e, ""), &no_such_user(&e)))
                    }
                    _ => {
                        // USER of testuser: 0, active.
                        let r = c.raw(QueryKind::User.byte(), "testuser@example.com", "");
                        ("user", classify_int(r, 0))
                    }
                };
                calls.push(Call {
                    what,
                    start,
                    end: phase.load(Ordering::SeqCst),
                    got,
                    took: t0.elapsed(),
                });
                i += 1;
                // A pause, so two cores also run MariaDB, the daemon and the test itself.
                std::thread::sleep(Duration::from_millis(2));
            }
            let _ = tx.send(calls);
        });
    }
    rx
}

/// Every thread's calls, or a panic if one is not back within 60 s (a client that hangs;
/// each of its calls has a timeout of a few seconds).
fn collect(rx: std::sync::mpsc::Receiver<Vec<Call>>, threads: usize) -> Vec<Call> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut all = Vec::new();
    for _ in 0..threads {
        let left = deadline.saturating_duration_since(Instant::now());
        all.extend(rx.recv_timeout(left).expect("a client thread hung"));
    }
    all
}

fn count(calls: &[Call], f: impl Fn(&Call) -> bool) -> usize {
    calls.iter().filter(|c| f(c)).count()
}

#[test]
fn mariadb_sigkilled_mid_load_then_restarted_hits_go_on_and_misses_recover_without_a_restart() {
    let own = OwnMariadb::start();
    let db = TestDb::on("127.0.0.1", own.port);
    let mut spec = Spec::new("127.0.0.1", own.port, &db.name);
    // USER entries expire after 1 s, so during the outage they are served stale.
    spec.opts = spec.opts.env("CACHE_TTL", "user=1/1");
    let d = spec.start();
    // 5 s: a killed server fails a lookup at once (connection refused) and the daemon's
    // MySQL timeout is 2 s; anything near 5 s would be a client left waiting.
    let c = client(&d, Duration::from_secs(5));
    let hot = warm(&c);
    let daemon_pid = c.ping().unwrap().pid;
    let (phase, stop) = (Arc::new(AtomicU8::new(0)), Arc::new(AtomicBool::new(false)));
    let threads = 4;
    let rx = load(&c, &hot, threads, true, &phase, &stop);
    std::thread::sleep(Duration::from_millis(500));

    // Phase 1: MariaDB SIGKILLed (no shutdown, connections cut), until it is gone; phase 2:
    // 1.5 s of outage, longer than USER's TTL.
    let pid = mariadb_pid(&own);
    phase.store(1, Ordering::SeqCst);
    kill(pid, Signal::SIGKILL).unwrap();
    wait_gone(&[pid.as_raw()]);
    phase.store(2, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1500));
    // Phase 3: restarting it (InnoDB recovers from the crash meanwhile).
    phase.store(3, Ordering::SeqCst);
    own.restart();
    // Phase 4: back; until one new miss is answered. Generous 20 s bound: workers reconnect
    // on their next lookup, which takes milliseconds.
    phase.store(4, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = format!("probe-{}@example.com", N.fetch_add(1, Ordering::SeqCst));
        if classify(c.raw(QueryKind::Pwd.byte(), &e, ""), &no_such_user(&e)) == Got::Right {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Phase 5: recovered; everything is answered again.
    phase.store(5, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    let calls = collect(rx, threads);

    let bad: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c.got, Got::Timeout | Got::NotRunning | Got::Wrong(_) | Got::Other(_)))
        .collect();
    assert!(bad.is_empty(), "never a wrong answer, a timeout or another failure: {bad:?}");
    let before: Vec<&Call> = calls.iter().filter(|c| c.end == 0).collect();
    assert!(
        !before.is_empty() && before.iter().all(|c| c.got == Got::Right),
        "{:?}",
        before.iter().filter(|c| c.got != Got::Right).collect::<Vec<_>>()
    );
    // During the outage (started or ended in phases 1-3): every hit is answered right...
    let out = |c: &Call| (1..=3).contains(&c.start) || (1..=3).contains(&c.end);
    let hits = count(&calls, |c| out(c) && c.what == "hit");
    assert!(hits > 0, "hits kept coming");
    assert_eq!(count(&calls, |c| out(c) && c.what == "hit" && c.got == Got::Right), hits);
    // ...and misses get -1 (or, had one been cached before, a stale answer).
    let misses = count(&calls, |c| c.start == 2 && c.end == 2 && c.what == "miss");
    assert!(misses > 0);
    assert_eq!(
        count(&calls, |c| c.start == 2 && c.end == 2 && c.got == Got::MinusOne && c.what == "miss"),
        misses,
        "with MariaDB dead a new key cannot be answered"
    );
    let s = c.stats().unwrap();
    assert!(s.kinds["user"].stale_served > 0, "expired USER entries served stale: {s:?}");
    assert!(s.kinds["pwd"].backend_errors > 0);
    // After the restart: every lookup answered, by the same daemon.
    let after = count(&calls, |c| c.start == 5);
    assert!(after > 0);
    assert_eq!(count(&calls, |c| c.start == 5 && c.got == Got::Right), after, "recovered");
    assert_eq!(c.ping().unwrap().pid, daemon_pid, "no daemon restart");
    eprintln!(
        "mariadb kill: {} calls, {} during the outage ({} hits right, {} misses -1), {} after, \
         {} stale USER answers",
        calls.len(),
        count(&calls, out),
        hits,
        misses,
        after,
        s.kinds["user"].stale_served
    );
}

#[test]
fn mariadb_sigstopped_with_the_queue_full_refuses_beyond_it_at_once_and_hits_go_on() {
    let own = OwnMariadb::start();
    let db = TestDb::on("127.0.0.1", own.port);
    let mut spec = Spec::new("127.0.0.1", own.port, &db.name);
    spec.opts = spec.opts.arg("--workers").arg("1").arg("--queue").arg("2");
    // The daemon's MySQL read timeout is timeoutread: 10 s holds the worker on the frozen
    // server far longer than the burst below takes, even on a loaded machine.
    spec.timeouts = (10, 2);
    let d = spec.start();
    let c = client(&d, Duration::from_secs(5));
    let hot = warm(&c);
    let stopped = Stopped::new(mariadb_pid(&own));

    // Three misses fill the pool: one on the worker (its query unanswered), two queued.
    // Their clients wait 60 s: they are answered only once MariaDB runs again. They go in
    // one at a time: the daemon counts a job its idle worker has not yet taken against the
    // queue, so a second miss right behind the first can be refused; such a one (-1 at
    // once) is asked again under another key.
    let mut patient = c.clone();
    patient.timeouts.read = Duration::from_secs(60);
    let mut occupants = Vec::new();
    let mut refused_early = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while occupants.len() < 3 {
        let (p, i) = (patient.clone(), N.fetch_add(1, Ordering::SeqCst));
        let t = std::thread::spawn(move || {
            let e = format!("queued-{i}@example.com");
            classify(p.raw(QueryKind::Pwd.byte(), &e, ""), &no_such_user(&e))
        });
        loop {
            assert!(Instant::now() < deadline, "the misses never got in flight");
            if t.is_finished() {
                assert_eq!(t.join().unwrap(), Got::MinusOne);
                refused_early += 1;
                std::thread::sleep(Duration::from_millis(50));
                break;
            }
            if c.stats().unwrap().in_flight as usize == occupants.len() + 1 {
                occupants.push(t);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert!(refused_early < 5, "{refused_early} misses refused with a free queue slot");
    let full_before = c.stats().unwrap().kinds["pwd"].queue_full;

    // Beyond the queue: -1 at once, each, while the three are still held (in_flight 3 after
    // the burst proves none of the burst was queued); hits are answered meanwhile.
    let burst = 8;
    for i in 0..burst {
        let e = format!("refused-{i}@example.com");
        assert_eq!(
            classify(c.raw(QueryKind::Pwd.byte(), &e, ""), &no_such_user(&e)),
            Got::MinusOne
        );
        let k = i % HOT.len();
        assert_eq!(classify(c.raw(QueryKind::Pwd.byte(), HOT[k], ""), &hot[k]), Got::Right);
    }
    let s = c.stats().unwrap();
    assert_eq!(s.in_flight, 3, "the burst was refused, not queued");
    assert_eq!(s.kinds["pwd"].queue_full - full_before, burst as u64);
    assert!(occupants.iter().all(|t| !t.is_finished()), "held by the frozen server");

    // SIGCONT: the held lookups finish (their answers, or -1 had the 10 s read timeout
    // passed on a very slow machine: never the client's timeout), and misses are answered.
    drop(stopped);
    for t in occupants {
        let got = t.join().unwrap();
        assert!(matches!(got, Got::Right | Got::MinusOne), "{got:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = format!("later-{}@example.com", N.fetch_add(1, Ordering::SeqCst));
        if classify(c.raw(QueryKind::Pwd.byte(), &e, ""), &no_such_user(&e)) == Got::Right {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 0..5 {
        let e = format!("after-{i}@example.com");
        assert_eq!(classify(c.raw(QueryKind::Pwd.byte(), &e, ""), &no_such_user(&e)), Got::Right);
    }
    assert_eq!(c.stats().unwrap().kinds["pwd"].queue_full - full_before, burst as u64);
}

#[test]
fn the_daemon_sigkilled_under_load_fails_every_client_fast_and_a_restart_serves_at_once() {
    let db = TestDb::new();
    let spec = Spec::new(&db.host, db.port, &db.name);
    let mut d = spec.start();
    let timeout = Duration::from_secs(2);
    let c = client(&d, timeout);
    let hot = warm(&c);
    let fifo = d.fifos[0].clone();
    let (phase, stop) = (Arc::new(AtomicU8::new(0)), Arc::new(AtomicBool::new(false)));
    let threads = 6;
    let rx = load(&c, &hot, threads, false, &phase, &stop);
    std::thread::sleep(Duration::from_millis(500));

    // SIGKILL: no TERM handling, no FIFO removed. Phase 1 from the kill, phase 2 once the
    // process is reaped.
    let mut child = d.child.take().unwrap();
    phase.store(1, Ordering::SeqCst);
    child.kill().unwrap();
    child.wait().unwrap();
    phase.store(2, Ordering::SeqCst);
    // Longer than the clients' timeout, so that even the calls in flight at the kill are
    // followed by calls that find the daemon gone.
    std::thread::sleep(timeout + Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    let calls = collect(rx, threads);

    // Every call returned: within its own 2 s timeout plus a generous 3 s for a loaded
    // machine (a hang would be the test's 60 s collection bound).
    let slowest = calls.iter().map(|c| c.took).max().unwrap();
    assert!(slowest < timeout + Duration::from_secs(3), "a call took {slowest:?}");
    // Before the kill, right answers; one in flight at the kill fails with no daemon or its
    // timeout; once the daemon is gone every call finds no reader (ENXIO) at once.
    let before: Vec<&Call> = calls.iter().filter(|c| c.end == 0).collect();
    assert!(!before.is_empty() && before.iter().all(|c| c.got == Got::Right), "{before:?}");
    let across: Vec<&Call> = calls.iter().filter(|c| c.start < 2 && c.end > 0).collect();
    assert!(
        across.iter().all(|c| matches!(c.got, Got::Right | Got::NotRunning | Got::Timeout)),
        "{across:?}"
    );
    let after = count(&calls, |c| c.start == 2);
    assert!(after > 0);
    assert_eq!(count(&calls, |c| c.start == 2 && c.got == Got::NotRunning), after);
    assert!(fifo.exists(), "a SIGKILLed daemon leaves its FIFO");

    // A new daemon on the same FIFO serves at once: its first answers are right.
    spec.respawn(&mut d);
    assert_eq!(d.fifos[0], fifo);
    let c = client(&d, timeout);
    assert_ne!(c.ping().unwrap().pid, child.id());
    for round in 0..5 {
        for (k, want) in HOT.iter().zip(&hot) {
            assert_eq!(classify(c.raw(QueryKind::Pwd.byte(), k, ""), want), Got::Right);
        }
        let e = format!("reborn-{round}@example.com");
        assert_eq!(classify(c.raw(QueryKind::Pwd.byte(), &e, ""), &no_such_user(&e)), Got::Right);
    }
    // Clients removed their own reply FIFOs on every path, timeouts included.
    assert_eq!(entries(&d.tmp), Vec::<String>::new());
}

/// Every process of the session `sid` (Dovecot's master daemonizes into one of its own).
fn session_pids(sid: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // After the command name: state, ppid, pgrp, session.
        let f: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
        if f.get(3).and_then(|s| s.parse::<i32>().ok()) == Some(sid) {
            pids.push(pid);
        }
    }
    pids
}

fn imap_code<T: std::fmt::Debug>(r: Result<T, ImapError>) -> ImapErrorCode {
    match r {
        Err(e) => e.code().unwrap_or_else(|| panic!("no code: {e}")),
        Ok(v) => panic!("expected a failure, got {v:?}"),
    }
}

#[test]
fn dovecot_sigkilled_fails_the_session_with_its_code_and_a_new_login_works_after_a_restart() {
    use crate::imap::Dovecot;
    let dv = Dovecot::start();
    let db = TestDb::new();
    let d = Daemon::start(&db, dv.opts());
    let c = crate::imap::client(&d);
    let daemon_pid = c.ping().unwrap().pid;
    assert!(!c.imap_login("bob", "hunter2", "rf", "").unwrap().reused);
    assert_eq!(c.imap_command("rf", "a1 SELECT INBOX").unwrap().status, ImapStatus::Ok);

    // SIGKILL to every Dovecot process (master, login, auth, bob's imap): no goodbye, the
    // kernel closes the connection.
    let master: i32 =
        std::fs::read_to_string(dv.dir.join("run/master.pid")).unwrap().trim().parse().unwrap();
    let pids = session_pids(master);
    assert!(pids.contains(&master) && pids.len() > 1, "{pids:?}");
    for p in &pids {
        let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
    }
    wait_gone(&pids);

    // docs/protocol.md §7.4: the server closed the connection is `disconnected`, the
    // session's connection is closed (then `no_session`), and an unreachable server is
    // `connect`.
    assert_eq!(imap_code(c.imap_command("rf", "a2 NOOP")), ImapErrorCode::Disconnected);
    assert_eq!(imap_code(c.imap_command("rf", "a3 NOOP")), ImapErrorCode::NoSession);
    assert_eq!(imap_code(c.imap_login("bob", "hunter2", "rf", "")), ImapErrorCode::Connect);

    // The master's pid file names a process that is gone, but may be a zombie nobody reaps
    // (a container's PID 1), which Dovecot's `kill(pid, 0)` takes for a live master.
    std::fs::remove_file(dv.dir.join("run/master.pid")).unwrap();
    let out = Command::new(root().join("scripts/dovecot.sh"))
        .arg("start")
        .arg(&dv.dir)
        .arg(dv.port.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "restart: {}", String::from_utf8_lossy(&out.stderr));
    let login = c.imap_login("bob", "hunter2", "rf", "").unwrap();
    assert!(!login.reused, "a new IMAP login");
    assert_eq!(c.imap_command("rf", "a4 SELECT INBOX").unwrap().status, ImapStatus::Ok);
    assert!(c.imap_logout("rf").unwrap(), "parked");
    let s = c.stats().unwrap().imap;
    assert_eq!((s.closed_broken, s.connect_failures), (1, 1), "{s:?}");
    assert_eq!(c.ping().unwrap().pid, daemon_pid, "no restart of inlookup");
}
