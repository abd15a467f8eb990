//! Payloads of inlookup's own kinds (PING, STATS, FLUSH and the four IMAP kinds): JSON in
//! the email field of the request, JSON in the length-prefixed reply.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most JSON a reply of inlookup's own kinds may carry.
pub const MAX_JSON_REPLY: usize = 1 << 20;

/// The reply bytes of one of inlookup's own kinds: the JSON of `body` behind its length, or
/// `None` when it cannot be serialised or passes [`MAX_JSON_REPLY`].
pub fn json_reply<T: Serialize>(body: &T) -> Option<Vec<u8>> {
    serde_json::to_vec(body)
        .ok()
        .filter(|j| j.len() <= MAX_JSON_REPLY)
        .map(|j| crate::wire::body_reply(&j))
}

/// PING's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReply {
    /// The daemon's version.
    pub version: String,
    /// Its pid.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// The health of each backend server (empty from a daemon before version 0.2).
    #[serde(default)]
    pub backends: Vec<BackendHealth>,
    /// Cache invalidation from the replication stream (INVALIDATE); absent from a daemon
    /// that predates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalidation: Option<InvalidationStatus>,
    /// MYSQL_REPLICAS: the primary and each replica, their health and lag (empty without
    /// replicas).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerHealth>,
}

impl PingReply {
    /// True when the daemon knows of a backend and every one of them is down: every miss
    /// fails. (One not tried yet, just after the start, is not down.)
    pub fn no_backend_up(&self) -> bool {
        !self.backends.is_empty() && self.backends.iter().all(|b| b.state == BackendState::Down)
    }
}

/// Whether a backend server answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Not tried yet.
    #[default]
    Unknown,
    /// Its last connect or lookup succeeded.
    Up,
    /// Its last connect or lookup failed.
    Down,
}

/// One backend server's health, as PING and STATS report it (no secrets: the server's
/// address and user, never its password).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendHealth {
    /// Which server (`user@host:port/database`, or the socket).
    pub server: String,
    /// Up, down, or not tried yet.
    pub state: BackendState,
    /// Seconds in this state.
    pub since_secs: u64,
    /// While down: the error's class (`access denied`, `connect refused`, `timeout`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// While down: the error's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Connections opened to it since start.
    pub connects: u64,
    /// Lookups or connects that failed since start.
    pub failures: u64,
}

impl BackendHealth {
    /// The health in one line, as USR1, `inquerytest ping` and `inquerytest stats` print
    /// it: `backend mysql://… up for 12 s; 3 connects, 0 failures`.
    ///
    /// ```
    /// use inlookup_core::admin::{BackendHealth, BackendState};
    /// let b = BackendHealth {
    ///     server: "mysql://u@db:3306/indimail".into(),
    ///     state: BackendState::Down,
    ///     since_secs: 4,
    ///     error_class: Some("access denied".into()),
    ///     error: Some("Access denied for user 'u'".into()),
    ///     connects: 0,
    ///     failures: 2,
    /// };
    /// assert_eq!(b.line(), "backend mysql://u@db:3306/indimail DOWN for 4 s (access denied: Access denied for user 'u'); 0 connects, 2 failures");
    /// ```
    pub fn line(&self) -> String {
        let state = match self.state {
            BackendState::Up => format!("up for {} s", self.since_secs),
            BackendState::Down => format!(
                "DOWN for {} s ({}: {})",
                self.since_secs,
                self.error_class.as_deref().unwrap_or("error"),
                self.error.as_deref().unwrap_or("")
            ),
            BackendState::Unknown => "not tried yet".to_string(),
        };
        format!(
            "backend {} {state}; {} connects, {} failures",
            self.server, self.connects, self.failures
        )
    }
}

/// Counters for one query kind. All are exact: only the daemon's I/O thread changes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindStats {
    /// Requests of this kind decoded.
    pub requests: u64,
    /// Answered from a fresh positive cache entry.
    pub hits: u64,
    /// Answered from a fresh negative ("not found") cache entry.
    pub negative_hits: u64,
    /// Sent to a worker (cache off, absent or expired).
    pub misses: u64,
    /// Joined a lookup already in flight for the same key instead of querying again.
    pub coalesced: u64,
    /// Lookups started by refresh-ahead (REFRESH_AHEAD): a positive hit late in its TTL,
    /// looked up again in the background while the cached answer was served.
    #[serde(default)]
    pub refreshed_ahead: u64,
    /// Entries pushed out of the full cache by this kind's inserts.
    pub evictions: u64,
    /// Entries found expired.
    pub expirations: u64,
    /// Lookups that failed in MySQL.
    pub backend_errors: u64,
    /// Failed lookups answered from an expired entry instead (serve-stale).
    pub stale_served: u64,
    /// Requests refused at once because the worker queue was full.
    pub queue_full: u64,
    /// Answers longer than `PIPE_BUF` asked for by a classic kind, which got `-1` (as from
    /// IndiMail's inlookup; ALIAS-FULL gives them whole).
    #[serde(default)]
    pub oversized: u64,
    /// Requests of this kind refused as bad (RELAY without an IP, a field that is not
    /// UTF-8, a FLUSH payload that is not valid): `requests` = hits + negative hits +
    /// misses + refused for the lookup kinds.
    #[serde(default)]
    pub refused: u64,
}

/// STATS' reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    /// The daemon's version.
    pub version: String,
    /// Its pid.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Entries in the cache now.
    pub cache_entries: u64,
    /// The cache's capacity (0: caching off).
    pub cache_capacity: u64,
    /// Worker threads (each with one MySQL connection).
    pub workers: u64,
    /// Lookups queued or running now.
    pub in_flight: u64,
    /// Lookups waiting in the queue for a worker now.
    #[serde(default)]
    pub queued: u64,
    /// Workers serving a lookup now.
    #[serde(default)]
    pub workers_busy: u64,
    /// Workers whose lookup panicked (each started afresh).
    #[serde(default)]
    pub worker_panics: u64,
    /// MySQL connections opened since start (reconnects included).
    pub mysql_connects: u64,
    /// Per kind, by its short name.
    pub kinds: BTreeMap<String, KindStats>,
    /// Bytes that were not a frame, counted once per resync.
    pub bad_frames: u64,
    /// Well-formed requests refused: unknown type, bad field, missing IP.
    pub bad_requests: u64,
    /// Replies not written because the reply path was not a FIFO in FIFOTMPDIR.
    pub refused_reply_paths: u64,
    /// Replies dropped because the client had already gone.
    pub vanished_clients: u64,
    /// Replies not delivered to a FIFO that was there: full (its reader does not read),
    /// too slow for a large reply, or a write error (`full_reply_fifos` included).
    #[serde(default)]
    pub failed_replies: u64,
    /// Of `failed_replies`: small replies to a FIFO its client kept full.
    #[serde(default)]
    pub full_reply_fifos: u64,
    /// Abandoned reply FIFOs removed from FIFOTMPDIR by the daemon's sweep.
    #[serde(default)]
    pub swept_reply_fifos: u64,
    /// PWD answers put in the cache at start by `-c` (users who logged in recently).
    #[serde(default)]
    pub preloaded: u64,
    /// TCP connections (TCP_LISTEN) reading their request or waiting for its reply now.
    #[serde(default)]
    pub tcp_connections: u64,
    /// TCP connections accepted from allowed peers since start.
    #[serde(default)]
    pub tcp_connections_total: u64,
    /// TCP connections closed at once, with no byte sent, because the peer is outside
    /// TCP_ALLOW.
    #[serde(default)]
    pub tcp_refused: u64,
    /// TCP connections closed at once because TCP_MAX_CLIENTS were open.
    #[serde(default)]
    pub tcp_busy: u64,
    /// TCP connections closed because no whole request came within timeoutread, or their
    /// reply was not ready within timeoutread plus timeoutwrite.
    #[serde(default)]
    pub tcp_timed_out: u64,
    /// TLS connections (TCP_TLS_CERT) closed because their handshake or a record failed.
    #[serde(default)]
    pub tcp_tls_failed: u64,
    /// The health of each backend server.
    #[serde(default)]
    pub backends: Vec<BackendHealth>,
    /// Whether debug logging is on (USR2 toggles it).
    pub debug: bool,
    /// The IMAP pool's counters.
    #[serde(default)]
    pub imap: ImapStats,
    /// The shared-memory cache, when on. Hits clients read from it never reach the daemon,
    /// so they are in no counter here: these say what is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_cache: Option<SharedCacheStats>,
    /// Cache invalidation from the replication stream (INVALIDATE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalidation: Option<InvalidationStatus>,
    /// MYSQL_REPLICAS: the primary and each replica, their health and lag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerHealth>,
}

/// What the daemon publishes in its shared-memory cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SharedCacheStats {
    /// The file clients map.
    pub path: String,
    /// Its slots (512 bytes each).
    pub slots: u64,
    /// Entries published now (of the current generation, fresh or expired).
    pub entries: u64,
    /// Their key and reply bytes.
    pub bytes: u64,
    /// The flush generation (one more per FLUSH or HUP).
    pub generation: u64,
    /// Answers published since start.
    pub published: u64,
    /// Answers too long for a slot: clients ask the daemon for those.
    pub too_big: u64,
}

impl SharedCacheStats {
    /// The USR1 / `inquerytest stats` line.
    pub fn line(&self) -> String {
        format!(
            "shared cache {}: {} entries ({} bytes) in {} slots, generation {}, {} published, {} too long for a slot; hits read from it are not counted here",
            self.path, self.entries, self.bytes, self.slots, self.generation, self.published, self.too_big
        )
    }
}

impl StatsReport {
    /// The counters summed over every kind.
    pub fn totals(&self) -> KindStats {
        self.sum(|_| true)
    }

    /// The counters summed over the lookup kinds (IndiMail's seven and ALIAS-FULL), whose
    /// requests are hits, negative hits, misses or refused: PING, STATS, FLUSH and the IMAP
    /// kinds are neither.
    pub fn lookup_totals(&self) -> KindStats {
        self.sum(|name| name.parse::<crate::QueryKind>().is_ok_and(|k| k.answers().is_some()))
    }

    fn sum(&self, take: impl Fn(&str) -> bool) -> KindStats {
        let mut t = KindStats::default();
        for (_, k) in self.kinds.iter().filter(|(name, _)| take(name)) {
            t.requests += k.requests;
            t.hits += k.hits;
            t.negative_hits += k.negative_hits;
            t.misses += k.misses;
            t.coalesced += k.coalesced;
            t.refreshed_ahead += k.refreshed_ahead;
            t.evictions += k.evictions;
            t.expirations += k.expirations;
            t.backend_errors += k.backend_errors;
            t.stale_served += k.stale_served;
            t.queue_full += k.queue_full;
            t.oversized += k.oversized;
            t.refused += k.refused;
        }
        t
    }
}

/// FLUSH's payload: everything (both `None`), one kind, or one key of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushRequest {
    /// A kind (by its short name on the wire, `pwd`), or none for all kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<crate::QueryKind>,
    /// An email or domain, as a client would ask it; needs `kind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// FLUSH's reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushReply {
    /// How many entries were dropped.
    pub flushed: u64,
}

/// The IMAP pool's counters. Exact: they change under the pool's lock. "Now" values are
/// read at the moment of the STATS request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImapStats {
    /// Connections opened and logged in (for a login or an auth check).
    pub created: u64,
    /// Logins answered with a connection already held (logged in) for the same user,
    /// password, session key and client IP.
    pub reused: u64,
    /// Connections reset and parked at logout, for the same identity's next login.
    pub parked: u64,
    /// Idle connections closed to make room for a new one when the pool was full.
    pub reclaimed: u64,
    /// Connections closed after IMAP_IDLE_TIMEOUT without use.
    pub closed_idle: u64,
    /// Connections closed because they were dead, timed out, or out of step.
    pub closed_broken: u64,
    /// Connections closed on purpose: at logout (or when another identity takes the
    /// session key) with parking off, after an auth check, by a flush (HUP, FLUSH), at
    /// shutdown.
    pub closed: u64,
    /// Connections bound to a session now (between commands or running one).
    pub in_use: u64,
    /// Of those, running a command now.
    pub busy: u64,
    /// Connections parked now.
    pub idle: u64,
    /// Connections being opened now.
    pub opening: u64,
    /// The most connections open (or being opened) at once.
    pub peak_open: u64,
    /// The most connections bound to sessions at once.
    pub peak_in_use: u64,
    /// Logins the IMAP server refused (wrong password, disabled account).
    pub login_failures: u64,
    /// Connections that could not be made (connect, greeting or TLS failed).
    pub connect_failures: u64,
    /// Requests answered "busy" after the back-off (pool full, nothing reclaimable).
    pub busy_replies: u64,
    /// Auth checks answered "valid" from the auth cache.
    pub auth_hits: u64,
    /// Auth checks answered "invalid", and logins refused, from the auth cache (the short
    /// negative TTL), without asking the server.
    pub auth_negative_hits: u64,
    /// Auth checks that had to log in to the IMAP server.
    pub auth_misses: u64,
    /// The IMAP front door (IMAP_LISTEN).
    pub door: DoorStats,
}

/// The IMAP front door's counters (IMAP_LISTEN): its clients, their logins through the
/// pool, and the bytes relayed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DoorStats {
    /// Client connections now.
    pub clients: u64,
    /// The most client connections at once.
    pub peak_clients: u64,
    /// Client connections accepted in all.
    pub accepted: u64,
    /// Client connections turned away with `* BYE` (IMAP_LISTEN_MAX_CLIENTS reached).
    pub refused: u64,
    /// Logins answered with a fresh IMAP login at the server.
    pub logins_fresh: u64,
    /// Logins answered with a connection parked for the same identity (no server login).
    pub logins_reused: u64,
    /// Logins refused (by the server, or from the auth cache's negative entries).
    pub logins_refused: u64,
    /// Client LOGOUTs answered by the door, the connection reset and parked.
    pub logouts_parked: u64,
    /// Bytes from clients relayed to servers.
    pub bytes_in: u64,
    /// Bytes from servers relayed to clients.
    pub bytes_out: u64,
    /// Server connections closed because the client left in the middle of a command or
    /// literal (never parked).
    pub closed_mid_command: u64,
    /// Server connections logged out instead of parked because the session changed state
    /// that UNSELECT does not reset (ENABLE or NOTIFY was used).
    pub closed_state_changed: u64,
}

impl ImapStats {
    /// One line for people (the daemon's USR1 log, `inquerytest stats`): the counters,
    /// what the pool holds now, its peaks, and the auth cache's hits and misses.
    pub fn line(&self) -> String {
        let i = self;
        format!(
            "IMAP: {} created, {} reused, {} parked, {} reclaimed, {} closed idle, {} closed broken, {} closed; now {} in use ({} busy), {} idle, {} opening; peaks {} open, {} in use; auth cache {} hits, {} negative hits, {} misses; {} login failures, {} connect failures, {} busy replies",
            i.created, i.reused, i.parked, i.reclaimed, i.closed_idle, i.closed_broken, i.closed,
            i.in_use, i.busy, i.idle, i.opening, i.peak_open, i.peak_in_use,
            i.auth_hits, i.auth_negative_hits, i.auth_misses,
            i.login_failures, i.connect_failures, i.busy_replies
        ) + &self.door_line()
    }

    /// The front door's part of [`ImapStats::line`].
    fn door_line(&self) -> String {
        let d = &self.door;
        format!(
            "; door: {} clients now, peak {}, {} accepted, {} refused; logins {} fresh, {} reused, {} refused; {} logouts parked; {} bytes in, {} bytes out; {} closed mid-command, {} closed for changed state",
            d.clients, d.peak_clients, d.accepted, d.refused,
            d.logins_fresh, d.logins_reused, d.logins_refused, d.logouts_parked,
            d.bytes_in, d.bytes_out, d.closed_mid_command, d.closed_state_changed
        )
    }
}

/// Why an IMAP request failed. A tagged `NO` or `BAD` from the server is not a failure: it
/// is the command's answer ([`ImapCommandReply::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImapErrorCode {
    /// The payload was not the kind's JSON, or the command line was not one IMAP command.
    BadRequest,
    /// The command is one inlookup does not pass on (LOGIN, AUTHENTICATE, LOGOUT, STARTTLS,
    /// COMPRESS, IDLE, NOTIFY, UNAUTHENTICATE): use the IMAP kinds instead.
    Refused,
    /// No connection is logged in for this session key (never was, logged out, expired,
    /// reclaimed, or closed as broken): log in again.
    NoSession,
    /// The pool is full of connections running commands: nothing could be reclaimed within
    /// the back-off (10, 30, 70, 150, 250 ms).
    Busy,
    /// The session's connection was running another command for the whole back-off.
    SessionBusy,
    /// The IMAP server refused the login; `message` is its text.
    AuthFailed,
    /// The IMAP server could not be reached, or did not greet with `* OK`.
    Connect,
    /// TLS failed: the handshake, the certificate, or STARTTLS refused.
    Tls,
    /// The server answered out of step (a response for another tag, a continuation
    /// request nobody can answer, bad framing): the connection was closed.
    Protocol,
    /// The server did not finish in time: the connection was closed.
    Timeout,
    /// The server closed the connection (or sent `* BYE`).
    Disconnected,
    /// The response is larger than a reply can carry. When the server's responses could
    /// be read to the end the session stays usable; otherwise it was closed.
    TooLarge,
    /// The daemon is stopping.
    ShuttingDown,
    /// A code this version does not know (from a newer daemon).
    #[serde(other)]
    Other,
}

/// An IMAP request's failure: a code to act on and a message for people (never a password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImapFailure {
    /// What went wrong.
    pub code: ImapErrorCode,
    /// Details for the log or the user.
    pub message: String,
}

/// IMAP login's payload.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImapLoginRequest {
    /// The IMAP user name (also used for the HOST lookup of the user's mail store).
    pub user: String,
    /// The password. Sent to the IMAP server only; inlookup keeps a keyed hash of it.
    pub password: String,
    /// A key the caller chooses for this session (a web session id, say); later commands
    /// and the logout name it. A login for the same user, password, session key and IP
    /// gets the connection held for them.
    pub session: String,
    /// The end user's IP address (part of the identity; may be empty).
    #[serde(default)]
    pub ip: String,
}

impl std::fmt::Debug for ImapLoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapLoginRequest")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("session", &"<hidden>")
            .field("ip", &self.ip)
            .finish()
    }
}

/// IMAP login's reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImapLoginReply {
    /// True when the session is logged in.
    pub ok: bool,
    /// True when a connection already held for this identity was used (no new login).
    pub reused: bool,
    /// The server's capabilities after login, upper case.
    pub capabilities: Vec<String>,
    /// Set when `ok` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ImapFailure>,
}

/// IMAP command's payload.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImapCommandRequest {
    /// The session key given at login.
    pub session: String,
    /// One IMAP command with the caller's own tag, e.g. `a1 SELECT INBOX`; a final CRLF is
    /// optional. Literals (`{n}` then CRLF then n bytes) may follow inside it; `{n+}` is
    /// sent as a synchronizing literal.
    pub command: String,
}

impl std::fmt::Debug for ImapCommandRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapCommandRequest")
            .field("session", &"<hidden>")
            .field("command_bytes", &self.command.len())
            .finish()
    }
}

/// A tagged completion's status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImapStatus {
    /// `OK`.
    #[default]
    #[serde(rename = "OK")]
    Ok,
    /// `NO`.
    #[serde(rename = "NO")]
    No,
    /// `BAD`.
    #[serde(rename = "BAD")]
    Bad,
}

/// IMAP command's reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImapCommandReply {
    /// True when the command ran to its tagged completion (whatever its status).
    pub ok: bool,
    /// The caller's tag, as given.
    pub tag: String,
    /// The tagged completion's status.
    pub status: ImapStatus,
    /// The tagged completion's text after the status (e.g. `[READ-WRITE] Select completed`).
    pub text: String,
    /// Every response byte the server sent for the command: untagged responses, any
    /// continuation requests, and the tagged completion with the caller's tag, CRLFs and
    /// literals included. UTF-8 text unless `base64` is set.
    pub response: String,
    /// True when `response` is base64 (standard alphabet, padded) because the server's
    /// bytes were not UTF-8.
    pub base64: bool,
    /// Set when `ok` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ImapFailure>,
}

/// IMAP logout's payload.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImapLogoutRequest {
    /// The session key given at login.
    pub session: String,
}

impl std::fmt::Debug for ImapLogoutRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImapLogoutRequest { session: <hidden> }")
    }
}

/// IMAP logout's reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImapLogoutReply {
    /// True when the session existed and is now logged out.
    pub ok: bool,
    /// True when its connection was reset and parked for the same identity's next login;
    /// false when it was closed (parking off, or the connection was dead).
    pub parked: bool,
    /// Set when `ok` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ImapFailure>,
}

/// IMAP auth's payload.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImapAuthRequest {
    /// The IMAP user name.
    pub user: String,
    /// The password; inlookup keeps only a keyed hash of it.
    pub password: String,
    /// The end user's IP address, for the log (may be empty).
    #[serde(default)]
    pub ip: String,
}

impl std::fmt::Debug for ImapAuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapAuthRequest")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("ip", &self.ip)
            .finish()
    }
}

/// IMAP auth's reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImapAuthReply {
    /// True when the check was made (from the cache or the server).
    pub ok: bool,
    /// True when the user and password are valid.
    pub valid: bool,
    /// True when the answer came from the auth cache.
    pub cached: bool,
    /// Set when `ok` is false (the server could not be asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ImapFailure>,
}

/// The state of cache invalidation from the replication stream (INVALIDATE=binlog), as
/// PING, STATS and USR1 report it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InvalidationStatus {
    /// `up` (the stream is read: changes evict their keys at once), `down` (TTLs only
    /// until it is back) or `off` (INVALIDATE=off: TTLs only).
    pub state: String,
    /// Why it is not up (what to set on the server, or the stream's last error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The server streamed from (`host:port`).
    pub source: String,
    /// The server id this daemon registers with (INVALIDATE_SERVER_ID).
    pub server_id: u32,
    /// Row events of the watched tables read since start.
    pub events: u64,
    /// Statements on the watched tables (DDL, TRUNCATE, statement-logged DML) read.
    pub statements: u64,
    /// Cache entries evicted by them.
    pub keys_evicted: u64,
    /// Whole-cache flushes: the stream could not resume where it stopped (binlog purged,
    /// another server), or came up after running without it.
    pub full_flushes: u64,
    /// Times the stream was (re)connected.
    pub connects: u64,
    /// Invalidation lag of the last event: from its time in the binlog (whole seconds)
    /// to its eviction, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<u64>,
    /// The largest lag seen.
    pub max_lag_ms: u64,
    /// Where the stream resumes: `file:offset` of the last transaction read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
}

impl InvalidationStatus {
    /// The USR1 / `inquerytest stats` line.
    pub fn line(&self) -> String {
        let mut l = format!("invalidation {}", self.state);
        if self.state == "off" {
            l.push_str(": INVALIDATE=off, TTLs only");
            return l;
        }
        if let Some(r) = &self.reason {
            l.push_str(&format!(" ({r}; TTLs only until it is up)"));
        }
        l.push_str(&format!(
            ": from {} as server id {}, {} row events, {} statements, {} keys evicted, {} full flushes, {} connects",
            self.source, self.server_id, self.events, self.statements, self.keys_evicted, self.full_flushes, self.connects
        ));
        if let Some(lag) = self.lag_ms {
            l.push_str(&format!(", lag {lag} ms (max {} ms)", self.max_lag_ms));
        }
        if let Some(p) = &self.position {
            l.push_str(&format!(", at {p}"));
        }
        l
    }
}

/// One server of MYSQL_HOST and MYSQL_REPLICAS, as PING and STATS report it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerHealth {
    /// `host:port` (or the socket).
    pub address: String,
    /// `primary` or `replica`.
    pub role: String,
    /// `up` (serves lookups), `down` (failed; retried with back-off), `skipped` (a
    /// replica too far behind or whose SQL thread is stopped) or `unknown` (not tried yet).
    pub state: String,
    /// Why it is down or skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A replica's `Seconds_Behind_Master` at the last check (none: NULL or not checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_secs: Option<u64>,
    /// Lookups it answered.
    pub lookups: u64,
    /// Queries, connects or checks that failed.
    pub failures: u64,
}

impl ServerHealth {
    /// The USR1 / `inquerytest ping` line.
    pub fn line(&self) -> String {
        let mut l = format!("server {} ({}) {}", self.address, self.role, self.state);
        if let Some(r) = &self.reason {
            l.push_str(&format!(" ({r})"));
        }
        if let Some(lag) = self.lag_secs {
            l.push_str(&format!(", lag {lag} s"));
        }
        l.push_str(&format!("; {} lookups, {} failures", self.lookups, self.failures));
        l
    }
}
