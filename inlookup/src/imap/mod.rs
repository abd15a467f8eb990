//! # IMAP sessions behind the FIFO
//!
//! Stateless programs (webmail) log in to IMAP on every page; inlookup keeps those logged-in
//! connections for them. The four IMAP kinds (login, command, logout, auth) arrive on the
//! I/O thread, which hands them to [`ImapService::submit`] without blocking; the service's
//! own worker threads talk to the IMAP servers and write each reply to its client
//! themselves (through the same confined [`crate::fifo::ReplyDir`]), one thread hand-off
//! less than a reply sent back through the I/O thread. Only a reply too large for one
//! write goes back to the I/O thread, woken through the wake pipe; a failed delivery is
//! reported through [`DirectReply`].
//!
//! One bounded [`pool::Pool`] holds every connection: at most `max_connections`; a login
//! reuses a connection held for the same user, password, session key and client IP; when
//! the pool is full the connection idle longest is reclaimed (never a busy one), and when
//! nothing can be reclaimed the request backs off (10, 30, 70, 150, 250 ms) and then gets
//! a "busy" reply. Connections idle past `idle_timeout` are closed by a reaper thread. A
//! connection that failed or fell out of step in any way is closed, never reused.
//!
//! # Layout
//!
//! - [`frame`]: the server's responses, framed exactly (literals, continuations).
//! - [`command`]: a caller's command checked and cut at its literals; LOGIN quoting.
//! - [`conn`]: one connection: TCP keepalive, TLS, greeting, login, commands, liveness.
//! - [`tls`]: rustls configuration (roots, or verification off by name).
//! - [`pool`]: the connection table and its rules.
//! - [`auth`]: the keyed password hash, identities and the auth cache.
//! - [`worker`]: what each request kind does, with the back-off.

pub mod auth;
pub mod command;
pub mod conn;
pub mod frame;
pub mod pool;
pub mod tls;
pub mod worker;

pub use tls::TlsMode;

use crate::backend::BackendFactory;
use crate::fifo::DirectReply;
use crate::pool::Refused;
use crate::wake::Waker;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};
use inlookup_core::admin::ImapStats;
use inlookup_core::QueryKind;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use worker::Shared;

/// The IMAP side's settings (flags and environment names in [`crate::config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapConfig {
    /// The IMAP server for users without a mail store in `hostcntrl` (IMAP_HOST).
    pub host: String,
    /// Its port, also used for mail stores from `hostcntrl` (IMAP_PORT).
    pub port: u16,
    /// Plain, STARTTLS or IMAPS (IMAP_TLS).
    pub tls: TlsMode,
    /// Verify the server's certificate (IMAP_TLS_VERIFY; off only by name).
    pub verify: bool,
    /// Trust exactly the CA certificates in this PEM file instead of the system's
    /// (IMAP_CA_FILE).
    pub ca_file: Option<PathBuf>,
    /// Connections open at most (IMAP_MAX_CONNECTIONS).
    pub max_connections: usize,
    /// A connection unused this long is closed (IMAP_IDLE_TIMEOUT).
    pub idle_timeout: Duration,
    /// Park a connection at logout for the same identity's next login, instead of
    /// closing it (IMAP_PARK).
    pub park: bool,
    /// How long a valid password stays in the auth cache (IMAP_AUTH_TTL).
    pub auth_ttl: Duration,
    /// How long an invalid one does (IMAP_AUTH_NEG_TTL).
    pub auth_negative_ttl: Duration,
    /// Worker threads (IMAP_WORKERS).
    pub workers: usize,
    /// Requests that may wait for a worker; more are refused at once.
    pub queue: usize,
    /// For the TCP connect, greeting and TLS handshake (IMAP_CONNECT_TIMEOUT).
    pub connect_timeout: Duration,
    /// For one command, first byte sent to completion (IMAP_COMMAND_TIMEOUT).
    pub command_timeout: Duration,
    /// TCP keepalive on every IMAP socket (TCP_KEEPALIVE_IDLE/INTVL/CNT).
    pub keepalive: conn::Keepalive,
    /// The most response bytes one command's reply may carry.
    pub max_response: usize,
    /// Entries in the auth cache.
    pub auth_cache_entries: usize,
    /// Before LOGIN, tell a server that offers ID (RFC 2971) the end user's address with
    /// `ID ("x-originating-ip" …)` (IMAP_SEND_ID).
    pub send_id: bool,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            host: "127.0.0.1".into(),
            port: 143,
            tls: TlsMode::Plain,
            verify: true,
            ca_file: None,
            max_connections: 15,
            idle_timeout: Duration::from_secs(420),
            park: true,
            auth_ttl: Duration::from_secs(60),
            auth_negative_ttl: Duration::from_secs(10),
            workers: 17,
            queue: 256,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(60),
            keepalive: conn::Keepalive {
                idle: Duration::from_secs(30),
                interval: Duration::from_secs(10),
                count: 3,
            },
            max_response: 512 * 1024,
            auth_cache_entries: 10_000,
            send_id: true,
        }
    }
}

impl ImapConfig {
    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        format!(
            "IMAP {}:{} {}{}; at most {} connections, idle timeout {} s, parking {}; {} workers; auth cache {}/{} s; ID with the client's IP {}",
            self.host,
            self.port,
            self.tls,
            match (self.tls, self.verify) {
                (TlsMode::Plain, _) => String::new(),
                (_, false) => " (certificate NOT verified)".into(),
                (_, true) => match &self.ca_file {
                    Some(f) => format!(" (CA {})", f.display()),
                    None => " (system roots)".into(),
                },
            },
            self.max_connections,
            self.idle_timeout.as_secs(),
            if self.park { "on" } else { "off" },
            self.workers,
            self.auth_ttl.as_secs(),
            self.auth_negative_ttl.as_secs(),
            if self.send_id { "on" } else { "off" },
        )
    }
}

/// What a flush ([`ImapService::forget`]) dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Auth cache entries, valid and invalid.
    pub auth_entries: usize,
    /// Parked connections, now being logged out.
    pub parked: usize,
    /// Connections bound to a session, to be closed when the session ends (commands
    /// running on them are not disturbed).
    pub in_use: usize,
}

/// A request for a worker.
#[derive(Debug)]
struct Job {
    kind: QueryKind,
    payload: String,
    reply_path: Box<[u8]>,
}

/// The IMAP service: its queue, workers and reaper.
#[derive(Debug)]
pub struct ImapService {
    /// Where requests go; `None` once shut down.
    jobs: Option<Sender<Job>>,
    /// Replies for the I/O thread to write (larger than one atomic write, or no
    /// [`DirectReply`]): reply path and bytes. A worker delivers the others itself.
    done: Receiver<(Box<[u8]>, Vec<u8>)>,
    /// The state the threads share.
    shared: Arc<Shared>,
    /// Workers and the reaper.
    threads: Vec<JoinHandle<()>>,
}

impl ImapService {
    /// Starts the workers and the idle reaper. No connection is made until a request
    /// needs one.
    ///
    /// # Errors
    /// A thread could not be spawned, or the random key could not be made. (TLS settings
    /// that cannot be used are logged and fail each IMAP login instead.)
    pub fn start(
        cfg: ImapConfig,
        waker: Waker,
        hosts: BackendFactory,
        direct: Option<DirectReply>,
    ) -> std::io::Result<ImapService> {
        let workers = cfg.workers.max(1);
        let (jobs_tx, jobs_rx) = bounded::<Job>(cfg.queue.max(1));
        let (done_tx, done_rx) = unbounded();
        log::info!("{}", cfg.describe());
        let shared = Arc::new(Shared::new(cfg, hosts)?);
        let mut threads = Vec::with_capacity(workers + 1);
        for n in 0..workers {
            let (rx, tx, waker, shared, direct) =
                (jobs_rx.clone(), done_tx.clone(), waker.clone(), shared.clone(), direct.clone());
            threads.push(std::thread::Builder::new().name(format!("imap-{n}")).spawn(
                move || {
                    for job in rx {
                        let bytes = shared.serve(job.kind, &job.payload);
                        let path = job.reply_path;
                        let done = match &direct {
                            Some(d) if bytes.len() <= inlookup_core::wire::PIPE_BUF => {
                                d.deliver(&path, &bytes);
                                None
                            }
                            _ => Some((path, bytes)),
                        };
                        // Counted out only once the reply is delivered or where the I/O
                        // thread looks, so "nothing in flight" at shutdown means every
                        // reply is out or there.
                        let sent = done.map(|d| tx.send(d).is_ok());
                        shared.pending.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                        match sent {
                            Some(false) => break,
                            Some(true) => waker.wake(),
                            None => {}
                        }
                    }
                },
            )?);
        }
        let s = shared.clone();
        threads
            .push(std::thread::Builder::new().name("imap-reaper".into()).spawn(move || s.reap())?);
        Ok(ImapService { jobs: Some(jobs_tx), done: done_rx, shared, threads })
    }

    /// Queues a request without waiting.
    ///
    /// # Errors
    /// [`Refused::Full`] when the queue is full, [`Refused::Closed`] after shutdown.
    pub fn submit(
        &self,
        kind: QueryKind,
        payload: &str,
        reply_path: Box<[u8]>,
    ) -> Result<(), Refused> {
        let job = Job { kind, payload: payload.to_string(), reply_path };
        // Counted before it can be served (a worker counts it out), undone if refused.
        self.shared.pending.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let sent = self.jobs.as_ref().map(|j| j.try_send(job));
        if !matches!(sent, Some(Ok(()))) {
            self.shared.pending.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
        match sent {
            Some(Ok(())) => Ok(()),
            Some(Err(TrySendError::Full(_))) => Err(Refused::Full),
            Some(Err(TrySendError::Disconnected(_))) | None => Err(Refused::Closed),
        }
    }

    /// A reply for the I/O thread to write, if one is ready: the reply path and the whole
    /// reply (length and JSON, or the error reply).
    pub fn try_done(&self) -> Option<(Box<[u8]>, Vec<u8>)> {
        self.done.try_recv().ok()
    }

    /// Requests queued or running now (a finished one counts until its reply is ready
    /// for [`ImapService::try_done`]).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Forgets one user's IMAP state, or everyone's (HUP, FLUSH): auth cache entries,
    /// valid and invalid; parked connections (logged out by the reaper thread, so this
    /// never waits on a server); connections bound to a session are closed when the
    /// session ends, not cut, and are not reused by a new login.
    pub fn forget(&self, user: Option<&str>) -> Forgotten {
        self.shared.forget(user)
    }

    /// The pool's counters.
    pub fn stats(&self) -> ImapStats {
        self.shared.stats()
    }

    /// Stops taking requests, logs out of every connection not running a command, and
    /// waits a little (at most about two seconds) for the threads. Threads stuck in a
    /// server call are left to end with the process.
    pub fn shutdown(&mut self) {
        self.jobs = None;
        let deadline = Instant::now() + Duration::from_secs(2);
        self.shared.close_all(deadline);
        loop {
            let (done, running): (Vec<_>, Vec<_>) =
                std::mem::take(&mut self.threads).into_iter().partition(|t| t.is_finished());
            for t in done {
                let _ = t.join();
            }
            self.threads = running;
            if self.threads.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
