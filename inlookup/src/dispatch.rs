//! Every decision about a request, apart from I/O: the dispatcher owns the cache, the
//! in-flight table, the flush generation, the counters and backend health. It takes decoded
//! frames ([`Dispatcher::request`]), worker results ([`Dispatcher::finished`]) and controls,
//! and acts on the world only through [`Effects`]: write this reply, queue this lookup,
//! hand this to IMAP. The server ([`crate::server`]) implements [`Effects`] with FIFOs and
//! worker pools; the tests below with a recorder, so coalescing, serve-stale and flush races
//! are plain unit tests. (hickory-dns splits request handling from its transport the same
//! way, behind its `ResponseHandler`.)
//!
//! # A miss, from frame to reply
//!
//! 1. [`Dispatcher::request`] builds the [`CacheKey`] and finds nothing fresh.
//! 2. No lookup for that key is in flight: it queues a [`LookupJob`] carrying the request's
//!    reply path ([`Effects::lookup`]) and opens an in-flight entry. A second request for
//!    the same key joins the entry instead.
//! 3. A worker answers it ([`crate::backend::Lookup`]) and reports a [`Done`]; if the lookup
//!    succeeded, the worker then writes the reply to the request that started it.
//! 4. [`Dispatcher::finished`] caches the answer (unless a flush came in between) and
//!    replies to the requests that joined; if the lookup failed it replies to all of them,
//!    the starter included, from an expired entry (serve-stale) or with the error reply.

use crate::backend::{BackendError, Done, ErrorClass, Form, LookupJob, Outcome};
use crate::cache::{Cache, Found, Sign};
use crate::fifo::ReplyFailure;
use crate::imap::ImapJob;
use crate::pool::Refused;
use crate::stats::Stats;
use inlookup_core::address::{cache_key_into, key_kind, key_subject};
use inlookup_core::admin::{
    json_reply, BackendHealth, BackendState, FlushReply, FlushRequest, ImapStats, PingReply,
    StatsReport,
};
use inlookup_core::lookup::domain_of;
use inlookup_core::wire::{reply_int, Frame, ERROR_REPLY, HEADER_LEN, PIPE_BUF};
use inlookup_core::{Answer, CacheKey, QueryKind, RealDomain};
use inlookup_imap::{Forgotten, Request as ImapRequest};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the dispatcher asks of the world.
pub trait Effects {
    /// Writes a reply to a client's FIFO.
    ///
    /// # Errors
    /// The reply was not delivered (the dispatcher counts and logs why).
    fn reply(&mut self, to: &[u8], bytes: &[u8]) -> Result<(), ReplyFailure>;
    /// Queues a lookup for a worker.
    ///
    /// # Errors
    /// The queue is full or closed.
    fn lookup(&mut self, job: LookupJob) -> Result<(), Refused>;
    /// Queues an IMAP request for an IMAP worker.
    ///
    /// # Errors
    /// The queue is full or closed.
    fn imap(&mut self, job: ImapJob) -> Result<(), Refused>;
    /// Makes the IMAP side forget one user's passwords and connections, or everyone's.
    fn forget_imap(&mut self, user: Option<&str>) -> Forgotten;
    /// Asks every backend to reconnect before its next lookup (HUP).
    fn reset_backends(&mut self);
    /// What the dispatcher does not own, for STATS.
    fn status(&self) -> Status;
}

/// Counters kept outside the dispatcher, for STATS.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// MySQL connections opened so far.
    pub mysql_connects: u64,
    /// The IMAP side's counters.
    pub imap: ImapStats,
    /// Large replies the reply writer could not deliver in time.
    pub failed_large_replies: u64,
    /// Abandoned reply FIFOs the sweep removed.
    pub swept_reply_fifos: u64,
    /// Lookups waiting for a worker.
    pub queued: u64,
    /// Lookup workers serving a lookup.
    pub workers_busy: u64,
    /// Lookup workers whose lookup panicked.
    pub worker_panics: u64,
    /// The TCP listener's counters (all 0 without one).
    pub tcp: crate::tcp::TcpStats,
    /// One health entry per database, from backends that track it (the clustered layout);
    /// `None`: the dispatcher's own entry for the one backend.
    pub backends: Option<Vec<BackendHealth>>,
    /// MYSQL_REPLICAS: each server's health and lag (empty without replicas).
    pub servers: Vec<inlookup_core::admin::ServerHealth>,
}

/// The dispatcher's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lookup workers (for the "all busy" log line).
    pub workers: usize,
    /// DEFAULT_DOMAIN, for cache keys.
    pub default_domain: Option<String>,
    /// The backend server, as health reports name it (no password).
    pub backend: String,
    /// REFRESH_AHEAD: a positive hit in the last this-percent of its TTL starts a lookup in
    /// the background (0: never).
    pub refresh_ahead: u8,
}

/// Why a FLUSH was refused.
#[derive(Debug)]
pub enum FlushError {
    /// The payload is not FLUSH's JSON.
    BadJson(serde_json::Error),
    /// A key was given without its kind.
    KeyWithoutKind,
    /// The kind's answers are not cached (PING, STATS, FLUSH).
    NotCached(QueryKind),
}

impl fmt::Display for FlushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlushError::BadJson(e) => write!(f, "bad JSON: {e}"),
            FlushError::KeyWithoutKind => f.write_str("a key needs a kind"),
            FlushError::NotCached(k) => write!(f, "{k} answers are not cached"),
        }
    }
}

impl std::error::Error for FlushError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FlushError::BadJson(e) => Some(e),
            _ => None,
        }
    }
}

/// The backend's health: what PING and STATS report, and what is logged when it changes
/// (failures of one episode at most once per 10 s).
#[derive(Debug)]
struct Health {
    state: BackendState,
    /// Since when in this state.
    since: Instant,
    /// While down: the last error's class and message.
    error: Option<(ErrorClass, String)>,
    /// Failures since start.
    failures: u64,
    /// The current episode of failures: since when, how many, last warned.
    failing_since: Option<Instant>,
    episode: u64,
    last_warned: Option<Instant>,
}

impl Health {
    fn new(now: Instant) -> Health {
        Health {
            state: BackendState::Unknown,
            since: now,
            error: None,
            failures: 0,
            failing_since: None,
            episode: 0,
            last_warned: None,
        }
    }

    /// A lookup or connect succeeded.
    fn up(&mut self, now: Instant) {
        if let Some(since) = self.failing_since.take() {
            log::info!(
                "backend answering again after {} s and {} failures",
                now.duration_since(since).as_secs(),
                self.episode
            );
        }
        if self.state != BackendState::Up {
            self.state = BackendState::Up;
            self.since = now;
        }
        self.error = None;
        self.episode = 0;
        self.last_warned = None;
    }

    /// A lookup (of `kind`) or the start-up check (`None`) failed.
    fn down(&mut self, kind: Option<QueryKind>, why: &BackendError, now: Instant) {
        self.failures += 1;
        self.episode += 1;
        let since = *self.failing_since.get_or_insert(now);
        let changed = self.state != BackendState::Down
            || self.error.as_ref().is_none_or(|(c, _)| *c != why.class());
        if self.state != BackendState::Down {
            self.state = BackendState::Down;
            self.since = now;
        }
        self.error = Some((why.class(), why.to_string()));
        // A wrong password or database name does not mend itself: an error, once per change.
        let misconfigured =
            matches!(why.class(), ErrorClass::AccessDenied | ErrorClass::UnknownDatabase);
        let what = match kind {
            None => "at start, the backend".to_string(),
            Some(k) => format!("{k} lookup"),
        };
        if misconfigured && changed {
            self.last_warned = Some(now);
            log::error!("{what} failed ({}): {why}; check the MySQL settings", why.class());
        } else if self.last_warned.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            self.last_warned = Some(now);
            log::warn!(
                "{what} failed ({}; {} failures in {} s): {why}",
                why.class(),
                self.episode,
                now.duration_since(since).as_secs()
            );
        }
    }

    fn report(&self, server: &str, connects: u64, now: Instant) -> BackendHealth {
        BackendHealth {
            server: server.to_string(),
            state: self.state,
            since_secs: now.saturating_duration_since(self.since).as_secs(),
            error_class: self.error.as_ref().map(|(c, _)| c.name().to_string()),
            error: self.error.as_ref().map(|(_, m)| m.clone()),
            connects,
            failures: self.failures,
        }
    }
}

/// A request waiting for a lookup in flight.
#[derive(Debug)]
struct Waiter {
    /// Its reply FIFO.
    to: Box<[u8]>,
    /// The kind it asked (ALIAS or ALIAS-FULL share a lookup).
    kind: QueryKind,
    /// What it takes of the answer.
    form: Form,
}

/// A lookup in flight.
#[derive(Debug)]
struct Inflight {
    /// The kind and form of the request that started it (its reply path went with the
    /// job).
    starter: (QueryKind, Form),
    /// The requests that joined it.
    joined: Vec<Waiter>,
    /// Started by refresh-ahead on a hit: no request waits on the job's own reply path.
    ahead: bool,
    /// A change read from the replication stream made its answer stale while it ran:
    /// delivered, not cached.
    invalidated: bool,
}

/// The decisions, owned by the I/O thread.
#[derive(Debug)]
pub struct Dispatcher {
    settings: Settings,
    cache: Cache,
    /// Lookups in flight, by key.
    inflight: HashMap<CacheKey, Inflight>,
    /// Cache generation: bumped by every flush, so results of lookups queued before it are
    /// not stored.
    epoch: u64,
    stats: Stats,
    health: Health,
    started: Instant,
    /// The key of the request at hand (reused: a hit allocates nothing).
    key: String,
    /// Real domains lookups found out, by domain, until DOMAIN's TTL (apart from the
    /// cache, so they take none of its entries): with them a miss is one statement.
    domains: HashMap<String, (String, Instant)>,
    /// INVALIDATE's state, shared with the binlog reader, when it is on.
    invalidation: Option<crate::binlog::StatusHandle>,
}

/// Real domains kept at most (the table starts afresh when full).
const DOMAINS_KEPT: usize = 10_000;

impl Dispatcher {
    /// A dispatcher with its cache.
    pub fn new(settings: Settings, cache: Cache) -> Dispatcher {
        Dispatcher {
            settings,
            cache,
            inflight: HashMap::new(),
            epoch: 0,
            stats: Stats::default(),
            health: Health::new(Instant::now()),
            started: Instant::now(),
            key: String::new(),
            domains: HashMap::new(),
            invalidation: None,
        }
    }

    /// Reports INVALIDATE's state (shared with the binlog reader) in PING and STATS, and
    /// counts the evictions there.
    pub fn with_invalidation(mut self, status: crate::binlog::StatusHandle) -> Dispatcher {
        self.invalidation = Some(status);
        self
    }

    /// Lookups in flight (distinct keys).
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Clients waiting for a lookup in flight.
    pub fn waiting(&self) -> usize {
        self.inflight.values().map(|f| 1 + f.joined.len()).sum()
    }

    /// Bytes that were not a frame were skipped.
    pub fn bad_frame(&mut self) {
        self.stats.bad_frames += 1;
    }

    /// Serves one decoded request read from `fifo` at `now`.
    pub fn request(&mut self, fifo: &Path, f: Frame<'_>, now: Instant, out: &mut impl Effects) {
        let Some(kind) = QueryKind::from_byte(f.kind) else {
            let why = format_args!("unknown query type {}", f.kind);
            return self.refuse(out, f.reply_path, None, why);
        };
        self.stats.kind(kind).requests += 1;
        let Ok(email) = std::str::from_utf8(f.email) else {
            let why = format_args!("{kind} query: the email is not UTF-8");
            return self.refuse(out, f.reply_path, Some(kind), why);
        };
        let Ok(ip) = std::str::from_utf8(f.ip) else {
            let why = format_args!("{kind} query: the IP is not UTF-8");
            return self.refuse(out, f.reply_path, Some(kind), why);
        };
        if let Some(request) = ImapRequest::from_kind(kind) {
            // The payload holds a password or a session key: never logged.
            log::debug!(
                "{}->{}, Query [{}], {} bytes",
                fifo.display(),
                String::from_utf8_lossy(f.reply_path),
                kind.label(),
                f.email.len()
            );
            let job =
                ImapJob { request, payload: email.to_string(), reply_to: f.reply_path.into() };
            if let Err(why) = out.imap(job) {
                self.stats.kind(kind).queue_full += u64::from(why == Refused::Full);
                log::warn!(
                    "{kind} request refused: the IMAP queue is {}",
                    if why == Refused::Full { "full" } else { "closed" }
                );
                self.reply(out, f.reply_path, &ERROR_REPLY);
            }
            return;
        }
        log::debug!(
            "{}->{}, Bytes {}, Query [{}], User {email}{}{ip}",
            fifo.display(),
            String::from_utf8_lossy(f.reply_path),
            f.email.len() + f.reply_path.len() + f.ip.len() + 5,
            kind.label(),
            if ip.is_empty() { "" } else { ", RemoteIp " },
        );
        match kind {
            QueryKind::Ping => {
                let body = PingReply {
                    version: env!("CARGO_PKG_VERSION").into(),
                    pid: std::process::id(),
                    uptime_secs: self.started.elapsed().as_secs(),
                    backends: self.health_report(out, now),
                    invalidation: self.invalidation_status(),
                    servers: out.status().servers,
                };
                self.json(out, f.reply_path, &body);
            }
            QueryKind::Stats => {
                let r = self.report(out);
                self.json(out, f.reply_path, &r);
            }
            QueryKind::Flush => match self.flush(email, out) {
                Ok(n) => self.json(out, f.reply_path, &FlushReply { flushed: n as u64 }),
                Err(why) => {
                    self.refuse(out, f.reply_path, Some(kind), format_args!("flush: {why}"))
                }
            },
            QueryKind::Relay if ip.trim().is_empty() => self.refuse(
                out,
                f.reply_path,
                Some(kind),
                format_args!("relay query without an IP"),
            ),
            _ => match kind.answers() {
                Some((base, whole)) => {
                    let form = if whole { Form::Whole } else { Form::Capped };
                    let asked = Asked { kind, base, form, email, ip };
                    self.classic(asked, f.reply_path, now, out)
                }
                None => self.refuse(
                    out,
                    f.reply_path,
                    Some(kind),
                    format_args!("{kind} is not a lookup"),
                ),
            },
        }
    }

    /// A classic kind: from the cache, by joining a lookup in flight, or by a new lookup.
    fn classic(&mut self, q: Asked<'_>, to: &[u8], now: Instant, out: &mut impl Effects) {
        let Asked { kind, base, form, email, ip } = q;
        cache_key_into(&mut self.key, base, email, ip, self.settings.default_domain.as_deref());
        match self.cache.get(&self.key, now) {
            Found::Fresh { reply, negative, left_ms } => {
                let ks = self.stats.kind(kind);
                if negative {
                    ks.negative_hits += 1;
                } else {
                    ks.hits += 1;
                }
                log::debug!("cache hit");
                let fitted = form.fit(reply);
                if fitted.len() < reply.len() {
                    ks.oversized += 1;
                    log::debug!(
                        "{kind} answer of {} bytes (key {}) is too long for {kind}: replied -1",
                        reply.len(),
                        key_hash(&self.key)
                    );
                }
                let sent = out.reply(to, fitted);
                self.stats.account(to, sent);
                if !negative && self.refresh_due(base, left_ms) {
                    self.refresh(kind, base, form, email, ip, now, out);
                }
                return;
            }
            Found::Expired => self.stats.kind(kind).expirations += 1,
            Found::Absent => {}
        }
        self.stats.kind(kind).misses += 1;
        if let Some(f) = self.inflight.get_mut(self.key.as_str()) {
            self.stats.kind(kind).coalesced += 1;
            f.joined.push(Waiter { to: to.into(), kind, form });
            return;
        }
        let key = CacheKey::from(std::mem::take(&mut self.key));
        let job = LookupJob {
            key: key.clone(),
            kind: base,
            form,
            email: email.to_string(),
            ip: ip.to_string(),
            epoch: self.epoch,
            reply_to: to.into(),
            known: self.known_domain(base, email, now),
        };
        match out.lookup(job) {
            Ok(()) => {
                let entry = Inflight {
                    starter: (kind, form),
                    joined: Vec::new(),
                    ahead: false,
                    invalidated: false,
                };
                self.inflight.insert(key, entry);
            }
            Err(Refused::Full) => {
                self.stats.kind(kind).queue_full += 1;
                log::warn!("{kind} query for {email}: all {} workers busy and the queue is full; replied with an error", self.settings.workers);
                self.reply(out, to, &ERROR_REPLY);
            }
            Err(Refused::Closed) => self.reply(out, to, &ERROR_REPLY),
        }
    }

    /// A positive answer of `kind` with `left_ms` to live is in the last REFRESH_AHEAD
    /// percent of its TTL, and no lookup for it is in flight (the key at hand is in
    /// `self.key`).
    fn refresh_due(&self, kind: QueryKind, left_ms: u64) -> bool {
        let pct = u128::from(self.settings.refresh_ahead);
        let ttl_ms = self.cache.ttl(kind).positive.as_millis();
        pct > 0
            && u128::from(left_ms) * 100 < pct * ttl_ms
            && !self.inflight.contains_key(self.key.as_str())
    }

    /// Refresh-ahead: the hit just answered is looked up again by a worker, with no reply
    /// path of its own; its answer replaces the entry and goes to any request that joins it
    /// meanwhile (after the entry expired). A full queue skips it: the entry then expires
    /// and misses as it would have without refresh-ahead.
    #[allow(clippy::too_many_arguments)]
    fn refresh(
        &mut self,
        kind: QueryKind,
        base: QueryKind,
        form: Form,
        email: &str,
        ip: &str,
        now: Instant,
        out: &mut impl Effects,
    ) {
        let key = CacheKey::from(self.key.clone());
        let job = LookupJob {
            key: key.clone(),
            kind: base,
            form,
            email: email.to_string(),
            ip: ip.to_string(),
            epoch: self.epoch,
            reply_to: Box::default(),
            known: self.known_domain(base, email, now),
        };
        match out.lookup(job) {
            Ok(()) => {
                self.stats.kind(kind).refreshed_ahead += 1;
                let entry = Inflight {
                    starter: (kind, form),
                    joined: Vec::new(),
                    ahead: true,
                    invalidated: false,
                };
                self.inflight.insert(key, entry);
            }
            Err(_) => log::debug!("{kind}: no room to refresh ahead; the entry will expire"),
        }
    }

    /// The real domain of the domain a lookup of `kind` for `email` resolves first, from
    /// what an earlier lookup found out or a fresh DOMAIN answer in the cache: with it the
    /// lookup is one statement instead of two.
    fn known_domain(&mut self, kind: QueryKind, email: &str, now: Instant) -> Option<RealDomain> {
        let dd = self.settings.default_domain.as_deref();
        let asked = domain_of(kind, email, dd)?;
        if let Some((real, until)) = self.domains.get(&asked) {
            if now < *until {
                return Some(RealDomain { real: real.clone(), asked });
            }
        }
        let key = CacheKey::new(QueryKind::Domain, &asked, "", dd);
        let Found::Fresh { reply, .. } = self.cache.get(key.as_str(), now) else { return None };
        let (header, body) = reply.split_at_checked(HEADER_LEN)?;
        let n = reply_int(header.try_into().ok()?);
        match Answer::decode(QueryKind::Domain, n, body, &asked).ok()? {
            Answer::Domain { domain, .. } => Some(RealDomain { asked, real: domain }),
            _ => None,
        }
    }

    /// A lookup learned a domain's real domain: kept for DOMAIN's TTL (positive for an
    /// alias domain, negative for a domain that is its own), so that the next lookups in
    /// that domain need one statement.
    fn remember_domain(&mut self, learned: RealDomain, now: Instant) {
        let t = self.cache.ttl(QueryKind::Domain);
        let ttl = if learned.real != learned.asked { t.positive } else { t.negative };
        if ttl.is_zero() {
            return;
        }
        if self.domains.len() >= DOMAINS_KEPT {
            self.domains.clear();
        }
        self.domains.insert(learned.asked, (learned.real, now + ttl));
    }

    /// A lookup finished (at `now`): cache the answer and reply to everyone still waiting
    /// for it.
    pub fn finished(&mut self, done: Done, now: Instant, out: &mut impl Effects) {
        let Some(Inflight { starter, joined, ahead, invalidated }) =
            self.inflight.remove(&done.key)
        else {
            return;
        };
        match done.outcome {
            Outcome::Answered { reply, negative } => {
                self.health.up(now);
                if let Some(learned) = done.learned.filter(|_| done.epoch == self.epoch) {
                    self.remember_domain(learned, now);
                }
                if done.epoch == self.epoch && !invalidated {
                    let sign = if negative { Sign::Negative } else { Sign::Positive };
                    if let Some(k) = self.cache.insert(done.key.as_str(), &reply, sign, now) {
                        self.stats.kind(k).evictions += 1;
                    }
                }
                // The worker answered the request that started the lookup (with -1 if the
                // answer was too long for it); a refresh ahead had none.
                if !ahead && starter.1.fit(&reply).len() < reply.len() {
                    self.stats.kind(starter.0).oversized += 1;
                    log::warn!(
                        "{} answer of {} bytes (key {}) is longer than a classic reply can carry ({PIPE_BUF} bytes): {} got -1; ALIAS-FULL gives it whole",
                        done.kind,
                        reply.len(),
                        key_hash(done.key.as_str()),
                        starter.0
                    );
                }
                for w in joined {
                    let fitted = w.form.fit(&reply);
                    if fitted.len() < reply.len() {
                        self.stats.kind(w.kind).oversized += 1;
                    }
                    let sent = out.reply(&w.to, fitted);
                    self.stats.account(&w.to, sent);
                }
            }
            Outcome::Failed { error, starter: starter_to } => {
                self.stats.kind(done.kind).backend_errors += 1;
                self.health.down(Some(done.kind), &error, now);
                let first = Waiter { to: starter_to, kind: starter.0, form: starter.1 };
                let waiting = (!ahead).then_some(first).into_iter().chain(joined);
                match self.cache.stale(done.key.as_str(), now).map(<[u8]>::to_vec) {
                    Some(stale) => {
                        log::debug!("answered {} from an expired entry", done.key.subject());
                        for w in waiting {
                            self.stats.kind(done.kind).stale_served += 1;
                            let sent = out.reply(&w.to, w.form.fit(&stale));
                            self.stats.account(&w.to, sent);
                        }
                    }
                    None => {
                        for w in waiting {
                            self.reply(out, &w.to, &ERROR_REPLY);
                        }
                    }
                }
            }
        }
    }

    /// The `-c` preload's answers (PWD of recently active users), read since start: cached
    /// unless a flush came in between.
    pub fn preloaded(&mut self, answers: Vec<Answer>, now: Instant) {
        if self.epoch != 0 {
            log::info!("preload: {} answers dropped, a flush came first", answers.len());
            return;
        }
        let dd = self.settings.default_domain.as_deref();
        let mut n = 0;
        for a in answers {
            let Answer::Pwd { email, .. } = &a else { continue };
            let key = CacheKey::new(QueryKind::Pwd, email, "", dd);
            let sign = if a.is_negative() { Sign::Negative } else { Sign::Positive };
            if let Some(k) = self.cache.insert(key.as_str(), &a.encode(), sign, now) {
                self.stats.kind(k).evictions += 1;
            }
            n += 1;
        }
        self.stats.preloaded += n;
        log::info!("preloaded {n} PWD answers of recently active users (lastauth)");
    }

    /// The start-up check of the backend (one connect): its result.
    pub fn checked(&mut self, result: Result<(), BackendError>, now: Instant) {
        match result {
            Ok(()) => {
                log::info!("backend {} answers", self.settings.backend);
                self.health.up(now);
            }
            Err(e) => {
                self.health.down(None, &e, now);
                log::warn!("starting anyway: lookups fail with -1 (or stale answers) until the backend answers");
            }
        }
    }

    /// A reply a worker could not deliver.
    pub fn undelivered(&mut self, to: &[u8], why: ReplyFailure) {
        self.stats.account(to, Err(why));
    }

    /// The domain files changed (and were reloaded): every answer may have been made from
    /// the old ones, so the cache and the real domains lookups found out are dropped, and
    /// lookups in flight are not cached.
    pub fn domains_changed(&mut self) {
        self.forget_answers("domain files changed");
    }

    /// The clustered layout changed (host.cntrl, mcdinfo or users/assign were reloaded):
    /// an answer may come from a database that no longer serves its user, so, as for the
    /// domain files, everything cached is dropped.
    pub fn layout_changed(&mut self) {
        self.forget_answers("cluster layout changed");
    }

    fn forget_answers(&mut self, why: &str) {
        let n = self.cache.clear();
        self.domains.clear();
        self.epoch += 1;
        log::info!("{why}: flushed {}", count(n, "cache entry", "cache entries"));
    }

    /// HUP: flush every entry and IMAP's state; backends reconnect on their next use.
    pub fn hup(&mut self, out: &mut impl Effects) {
        let n = self.cache.clear();
        self.domains.clear();
        self.epoch += 1;
        out.reset_backends();
        log::info!(
            "HUP: flushed {}; backends reconnect on next use",
            count(n, "cache entry", "cache entries")
        );
        let imap = out.forget_imap(None);
        log::info!(
            "HUP: IMAP: flushed {}; logging out {}; {} in use close when their sessions end",
            count(imap.auth_entries, "auth cache entry", "auth cache entries"),
            count(imap.parked, "parked connection", "parked connections"),
            imap.in_use
        );
    }

    fn health_report(&self, out: &impl Effects, now: Instant) -> Vec<BackendHealth> {
        let status = out.status();
        status.backends.unwrap_or_else(|| {
            vec![self.health.report(&self.settings.backend, status.mysql_connects, now)]
        })
    }

    /// The counters, as STATS and USR1 give them.
    pub fn report(&self, out: &impl Effects) -> StatsReport {
        let status = out.status();
        let now = Instant::now();
        let mut r = StatsReport {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            cache_entries: self.cache.len() as u64,
            cache_capacity: self.cache.capacity() as u64,
            workers: self.settings.workers as u64,
            in_flight: self.inflight.len() as u64,
            mysql_connects: status.mysql_connects,
            debug: crate::logging::debug_enabled(),
            backends: status.backends.clone().unwrap_or_else(|| {
                vec![self.health.report(&self.settings.backend, status.mysql_connects, now)]
            }),
            imap: status.imap,
            ..StatsReport::default()
        };
        self.stats.fill(&mut r);
        r.failed_replies += status.failed_large_replies;
        r.swept_reply_fifos = status.swept_reply_fifos;
        r.queued = status.queued;
        r.workers_busy = status.workers_busy;
        r.worker_panics = status.worker_panics;
        r.tcp_connections = status.tcp.open;
        r.tcp_connections_total = status.tcp.accepted;
        r.tcp_refused = status.tcp.refused;
        r.tcp_busy = status.tcp.busy;
        r.tcp_timed_out = status.tcp.timed_out;
        r.tcp_tls_failed = status.tcp.tls_failed;
        r.shared_cache = self.cache.shared_stats();
        r.invalidation = self.invalidation_status();
        r.servers = status.servers;
        r
    }

    fn invalidation_status(&self) -> Option<inlookup_core::admin::InvalidationStatus> {
        Some(match &self.invalidation {
            Some(s) => s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
            None => inlookup_core::admin::InvalidationStatus {
                state: "off".into(),
                ..Default::default()
            },
        })
    }

    /// A change read from the replication stream: evicts what `targets` name (the same
    /// user in the alias domains lookups found for its domain included), and marks the
    /// lookups in flight for them, whose answers may predate it, not to be cached.
    /// `event_time`: the event's time in the binlog (Unix seconds), for the lag. Returns
    /// the entries evicted.
    pub fn invalidate(
        &mut self,
        targets: &[crate::invalidate::Target],
        event_time: Option<u32>,
    ) -> usize {
        use crate::invalidate::Target;
        let mut n = 0;
        for t in targets {
            // Alias domains of a domain: the same user's keys in them are answered from it.
            let aliases_of = |d: &str| -> Vec<String> {
                self.domains
                    .iter()
                    .filter(|(asked, (real, _))| real == d && *asked != d)
                    .map(|(asked, _)| asked.clone())
                    .collect()
            };
            match t {
                Target::Subject(kind, subject) => {
                    let mut subjects = vec![subject.clone()];
                    if let Some((u, d)) = subject.split_once('@') {
                        subjects.extend(aliases_of(d).into_iter().map(|a| format!("{u}@{a}")));
                    }
                    for s in &subjects {
                        n += if *kind == QueryKind::Relay {
                            self.cache.remove_subject(*kind, s)
                        } else {
                            self.cache.remove(CacheKey::new(*kind, s, "", None).as_str())
                        };
                    }
                }
                Target::InDomain(kind, d) => {
                    let mut ds = vec![d.clone()];
                    ds.extend(aliases_of(d));
                    n += self.cache.remove_where(|k| {
                        key_kind(k) == Some(*kind)
                            && ds.iter().any(|d| in_domain(key_subject(k), d))
                    });
                }
                Target::Under(d) => {
                    self.domains.remove(d);
                    n += self.cache.remove_where(|k| in_domain(key_subject(k), d));
                }
                Target::Kind(kind) => {
                    if *kind == QueryKind::Domain {
                        self.domains.clear();
                    }
                    n += self.cache.remove_kind(*kind);
                }
                Target::All => {
                    self.domains.clear();
                    n += self.cache.clear();
                }
            }
        }
        for (key, f) in self.inflight.iter_mut() {
            if !f.invalidated && targets.iter().any(|t| t.covers(key.as_str())) {
                f.invalidated = true;
            }
        }
        if let Some(s) = &self.invalidation {
            let mut s = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            s.keys_evicted += n as u64;
            if let Some(t) = event_time {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let lag = now_ms.saturating_sub(u64::from(t) * 1000);
                s.lag_ms = Some(lag);
                s.max_lag_ms = s.max_lag_ms.max(lag);
            }
        }
        if n > 0 {
            log::debug!("invalidation: evicted {}", count(n, "cache entry", "cache entries"));
        }
        n
    }

    /// The replication stream could not resume where it stopped (or came up after the
    /// daemon ran without it): what it missed is unknown, so everything cached goes.
    /// `gap`: it could not resume (counted as a full flush even with nothing cached);
    /// otherwise it came up at the current position, and only a cache that held something
    /// is a flush worth counting.
    pub fn invalidation_flush(&mut self, why: &str, gap: bool) {
        let n = self.cache.len();
        self.forget_answers(why);
        if let Some(s) = &self.invalidation {
            let mut s = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if gap || n > 0 {
                s.full_flushes += 1;
            }
            s.keys_evicted += n as u64;
        }
    }

    /// FLUSH: `""` or `{}` drops everything; `{"kind":"pwd"}` one kind;
    /// `{"kind":"pwd","key":"alice@example.com"}` one key (for RELAY, every IP of it). Any
    /// IMAP kind: the IMAP auth cache and parked connections, of one user or all.
    fn flush(&mut self, payload: &str, out: &mut impl Effects) -> Result<usize, FlushError> {
        let req: FlushRequest = if payload.trim().is_empty() {
            FlushRequest::default()
        } else {
            serde_json::from_str(payload).map_err(FlushError::BadJson)?
        };
        self.epoch += 1;
        // Whatever is flushed, what lookups found out of alias domains goes too: a changed
        // aliasdomain row takes effect with the flush that follows it.
        self.domains.clear();
        let Some(kind) = req.kind else {
            if req.key.is_some() {
                return Err(FlushError::KeyWithoutKind);
            }
            let imap = out.forget_imap(None);
            return Ok(self.cache.clear() + imap.auth_entries + imap.parked);
        };
        if kind.is_imap() {
            let imap = out.forget_imap(req.key.as_deref());
            return Ok(imap.auth_entries + imap.parked);
        }
        if !kind.is_classic() {
            return Err(FlushError::NotCached(kind));
        }
        Ok(match req.key {
            None => self.cache.remove_kind(kind),
            Some(key) => {
                let k = CacheKey::new(kind, &key, "", self.settings.default_domain.as_deref());
                self.cache.remove_subject(kind, k.subject())
            }
        })
    }

    fn reply(&mut self, out: &mut impl Effects, to: &[u8], bytes: &[u8]) {
        let sent = out.reply(to, bytes);
        self.stats.account(to, sent);
    }

    fn refuse(
        &mut self,
        out: &mut impl Effects,
        to: &[u8],
        kind: Option<QueryKind>,
        why: fmt::Arguments<'_>,
    ) {
        self.stats.bad_requests += 1;
        if let Some(k) = kind {
            self.stats.kind(k).refused += 1;
        }
        log::warn!("bad request for {:?}: {why}", String::from_utf8_lossy(to));
        self.reply(out, to, &ERROR_REPLY);
    }

    fn json<T: serde::Serialize>(&mut self, out: &mut impl Effects, to: &[u8], body: &T) {
        match json_reply(body) {
            Some(bytes) => self.reply(out, to, &bytes),
            None => self.reply(out, to, &ERROR_REPLY),
        }
    }
}

/// A classic request as the dispatcher sees it.
#[derive(Debug, Clone, Copy)]
struct Asked<'a> {
    /// The kind asked.
    kind: QueryKind,
    /// The classic kind whose answer it wants (ALIAS for ALIAS-FULL).
    base: QueryKind,
    /// How much of it.
    form: Form,
    email: &'a str,
    ip: &'a str,
}

/// Whether a key's subject is the domain `d` or an address in it.
fn in_domain(subject: &str, d: &str) -> bool {
    subject == d || subject.strip_suffix(d).is_some_and(|u| u.ends_with('@'))
}

impl crate::invalidate::Target {
    /// Whether this target names the cache key `key` (without alias domains: for marking
    /// lookups in flight, where a miss is harmless).
    fn covers(&self, key: &str) -> bool {
        use crate::invalidate::Target;
        let (kind, subject) = (key_kind(key), key_subject(key));
        match self {
            Target::Subject(k, s) => kind == Some(*k) && subject == s,
            Target::InDomain(k, d) => kind == Some(*k) && in_domain(subject, d),
            Target::Under(d) => in_domain(subject, d),
            Target::Kind(k) => kind == Some(*k),
            Target::All => true,
        }
    }
}

/// `1 thing` or `N things`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A key's hash, for logs that must not show whose it is.
fn key_hash(key: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ErrorClass;
    use crate::cache::Ttls;
    use inlookup_core::UserStatus;

    /// Records what the dispatcher asks for; refuses lookups when told to.
    #[derive(Default)]
    struct Recorder {
        replies: Vec<(String, Vec<u8>)>,
        jobs: Vec<LookupJob>,
        imap_jobs: Vec<ImapJob>,
        refuse: Option<Refused>,
        gone: Vec<String>,
        forgotten: Vec<Option<String>>,
        resets: usize,
    }

    impl Effects for Recorder {
        fn reply(&mut self, to: &[u8], bytes: &[u8]) -> Result<(), ReplyFailure> {
            let to = String::from_utf8_lossy(to).into_owned();
            if self.gone.contains(&to) {
                return Err(ReplyFailure::Vanished);
            }
            self.replies.push((to, bytes.to_vec()));
            Ok(())
        }
        fn lookup(&mut self, job: LookupJob) -> Result<(), Refused> {
            match self.refuse {
                Some(r) => Err(r),
                None => {
                    self.jobs.push(job);
                    Ok(())
                }
            }
        }
        fn imap(&mut self, job: ImapJob) -> Result<(), Refused> {
            self.imap_jobs.push(job);
            Ok(())
        }
        fn forget_imap(&mut self, user: Option<&str>) -> Forgotten {
            self.forgotten.push(user.map(str::to_string));
            Forgotten { auth_entries: 2, parked: 1, in_use: 0 }
        }
        fn reset_backends(&mut self) {
            self.resets += 1;
        }
        fn status(&self) -> Status {
            Status::default()
        }
    }

    impl Recorder {
        /// The replies so far, as (path, bytes), emptied.
        fn take(&mut self) -> Vec<(String, Vec<u8>)> {
            std::mem::take(&mut self.replies)
        }
    }

    fn dispatcher(max_stale: Duration) -> Dispatcher {
        let settings =
            Settings { workers: 2, default_domain: None, backend: "test".into(), refresh_ahead: 0 };
        Dispatcher::new(settings, Cache::new(100, Ttls::default(), max_stale))
    }

    fn ask(d: &mut Dispatcher, out: &mut Recorder, kind: QueryKind, email: &str, to: &str) {
        ask_at(d, out, kind, email, to, Instant::now());
    }

    fn ask_at(
        d: &mut Dispatcher,
        out: &mut Recorder,
        kind: QueryKind,
        email: &str,
        to: &str,
        now: Instant,
    ) {
        let f = Frame {
            kind: kind.byte(),
            email: email.as_bytes(),
            reply_path: to.as_bytes(),
            ip: b"",
        };
        d.request(Path::new("infifo"), f, now, out);
    }

    fn active() -> Vec<u8> {
        Answer::User { status: UserStatus::Active }.encode()
    }

    /// What the lookup handler reports for a job answered `answer`.
    fn answered(job: LookupJob, reply: Vec<u8>) -> Done {
        Done {
            key: job.key,
            kind: job.kind,
            epoch: job.epoch,
            outcome: Outcome::Answered { reply, negative: false },
            learned: None,
        }
    }

    fn failed(job: LookupJob) -> Done {
        let error = BackendError::new(ErrorClass::ConnectRefused, "down");
        Done {
            key: job.key,
            kind: job.kind,
            epoch: job.epoch,
            outcome: Outcome::Failed { error, starter: job.reply_to },
            learned: None,
        }
    }

    fn refreshing(pct: u8) -> Dispatcher {
        let settings = Settings {
            workers: 2,
            default_domain: None,
            backend: "test".into(),
            refresh_ahead: pct,
        };
        Dispatcher::new(settings, Cache::new(100, Ttls::default(), Duration::from_secs(3600)))
    }

    /// USER of `email` asked at `t0` (its reply path `/t/1`) and answered active by a worker.
    fn cached_user(d: &mut Dispatcher, out: &mut Recorder, email: &str, t0: Instant) {
        ask_at(d, out, QueryKind::User, email, "/t/1", t0);
        let job = out.jobs.remove(0);
        d.finished(answered(job, active()), t0, out);
    }

    /// USER's positive TTL is 300 s: with 20 %, its last 60 s refresh ahead.
    #[test]
    fn a_hit_late_in_its_ttl_is_served_and_refreshed_once_in_the_background() {
        let (mut d, mut out) = (refreshing(20), Recorder::default());
        let t0 = Instant::now();
        cached_user(&mut d, &mut out, "a@x", t0);
        // Early in the TTL: a plain hit.
        ask_at(&mut d, &mut out, QueryKind::User, "a@x", "/t/2", t0 + Duration::from_secs(200));
        assert!(out.jobs.is_empty(), "no refresh before the last 20 %");
        // Late: served from the cache at once, and one lookup with no reply path of its own.
        for (i, to) in ["/t/3", "/t/4"].into_iter().enumerate() {
            let at = t0 + Duration::from_secs(250 + i as u64);
            ask_at(&mut d, &mut out, QueryKind::User, "a@x", to, at);
        }
        let replies = out.take();
        assert_eq!(replies.len(), 3, "every hit answered from the cache: {replies:?}");
        assert_eq!(out.jobs.len(), 1, "one refresh while one is in flight");
        assert!(out.jobs[0].reply_to.is_empty(), "a refresh has no reply path");
        let s = d.report(&out);
        assert_eq!(s.kinds["user"].refreshed_ahead, 1);
        assert_eq!(s.kinds["user"].hits, 3);
        assert_eq!(s.kinds["user"].misses, 1, "the refresh is not a client's miss");
        // The refreshed answer lives a new TTL: past the first one's end it is still a hit.
        let job = out.jobs.remove(0);
        d.finished(answered(job, active()), t0 + Duration::from_secs(252), &mut out);
        assert!(out.take().is_empty(), "the refresh answers nobody");
        assert_eq!(d.in_flight(), 0);
        ask_at(&mut d, &mut out, QueryKind::User, "a@x", "/t/5", t0 + Duration::from_secs(400));
        assert_eq!(out.take(), [("/t/5".to_string(), active())]);
        assert!(out.jobs.is_empty());
        assert_eq!(d.report(&out).kinds["user"].misses, 1);
    }

    #[test]
    fn refresh_ahead_skips_negative_answers_and_is_off_at_zero() {
        for pct in [0, 20] {
            let (mut d, mut out) = (refreshing(pct), Recorder::default());
            let t0 = Instant::now();
            cached_user(&mut d, &mut out, "a@x", t0);
            ask_at(&mut d, &mut out, QueryKind::User, "no@x", "/t/2", t0);
            let job = out.jobs.remove(0);
            let absent = Answer::User { status: UserStatus::Absent }.encode();
            let mut gone = answered(job, absent.clone());
            gone.outcome = Outcome::Answered { reply: absent, negative: true };
            d.finished(gone, t0, &mut out);
            // USER's negative TTL is 20 s: its last second, then the positive's last minute.
            ask_at(&mut d, &mut out, QueryKind::User, "no@x", "/t/3", t0 + Duration::from_secs(19));
            assert!(out.jobs.is_empty(), "a negative answer is never refreshed ahead");
            ask_at(&mut d, &mut out, QueryKind::User, "a@x", "/t/4", t0 + Duration::from_secs(290));
            assert_eq!(out.jobs.len(), usize::from(pct > 0), "REFRESH_AHEAD={pct}");
        }
    }

    #[test]
    fn a_miss_while_a_refresh_is_in_flight_joins_it_and_a_failed_refresh_answers_only_it() {
        let (mut d, mut out) = (refreshing(20), Recorder::default());
        let t0 = Instant::now();
        cached_user(&mut d, &mut out, "a@x", t0);
        ask_at(&mut d, &mut out, QueryKind::User, "a@x", "/t/2", t0 + Duration::from_secs(299));
        assert_eq!(out.jobs.len(), 1, "refresh started");
        out.take();
        // The entry expires before the refresh is back: the next request joins it.
        ask_at(&mut d, &mut out, QueryKind::User, "a@x", "/t/3", t0 + Duration::from_secs(301));
        assert_eq!(out.jobs.len(), 1, "no second lookup");
        assert!(out.take().is_empty(), "waiting for the refresh");
        assert_eq!(d.report(&out).kinds["user"].coalesced, 1);
        let job = out.jobs.remove(0);
        d.finished(failed(job), t0 + Duration::from_secs(302), &mut out);
        // Serve-stale answers the one that waited; the refresh itself had no one to answer.
        assert_eq!(out.take(), [("/t/3".to_string(), active())]);
        assert_eq!(d.in_flight(), 0);
    }

    #[test]
    fn identical_misses_coalesce_and_the_worker_answers_the_first() {
        let (mut d, mut out) = (dispatcher(Duration::ZERO), Recorder::default());
        for to in ["/t/1", "/t/2", "/t/3"] {
            ask(&mut d, &mut out, QueryKind::User, "Same@X", to);
        }
        assert_eq!(out.jobs.len(), 1, "one lookup for three requests");
        assert_eq!(&*out.jobs[0].reply_to, b"/t/1", "the job answers the first request");
        assert!(out.replies.is_empty());
        assert_eq!((d.in_flight(), d.waiting()), (1, 3));
        let job = out.jobs.pop().unwrap();
        d.finished(answered(job, active()), Instant::now(), &mut out);
        // The worker wrote /t/1's reply itself; the dispatcher answers the two that joined.
        assert_eq!(out.take(), vec![("/t/2".into(), active()), ("/t/3".into(), active())]);
        assert_eq!(d.in_flight(), 0);
        let s = d.report(&out);
        assert_eq!((s.kinds["user"].misses, s.kinds["user"].coalesced), (3, 2));
        // Now a hit, answered from the cache with the same bytes.
        ask(&mut d, &mut out, QueryKind::User, "same@x", "/t/4");
        assert_eq!(out.take(), vec![("/t/4".into(), active())]);
        assert!(out.jobs.is_empty());
        assert_eq!(d.report(&out).kinds["user"].hits, 1);
    }

    #[test]
    fn a_failed_lookup_answers_everyone_from_a_stale_entry_or_with_an_error() {
        let (mut d, mut out) = (dispatcher(Duration::from_secs(3600)), Recorder::default());
        ask(&mut d, &mut out, QueryKind::User, "a@x", "/t/1");
        ask(&mut d, &mut out, QueryKind::User, "a@x", "/t/2");
        let job = out.jobs.pop().unwrap();
        d.finished(failed(job), Instant::now(), &mut out);
        // Nothing cached to fall back on: the starter and the joiner get the error reply.
        assert_eq!(
            out.take(),
            vec![("/t/1".into(), ERROR_REPLY.to_vec()), ("/t/2".into(), ERROR_REPLY.to_vec())]
        );
        assert_eq!(d.report(&out).cache_entries, 0, "errors are never cached");
        // With an expired entry, a failure serves it (serve-stale) to every waiter.
        let key = CacheKey::new(QueryKind::User, "b@x", "", None);
        d.cache.insert(key.as_str(), b"old", Sign::Positive, Instant::now());
        let later = Instant::now() + Duration::from_secs(400); // past the 300 s TTL
        ask_at(&mut d, &mut out, QueryKind::User, "b@x", "/t/3", later);
        ask_at(&mut d, &mut out, QueryKind::User, "b@x", "/t/4", later);
        let job = out.jobs.pop().unwrap();
        d.finished(failed(job), later, &mut out);
        assert_eq!(
            out.take(),
            vec![("/t/3".into(), b"old".to_vec()), ("/t/4".into(), b"old".to_vec())]
        );
        let s = d.report(&out);
        assert_eq!(
            (
                s.kinds["user"].stale_served,
                s.kinds["user"].backend_errors,
                s.kinds["user"].expirations
            ),
            (2, 2, 2)
        );
    }

    #[test]
    fn a_result_that_arrives_after_a_flush_is_delivered_but_not_cached() {
        for flush in ["hup", "all", "kind", "key"] {
            let (mut d, mut out) = (dispatcher(Duration::ZERO), Recorder::default());
            ask(&mut d, &mut out, QueryKind::User, "racy@x", "/t/1");
            ask(&mut d, &mut out, QueryKind::User, "racy@x", "/t/2");
            match flush {
                "hup" => d.hup(&mut out),
                "all" => ask(&mut d, &mut out, QueryKind::Flush, "", "/t/f"),
                "kind" => ask(&mut d, &mut out, QueryKind::Flush, r#"{"kind":"user"}"#, "/t/f"),
                _ => ask(
                    &mut d,
                    &mut out,
                    QueryKind::Flush,
                    r#"{"kind":"user","key":"racy@x"}"#,
                    "/t/f",
                ),
            }
            out.take();
            let job = out.jobs.pop().unwrap();
            d.finished(answered(job, active()), Instant::now(), &mut out);
            assert_eq!(
                out.take(),
                vec![("/t/2".into(), active())],
                "{flush}: the joiner is answered"
            );
            assert_eq!(
                d.report(&out).cache_entries,
                0,
                "{flush}: the pre-flush result is not cached"
            );
            // So the next request is a miss again.
            ask(&mut d, &mut out, QueryKind::User, "racy@x", "/t/3");
            assert_eq!(out.jobs.len(), 1, "{flush}");
        }
    }

    /// A row change read from the binlog evicts its keys (and the same user's in an alias
    /// domain a lookup found), not others'; a lookup in flight for it is answered but not
    /// cached, while one for another key is.
    #[test]
    fn a_change_from_the_binlog_evicts_its_keys_and_spoils_lookups_in_flight() {
        use crate::invalidate::Target;
        let (mut d, mut out) = (dispatcher(Duration::ZERO), Recorder::default());
        let now = Instant::now();
        for who in ["a@x", "b@x", "a@alias"] {
            ask(&mut d, &mut out, QueryKind::User, who, "/t/1");
            let job = out.jobs.pop().unwrap();
            d.finished(answered(job, active()), now, &mut out);
        }
        d.remember_domain(RealDomain { asked: "alias".into(), real: "x".into() }, now);
        assert_eq!(d.report(&out).cache_entries, 3);
        // In flight: a@x's PWD and b@x's PWD.
        ask(&mut d, &mut out, QueryKind::Pwd, "a@x", "/t/2");
        ask(&mut d, &mut out, QueryKind::Pwd, "b@x", "/t/3");
        let (job_b, job_a) = (out.jobs.pop().unwrap(), out.jobs.pop().unwrap());
        let targets = crate::invalidate::row_targets(
            "indimail",
            &crate::invalidate::Row(vec![
                ("pw_name".into(), Some("A".into())),
                ("pw_domain".into(), Some("X".into())),
            ]),
        )
        .unwrap();
        assert_eq!(d.invalidate(&targets, None), 2, "a@x and a@alias, not b@x");
        let r = d.report(&out);
        assert_eq!(r.cache_entries, 1);
        assert_eq!(r.invalidation.unwrap().state, "off", "reported off without a reader");
        d.finished(answered(job_a, active()), now, &mut out);
        d.finished(answered(job_b, active()), now, &mut out);
        assert_eq!(d.report(&out).cache_entries, 2, "b@x's PWD cached, a@x's not");
        ask(&mut d, &mut out, QueryKind::Pwd, "a@x", "/t/4");
        assert_eq!(out.jobs.len(), 1, "a@x's PWD is asked again");
        // An alias domain's row: everything under it, and what lookups learned of it.
        assert_eq!(d.invalidate(&[Target::Under("alias".into())], None), 0);
        assert!(d.known_domain(QueryKind::User, "c@alias", now).is_none());
        assert_eq!(d.invalidate(&[Target::All], None), 2);
    }

    /// REFRESH_AHEAD: a hit in the last part of its TTL is served from the cache and has a
    /// worker refresh it (no reply path: nobody waits); a miss for that key meanwhile joins
    /// it; the refreshed answer is cached afresh; a failed refresh leaves the entry alone.
    #[test]
    fn a_hit_late_in_its_ttl_is_refreshed_in_the_background() {
        let settings = Settings {
            workers: 2,
            default_domain: None,
            backend: "test".into(),
            refresh_ahead: 20,
        };
        let cache = Cache::new(100, "user=10/5".parse().unwrap(), Duration::ZERO);
        let (mut d, mut out) = (Dispatcher::new(settings, cache), Recorder::default());
        let t0 = Instant::now();
        ask_at(&mut d, &mut out, QueryKind::User, "hot@x", "/t/1", t0);
        let job = out.jobs.pop().unwrap();
        d.finished(answered(job, active()), t0, &mut out);
        ask_at(&mut d, &mut out, QueryKind::User, "hot@x", "/t/2", t0 + Duration::from_secs(5));
        assert!(out.jobs.is_empty(), "half way through its TTL: a plain hit");
        let late = t0 + Duration::from_secs(9);
        ask_at(&mut d, &mut out, QueryKind::User, "hot@x", "/t/3", late);
        ask_at(&mut d, &mut out, QueryKind::User, "hot@x", "/t/4", late);
        assert_eq!(out.jobs.len(), 1, "one refresh, not one per hit");
        let replies: Vec<String> = out.take().into_iter().map(|(to, _)| to).collect();
        // (The first was a miss: its worker answered it.)
        assert_eq!(replies, ["/t/2", "/t/3", "/t/4"], "every hit answered from the cache");
        let job = out.jobs.pop().unwrap();
        assert!(job.reply_to.is_empty(), "nobody waits for a refresh");
        // Expired meanwhile: the miss joins the refresh in flight.
        let expired = t0 + Duration::from_secs(11);
        ask_at(&mut d, &mut out, QueryKind::User, "hot@x", "/t/5", expired);
        assert!(out.jobs.is_empty());
        d.finished(answered(job, active()), expired, &mut out);
        assert_eq!(out.take().into_iter().map(|(to, _)| to).collect::<Vec<_>>(), ["/t/5"]);
        let s = d.report(&out).kinds["user"].clone();
        assert_eq!((s.refreshed_ahead, s.misses, s.coalesced), (1, 2, 1));
        ask_at(&mut d, &mut out, QueryKind::User, "hot@x", "/t/6", expired);
        assert!(out.jobs.is_empty(), "cached afresh by the refresh");
        // A refresh that fails: no reply to anyone, the entry still served.
        let later = expired + Duration::from_secs(9);
        ask_at(&mut d, &mut out, QueryKind::User, "hot@x", "/t/7", later);
        let job = out.jobs.pop().unwrap();
        out.take();
        d.finished(failed(job), later, &mut out);
        assert!(out.take().is_empty(), "nobody to answer");
        ask_at(&mut d, &mut out, QueryKind::User, "hot@x", "/t/8", later);
        assert_eq!(out.take().len(), 1);
    }

    #[test]
    fn a_lookup_queued_after_a_flush_is_cached() {
        let (mut d, mut out) = (dispatcher(Duration::ZERO), Recorder::default());
        d.hup(&mut out);
        assert_eq!((out.resets, out.forgotten.clone()), (1, vec![None]));
        ask(&mut d, &mut out, QueryKind::User, "after@x", "/t/1");
        let job = out.jobs.pop().unwrap();
        d.finished(answered(job, active()), Instant::now(), &mut out);
        assert_eq!(d.report(&out).cache_entries, 1);
    }

    #[test]
    fn a_full_queue_answers_at_once_and_opens_no_entry() {
        let (mut d, mut out) = (
            dispatcher(Duration::ZERO),
            Recorder { refuse: Some(Refused::Full), ..Recorder::default() },
        );
        ask(&mut d, &mut out, QueryKind::Pwd, "a@x", "/t/1");
        assert_eq!(out.take(), vec![("/t/1".into(), ERROR_REPLY.to_vec())]);
        assert_eq!(d.in_flight(), 0, "the next request tries again");
        assert_eq!(d.report(&out).kinds["pwd"].queue_full, 1);
        out.refuse = None;
        ask(&mut d, &mut out, QueryKind::Pwd, "a@x", "/t/2");
        assert_eq!(out.jobs.len(), 1);
    }

    #[test]
    fn a_panicked_worker_releases_its_key() {
        // What the lookup handler reports when its worker panics (crate::backend::Lookup::finish
        // with no output): the key is answered with the error reply and the next request for it
        // is a new lookup, not a join of a dead one.
        let (mut d, mut out) = (dispatcher(Duration::ZERO), Recorder::default());
        ask(&mut d, &mut out, QueryKind::Host, "p@x", "/t/1");
        ask(&mut d, &mut out, QueryKind::Host, "p@x", "/t/2");
        let job = out.jobs.pop().unwrap();
        let f = <crate::backend::Lookup as crate::pool::Handler>::finish(job, None);
        assert!(f.reply.is_none(), "a panicked job leaves the answer to the dispatcher");
        d.finished(f.report.unwrap(), Instant::now(), &mut out);
        assert_eq!(
            out.take(),
            vec![("/t/1".into(), ERROR_REPLY.to_vec()), ("/t/2".into(), ERROR_REPLY.to_vec())]
        );
        ask(&mut d, &mut out, QueryKind::Host, "p@x", "/t/3");
        assert_eq!(out.jobs.len(), 1, "a new lookup");
    }

    #[test]
    fn bad_requests_and_flush_errors_get_the_error_reply() {
        let (mut d, mut out) = (dispatcher(Duration::ZERO), Recorder::default());
        let f = Frame { kind: 99, email: b"a@x", reply_path: b"/t/1", ip: b"" };
        d.request(Path::new("infifo"), f, Instant::now(), &mut out);
        ask(&mut d, &mut out, QueryKind::Relay, "a@x", "/t/2"); // no IP
        ask(&mut d, &mut out, QueryKind::Flush, r#"{"key":"a@x"}"#, "/t/3");
        ask(&mut d, &mut out, QueryKind::Flush, r#"{"kind":"ping"}"#, "/t/4");
        ask(&mut d, &mut out, QueryKind::Flush, r#"{"kind":"nope"}"#, "/t/5");
        ask(&mut d, &mut out, QueryKind::Flush, "not json", "/t/6");
        let replies = out.take();
        assert_eq!(replies.len(), 6);
        assert!(replies.iter().all(|(_, b)| *b == ERROR_REPLY), "{replies:?}");
        assert_eq!(d.report(&out).bad_requests, 6);
        assert!(out.jobs.is_empty());
    }

    #[test]
    fn imap_kinds_go_to_imap_and_a_flush_of_one_forgets_one_user() {
        let (mut d, mut out) = (dispatcher(Duration::ZERO), Recorder::default());
        ask(&mut d, &mut out, QueryKind::ImapLogin, r#"{"user":"u"}"#, "/t/1");
        assert_eq!(out.imap_jobs.len(), 1);
        assert_eq!(out.imap_jobs[0].request, ImapRequest::Login);
        assert!(out.replies.is_empty(), "the IMAP worker answers");
        ask(&mut d, &mut out, QueryKind::Flush, r#"{"kind":"imap-login","key":"u@x"}"#, "/t/2");
        assert_eq!(out.forgotten, vec![Some("u@x".to_string())]);
        let flushed: FlushReply = serde_json::from_slice(&out.take()[0].1[4..]).unwrap();
        assert_eq!(flushed.flushed, 3, "auth entries plus parked connections");
    }

    #[test]
    fn a_vanished_client_is_counted() {
        let (mut d, mut out) = (dispatcher(Duration::ZERO), Recorder::default());
        out.gone.push("/t/1".into());
        ask(&mut d, &mut out, QueryKind::Ping, "", "/t/1");
        d.undelivered(b"/t/2", ReplyFailure::Vanished);
        assert_eq!(d.report(&out).vanished_clients, 2);
    }

    #[test]
    fn an_answer_too_long_for_alias_is_minus_one_there_and_whole_for_alias_full() {
        let (mut d, mut out) = (dispatcher(Duration::ZERO), Recorder::default());
        let lines: Vec<String> =
            (0..120).map(|i| format!("&forward-to-someone-far-away-{i:03}@example.org")).collect();
        let whole = Answer::Alias { lines }.encode_whole();
        assert!(whole.len() > PIPE_BUF);
        // An ALIAS and an ALIAS-FULL share one lookup.
        ask(&mut d, &mut out, QueryKind::Alias, "many@x", "/t/1");
        ask(&mut d, &mut out, QueryKind::AliasFull, "many@x", "/t/2");
        ask(&mut d, &mut out, QueryKind::Alias, "many@x", "/t/3");
        let job = out.jobs.pop().unwrap();
        assert_eq!((job.kind, job.form), (QueryKind::Alias, Form::Capped));
        d.finished(answered(job, whole.clone()), Instant::now(), &mut out);
        assert_eq!(
            out.take(),
            vec![("/t/2".into(), whole.clone()), ("/t/3".into(), ERROR_REPLY.to_vec())]
        );
        // Cached whole, never as -1: hits get the same.
        ask(&mut d, &mut out, QueryKind::Alias, "many@x", "/t/4");
        ask(&mut d, &mut out, QueryKind::AliasFull, "many@x", "/t/5");
        assert_eq!(out.take(), vec![("/t/4".into(), ERROR_REPLY.to_vec()), ("/t/5".into(), whole)]);
        let s = d.report(&out);
        assert_eq!(s.kinds["alias"].oversized, 3, "the starter, the joiner and the hit");
        assert_eq!(s.kinds["alias-full"].oversized, 0);
        assert_eq!(s.kinds["alias-full"].hits, 1);
        assert_eq!(s.cache_entries, 1);
    }

    #[test]
    fn health_follows_the_check_and_the_lookups() {
        let (mut d, mut out) = (dispatcher(Duration::ZERO), Recorder::default());
        let health = |d: &Dispatcher, out: &Recorder| d.report(out).backends[0].clone();
        assert_eq!(health(&d, &out).state, BackendState::Unknown);
        let denied = BackendError::new(ErrorClass::AccessDenied, "Access denied for user 'x'");
        d.checked(Err(denied), Instant::now());
        let h = health(&d, &out);
        assert_eq!(h.state, BackendState::Down);
        assert_eq!(h.error_class.as_deref(), Some("access denied"));
        assert_eq!((h.server.as_str(), h.failures), ("test", 1));
        // A lookup that fails keeps it down; one that succeeds brings it up.
        ask(&mut d, &mut out, QueryKind::User, "a@x", "/t/1");
        let job = out.jobs.pop().unwrap();
        d.finished(failed(job), Instant::now(), &mut out);
        let h = health(&d, &out);
        assert_eq!(
            (h.state, h.error_class.as_deref()),
            (BackendState::Down, Some("connect refused"))
        );
        ask(&mut d, &mut out, QueryKind::User, "a@x", "/t/2");
        let job = out.jobs.pop().unwrap();
        d.finished(answered(job, active()), Instant::now(), &mut out);
        let h = health(&d, &out);
        assert_eq!((h.state, h.error, h.failures), (BackendState::Up, None, 2));
        // PING carries it too.
        out.take();
        ask(&mut d, &mut out, QueryKind::Ping, "", "/t/p");
        let ping: PingReply = serde_json::from_slice(&out.take()[0].1[4..]).unwrap();
        assert_eq!(ping.backends.len(), 1);
        assert!(!ping.no_backend_up());
    }

    #[test]
    fn changed_domain_files_flush_the_cache_and_what_lookups_learned() {
        let (mut d, mut out) = (dispatcher(Duration::ZERO), Recorder::default());
        ask(&mut d, &mut out, QueryKind::User, "a@example.net", "/t/1");
        let job = out.jobs.pop().unwrap();
        let mut done = answered(job, active());
        done.learned = Some(RealDomain { asked: "example.net".into(), real: "example.com".into() });
        d.finished(done, Instant::now(), &mut out);
        ask(&mut d, &mut out, QueryKind::User, "b@example.net", "/t/2");
        let in_flight = out.jobs.pop().unwrap();
        assert!(in_flight.known.is_some());
        d.domains_changed();
        assert_eq!(d.report(&out).cache_entries, 0);
        // A lookup made before the change is answered but not cached.
        d.finished(answered(in_flight, active()), Instant::now(), &mut out);
        assert_eq!(d.report(&out).cache_entries, 0);
        ask(&mut d, &mut out, QueryKind::User, "a@example.net", "/t/3");
        assert_eq!(out.jobs.pop().unwrap().known, None, "a miss again, knowing nothing");
    }

    #[test]
    fn a_miss_in_a_domain_whose_real_domain_is_cached_carries_it_and_a_learned_one_is_cached() {
        let (mut d, mut out) = (dispatcher(Duration::ZERO), Recorder::default());
        // Nothing known yet: the lookup finds example.org's real domain itself, and says so.
        ask(&mut d, &mut out, QueryKind::Pwd, "bob@Example.ORG", "/t/1");
        let job = out.jobs.pop().unwrap();
        assert_eq!(job.known, None);
        let mut done = answered(job, b"pwd".to_vec());
        done.learned = Some(RealDomain { asked: "example.org".into(), real: "example.com".into() });
        d.finished(done, Instant::now(), &mut out);
        // Kept apart from the cache (it takes none of its entries) ...
        assert_eq!(d.report(&out).cache_entries, 1);
        // ... and the next miss in that domain carries it: one statement, not two.
        for kind in [QueryKind::User, QueryKind::Host, QueryKind::Alias] {
            ask(&mut d, &mut out, kind, "carol@example.org", "/t/3");
            let job = out.jobs.pop().unwrap();
            let want = RealDomain { asked: "example.org".into(), real: "example.com".into() };
            assert_eq!(job.known, Some(want), "{kind}");
        }
        // A flush forgets it; a cached DOMAIN answer is as good.
        ask(&mut d, &mut out, QueryKind::Flush, r#"{"kind":"pwd"}"#, "/t/f");
        ask(&mut d, &mut out, QueryKind::User, "dave@example.org", "/t/5");
        assert_eq!(out.jobs.pop().unwrap().known, None);
        let domain = Answer::Domain { domain: "example.com".into(), was_alias: true }.encode();
        let key = CacheKey::new(QueryKind::Domain, "example.org", "", None);
        d.cache.insert(key.as_str(), &domain, Sign::Positive, Instant::now());
        ask(&mut d, &mut out, QueryKind::User, "erin@example.org", "/t/6");
        assert_eq!(out.jobs.pop().unwrap().known.map(|k| k.real).as_deref(), Some("example.com"));
    }
}
