//! The service: what each IMAP request does, on whichever thread calls
//! [`Sessions::serve`] (the daemon's worker pool): parse the JSON, find or open a
//! connection through the connection table (backing off when it is full), talk to the
//! server, and build the JSON reply. Nothing here logs a password, a command's arguments,
//! a literal or a response: only user names, hashed session labels, command names and
//! sizes.

use crate::auth::{AuthCache, Hasher, Verdict};
use crate::command::{self, CommandError};
use crate::conn::{Conn, ConnError, Dial};
use crate::table::{Back, Busy, ConnTable, Gone, Lease, LoginStep, SessionStep};
use crate::tls::Verification;
use crate::{Forgotten, ImapConfig, TlsMode};
use base64::Engine as _;
use inlookup_core::admin::{
    json_reply, ImapAuthReply, ImapAuthRequest, ImapCommandReply, ImapCommandRequest,
    ImapErrorCode, ImapFailure, ImapLoginReply, ImapLoginRequest, ImapLogoutReply,
    ImapLogoutRequest, ImapStats,
};
use inlookup_core::wire::ERROR_REPLY;
use inlookup_core::QueryKind;
use rustls::ClientConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The back-off while the table (or a session) is busy, then "busy".
const BACKOFF_MS: [u64; 5] = [10, 30, 70, 150, 250];
/// After a failed connection made only to learn the pre-login capabilities, how long the
/// door's greetings use a default list before trying again.
const PROBE_AGAIN: Duration = Duration::from_secs(10);
/// Time allowed for a polite LOGOUT before closing.
const QUIT_WITHIN: Duration = Duration::from_millis(500);

/// Where a user's mail is: asked before each new connection for that user (the daemon
/// answers with its HOST lookup in `hostcntrl`).
pub trait MailStore: Send + Sync {
    /// `Ok(Some(host))`: the user's IMAP host (reached on [`ImapConfig::port`]);
    /// `Ok(None)`, or a host that is empty or blank: use [`ImapConfig::host`].
    ///
    /// # Errors
    /// The lookup failed: the failure is logged (at most once per 10 s at warning level)
    /// and [`ImapConfig::host`] is used.
    fn mail_store(
        &self,
        user: &str,
    ) -> Result<Option<String>, Box<dyn std::error::Error + Send + Sync>>;
}

/// One of the four IMAP requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A logged-in connection for a session, reused when one is held
    /// ([`QueryKind::ImapLogin`]).
    Login,
    /// One command on a session's connection ([`QueryKind::ImapCommand`]).
    Command,
    /// The session ends: its connection is reset and parked, or closed
    /// ([`QueryKind::ImapLogout`]).
    Logout,
    /// Only check a user's credentials, from the auth cache when it knows them
    /// ([`QueryKind::ImapAuth`]).
    Auth,
}

impl Request {
    /// The request of an IMAP query kind; `None` for every other kind.
    pub fn from_kind(kind: QueryKind) -> Option<Request> {
        match kind {
            QueryKind::ImapLogin => Some(Request::Login),
            QueryKind::ImapCommand => Some(Request::Command),
            QueryKind::ImapLogout => Some(Request::Logout),
            QueryKind::ImapAuth => Some(Request::Auth),
            _ => None,
        }
    }

    /// Its query kind.
    pub fn kind(self) -> QueryKind {
        match self {
            Request::Login => QueryKind::ImapLogin,
            Request::Command => QueryKind::ImapCommand,
            Request::Logout => QueryKind::ImapLogout,
            Request::Auth => QueryKind::ImapAuth,
        }
    }
}

/// The back-off steps of one request.
#[derive(Debug, Default)]
struct Backoff(usize);

impl Backoff {
    /// Sleeps the next step; false when the steps are used up.
    fn wait(&mut self) -> bool {
        let Some(ms) = BACKOFF_MS.get(self.0) else { return false };
        self.0 += 1;
        std::thread::sleep(Duration::from_millis(*ms));
        true
    }
}

/// A failure reply's body.
fn failure(code: ImapErrorCode, message: impl Into<String>) -> Option<ImapFailure> {
    Some(ImapFailure { code, message: message.into() })
}

/// The payload as the kind's JSON. The error names the place, never the content (a
/// serde message can quote a value, and values include passwords).
fn parse<T: DeserializeOwned>(payload: &str) -> Result<T, String> {
    serde_json::from_str(payload).map_err(|e| {
        format!(
            "bad JSON payload ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })
}

/// Warns at most once per 10 s, so an outage gives a few lines, not one per request.
#[derive(Debug, Default)]
struct Throttle(AtomicU64);

impl Throttle {
    fn allow(&self, epoch: Instant) -> bool {
        let now = epoch.elapsed().as_secs() + 10;
        let last = self.0.load(Ordering::Relaxed);
        now >= last + 10
            && self.0.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

/// Why opening a connection for a user did not give a logged-in one.
enum OpenError {
    /// The server said no to LOGIN (its text).
    Refused(String),
    /// The connection failed.
    Failed(ConnError),
}

/// The IMAP service: the connection table, the auth cache and the TLS configuration,
/// shared by every thread that serves a request (and the reaper's).
pub struct Sessions {
    cfg: ImapConfig,
    table: ConnTable<Conn>,
    hasher: Hasher,
    auth: Mutex<AuthCache>,
    /// The TLS configuration, or why it could not be made (then every connection fails
    /// with that message, and the classic lookups go on).
    tls: Option<Result<Arc<ClientConfig>, Arc<std::io::Error>>>,
    stores: Arc<dyn MailStore>,
    started: Instant,
    warned: Throttle,
    /// The servers' pre-login capabilities, learned from the last connection opened (for
    /// the front door's greeting).
    prelogin: Mutex<Option<Vec<String>>>,
    /// When a connection opened only to learn them last failed (then greetings use a
    /// default list for a while instead of each waiting on a server that is down).
    probe_failed: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sessions({})", self.cfg.describe())
    }
}

impl Sessions {
    /// The service for a configuration, with `stores` telling each user's mail store. No
    /// connection is made until a request needs one, and no thread is started: the caller
    /// runs [`Sessions::serve`] and [`Sessions::reap`] (and logs [`ImapConfig::describe`]
    /// at start-up).
    ///
    /// # Errors
    /// No randomness for the hash key. TLS settings that cannot be used (an unreadable
    /// CA file, no roots) are logged as errors and fail each IMAP connection instead, so
    /// an IMAP mistake never stops the classic lookups.
    pub fn new(cfg: ImapConfig, stores: Arc<dyn MailStore>) -> std::io::Result<Sessions> {
        let tls = match cfg.tls {
            TlsMode::Plain => None,
            _ => Some(
                crate::tls::client_config(
                    Verification::from_flag(cfg.verify),
                    cfg.ca_file.as_deref(),
                )
                .map_err(|e| {
                    log::error!("IMAP TLS cannot be used: {e}; every IMAP login will fail");
                    Arc::new(e)
                }),
            ),
        };
        let entries = NonZeroUsize::new(cfg.auth_cache_entries).unwrap_or(NonZeroUsize::MIN);
        Ok(Sessions {
            table: ConnTable::new(cfg.max_connections, cfg.idle_timeout),
            hasher: Hasher::random()?,
            auth: Mutex::new(AuthCache::new(entries, cfg.auth_ttl, cfg.auth_negative_ttl)),
            tls,
            stores,
            started: Instant::now(),
            warned: Throttle::default(),
            prelogin: Mutex::new(None),
            probe_failed: Mutex::new(None),
            cfg,
        })
    }

    /// Forgets what is known of one user's passwords, or everyone's (HUP, FLUSH): the auth
    /// cache's entries, positive and negative, and the connections logged in (parked ones
    /// are logged out by the reaper, so this never waits on a server; those bound to a
    /// session are closed when the session ends, not cut, and are not reused by a new
    /// login).
    pub fn forget(&self, user: Option<&str>) -> Forgotten {
        let mut auth = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        let digest = user.map(|u| self.hasher.user(u));
        let auth_entries = match &digest {
            None => auth.clear(),
            Some(d) => auth.remove_user(d),
        };
        drop(auth);
        let (parked, in_use) = self.table.retire(digest.as_ref());
        Forgotten { auth_entries, parked, in_use }
    }

    /// The connection table's counters.
    pub fn stats(&self) -> ImapStats {
        self.table.stats()
    }

    /// Serves one request: the whole reply bytes (length and JSON, or the error reply),
    /// for the caller to deliver. Blocks on the IMAP server, and for the back-off when the
    /// table is busy (at most about half a second).
    pub fn serve(&self, req: Request, payload: &str) -> Vec<u8> {
        match req {
            Request::Login => json(&self.login(payload)),
            Request::Command => self.command_reply(payload),
            Request::Logout => json(&self.logout(payload)),
            Request::Auth => json(&self.auth(payload)),
        }
    }

    /// The reaper: logs out of connections idle past the timeout, and of those a flush
    /// retired while parked, until [`Sessions::close_all`]. Blocks: run it on a thread of
    /// its own.
    pub fn reap(&self) {
        while !self.table.closing() {
            let (gone, next) = self.table.expired(Instant::now());
            for c in gone {
                log::debug!("IMAP: logging out of {} (idle, or flushed)", c.peer());
                c.quit(QUIT_WITHIN);
            }
            self.table.wait(next.clamp(Duration::from_millis(20), Duration::from_secs(1)));
        }
    }

    /// Stops handing out connections (every later request is answered "shutting down";
    /// [`Sessions::reap`] returns) and logs out of every connection not running a command,
    /// by `deadline` (aborting those it has no time left for). Connections running a
    /// command are closed when their command ends.
    pub fn close_all(&self, deadline: Instant) {
        for c in self.table.close_all() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                c.abort();
            } else {
                c.quit(left.min(QUIT_WITHIN));
            }
        }
    }

    fn dial(&self, host: String) -> Result<Dial, ConnError> {
        let tls_config = match &self.tls {
            None => None,
            Some(Ok(c)) => Some(c.clone()),
            Some(Err(why)) => return Err(ConnError::tls(why.to_string()).because(why.clone())),
        };
        Ok(Dial {
            host,
            port: self.cfg.port,
            tls: self.cfg.tls,
            tls_config,
            connect_timeout: self.cfg.connect_timeout,
            command_timeout: self.cfg.command_timeout,
            keepalive: self.cfg.keepalive,
            max_response: self.cfg.max_response,
        })
    }

    fn warn(&self, msg: std::fmt::Arguments<'_>) {
        if self.warned.allow(self.started) {
            log::warn!("{msg}");
        } else {
            log::debug!("{msg}");
        }
    }

    /// The user's mail store, or the default host.
    fn host(&self, user: &str) -> String {
        match self.stores.mail_store(user) {
            Ok(Some(h)) if !h.trim().is_empty() => h.trim().to_string(),
            Ok(_) => self.cfg.host.clone(),
            Err(e) => {
                self.warn(format_args!(
                    "IMAP: host lookup for {user} failed ({e}); using {}",
                    self.cfg.host
                ));
                self.cfg.host.clone()
            }
        }
    }

    /// Opens a connection to the user's mail store and logs in, telling the server the end
    /// user's address first when there is one (IMAP_SEND_ID).
    fn open(&self, user: &str, password: &str, ip: &str) -> Result<Conn, OpenError> {
        let host = self.host(user);
        let mut conn = self.dial(host).and_then(|d| Conn::connect(&d)).map_err(|e| {
            self.table.note(|s| s.connect_failures += 1);
            self.warn(format_args!("IMAP: {e}"));
            OpenError::Failed(e)
        })?;
        *self.prelogin.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(conn.capabilities().to_vec());
        let originating = if self.cfg.send_id { ip.trim().parse().ok() } else { None };
        match conn.login(user, password, originating) {
            Ok(Ok(())) => Ok(conn),
            Ok(Err(text)) => {
                self.table.note(|s| s.login_failures += 1);
                log::debug!("IMAP: {} refused the login of {user}: {text}", conn.peer());
                conn.quit(QUIT_WITHIN);
                Err(OpenError::Refused(text))
            }
            Err(e) => {
                self.warn(format_args!("IMAP: login of {user} at {}: {e}", conn.peer()));
                conn.abort();
                Err(OpenError::Failed(e))
            }
        }
    }

    fn remember(&self, user: &str, password: &str, verdict: Verdict) {
        let key = self.hasher.credentials(user, password);
        let who = self.hasher.user(user);
        self.auth.lock().unwrap_or_else(|e| e.into_inner()).put(key, who, verdict, Instant::now());
    }

    /// The auth cache's answer for these credentials, if fresh.
    fn cached(&self, user: &str, password: &str) -> Option<Verdict> {
        let key = self.hasher.credentials(user, password);
        self.auth.lock().unwrap_or_else(|e| e.into_inner()).get(&key, Instant::now())
    }

    /// Gives a leased connection back; false when it was retired by a flush instead (then
    /// it is logged out here).
    fn give_back(&self, lease: Lease<'_, Conn>, back: Back) -> bool {
        match lease.put_back(back) {
            None => true,
            Some(conn) => {
                log::debug!("IMAP: logging out of {} (flushed)", conn.peer());
                conn.quit(QUIT_WITHIN);
                false
            }
        }
    }

    /// The failure once the back-off is used up, counted as a busy reply: the session's
    /// own connection was running a command, or the whole table was.
    fn busy(&self, what: Busy) -> Option<ImapFailure> {
        self.table.note(|s| s.busy_replies += 1);
        match what {
            Busy::Session => failure(
                ImapErrorCode::SessionBusy,
                "the session's connection is running another command",
            ),
            Busy::Table => {
                let n = self.cfg.max_connections;
                failure(ImapErrorCode::Busy, format!("all {n} IMAP connections are busy"))
            }
        }
    }

    /// Drops a connection that failed: never back in the table.
    fn broken(&self, lease: Lease<'_, Conn>) {
        lease.discard(Gone::Broken).abort();
    }

    /// Ends a session on its connection: reset and park, or LOGOUT and close. True when
    /// parked.
    fn release(&self, mut lease: Lease<'_, Conn>) -> bool {
        if !lease.alive() {
            self.broken(lease);
            return false;
        }
        if !self.cfg.park {
            lease.discard(Gone::Closed).quit(QUIT_WITHIN);
            return false;
        }
        match lease.reset() {
            Ok(()) => self.give_back(lease, Back::Parked),
            Err(e) => {
                log::debug!("IMAP: reset before parking failed: {e}");
                self.broken(lease);
                false
            }
        }
    }

    fn login(&self, payload: &str) -> ImapLoginReply {
        let fail =
            |code, msg: String| ImapLoginReply { error: failure(code, msg), ..Default::default() };
        let req: ImapLoginRequest = match parse(payload) {
            Ok(r) => r,
            Err(e) => return fail(ImapErrorCode::BadRequest, e),
        };
        if req.user.is_empty() || req.session.is_empty() {
            return fail(ImapErrorCode::BadRequest, "user and session must not be empty".into());
        }
        let identity = self.hasher.identity(&req.user, &req.password, &req.session, &req.ip);
        let label = self.hasher.session_label(&req.session);
        if self.cached(&req.user, &req.password) == Some(Verdict::Invalid) {
            // Refused moments ago: asking again costs a round trip and, at Dovecot, a
            // longer delay for every login from this address.
            self.table.note(|s| s.auth_negative_hits += 1);
            log::debug!("IMAP login {} (session {label}): refused (cached)", req.user);
            return fail(
                ImapErrorCode::AuthFailed,
                format!(
                    "Authentication failed (cached: the IMAP server refused this user and password less than {} s ago)",
                    self.cfg.auth_negative_ttl.as_secs()
                ),
            );
        }
        let mut backoff = Backoff::default();
        loop {
            match self.table.login(identity, &req.session) {
                LoginStep::Reuse(mut lease) => {
                    if !lease.alive() {
                        log::debug!(
                            "IMAP: held connection of {} (session {label}) is dead",
                            req.user
                        );
                        self.broken(lease);
                        continue;
                    }
                    let capabilities = lease.capabilities().to_vec();
                    if !self.give_back(lease, Back::InUse) {
                        continue;
                    }
                    self.table.note(|s| s.reused += 1);
                    log::debug!("IMAP login {} (session {label}): reused", req.user);
                    return ImapLoginReply { ok: true, reused: true, capabilities, error: None };
                }
                LoginStep::Detach(lease) => {
                    log::debug!(
                        "IMAP: session {label} changes identity; its connection is released"
                    );
                    self.release(lease);
                }
                LoginStep::Open { ticket, evicted } => {
                    if let Some(old) = evicted {
                        log::debug!("IMAP: reclaimed an idle connection to {}", old.peer());
                        old.quit(QUIT_WITHIN);
                    }
                    return match self.open(&req.user, &req.password, &req.ip) {
                        Ok(conn) => {
                            let capabilities = conn.capabilities().to_vec();
                            let user = self.hasher.user(&req.user);
                            ticket.opened(identity, user, &req.session, conn);
                            self.remember(&req.user, &req.password, Verdict::Valid);
                            log::debug!(
                                "IMAP login {} (session {label}): new connection",
                                req.user
                            );
                            ImapLoginReply { ok: true, reused: false, capabilities, error: None }
                        }
                        Err(OpenError::Refused(text)) => {
                            ticket.cancel();
                            self.remember(&req.user, &req.password, Verdict::Invalid);
                            fail(ImapErrorCode::AuthFailed, text)
                        }
                        Err(OpenError::Failed(e)) => {
                            ticket.cancel();
                            fail(e.code(), e.to_string())
                        }
                    };
                }
                LoginStep::Wait(busy) => {
                    if !backoff.wait() {
                        return ImapLoginReply { error: self.busy(busy), ..Default::default() };
                    }
                }
                LoginStep::Closing => {
                    return fail(ImapErrorCode::ShuttingDown, "inlookup is stopping".into())
                }
            }
        }
    }

    /// The session's connection, waiting out a command already running on it.
    fn held(&self, session: &str) -> Result<Lease<'_, Conn>, Option<ImapFailure>> {
        let mut backoff = Backoff::default();
        loop {
            match self.table.session(session) {
                SessionStep::Held(lease) => return Ok(lease),
                SessionStep::Unknown => {
                    return Err(failure(
                        ImapErrorCode::NoSession,
                        "no IMAP connection is logged in for this session",
                    ))
                }
                SessionStep::Busy => {
                    if !backoff.wait() {
                        return Err(self.busy(Busy::Session));
                    }
                }
                SessionStep::Closing => {
                    return Err(failure(ImapErrorCode::ShuttingDown, "inlookup is stopping"))
                }
            }
        }
    }

    fn command(&self, payload: &str) -> ImapCommandReply {
        let fail = |error: Option<ImapFailure>, tag: String| ImapCommandReply {
            error,
            tag,
            ..Default::default()
        };
        let req: ImapCommandRequest = match parse(payload) {
            Ok(r) => r,
            Err(e) => return fail(failure(ImapErrorCode::BadRequest, e), String::new()),
        };
        let cmd = match command::parse(&req.command) {
            Ok(c) => c,
            Err(e @ CommandError::Refused(_)) => {
                return fail(failure(ImapErrorCode::Refused, e.to_string()), String::new())
            }
            Err(e) => {
                return fail(failure(ImapErrorCode::BadRequest, e.to_string()), String::new())
            }
        };
        let label = self.hasher.session_label(&req.session);
        let mut lease = match self.held(&req.session) {
            Ok(l) => l,
            Err(e) => return fail(e, cmd.tag),
        };
        if !lease.alive() {
            self.broken(lease);
            log::debug!("IMAP {} (session {label}): connection gone", cmd.name);
            return fail(
                failure(
                    ImapErrorCode::Disconnected,
                    "the server closed this session's connection; log in again",
                ),
                cmd.tag,
            );
        }
        let started = Instant::now();
        match lease.run(&cmd) {
            Ok(ran) => {
                self.give_back(lease, Back::InUse);
                log::debug!(
                    "IMAP {} (session {label}): {:?}, {} bytes in {} ms",
                    cmd.name,
                    ran.status,
                    ran.response.len(),
                    started.elapsed().as_millis()
                );
                if ran.overflow {
                    return fail(
                        failure(
                            ImapErrorCode::TooLarge,
                            format!(
                                "the responses passed {} bytes; the session is still logged in (fetch in parts)",
                                self.cfg.max_response
                            ),
                        ),
                        cmd.tag,
                    );
                }
                let (response, base64) = match String::from_utf8(ran.response) {
                    Ok(s) => (s, false),
                    Err(e) => {
                        (base64::engine::general_purpose::STANDARD.encode(e.as_bytes()), true)
                    }
                };
                ImapCommandReply {
                    ok: true,
                    tag: cmd.tag,
                    status: ran.status,
                    text: ran.text,
                    response,
                    base64,
                    error: None,
                }
            }
            Err(e) => {
                log::debug!("IMAP {} (session {label}): {e}; connection closed", cmd.name);
                self.broken(lease);
                let msg = format!("{e}; the session's connection was closed (log in again)");
                fail(failure(e.code(), msg), cmd.tag)
            }
        }
    }

    /// The command's reply bytes; a reply whose JSON would be too large for the client
    /// (escaped control bytes can take six bytes each) goes as base64, or fails.
    fn command_reply(&self, payload: &str) -> Vec<u8> {
        let mut reply = self.command(payload);
        if let Some(bytes) = json_reply(&reply) {
            return bytes;
        }
        if !reply.base64 {
            reply.response =
                base64::engine::general_purpose::STANDARD.encode(reply.response.as_bytes());
            reply.base64 = true;
            if let Some(bytes) = json_reply(&reply) {
                return bytes;
            }
        }
        let msg = "the response is larger than a reply can carry; the session is still logged in";
        json(&ImapCommandReply {
            tag: reply.tag,
            error: failure(ImapErrorCode::TooLarge, msg),
            ..Default::default()
        })
    }

    fn logout(&self, payload: &str) -> ImapLogoutReply {
        let req: ImapLogoutRequest = match parse(payload) {
            Ok(r) => r,
            Err(e) => {
                return ImapLogoutReply {
                    error: failure(ImapErrorCode::BadRequest, e),
                    ..Default::default()
                }
            }
        };
        let label = self.hasher.session_label(&req.session);
        match self.held(&req.session) {
            Ok(lease) => {
                let parked = self.release(lease);
                log::debug!(
                    "IMAP logout (session {label}): {}",
                    if parked { "parked" } else { "closed" }
                );
                ImapLogoutReply { ok: true, parked, error: None }
            }
            Err(error) => ImapLogoutReply { error, ..Default::default() },
        }
    }

    fn auth(&self, payload: &str) -> ImapAuthReply {
        let fail = |error| ImapAuthReply { error, ..Default::default() };
        let req: ImapAuthRequest = match parse(payload) {
            Ok(r) => r,
            Err(e) => return fail(failure(ImapErrorCode::BadRequest, e)),
        };
        if req.user.is_empty() {
            return fail(failure(ImapErrorCode::BadRequest, "user must not be empty"));
        }
        if let Some(verdict) = self.cached(&req.user, &req.password) {
            let valid = verdict.is_valid();
            self.table.note(|s| if valid { s.auth_hits += 1 } else { s.auth_negative_hits += 1 });
            log::debug!(
                "IMAP auth {}: {} (cached)",
                req.user,
                if valid { "valid" } else { "invalid" }
            );
            return ImapAuthReply { ok: true, valid, cached: true, error: None };
        }
        self.table.note(|s| s.auth_misses += 1);
        let mut backoff = Backoff::default();
        loop {
            match self.table.open_only() {
                LoginStep::Open { ticket, evicted } => {
                    if let Some(old) = evicted {
                        old.quit(QUIT_WITHIN);
                    }
                    let r = self.open(&req.user, &req.password, &req.ip);
                    ticket.cancel();
                    return match r {
                        Ok(conn) => {
                            self.table.note(|s| {
                                s.created += 1;
                                s.closed += 1;
                            });
                            conn.quit(QUIT_WITHIN);
                            self.remember(&req.user, &req.password, Verdict::Valid);
                            log::debug!("IMAP auth {}: valid", req.user);
                            ImapAuthReply { ok: true, valid: true, cached: false, error: None }
                        }
                        Err(OpenError::Refused(_)) => {
                            self.remember(&req.user, &req.password, Verdict::Invalid);
                            log::debug!("IMAP auth {}: invalid", req.user);
                            ImapAuthReply { ok: true, valid: false, cached: false, error: None }
                        }
                        Err(OpenError::Failed(e)) => fail(failure(e.code(), e.to_string())),
                    };
                }
                LoginStep::Closing => {
                    return fail(failure(ImapErrorCode::ShuttingDown, "inlookup is stopping"))
                }
                LoginStep::Reuse(lease) | LoginStep::Detach(lease) => {
                    // open_only never returns these; give it back untouched.
                    self.give_back(lease, Back::InUse);
                }
                LoginStep::Wait(busy) => {
                    if !backoff.wait() {
                        return fail(self.busy(busy));
                    }
                }
            }
        }
    }
}

/// What a login at the front door got.
pub enum DoorLogin<'a> {
    /// A logged-in connection, busy for the client until [`Sessions::door_end`].
    Ok {
        /// The connection.
        lease: Lease<'a, Conn>,
        /// Taken parked (no login at the server).
        reused: bool,
    },
    /// The server (or the auth cache) refused: the text for a tagged NO.
    Refused(String),
    /// No connection could be had (pool busy, server down, shutting down).
    Unavailable(String),
}

impl std::fmt::Debug for DoorLogin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DoorLogin::Ok { reused, .. } => write!(f, "Ok(reused {reused})"),
            DoorLogin::Refused(t) => write!(f, "Refused({t:?})"),
            DoorLogin::Unavailable(t) => write!(f, "Unavailable({t:?})"),
        }
    }
}

/// Who logs in at the front door: the pool's identity is all four, matched exactly.
#[derive(Debug, Clone, Copy)]
pub struct DoorIdentity<'a> {
    /// The user name.
    pub user: &'a str,
    /// The password (only hashed into the identity, never kept or logged).
    pub password: &'a str,
    /// The end user's IP from `ID ("x-originating-ip" …)`, or empty.
    pub ip: &'a str,
    /// The webmail's session qualifier from `ID ("x-session-id" …)`, or empty.
    pub qualifier: &'a str,
}

impl Sessions {
    /// A key of the connection table for one front-door client (`n` is the door's own
    /// counter): unguessable, so no FIFO request can name a door client's connection.
    pub fn door_session_key(&self, n: u64) -> String {
        format!("door {:?}", self.hasher.digest(&[b"door-client", &n.to_be_bytes()]))
    }

    /// Counts something in the front door's counters.
    pub fn door_note(&self, f: impl FnOnce(&mut inlookup_core::admin::DoorStats)) {
        self.table.note(|s| f(&mut s.door));
    }

    /// The servers' capabilities before login, for the door's greeting: those of the last
    /// connection opened, or (once, when none was) of a connection opened for the purpose
    /// and logged out; `None` when the server cannot be reached (then for 10 s without
    /// trying again).
    pub fn door_capabilities(&self) -> Option<Vec<String>> {
        if let Some(c) = self.prelogin.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Some(c);
        }
        let recently = |t: &Option<Instant>| t.is_some_and(|t| t.elapsed() < PROBE_AGAIN);
        if recently(&self.probe_failed.lock().unwrap_or_else(|e| e.into_inner())) {
            return None;
        }
        let LoginStep::Open { ticket, evicted } = self.table.open_only() else {
            return None;
        };
        if let Some(old) = evicted {
            old.quit(QUIT_WITHIN);
        }
        let conn = self.dial(self.cfg.host.clone()).and_then(|d| Conn::connect(&d));
        ticket.cancel();
        let Ok(conn) = conn else {
            *self.probe_failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            return None;
        };
        let caps = conn.capabilities().to_vec();
        conn.quit(QUIT_WITHIN);
        *self.prelogin.lock().unwrap_or_else(|e| e.into_inner()) = Some(caps.clone());
        Some(caps)
    }

    /// A front-door login: a connection parked for exactly this identity, or a fresh
    /// login, from the same table (and limit, and back-off) as the FIFO kinds. The lease
    /// stays busy (never reclaimed, never idle-expired) until [`Sessions::door_end`].
    pub fn door_login(&self, who: DoorIdentity<'_>, session: &str) -> DoorLogin<'_> {
        let qualified = format!("door\0{}", who.qualifier);
        let identity = self.hasher.identity(who.user, who.password, &qualified, who.ip);
        if self.cached(who.user, who.password) == Some(Verdict::Invalid) {
            self.table.note(|s| {
                s.auth_negative_hits += 1;
                s.door.logins_refused += 1;
            });
            log::debug!("IMAP door login {}: refused (cached)", who.user);
            return DoorLogin::Refused("[AUTHENTICATIONFAILED] Authentication failed.".into());
        }
        let mut backoff = Backoff::default();
        loop {
            match self.table.login(identity, session) {
                LoginStep::Reuse(mut lease) => {
                    if !lease.alive() {
                        self.broken(lease);
                        continue;
                    }
                    self.table.note(|s| {
                        s.reused += 1;
                        s.door.logins_reused += 1;
                    });
                    log::debug!("IMAP door login {}: reused", who.user);
                    return DoorLogin::Ok { lease, reused: true };
                }
                LoginStep::Detach(lease) => {
                    // Cannot happen (the door's session keys are its own); released.
                    self.release(lease);
                }
                LoginStep::Open { ticket, evicted } => {
                    if let Some(old) = evicted {
                        old.quit(QUIT_WITHIN);
                    }
                    match self.open(who.user, who.password, who.ip) {
                        Ok(conn) => {
                            let user = self.hasher.user(who.user);
                            ticket.opened(identity, user, session, conn);
                            self.remember(who.user, who.password, Verdict::Valid);
                            match self.table.session(session) {
                                SessionStep::Held(lease) => {
                                    self.table.note(|s| s.door.logins_fresh += 1);
                                    log::debug!("IMAP door login {}: new connection", who.user);
                                    return DoorLogin::Ok { lease, reused: false };
                                }
                                SessionStep::Closing => {
                                    return DoorLogin::Unavailable("inlookup is stopping".into())
                                }
                                SessionStep::Unknown | SessionStep::Busy => {
                                    // Reclaimed at once by another login: try again.
                                    continue;
                                }
                            }
                        }
                        Err(OpenError::Refused(text)) => {
                            ticket.cancel();
                            self.remember(who.user, who.password, Verdict::Invalid);
                            self.table.note(|s| s.door.logins_refused += 1);
                            let text = if text.starts_with('[') {
                                text
                            } else {
                                format!("[AUTHENTICATIONFAILED] {text}")
                            };
                            return DoorLogin::Refused(text);
                        }
                        Err(OpenError::Failed(e)) => {
                            ticket.cancel();
                            return DoorLogin::Unavailable(e.to_string());
                        }
                    }
                }
                LoginStep::Wait(busy) => {
                    if !backoff.wait() {
                        let text = self.busy(busy).map(|f| f.message).unwrap_or_default();
                        return DoorLogin::Unavailable(text);
                    }
                }
                LoginStep::Closing => return DoorLogin::Unavailable("inlookup is stopping".into()),
            }
        }
    }

    /// A front-door client is gone: its connection is reset and parked when it is in step
    /// (no command in flight, no literal pending), else closed. True when parked.
    /// `changed`: the session changed state UNSELECT does not reset (ENABLE, say): the
    /// connection is logged out instead of parked.
    pub fn door_end(&self, lease: Lease<'_, Conn>, in_step: bool, changed: bool) -> bool {
        if in_step && changed {
            self.table.note(|s| s.door.closed_state_changed += 1);
            lease.discard(Gone::Closed).quit(QUIT_WITHIN);
            return false;
        }
        if !in_step {
            self.table.note(|s| s.door.closed_mid_command += 1);
            self.broken(lease);
            return false;
        }
        let parked = self.release(lease);
        if parked {
            self.table.note(|s| s.door.logouts_parked += 1);
        }
        parked
    }
}

/// The reply bytes of a JSON body, or the error reply when it cannot be one.
fn json<T: Serialize>(body: &T) -> Vec<u8> {
    json_reply(body).unwrap_or_else(|| ERROR_REPLY.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_json_errors_never_quote_the_payload() {
        let e = parse::<ImapLoginRequest>(r#"{"user":"a","password":7,"session":"hunter2"}"#)
            .unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse::<ImapLoginRequest>(r#"{"user":"a","password":["hunter2"]}"#).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn backoff_has_five_steps() {
        let mut b = Backoff(BACKOFF_MS.len() - 1);
        assert!(b.wait());
        assert!(!b.wait());
    }
}
