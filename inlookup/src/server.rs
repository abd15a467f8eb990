//! The I/O thread: polls the request FIFOs, the TCP listener and its connections
//! ([`crate::tcp`]) and the wake pipe, reads and decodes frames, and carries out what the [`Dispatcher`] decides (its [`Effects`]: write a reply, queue a
//! lookup or an IMAP request). Everything it knows about requests is the dispatcher's.

use crate::backend::{BackendError, Backends, Lookup};
use crate::config::Config;
use crate::dispatch::{Dispatcher, Effects, Settings, Status};
use crate::error::Error;
use crate::fifo::{Replier, ReplyDir, ReplyFailure, RequestFifo};
use crate::imap::{ImapJob, ImapSide};
use crate::pool::{Event, Pool, Refused};
use crate::shared::SharedCache;
use crate::signals::{Control, Controls};
use crate::tcp::{Progress, TcpSide, Waiting};
use crate::wake::Waker;
use crate::{cache::Cache, stats};
use crossbeam_channel::{Receiver, Sender};
use inlookup_core::domains::DomainWatch;
use inlookup_core::wire::{self, Decoded};
use inlookup_core::Answer;
use inlookup_imap::Forgotten;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The FIFOs and the TCP listener, opened before privileges are dropped.
#[derive(Debug)]
pub struct Listener {
    fifos: Vec<RequestFifo>,
    replies: ReplyDir,
    /// The shared-memory cache, once [`Listener::share`] made it.
    shared: Option<SharedCache>,
    /// Bound at TCP_LISTEN, if set, with its TLS configuration (TCP_TLS_CERT).
    tcp: Option<(std::net::TcpListener, Option<Arc<rustls::ServerConfig>>)>,
    /// The IMAP front door's sockets (IMAP_LISTEN), bound, with its certificate.
    door: Option<crate::door::Bound>,
}

impl Listener {
    /// Creates and opens every request FIFO and FIFOTMPDIR; binds TCP_LISTEN and reads its
    /// TLS certificate and key (while still privileged).
    ///
    /// # Errors
    /// A FIFO is in use by another daemon, is not a FIFO, or cannot be created; the TCP
    /// address cannot be bound; the TLS files cannot be read or do not match.
    pub fn bind(cfg: &Config) -> Result<Listener, Error> {
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
        let tcp = match &cfg.tcp {
            None => None,
            Some(t) => {
                let tls = match &t.tls {
                    None => Ok(None),
                    Some((cert, key)) => {
                        inlookup_imap::tls::server_config(cert, key, "TCP_TLS_CERT").map(Some)
                    }
                };
                match tls.and_then(|tls| Ok((std::net::TcpListener::bind(t.listen)?, tls))) {
                    Ok(l) => Some(l),
                    Err(source) => {
                        fifos.iter().for_each(RequestFifo::unlink);
                        return Err(Error::Io { what: "TCP_LISTEN", source });
                    }
                }
            }
        };
        let door = match &cfg.door {
            None => None,
            Some(d) => match crate::door::Bound::bind(d) {
                Ok(b) => Some(b),
                Err(source) => {
                    fifos.iter().for_each(RequestFifo::unlink);
                    return Err(Error::Io { what: "IMAP_LISTEN", source });
                }
            },
        };
        Ok(Listener { fifos, replies, shared: None, tcp, door })
    }

    /// The TCP addresses the IMAP front door is bound to.
    pub fn door_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.door.as_ref().map(crate::door::Bound::tcp_addrs).unwrap_or_default()
    }

    /// The address the TCP listener is bound to, if any.
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.tcp.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Makes the shared-memory cache beside the FIFOs (while still privileged, so a FIFO
    /// directory only root may write is fine), with the first FIFO's group, and returns
    /// its path for the caller to give to the unprivileged user. A failure is a warning:
    /// clients then ask over the FIFO.
    pub fn share(&mut self, cfg: &Config) -> Option<PathBuf> {
        let sh = cfg.shared.as_ref()?;
        let group = self.fifos.first().map(|f| f.path.as_path());
        match SharedCache::create(sh, cfg.lookup.default_domain.as_deref(), group) {
            Ok(shared) => {
                self.shared = Some(shared);
                Some(sh.path.clone())
            }
            Err(e) => {
                log::warn!("shared cache off: {e}; clients ask over the FIFO");
                None
            }
        }
    }

    /// The request FIFO paths.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.fifos.iter().map(|f| f.path.clone()).collect()
    }
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

/// What the dispatcher acts on: the reply writer, the worker pools, the IMAP side.
#[derive(Debug)]
struct World {
    replier: Replier,
    lookups: Pool<Lookup>,
    /// Bumped on HUP: lookup workers reconnect before their next job.
    reset: Arc<AtomicU64>,
    imap: ImapSide,
    mysql_connects: Arc<AtomicU64>,
    /// Health per database, when the backends track it (the clustered layout).
    health: Option<crate::backend::HealthFn>,
    /// Abandoned reply FIFOs removed by the sweep thread.
    swept: Arc<AtomicU64>,
    /// The TCP listener and the connections reading their request.
    tcp: Option<TcpSide>,
    /// MYSQL_REPLICAS' servers, when there are replicas.
    servers: Option<crate::backend::ServersFn>,
}

impl Effects for World {
    fn reply(&mut self, to: &[u8], bytes: &[u8]) -> Result<(), ReplyFailure> {
        self.replier.send(to, bytes)
    }

    fn lookup(&mut self, job: crate::backend::LookupJob) -> Result<(), Refused> {
        self.lookups.submit(job)
    }

    fn imap(&mut self, job: ImapJob) -> Result<(), Refused> {
        self.imap.submit(job)
    }

    fn forget_imap(&mut self, user: Option<&str>) -> Forgotten {
        self.imap.forget(user)
    }

    fn reset_backends(&mut self) {
        self.reset.fetch_add(1, Ordering::AcqRel);
    }

    fn status(&self) -> Status {
        Status {
            mysql_connects: self.mysql_connects.load(Ordering::Relaxed),
            imap: self.imap.stats(),
            failed_large_replies: self.replier.failed_large(),
            swept_reply_fifos: self.swept.load(Ordering::Relaxed),
            queued: self.lookups.queued() as u64,
            workers_busy: self.lookups.busy() as u64,
            worker_panics: self.lookups.panics(),
            tcp: self.tcp.as_ref().map(TcpSide::stats).unwrap_or_default(),
            backends: self
                .health
                .as_ref()
                .map(crate::backend::HealthFn::report)
                .filter(|v| !v.is_empty()),
            servers: self.servers.as_ref().map(|f| (f.0)()).unwrap_or_default(),
        }
    }
}

/// The I/O thread's state.
#[derive(Debug)]
struct Server {
    inputs: Vec<Input>,
    dispatcher: Dispatcher,
    world: World,
    controls: Controls,
    /// Drop an incomplete frame after this long (timeoutread).
    read_timeout: Duration,
    /// On TERM, wait this long for lookups and IMAP requests in flight.
    shutdown_grace: Duration,
    /// Set by TERM: stop reading and leave by this time.
    draining: Option<Instant>,
    /// One read's buffer.
    scratch: Vec<u8>,
    /// The start-up check of the backend, until it reports.
    check: Option<Receiver<Result<(), BackendError>>>,
    /// The `-c` preload, until it reports.
    preload: Option<Receiver<Vec<Answer>>>,
    /// The domain files (REAL_DOMAINS, the assign cdb, rcpthosts) the lookups read:
    /// looked at about once a second, reloaded when they change and on HUP.
    domains: Option<Arc<DomainWatch>>,
    /// The clustered layout's files, watched like the domain files.
    cluster: Option<Arc<crate::cluster::ClusterShared>>,
    /// Dropped to stop the sweep thread.
    _sweeping: Sender<()>,
    /// The IMAP front door (its Unix sockets are removed when it is dropped).
    _door: Option<crate::door::DoorSide>,
    /// INVALIDATE=binlog: the binlog reader's messages.
    invalidations: Option<Receiver<crate::binlog::Message>>,
    /// Evictions to do again shortly ([`EVICT_AGAIN`]), in time order.
    again: std::collections::VecDeque<(Instant, Vec<crate::invalidate::Target>)>,
}

/// A change read from the binlog is evicted twice: at once, and this long after, for a
/// lookup that read the old row before the commit (or on a replica that had not applied
/// it yet) and was cached after the first eviction.
const EVICT_AGAIN: Duration = Duration::from_millis(300);

/// Serves until a [`Control::Shutdown`] arrives, then removes the FIFOs and returns.
///
/// # Errors
/// Threads or descriptors could not be created, or `poll` failed for good.
pub fn run(
    cfg: Config,
    listener: Listener,
    backends: Backends,
    controls: Controls,
) -> Result<(), Error> {
    let Listener { fifos, replies, shared, tcp, door } = listener;
    let replies = Arc::new(replies);
    let waiting = Waiting::default();
    let replier = Replier::start(replies.clone(), cfg.timeouts.write)
        .map_err(Error::io("reply writer thread"))?
        .with_tcp(waiting.clone());
    let tcp = match (tcp, &cfg.tcp) {
        (Some((l, tls)), Some(t)) => Some(
            TcpSide::new(l, tls, t, cfg.timeouts, waiting).map_err(Error::io("TCP listener"))?,
        ),
        _ => None,
    };
    let swept = Arc::new(AtomicU64::new(0));
    let sweeping = sweep(replies, cfg.timeouts.read + cfg.timeouts.write, swept.clone())?;
    let check = check(&backends, controls.waker.clone())?;
    let preload = match cfg.preload {
        Some((secs, max)) => Some(preload(&backends, secs, max, controls.waker.clone())?),
        None => None,
    };
    let imap = ImapSide::start(&cfg.imap, &backends, controls.waker.clone(), replier.clone())?;
    let door = match (door, &cfg.door) {
        (Some(bound), Some(d)) => {
            log::info!("{}", d.describe());
            Some(
                crate::door::DoorSide::start(bound, imap.sessions(), cfg.imap.command_timeout)
                    .map_err(Error::io("IMAP front door threads"))?,
            )
        }
        _ => None,
    };
    let reset = Arc::new(AtomicU64::new(0));
    let (factory, generation) = (backends.factory.clone(), reset.clone());
    let lookups = Pool::start(
        "worker",
        cfg.workers,
        cfg.queue,
        Arc::new(move || Lookup::new(factory(), generation.clone())),
        controls.waker.clone(),
        replier.clone(),
    )
    .map_err(Error::io("worker threads"))?;
    let cache = Cache::new(
        cfg.cache_entries,
        cfg.ttls.clone(),
        if cfg.serve_stale { cfg.max_stale } else { Duration::ZERO },
    );
    let cache = match shared {
        Some(shared) => cache.with_shared(shared),
        None => cache,
    };
    let settings = Settings {
        workers: cfg.workers,
        default_domain: cfg.lookup.default_domain.clone(),
        backend: cfg.mysql.describe(),
        refresh_ahead: cfg.refresh_ahead,
    };
    let mut dispatcher = Dispatcher::new(settings, cache);
    let invalidations = match &cfg.invalidation {
        Some(b) => {
            let reader = crate::binlog::start(b.clone(), controls.waker.clone())
                .map_err(Error::io("binlog thread"))?;
            dispatcher = dispatcher.with_invalidation(reader.status);
            Some(reader.rx)
        }
        None => None,
    };
    log::info!("started: {}", cfg.describe());
    let mut s = Server {
        inputs: fifos
            .into_iter()
            .map(|fifo| Input { fifo, buf: Vec::new(), pending_since: None })
            .collect(),
        dispatcher,
        world: World {
            replier,
            lookups,
            reset,
            imap,
            mysql_connects: backends.connects,
            health: backends.health.clone(),
            swept,
            tcp,
            servers: backends.servers.clone(),
        },
        controls,
        read_timeout: cfg.timeouts.read,
        shutdown_grace: cfg.shutdown_grace,
        draining: None,
        scratch: vec![0u8; 64 * 1024],
        check: Some(check),
        preload,
        domains: backends.domains.clone(),
        cluster: backends.cluster.clone(),
        _sweeping: sweeping,
        _door: door,
        invalidations,
        again: std::collections::VecDeque::new(),
    };
    s.serve()
}

/// Connects one backend on a thread of its own, so PING and STATS report its health (and
/// a wrong password is logged) before the first lookup, without delaying the start: MySQL
/// may come later.
fn check(backends: &Backends, waker: Waker) -> Result<Receiver<Result<(), BackendError>>, Error> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let factory = backends.factory.clone();
    std::thread::Builder::new()
        .name("backend-check".into())
        .spawn(move || {
            let _ = tx.send(factory().check());
            waker.wake();
        })
        .map_err(Error::io("backend check thread"))?;
    Ok(rx)
}

/// Reads the `-c` preload on a thread of its own, so the daemon serves at once.
fn preload(
    backends: &Backends,
    secs: u64,
    max: usize,
    waker: Waker,
) -> Result<Receiver<Vec<Answer>>, Error> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let factory = backends.factory.clone();
    std::thread::Builder::new()
        .name("preload".into())
        .spawn(move || {
            let answers = factory().recent_logins(secs, max).unwrap_or_else(|e| {
                log::warn!("-c: no preload: {e}");
                Vec::new()
            });
            let _ = tx.send(answers);
            waker.wake();
        })
        .map_err(Error::io("preload thread"))?;
    Ok(rx)
}

/// Sweeps abandoned reply FIFOs ([`ReplyDir::sweep`]) every half `older_than` (at least
/// every second, at most every minute), until the returned sender is dropped.
fn sweep(
    dir: Arc<ReplyDir>,
    older_than: Duration,
    swept: Arc<AtomicU64>,
) -> Result<Sender<()>, Error> {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let every = (older_than / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
    std::thread::Builder::new()
        .name("reply-sweep".into())
        .spawn(move || {
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(every)
            {
                let n = dir.sweep(older_than);
                if n > 0 {
                    swept.fetch_add(n as u64, Ordering::Relaxed);
                    log::debug!("removed {n} abandoned reply FIFOs from FIFOTMPDIR");
                }
            }
        })
        .map_err(Error::io("reply sweep thread"))?;
    Ok(stop)
}

impl Server {
    fn serve(&mut self) -> Result<(), Error> {
        loop {
            if let Some(deadline) = self.draining {
                // A pending job counts until its reply is out or its report is here.
                let idle = self.dispatcher.in_flight() == 0
                    && self.world.lookups.pending() == 0
                    && self.world.imap.pending() == 0;
                if idle || Instant::now() >= deadline {
                    self.events();
                    self.finish();
                    return Ok(());
                }
            }
            let timeout = if self.draining.is_some() {
                Duration::from_millis(50)
            } else if self.inputs.iter().any(|i| i.pending_since.is_some())
                || self.world.tcp.as_ref().is_some_and(TcpSide::busy)
            {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(1)
            };
            let timeout = match self.again.front() {
                Some((at, _)) => timeout.min(at.saturating_duration_since(Instant::now())),
                None => timeout,
            };
            let (wake_ready, ready, tcp_ready) = self.wait(timeout)?;
            if wake_ready {
                self.controls.wake.drain();
            }
            while let Ok(c) = self.controls.rx.try_recv() {
                self.control(c);
            }
            while let Ok(asker) = self.controls.snapshots.try_recv() {
                let _ = asker.send(self.dispatcher.report(&self.world));
            }
            if let Some(Ok(result)) = self.check.as_ref().map(Receiver::try_recv) {
                self.dispatcher.checked(result, Instant::now());
                self.check = None;
            }
            if let Some(Ok(answers)) = self.preload.as_ref().map(Receiver::try_recv) {
                self.dispatcher.preloaded(answers, Instant::now());
                self.preload = None;
            }
            self.events();
            self.invalidations();
            self.watch_domains();
            for i in ready {
                self.read_input(i);
            }
            self.serve_tcp(tcp_ready);
            self.expire_partial_frames();
        }
    }

    /// What the binlog reader found, and the second evictions that are due.
    fn invalidations(&mut self) {
        if let Some(rx) = &self.invalidations {
            while let Ok(m) = rx.try_recv() {
                match m {
                    crate::binlog::Message::Evict { targets, time } => {
                        self.dispatcher.invalidate(&targets, Some(time));
                        self.again.push_back((Instant::now() + EVICT_AGAIN, targets));
                    }
                    crate::binlog::Message::Flush { why, gap } => {
                        self.dispatcher.invalidation_flush(&why, gap);
                        self.again.clear();
                    }
                }
            }
        }
        let now = Instant::now();
        while self.again.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, targets)) = self.again.pop_front() {
                self.dispatcher.invalidate(&targets, None);
            }
        }
    }

    /// Reloads the domain files if they changed (at most one look a second): answers made
    /// from the old ones are forgotten.
    fn watch_domains(&mut self) {
        if let Some(w) = &self.domains {
            if w.check(Instant::now()) {
                self.dispatcher.domains_changed();
            }
        }
        if let Some(c) = &self.cluster {
            if c.check_files(Instant::now()) {
                self.dispatcher.layout_changed();
            }
        }
    }

    /// What the workers reported: finished lookups, replies they could not deliver.
    fn events(&mut self) {
        while let Some(e) = self.world.lookups.try_event() {
            match e {
                Event::Finished(done) => {
                    self.dispatcher.finished(done, Instant::now(), &mut self.world)
                }
                Event::Undelivered(to, why) => self.dispatcher.undelivered(&to, why),
            }
        }
        while let Some(e) = self.world.imap.try_event() {
            match e {
                Event::Finished(never) => match never {},
                Event::Undelivered(to, why) => self.dispatcher.undelivered(&to, why),
            }
        }
    }

    /// Polls; returns whether the wake pipe is readable, which inputs are, and which of
    /// the TCP descriptors ([`TcpSide::fds`]: the listener is 0).
    fn wait(&self, timeout: Duration) -> Result<(bool, Vec<usize>, Vec<usize>), Error> {
        let reading = self.draining.is_none();
        let mut fds = Vec::with_capacity(self.inputs.len() + 1);
        fds.push(PollFd::new(self.controls.wake.as_fd(), PollFlags::POLLIN));
        let mut n_inputs = 0;
        if reading {
            fds.extend(
                self.inputs.iter().map(|i| PollFd::new(i.fifo.fd.as_fd(), PollFlags::POLLIN)),
            );
            n_inputs = self.inputs.len();
            if let Some(t) = &self.world.tcp {
                fds.extend(t.fds().map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
            }
        }
        let ms = PollTimeout::try_from(timeout.as_millis() as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::Io { what: "poll", source: e.into() }),
        }
        let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
        let wake = ready(&fds[0]);
        let inputs = fds[1..1 + n_inputs]
            .iter()
            .enumerate()
            .filter(|(_, f)| ready(f))
            .map(|(i, _)| i)
            .collect();
        let tcp = fds[1 + n_inputs..]
            .iter()
            .enumerate()
            .filter(|(_, f)| ready(f))
            .map(|(i, _)| i)
            .collect();
        Ok((wake, inputs, tcp))
    }

    /// Reads the TCP connections that are readable (a whole request goes to the dispatcher
    /// as a FIFO request does, its reply address naming the connection), accepts new ones,
    /// and closes those past their time. `ready` indexes [`TcpSide::fds`].
    fn serve_tcp(&mut self, ready: Vec<usize>) {
        let Some(tcp) = self.world.tcp.as_mut() else { return };
        let now = Instant::now();
        let mut arrived = Vec::new();
        // Highest first: a connection done reading is replaced by the last one.
        for &i in ready.iter().rev().filter(|&&i| i > 0) {
            match tcp.read(i - 1, now) {
                Progress::Request(a) => arrived.push(a),
                Progress::Bad(_) => self.dispatcher.bad_frame(),
                Progress::Pending | Progress::Closed | Progress::TlsFailed => {}
            }
        }
        if ready.first() == Some(&0) {
            tcp.accept(now);
        }
        tcp.expire(now);
        for a in arrived {
            if let Some(frame) = a.frame() {
                let from = PathBuf::from(format!("tcp:{}", a.peer));
                self.dispatcher.request(&from, frame, now, &mut self.world);
            }
        }
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

    /// Hands every whole frame in an input's buffer to the dispatcher.
    fn serve_buffer(&mut self, i: usize) {
        let input = &mut self.inputs[i];
        let buf = std::mem::take(&mut input.buf);
        let mut at = 0;
        let mut progressed = false;
        loop {
            match wire::decode(&buf[at..]) {
                Decoded::Frame { frame, used } => {
                    at += used;
                    progressed = true;
                    let now = Instant::now();
                    self.dispatcher.request(&input.fifo.path, frame, now, &mut self.world);
                }
                Decoded::Bad { error, skip } => {
                    at += skip;
                    progressed = true;
                    self.dispatcher.bad_frame();
                    log::warn!("{}: {error}; skipped {skip} bytes", input.fifo.path.display());
                }
                Decoded::NeedMore => break,
            }
        }
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
        let limit = self.read_timeout;
        for input in &mut self.inputs {
            if input.pending_since.is_some_and(|t| t.elapsed() >= limit) {
                log::warn!(
                    "{}: dropped {} bytes of an incomplete request after {} s",
                    input.fifo.path.display(),
                    input.buf.len(),
                    limit.as_secs()
                );
                self.dispatcher.bad_frame();
                input.buf.clear();
                input.pending_since = None;
            }
        }
    }

    fn control(&mut self, c: Control) {
        match c {
            Control::FlushAndReconnect => {
                if let Some(w) = &self.domains {
                    w.reload();
                }
                if let Some(c) = &self.cluster {
                    c.reload();
                }
                self.dispatcher.hup(&mut self.world)
            }
            Control::LogStats => {
                for line in stats::describe(&self.dispatcher.report(&self.world)) {
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
                self.draining = Some(Instant::now() + self.shutdown_grace);
                log::info!(
                    "stopping: FIFOs removed, {} lookups and {} IMAP requests in flight",
                    self.dispatcher.in_flight(),
                    self.world.imap.pending()
                );
            }
            Control::Shutdown => {}
        }
    }

    fn finish(&mut self) {
        let left = self.dispatcher.waiting() + self.world.imap.pending();
        if left > 0 {
            log::warn!("{left} clients left without a reply after the shutdown grace");
        }
        self.world.lookups.close();
        self.world.imap.shutdown();
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.world.lookups.reap() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for line in stats::describe(&self.dispatcher.report(&self.world)) {
            log::info!("{line}");
        }
        log::info!("stopped");
    }
}
