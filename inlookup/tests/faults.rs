//! The server driven in-process with backends built to fail or to stall: what clients get
//! when the backend errors, hangs, or is flooded. (The real MariaDB stopped and restarted
//! is covered by the end-to-end tests.)

// Helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use inlookup::backend::{Backend, BackendError, BackendFactory, Backends};
use inlookup::signals::{self, Control, ControlHandle};
use inlookup::{Args, Config, Listener};
use inlookup_core::{Answer, QueryKind, UserStatus};
use inquery::{Client, Error, Lookup};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the test backend does.
#[derive(Clone, Default)]
struct Script {
    /// Every call fails.
    fail: bool,
    /// Calls block until the gate opens.
    gate: Option<Arc<(Mutex<bool>, Condvar)>>,
    /// Calls made, across all workers.
    calls: Arc<AtomicUsize>,
    /// This many calls panic (counting down), then calls answer again.
    panics: Arc<AtomicUsize>,
    /// Backends made by the factory (the daemon's start-up check makes one too).
    made: Arc<AtomicUsize>,
    /// The backends that answered a lookup, by the number the factory gave them.
    answered_by: Arc<Mutex<std::collections::BTreeSet<usize>>>,
}

struct TestBackend(Script, usize);

impl Backend for TestBackend {
    fn answer(&mut self, kind: QueryKind, email: &str, _ip: &str) -> Result<Answer, BackendError> {
        self.0.answered_by.lock().unwrap().insert(self.1);
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(g) = &self.0.gate {
            let (lock, cv) = &**g;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
        }
        if self.0.fail {
            return Err("backend built to fail".into());
        }
        if self
            .0
            .panics
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("backend built to panic");
        }
        Ok(match kind {
            QueryKind::User if email.starts_with("absent") => {
                Answer::User { status: UserStatus::Absent }
            }
            _ => Answer::User { status: UserStatus::Active },
        })
    }

    fn reset(&mut self) {}
}

struct Served {
    dir: PathBuf,
    handle: ControlHandle,
    thread: Option<JoinHandle<()>>,
    client: Client,
}

impl Served {
    fn start(script: Script, extra: &[&str]) -> Served {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "inl-faults-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let fifo = dir.join("infifo");
        let mut argv = vec!["inlookup".to_string(), "-f".into(), fifo.display().to_string()];
        argv.extend(["--fifo-tmpdir".to_string(), dir.join("tmp").display().to_string()]);
        argv.extend(extra.iter().map(|s| s.to_string()));
        let args = <Args as clap::Parser>::try_parse_from(argv).unwrap();
        let cfg = Config::from_args(args, &|_| None).unwrap();
        let listener = Listener::bind(&cfg).unwrap();
        let (handle, controls) = signals::channel().unwrap();
        let factory: BackendFactory = Arc::new(move || {
            let n = script.made.fetch_add(1, Ordering::SeqCst);
            Box::new(TestBackend(script.clone(), n)) as Box<dyn Backend>
        });
        let thread = std::thread::spawn(move || {
            inlookup::run(cfg, listener, Backends::new(factory), controls).unwrap();
        });
        let mut client = Client::for_fifo(&fifo);
        client.tmpdir = dir.join("tmp");
        client.timeouts.read = Duration::from_secs(3);
        Served { dir, handle, thread: Some(thread), client }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.handle.send(Control::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `n` clients ask USER for `email` at once; returns once all of them were read (all but
/// the first joined its lookup), with their threads.
fn coalesced_users(s: &Served, email: &str, n: u64) -> Vec<JoinHandle<Result<UserStatus, Error>>> {
    let asking = (0..n)
        .map(|_| {
            let (c, email) = (s.client.clone(), email.to_string());
            std::thread::spawn(move || c.user_status(&email))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    while s.client.stats().unwrap().kinds["user"].coalesced < n - 1 {
        assert!(Instant::now() < deadline, "requests not coalesced");
        std::thread::sleep(Duration::from_millis(20));
    }
    asking
}

fn open(gate: &Arc<(Mutex<bool>, Condvar)>) {
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
}

#[test]
fn a_failing_backend_gets_error_replies_and_the_daemon_keeps_serving() {
    let script = Script { fail: true, ..Script::default() };
    let calls = script.calls.clone();
    let s = Served::start(script, &[]);
    for _ in 0..3 {
        assert!(matches!(s.client.user_status("a@x"), Err(Error::Backend)));
    }
    let st = s.client.stats().unwrap();
    assert_eq!(st.kinds["user"].backend_errors, 3);
    assert_eq!(st.cache_entries, 0, "failures are never cached");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn a_stalled_backend_never_stalls_cache_hits() {
    let gate = Arc::new((Mutex::new(true), Condvar::new()));
    let script = Script { gate: Some(gate.clone()), ..Script::default() };
    let s = Served::start(script, &["--workers", "2"]);
    assert_eq!(s.client.user_status("cached@x").unwrap(), UserStatus::Active);
    // Now every worker hangs in the backend.
    *gate.0.lock().unwrap() = false;
    let stuck: Vec<_> = (0..2)
        .map(|i| {
            let c = s.client.clone();
            std::thread::spawn(move || c.user_status(&format!("slow{i}@x")))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // Hits, PING and STATS are answered by the I/O thread while both workers are stuck.
    for _ in 0..50 {
        assert_eq!(s.client.user_status("cached@x").unwrap(), UserStatus::Active);
    }
    assert!(s.client.ping().is_ok());
    assert_eq!(s.client.stats().unwrap().in_flight, 2);
    open(&gate);
    for t in stuck {
        assert_eq!(t.join().unwrap().unwrap(), UserStatus::Active);
    }
}

#[test]
fn a_full_queue_gets_an_immediate_error_not_a_growing_wait() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let script = Script { gate: Some(gate.clone()), ..Script::default() };
    let s = Served::start(script, &["--workers", "1", "--queue", "1"]);
    // One lookup runs (stuck), one waits in the queue; the third finds the queue full.
    let busy: Vec<_> = (0..2)
        .map(|i| {
            let c = s.client.clone();
            let t = std::thread::spawn(move || c.user_status(&format!("q{i}@x")));
            std::thread::sleep(Duration::from_millis(100));
            t
        })
        .collect();
    // An error reply, not the client's 3 s timeout (which would be Error::Timeout).
    assert!(matches!(s.client.user_status("q2@x"), Err(Error::Backend)));
    assert_eq!(s.client.stats().unwrap().kinds["user"].queue_full, 1);
    open(&gate);
    for b in busy {
        assert_eq!(b.join().unwrap().unwrap(), UserStatus::Active);
    }
}

#[test]
fn identical_misses_in_flight_are_one_backend_call() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let script = Script { gate: Some(gate.clone()), ..Script::default() };
    let calls = script.calls.clone();
    let s = Served::start(script, &["--workers", "4"]);
    // Wait until all 20 requests were read (19 joined the first).
    let waiting = coalesced_users(&s, "Same@X", 20);
    open(&gate);
    for w in waiting {
        assert_eq!(w.join().unwrap().unwrap(), UserStatus::Active);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(s.client.stats().unwrap().kinds["user"].misses, 20);
}

#[test]
fn a_flush_while_a_lookup_is_in_flight_keeps_its_stale_result_out_of_the_cache() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let script = Script { gate: Some(gate.clone()), ..Script::default() };
    let s = Served::start(script, &[]);
    let c = s.client.clone();
    let t = std::thread::spawn(move || c.user_status("racy@x"));
    std::thread::sleep(Duration::from_millis(100));
    s.handle.send(Control::FlushAndReconnect);
    std::thread::sleep(Duration::from_millis(50));
    open(&gate);
    assert_eq!(t.join().unwrap().unwrap(), UserStatus::Active, "the waiting client is answered");
    assert_eq!(
        s.client.stats().unwrap().cache_entries,
        0,
        "but the pre-flush result is not cached"
    );
}

#[test]
fn shutdown_answers_lookups_in_flight_within_the_grace() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let script = Script { gate: Some(gate.clone()), ..Script::default() };
    let mut s = Served::start(script, &["--shutdown-grace", "5"]);
    let c = s.client.clone();
    let t = std::thread::spawn(move || c.user_status("inflight@x"));
    std::thread::sleep(Duration::from_millis(100));
    s.handle.send(Control::Shutdown);
    std::thread::sleep(Duration::from_millis(100));
    let fifo = s.dir.join("infifo");
    assert!(!fifo.exists(), "FIFO removed at once");
    open(&gate);
    assert_eq!(t.join().unwrap().unwrap(), UserStatus::Active);
    s.thread.take().unwrap().join().unwrap();
}

#[test]
fn a_worker_that_panics_answers_its_key_with_an_error_and_a_new_worker_serves_it_next() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let script = Script {
        gate: Some(gate.clone()),
        panics: Arc::new(AtomicUsize::new(1)),
        ..Script::default()
    };
    let (calls, answered_by) = (script.calls.clone(), script.answered_by.clone());
    let s = Served::start(script, &["--workers", "1"]);
    // Three requests wait for the one lookup, which panics once the gate opens.
    let joined = coalesced_users(&s, "boom@x", 3);
    open(&gate);
    // Every one of them gets the error reply, not its timeout.
    for j in joined {
        assert!(matches!(j.join().unwrap(), Err(Error::Backend)));
    }
    let st = s.client.stats().unwrap();
    assert_eq!(st.in_flight, 0, "the panicked lookup left no in-flight entry");
    assert_eq!(st.cache_entries, 0, "and nothing cached");
    // The next request for the key is a new lookup on a new backend, and is answered.
    assert_eq!(s.client.user_status("boom@x").unwrap(), UserStatus::Active);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(answered_by.lock().unwrap().len(), 2, "the one worker replaced its backend once");
    assert_eq!(s.client.user_status("boom@x").unwrap(), UserStatus::Active, "now a hit");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
