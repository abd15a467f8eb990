//! The FIFO client: one query, one private reply FIFO, removed on every path.

use crate::error::{io, Error, Phase};
use crate::resolve::Target;
use crate::tcp::TcpMode;
use crate::Lookup;
use inlookup_core::admin::{FlushReply, FlushRequest, PingReply, StatsReport};
use inlookup_core::control::{self, Timeouts};
use inlookup_core::wire::{encode_request, reply_int, HEADER_LEN};
use inlookup_core::{Answer, QueryKind};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// FIFOTMPDIR when unset, as IndiMail.
pub const DEFAULT_FIFOTMPDIR: &str = "/tmp";
/// FIFO_MODE when unset.
pub const DEFAULT_FIFO_MODE: u32 = 0o660;
/// The most bytes a reply may carry (STATS JSON is the largest).
const MAX_REPLY: usize = inlookup_core::admin::MAX_JSON_REPLY;

/// How to reach the daemon. Build one with [`Client::from_env`] and reuse it.
#[derive(Debug, Clone)]
pub struct Client {
    /// Which request FIFO(s).
    pub target: Target,
    /// Where reply FIFOs are made (FIFOTMPDIR).
    pub tmpdir: PathBuf,
    /// Their mode (FIFO_MODE), set exactly, whatever the umask.
    pub fifo_mode: u32,
    /// timeoutwrite / timeoutread.
    pub timeouts: Timeouts,
    /// The daemon's shared-memory cache, read before asking over the FIFO
    /// ([`crate::shared`]); `None` asks every query over the FIFO.
    pub shared: Option<PathBuf>,
    /// Ask over TCP instead of the FIFO ([`crate::tcp`]): TCPCLIENT with TCPREMOTEIP
    /// (fds 6 and 7), or INQUERY_TCP=HOST:PORT; `None` for the FIFO.
    pub tcp: Option<TcpMode>,
}

/// A reply FIFO of our own, unlinked when dropped: on success, error, timeout or panic.
struct ReplyFifo {
    path: PathBuf,
    fd: OwnedFd,
}

impl Drop for ReplyFifo {
    fn drop(&mut self) {
        // The daemon removes the name when it opens it; ENOENT is the normal case.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ReplyFifo {
    fn create(dir: &Path, mode: u32) -> Result<ReplyFifo, Error> {
        for _ in 0..8 {
            let path =
                dir.join(format!("inquery.{}.{:016x}", std::process::id(), crate::random_u64()));
            match nix::unistd::mkfifo(&path, Mode::from_bits_truncate(mode)) {
                Ok(()) => {}
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(io(format!("mkfifo {}", path.display()), e)),
            }
            // The guard exists before anything else can fail, so the name never leaks.
            let open_it = || {
                open(&path, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty())
            };
            let fd = match open_it() {
                Ok(fd) => fd,
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(io(format!("open {}", path.display()), e));
                }
            };
            let f = ReplyFifo { path, fd };
            nix::sys::stat::fchmod(&f.fd, Mode::from_bits_truncate(mode))
                .map_err(|e| io(format!("chmod {}", f.path.display()), e))?;
            return Ok(f);
        }
        Err(Error::BadArgument(format!("cannot make a unique reply FIFO in {}", dir.display())))
    }
}

/// Waits until `fd` is ready for `flags`, or `deadline` passes (a timeout of `phase`,
/// reported as `total`). The FIFO client's and the TCP client's one poll loop.
pub(crate) fn wait(
    fd: BorrowedFd<'_>,
    flags: PollFlags,
    deadline: Instant,
    phase: Phase,
    total: Duration,
) -> Result<(), Error> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout { phase, after: total });
        }
        let ms = PollTimeout::try_from(left.as_millis().clamp(1, 60_000) as i32)
            .unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd, flags)];
        match poll(&mut fds, ms) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => return Ok(()),
            Err(e) => return Err(io("poll", e)),
        }
    }
}

impl Client {
    /// A client configured from the environment as IndiMail's inquery() is: INFIFO,
    /// INFIFODIR, FIFOTMPDIR, FIFO_MODE and CONTROLDIR's `timeoutread`/`timeoutwrite`.
    pub fn from_env() -> Client {
        let dir = control::controldir(control::env_var("CONTROLDIR").as_deref());
        let mode = control::env_var("FIFO_MODE")
            .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
            .unwrap_or(DEFAULT_FIFO_MODE);
        let target = Target::from_env();
        let tcp = TcpMode::from_env();
        Client {
            // Asked over TCP, a daemon elsewhere answers: not the local one's mapping.
            shared: tcp.is_none().then(|| crate::shared::path_for(&target.base())).flatten(),
            tcp,
            target,
            tmpdir: control::env_var("FIFOTMPDIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_FIFOTMPDIR)),
            fifo_mode: mode,
            timeouts: Timeouts::from_controldir(&dir),
        }
    }

    /// A client for one FIFO path, with the environment's other settings.
    pub fn for_fifo(path: impl Into<PathBuf>) -> Client {
        let path = path.into();
        Client {
            shared: crate::shared::path_for(&path),
            target: Target::Exact(path),
            tcp: None,
            ..Client::from_env()
        }
    }

    /// The same client reading hits from the shared cache at `path`, or (`None`) asking
    /// every query over the FIFO.
    pub fn with_shared(self, path: Option<PathBuf>) -> Client {
        Client { shared: path, ..self }
    }

    /// Opens a request FIFO for writing, trying every instance before giving up.
    fn open_server(&self) -> Result<OwnedFd, Error> {
        let candidates = self.target.candidates();
        for p in &candidates {
            match open(p, OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty()) {
                Ok(fd) => return Ok(fd),
                Err(Errno::ENXIO | Errno::ENOENT) => continue,
                Err(e) => return Err(io(format!("open {}", p.display()), e)),
            }
        }
        Err(Error::NotRunning(candidates.into_iter().next().unwrap_or_default()))
    }

    /// Sends one request and returns the reply's leading int and body, as raw as they came.
    /// The body is read only for kinds that have one, and only when the int is positive.
    ///
    /// # Errors
    /// [`Error::NotRunning`], [`Error::Timeout`], [`Error::BadArgument`], [`Error::Io`] or
    /// [`Error::Malformed`] (the daemon closed before a whole reply).
    pub fn raw(&self, kind_byte: u8, email: &str, ip: &str) -> Result<(i32, Vec<u8>), Error> {
        if let Some(hit) =
            self.shared.as_deref().and_then(|p| crate::shared::reply(p, kind_byte, email, ip))
        {
            return Ok(hit);
        }
        self.raw_fifo(kind_byte, email, ip)
    }

    /// [`Client::raw`] over the FIFO (or over TCP when [`Client::tcp`] says so), whatever
    /// the shared cache holds.
    ///
    /// # Errors
    /// As [`Client::raw`]; over TCP also [`Error::TooLarge`].
    pub fn raw_fifo(&self, kind_byte: u8, email: &str, ip: &str) -> Result<(i32, Vec<u8>), Error> {
        if let Some(tcp) = &self.tcp {
            return tcp.raw(kind_byte, email, ip, self.timeouts);
        }
        let reply = ReplyFifo::create(&self.tmpdir, self.fifo_mode)?;
        let frame = encode_request(
            kind_byte,
            email.as_bytes(),
            reply.path.as_os_str().as_bytes(),
            ip.as_bytes(),
        )
        .map_err(|e| Error::BadArgument(e.to_string()))?;
        let server = self.open_server()?;
        let wdeadline = Instant::now() + self.timeouts.write;
        loop {
            match nix::unistd::write(&server, &frame) {
                Ok(n) if n == frame.len() => break,
                Ok(n) => return Err(Error::Malformed(format!("short write of {n} bytes"))),
                Err(Errno::EAGAIN) => wait(
                    server.as_fd(),
                    PollFlags::POLLOUT,
                    wdeadline,
                    Phase::Write,
                    self.timeouts.write,
                )?,
                Err(Errno::EINTR) => {}
                Err(Errno::EPIPE) => return Err(Error::NotRunning(PathBuf::new())),
                Err(e) => return Err(io("write request", e)),
            }
        }
        drop(server);
        let bare = QueryKind::from_byte(kind_byte).is_some_and(QueryKind::reply_is_bare_int);
        let rdeadline = Instant::now() + self.timeouts.read;
        let mut header = [0u8; HEADER_LEN];
        self.read_exact(&reply.fd, &mut header, rdeadline)?;
        let n = reply_int(header);
        if bare || n <= 0 {
            return Ok((n, Vec::new()));
        }
        let n = n as usize;
        if n > MAX_REPLY {
            return Err(Error::Malformed(format!("reply length {n} is too large")));
        }
        let mut body = vec![0u8; n];
        self.read_exact(&reply.fd, &mut body, rdeadline)?;
        Ok((reply_int(header), body))
    }

    fn read_exact(&self, fd: &OwnedFd, buf: &mut [u8], deadline: Instant) -> Result<(), Error> {
        let mut got = 0;
        let mut seen_data = false;
        let mut polled = false;
        while got < buf.len() {
            match nix::unistd::read(fd, &mut buf[got..]) {
                Ok(0) if seen_data => {
                    return Err(Error::Malformed(format!(
                        "reply ended after {got} of {} bytes",
                        buf.len()
                    )))
                }
                // No writer yet: the daemon has not opened our FIFO.
                Ok(0) | Err(Errno::EAGAIN) => {
                    if polled && !seen_data {
                        // Poll said ready and there was nothing: it reports HUP forever once
                        // a writer came and went. Do not spin (but do not sleep when poll
                        // woke us for data, the normal case).
                        std::thread::sleep(
                            Duration::from_micros(50)
                                .min(deadline.saturating_duration_since(Instant::now())),
                        );
                        if Instant::now() >= deadline {
                            return Err(Error::Timeout {
                                phase: Phase::Read,
                                after: self.timeouts.read,
                            });
                        }
                    }
                    wait(fd.as_fd(), PollFlags::POLLIN, deadline, Phase::Read, self.timeouts.read)?;
                    polled = true;
                }
                Ok(n) => {
                    got += n;
                    seen_data = true;
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(io("read reply", e)),
            }
        }
        Ok(())
    }

    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        kind: QueryKind,
        payload: &str,
    ) -> Result<T, Error> {
        let (n, body) = self.raw(kind.byte(), payload, "")?;
        if n < 0 {
            return Err(Error::Backend);
        }
        serde_json::from_slice(&body).map_err(|e| Error::Malformed(format!("{kind} reply: {e}")))
    }

    /// PING: the daemon's version, pid and uptime.
    ///
    /// ```no_run
    /// let p = inquery::Client::from_env().ping()?;
    /// println!("inlookup {} up {} s", p.version, p.uptime_secs);
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Client::raw`].
    pub fn ping(&self) -> Result<PingReply, Error> {
        self.json(QueryKind::Ping, "")
    }

    /// STATS: every counter.
    ///
    /// ```no_run
    /// let s = inquery::Client::from_env().stats()?;
    /// println!("{} hits", s.totals().hits);
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Client::raw`].
    pub fn stats(&self) -> Result<StatsReport, Error> {
        self.json(QueryKind::Stats, "")
    }

    /// FLUSH: drops cache entries: all (`None, None`), one kind, or one key of one kind.
    /// Returns how many went.
    ///
    /// ```no_run
    /// use inlookup_core::QueryKind;
    /// inquery::Client::from_env().flush(Some(QueryKind::Pwd), Some("alice@example.com"))?;
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Backend`] when the daemon refuses the request; otherwise as [`Client::raw`].
    pub fn flush(&self, kind: Option<QueryKind>, key: Option<&str>) -> Result<u64, Error> {
        let req = FlushRequest { kind, key: key.map(str::to_string) };
        let payload = serde_json::to_string(&req).map_err(|e| Error::BadArgument(e.to_string()))?;
        Ok(self.json::<FlushReply>(QueryKind::Flush, &payload)?.flushed)
    }
}

impl Lookup for Client {
    /// Asks a classic kind over the daemon's FIFO and decodes the answer.
    ///
    /// # Errors
    /// As [`Client::raw`], plus [`Error::Backend`] for the daemon's error reply.
    ///
    /// ALIAS is asked as IndiMail asks it; a `-1` is asked again as ALIAS-FULL, since
    /// inlookup answers `-1` to an alias list longer than a classic reply can carry and
    /// gives it whole on ALIAS-FULL. (IndiMail's own inlookup does not know ALIAS-FULL: there
    /// a failed ALIAS costs the read timeout once more.)
    fn ask(&self, kind: QueryKind, email: &str, ip: &str) -> Result<Answer, Error> {
        crate::lookup::check_classic(kind, ip)?;
        let (n, body) = self.raw(kind.byte(), email, ip)?;
        match Answer::decode(kind, n, &body, email) {
            Err(inlookup_core::ReplyError::Backend) if kind == QueryKind::Alias => {
                let (n, body) = self.raw(QueryKind::AliasFull.byte(), email, ip)?;
                Ok(Answer::decode(kind, n, &body, email)?)
            }
            r => Ok(r?),
        }
    }
}
