//! One connection to an IMAP server: TCP with keepalive, TLS (IMAPS or STARTTLS), the
//! greeting, LOGIN, commands with our own tags and literals sent only when asked for, the
//! reset before parking, the liveness check before reuse, and LOGOUT.
//!
//! Every error here leaves the connection out of step: the caller drops it, never reuses it.

use crate::command::{self, Command};
use crate::frame::{FrameError, Framer, Kind, Response};
use crate::tls::{server_name, TlsMode};
use inlookup_core::admin::{ImapErrorCode, ImapStatus};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// TCP keepalive: idle time before the first probe, interval between probes, probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// TCP_KEEPIDLE.
    pub idle: Duration,
    /// TCP_KEEPINTVL.
    pub interval: Duration,
    /// TCP_KEEPCNT.
    pub count: u32,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Dial {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Plain, STARTTLS or IMAPS.
    pub tls: TlsMode,
    /// The rustls configuration (needed unless plain).
    pub tls_config: Option<Arc<ClientConfig>>,
    /// For the TCP connect, the greeting and the TLS handshake together.
    pub connect_timeout: Duration,
    /// For each command, from its first byte sent to its tagged completion.
    pub command_timeout: Duration,
    /// TCP keepalive on the socket.
    pub keepalive: Keepalive,
    /// The largest response (and command reply) accepted.
    pub max_response: usize,
}

impl fmt::Debug for Dial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dial({}:{} {})", self.host, self.port, self.tls)
    }
}

/// The error behind a [`ConnError`] ([`std::error::Error::source`]).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a connection failed. Every one of these means: close it.
#[derive(Debug)]
pub enum ConnError {
    /// The server could not be reached, or did not greet with `* OK`.
    Connect {
        /// What failed, for people (it says what `source` says, if anything).
        message: String,
        /// The socket error, or the failure that stood for a greeting, if any.
        source: Option<Cause>,
    },
    /// TLS failed: handshake, certificate, or STARTTLS refused.
    Tls {
        /// What failed, for people (it says what `source` says, if anything).
        message: String,
        /// The rustls or I/O error behind it, if any.
        source: Option<Cause>,
    },
    /// No whole answer in time.
    Timeout(&'static str),
    /// The server closed the connection or said `* BYE`.
    Closed(String),
    /// Something out of step: a response for another tag, a continuation request nothing
    /// can answer.
    Protocol(String),
    /// Out of step too: the server's bytes cannot be framed (all but
    /// [`FrameError::TooLarge`], which is [`ConnError::TooLarge`]).
    Framing(FrameError),
    /// A single response larger than the limit.
    TooLarge,
    /// A socket error.
    Io(io::Error),
}

impl ConnError {
    /// A [`ConnError::Connect`] with nothing behind it (yet: [`ConnError::because`]).
    pub fn connect(message: impl Into<String>) -> ConnError {
        ConnError::Connect { message: message.into(), source: None }
    }

    /// A [`ConnError::Tls`] with nothing behind it (yet: [`ConnError::because`]).
    pub fn tls(message: impl Into<String>) -> ConnError {
        ConnError::Tls { message: message.into(), source: None }
    }

    /// The same error, with `cause` as its [`source`](std::error::Error::source) (for
    /// [`ConnError::Connect`] and [`ConnError::Tls`]; the others keep what they have).
    pub fn because(mut self, cause: impl Into<Cause>) -> ConnError {
        if let ConnError::Connect { source, .. } | ConnError::Tls { source, .. } = &mut self {
            *source = Some(cause.into());
        }
        self
    }

    /// The code for the caller.
    pub fn code(&self) -> ImapErrorCode {
        match self {
            ConnError::Connect { .. } => ImapErrorCode::Connect,
            ConnError::Tls { .. } => ImapErrorCode::Tls,
            ConnError::Timeout(_) => ImapErrorCode::Timeout,
            ConnError::Closed(_) | ConnError::Io(_) => ImapErrorCode::Disconnected,
            ConnError::Protocol(_) | ConnError::Framing(_) => ImapErrorCode::Protocol,
            ConnError::TooLarge => ImapErrorCode::TooLarge,
        }
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Connect { message, .. } => write!(f, "connect: {message}"),
            ConnError::Tls { message, .. } => write!(f, "TLS: {message}"),
            ConnError::Timeout(phase) => write!(f, "timed out {phase}"),
            ConnError::Closed(m) => write!(f, "server closed the connection{m}"),
            ConnError::Protocol(m) => write!(f, "out of step: {m}"),
            ConnError::Framing(e) => write!(f, "out of step: {e}"),
            ConnError::TooLarge => f.write_str("a response larger than a reply can carry"),
            ConnError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnError::Connect { source, .. } | ConnError::Tls { source, .. } => {
                source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
            }
            ConnError::Framing(e) => Some(e),
            ConnError::Io(e) => Some(e),
            ConnError::Timeout(_)
            | ConnError::Closed(_)
            | ConnError::Protocol(_)
            | ConnError::TooLarge => None,
        }
    }
}

impl From<FrameError> for ConnError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge => ConnError::TooLarge,
            other => ConnError::Framing(other),
        }
    }
}

fn io_error(e: io::Error, phase: &'static str) -> ConnError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ConnError::Timeout(phase),
        io::ErrorKind::UnexpectedEof => ConnError::Closed(String::new()),
        io::ErrorKind::InvalidData => ConnError::tls(e.to_string()).because(e),
        _ => ConnError::Io(e),
    }
}

/// The socket, with or without TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// What a command got back, in step.
#[derive(Debug)]
pub struct Ran {
    /// The tagged completion's status.
    pub status: ImapStatus,
    /// Its text after the status.
    pub text: String,
    /// Every response byte, the tagged completion carrying `Command::tag`.
    pub response: Vec<u8>,
    /// True when the responses passed the reply limit: `response` is empty, but the
    /// connection read them to the end and is still in step.
    pub overflow: bool,
}

/// A command's responses as they arrive, up to the reply limit.
struct Collected {
    bytes: Vec<u8>,
    /// Past the limit: the bytes were dropped, the reading goes on to stay in step.
    overflow: bool,
    max: usize,
}

impl Collected {
    fn keep(&mut self, r: &Response) {
        if self.bytes.len() + r.bytes.len() > self.max {
            self.overflow = true;
            self.bytes = Vec::new();
        }
        if !self.overflow {
            self.bytes.extend_from_slice(&r.bytes);
        }
    }
}

/// A connection, greeted and (after [`Conn::login`]) authenticated.
pub struct Conn {
    stream: Stream,
    framer: Framer,
    /// Counter for our tags (`L1`, `L2`, …); callers' tags never reach the server.
    tags: u64,
    /// The server's capabilities, upper case.
    caps: Vec<String>,
    /// `host:port`, for logs.
    peer: String,
    command_timeout: Duration,
    max_response: usize,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Conn({})", self.peer)
    }
}

/// A TCP connection with keepalive, tried on every address of the host in turn.
fn tcp_connect(
    host: &str,
    port: u16,
    timeout: Duration,
    ka: Keepalive,
) -> Result<TcpStream, ConnError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| ConnError::connect(format!("{host}:{port}: {e}")).because(e))?
        .collect();
    let mut last = ConnError::connect(format!("{host}:{port}: no address"));
    for addr in addrs {
        let attempt = || -> io::Result<TcpStream> {
            let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            s.set_cloexec(true)?;
            s.set_tcp_nodelay(true)?;
            s.set_keepalive(true)?;
            let params = TcpKeepalive::new()
                .with_time(ka.idle)
                .with_interval(ka.interval)
                .with_retries(ka.count);
            s.set_tcp_keepalive(&params)?;
            s.connect_timeout(&addr.into(), timeout)?;
            Ok(s.into())
        };
        match attempt() {
            Ok(s) => return Ok(s),
            Err(e) => last = ConnError::connect(format!("{addr}: {e}")).because(e),
        }
    }
    Err(last)
}

/// The `[CAPABILITY …]` response code in a status text, if any.
fn capability_code(text: &str) -> Option<Vec<String>> {
    let start = text.find("[CAPABILITY ")? + "[CAPABILITY ".len();
    let end = text[start..].find(']')? + start;
    Some(capability_list(&text[start..end]))
}

/// A capability list (`IMAP4rev1 unselect IDLE`), upper case.
fn capability_list(list: &str) -> Vec<String> {
    list.split_ascii_whitespace().map(str::to_ascii_uppercase).collect()
}

impl Conn {
    /// Connects, reads the greeting, does TLS as configured, and learns the capabilities.
    ///
    /// # Errors
    /// [`ConnError::Connect`] or [`ConnError::Tls`] mostly; any error means no connection.
    pub fn connect(d: &Dial) -> Result<Conn, ConnError> {
        let deadline = Instant::now() + d.connect_timeout;
        let tcp = tcp_connect(&d.host, d.port, d.connect_timeout, d.keepalive)?;
        let stream = match d.tls {
            TlsMode::Imaps => Stream::Tls(Box::new(handshake(tcp, d, deadline)?)),
            TlsMode::Plain | TlsMode::StartTls => Stream::Plain(tcp),
        };
        let mut c = Conn {
            stream,
            framer: Framer::new(d.max_response),
            tags: 0,
            caps: Vec::new(),
            peer: format!("{}:{}", d.host, d.port),
            command_timeout: d.command_timeout,
            max_response: d.max_response,
        };
        let greeting =
            c.read_response(deadline, "waiting for the greeting").map_err(|e| match e {
                e @ ConnError::Tls { .. } => e,
                other => {
                    ConnError::connect(format!("{}: no greeting: {other}", c.peer)).because(other)
                }
            })?;
        let line = String::from_utf8_lossy(greeting.first_line()).into_owned();
        if !line.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("* OK")) {
            return Err(ConnError::connect(format!(
                "{}: greeted with {:?}",
                c.peer,
                truncate(&line)
            )));
        }
        c.caps = capability_code(&line).unwrap_or_default();
        if d.tls == TlsMode::StartTls {
            if !c.caps.is_empty() && !c.has("STARTTLS") {
                return Err(ConnError::tls(format!("{} does not offer STARTTLS", c.peer)));
            }
            let ran = c.run_until(&command::simple("STARTTLS"), deadline)?;
            if ran.status != ImapStatus::Ok {
                return Err(ConnError::tls(format!("STARTTLS refused: {}", truncate(&ran.text))));
            }
            if c.framer.buffered() > 0 {
                return Err(ConnError::tls("plain-text bytes after STARTTLS (injection?)"));
            }
            let Stream::Plain(tcp) = c.stream else {
                return Err(ConnError::tls("TLS already on"));
            };
            c = Conn {
                stream: Stream::Tls(Box::new(handshake(tcp, d, deadline)?)),
                caps: Vec::new(),
                ..c
            };
        }
        if c.caps.is_empty() {
            c.capability(deadline)?;
        }
        Ok(c)
    }

    fn capability(&mut self, deadline: Instant) -> Result<(), ConnError> {
        let ran = self.run_until(&command::simple("CAPABILITY"), deadline)?;
        let text = String::from_utf8_lossy(&ran.response).into_owned();
        for line in text.split("\r\n") {
            if let Some(rest) = line.strip_prefix("* CAPABILITY ") {
                self.caps = capability_list(rest);
            }
        }
        Ok(())
    }

    /// True when the server announced this capability.
    pub fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }

    /// The capabilities, upper case.
    pub fn capabilities(&self) -> &[String] {
        &self.caps
    }

    /// `host:port`.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// LOGIN, after `ID ("x-originating-ip" …)` when `originating` is given and the server
    /// offers ID (a server that refuses it still gets the LOGIN). `Ok(Err(text))` is the
    /// server's refusal (the connection stays usable, but unauthenticated: drop it).
    ///
    /// # Errors
    /// The connection failed or fell out of step.
    pub fn login(
        &mut self,
        user: &str,
        password: &str,
        originating: Option<IpAddr>,
    ) -> Result<Result<(), String>, ConnError> {
        if self.has("LOGINDISABLED") {
            return Ok(Err(
                "the server disables LOGIN on this connection (use STARTTLS or IMAPS)".into()
            ));
        }
        if let Some(ip) = originating.filter(|_| self.has("ID")) {
            let ran = self.run(&command::id(&[("x-originating-ip", &ip.to_string())]))?;
            if ran.status != ImapStatus::Ok {
                log::debug!("IMAP: {} refused ID: {}", self.peer, truncate(&ran.text));
            }
        }
        let ran = self.run(&command::login(user, password))?;
        if ran.status != ImapStatus::Ok {
            return Ok(Err(ran.text));
        }
        match capability_code(&ran.text) {
            Some(caps) => self.caps = caps,
            None => self.capability(Instant::now() + self.command_timeout)?,
        }
        Ok(Ok(()))
    }

    /// Runs one command with our own tag (the caller's goes back on the completion).
    ///
    /// # Errors
    /// The connection failed or fell out of step; [`ConnError::TooLarge`] when a single
    /// response passed the limit.
    pub fn run(&mut self, cmd: &Command) -> Result<Ran, ConnError> {
        self.run_until(cmd, Instant::now() + self.command_timeout)
    }

    fn run_until(&mut self, cmd: &Command, deadline: Instant) -> Result<Ran, ConnError> {
        self.tags += 1;
        let tag = format!("L{}", self.tags).into_bytes();
        let mut out = Collected { bytes: Vec::new(), overflow: false, max: self.max_response };
        for (i, seg) in cmd.segments.iter().enumerate() {
            let mut line = Vec::with_capacity(tag.len() + 1 + seg.line.len());
            if i == 0 {
                line.extend_from_slice(&tag);
                line.push(b' ');
            }
            line.extend_from_slice(&seg.line);
            self.send(&line, deadline)?;
            let Some(literal) = &seg.literal else { continue };
            // A synchronizing literal: wait for the server's go-ahead (or its refusal).
            loop {
                let r = self.read_response(deadline, "waiting for a continuation request")?;
                match &r.kind {
                    Kind::Continuation => {
                        out.keep(&r);
                        break;
                    }
                    Kind::Untagged { bye: true } => return Err(self.bye(&r)),
                    Kind::Untagged { .. } => out.keep(&r),
                    Kind::Tagged { tag: t, status: Some(status) } if *t == tag => {
                        // Refused before the literal: the server does not expect it.
                        out.keep(&r);
                        return Ok(self.finish(cmd, *status, &r, out));
                    }
                    Kind::Tagged { .. } => {
                        return Err(ConnError::Protocol("a completion for another command".into()))
                    }
                }
            }
            self.send(literal, deadline)?;
        }
        loop {
            let r = self.read_response(deadline, "waiting for the command's completion")?;
            match &r.kind {
                Kind::Untagged { bye: true } => return Err(self.bye(&r)),
                Kind::Untagged { .. } => out.keep(&r),
                Kind::Continuation => {
                    return Err(ConnError::Protocol(
                        "a continuation request nobody can answer".into(),
                    ))
                }
                Kind::Tagged { tag: t, status: Some(status) } if *t == tag => {
                    let status = *status;
                    out.keep(&r);
                    return Ok(self.finish(cmd, status, &r, out));
                }
                Kind::Tagged { .. } => {
                    return Err(ConnError::Protocol("a completion for another command".into()))
                }
            }
        }
    }

    /// The reply: our tag on the completion replaced by the caller's.
    fn finish(&self, cmd: &Command, status: ImapStatus, done: &Response, out: Collected) -> Ran {
        let Collected { bytes: mut response, overflow, .. } = out;
        if !overflow {
            response.truncate(response.len() - done.bytes.len());
            response.extend_from_slice(cmd.tag.as_bytes());
            response.extend_from_slice(&done.bytes[done.tag_len()..]);
        }
        Ran { status, text: done.text(), response, overflow }
    }

    fn bye(&self, r: &Response) -> ConnError {
        ConnError::Closed(format!(" (* BYE {})", truncate(&r.text())))
    }

    fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), ConnError> {
        set_timeouts(self.stream.tcp(), deadline, "sending")?;
        self.stream.write_all(bytes).map_err(|e| io_error(e, "sending"))?;
        self.stream.flush().map_err(|e| io_error(e, "sending"))
    }

    fn read_response(
        &mut self,
        deadline: Instant,
        phase: &'static str,
    ) -> Result<Response, ConnError> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(r) = self.framer.next_response()? {
                return Ok(r);
            }
            set_timeouts(self.stream.tcp(), deadline, phase)?;
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(ConnError::Closed(String::new())),
                Ok(n) => self.framer.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(e, phase)),
            }
        }
    }

    /// Is the connection fit for reuse? Checked without blocking: no bytes may be waiting
    /// (a server says nothing between commands; a `* BYE` or EOF means it is gone), and
    /// nothing may be left over from the last command.
    pub fn alive(&mut self) -> bool {
        if self.framer.buffered() > 0 {
            return false;
        }
        if self.stream.tcp().set_nonblocking(true).is_err() {
            return false;
        }
        let mut probe = [0u8; 1];
        let ok = match &mut self.stream {
            Stream::Plain(s) => {
                matches!(s.peek(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Stream::Tls(s) => {
                matches!(s.read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        };
        ok && self.stream.tcp().set_nonblocking(false).is_ok()
    }

    /// Leaves the selected mailbox (UNSELECT, or CLOSE where the server has no UNSELECT),
    /// so the next user of the connection starts from the authenticated state.
    ///
    /// # Errors
    /// The connection failed or fell out of step.
    pub fn reset(&mut self) -> Result<(), ConnError> {
        let name = if self.has("UNSELECT") { "UNSELECT" } else { "CLOSE" };
        // NO or BAD ("no mailbox selected") is fine: the state is authenticated either way.
        self.run(&command::simple(name)).map(|_| ())
    }

    /// LOGOUT, then closes, spending at most `within`; errors are ignored (the
    /// connection is going anyway).
    pub fn quit(mut self, within: Duration) {
        let _ = self.run_until(&command::simple("LOGOUT"), Instant::now() + within);
        if let Stream::Tls(s) = &mut self.stream {
            s.conn.send_close_notify();
            let _ = s.conn.complete_io(&mut s.sock);
        }
        let _ = self.stream.tcp().shutdown(Shutdown::Both);
    }

    /// The socket's descriptor, for the front door's poll.
    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.stream.tcp().as_raw_fd()
    }

    /// True when bytes are waiting that a poll on the socket would not show (decrypted
    /// TLS data), or left over in the framer.
    pub(crate) fn has_buffered(&mut self) -> bool {
        if self.framer.buffered() > 0 {
            return true;
        }
        match &mut self.stream {
            Stream::Plain(_) => false,
            Stream::Tls(s) => {
                s.conn.process_new_packets().map_or(true, |st| st.plaintext_bytes_to_read() > 0)
            }
        }
    }

    /// Read and write timeouts for the front door's relay.
    pub(crate) fn set_relay_timeouts(&self, read: Duration, write: Duration) -> io::Result<()> {
        self.stream.tcp().set_read_timeout(Some(read))?;
        self.stream.tcp().set_write_timeout(Some(write))
    }

    /// Raw reads from the server, for the relay (only while in step with nothing framed).
    pub(crate) fn relay_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }

    /// Raw writes to the server, for the relay.
    pub(crate) fn relay_write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Closes at once, without a word to the server (for connections out of step).
    pub fn abort(self) {
        let _ = self.stream.tcp().shutdown(Shutdown::Both);
    }
}

/// The TLS handshake on a connected socket, bounded by `deadline`.
fn handshake(
    tcp: TcpStream,
    d: &Dial,
    deadline: Instant,
) -> Result<StreamOwned<ClientConnection, TcpStream>, ConnError> {
    let config = d.tls_config.clone().ok_or_else(|| ConnError::tls("no TLS configuration"))?;
    let name = server_name(&d.host).map_err(|e| ConnError::tls(e.to_string()).because(e))?;
    let conn = ClientConnection::new(config, name)
        .map_err(|e| ConnError::tls(e.to_string()).because(e))?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        set_timeouts(&tls.sock, deadline, "in the TLS handshake")?;
        match tls.conn.complete_io(&mut tls.sock) {
            Ok((0, 0)) => {
                return Err(ConnError::tls("the server closed the connection in the handshake"))
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(ConnError::Timeout("in the TLS handshake"))
            }
            Err(e) => return Err(ConnError::tls(e.to_string()).because(e)),
        }
    }
    Ok(tls)
}

fn set_timeouts(tcp: &TcpStream, deadline: Instant, phase: &'static str) -> Result<(), ConnError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ConnError::Timeout(phase));
    }
    tcp.set_read_timeout(Some(left)).map_err(ConnError::Io)?;
    tcp.set_write_timeout(Some(left)).map_err(ConnError::Io)
}

/// At most 200 characters of a server's text, for messages.
fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn sockets_get_the_configured_keepalive() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let ka =
            Keepalive { idle: Duration::from_secs(31), interval: Duration::from_secs(7), count: 4 };
        let s = tcp_connect("127.0.0.1", port, Duration::from_secs(2), ka).unwrap();
        let r = socket2::SockRef::from(&s);
        assert!(r.keepalive().unwrap());
        assert_eq!(r.tcp_keepalive_time().unwrap(), Duration::from_secs(31));
        assert_eq!(r.tcp_keepalive_interval().unwrap(), Duration::from_secs(7));
        assert_eq!(r.tcp_keepalive_retries().unwrap(), 4);
    }

    #[test]
    fn errors_keep_what_they_wrap_as_their_source() {
        use std::error::Error as _;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let ka = Keepalive {
            idle: Duration::from_secs(30),
            interval: Duration::from_secs(10),
            count: 3,
        };
        let e = tcp_connect("127.0.0.1", port, Duration::from_secs(2), ka).unwrap_err();
        assert!(matches!(e, ConnError::Connect { .. }), "{e:?}");
        assert_eq!(e.code(), ImapErrorCode::Connect);
        assert!(e.to_string().starts_with(&format!("connect: 127.0.0.1:{port}: ")), "{e}");
        let io = e.source().and_then(|s| s.downcast_ref::<io::Error>()).unwrap();
        assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);

        let e = ConnError::from(FrameError::BareLf);
        assert_eq!(e.to_string(), "out of step: a line ended in LF without CR");
        assert_eq!(e.code(), ImapErrorCode::Protocol);
        assert_eq!(e.source().and_then(|s| s.downcast_ref()), Some(&FrameError::BareLf));
        assert!(matches!(ConnError::from(FrameError::TooLarge), ConnError::TooLarge));

        let e = io_error(io::Error::new(io::ErrorKind::InvalidData, "bad record mac"), "reading");
        assert_eq!(e.to_string(), "TLS: bad record mac");
        assert!(e.source().is_some());
        let e = ConnError::tls("STARTTLS refused: no");
        assert!(e.source().is_none());
        assert!(ConnError::Timeout("sending").source().is_none());
    }

    #[test]
    fn capability_codes_are_found_in_status_text() {
        assert_eq!(
            capability_code("[CAPABILITY IMAP4rev1 unselect IDLE] Logged in"),
            Some(vec!["IMAP4REV1".to_string(), "UNSELECT".into(), "IDLE".into()])
        );
        assert_eq!(capability_code("Logged in"), None);
    }
}
