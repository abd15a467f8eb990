//! IMAP sessions through inlookup: log in once per session key, run commands on the
//! connection the daemon keeps, log out (the daemon parks the connection for the next
//! login), or only check a password against its auth cache.
//!
//! A request is one FIFO write, so a command with its literals must fit in about 4 KB of
//! JSON; a reply carries at most about 512 KB of server responses.
//!
//! ```no_run
//! use inquery::Client;
//! let c = Client::from_env();
//! let login = c.imap_login("alice", "secret", "web-session-42", "192.0.2.7")?;
//! println!("reused: {}", login.reused);
//! let r = c.imap_command("web-session-42", "a1 SELECT INBOX")?;
//! println!("{:?} {}", r.status, String::from_utf8_lossy(&r.response));
//! c.imap_logout("web-session-42")?;
//! # Ok::<(), inquery::imap::ImapError>(())
//! ```

use crate::client::Client;
use crate::error::Error;
use base64::Engine as _;
use inlookup_core::admin::{
    ImapAuthReply, ImapAuthRequest, ImapCommandReply, ImapCommandRequest, ImapFailure,
    ImapLoginReply, ImapLoginRequest, ImapLogoutReply, ImapLogoutRequest,
};
use inlookup_core::QueryKind;
use std::fmt;

pub use inlookup_core::admin::{ImapErrorCode, ImapStatus};

/// What an IMAP request can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImapError {
    /// The request did not get a reply: the daemon is down, timed out, or refused it
    /// outright (`Error::Backend`: its IMAP queue was full).
    Query(Error),
    /// The daemon answered with a failure: no session, busy, login refused, server gone….
    Failed(ImapFailure),
}

impl ImapError {
    /// The failure's code, when the daemon gave one.
    pub fn code(&self) -> Option<ImapErrorCode> {
        match self {
            ImapError::Failed(f) => Some(f.code),
            ImapError::Query(_) => None,
        }
    }
}

impl fmt::Display for ImapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImapError::Query(e) => write!(f, "{e}"),
            ImapError::Failed(x) => write!(f, "IMAP {:?}: {}", x.code, x.message),
        }
    }
}

impl std::error::Error for ImapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImapError::Query(e) => Some(e),
            ImapError::Failed(_) => None,
        }
    }
}

impl From<Error> for ImapError {
    fn from(e: Error) -> Self {
        ImapError::Query(e)
    }
}

/// A session logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapLogin {
    /// True when the daemon used a connection it already held (no new IMAP login).
    pub reused: bool,
    /// The server's capabilities, upper case.
    pub capabilities: Vec<String>,
}

/// A command's answer, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapResponse {
    /// The caller's tag.
    pub tag: String,
    /// OK, NO or BAD.
    pub status: ImapStatus,
    /// The completion's text after the status.
    pub text: String,
    /// Every response byte, the tagged completion with the caller's tag.
    pub response: Vec<u8>,
}

/// An auth check's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImapAuth {
    /// The user and password are valid.
    pub valid: bool,
    /// The daemon answered from its auth cache.
    pub cached: bool,
}

fn failed(error: Option<ImapFailure>) -> ImapError {
    ImapError::Failed(error.unwrap_or(ImapFailure {
        code: ImapErrorCode::Other,
        message: "the daemon reported a failure without details".into(),
    }))
}

impl Client {
    fn imap<Q: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        kind: QueryKind,
        request: &Q,
    ) -> Result<R, ImapError> {
        let payload =
            serde_json::to_string(request).map_err(|e| Error::BadArgument(e.to_string()))?;
        Ok(self.json(kind, &payload)?)
    }

    /// IMAP login: a logged-in connection for `session` (a key the caller chooses, a web
    /// session id say). The daemon reuses the connection it holds for the same user,
    /// password, session key and IP, or opens one at the user's mail store and logs in.
    ///
    /// ```no_run
    /// let l = inquery::Client::from_env().imap_login("alice", "secret", "s1", "192.0.2.7")?;
    /// assert!(l.capabilities.iter().any(|c| c == "IMAP4REV1"));
    /// # Ok::<(), inquery::imap::ImapError>(())
    /// ```
    ///
    /// # Errors
    /// [`ImapError::Failed`] with [`ImapErrorCode::AuthFailed`] for a wrong password,
    /// `Busy` when every connection is running a command, `Connect`/`Tls` when the server
    /// cannot be reached; [`ImapError::Query`] as [`Client::raw`].
    pub fn imap_login(
        &self,
        user: &str,
        password: &str,
        session: &str,
        ip: &str,
    ) -> Result<ImapLogin, ImapError> {
        let req = ImapLoginRequest {
            user: user.into(),
            password: password.into(),
            session: session.into(),
            ip: ip.into(),
        };
        let r: ImapLoginReply = self.imap(QueryKind::ImapLogin, &req)?;
        if !r.ok {
            return Err(failed(r.error));
        }
        Ok(ImapLogin { reused: r.reused, capabilities: r.capabilities })
    }

    /// IMAP command: one command with the caller's own tag (`a1 SELECT INBOX`), literals
    /// included (`a2 APPEND INBOX {5}\r\nhello`), on the session's connection. A tagged NO
    /// or BAD is an answer, not an error.
    ///
    /// ```no_run
    /// let r = inquery::Client::from_env().imap_command("s1", "a1 SELECT INBOX")?;
    /// println!("{:?}: {}", r.status, r.text);
    /// # Ok::<(), inquery::imap::ImapError>(())
    /// ```
    ///
    /// # Errors
    /// [`ImapError::Failed`] with `NoSession` (log in again), `Refused` (LOGIN, LOGOUT,
    /// IDLE… are not passed on), `BadRequest` (not exactly one command), `Timeout`,
    /// `Disconnected`, `Protocol` (the connection was closed), `TooLarge`; or
    /// [`ImapError::Query`].
    pub fn imap_command(&self, session: &str, command: &str) -> Result<ImapResponse, ImapError> {
        let req = ImapCommandRequest { session: session.into(), command: command.into() };
        let r: ImapCommandReply = self.imap(QueryKind::ImapCommand, &req)?;
        if !r.ok {
            return Err(failed(r.error));
        }
        let response = if r.base64 {
            base64::engine::general_purpose::STANDARD
                .decode(r.response.as_bytes())
                .map_err(|e| Error::Malformed(format!("imap-cmd reply: {e}")))?
        } else {
            r.response.into_bytes()
        };
        Ok(ImapResponse { tag: r.tag, status: r.status, text: r.text, response })
    }

    /// IMAP logout: the session's connection is reset and parked for the same identity's
    /// next login (true), or closed (false).
    ///
    /// ```no_run
    /// let parked = inquery::Client::from_env().imap_logout("s1")?;
    /// # Ok::<(), inquery::imap::ImapError>(())
    /// ```
    ///
    /// # Errors
    /// [`ImapError::Failed`] with `NoSession` when nothing is logged in for the key; or
    /// [`ImapError::Query`].
    pub fn imap_logout(&self, session: &str) -> Result<bool, ImapError> {
        let r: ImapLogoutReply =
            self.imap(QueryKind::ImapLogout, &ImapLogoutRequest { session: session.into() })?;
        if !r.ok {
            return Err(failed(r.error));
        }
        Ok(r.parked)
    }

    /// IMAP auth: are these credentials valid? Answered from the daemon's auth cache
    /// (keyed by a keyed hash of the password) or by a login at the user's mail store.
    ///
    /// ```no_run
    /// let a = inquery::Client::from_env().imap_auth("alice", "secret", "")?;
    /// if a.valid { println!("welcome"); }
    /// # Ok::<(), inquery::imap::ImapError>(())
    /// ```
    ///
    /// # Errors
    /// [`ImapError::Failed`] when the server could not be asked (`Connect`, `Busy`…); a
    /// wrong password is `Ok` with `valid: false`.
    pub fn imap_auth(&self, user: &str, password: &str, ip: &str) -> Result<ImapAuth, ImapError> {
        let req = ImapAuthRequest { user: user.into(), password: password.into(), ip: ip.into() };
        let r: ImapAuthReply = self.imap(QueryKind::ImapAuth, &req)?;
        if !r.ok {
            return Err(failed(r.error));
        }
        Ok(ImapAuth { valid: r.valid, cached: r.cached })
    }
}
