//! The daemon's one error type: why it could not start, or had to stop.

use crate::fifo::FifoError;
use std::fmt;

/// Why the daemon could not start or had to stop.
#[derive(Debug)]
pub enum Error {
    /// A setting that does not parse.
    Config {
        /// Its name (the environment name where it has one).
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Logging could not be set up.
    Logging(LoggingError),
    /// Whom to run as, or dropping root, failed.
    Privileges(PrivsError),
    /// A request FIFO or FIFOTMPDIR could not be used.
    Fifo(FifoError),
    /// The lookups cannot work as configured (a bad table name).
    Lookups(inlookup_core::LookupError),
    /// A thread, a descriptor or the signal handlers could not be set up, or poll failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// Why logging could not be set up.
#[derive(Debug)]
pub enum LoggingError {
    /// SYSLOG names no facility.
    UnknownFacility(String),
    /// No syslog socket.
    Syslog(syslog::Error),
}

/// Why the daemon cannot become the user it must run as.
#[derive(Debug)]
pub enum PrivsError {
    /// Started as root without a user to become.
    RootWithoutUser,
    /// No such user.
    NoSuchUser(String),
    /// The user database could not be read.
    UserLookup(String, nix::errno::Errno),
    /// The user named is root.
    RootTarget(String),
    /// Not root, asked to become someone else.
    NotRoot(String),
    /// The user name has a NUL byte.
    NulInName,
    /// `initgroups`, `setgid` or `setuid` failed.
    Call(&'static str, nix::errno::Errno),
    /// Still root after `setuid`.
    StillRoot,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { setting, reason } => write!(f, "{setting}: {reason}"),
            Error::Logging(e) => write!(f, "{e}"),
            Error::Privileges(e) => write!(f, "{e}"),
            Error::Fifo(e) => write!(f, "{e}"),
            Error::Lookups(e) => write!(f, "{e}"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config { .. } => None,
            Error::Logging(e) => Some(e),
            Error::Privileges(e) => Some(e),
            Error::Fifo(e) => Some(e),
            Error::Lookups(e) => Some(e),
            Error::Io { source, .. } => Some(source),
        }
    }
}

impl fmt::Display for LoggingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoggingError::UnknownFacility(name) => write!(f, "unknown syslog facility {name:?}"),
            LoggingError::Syslog(e) => write!(f, "syslog: {e}"),
        }
    }
}

impl std::error::Error for LoggingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoggingError::UnknownFacility(_) => None,
            LoggingError::Syslog(e) => Some(e),
        }
    }
}

impl fmt::Display for PrivsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivsError::RootWithoutUser => f.write_str(
                "refusing to run as root: pass --user (INLOOKUP_USER) or start under setuidgid/chpst",
            ),
            PrivsError::NoSuchUser(n) => write!(f, "no such user {n:?}"),
            PrivsError::UserLookup(n, e) => write!(f, "user {n}: {e}"),
            PrivsError::RootTarget(n) => write!(f, "--user {n} is root; name an unprivileged user"),
            PrivsError::NotRoot(n) => write!(f, "--user {n}: only root can switch users"),
            PrivsError::NulInName => f.write_str("user name has a NUL"),
            PrivsError::Call(what, e) => write!(f, "{what}: {e}"),
            PrivsError::StillRoot => f.write_str("still root after setuid"),
        }
    }
}

impl std::error::Error for PrivsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PrivsError::UserLookup(_, e) | PrivsError::Call(_, e) => Some(e),
            _ => None,
        }
    }
}

impl From<FifoError> for Error {
    fn from(e: FifoError) -> Self {
        Error::Fifo(e)
    }
}

impl From<LoggingError> for Error {
    fn from(e: LoggingError) -> Self {
        Error::Logging(e)
    }
}

impl From<PrivsError> for Error {
    fn from(e: PrivsError) -> Self {
        Error::Privileges(e)
    }
}

impl Error {
    /// An I/O error while doing `what`.
    pub fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { what, source }
    }
}
