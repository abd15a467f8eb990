//! Exit codes, the early-stop type and printing, shared by the subcommands.

use inquery::Error;
use std::io::Write;

/// Answered (also: user absent, not allowed to relay, no aliases).
pub const EXIT_OK: i32 = 0;
/// Not found (PWD, HOST, LIMIT), or the query failed.
pub const EXIT_FAILURE: i32 = 1;
/// Usage mistake.
pub const EXIT_USAGE: i32 = 100;
/// A system error of our own: the reply FIFO, the private server.
pub const EXIT_SYSTEM: i32 = 111;

/// Why the program stops early: one line for stderr and an exit code.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) code: i32,
    pub(crate) msg: String,
}

/// A [`Fail`] with this code and message.
pub(crate) fn fail(code: i32, msg: impl Into<String>) -> Fail {
    Fail { code, msg: msg.into() }
}

/// A failed query as a [`Fail`], with the exit code its error calls for.
pub(crate) fn query_failed(what: &str, e: &Error) -> Fail {
    let code = match e {
        Error::BadArgument(_) => EXIT_USAGE,
        Error::Io { .. } => EXIT_SYSTEM,
        _ => EXIT_FAILURE,
    };
    fail(code, format!("{what}: {e}"))
}

/// Writes `s` (text, or the IMAP server's bytes as they came) to stdout and flushes it.
pub(crate) fn print(s: impl AsRef<[u8]>) -> Result<(), Fail> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_ref())
        .and_then(|()| out.flush())
        .map_err(|e| fail(EXIT_SYSTEM, format!("stdout: {e}")))
}

/// A value as one line of JSON.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, Fail> {
    serde_json::to_string(v).map(|s| s + "\n").map_err(|e| fail(EXIT_SYSTEM, format!("json: {e}")))
}
