//! Asking over TCP instead of the FIFO, in IndiMail's framing (one request per connection,
//! the reply-path field `socket`, the same reply bytes):
//!
//! - [`TcpMode::Descriptors`]: under ucspi-tcp's `tcpclient` (TCPCLIENT and TCPREMOTEIP
//!   both set, as IndiMail's inquery() checks), the request goes to fd 7 and the reply is
//!   read from fd 6, which tcpclient connected to the server.
//! - [`TcpMode::Connect`]: INQUERY_TCP=HOST:PORT (our own): connect, ask, read, close.
//!
//! Both use the control timeouts: timeoutwrite for the connect and the request,
//! timeoutread for the whole reply. A reply claiming more than [`MAX_TCP_REPLY`] bytes is
//! an error ([`Error::TooLarge`], EMSGSIZE in C), as in IndiMail's client.

use crate::error::{io, Error, Phase};
use inlookup_core::control::{self, Timeouts};
use inlookup_core::wire::{encode_request, reply_int, HEADER_LEN};
use inlookup_core::QueryKind;
use nix::errno::Errno;
use nix::poll::PollFlags;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// The largest reply body taken over TCP (IndiMail's client buffer).
pub const MAX_TCP_REPLY: usize = 8192;
/// What IndiMail's TCP clients put in the reply-path field; servers ignore it.
pub const SOCKET_PATH: &[u8] = b"socket";
/// tcpclient's descriptors: the client reads fd 6 and writes fd 7.
const READ_FD: i32 = 6;
const WRITE_FD: i32 = 7;

/// How to reach a daemon over TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpMode {
    /// fd 7 for the request, fd 6 for the reply, opened by `tcpclient`.
    Descriptors,
    /// A connection of our own to HOST:PORT.
    Connect(String),
}

impl TcpMode {
    /// From the environment: [`TcpMode::Descriptors`] when TCPCLIENT and TCPREMOTEIP are
    /// both set, else [`TcpMode::Connect`] when INQUERY_TCP is set and not empty, else
    /// `None` (the FIFO).
    pub fn from_env() -> Option<TcpMode> {
        TcpMode::from_values(
            control::env_var("TCPCLIENT").as_deref(),
            control::env_var("TCPREMOTEIP").as_deref(),
            control::env_var("INQUERY_TCP").as_deref(),
        )
    }

    /// [`TcpMode::from_env`] on given values.
    pub fn from_values(
        tcpclient: Option<&str>,
        tcpremoteip: Option<&str>,
        inquery_tcp: Option<&str>,
    ) -> Option<TcpMode> {
        if tcpclient.is_some() && tcpremoteip.is_some() {
            return Some(TcpMode::Descriptors);
        }
        inquery_tcp.map(str::trim).filter(|a| !a.is_empty()).map(|a| TcpMode::Connect(a.into()))
    }

    /// Asks one request; the reply's leading int and body, as raw as they came (the body
    /// only for kinds that have one, and only when the int is positive).
    ///
    /// # Errors
    /// [`Error::NotRunning`] when nothing listens, [`Error::Timeout`], [`Error::TooLarge`],
    /// [`Error::Malformed`] for a reply cut short, [`Error::Io`].
    pub fn raw(
        &self,
        kind_byte: u8,
        email: &str,
        ip: &str,
        timeouts: Timeouts,
    ) -> Result<(i32, Vec<u8>), Error> {
        let frame = encode_request(kind_byte, email.as_bytes(), SOCKET_PATH, ip.as_bytes())
            .map_err(|e| Error::BadArgument(e.to_string()))?;
        match self {
            TcpMode::Descriptors => {
                // SAFETY: under tcpclient fds 6 and 7 are open for the whole process life;
                // they are only borrowed for this call, never closed here.
                let (r, w) =
                    unsafe { (BorrowedFd::borrow_raw(READ_FD), BorrowedFd::borrow_raw(WRITE_FD)) };
                exchange(r, w, kind_byte, &frame, timeouts)
            }
            TcpMode::Connect(addr) => {
                let stream = connect(addr, timeouts.write)?;
                stream.set_nonblocking(true).map_err(|e| io("set_nonblocking", e))?;
                exchange(stream.as_fd(), stream.as_fd(), kind_byte, &frame, timeouts)
            }
        }
    }
}

fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, Error> {
    let addrs = addr
        .to_socket_addrs()
        .map_err(|e| Error::BadArgument(format!("INQUERY_TCP {addr:?}: {e}")))?;
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            Err(Error::Timeout { phase: Phase::Write, after: timeout })
        }
        Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(Error::NotRunning(addr.into()))
        }
        Some(e) => Err(io(format!("connect {addr}"), e)),
        None => Err(Error::BadArgument(format!("INQUERY_TCP {addr:?}: no address"))),
    }
}

/// Writes `frame` to `w`, then reads the reply from `r`, each within its timeout. The
/// descriptors may block (tcpclient's) or not: each read and write waits for readiness.
pub(crate) fn exchange(
    r: BorrowedFd<'_>,
    w: BorrowedFd<'_>,
    kind_byte: u8,
    frame: &[u8],
    timeouts: Timeouts,
) -> Result<(i32, Vec<u8>), Error> {
    let deadline = Instant::now() + timeouts.write;
    let mut at = 0;
    while at < frame.len() {
        crate::client::wait(w, PollFlags::POLLOUT, deadline, Phase::Write, timeouts.write)?;
        match nix::unistd::write(w, &frame[at..]) {
            Ok(n) => at += n,
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => return Err(io("write request", e)),
        }
    }
    let deadline = Instant::now() + timeouts.read;
    let mut header = [0u8; HEADER_LEN];
    read_exact(r, &mut header, deadline, timeouts.read)?;
    let n = reply_int(header);
    let bare = QueryKind::from_byte(kind_byte).is_some_and(QueryKind::reply_is_bare_int);
    if bare || n <= 0 {
        return Ok((n, Vec::new()));
    }
    let n = n as usize;
    if n > MAX_TCP_REPLY {
        return Err(Error::TooLarge(n));
    }
    let mut body = vec![0u8; n];
    read_exact(r, &mut body, deadline, timeouts.read)?;
    Ok((reply_int(header), body))
}

fn read_exact(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    deadline: Instant,
    total: Duration,
) -> Result<(), Error> {
    let mut got = 0;
    while got < buf.len() {
        crate::client::wait(fd, PollFlags::POLLIN, deadline, Phase::Read, total)?;
        match nix::unistd::read(fd, &mut buf[got..]) {
            Ok(0) => {
                return Err(Error::Malformed(format!(
                    "the connection closed after {got} of {} bytes",
                    buf.len()
                )))
            }
            Ok(n) => got += n,
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(Errno::ECONNRESET) => {
                return Err(Error::Malformed("the connection was reset".into()))
            }
            Err(e) => return Err(io("read reply", e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn t() -> Timeouts {
        Timeouts { read: Duration::from_millis(300), write: Duration::from_millis(300) }
    }

    #[test]
    fn modes_come_from_indimails_variables_then_ours() {
        assert_eq!(
            TcpMode::from_values(Some(""), Some("10.0.0.1"), None),
            Some(TcpMode::Descriptors)
        );
        assert_eq!(
            TcpMode::from_values(Some("1"), None, None),
            None,
            "TCPCLIENT alone is not enough"
        );
        assert_eq!(
            TcpMode::from_values(None, Some("1.2.3.4"), Some("h:1")),
            Some(TcpMode::Connect("h:1".into()))
        );
        assert_eq!(TcpMode::from_values(None, None, Some(" ")), None);
    }

    /// A server end that reads the request and answers `reply`.
    fn serve(reply: Vec<u8>) -> (UnixStream, std::thread::JoinHandle<Vec<u8>>) {
        let (a, b) = UnixStream::pair().unwrap();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let n = nix::unistd::read(&b, &mut buf).unwrap();
            let _ = nix::unistd::write(&b, &reply);
            buf[..n].to_vec()
        });
        (a, h)
    }

    #[test]
    fn a_request_in_indimails_framing_and_its_reply() {
        let mut reply = 5i32.to_ne_bytes().to_vec();
        reply.extend_from_slice(b"a.b:\0");
        let (fd, h) = serve(reply);
        let frame = encode_request(7, b"a.b", SOCKET_PATH, b"").unwrap();
        let got = exchange(fd.as_fd(), fd.as_fd(), 7, &frame, t()).unwrap();
        assert_eq!(got, (5, b"a.b:\0".to_vec()));
        let sent = h.join().unwrap();
        assert_eq!(sent, frame);
        assert!(sent.windows(8).any(|w| w == b"\0socket\0"), "the path field is `socket`");
    }

    #[test]
    fn a_reply_over_8192_bytes_is_too_large_and_a_cut_one_malformed() {
        let (fd, _h) = serve(9000i32.to_ne_bytes().to_vec());
        let frame = encode_request(3, b"a@b", SOCKET_PATH, b"").unwrap();
        let e = exchange(fd.as_fd(), fd.as_fd(), 3, &frame, t()).unwrap_err();
        assert!(matches!(e, Error::TooLarge(9000)), "{e:?}");
        let (fd, _h) = serve(10i32.to_ne_bytes().to_vec());
        let e = exchange(fd.as_fd(), fd.as_fd(), 3, &frame, t()).unwrap_err();
        assert!(matches!(e, Error::Malformed(_)), "{e:?}");
    }

    #[test]
    fn a_silent_server_is_a_read_timeout() {
        let (a, _b) = UnixStream::pair().unwrap();
        let frame = encode_request(1, b"a@b", SOCKET_PATH, b"").unwrap();
        let e = exchange(a.as_fd(), a.as_fd(), 1, &frame, t()).unwrap_err();
        assert!(matches!(e, Error::Timeout { phase: Phase::Read, .. }), "{e:?}");
    }
}
