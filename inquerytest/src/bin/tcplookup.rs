//! `tcplookup`: IndiMail's relay from TCP to the local inlookup, run under tcpserver (with
//! tcprules for access control, as IndiMail's tcplookup(8) says). It reads one request in
//! IndiMail's framing on fd 0, asks the local daemon over its FIFO (the instance chosen as
//! `inquery()` chooses: INFIFO, INFIFODIR, `.1`…`.N` spread at random, the bare name when
//! there is no `.1`, so never IndiMail's division by zero), with a reply FIFO of its own in
//! FIFOTMPDIR, and copies the reply to fd 1.
//!
//! It is a binary of its own, named as IndiMail's, so a tcpserver command line written for
//! IndiMail runs it unchanged; it lives beside inquerytest because both are clients of the
//! daemon built on the `inquery` crate.
//!
//! Exit codes: 0 when a reply was copied; 100 when fd 0 gave no whole request within
//! timeoutread, or garbage (nothing is written); 111 when the daemon could not be asked or
//! did not answer within the control timeouts. Then the reply written is `-1`, which every
//! IndiMail client reads as "inlookup service returned error". (IndiMail's tcplookup writes
//! the errno as a native int instead, which its clients misread as a status or a length:
//! 110 for a timeout would read as a USER status 110.)

use inlookup_core::control::Timeouts;
use inlookup_core::wire::{decode, Decoded, ERROR_REPLY, PIPE_BUF};
use inquery::Client;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::process::ExitCode;
use std::time::Instant;

/// One request frame from `input` within timeoutread, or why not.
fn read_request(input: BorrowedFd<'_>, timeouts: Timeouts) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + timeouts.read;
    let mut buf = Vec::new();
    let mut chunk = [0u8; PIPE_BUF];
    loop {
        match decode(&buf) {
            Decoded::Frame { used, .. } => {
                buf.truncate(used);
                return Ok(buf);
            }
            Decoded::Bad { error, .. } => return Err(error.to_string()),
            Decoded::NeedMore => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no whole request within timeoutread ({} bytes)", buf.len()));
        }
        let ms = PollTimeout::try_from(left.as_millis().clamp(1, 60_000) as i32)
            .unwrap_or(PollTimeout::MAX);
        match poll(&mut [PollFd::new(input, PollFlags::POLLIN)], ms) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        match nix::unistd::read(input, &mut chunk) {
            Ok(0) => return Err(format!("the peer closed after {} bytes", buf.len())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

fn main() -> ExitCode {
    // The local daemon over its FIFO, whatever TCPCLIENT or INQUERY_TCP say (under
    // tcpserver TCPREMOTEIP is set, and the relay must not ask over TCP itself).
    let client = Client { tcp: None, ..Client::from_env() };
    let stdin = std::io::stdin();
    let frame = match read_request(stdin.as_fd(), client.timeouts) {
        Ok(f) => f,
        Err(why) => {
            eprintln!("tcplookup: {why}");
            return ExitCode::from(100);
        }
    };
    let Decoded::Frame { frame: f, .. } = decode(&frame) else {
        return ExitCode::from(100); // read_request returned a whole frame
    };
    let email = String::from_utf8_lossy(f.email);
    let ip = String::from_utf8_lossy(f.ip);
    let (reply, code) = match client.raw(f.kind, &email, &ip) {
        Ok((n, body)) => {
            let mut r = n.to_ne_bytes().to_vec();
            r.extend_from_slice(&body);
            (r, 0)
        }
        Err(e) => {
            eprintln!("tcplookup: {e}");
            (ERROR_REPLY.to_vec(), 111)
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(&reply).and_then(|()| out.flush()) {
        eprintln!("tcplookup: stdout: {e}");
        return ExitCode::from(111);
    }
    ExitCode::from(code)
}
