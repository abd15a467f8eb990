//! IMAP sessions against a real Dovecot (scripts/dovecot.sh), one Dovecot per test so its
//! log counts only that test's logins (and a wrong password's login delay stays there).
//!
//! Never log in as `alice@example.com`: the demo data sends that user to 10.0.0.5.

use crate::harness::{root, Daemon, Opts, TestDb};
use inquery::imap::{ImapError, ImapErrorCode, ImapStatus};
use inquery::Client;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static N: AtomicUsize = AtomicUsize::new(0);

/// A throwaway Dovecot of the test's own.
pub(crate) struct Dovecot {
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    env: Vec<(&'static str, &'static str)>,
}

impl Dovecot {
    pub(crate) fn start() -> Dovecot {
        Dovecot::start_with(&[])
    }

    fn start_with(env: &[(&'static str, &'static str)]) -> Dovecot {
        // Serialised and retried once: a free port found by one start can be taken by
        // another before Dovecot binds it.
        static STARTING: Mutex<()> = Mutex::new(());
        let _g = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = String::new();
        for _ in 0..2 {
            let dir = std::env::temp_dir().join(format!(
                "inl-dovecot-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let mut cmd = Command::new(root().join("scripts/dovecot.sh"));
            cmd.arg("start").arg(&dir).envs(env.iter().copied());
            let out = cmd.output().expect("run scripts/dovecot.sh");
            if out.status.success() {
                let line = String::from_utf8_lossy(&out.stdout).into_owned();
                let port =
                    line.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("port");
                return Dovecot { dir, port, env: env.to_vec() };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            let _ = Command::new(root().join("scripts/dovecot.sh")).arg("stop").arg(&dir).status();
            let _ = std::fs::remove_dir_all(&dir);
        }
        panic!("dovecot.sh start: {last}");
    }

    /// Daemon options pointing IMAP here.
    pub(crate) fn opts(&self) -> Opts {
        Opts::default().env("IMAP_HOST", "127.0.0.1").env("IMAP_PORT", &self.port.to_string())
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }

    /// Successful IMAP logins of `user`, as Dovecot logged them.
    pub(crate) fn logins(&self, user: &str) -> usize {
        let needle = format!("Login: user=<{user}>");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// Checks that Dovecot logged exactly `n` logins of `user`, once it has logged `n`: it
    /// logs a login asynchronously, possibly after the client has its `OK`.
    pub(crate) fn wait_logins(&self, user: &str, n: usize) {
        eventually(&format!("Dovecot logged {n} logins of {user}"), || self.logins(user) >= n);
        assert_eq!(self.logins(user), n, "logins of {user}:\n{}", self.log());
    }

    /// Logins of `user` Dovecot refused (it logs one line per refused connection).
    fn refusals(&self, user: &str) -> usize {
        let needle = format!("user=<{user}>");
        self.log().lines().filter(|l| l.contains(&needle) && l.contains("auth failed")).count()
    }

    /// Sessions of `user` that ended with a LOGOUT.
    fn logged_out(&self, user: &str) -> usize {
        let needle = format!("imap({user})");
        self.log().lines().filter(|l| l.contains(&needle) && l.contains("Logged out")).count()
    }

    /// The client address (`rip`) of each of `user`'s logins, as Dovecot logged them.
    pub(crate) fn login_ips(&self, user: &str) -> Vec<String> {
        let needle = format!("Login: user=<{user}>");
        self.log()
            .lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| l.split("rip=").nth(1)?.split(',').next().map(str::to_string))
            .collect()
    }

    /// Trusts ID's `x-originating-ip` from 127.0.0.0/8 (login_trusted_networks), and waits
    /// until the reloaded master has it.
    pub(crate) fn trust_loopback(&self) {
        let conf = self.dir.join("dovecot.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        std::fs::write(&conf, format!("login_trusted_networks = 127.0.0.0/8\n{text}")).unwrap();
        let reloads = || self.log().matches("reloading configuration").count();
        let before = reloads();
        let master: i32 = std::fs::read_to_string(self.dir.join("run/master.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(master),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
        eventually("Dovecot reloaded its configuration", || reloads() > before);
    }

    /// Sessions of `user` that ended.
    fn disconnects(&self, user: &str) -> usize {
        let needle = format!("imap({user})");
        self.log().lines().filter(|l| l.contains(&needle) && l.contains("Disconnected")).count()
    }

    /// The pid of the mail process serving `user`'s latest login, from a whole line of
    /// Dovecot's log (it is read while Dovecot appends to it: a line cut short could name
    /// another pid), and only once that pid is an `imap` process (it is about to be
    /// stopped).
    fn mail_pid(&self, user: &str) -> i32 {
        let needle = format!("Login: user=<{user}>");
        let mut pid = 0;
        eventually("Dovecot logged the login and its imap process runs", || {
            let log = self.log();
            let whole = log.rsplit_once('\n').map_or("", |(lines, _)| lines);
            pid = whole
                .lines()
                .rev()
                .find(|l| l.contains(&needle))
                .and_then(|l| l.split("mpid=").nth(1)?.split(',').next()?.parse().ok())
                .unwrap_or(0);
            pid > 0
                && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "imap")
        });
        pid
    }

    pub(crate) fn adduser(&self, user: &str, password: &str) {
        let st = Command::new(root().join("scripts/dovecot.sh"))
            .arg("adduser")
            .arg(&self.dir)
            .arg(user)
            .arg(password)
            .status()
            .expect("run scripts/dovecot.sh");
        assert!(st.success());
    }

    fn stop(&self) {
        let st = Command::new(root().join("scripts/dovecot.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status()
            .expect("run scripts/dovecot.sh");
        assert!(st.success());
    }

    fn restart(&self) {
        let out = Command::new(root().join("scripts/dovecot.sh"))
            .arg("start")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .envs(self.env.iter().copied())
            .output()
            .expect("run scripts/dovecot.sh");
        assert!(out.status.success(), "restart: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- dovecot log ---\n{}", self.log());
        }
        let _ = Command::new(root().join("scripts/dovecot.sh")).arg("stop").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Dovecot mail process held with SIGSTOP (so its connection's command stays busy),
/// continued when dropped, whatever happens.
struct Frozen(i32);

impl Frozen {
    fn new(pid: i32) -> Frozen {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGSTOP)
            .expect("SIGSTOP a mail process");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGCONT,
        );
    }
}

/// A client patient enough for IMAP on a busy test machine.
pub(crate) fn client(d: &Daemon) -> Client {
    let mut c = d.client();
    c.timeouts.read = Duration::from_secs(20);
    c
}

/// A client for requests the test itself holds up (a frozen mail process): they may wait
/// as long as the test's own steps take on a loaded machine, not just a server's time.
fn patient(d: &Daemon) -> Client {
    let mut c = d.client();
    c.timeouts.read = Duration::from_secs(120);
    c
}

/// Waits (at most 15 s) until `cond` holds.
pub(crate) fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn imap_stats(c: &Client) -> inlookup_core::admin::ImapStats {
    c.stats().expect("STATS").imap
}

fn code(r: Result<impl std::fmt::Debug, ImapError>) -> ImapErrorCode {
    match r {
        Err(e) => e.code().unwrap_or_else(|| panic!("no code: {e}")),
        Ok(v) => panic!("expected a failure, got {v:?}"),
    }
}

#[test]
fn reuse_is_proved_by_dovecot_counting_one_login_for_many_of_ours() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let d = Daemon::start(&db, dv.opts());
    let c = client(&d);
    for i in 0..6 {
        let login = c.imap_login("alice", "secret", "web-1", "192.0.2.7").unwrap();
        assert_eq!(login.reused, i > 0, "round {i}");
        assert!(login.capabilities.iter().any(|c| c == "IMAP4REV1"));
        let sel = c.imap_command("web-1", &format!("s{i} SELECT INBOX")).unwrap();
        assert_eq!((sel.tag.as_str(), sel.status), (format!("s{i}").as_str(), ImapStatus::Ok));
        let text = String::from_utf8(sel.response).unwrap();
        assert!(text.contains("* 1 EXISTS\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n") && text.lines().last().unwrap().starts_with(&format!("s{i} OK")),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with('L')), "our own tags never show: {text}");
        let f = c.imap_command("web-1", &format!("f{i} FETCH 1 (BODY.PEEK[])")).unwrap();
        let text = String::from_utf8(f.response).unwrap();
        assert!(text.contains("this is the seeded test message"), "{text}");
        assert!(c.imap_logout("web-1").unwrap(), "parked");
    }
    dv.wait_logins("alice", 1); // one login for six of ours
    let s = imap_stats(&c);
    assert_eq!((s.created, s.reused, s.parked, s.idle, s.in_use), (1, 5, 6, 1, 0));
    let st = c.stats().unwrap();
    assert_eq!(st.kinds["imap-login"].requests, 6);
    assert_eq!(st.kinds["imap-cmd"].requests, 12);
    // USR1 logs the same counters on one line.
    d.signal(nix::sys::signal::Signal::SIGUSR1);
    d.wait_log("IMAP: 1 created, 5 reused, 6 parked, 0 reclaimed, 0 closed idle, 0 closed broken, 0 closed; now 0 in use (0 busy), 1 idle, 0 opening; peaks 1 open, 1 in use; auth cache 0 hits");
}

#[test]
fn a_different_password_session_key_or_ip_never_reuses() {
    let dv = Dovecot::start();
    dv.adduser("carol", "pw-one");
    let db = TestDb::new();
    let d = Daemon::start(&db, dv.opts());
    let c = client(&d);
    assert!(!c.imap_login("carol", "pw-one", "s1", "").unwrap().reused);
    c.imap_logout("s1").unwrap();
    assert!(!c.imap_login("carol", "pw-one", "s2", "").unwrap().reused, "another session key");
    c.imap_logout("s2").unwrap();
    assert!(!c.imap_login("carol", "pw-one", "s1", "192.0.2.9").unwrap().reused, "another IP");
    c.imap_logout("s1").unwrap();
    dv.wait_logins("carol", 3);
    // A wrong password on a session whose connection is parked gets no connection.
    assert_eq!(code(c.imap_login("carol", "not-pw-one", "s1", "")), ImapErrorCode::AuthFailed);
    assert_eq!(dv.logins("carol"), 3);
    let s = imap_stats(&c);
    assert_eq!((s.reused, s.created, s.login_failures), (0, 3, 1));
    assert_eq!(code(c.imap_command("s1", "a NOOP")), ImapErrorCode::NoSession, "not logged in");
}

#[test]
fn idle_expiry_closes_the_backend_connection() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let d = Daemon::start(&db, dv.opts().env("IMAP_IDLE_TIMEOUT", "1"));
    let c = client(&d);
    c.imap_login("alice", "secret", "k", "").unwrap();
    c.imap_command("k", "a SELECT INBOX").unwrap();
    assert!(c.imap_logout("k").unwrap());
    eventually("the idle connection is closed", || imap_stats(&c).closed_idle == 1);
    eventually("Dovecot saw the session end", || dv.disconnects("alice") == 1);
    assert!(dv.log().contains("Logged out"), "closed with a LOGOUT:\n{}", dv.log());
    let s = imap_stats(&c);
    assert_eq!((s.idle, s.in_use), (0, 0));
    assert!(!c.imap_login("alice", "secret", "k", "").unwrap().reused);
    dv.wait_logins("alice", 2);
}

#[test]
fn with_parking_off_logout_closes_the_connection() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let d = Daemon::start(&db, dv.opts().env("IMAP_PARK", "0"));
    let c = client(&d);
    c.imap_login("alice", "secret", "p", "").unwrap();
    assert!(c.imap_login("alice", "secret", "p", "").unwrap().reused, "the session's own");
    assert!(!c.imap_logout("p").unwrap(), "closed, not parked");
    eventually("Dovecot saw a logout", || dv.disconnects("alice") == 1);
    assert!(!c.imap_login("alice", "secret", "p", "").unwrap().reused);
    let s = imap_stats(&c);
    assert_eq!((s.created, s.reused, s.parked, s.closed), (2, 1, 0, 1));
}

#[test]
fn a_full_pool_reclaims_the_longest_idle_and_never_a_busy_one() {
    let dv = Dovecot::start();
    dv.adduser("carol", "pw-c");
    dv.adduser("dave", "pw-d");
    let db = TestDb::new();
    let d = Daemon::start(&db, dv.opts().env("IMAP_MAX_CONNECTIONS", "2"));
    let c = client(&d);
    c.imap_login("alice", "secret", "sa", "").unwrap();
    c.imap_logout("sa").unwrap();
    c.imap_login("bob", "hunter2", "sb", "").unwrap();
    // Bob's connection runs a command that cannot finish while his mail process is stopped.
    let frozen_bob = Frozen::new(dv.mail_pid("bob"));
    // Its client waits for as long as the steps below take, however loaded the machine.
    let cb = patient(&d);
    let bob_cmd = std::thread::spawn(move || cb.imap_command("sb", "b1 NOOP"));
    eventually("bob's command is running", || imap_stats(&c).busy == 1);
    // Full: alice's parked connection is the only one not busy, and it goes.
    assert!(!c.imap_login("carol", "pw-c", "sc", "").unwrap().reused);
    eventually("alice's connection was logged out", || dv.disconnects("alice") == 1);
    assert_eq!(imap_stats(&c).reclaimed, 1);
    // Now both connections run commands: nothing can be reclaimed, the login backs off
    // and gets a clear "busy".
    let frozen_carol = Frozen::new(dv.mail_pid("carol"));
    let cc = patient(&d);
    let carol_cmd = std::thread::spawn(move || cc.imap_command("sc", "c1 NOOP"));
    eventually("carol's command is running", || imap_stats(&c).busy == 2);
    assert_eq!(code(c.imap_login("dave", "pw-d", "sd", "")), ImapErrorCode::Busy);
    let s = imap_stats(&c);
    assert_eq!((s.busy_replies, s.reclaimed, s.closed_broken), (1, 1, 0));
    // The busy commands were never disturbed: each gets its own answer (bob's first, so
    // his connection is the one idle longest afterwards).
    drop(frozen_bob);
    let b = bob_cmd.join().unwrap().unwrap();
    assert_eq!((b.tag.as_str(), b.status), ("b1", ImapStatus::Ok));
    drop(frozen_carol);
    let r = carol_cmd.join().unwrap().unwrap();
    assert_eq!((r.tag.as_str(), r.status), ("c1", ImapStatus::Ok));
    // With both idle again, dave's login takes the place of the one idle longest (bob's).
    assert!(!c.imap_login("dave", "pw-d", "sd", "").unwrap().reused);
    assert_eq!(code(c.imap_command("sb", "b2 NOOP")), ImapErrorCode::NoSession);
    assert_eq!(c.imap_command("sc", "c2 NOOP").unwrap().status, ImapStatus::Ok);
    let s = imap_stats(&c);
    assert_eq!((s.reclaimed, s.peak_open, s.created), (2, 2, 4));
}

#[test]
fn a_client_that_gives_up_mid_command_leaves_its_connection_in_step() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let d = Daemon::start(&db, dv.opts());
    let c = client(&d);
    c.imap_login("alice", "secret", "v", "").unwrap();
    c.imap_command("v", "a SELECT INBOX").unwrap();
    {
        let _frozen = Frozen::new(dv.mail_pid("alice"));
        let mut impatient = c.clone();
        impatient.timeouts.read = Duration::from_millis(300);
        let r = impatient.imap_command("v", "v1 FETCH 1 (BODY[])");
        assert!(matches!(r, Err(ImapError::Query(inquery::Error::Timeout { .. }))), "{r:?}");
    }
    // The daemon read the whole answer for nobody; the next command gets exactly its own.
    eventually("the abandoned command's reply found nobody", || {
        c.stats().expect("STATS").vanished_clients >= 1
    });
    let r = c.imap_command("v", "v2 NOOP").unwrap();
    let text = String::from_utf8(r.response).unwrap();
    assert!(!text.contains("seeded test message") && !text.contains("v1"), "{text}");
    assert!(text.lines().last().unwrap().starts_with("v2 OK"), "{text}");
    assert_eq!(imap_stats(&c).closed_broken, 0);
}

#[test]
fn an_aborted_command_closes_its_connection_never_reused() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let d = Daemon::start(&db, dv.opts().env("IMAP_COMMAND_TIMEOUT", "1"));
    let c = client(&d);
    c.imap_login("alice", "secret", "t", "").unwrap();
    {
        let _frozen = Frozen::new(dv.mail_pid("alice"));
        assert_eq!(code(c.imap_command("t", "t1 FETCH 1 (BODY[])")), ImapErrorCode::Timeout);
    }
    assert_eq!(imap_stats(&c).closed_broken, 1);
    assert_eq!(code(c.imap_command("t", "t2 NOOP")), ImapErrorCode::NoSession);
    assert!(!c.imap_login("alice", "secret", "t", "").unwrap().reused, "a fresh connection");
    let r = c.imap_command("t", "t3 NOOP").unwrap();
    assert!(String::from_utf8(r.response).unwrap().starts_with("t3 OK"));
    dv.wait_logins("alice", 2);
}

#[test]
fn dovecot_restarted_under_use_and_inlookup_recovers() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let d = Daemon::start(&db, dv.opts());
    let c = client(&d);
    let pid = c.ping().unwrap().pid;
    c.imap_login("alice", "secret", "a", "").unwrap();
    c.imap_login("bob", "hunter2", "b", "").unwrap();
    c.imap_logout("b").unwrap();
    let mail_pids = [dv.mail_pid("alice"), dv.mail_pid("bob")];
    dv.stop();
    eventually("Dovecot's mail processes are gone", || {
        mail_pids.iter().all(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map_or(true, |s| s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')))
        })
    });
    assert_eq!(code(c.imap_command("a", "x NOOP")), ImapErrorCode::Disconnected);
    assert_eq!(code(c.imap_login("bob", "hunter2", "b", "")), ImapErrorCode::Connect);
    dv.restart();
    assert!(!c.imap_login("alice", "secret", "a", "").unwrap().reused);
    assert_eq!(c.imap_command("a", "y SELECT INBOX").unwrap().status, ImapStatus::Ok);
    assert!(!c.imap_login("bob", "hunter2", "b", "").unwrap().reused);
    let s = imap_stats(&c);
    assert_eq!((s.closed_broken, s.connect_failures, s.in_use), (2, 1, 2));
    assert_eq!(c.ping().unwrap().pid, pid, "no restart of inlookup");
}

#[test]
fn starttls_to_a_self_signed_dovecot_is_refused_unless_trusted_or_verification_is_off() {
    let dv = Dovecot::start_with(&[("DOVECOT_TLS", "1")]);
    let db = TestDb::new();
    let tls = dv.opts().env("IMAP_TLS", "starttls");
    {
        let d = Daemon::start(&db, tls.clone());
        let e = client(&d).imap_login("alice", "secret", "s", "").unwrap_err();
        assert_eq!(e.code(), Some(ImapErrorCode::Tls), "{e}");
        assert!(e.to_string().contains("certificate"), "{e}");
        assert_eq!(dv.logins("alice"), 0, "no password went out");
    }
    {
        let d = Daemon::start(&db, tls.clone().env("IMAP_TLS_VERIFY", "0"));
        let c = client(&d);
        c.imap_login("alice", "secret", "s", "").unwrap();
        assert_eq!(c.imap_command("s", "a SELECT INBOX").unwrap().status, ImapStatus::Ok);
        assert!(d.log_text().contains("NOT verified"), "the start line says so");
    }
    {
        let ca = dv.dir.join("ssl/cert.pem");
        let d = Daemon::start(&db, tls.env("IMAP_CA_FILE", ca.to_str().unwrap()));
        let c = client(&d);
        c.imap_login("alice", "secret", "s", "").unwrap();
        assert_eq!(c.imap_command("s", "a NOOP").unwrap().status, ImapStatus::Ok);
    }
    assert!(dv.log().contains("TLS"), "Dovecot saw TLS sessions:\n{}", dv.log());
    dv.wait_logins("alice", 2);
}

#[test]
fn imaps_speaks_tls_from_the_first_byte() {
    let dv = Dovecot::start_with(&[("DOVECOT_TLS", "1")]);
    // The script leaves the IMAPS listener off; turn it on in its generated config and
    // have the running master reload it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = dv.dir.join("dovecot.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let off = "inet_listener imaps {\n    port = 0\n  }";
    assert!(text.contains(off), "the script's config changed:\n{text}");
    std::fs::write(
        &conf,
        text.replace(off, &format!("inet_listener imaps {{\n    port = {port}\n  }}")),
    )
    .unwrap();
    let master: i32 =
        std::fs::read_to_string(dv.dir.join("run/master.pid")).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(master), nix::sys::signal::Signal::SIGHUP)
        .unwrap();
    eventually("the IMAPS listener is up", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let db = TestDb::new();
    let imaps = Opts::default()
        .env("IMAP_HOST", "127.0.0.1")
        .env("IMAP_PORT", &port.to_string())
        .env("IMAP_TLS", "imaps");
    {
        let d = Daemon::start(&db, imaps.clone());
        assert_eq!(
            code(client(&d).imap_login("alice", "secret", "s", "")),
            ImapErrorCode::Tls,
            "system roots do not know it"
        );
    }
    let ca = dv.dir.join("ssl/cert.pem");
    let d = Daemon::start(&db, imaps.env("IMAP_CA_FILE", ca.to_str().unwrap()));
    let c = client(&d);
    c.imap_login("alice", "secret", "s", "").unwrap();
    assert_eq!(c.imap_command("s", "a SELECT INBOX").unwrap().status, ImapStatus::Ok);
    assert!(c.imap_logout("s").unwrap());
    assert!(
        c.imap_login("alice", "secret", "s", "").unwrap().reused,
        "a TLS connection is reused too"
    );
    dv.wait_logins("alice", 1);
}

#[test]
fn literals_tags_and_refusals() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let d = Daemon::start(&db, dv.opts());
    let c = client(&d);
    c.imap_login("alice", "secret", "l", "").unwrap();
    // A message whose body holds CRLFs and lines that look like completions.
    let msg = "Subject: tricky\r\n\r\nline one\r\nL3 OK fake completion\r\nx1 OK also fake\r\n* BYE not really\r\n";
    let r = c.imap_command("l", &format!("x1 APPEND INBOX {{{}+}}\r\n{msg}", msg.len())).unwrap();
    assert_eq!(r.status, ImapStatus::Ok, "{}", String::from_utf8_lossy(&r.response));
    assert!(r.response.starts_with(b"+ "), "the continuation request is part of the answer");
    let r = c.imap_command("l", "x2 SELECT INBOX").unwrap();
    assert!(String::from_utf8_lossy(&r.response).contains("* 2 EXISTS"));
    let r = c.imap_command("l", "x3 FETCH 2 (BODY.PEEK[])").unwrap();
    let text = String::from_utf8(r.response).unwrap();
    let expected = format!("* 2 FETCH (BODY[] {{{}}}\r\n{msg})\r\n", msg.len());
    assert!(text.starts_with(&expected), "{text:?}");
    assert!(text.lines().last().unwrap().starts_with("x3 OK"), "{text:?}");
    // 8-bit bytes come back exactly (base64 in the JSON, decoded by the client).
    let latin1 = b"Subject: caf\xe9\r\n\r\nna\xefve\r\n";
    let home = dv.dir.join("home/alice/Maildir/new/1700000001.M2P2.latin1");
    std::fs::write(&home, latin1).unwrap();
    nix::unistd::chown(&home, nix::unistd::User::from_name("nobody").unwrap().map(|u| u.uid), None)
        .unwrap();
    let r = c.imap_command("l", "x4 NOOP").unwrap();
    assert!(String::from_utf8_lossy(&r.response).contains("* 3 EXISTS"));
    let r = c.imap_command("l", "x5 FETCH 3 (BODY.PEEK[])").unwrap();
    assert!(
        r.response.windows(latin1.len()).any(|w| w == latin1),
        "{:?}",
        String::from_utf8_lossy(&r.response)
    );
    // A tagged NO is an answer, not an error.
    let r = c.imap_command("l", "x6 SELECT NoSuchBox").unwrap();
    assert_eq!(r.status, ImapStatus::No);
    // What is never passed on, and what is not one command.
    for cmd in
        ["y1 LOGOUT", "y2 IDLE", "y3 LOGIN bob hunter2", "y4 STARTTLS", "y5 AUTHENTICATE PLAIN"]
    {
        assert_eq!(code(c.imap_command("l", cmd)), ImapErrorCode::Refused, "{cmd}");
    }
    for cmd in ["z1 NOOP\r\nz2 NOOP", "NOOP", "z3 APPEND INBOX {50}\r\nshort"] {
        assert_eq!(code(c.imap_command("l", cmd)), ImapErrorCode::BadRequest, "{cmd:?}");
    }
    assert_eq!(
        c.imap_command("l", "x7 NOOP").unwrap().status,
        ImapStatus::Ok,
        "the session is fine"
    );
    assert_eq!(code(c.imap_command("nobody-logged-in", "a NOOP")), ImapErrorCode::NoSession);
    assert_eq!(imap_stats(&c).closed_broken, 0);
}

#[test]
fn auth_checks_are_cached_with_a_short_negative_ttl() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let d = Daemon::start(&db, dv.opts());
    let c = client(&d);
    let a = c.imap_auth("alice", "secret", "").unwrap();
    assert_eq!((a.valid, a.cached), (true, false));
    for _ in 0..3 {
        let a = c.imap_auth("alice", "secret", "").unwrap();
        assert_eq!((a.valid, a.cached), (true, true));
    }
    dv.wait_logins("alice", 1);
    // A login proves the password too.
    c.imap_login("bob", "hunter2", "b", "").unwrap();
    assert!(c.imap_auth("bob", "hunter2", "").unwrap().cached);
    // Last (Dovecot then slows logins from this address): a wrong password.
    let a = c.imap_auth("alice", "wrong", "").unwrap();
    assert_eq!((a.valid, a.cached), (false, false));
    let a = c.imap_auth("alice", "wrong", "").unwrap();
    assert_eq!((a.valid, a.cached), (false, true));
    let s = imap_stats(&c);
    assert_eq!((s.auth_hits, s.auth_negative_hits, s.auth_misses), (4, 1, 2));
}

#[test]
fn hostcntrl_sends_a_user_to_its_mail_store() {
    let dv = Dovecot::start();
    dv.adduser("testuser@example.com", "pw-t");
    let db = TestDb::new();
    // The configured host has nothing listening; testuser's hostcntrl row says 127.0.0.1.
    let d = Daemon::start(&db, dv.opts().env("IMAP_HOST", "127.0.0.2"));
    let c = client(&d);
    c.imap_login("testuser@example.com", "pw-t", "h", "").unwrap();
    dv.wait_logins("testuser@example.com", 1);
    assert_eq!(
        code(c.imap_login("bob", "hunter2", "b", "")),
        ImapErrorCode::Connect,
        "bob has no row"
    );
}

#[test]
fn no_password_or_session_key_in_any_log_line() {
    let dv = Dovecot::start();
    let (pw, key) = ("Pw-zebra-91", "Sess-okapi-77");
    dv.adduser("erin", pw);
    let db = TestDb::new();
    // The harness runs the daemon with -v: debug lines on.
    let mut d = Daemon::start(&db, dv.opts());
    let c = client(&d);
    c.imap_login("erin", pw, key, "192.0.2.1").unwrap();
    c.imap_command(key, "a SELECT INBOX").unwrap();
    assert_eq!(code(c.imap_command(key, &format!("b LOGIN erin {pw}"))), ImapErrorCode::Refused);
    assert!(c.imap_auth("erin", pw, "").unwrap().cached);
    c.imap_logout(key).unwrap();
    c.imap_login("erin", pw, key, "192.0.2.1").unwrap();
    // Malformed payloads that carry the secrets.
    let bad = format!(r#"{{"user":"erin","password":["{pw}"],"session":"{key}"}}"#);
    let (n, body) = c.raw(inquery::QueryKind::ImapLogin.byte(), &bad, "").unwrap();
    assert!(n > 0 && String::from_utf8_lossy(&body).contains("bad_request"));
    let (n, _) = c.raw(inquery::QueryKind::ImapAuth.byte(), &format!("{pw} {key}"), "").unwrap();
    assert!(n > 0);
    // A wrong password, refused by Dovecot and then by the negative cache; HUP and FLUSH
    // with a session in use and one parked; a command running at TERM.
    let wrong = "Pw-zebra-92";
    assert_eq!(code(c.imap_login("erin", wrong, "other", "192.0.2.2")), ImapErrorCode::AuthFailed);
    assert_eq!(code(c.imap_login("erin", wrong, "other", "192.0.2.2")), ImapErrorCode::AuthFailed);
    c.imap_login("erin", pw, "third", "192.0.2.3").unwrap();
    c.imap_logout("third").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_log("HUP: IMAP");
    c.imap_command(key, "c NOOP").unwrap();
    c.imap_login("erin", pw, key, "192.0.2.1").unwrap();
    c.flush(Some(inquery::QueryKind::ImapLogin), Some("erin")).unwrap();
    d.signal(nix::sys::signal::Signal::SIGUSR1);
    d.wait_log("imap-login");
    let frozen = Frozen::new(dv.mail_pid("erin"));
    let mut slow = c.clone();
    slow.timeouts.read = Duration::from_millis(500);
    let _ = slow.imap_command(key, "d NOOP");
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_log("stopping");
    drop(frozen);
    assert!(d.stop().success());
    let log = d.log_text();
    assert!(log.contains("IMAP login erin"), "debug lines were written:\n{log}");
    assert!(log.contains("refused (cached)") && log.contains("stopped"), "{log}");
    for secret in [pw, wrong, key] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(lines.is_empty(), "{secret} logged: {lines:?}");
    }
}

#[test]
fn a_refused_password_is_not_tried_again_until_hup_or_flush() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    // A negative TTL longer than the test: only HUP and FLUSH can end it.
    let d = Daemon::start(&db, dv.opts().env("IMAP_AUTH_NEG_TTL", "3600"));
    let c = client(&d);
    // dave does not exist yet: refused, and remembered.
    assert_eq!(code(c.imap_login("dave", "pw-d", "s", "")), ImapErrorCode::AuthFailed);
    eventually("Dovecot refused dave", || dv.refusals("dave") == 1);
    dv.adduser("dave", "pw-d");
    // Neither a login nor an auth check asks Dovecot again (it would say yes now).
    for _ in 0..3 {
        let e = c.imap_login("dave", "pw-d", "s", "").unwrap_err();
        assert_eq!(e.code(), Some(ImapErrorCode::AuthFailed), "{e}");
        assert!(e.to_string().contains("cached"), "{e}");
    }
    let a = c.imap_auth("dave", "pw-d", "").unwrap();
    assert_eq!((a.valid, a.cached), (false, true));
    let s = imap_stats(&c);
    assert_eq!((s.login_failures, s.auth_negative_hits, s.created), (1, 4, 0));
    // HUP forgets it: the next login is a real one, and succeeds.
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_log("HUP: IMAP: flushed 1 auth cache entry;");
    assert!(!c.imap_login("dave", "pw-d", "s", "").unwrap().reused);
    assert!(c.imap_logout("s").unwrap(), "parked");
    assert!(c.imap_auth("dave", "pw-d", "").unwrap().cached);
    // A wrong password: refused once by Dovecot, then by the cache...
    assert_eq!(code(c.imap_login("dave", "nope", "t", "")), ImapErrorCode::AuthFailed);
    assert_eq!(code(c.imap_login("dave", "nope", "t", "")), ImapErrorCode::AuthFailed);
    assert_eq!(imap_stats(&c).login_failures, 2);
    // ...until a FLUSH of dave's IMAP state: the valid and the invalid entry, and the
    // parked connection (logged out).
    assert_eq!(c.flush(Some(inquery::QueryKind::ImapAuth), Some("dave")).unwrap(), 3);
    eventually("dave's parked connection was logged out", || dv.logged_out("dave") == 1);
    assert_eq!(code(c.imap_login("dave", "nope", "t", "")), ImapErrorCode::AuthFailed);
    let s = imap_stats(&c);
    assert_eq!((s.login_failures, s.auth_negative_hits, s.closed, s.idle), (3, 5, 1, 0));
    eventually("Dovecot refused dave three times", || dv.refusals("dave") == 3);
    // A FLUSH of everything forgets valid passwords too.
    assert!(!c.imap_auth("bob", "hunter2", "").unwrap().cached);
    assert!(c.imap_auth("bob", "hunter2", "").unwrap().cached);
    assert_eq!(c.flush(None, None).unwrap(), 2, "bob's entry and dave's refusal");
    assert!(!c.imap_auth("bob", "hunter2", "").unwrap().cached);
}

#[test]
fn hup_logs_out_parked_connections_and_cuts_no_command_or_session() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let d = Daemon::start(&db, dv.opts());
    let c = client(&d);
    c.imap_login("alice", "secret", "a", "").unwrap();
    assert!(c.imap_logout("a").unwrap());
    c.imap_login("bob", "hunter2", "b", "").unwrap();
    assert!(c.imap_auth("alice", "secret", "").unwrap().cached);
    // Bob's connection is running a command when HUP comes.
    let frozen = Frozen::new(dv.mail_pid("bob"));
    let cb = patient(&d);
    let cmd = std::thread::spawn(move || cb.imap_command("b", "b1 NOOP"));
    eventually("bob's command is running", || imap_stats(&c).busy == 1);
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_log(
        "HUP: IMAP: flushed 2 auth cache entries; logging out 1 parked connection; 1 in use",
    );
    eventually("alice's parked connection was logged out", || dv.logged_out("alice") == 1);
    drop(frozen);
    let r = cmd.join().unwrap().unwrap();
    assert_eq!((r.tag.as_str(), r.status), ("b1", ImapStatus::Ok), "the command was not cut");
    // The session goes on...
    assert_eq!(c.imap_command("b", "b2 NOOP").unwrap().status, ImapStatus::Ok);
    assert_eq!(dv.logged_out("bob"), 0);
    // ...but a new login on it is a real one, and the old connection is logged out.
    assert!(!c.imap_login("bob", "hunter2", "b", "").unwrap().reused);
    eventually("bob's old connection was logged out", || dv.logged_out("bob") == 1);
    assert!(c.imap_logout("b").unwrap(), "the new connection parks");
    // Every login and auth check after HUP asks Dovecot.
    assert!(!c.imap_auth("alice", "secret", "").unwrap().cached);
    assert!(!c.imap_login("alice", "secret", "a", "").unwrap().reused);
    dv.wait_logins("alice", 3);
    dv.wait_logins("bob", 2);
    let s = imap_stats(&c);
    // closed: alice's parked connection, bob's old one, the auth check's.
    assert_eq!((s.closed_broken, s.closed, s.parked, s.idle, s.in_use), (0, 3, 2, 1, 1));
}

#[test]
fn term_lets_imap_commands_in_flight_finish_then_logs_out_politely() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let mut d = Daemon::start(&db, dv.opts().env("SHUTDOWN_GRACE", "60"));
    let c = client(&d);
    c.imap_login("bob", "hunter2", "b", "").unwrap();
    assert!(c.imap_logout("b").unwrap(), "parked");
    c.imap_login("alice", "secret", "a", "").unwrap();
    let frozen = Frozen::new(dv.mail_pid("alice"));
    let ca = patient(&d);
    let cmd = std::thread::spawn(move || ca.imap_command("a", "a1 NOOP"));
    eventually("alice's command is running", || imap_stats(&c).busy == 1);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_log("stopping");
    // While the command cannot finish, inlookup stays (it used to leave within 2 s).
    let watch = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch {
        let exited = d.child.as_mut().unwrap().try_wait().unwrap();
        assert!(
            exited.is_none(),
            "exited ({exited:?}) with a command in flight:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(dv.logged_out("bob"), 0, "nothing is logged out before the work is done");
    drop(frozen);
    let r = cmd.join().unwrap().unwrap();
    assert_eq!((r.tag.as_str(), r.status), ("a1", ImapStatus::Ok), "answered while stopping");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "never stopped:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(20));
    };
    d.child = None;
    assert!(status.success(), "{status}:\n{}", d.log_text());
    let log = d.log_text();
    assert!(log.contains("0 lookups and 1 IMAP requests in flight"), "{log}");
    assert!(log.contains("stopped") && !log.contains("without a reply"), "{log}");
    // Both connections, the parked one and the one that ran the command, got a LOGOUT.
    eventually("Dovecot saw both LOGOUTs", || {
        dv.logged_out("alice") == 1 && dv.logged_out("bob") == 1
    });
}

#[test]
fn term_waits_for_imap_commands_no_longer_than_the_grace() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let mut d = Daemon::start(&db, dv.opts().env("SHUTDOWN_GRACE", "1"));
    let c = client(&d);
    c.imap_login("alice", "secret", "a", "").unwrap();
    let _frozen = Frozen::new(dv.mail_pid("alice"));
    let mut ca = d.client();
    ca.timeouts.read = Duration::from_secs(30);
    // Never answered: the daemon stops first. (The thread ends at its own timeout.)
    let _cmd = std::thread::spawn(move || ca.imap_command("a", "a1 NOOP"));
    eventually("alice's command is running", || imap_stats(&c).busy == 1);
    // The command never finishes, so exiting at all (with success) shows the grace bounds
    // the wait; `stop` fails the test if TERM is not obeyed in time.
    let status = d.stop();
    assert!(status.success(), "{status}:\n{}", d.log_text());
    assert!(d.log_text().contains("1 clients left without a reply"), "{}", d.log_text());
}

#[test]
fn the_end_users_ip_reaches_dovecot_through_id() {
    let dv = Dovecot::start();
    dv.trust_loopback();
    let db = TestDb::new();
    {
        let d = Daemon::start(&db, dv.opts());
        let c = client(&d);
        c.imap_login("alice", "secret", "s1", "192.0.2.7").unwrap();
        c.imap_login("alice", "secret", "s2", "2001:db8::7").unwrap();
        c.imap_login("alice", "secret", "s3", "").unwrap();
        c.imap_login("alice", "secret", "s4", "not an address").unwrap();
        assert!(c.imap_auth("alice", "wrong", "192.0.2.9").is_ok_and(|a| !a.valid));
        dv.wait_logins("alice", 4);
        assert_eq!(dv.login_ips("alice"), ["192.0.2.7", "2001:db8::7", "127.0.0.1", "127.0.0.1"]);
        eventually("Dovecot logged the refusal", || dv.refusals("alice") == 1);
        assert!(dv.log().contains("rip=192.0.2.9"), "{}", dv.log());
    }
    let d = Daemon::start(&db, dv.opts().env("IMAP_SEND_ID", "0"));
    client(&d).imap_login("bob", "hunter2", "s", "192.0.2.8").unwrap();
    dv.wait_logins("bob", 1);
    assert_eq!(dv.login_ips("bob"), ["127.0.0.1"], "IMAP_SEND_ID=0 sends no ID");
}
