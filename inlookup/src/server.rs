//! The I/O thread: polls the request FIFOs and the wake pipe, decodes frames, answers cache
//! hits and inlookup's own kinds itself, hands misses to the worker pool (coalescing
//! identical ones), and writes every reply.

use crate::backend::BackendFactory;
use crate::cache::{Cache, Found};
use crate::config::Config;
use crate::fifo::{write_reply, DirectReply, FifoError, ReplyDir, ReplyFailure, RequestFifo};
use crate::imap::ImapService;
use crate::pool::{Done, Job, Pool, Refused};
use crate::signals::{Control, Controls};
use crate::stats::{self, Stats};
use crossbeam_channel::{Receiver, Sender};
use inlookup_core::admin::{json_reply, FlushReply, FlushRequest, PingReply, StatsReport};
use inlookup_core::wire::{self, Decoded, Frame, ERROR_REPLY, PIPE_BUF};
use inlookup_core::{address, cache_key, QueryKind};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::HashMap;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the server could not start or had to stop.
#[derive(Debug)]
pub enum ServeError {
    /// A request FIFO or FIFOTMPDIR could not be used.
    Fifo(FifoError),
    /// A thread or descriptor could not be created, or poll failed.
    Io(std::io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Fifo(e) => write!(f, "{e}"),
            ServeError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Fifo(e) => Some(e),
            ServeError::Io(e) => Some(e),
        }
    }
}

impl From<FifoError> for ServeError {
    fn from(e: FifoError) -> Self {
        ServeError::Fifo(e)
    }
}

impl From<std::io::Error> for ServeError {
    fn from(e: std::io::Error) -> Self {
        ServeError::Io(e)
    }
}

/// The FIFOs, opened before privileges are dropped.
#[derive(Debug)]
pub struct Listener {
    fifos: Vec<RequestFifo>,
    replies: ReplyDir,
}

impl Listener {
    /// Creates and opens every request FIFO and FIFOTMPDIR.
    ///
    /// # Errors
    /// A FIFO is in use by another daemon, is not a FIFO, or cannot be created.
    pub fn bind(cfg: &Config) -> Result<Listener, ServeError> {
        let replies = ReplyDir::open(&cfg.fifo_tmpdir)?;
        let mut fifos = Vec::with_capacity(cfg.fifos.len());
        for p in &cfg.fifos {
            match RequestFifo::open(p, cfg.fifo_mode, cfg.pipe_size) {
                Ok(f) => fifos.push(f),
                Err(e) => {
                    fifos.iter().for_each(RequestFifo::unlink);
                    return Err(e.into());
                }
            }
        }
        Ok(Listener { fifos, replies })
    }

    /// The request FIFO paths.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.fifos.iter().map(|f| f.path.clone()).collect()
    }
}

/// A client waiting for the answer to a lookup in flight.
#[derive(Debug)]
struct Waiter {
    reply_path: Box<[u8]>,
}

/// One request FIFO and its unread bytes.
#[derive(Debug)]
struct Input {
    fifo: RequestFifo,
    /// Bytes read but not yet a whole frame.
    buf: Vec<u8>,
    /// Since when `buf` has held an incomplete frame.
    pending_since: Option<Instant>,
}

/// Writes replies: small ones at once, large ones on a writer thread with a deadline.
#[derive(Debug)]
struct Replier {
    dir: Arc<ReplyDir>,
    slow: Sender<(OwnedFd, Vec<u8>)>,
    write_timeout: Duration,
}

impl Replier {
    /// Opens the reply FIFO and writes (or hands a large reply to the writer thread).
    ///
    /// A delivered reply's FIFO is left to its client, which removes it on every path
    /// (inquery's guard; IndiMail's `inquery()` unlinks it after every outcome): a third
    /// directory update per request, by the daemon, cost 2–3 µs of its CPU per hit and
    /// contended with every client's `mkfifo` and `unlink` (`docs/bench/findings.md`,
    /// finding 2). The daemon removes the name only when its client cannot: the write
    /// failed here, or nobody reads the FIFO any more ([`ReplyDir::open_reply`]).
    fn send(&self, path: &[u8], bytes: &[u8]) -> Result<(), ReplyFailure> {
        if bytes.len() <= PIPE_BUF {
            return self.dir.send(path, bytes, Instant::now() + self.write_timeout);
        }
        let reply = self.dir.open_reply(path)?;
        self.slow
            .send((reply.fd, bytes.to_vec()))
            .map_err(|_| ReplyFailure::Failed("writer thread gone".into()))
    }

    /// Sends a reply and counts and logs what went wrong. Takes the counters apart from
    /// the server, so a cache hit is written straight from the cache, without a copy.
    fn deliver(&self, stats: &mut Stats, path: &[u8], bytes: &[u8]) {
        let sent = self.send(path, bytes);
        Replier::account(stats, path, sent);
    }

    /// Counts and logs a reply's fate, whoever wrote it.
    fn account(stats: &mut Stats, path: &[u8], sent: Result<(), ReplyFailure>) {
        match sent {
            Ok(()) => {}
            Err(ReplyFailure::Vanished) => {
                stats.vanished_clients += 1;
                log::debug!("{}: client gone before its reply", String::from_utf8_lossy(path));
            }
            Err(ReplyFailure::Refused(why)) => {
                stats.refused_reply_paths += 1;
                log::warn!("not replying to {:?}: {why}", String::from_utf8_lossy(path));
            }
            Err(ReplyFailure::Failed(why)) => {
                log::warn!("reply to {:?} {why}", String::from_utf8_lossy(path));
            }
        }
    }
}

/// Backend health, for logging failures once per episode rather than once per request.
#[derive(Debug, Default)]
struct Health {
    failing_since: Option<Instant>,
    last_warned: Option<Instant>,
    failures: u64,
}

/// The server state, owned by the I/O thread.
struct Server {
    cfg: Config,
    inputs: Vec<Input>,
    replier: Replier,
    cache: Cache,
    stats: Stats,
    inflight: HashMap<Box<str>, Vec<Waiter>>,
    pool: Pool,
    /// Replies the workers could not deliver themselves ([`DirectReply`]).
    undelivered: Receiver<(Box<[u8]>, ReplyFailure)>,
    /// The IMAP kinds' own workers and connection pool.
    imap: ImapService,
    controls: Controls,
    /// Cache generation: bumped by every flush, so results queued before it are not stored.
    epoch: u64,
    started: Instant,
    mysql_connects: Arc<AtomicU64>,
    health: Health,
    /// Set by TERM: stop reading and leave by this time.
    draining: Option<Instant>,
    scratch: Vec<u8>,
}

/// Serves until a [`Control::Shutdown`] arrives, then removes the FIFOs and returns.
///
/// # Errors
/// Threads or descriptors could not be created, or `poll` failed for good.
pub fn run(
    cfg: Config,
    listener: Listener,
    backends: BackendFactory,
    mysql_connects: Arc<AtomicU64>,
    controls: Controls,
) -> Result<(), ServeError> {
    let Listener { fifos, replies } = listener;
    let replies = Arc::new(replies);
    let write_timeout = cfg.timeouts.write;
    let (undelivered_tx, undelivered) = crossbeam_channel::unbounded();
    let direct = DirectReply { dir: replies.clone(), write_timeout, undelivered: undelivered_tx };
    let imap = ImapService::start(
        cfg.imap.clone(),
        controls.waker.clone(),
        backends.clone(),
        Some(direct.clone()),
    )?;
    let pool = Pool::start(cfg.workers, cfg.queue, backends, controls.waker.clone(), Some(direct))?;
    let (slow_tx, slow_rx) = crossbeam_channel::bounded::<(OwnedFd, Vec<u8>)>(64);
    std::thread::Builder::new().name("reply-writer".into()).spawn(move || {
        for (fd, bytes) in slow_rx {
            if let Err(e) = write_reply(&fd, &bytes, Instant::now() + write_timeout) {
                log::debug!("large reply of {} bytes not delivered: {e}", bytes.len());
            }
        }
    })?;
    let mut s = Server {
        cache: Cache::new(
            cfg.cache_entries,
            cfg.ttls.clone(),
            if cfg.serve_stale { cfg.max_stale } else { Duration::ZERO },
        ),
        inputs: fifos
            .into_iter()
            .map(|fifo| Input { fifo, buf: Vec::new(), pending_since: None })
            .collect(),
        replier: Replier { dir: replies, slow: slow_tx, write_timeout },
        stats: Stats::default(),
        inflight: HashMap::new(),
        pool,
        undelivered,
        imap,
        controls,
        epoch: 0,
        started: Instant::now(),
        mysql_connects,
        health: Health::default(),
        draining: None,
        scratch: vec![0u8; 64 * 1024],
        cfg,
    };
    log::info!("started: {}", s.cfg.describe());
    s.serve()
}

impl Server {
    fn serve(&mut self) -> Result<(), ServeError> {
        loop {
            if let Some(deadline) = self.draining {
                // IMAP: a reply is ready for try_done before its request stops counting.
                let idle = self.inflight.is_empty() && self.imap.in_flight() == 0;
                if idle || Instant::now() >= deadline {
                    self.imap_finished();
                    self.finish();
                    return Ok(());
                }
            }
            let timeout = if self.draining.is_some() {
                Duration::from_millis(50)
            } else if self.inputs.iter().any(|i| i.pending_since.is_some()) {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(1)
            };
            let (wake_ready, ready) = self.wait(timeout)?;
            if wake_ready {
                self.controls.wake.drain();
            }
            while let Ok(c) = self.controls.rx.try_recv() {
                self.control(c);
            }
            while let Some(done) = self.pool.try_done() {
                self.finished(done);
            }
            while let Ok((path, why)) = self.undelivered.try_recv() {
                Replier::account(&mut self.stats, &path, Err(why));
            }
            self.imap_finished();
            for i in ready {
                self.read_input(i);
            }
            self.expire_partial_frames();
        }
    }

    /// Polls; returns whether the wake pipe is readable and which inputs are.
    fn wait(&self, timeout: Duration) -> Result<(bool, Vec<usize>), ServeError> {
        let reading = self.draining.is_none();
        let mut fds = Vec::with_capacity(self.inputs.len() + 1);
        fds.push(PollFd::new(self.controls.wake.as_fd(), PollFlags::POLLIN));
        if reading {
            fds.extend(
                self.inputs.iter().map(|i| PollFd::new(i.fifo.fd.as_fd(), PollFlags::POLLIN)),
            );
        }
        let ms = PollTimeout::try_from(timeout.as_millis() as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(ServeError::Io(e.into())),
        }
        let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
        let wake = ready(&fds[0]);
        let inputs =
            fds[1..].iter().enumerate().filter(|(_, f)| ready(f)).map(|(i, _)| i).collect();
        Ok((wake, inputs))
    }

    /// Reads what a request FIFO holds (bounded, for fairness) and serves the frames in it.
    fn read_input(&mut self, i: usize) {
        for _ in 0..16 {
            match nix::unistd::read(&self.inputs[i].fifo.fd, &mut self.scratch) {
                Ok(0) | Err(Errno::EAGAIN) => break,
                Ok(n) => {
                    let chunk = &self.scratch[..n];
                    self.inputs[i].buf.extend_from_slice(chunk);
                    self.serve_buffer(i);
                    if n < self.scratch.len() {
                        break;
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    log::error!("{}: read: {e}", self.inputs[i].fifo.path.display());
                    break;
                }
            }
        }
    }

    fn serve_buffer(&mut self, i: usize) {
        let buf = std::mem::take(&mut self.inputs[i].buf);
        let mut at = 0;
        let mut progressed = false;
        loop {
            match wire::decode(&buf[at..]) {
                Decoded::Frame { frame, used } => {
                    at += used;
                    progressed = true;
                    self.request(i, frame);
                }
                Decoded::Bad { error, skip } => {
                    at += skip;
                    progressed = true;
                    self.stats.bad_frames += 1;
                    log::warn!(
                        "{}: {error}; skipped {skip} bytes",
                        self.inputs[i].fifo.path.display()
                    );
                }
                Decoded::NeedMore => break,
            }
        }
        let input = &mut self.inputs[i];
        input.buf = buf;
        input.buf.drain(..at);
        if input.buf.is_empty() {
            input.pending_since = None;
        } else if progressed || input.pending_since.is_none() {
            input.pending_since = Some(Instant::now());
        }
    }

    /// Drops an incomplete frame that stayed incomplete for timeoutread: clients write
    /// whole frames at once, so these bytes are garbage.
    fn expire_partial_frames(&mut self) {
        let limit = self.cfg.timeouts.read;
        for input in &mut self.inputs {
            if input.pending_since.is_some_and(|t| t.elapsed() >= limit) {
                log::warn!(
                    "{}: dropped {} bytes of an incomplete request after {} s",
                    input.fifo.path.display(),
                    input.buf.len(),
                    limit.as_secs()
                );
                self.stats.bad_frames += 1;
                input.buf.clear();
                input.pending_since = None;
            }
        }
    }

    /// IMAP replies the workers left to us (too large for one write).
    fn imap_finished(&mut self) {
        while let Some((path, bytes)) = self.imap.try_done() {
            self.reply(&path, &bytes);
        }
    }

    fn reply(&mut self, path: &[u8], bytes: &[u8]) {
        self.replier.deliver(&mut self.stats, path, bytes);
    }

    fn refuse(&mut self, path: &[u8], why: fmt::Arguments<'_>) {
        self.stats.bad_requests += 1;
        log::warn!("bad request for {:?}: {why}", String::from_utf8_lossy(path));
        self.reply(path, &ERROR_REPLY);
    }

    fn request(&mut self, i: usize, f: Frame<'_>) {
        let Some(kind) = QueryKind::from_byte(f.kind) else {
            return self.refuse(f.reply_path, format_args!("unknown query type {}", f.kind));
        };
        self.stats.kind(kind).requests += 1;
        let Ok(email) = std::str::from_utf8(f.email) else {
            return self.refuse(f.reply_path, format_args!("{kind} query: the email is not UTF-8"));
        };
        let Ok(ip) = std::str::from_utf8(f.ip) else {
            return self.refuse(f.reply_path, format_args!("{kind} query: the IP is not UTF-8"));
        };
        if kind.is_imap() {
            // The payload holds a password or a session key: never logged.
            log::debug!(
                "{}->{}, Query [{}], {} bytes",
                self.inputs[i].fifo.path.display(),
                String::from_utf8_lossy(f.reply_path),
                kind.label(),
                f.email.len()
            );
            if let Err(why) = self.imap.submit(kind, email, f.reply_path.into()) {
                self.stats.kind(kind).queue_full += u64::from(why == Refused::Full);
                log::warn!(
                    "{kind} request refused: the IMAP queue is {}",
                    if why == Refused::Full { "full" } else { "closed" }
                );
                self.reply(f.reply_path, &ERROR_REPLY);
            }
            return;
        }
        log::debug!(
            "{}->{}, Bytes {}, Query [{}], User {email}, RemoteIp {ip}",
            self.inputs[i].fifo.path.display(),
            String::from_utf8_lossy(f.reply_path),
            f.email.len() + f.reply_path.len() + f.ip.len() + 5,
            kind.label(),
        );
        match kind {
            QueryKind::Ping => {
                let body = PingReply {
                    version: env!("CARGO_PKG_VERSION").into(),
                    pid: std::process::id(),
                    uptime_secs: self.started.elapsed().as_secs(),
                };
                self.json_reply(f.reply_path, &body);
            }
            QueryKind::Stats => {
                let r = self.report();
                self.json_reply(f.reply_path, &r);
            }
            QueryKind::Flush => match self.flush(email) {
                Ok(n) => self.json_reply(f.reply_path, &FlushReply { flushed: n as u64 }),
                Err(why) => self.refuse(f.reply_path, format_args!("flush: {why}")),
            },
            QueryKind::Relay if ip.trim().is_empty() => {
                self.refuse(f.reply_path, format_args!("relay query without an IP"))
            }
            _ => self.classic(kind, email, ip, f.reply_path),
        }
    }

    fn classic(&mut self, kind: QueryKind, email: &str, ip: &str, path: &[u8]) {
        let key = cache_key(kind, email, ip, self.cfg.lookup.default_domain.as_deref());
        match self.cache.get(&key, Instant::now()) {
            Found::Fresh { reply, negative } => {
                let ks = &mut self.stats.kinds[stats::slot(kind)];
                if negative {
                    ks.negative_hits += 1;
                } else {
                    ks.hits += 1;
                }
                log::debug!("cache hit");
                return self.replier.deliver(&mut self.stats, path, reply);
            }
            Found::Expired => self.stats.kind(kind).expirations += 1,
            Found::Absent => {}
        }
        self.stats.kind(kind).misses += 1;
        let waiter = Waiter { reply_path: path.into() };
        if let Some(waiters) = self.inflight.get_mut(key.as_str()) {
            self.stats.kind(kind).coalesced += 1;
            waiters.push(waiter);
            return;
        }
        let job = Job {
            key: key.as_str().into(),
            kind,
            email: email.to_string(),
            ip: ip.to_string(),
            epoch: self.epoch,
            reply_to: path.into(),
        };
        match self.pool.submit(job) {
            Ok(()) => {
                self.inflight.insert(key.into_boxed_str(), vec![waiter]);
            }
            Err(Refused::Full) => {
                self.stats.kind(kind).queue_full += 1;
                log::warn!("{kind} query for {email}: all {} workers busy and the queue is full; replied with an error", self.cfg.workers);
                self.reply(path, &ERROR_REPLY);
            }
            Err(Refused::Closed) => self.reply(path, &ERROR_REPLY),
        }
    }

    /// A worker finished: cache the answer and reply to everyone waiting for it.
    fn finished(&mut self, done: Done) {
        let mut waiters = self.inflight.remove(&done.key).unwrap_or_default();
        if done.delivering.is_some() && !waiters.is_empty() {
            // The worker answers the request that started the lookup: the first waiter,
            // with which the entry was made at submission.
            waiters.remove(0);
        }
        let now = Instant::now();
        let bytes = match done.result {
            Ok(answer) => {
                self.recovered();
                let bytes = done.delivering.unwrap_or_else(|| answer.encode());
                if done.epoch == self.epoch {
                    if let Some(k) = self.cache.insert(&done.key, &bytes, answer.is_negative(), now)
                    {
                        self.stats.kind(k).evictions += 1;
                    }
                }
                bytes
            }
            Err(why) => {
                self.stats.kind(done.kind).backend_errors += 1;
                self.failed(done.kind, &why);
                match self.cache.stale(&done.key, now).map(<[u8]>::to_vec) {
                    Some(stale) => {
                        self.stats.kind(done.kind).stale_served += waiters.len() as u64;
                        log::debug!(
                            "answered {} from an expired entry",
                            address::key_subject(&done.key)
                        );
                        stale
                    }
                    None => ERROR_REPLY.to_vec(),
                }
            }
        };
        for w in waiters {
            self.reply(&w.reply_path, &bytes);
        }
    }

    fn failed(&mut self, kind: QueryKind, why: &str) {
        let h = &mut self.health;
        h.failures += 1;
        let now = Instant::now();
        let since = *h.failing_since.get_or_insert(now);
        if h.last_warned.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            h.last_warned = Some(now);
            log::warn!(
                "{kind} lookup failed ({} failures in {} s): {why}",
                h.failures,
                now.duration_since(since).as_secs()
            );
        }
    }

    fn recovered(&mut self) {
        if let Some(since) = self.health.failing_since.take() {
            log::info!(
                "backend answering again after {} s and {} failures",
                since.elapsed().as_secs(),
                self.health.failures
            );
            self.health = Health::default();
        }
    }

    fn json_reply<T: serde::Serialize>(&mut self, path: &[u8], body: &T) {
        match json_reply(body) {
            Some(bytes) => self.reply(path, &bytes),
            None => self.reply(path, &ERROR_REPLY),
        }
    }

    fn report(&self) -> StatsReport {
        let mut r = StatsReport {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            cache_entries: self.cache.len() as u64,
            cache_capacity: self.cache.capacity() as u64,
            workers: self.cfg.workers as u64,
            in_flight: self.inflight.len() as u64,
            mysql_connects: self.mysql_connects.load(Ordering::Relaxed),
            debug: crate::logging::debug_enabled(),
            imap: self.imap.stats(),
            ..StatsReport::default()
        };
        self.stats.fill(&mut r);
        r
    }

    /// FLUSH: `""` or `{}` drops everything; `{"kind":"pwd"}` one kind;
    /// `{"kind":"pwd","key":"alice@example.com"}` one key (for RELAY, every IP of it).
    fn flush(&mut self, payload: &str) -> Result<usize, String> {
        let req: FlushRequest = if payload.trim().is_empty() {
            FlushRequest::default()
        } else {
            serde_json::from_str(payload).map_err(|e| format!("bad JSON: {e}"))?
        };
        self.epoch += 1;
        let kind = match req.kind.as_deref() {
            None => {
                if req.key.is_some() {
                    return Err("a key needs a kind".into());
                }
                let imap = self.imap.forget(None);
                return Ok(self.cache.clear() + imap.auth_entries + imap.parked);
            }
            Some(k) => k.parse::<QueryKind>().map_err(|e| e.to_string())?,
        };
        if kind.is_imap() {
            // Any IMAP kind: the IMAP auth cache and parked connections, of one user or all.
            let imap = self.imap.forget(req.key.as_deref());
            return Ok(imap.auth_entries + imap.parked);
        }
        if !kind.is_classic() {
            return Err(format!("{kind} answers are not cached"));
        }
        Ok(match req.key {
            None => self.cache.remove_kind(kind),
            Some(key) => {
                let k = cache_key(kind, &key, "", self.cfg.lookup.default_domain.as_deref());
                self.cache.remove_subject(kind, address::key_subject(&k))
            }
        })
    }

    fn control(&mut self, c: Control) {
        match c {
            Control::FlushAndReconnect => {
                let n = self.cache.clear();
                self.epoch += 1;
                self.pool.reset_backends();
                log::info!("HUP: flushed {n} cache entries; backends reconnect on next use");
                let imap = self.imap.forget(None);
                log::info!(
                    "HUP: IMAP: flushed {} auth cache entries; logging out {} parked connections; {} in use close when their sessions end",
                    imap.auth_entries, imap.parked, imap.in_use
                );
            }
            Control::LogStats => {
                for line in stats::describe(&self.report()) {
                    log::info!("{line}");
                }
            }
            Control::ToggleDebug => {
                let on = !crate::logging::debug_enabled();
                crate::logging::set_debug(on);
                log::info!("debug {}", if on { "on" } else { "off" });
            }
            Control::Shutdown if self.draining.is_none() => {
                // Serve what clients already wrote, then stop reading.
                for i in 0..self.inputs.len() {
                    self.read_input(i);
                }
                for input in &self.inputs {
                    input.fifo.unlink();
                }
                self.draining = Some(Instant::now() + self.cfg.shutdown_grace);
                log::info!(
                    "stopping: FIFOs removed, {} lookups and {} IMAP requests in flight",
                    self.inflight.len(),
                    self.imap.in_flight()
                );
            }
            Control::Shutdown => {}
        }
    }

    fn finish(&mut self) {
        let left = self.inflight.values().map(Vec::len).sum::<usize>() + self.imap.in_flight();
        if left > 0 {
            log::warn!("{left} clients left without a reply after the shutdown grace");
        }
        self.pool.close();
        self.imap.shutdown();
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.pool.reap() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for line in stats::describe(&self.report()) {
            log::info!("{line}");
        }
        log::info!("stopped");
    }
}
