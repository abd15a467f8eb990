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

use crate::backend::{BackendError, Done, LookupJob, Outcome};
use crate::cache::{Cache, Found, Sign};
use crate::fifo::ReplyFailure;
use crate::imap::ImapJob;
use crate::pool::Refused;
use crate::stats::Stats;
use inlookup_core::address::cache_key_into;
use inlookup_core::admin::{
    json_reply, FlushReply, FlushRequest, ImapStats, PingReply, StatsReport,
};
use inlookup_core::wire::{Frame, ERROR_REPLY};
use inlookup_core::{CacheKey, QueryKind};
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
}

/// The dispatcher's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lookup workers (for the "all busy" log line).
    pub workers: usize,
    /// DEFAULT_DOMAIN, for cache keys.
    pub default_domain: Option<String>,
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

/// Backend health, for logging failures once per episode rather than once per request.
#[derive(Debug, Default)]
struct Health {
    failing_since: Option<Instant>,
    last_warned: Option<Instant>,
    failures: u64,
}

/// The decisions, owned by the I/O thread.
#[derive(Debug)]
pub struct Dispatcher {
    settings: Settings,
    cache: Cache,
    /// Lookups in flight, by key: the reply paths of the requests that joined one after
    /// it started (the one that started it travels with its job).
    inflight: HashMap<CacheKey, Vec<Box<[u8]>>>,
    /// Cache generation: bumped by every flush, so results of lookups queued before it are
    /// not stored.
    epoch: u64,
    stats: Stats,
    health: Health,
    started: Instant,
    /// The key of the request at hand (reused: a hit allocates nothing).
    key: String,
}

impl Dispatcher {
    /// A dispatcher with its cache.
    pub fn new(settings: Settings, cache: Cache) -> Dispatcher {
        Dispatcher {
            settings,
            cache,
            inflight: HashMap::new(),
            epoch: 0,
            stats: Stats::default(),
            health: Health::default(),
            started: Instant::now(),
            key: String::new(),
        }
    }

    /// Lookups in flight (distinct keys).
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Clients waiting for a lookup in flight.
    pub fn waiting(&self) -> usize {
        self.inflight.values().map(|j| 1 + j.len()).sum()
    }

    /// Bytes that were not a frame were skipped.
    pub fn bad_frame(&mut self) {
        self.stats.bad_frames += 1;
    }

    /// Serves one decoded request read from `fifo` at `now`.
    pub fn request(&mut self, fifo: &Path, f: Frame<'_>, now: Instant, out: &mut impl Effects) {
        let Some(kind) = QueryKind::from_byte(f.kind) else {
            return self.refuse(out, f.reply_path, format_args!("unknown query type {}", f.kind));
        };
        self.stats.kind(kind).requests += 1;
        let Ok(email) = std::str::from_utf8(f.email) else {
            let why = format_args!("{kind} query: the email is not UTF-8");
            return self.refuse(out, f.reply_path, why);
        };
        let Ok(ip) = std::str::from_utf8(f.ip) else {
            return self.refuse(
                out,
                f.reply_path,
                format_args!("{kind} query: the IP is not UTF-8"),
            );
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
            "{}->{}, Bytes {}, Query [{}], User {email}, RemoteIp {ip}",
            fifo.display(),
            String::from_utf8_lossy(f.reply_path),
            f.email.len() + f.reply_path.len() + f.ip.len() + 5,
            kind.label(),
        );
        match kind {
            QueryKind::Ping => {
                let body = PingReply {
                    version: env!("CARGO_PKG_VERSION").into(),
                    pid: std::process::id(),
                    uptime_secs: self.started.elapsed().as_secs(),
                };
                self.json(out, f.reply_path, &body);
            }
            QueryKind::Stats => {
                let r = self.report(out);
                self.json(out, f.reply_path, &r);
            }
            QueryKind::Flush => match self.flush(email, out) {
                Ok(n) => self.json(out, f.reply_path, &FlushReply { flushed: n as u64 }),
                Err(why) => self.refuse(out, f.reply_path, format_args!("flush: {why}")),
            },
            QueryKind::Relay if ip.trim().is_empty() => {
                self.refuse(out, f.reply_path, format_args!("relay query without an IP"))
            }
            _ => self.classic(kind, email, ip, f.reply_path, now, out),
        }
    }

    /// A classic kind: from the cache, by joining a lookup in flight, or by a new lookup.
    fn classic(
        &mut self,
        kind: QueryKind,
        email: &str,
        ip: &str,
        to: &[u8],
        now: Instant,
        out: &mut impl Effects,
    ) {
        cache_key_into(&mut self.key, kind, email, ip, self.settings.default_domain.as_deref());
        match self.cache.get(&self.key, now) {
            Found::Fresh { reply, negative } => {
                let ks = self.stats.kind(kind);
                if negative {
                    ks.negative_hits += 1;
                } else {
                    ks.hits += 1;
                }
                log::debug!("cache hit");
                let sent = out.reply(to, reply);
                return self.stats.account(to, sent);
            }
            Found::Expired => self.stats.kind(kind).expirations += 1,
            Found::Absent => {}
        }
        self.stats.kind(kind).misses += 1;
        if let Some(joined) = self.inflight.get_mut(self.key.as_str()) {
            self.stats.kind(kind).coalesced += 1;
            joined.push(to.into());
            return;
        }
        let key = CacheKey::from(std::mem::take(&mut self.key));
        let job = LookupJob {
            key: key.clone(),
            kind,
            email: email.to_string(),
            ip: ip.to_string(),
            epoch: self.epoch,
            reply_to: to.into(),
        };
        match out.lookup(job) {
            Ok(()) => {
                self.inflight.insert(key, Vec::new());
            }
            Err(Refused::Full) => {
                self.stats.kind(kind).queue_full += 1;
                log::warn!("{kind} query for {email}: all {} workers busy and the queue is full; replied with an error", self.settings.workers);
                self.reply(out, to, &ERROR_REPLY);
            }
            Err(Refused::Closed) => self.reply(out, to, &ERROR_REPLY),
        }
    }

    /// A lookup finished (at `now`): cache the answer and reply to everyone still waiting
    /// for it.
    pub fn finished(&mut self, done: Done, now: Instant, out: &mut impl Effects) {
        let joined = self.inflight.remove(&done.key).unwrap_or_default();
        match done.outcome {
            Outcome::Answered { reply, negative } => {
                self.recovered();
                if done.epoch == self.epoch {
                    let sign = if negative { Sign::Negative } else { Sign::Positive };
                    if let Some(k) = self.cache.insert(done.key.as_str(), &reply, sign, now) {
                        self.stats.kind(k).evictions += 1;
                    }
                }
                // The worker answered the request that started the lookup.
                for to in joined {
                    self.reply(out, &to, &reply);
                }
            }
            Outcome::Failed { error, starter } => {
                self.stats.kind(done.kind).backend_errors += 1;
                self.failed(done.kind, &error);
                let waiting = std::iter::once(starter).chain(joined);
                match self.cache.stale(done.key.as_str(), now).map(<[u8]>::to_vec) {
                    Some(stale) => {
                        log::debug!("answered {} from an expired entry", done.key.subject());
                        for to in waiting {
                            self.stats.kind(done.kind).stale_served += 1;
                            self.reply(out, &to, &stale);
                        }
                    }
                    None => {
                        for to in waiting {
                            self.reply(out, &to, &ERROR_REPLY);
                        }
                    }
                }
            }
        }
    }

    /// A reply a worker could not deliver.
    pub fn undelivered(&mut self, to: &[u8], why: ReplyFailure) {
        self.stats.account(to, Err(why));
    }

    /// HUP: flush every entry and IMAP's state; backends reconnect on their next use.
    pub fn hup(&mut self, out: &mut impl Effects) {
        let n = self.cache.clear();
        self.epoch += 1;
        out.reset_backends();
        log::info!("HUP: flushed {n} cache entries; backends reconnect on next use");
        let imap = out.forget_imap(None);
        log::info!(
            "HUP: IMAP: flushed {} auth cache entries; logging out {} parked connections; {} in use close when their sessions end",
            imap.auth_entries, imap.parked, imap.in_use
        );
    }

    /// The counters, as STATS and USR1 give them.
    pub fn report(&self, out: &impl Effects) -> StatsReport {
        let status = out.status();
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
            imap: status.imap,
            ..StatsReport::default()
        };
        self.stats.fill(&mut r);
        r
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

    fn refuse(&mut self, out: &mut impl Effects, to: &[u8], why: fmt::Arguments<'_>) {
        self.stats.bad_requests += 1;
        log::warn!("bad request for {:?}: {why}", String::from_utf8_lossy(to));
        self.reply(out, to, &ERROR_REPLY);
    }

    fn json<T: serde::Serialize>(&mut self, out: &mut impl Effects, to: &[u8], body: &T) {
        match json_reply(body) {
            Some(bytes) => self.reply(out, to, &bytes),
            None => self.reply(out, to, &ERROR_REPLY),
        }
    }

    fn failed(&mut self, kind: QueryKind, why: &BackendError) {
        let h = &mut self.health;
        h.failures += 1;
        let now = Instant::now();
        let since = *h.failing_since.get_or_insert(now);
        if h.last_warned.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            h.last_warned = Some(now);
            log::warn!(
                "{kind} lookup failed ({}; {} failures in {} s): {why}",
                why.class(),
                h.failures,
                now.duration_since(since).as_secs()
            );
        }
    }

    fn recovered(&mut self) {
        if let Some(since) = self.health.failing_since.take() {
            log::info!(
                "backend answering again after {} s and {} failures",
                since.elapsed().as_secs(),
                self.health.failures
            );
            self.health = Health::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ErrorClass;
    use crate::cache::Ttls;
    use inlookup_core::{Answer, UserStatus};

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
        let settings = Settings { workers: 2, default_domain: None };
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
        }
    }

    fn failed(job: LookupJob) -> Done {
        let error = BackendError::new(ErrorClass::ConnectRefused, "down");
        Done {
            key: job.key,
            kind: job.kind,
            epoch: job.epoch,
            outcome: Outcome::Failed { error, starter: job.reply_to },
        }
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
}
