//! IndiMail's inlookup under tcpserver: with TCPREMOTEIP in the environment, inlookup
//! answers one request read from fd 0, writes its reply to fd 1 and exits. No FIFOs, no
//! cache, no workers: one direct lookup over one MySQL connection, with the daemon's SQL
//! and reply codec, so the bytes are those the daemon would send for the same question.
//!
//! Unlike the original, the whole request (its 4-byte length included) must come within
//! timeoutread, and the reply must be taken within timeoutwrite: a peer that sends nothing
//! does not hold a process and a MySQL connection for ever.

use crate::backend::{Backend, Form};
use inlookup_core::wire::{decode, Decoded, Frame, ERROR_REPLY, PIPE_BUF};
use inlookup_core::QueryKind;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::fmt;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

/// True when inlookup runs under tcpserver (or anything setting TCPREMOTEIP) and should
/// serve one request on fds 0 and 1.
pub fn wanted() -> bool {
    std::env::var_os("TCPREMOTEIP").is_some()
}

/// Why no reply was written.
#[derive(Debug)]
pub enum OneShotError {
    /// No whole request within timeoutread (or the peer closed first).
    NoRequest {
        /// Bytes that did come.
        got: usize,
    },
    /// The bytes are not a request frame.
    Bad(inlookup_core::wire::FrameError),
    /// Reading or writing failed, or the reply was not taken within timeoutwrite.
    Io(&'static str, Errno),
}

impl fmt::Display for OneShotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OneShotError::NoRequest { got } => {
                write!(f, "no whole request within timeoutread ({got} bytes came)")
            }
            OneShotError::Bad(e) => write!(f, "{e}"),
            OneShotError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for OneShotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OneShotError::Bad(e) => Some(e),
            OneShotError::Io(_, e) => Some(e),
            OneShotError::NoRequest { .. } => None,
        }
    }
}

fn wait(fd: BorrowedFd<'_>, flags: PollFlags, deadline: Instant) -> Result<bool, Errno> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let ms = PollTimeout::try_from(left.as_millis().clamp(1, 60_000) as i32)
            .unwrap_or(PollTimeout::MAX);
        match poll(&mut [PollFd::new(fd, flags)], ms) {
            Ok(0) | Err(Errno::EINTR) => {}
            Ok(_) => return Ok(true),
            Err(e) => return Err(e),
        }
    }
}

/// Reads one request frame from `input` within `timeout`.
///
/// # Errors
/// Nothing whole came in time, the bytes are not a frame, or a read failed.
pub fn read_request(input: BorrowedFd<'_>, timeout: Duration) -> Result<Vec<u8>, OneShotError> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; PIPE_BUF];
    loop {
        match decode(&buf) {
            Decoded::Frame { used, .. } => {
                buf.truncate(used);
                return Ok(buf);
            }
            Decoded::Bad { error, .. } => return Err(OneShotError::Bad(error)),
            Decoded::NeedMore => {}
        }
        if !wait(input, PollFlags::POLLIN, deadline).map_err(|e| OneShotError::Io("poll", e))? {
            return Err(OneShotError::NoRequest { got: buf.len() });
        }
        match nix::unistd::read(input, &mut chunk) {
            Ok(0) => return Err(OneShotError::NoRequest { got: buf.len() }),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => return Err(OneShotError::Io("read", e)),
        }
    }
}

/// The reply to one request, as the daemon would give it without a cache: the answer of a
/// classic kind (ALIAS-FULL included), `-1` for anything else (inlookup's own kinds and
/// IMAP need the daemon), a bad field, or a failed lookup.
pub fn reply(backend: &mut dyn Backend, f: &Frame<'_>) -> Vec<u8> {
    let Some(kind) = QueryKind::from_byte(f.kind) else {
        log::warn!("unknown query type {}", f.kind);
        return ERROR_REPLY.to_vec();
    };
    let (Ok(email), Ok(ip)) = (std::str::from_utf8(f.email), std::str::from_utf8(f.ip)) else {
        log::warn!("{kind} query: a field is not UTF-8");
        return ERROR_REPLY.to_vec();
    };
    let Some((base, whole)) = kind.answers() else {
        log::warn!("{kind} is not answered without the daemon");
        return ERROR_REPLY.to_vec();
    };
    if base == QueryKind::Relay && ip.trim().is_empty() {
        log::warn!("relay query without an IP");
        return ERROR_REPLY.to_vec();
    }
    log::debug!("Query [{}], User {email}, RemoteIp {ip}", kind.label());
    match backend.answer(base, email, ip) {
        Ok(a) => {
            let form = if whole { Form::Whole } else { Form::Capped };
            form.fit(&a.encode_whole()).to_vec()
        }
        Err(e) => {
            log::warn!("{kind} lookup failed: {e}");
            ERROR_REPLY.to_vec()
        }
    }
}

/// Writes `bytes` to `output` within `timeout`.
///
/// # Errors
/// A write failed, or the peer did not take the reply in time.
pub fn write_reply(
    output: BorrowedFd<'_>,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), OneShotError> {
    let deadline = Instant::now() + timeout;
    let mut at = 0;
    while at < bytes.len() {
        match nix::unistd::write(output, &bytes[at..]) {
            Ok(n) => at += n,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let ready = wait(output, PollFlags::POLLOUT, deadline)
                    .map_err(|e| OneShotError::Io("poll", e))?;
                if !ready {
                    return Err(OneShotError::Io("write", Errno::ETIMEDOUT));
                }
            }
            Err(e) => return Err(OneShotError::Io("write", e)),
        }
    }
    Ok(())
}

/// Serves one request: read from `input`, answer with `backend`, write to `output`.
///
/// # Errors
/// As [`read_request`] and [`write_reply`]; a failed lookup is not an error (its reply is
/// `-1`).
pub fn serve(
    backend: &mut dyn Backend,
    input: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
    timeouts: inlookup_core::control::Timeouts,
) -> Result<(), OneShotError> {
    let request = read_request(input, timeouts.read)?;
    let bytes = match decode(&request) {
        Decoded::Frame { frame, .. } => reply(backend, &frame),
        _ => ERROR_REPLY.to_vec(), // read_request returned a whole frame
    };
    write_reply(output, &bytes, timeouts.write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendError;
    use inlookup_core::wire::encode_request;
    use inlookup_core::{Answer, UserStatus};
    use std::os::fd::AsFd;

    struct Fixed;
    impl Backend for Fixed {
        fn answer(
            &mut self,
            kind: QueryKind,
            email: &str,
            _: &str,
        ) -> Result<Answer, BackendError> {
            match (kind, email) {
                (QueryKind::User, "a@b") => Ok(Answer::User { status: UserStatus::Active }),
                _ => Err(BackendError::new(crate::backend::ErrorClass::QueryFailed, "down")),
            }
        }
        fn reset(&mut self) {}
    }

    fn run(input: &[u8]) -> (Result<(), OneShotError>, Vec<u8>) {
        let (r_in, w_in) = nix::unistd::pipe().unwrap();
        let (r_out, w_out) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&w_in, input).unwrap();
        drop(w_in);
        let t = inlookup_core::control::Timeouts {
            read: Duration::from_millis(300),
            write: Duration::from_millis(300),
        };
        let res = serve(&mut Fixed, r_in.as_fd(), w_out.as_fd(), t);
        drop(w_out);
        let mut out = vec![0u8; 64];
        let n = nix::unistd::read(&r_out, &mut out).unwrap_or(0);
        out.truncate(n);
        (res, out)
    }

    #[test]
    fn one_request_one_reply_and_failures_reply_minus_one() {
        let (r, out) = run(&encode_request(1, b"a@b", b"socket", b"").unwrap());
        assert!(r.is_ok());
        assert_eq!(out, 0i32.to_ne_bytes());
        let (r, out) = run(&encode_request(1, b"x@b", b"socket", b"").unwrap());
        assert!(r.is_ok());
        assert_eq!(out, ERROR_REPLY, "a failed lookup is -1");
        let (_, out) = run(&encode_request(2, b"a@b", b"socket", b"").unwrap());
        assert_eq!(out, ERROR_REPLY, "relay without an IP");
        let (_, out) = run(&encode_request(11, b"", b"socket", b"").unwrap());
        assert_eq!(out, ERROR_REPLY, "STATS needs the daemon");
    }

    #[test]
    fn half_a_request_or_garbage_gets_no_reply() {
        let frame = encode_request(1, b"a@b", b"socket", b"").unwrap();
        let (r, out) = run(&frame[..6]);
        assert!(matches!(r, Err(OneShotError::NoRequest { got: 6 })), "{r:?}");
        assert!(out.is_empty());
        let (r, out) = run(&[0xff; 12]);
        assert!(matches!(r, Err(OneShotError::Bad(_))), "{r:?}");
        assert!(out.is_empty());
    }
}
