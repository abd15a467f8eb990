//! # inlookup-imap: IMAP sessions behind the FIFO
//!
//! Stateless programs (webmail) log in to IMAP on every page; inlookup keeps those logged-in
//! connections for them. This crate is that part of the daemon, without the daemon: the
//! four IMAP kinds (login, command, logout, auth) are served by [`Sessions::serve`], which
//! takes a request's JSON payload and returns the whole reply bytes. It runs no thread and
//! keeps no queue of its own: the daemon's worker pool calls [`Sessions::serve`] on its
//! threads, runs [`Sessions::reap`] on a thread of its own, and delivers the replies. A
//! user's mail store comes from the daemon too, through [`MailStore`].
//!
//! One bounded [`table::ConnTable`] holds every connection: at most `max_connections`; a
//! login reuses a connection held for the same user, password, session key and client IP;
//! when the table is full the connection idle longest is reclaimed (never a busy one), and
//! when nothing can be reclaimed the request backs off (10, 30, 70, 150, 250 ms) and then
//! gets a "busy" reply. Connections idle past `idle_timeout` are closed by the reaper. A
//! connection that failed or fell out of step in any way is closed, never reused; one whose
//! request never finished (a panic mid-command) leaves the table as broken when its
//! [`table::Lease`] is dropped, so no slot stays busy for ever.
//!
//! # Layout
//!
//! - [`frame`]: the server's responses, framed exactly (literals, continuations).
//! - [`command`]: a caller's command checked and cut at its literals; LOGIN quoting.
//! - [`conn`]: one connection: TCP keepalive, TLS, greeting, login, commands, liveness.
//! - [`tls`]: rustls configuration (roots, or verification off by name).
//! - [`table`]: the connection table and its rules; leases and tickets that give back on drop.
//! - [`auth`]: the keyed password hash, identities and the auth cache.
//! - [`sessions`]: the service ([`Sessions`]): what each request kind does, with the back-off.

#![warn(missing_docs)]

pub mod auth;
pub mod command;
pub mod conn;
pub mod door;
pub mod frame;
pub mod sessions;
pub mod table;
pub mod tls;

pub use conn::Keepalive;
pub use sessions::{DoorIdentity, DoorLogin, MailStore, Request, Sessions};
pub use tls::TlsMode;

use std::path::PathBuf;
use std::time::Duration;

/// The IMAP side's settings (the daemon maps its flags and environment names onto these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapConfig {
    /// The IMAP server for users without a mail store in `hostcntrl` (IMAP_HOST).
    pub host: String,
    /// Its port, also used for mail stores from `hostcntrl` (IMAP_PORT).
    pub port: u16,
    /// Plain, STARTTLS or IMAPS (IMAP_TLS).
    pub tls: TlsMode,
    /// Verify the server's certificate (IMAP_TLS_VERIFY; off only by name).
    pub verify: bool,
    /// Trust exactly the CA certificates in this PEM file instead of the system's
    /// (IMAP_CA_FILE).
    pub ca_file: Option<PathBuf>,
    /// Connections open at most (IMAP_MAX_CONNECTIONS).
    pub max_connections: usize,
    /// A connection unused this long is closed (IMAP_IDLE_TIMEOUT).
    pub idle_timeout: Duration,
    /// Park a connection at logout for the same identity's next login, instead of
    /// closing it (IMAP_PARK).
    pub park: bool,
    /// How long a valid password stays in the auth cache (IMAP_AUTH_TTL).
    pub auth_ttl: Duration,
    /// How long an invalid one does (IMAP_AUTH_NEG_TTL).
    pub auth_negative_ttl: Duration,
    /// Threads the daemon's worker pool gives IMAP requests (IMAP_WORKERS). This crate
    /// starts none; the number is for the daemon (and the start-up log line).
    pub workers: usize,
    /// Requests that may wait for those threads; more are refused at once (by the
    /// daemon's pool, which holds the queue).
    pub queue: usize,
    /// For the TCP connect, greeting and TLS handshake (IMAP_CONNECT_TIMEOUT).
    pub connect_timeout: Duration,
    /// For one command, first byte sent to completion (IMAP_COMMAND_TIMEOUT).
    pub command_timeout: Duration,
    /// TCP keepalive on every IMAP socket (TCP_KEEPALIVE_IDLE/INTVL/CNT).
    pub keepalive: Keepalive,
    /// The most response bytes one command's reply may carry.
    pub max_response: usize,
    /// Entries in the auth cache.
    pub auth_cache_entries: usize,
    /// Before LOGIN, tell a server that offers ID (RFC 2971) the end user's address with
    /// `ID ("x-originating-ip" …)` (IMAP_SEND_ID).
    pub send_id: bool,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            host: "127.0.0.1".into(),
            port: 143,
            tls: TlsMode::Plain,
            verify: true,
            ca_file: None,
            max_connections: 15,
            idle_timeout: Duration::from_secs(420),
            park: true,
            auth_ttl: Duration::from_secs(60),
            auth_negative_ttl: Duration::from_secs(10),
            workers: 17,
            queue: 256,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(60),
            keepalive: Keepalive {
                idle: Duration::from_secs(30),
                interval: Duration::from_secs(10),
                count: 3,
            },
            max_response: 512 * 1024,
            auth_cache_entries: 10_000,
            send_id: true,
        }
    }
}

impl ImapConfig {
    /// One line for the start-up log (the daemon logs it before [`Sessions::new`]).
    pub fn describe(&self) -> String {
        format!(
            "IMAP {}:{} {}{}; at most {} connections, idle timeout {} s, parking {}; {} workers; auth cache {}/{} s; ID with the client's IP {}",
            self.host,
            self.port,
            self.tls,
            match (self.tls, self.verify) {
                (TlsMode::Plain, _) => String::new(),
                (_, false) => " (certificate NOT verified)".into(),
                (_, true) => match &self.ca_file {
                    Some(f) => format!(" (CA {})", f.display()),
                    None => " (system roots)".into(),
                },
            },
            self.max_connections,
            self.idle_timeout.as_secs(),
            if self.park { "on" } else { "off" },
            self.workers,
            self.auth_ttl.as_secs(),
            self.auth_negative_ttl.as_secs(),
            if self.send_id { "on" } else { "off" },
        )
    }
}

/// What a flush ([`Sessions::forget`]) dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Auth cache entries, valid and invalid.
    pub auth_entries: usize,
    /// Parked connections, now being logged out.
    pub parked: usize,
    /// Connections bound to a session, to be closed when the session ends (commands
    /// running on them are not disturbed).
    pub in_use: usize,
}
