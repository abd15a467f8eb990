//! The client's errors: each says what failed and, for timeouts, in which phase.

use std::fmt;
use std::path::PathBuf;

/// Which step of a query ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Writing the request into the daemon's FIFO (timeoutwrite).
    Write,
    /// Waiting for the reply (timeoutread).
    Read,
}

/// What can go wrong asking inlookup.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No daemon serves the request FIFO(s): they are missing or nobody reads them.
    NotRunning(PathBuf),
    /// The daemon did not answer in time.
    Timeout { phase: Phase, after: std::time::Duration },
    /// The reply did not have the query kind's format.
    Malformed(String),
    /// The daemon answered with an error (its backend failed, or it refused the request).
    Backend,
    /// The request cannot be sent as given (NUL byte, too long, RELAY without an IP…).
    BadArgument(String),
    /// A system call failed (creating the reply FIFO, for instance).
    Io { what: String, source: std::io::Error },
    /// Direct mode: MySQL failed.
    Mysql(inlookup_core::LookupError),
    /// Over TCP: the reply claims more bytes than a TCP client takes (8192, as IndiMail).
    TooLarge(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotRunning(p) => {
                write!(f, "inlookup is not running (no reader on {})", p.display())
            }
            Error::Timeout { phase: Phase::Write, after } => {
                write!(f, "timed out after {} ms writing the request", after.as_millis())
            }
            Error::Timeout { phase: Phase::Read, after } => {
                write!(f, "timed out after {} ms waiting for the reply", after.as_millis())
            }
            Error::Malformed(why) => write!(f, "malformed reply: {why}"),
            Error::Backend => f.write_str("inlookup service returned error"),
            Error::BadArgument(why) => write!(f, "bad argument: {why}"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::Mysql(e) => write!(f, "{e}"),
            Error::TooLarge(n) => {
                write!(f, "reply of {n} bytes exceeds {} over TCP", crate::tcp::MAX_TCP_REPLY)
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Mysql(e) => Some(e),
            _ => None,
        }
    }
}

impl From<inlookup_core::ReplyError> for Error {
    fn from(e: inlookup_core::ReplyError) -> Self {
        match e {
            inlookup_core::ReplyError::Backend => Error::Backend,
            inlookup_core::ReplyError::Malformed(m) => Error::Malformed(m),
        }
    }
}

pub(crate) fn io(what: impl Into<String>, e: impl Into<std::io::Error>) -> Error {
    Error::Io { what: what.into(), source: e.into() }
}
