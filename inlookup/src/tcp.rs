//! Lookups over TCP (TCP_LISTEN), in IndiMail's framing: one request per connection, the
//! frame exactly as over the FIFO (its reply-path field, `socket` from IndiMail's clients,
//! is ignored), the same reply bytes, then the connection is closed.
//!
//! A TCP client is just another reply destination. The I/O thread accepts, checks the peer
//! against TCP_ALLOW (outside it: closed at once, no byte sent), reads the frame without
//! blocking and hands it to the same [`crate::dispatch::Dispatcher`] as FIFO requests, with
//! a reply address naming the connection ([`reply_address`]) instead of a FIFO path. The
//! connection then waits in [`Waiting`] until whoever answers (the I/O thread for a hit, a
//! worker for a miss) takes it through [`crate::fifo::Replier`], writes without blocking
//! (what the socket does not take at once goes to the large-reply writer with the
//! timeoutwrite deadline) and closes it. A reply address starts with a NUL byte, which no
//! frame field can hold, so no FIFO client can name somebody's connection.
//!
//! With TCP_TLS_CERT and TCP_TLS_KEY every connection is TLS (rustls, driven without
//! blocking by the I/O thread as the plain reads are): the handshake and the request are
//! read the same way, and the reply is encrypted, with a close_notify after it, into the
//! bytes the replier writes, so the reply path after that is the plain one. IndiMail's
//! clients have no TLS of their own; they reach such a listener through a TLS wrapper
//! (stunnel's client mode gives them a local plain port), and any TLS library can speak
//! the framing directly.
//!
//! Bounds: at most TCP_MAX_CLIENTS connections reading or waiting (one more is closed at
//! once); a connection that has not sent a whole frame after timeoutread is closed, and one
//! still waiting for its reply after timeoutread plus timeoutwrite (its client has given up)
//! is dropped.

use ipnet::IpNet;
use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// TCP_MAX_CLIENTS when unset.
pub const DEFAULT_MAX_CLIENTS: usize = 256;
/// TCP_ALLOW when unset: loopback only.
pub const DEFAULT_ALLOW: &str = "127.0.0.0/8,::1";

/// The TCP listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpConfig {
    /// Where to listen (TCP_LISTEN).
    pub listen: SocketAddr,
    /// Who may ask (TCP_ALLOW); everyone else is closed on with no byte sent.
    pub allow: Vec<IpNet>,
    /// Connections reading or waiting for a reply at most (TCP_MAX_CLIENTS).
    pub max_clients: usize,
    /// TLS on every connection: the PEM certificate chain and key (TCP_TLS_CERT,
    /// TCP_TLS_KEY), loaded by [`crate::server::Listener::bind`].
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl TcpConfig {
    /// Resolves TCP_LISTEN, TCP_ALLOW (parsed as METRICS_ALLOW is,
    /// [`crate::metrics::parse_allow`]) and TCP_MAX_CLIENTS. `None` when TCP_LISTEN is
    /// unset or empty.
    ///
    /// # Errors
    /// A setting that does not parse, and a listen address other than loopback without an
    /// explicit TCP_ALLOW: the default (loopback) would refuse every peer it is meant for,
    /// and the original had no access control at all, so the operator must say who. A TLS
    /// certificate without its key or the other way round, and either without TCP_LISTEN.
    pub fn resolve(
        listen: Option<&str>,
        allow: Option<&str>,
        max_clients: usize,
        tls: (Option<&Path>, Option<&Path>),
    ) -> Result<Option<TcpConfig>, crate::Error> {
        let given =
            |p: Option<&Path>| p.filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf);
        let tls = match (given(tls.0), given(tls.1)) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert, key)),
            (Some(_), None) => {
                return Err(crate::Error::Config {
                    setting: "TCP_TLS_KEY",
                    reason: "TCP_TLS_CERT is set: give its private key too".into(),
                })
            }
            (None, Some(_)) => {
                return Err(crate::Error::Config {
                    setting: "TCP_TLS_CERT",
                    reason: "TCP_TLS_KEY is set: give its certificate too".into(),
                })
            }
        };
        let Some(l) = listen.map(str::trim).filter(|l| !l.is_empty()) else {
            if tls.is_some() {
                return Err(crate::Error::Config {
                    setting: "TCP_TLS_CERT",
                    reason: "there is no TCP listener to use it: set TCP_LISTEN too".into(),
                });
            }
            return Ok(None);
        };
        let listen: SocketAddr = l.parse().map_err(|_| crate::Error::Config {
            setting: "TCP_LISTEN",
            reason: format!("{l:?} is not ADDRESS:PORT"),
        })?;
        let explicit = allow.map(str::trim).filter(|a| !a.is_empty());
        if explicit.is_none() && !listen.ip().is_loopback() {
            return Err(crate::Error::Config {
                setting: "TCP_LISTEN",
                reason: format!(
                    "{listen} is not a loopback address: set TCP_ALLOW to the addresses or \
                     CIDR ranges that may ask (the default allows loopback only)"
                ),
            });
        }
        let allow = crate::metrics::parse_allow(explicit.unwrap_or(DEFAULT_ALLOW))
            .map_err(|reason| crate::Error::Config { setting: "TCP_ALLOW", reason })?;
        if max_clients == 0 {
            return Err(crate::Error::Config {
                setting: "TCP_MAX_CLIENTS",
                reason: "0 connections could serve nobody; give 1 or more".into(),
            });
        }
        Ok(Some(TcpConfig { listen, allow, max_clients, tls }))
    }

    /// Whether a peer may ask.
    pub fn allows(allow: &[IpNet], ip: IpAddr) -> bool {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        allow.iter().any(|n| n.contains(&ip))
    }
}

/// What a reply address starts with when it names a TCP connection.
const TAG: &[u8] = b"\0tcp:";

/// The reply address of connection `id`: a NUL, `tcp:`, then the id in decimal.
///
/// ```
/// use inlookup::tcp::{connection_of, reply_address};
/// assert_eq!(connection_of(&reply_address(42)), Some(42));
/// assert_eq!(connection_of(b"/tmp/inquery.1.ff"), None);
/// ```
pub fn reply_address(id: u64) -> Box<[u8]> {
    let mut v = TAG.to_vec();
    v.extend_from_slice(id.to_string().as_bytes());
    v.into()
}

/// The connection a reply address names, or `None` for a FIFO path.
pub fn connection_of(to: &[u8]) -> Option<u64> {
    std::str::from_utf8(to.strip_prefix(TAG)?).ok()?.parse().ok()
}

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// A client's reply FIFO, by the path its frame gave.
    Fifo(&'a [u8]),
    /// A TCP connection waiting in [`Waiting`].
    Tcp(u64),
}

impl Destination<'_> {
    /// The destination a reply address names.
    pub fn of(to: &[u8]) -> Destination<'_> {
        match connection_of(to) {
            Some(id) => Destination::Tcp(id),
            None => Destination::Fifo(to),
        }
    }
}

/// TCP connections that sent their request and wait for the reply, shared by the I/O
/// thread (which puts them here and drops those waiting too long) and whoever replies.
#[derive(Debug, Clone, Default)]
pub struct Waiting(Arc<Mutex<HashMap<u64, (Waiter, Instant)>>>);

/// A connection waiting for its reply: the socket, and its TLS session if it has one.
#[derive(Debug)]
pub struct Waiter {
    /// The socket (non-blocking).
    pub stream: TcpStream,
    /// The TLS session, with the handshake done and the request read.
    pub tls: Option<Box<rustls::ServerConnection>>,
}

impl Waiter {
    /// The bytes to write for `reply`: the reply itself on a plain connection; on a TLS
    /// one, the reply encrypted, then a close_notify (and whatever the session still had
    /// to send before them).
    ///
    /// # Errors
    /// The TLS session refused to encrypt (it is already closing).
    pub fn wire_bytes(&mut self, reply: &[u8]) -> std::io::Result<Vec<u8>> {
        use std::io::Write;
        let Some(tls) = self.tls.as_mut() else { return Ok(reply.to_vec()) };
        tls.writer().write_all(reply)?;
        tls.send_close_notify();
        let mut out = Vec::with_capacity(reply.len() + 64);
        while tls.wants_write() {
            tls.write_tls(&mut out)?;
        }
        Ok(out)
    }
}

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Waiter, Instant)>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn put(&self, id: u64, waiter: Waiter, deadline: Instant) {
        self.lock().insert(id, (waiter, deadline));
    }

    /// Takes connection `id` to reply to it; `None` when it is no longer waiting.
    pub fn take(&self, id: u64) -> Option<Waiter> {
        self.lock().remove(&id).map(|(s, _)| s)
    }

    /// Drops (closes) the connections waiting past their deadline; returns how many.
    fn expire(&self, now: Instant) -> usize {
        let mut m = self.lock();
        let before = m.len();
        m.retain(|_, (_, deadline)| *deadline > now);
        before - m.len()
    }

    /// Connections waiting now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The TCP counters, for STATS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Connections reading or waiting for their reply now.
    pub open: u64,
    /// Connections accepted from allowed peers since start.
    pub accepted: u64,
    /// Connections closed at once because the peer is outside TCP_ALLOW.
    pub refused: u64,
    /// Connections closed at once because TCP_MAX_CLIENTS were open.
    pub busy: u64,
    /// Connections closed because no whole request came within timeoutread, or no reply
    /// could be given within timeoutread and timeoutwrite.
    pub timed_out: u64,
    /// TLS connections closed because their handshake or a TLS record failed, or that the
    /// peer closed before the handshake was done.
    pub tls_failed: u64,
}

/// A connection still reading its request.
#[derive(Debug)]
struct Conn {
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    /// What it sent so far (the plaintext, under TLS).
    buf: Vec<u8>,
    /// Its TLS session, with TCP_TLS_CERT.
    tls: Option<Box<rustls::ServerConnection>>,
    /// Closed if no whole frame by then (timeoutread after accept).
    deadline: Instant,
}

/// What reading a connection gave.
#[derive(Debug)]
pub enum Progress {
    /// Not a whole frame yet.
    Pending,
    /// The peer closed, or the read failed, before a whole frame: closed.
    Closed,
    /// The bytes are not a frame: closed without a reply.
    Bad(inlookup_core::wire::FrameError),
    /// The TLS handshake or a record failed: closed (after TLS's alert, if one was due).
    TlsFailed,
    /// A whole request; the connection now waits for its reply at `to`.
    Request(Arrived),
}

/// A whole request read from a connection.
#[derive(Debug)]
pub struct Arrived {
    /// Who sent it, for the log.
    pub peer: SocketAddr,
    /// The reply address naming the connection.
    pub to: Box<[u8]>,
    /// The frame's bytes (header included).
    pub frame: Vec<u8>,
}

impl Arrived {
    /// The frame, decoded, with the connection as its reply path.
    pub fn frame(&self) -> Option<inlookup_core::wire::Frame<'_>> {
        match inlookup_core::wire::decode(&self.frame) {
            inlookup_core::wire::Decoded::Frame { frame, .. } => {
                Some(inlookup_core::wire::Frame { reply_path: &self.to, ..frame })
            }
            _ => None,
        }
    }
}

/// The I/O thread's side of TCP: the listener and the connections still reading.
#[derive(Debug)]
pub struct TcpSide {
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    allow: Vec<IpNet>,
    max_clients: usize,
    conns: Vec<Conn>,
    waiting: Waiting,
    next_id: u64,
    /// timeoutread: a whole request must come within it.
    read_timeout: Duration,
    /// timeoutread + timeoutwrite: the reply must be out within it.
    reply_timeout: Duration,
    stats: TcpStats,
}

impl TcpSide {
    /// Serves `listener` (bound before privileges were dropped) with these settings; the
    /// connections waiting for replies go to `waiting`, which the replier shares; with
    /// `tls` (loaded from [`TcpConfig::tls`] while privileged), every connection is TLS.
    ///
    /// # Errors
    /// The listener cannot be made non-blocking.
    pub fn new(
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        cfg: &TcpConfig,
        timeouts: inlookup_core::control::Timeouts,
        waiting: Waiting,
    ) -> std::io::Result<TcpSide> {
        listener.set_nonblocking(true)?;
        Ok(TcpSide {
            listener,
            tls,
            allow: cfg.allow.clone(),
            max_clients: cfg.max_clients,
            conns: Vec::new(),
            waiting,
            next_id: 1,
            read_timeout: timeouts.read,
            reply_timeout: timeouts.read + timeouts.write,
            stats: TcpStats::default(),
        })
    }

    /// The descriptors to poll for reading: the listener first, then each connection
    /// still reading, in the order [`TcpSide::read`] takes their indices.
    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        std::iter::once(self.listener.as_fd()).chain(self.conns.iter().map(|c| c.stream.as_fd()))
    }

    /// True while a connection is reading or waiting (the I/O thread polls more often then,
    /// to close the slow ones on time).
    pub fn busy(&self) -> bool {
        !self.conns.is_empty() || !self.waiting.is_empty()
    }

    /// Accepts what the listener has (a bounded number, for fairness).
    pub fn accept(&mut self, now: Instant) {
        for _ in 0..64 {
            let (stream, peer) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: the connection stays queued; try again later.
                    log::warn!("TCP accept: {e}");
                    return;
                }
            };
            if !TcpConfig::allows(&self.allow, peer.ip()) {
                self.stats.refused += 1;
                log::debug!("TCP {peer}: not in TCP_ALLOW; closed");
                continue; // dropped: closed with nothing sent
            }
            if self.conns.len() + self.waiting.len() >= self.max_clients {
                self.stats.busy += 1;
                log::warn!("TCP {peer}: {} connections open already; closed", self.max_clients);
                continue;
            }
            if let Err(e) = stream.set_nonblocking(true) {
                log::warn!("TCP {peer}: {e}; closed");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let tls = match &self.tls {
                None => None,
                Some(cfg) => match rustls::ServerConnection::new(cfg.clone()) {
                    Ok(t) => Some(Box::new(t)),
                    Err(e) => {
                        log::warn!("TCP {peer}: TLS: {e}; closed");
                        continue;
                    }
                },
            };
            self.stats.accepted += 1;
            let id = self.next_id;
            self.next_id += 1;
            let deadline = now + self.read_timeout;
            self.conns.push(Conn { id, stream, peer, buf: Vec::new(), tls, deadline });
        }
    }

    /// Reads connection `i` (an index among [`TcpSide::fds`] minus the listener). A
    /// connection that is done reading leaves the list, which moves the last one to `i`:
    /// take ready indices from the highest down.
    pub fn read(&mut self, i: usize, now: Instant) -> Progress {
        use inlookup_core::wire::{decode, Decoded, PIPE_BUF};
        let c = &mut self.conns[i];
        let mut chunk = [0u8; PIPE_BUF];
        let closed = if c.tls.is_some() {
            match read_tls(c, &mut chunk) {
                Ok(closed) => closed,
                Err(e) => {
                    let c = self.conns.swap_remove(i);
                    self.stats.tls_failed += 1;
                    log::debug!("TCP {}: TLS: {e}; closed", c.peer);
                    return Progress::TlsFailed;
                }
            }
        } else {
            loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => break true,
                    Ok(n) => {
                        c.buf.extend_from_slice(&chunk[..n]);
                        if c.buf.len() >= PIPE_BUF {
                            break false; // a whole frame fits in PIPE_BUF: decide now
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break true,
                }
            }
        };
        let verdict = match decode(&c.buf) {
            Decoded::Frame { used, .. } => Some(Ok(used)),
            Decoded::Bad { error, .. } => Some(Err(error)),
            Decoded::NeedMore => None,
        };
        match verdict {
            None if !closed => Progress::Pending,
            None => {
                let c = self.conns.swap_remove(i);
                if c.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
                    // Given up during the handshake (a client that refused the certificate
                    // may close without an alert).
                    self.stats.tls_failed += 1;
                    log::debug!("TCP {}: closed during the TLS handshake", c.peer);
                    return Progress::TlsFailed;
                }
                log::debug!("TCP {}: closed after {} bytes of a request", c.peer, c.buf.len());
                Progress::Closed
            }
            Some(Err(error)) => {
                let c = self.conns.swap_remove(i);
                log::warn!("TCP {}: {error}; closed", c.peer);
                Progress::Bad(error)
            }
            Some(Ok(used)) => {
                let mut c = self.conns.swap_remove(i);
                c.buf.truncate(used);
                let to = reply_address(c.id);
                let waiter = Waiter { stream: c.stream, tls: c.tls };
                self.waiting.put(c.id, waiter, now + self.reply_timeout);
                Progress::Request(Arrived { peer: c.peer, to, frame: c.buf })
            }
        }
    }

    /// Closes the connections that sent no whole request within timeoutread and drops
    /// those whose reply did not come in time; counts both as timed out. Also sends what a
    /// TLS handshake could not send at once (the peer waits for it before it writes more).
    pub fn expire(&mut self, now: Instant) {
        for c in &mut self.conns {
            if let Some(tls) = c.tls.as_mut() {
                flush_tls(tls, &mut c.stream);
            }
        }
        let before = self.conns.len();
        self.conns.retain(|c| {
            let alive = c.deadline > now;
            if !alive {
                log::debug!(
                    "TCP {}: no whole request within timeoutread ({} bytes); closed",
                    c.peer,
                    c.buf.len()
                );
            }
            alive
        });
        let gone = before - self.conns.len() + self.waiting.expire(now);
        self.stats.timed_out += gone as u64;
    }

    /// The counters.
    pub fn stats(&self) -> TcpStats {
        TcpStats { open: (self.conns.len() + self.waiting.len()) as u64, ..self.stats }
    }
}

/// Reads a TLS connection: records from the socket into the session, the plaintext into
/// `c.buf` (reading stops once it holds a frame's worth), and the handshake's answers back
/// to the socket. Returns whether the peer closed (or the socket failed).
///
/// # Errors
/// A TLS error (a bad handshake, a bad record, a certificate the peer refused): the
/// session's alert, if any, has been written.
fn read_tls(c: &mut Conn, chunk: &mut [u8]) -> Result<bool, rustls::Error> {
    use std::io::ErrorKind;
    let Some(tls) = c.tls.as_mut() else { return Ok(false) };
    let mut closed = false;
    while !closed && c.buf.len() < inlookup_core::wire::PIPE_BUF {
        match tls.read_tls(&mut c.stream) {
            Ok(0) => closed = true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => closed = true,
        }
        if let Err(e) = tls.process_new_packets() {
            flush_tls(tls, &mut c.stream);
            return Err(e);
        }
        loop {
            match tls.reader().read(chunk) {
                Ok(0) => {
                    closed = true; // close_notify: no more request bytes will come
                    break;
                }
                Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
    }
    flush_tls(tls, &mut c.stream);
    Ok(closed)
}

/// Writes what the TLS session has to send, as far as the socket takes it now.
fn flush_tls(tls: &mut rustls::ServerConnection, stream: &mut TcpStream) {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return, // WouldBlock: the rest at the next look; a failure shows as a close
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlookup_core::control::Timeouts;
    use std::io::Write;

    const NO_TLS: (Option<&Path>, Option<&Path>) = (None, None);

    #[test]
    fn reply_addresses_cannot_be_named_by_a_frame() {
        let a = reply_address(7);
        assert_eq!(a[0], 0, "starts with a NUL, which no frame field holds");
        assert_eq!(Destination::of(&a), Destination::Tcp(7));
        assert_eq!(Destination::of(b"/tmp/x"), Destination::Fifo(b"/tmp/x"));
        assert_eq!(connection_of(b"\0tcp:"), None);
        assert_eq!(connection_of(b"tcp:7"), None);
    }

    #[test]
    fn settings_resolve_and_a_public_listener_needs_an_allow_list() {
        assert_eq!(TcpConfig::resolve(None, None, 1, NO_TLS).unwrap(), None);
        assert_eq!(TcpConfig::resolve(Some(" "), None, 1, NO_TLS).unwrap(), None);
        let c = TcpConfig::resolve(Some("127.0.0.1:4000"), None, 8, NO_TLS).unwrap().unwrap();
        assert_eq!(c.listen, "127.0.0.1:4000".parse().unwrap());
        assert!(TcpConfig::allows(&c.allow, "127.0.0.1".parse().unwrap()));
        assert!(TcpConfig::allows(&c.allow, "::1".parse().unwrap()));
        assert!(!TcpConfig::allows(&c.allow, "10.0.0.1".parse().unwrap()));
        let e = TcpConfig::resolve(Some("0.0.0.0:4000"), None, 8, NO_TLS).unwrap_err().to_string();
        assert!(e.contains("TCP_ALLOW"), "{e}");
        let e =
            TcpConfig::resolve(Some("10.1.1.1:4000"), Some(""), 8, NO_TLS).unwrap_err().to_string();
        assert!(e.contains("not a loopback address"), "{e}");
        let c = TcpConfig::resolve(Some("[::]:4000"), Some("10.0.0.0/8, 192.0.2.7"), 8, NO_TLS)
            .unwrap()
            .unwrap();
        assert!(TcpConfig::allows(&c.allow, "10.9.8.7".parse().unwrap()));
        assert!(TcpConfig::allows(&c.allow, "::ffff:192.0.2.7".parse().unwrap()), "mapped v4");
        assert!(!TcpConfig::allows(&c.allow, "127.0.0.1".parse().unwrap()));
        assert!(TcpConfig::resolve(Some("localhost:4000"), None, 8, NO_TLS).is_err());
        assert!(TcpConfig::resolve(Some("127.0.0.1:1"), Some("nowhere"), 8, NO_TLS).is_err());
        assert!(TcpConfig::resolve(Some("127.0.0.1:1"), None, 0, NO_TLS).is_err());
        let (cert, key) = (Path::new("/c.pem"), Path::new("/k.pem"));
        let c = TcpConfig::resolve(Some("127.0.0.1:1"), None, 1, (Some(cert), Some(key)));
        assert_eq!(c.unwrap().unwrap().tls, Some((cert.to_path_buf(), key.to_path_buf())));
        let e = TcpConfig::resolve(Some("127.0.0.1:1"), None, 1, (Some(cert), None));
        assert!(e.unwrap_err().to_string().contains("TCP_TLS_KEY"));
        let e = TcpConfig::resolve(Some("127.0.0.1:1"), None, 1, (None, Some(key)));
        assert!(e.unwrap_err().to_string().contains("TCP_TLS_CERT"));
        let e = TcpConfig::resolve(None, None, 1, (Some(cert), Some(key)));
        assert!(e.unwrap_err().to_string().contains("set TCP_LISTEN"));
        let empty = Path::new("");
        assert_eq!(TcpConfig::resolve(None, None, 1, (Some(empty), Some(empty))).unwrap(), None);
    }

    fn side(allow: &str, max: usize, read_ms: u64) -> (TcpSide, SocketAddr, Waiting) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let cfg = TcpConfig {
            listen: addr,
            allow: crate::metrics::parse_allow(allow).unwrap(),
            max_clients: max,
            tls: None,
        };
        let t = Timeouts { read: Duration::from_millis(read_ms), write: Duration::from_millis(50) };
        let w = Waiting::default();
        (TcpSide::new(l, None, &cfg, t, w.clone()).unwrap(), addr, w)
    }

    fn accept_all(s: &mut TcpSide, want: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.conns.len() < want && Instant::now() < deadline {
            s.accept(Instant::now());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_frame_read_in_pieces_waits_for_its_reply_and_slow_ones_time_out() {
        let (mut s, addr, waiting) = side("127.0.0.1", 4, 200);
        let frame = inlookup_core::wire::encode_request(1, b"a@b", b"socket", b"").unwrap();
        let mut whole = TcpStream::connect(addr).unwrap();
        let mut half = TcpStream::connect(addr).unwrap();
        accept_all(&mut s, 2);
        assert_eq!(s.stats().accepted, 2);
        half.write_all(&frame[..5]).unwrap();
        whole.write_all(&frame[..3]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        for i in (0..s.conns.len()).rev() {
            assert!(matches!(s.read(i, Instant::now()), Progress::Pending));
        }
        whole.write_all(&frame[3..]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut got = None;
        for i in (0..s.conns.len()).rev() {
            if let Progress::Request(a) = s.read(i, Instant::now()) {
                got = Some(a);
            }
        }
        let a = got.expect("the whole frame arrived");
        let f = a.frame().unwrap();
        assert_eq!((f.kind, f.email), (1, &b"a@b"[..]));
        let id = connection_of(f.reply_path).unwrap();
        assert_eq!(s.stats().open, 2, "one reading, one waiting");
        let mut stream = waiting.take(id).expect("waiting for its reply");
        stream.stream.write_all(b"\0\0\0\0").unwrap();
        drop(stream);
        let mut reply = Vec::new();
        whole.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"\0\0\0\0");
        // The half frame is closed after timeoutread, with nothing sent.
        s.expire(Instant::now() + Duration::from_millis(300));
        assert_eq!(s.stats().timed_out, 1);
        assert_eq!(s.stats().open, 0);
        let mut rest = Vec::new();
        assert_eq!(half.read_to_end(&mut rest).unwrap_or(0), 0);
    }

    #[test]
    fn peers_outside_the_allow_list_and_past_the_bound_are_closed_with_no_byte() {
        let (mut s, addr, _w) = side("127.0.0.2/32", 4, 1000);
        let mut c = TcpStream::connect(addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.stats().refused == 0 && Instant::now() < deadline {
            s.accept(Instant::now());
        }
        assert_eq!((s.stats().refused, s.stats().open), (1, 0));
        let mut got = Vec::new();
        assert_eq!(c.read_to_end(&mut got).unwrap_or(0), 0);
        let (mut s, addr, _w) = side("127.0.0.1", 1, 1000);
        let _first = TcpStream::connect(addr).unwrap();
        accept_all(&mut s, 1);
        let mut second = TcpStream::connect(addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.stats().busy == 0 && Instant::now() < deadline {
            s.accept(Instant::now());
        }
        assert_eq!(s.stats().busy, 1);
        let mut got = Vec::new();
        assert_eq!(second.read_to_end(&mut got).unwrap_or(0), 0);
    }

    #[test]
    fn garbage_is_closed_without_a_reply() {
        let (mut s, addr, w) = side("127.0.0.1", 4, 1000);
        let mut c = TcpStream::connect(addr).unwrap();
        accept_all(&mut s, 1);
        c.write_all(&[0xff; 16]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(matches!(s.read(0, Instant::now()), Progress::Bad(_)));
        assert!(w.is_empty());
    }
}
