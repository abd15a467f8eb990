//! The clustered layout's backend: each lookup goes to the database IndiMail's inlookup
//! would ask (the central one of `host.cntrl`, or the user's mail store of `mcdinfo`), over
//! persistent connections.
//!
//! **Connections.** Each worker keeps one connection per database it has used, opened
//! lazily on first use and kept (pinged when idle, as [`crate::backend::MysqlBackend`]):
//! a worker never waits for another to free a connection, no lock is held during a query,
//! and a database nobody's users ask costs nothing. With W workers and D databases that
//! is at most W × D connections. With MYSQL_POOL_PER_DB=N the workers share at most N
//! connections per database instead ([`Pools`]): a worker takes one for each statement
//! and gives it back after; when all N are taken it waits for one (at most
//! [`POOL_WAIT`]). The benchmark `scripts/bench.sh --only cluster` measures both.
//!
//! **Failures.** The back-off ([`Backoff`], IndiMail's MAX_FAIL_ATTEMPTS and
//! MYSQL_RETRY_INTERVAL) and the health are per database and shared by every worker. A
//! database that is down fails only the lookups routed to it; the dispatcher then serves a
//! stale answer or `-1`, as for any backend error.
//!
//! **Layout.** Read at start and re-read when `host.cntrl`, `mcdinfo` or `users/assign`
//! change (the I/O thread looks at them about once a second, as at the domain files, and
//! flushes the cache when the layout changed) or on HUP. A file that no longer parses keeps
//! the previous layout in place (logged as an error).

use crate::backend::{Backend, BackendError, ErrorClass};
use inlookup_core::admin::{BackendHealth, BackendState};
use inlookup_core::cluster::{Backoff, ClusterConfig, ClusterSql, Db, Layout, Route};
use inlookup_core::domains::{resolve, Listed, Resolution};
use inlookup_core::lookup::domain_of;
use inlookup_core::{
    Address, Answer, LookupError, Lookups, MailHost, QueryKind, RealDomain, UserStatus,
};
use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How often the layout's files are looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long a worker waits for one of a database's pooled connections (MYSQL_POOL_PER_DB)
/// before the lookup fails.
pub const POOL_WAIT: Duration = Duration::from_secs(5);

/// The shared connections of MYSQL_POOL_PER_DB, per database ([`Db::share_key`]).
#[derive(Default)]
struct Pools {
    per_db: usize,
    /// [`POOL_WAIT`].
    wait: Duration,
    dbs: Mutex<HashMap<String, Pooled>>,
    freed: std::sync::Condvar,
}

/// One database's pooled connections: the idle ones, and how many exist (idle or taken).
#[derive(Default)]
struct Pooled {
    idle: Vec<(mysql::Conn, Instant)>,
    open: usize,
}

impl Pools {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pooled>> {
        self.dbs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An idle connection of `key` (`Some`), or leave to open one (`None`, counted as
    /// open now); waits while all `per_db` are taken.
    fn take(&self, key: &str) -> Result<Option<(mysql::Conn, Instant)>, ()> {
        let deadline = Instant::now() + self.wait;
        let mut dbs = self.lock();
        loop {
            let p = dbs.entry(key.to_string()).or_default();
            if let Some(c) = p.idle.pop() {
                return Ok(Some(c));
            }
            if p.open < self.per_db {
                p.open += 1;
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(());
            }
            dbs = self
                .freed
                .wait_timeout(dbs, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Closes the idle connections (HUP).
    fn close_idle(&self) {
        for p in self.lock().values_mut() {
            p.open = p.open.saturating_sub(p.idle.len());
            p.idle.clear();
        }
        self.freed.notify_all();
    }

    /// Gives a connection back (`None`: the taken place's connection is gone).
    fn give(&self, key: &str, conn: Option<(mysql::Conn, Instant)>) {
        let mut dbs = self.lock();
        let p = dbs.entry(key.to_string()).or_default();
        match conn {
            Some(c) => p.idle.push(c),
            None => p.open = p.open.saturating_sub(1),
        }
        drop(dbs);
        self.freed.notify_one();
    }
}

/// A file's identity for the watch: mtime, size, inode (`None`: absent).
type Stamp = Option<(i64, i64, u64, u64)>;

fn stamp(p: &std::path::Path) -> Stamp {
    std::fs::metadata(p).ok().map(|m| (m.mtime(), m.mtime_nsec(), m.size(), m.ino()))
}

/// One database's health and back-off, shared by every worker.
#[derive(Debug)]
struct DbState {
    backoff: Backoff,
    state: BackendState,
    since: Instant,
    error: Option<(ErrorClass, String)>,
    connects: u64,
    failures: u64,
}

impl DbState {
    fn new(now: Instant) -> DbState {
        DbState {
            backoff: Backoff::default(),
            state: BackendState::Unknown,
            since: now,
            error: None,
            connects: 0,
            failures: 0,
        }
    }

    fn up(&mut self, name: &str, now: Instant) {
        if self.state == BackendState::Down {
            log::info!(
                "{name} answering again after {} s",
                now.saturating_duration_since(self.since).as_secs()
            );
        }
        if self.state != BackendState::Up {
            self.state = BackendState::Up;
            self.since = now;
        }
        self.error = None;
    }

    fn down(&mut self, name: &str, e: &BackendError, now: Instant) {
        if self.state != BackendState::Down {
            log::warn!("{name} down ({}): its users' lookups fail or are served stale", e.class());
            self.state = BackendState::Down;
            self.since = now;
        }
        self.failures += 1;
        self.error = Some((e.class(), e.to_string()));
    }
}

/// The watch on the layout's files.
#[derive(Debug, Default)]
struct Watch {
    last_check: Option<Instant>,
    stamps: Vec<Stamp>,
}

/// What every worker's [`ClusterBackend`] shares: the layout, the per-database state.
pub struct ClusterShared {
    config: ClusterConfig,
    lookups: Arc<Lookups>,
    sql: ClusterSql,
    /// The layout in use (an error: mcdinfo has never parsed; routed lookups fail).
    layout: RwLock<Arc<Result<Layout, String>>>,
    watch: Mutex<Watch>,
    /// Per database, by [`Db::share_key`].
    dbs: Mutex<HashMap<String, DbState>>,
    ping_after: Duration,
    connects: Arc<AtomicU64>,
    /// MYSQL_POOL_PER_DB's shared connections (`None`: a connection per worker).
    pools: Option<Pools>,
}

impl fmt::Debug for ClusterShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterShared({})", self.config.mcdinfo.display())
    }
}

impl ClusterShared {
    /// Loads the layout (logging what it found).
    ///
    /// # Errors
    /// A table name that is not a plain identifier.
    pub fn new(
        config: ClusterConfig,
        lookups: Arc<Lookups>,
        ping_after: Duration,
        connects: Arc<AtomicU64>,
    ) -> Result<ClusterShared, LookupError> {
        let sql = ClusterSql::new(&config.tables, &lookups.config().tables)?;
        let pools = (config.pool_per_db > 0).then(|| Pools {
            per_db: config.pool_per_db,
            wait: POOL_WAIT,
            ..Pools::default()
        });
        let s = ClusterShared {
            pools,
            config,
            lookups,
            sql,
            layout: RwLock::new(Arc::new(Err("not loaded yet".into()))),
            watch: Mutex::new(Watch::default()),
            dbs: Mutex::new(HashMap::new()),
            ping_after,
            connects,
        };
        s.check_files(Instant::now());
        Ok(s)
    }

    /// Re-reads the layout when a file changed since the last look (at most once a second;
    /// the I/O thread calls it). True when a new layout is in use.
    pub fn check_files(&self, now: Instant) -> bool {
        {
            let mut w = self.watch.lock().unwrap_or_else(|e| e.into_inner());
            if w.last_check.is_some_and(|t| now.duration_since(t) < CHECK_EVERY) {
                return false;
            }
            w.last_check = Some(now);
            let stamps: Vec<Stamp> = self.config.files().iter().map(|p| stamp(p)).collect();
            if stamps == w.stamps {
                return false;
            }
            w.stamps = stamps;
        }
        self.reload()
    }

    /// Reads the files again (at start, on a change, on HUP). True when a new layout is in
    /// use; a file that does not parse keeps the previous layout, if there is one.
    pub fn reload(&self) -> bool {
        let files = self.lookups.domain_files().current();
        let is_alias = |d: &str| matches!(files.listed(d), Listed::Real(r) if r != d);
        let loaded = self.config.load(&is_alias);
        let mut cur = self.layout.write().unwrap_or_else(|e| e.into_inner());
        match loaded {
            Ok(l) => {
                let auto = l.entries.iter().filter(|(e, _)| e.auto).count();
                log::info!(
                    "cluster layout: central {}, {} mail store entries ({auto} automatic) on {} databases",
                    l.dbs[l.central].settings.describe(),
                    l.entries.len(),
                    l.dbs.len()
                );
                *cur = Arc::new(Ok(l));
                true
            }
            Err(e) if cur.is_ok() => {
                log::error!("cluster layout not reloaded, keeping the previous one: {e}");
                false
            }
            Err(e) => {
                log::error!("cluster layout: {e}; every lookup fails until it parses");
                *cur = Arc::new(Err(e));
                false
            }
        }
    }

    fn layout(&self) -> Arc<Result<Layout, String>> {
        self.layout.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn with_state<T>(&self, db: &Db, f: impl FnOnce(&mut DbState, &str) -> T) -> T {
        let name = db.settings.describe();
        let mut m = self.dbs.lock().unwrap_or_else(|e| e.into_inner());
        f(m.entry(db.share_key()).or_insert_with(|| DbState::new(Instant::now())), &name)
    }

    /// One health entry per database of the layout, named without passwords, with its role.
    pub fn health(&self) -> Vec<BackendHealth> {
        let layout = self.layout();
        let Ok(l) = layout.as_ref() else { return Vec::new() };
        let now = Instant::now();
        let m = self.dbs.lock().unwrap_or_else(|e| e.into_inner());
        l.dbs
            .iter()
            .enumerate()
            .map(|(i, db)| {
                let mut roles: Vec<String> = Vec::new();
                if i == l.central {
                    roles.push("central".into());
                }
                if i == l.local {
                    roles.push("local".into());
                }
                for (e, _) in l.entries.iter().filter(|(_, d)| *d == i) {
                    let r = format!("{} on {}", e.domain, e.mdahost);
                    if !roles.contains(&r) {
                        roles.push(r);
                    }
                }
                let server = format!("{} ({})", db.settings.describe(), roles.join(", "));
                match m.get(&db.share_key()) {
                    Some(s) => BackendHealth {
                        server,
                        state: s.state,
                        since_secs: now.saturating_duration_since(s.since).as_secs(),
                        error_class: s.error.as_ref().map(|(c, _)| c.name().to_string()),
                        error: s.error.as_ref().map(|(_, m)| m.clone()),
                        connects: s.connects,
                        failures: s.failures,
                    },
                    None => BackendHealth { server, ..BackendHealth::default() },
                }
            })
            .collect()
    }
}

/// One worker's connections to the layout's databases.
pub struct ClusterBackend {
    shared: Arc<ClusterShared>,
    /// Open connections, by [`Db::share_key`], and when each was last used.
    conns: HashMap<String, (mysql::Conn, Instant)>,
}

impl fmt::Debug for ClusterBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterBackend({} open)", self.conns.len())
    }
}

/// The "not found" answer of each kind, for the address as asked.
fn not_found(kind: QueryKind, email: &str, a: Option<&Address>) -> Answer {
    match kind {
        QueryKind::Relay => Answer::Relay { allowed: false },
        QueryKind::Pwd => Answer::Pwd {
            email: a
                .map_or_else(|| email.trim().to_string(), |a| format!("{}@{}", a.user, a.domain)),
            passwd: None,
        },
        QueryKind::Host => Answer::Host { host: None },
        QueryKind::Alias => Answer::Alias { lines: Vec::new() },
        QueryKind::Limit => Answer::Limit { limits: None },
        _ => Answer::User { status: UserStatus::Absent },
    }
}

impl ClusterBackend {
    /// A worker's backend over the shared layout.
    pub fn new(shared: Arc<ClusterShared>) -> ClusterBackend {
        ClusterBackend { shared, conns: HashMap::new() }
    }

    /// The worker's connection to `db`: the open one (pinged when idle), else a new one if
    /// the back-off allows.
    fn conn(&mut self, db: &Db) -> Result<&mut mysql::Conn, BackendError> {
        let key = db.share_key();
        let name = db.settings.describe();
        let stale = match self.conns.get_mut(&key) {
            Some((c, used)) if used.elapsed() >= self.shared.ping_after => c.ping().is_err(),
            Some(_) => false,
            None => true,
        };
        if stale {
            self.conns.remove(&key);
            let (max, iv) = (self.shared.config.max_fail, self.shared.config.retry_interval);
            let now = Instant::now();
            let waiting = self.shared.with_state(db, |s, _| {
                s.backoff.may_try(now, max, iv).err().map(|wait| {
                    let last = s.error.as_ref().map(|(c, m)| (*c, m.clone()));
                    (wait, s.backoff.failed, last)
                })
            });
            if let Some((wait, failed, last)) = waiting {
                let (class, last) = last.unwrap_or((ErrorClass::ConnectRefused, String::new()));
                return Err(BackendError::new(
                    class,
                    format!(
                        "{name}: not tried for {} s more after {failed} failed connects (last: {last})",
                        wait.as_secs_f32().ceil()
                    ),
                ));
            }
            match mysql::Conn::new(db.settings.opts()) {
                Ok(c) => {
                    self.shared.connects.fetch_add(1, Ordering::Relaxed);
                    self.shared.with_state(db, |s, n| {
                        s.backoff.succeeded_at(now);
                        s.connects += 1;
                        s.up(n, now);
                    });
                    log::debug!("connected to {name}");
                    self.conns.insert(key.clone(), (c, now));
                }
                Err(e) => {
                    let e = BackendError::lookup(Some(format!("connect to {name}")), e.into());
                    self.shared.with_state(db, |s, n| {
                        s.backoff.failed_at(now);
                        s.down(n, &e, now);
                    });
                    return Err(e);
                }
            }
        }
        let (c, used) = self.conns.get_mut(&key).expect("just opened or kept");
        *used = Instant::now();
        Ok(c)
    }

    /// Runs `f` on `db`, once more on a fresh connection when the connection was lost (not
    /// after a timeout); the database's health follows the outcome. With MYSQL_POOL_PER_DB
    /// the connection is taken from the database's pool for the statement and given back
    /// after it (it is this worker's own, as without a pool, meanwhile).
    fn run<T>(
        &mut self,
        db: &Db,
        f: impl Fn(&mut mysql::Conn) -> Result<T, LookupError>,
    ) -> Result<T, BackendError> {
        let shared = self.shared.clone();
        let Some(pools) = &shared.pools else { return self.run_on(db, f) };
        let key = db.share_key();
        match pools.take(&key) {
            Ok(Some(c)) => {
                self.conns.insert(key.clone(), c);
            }
            Ok(None) => {}
            Err(()) => {
                return Err(BackendError::new(
                    ErrorClass::Timeout,
                    format!(
                        "{}: all {} pooled connections busy for {} s",
                        db.settings.describe(),
                        pools.per_db,
                        POOL_WAIT.as_secs()
                    ),
                ))
            }
        }
        let r = self.run_on(db, f);
        pools.give(&key, self.conns.remove(&key));
        r
    }

    fn run_on<T>(
        &mut self,
        db: &Db,
        f: impl Fn(&mut mysql::Conn) -> Result<T, LookupError>,
    ) -> Result<T, BackendError> {
        let first = f(self.conn(db)?);
        let result = match first {
            Err(e) if e.is_connection_lost() => {
                self.conns.remove(&db.share_key());
                if ErrorClass::of_lookup(&e) == ErrorClass::Timeout {
                    Err(e)
                } else {
                    log::info!("{}: connection lost ({e}); reconnecting", db.settings.describe());
                    let r = f(self.conn(db)?);
                    if r.as_ref().is_err_and(LookupError::is_connection_lost) {
                        self.conns.remove(&db.share_key());
                    }
                    r
                }
            }
            r => r,
        };
        let now = Instant::now();
        match result {
            Ok(v) => {
                self.shared.with_state(db, |s, n| s.up(n, now));
                Ok(v)
            }
            Err(e) => {
                let e = BackendError::lookup(Some(db.settings.describe()), e);
                self.shared.with_state(db, |s, n| s.down(n, &e, now));
                Err(e)
            }
        }
    }

    /// The real domain of `domain` in IndiMail's order for a clustered site: the files, what
    /// the caller knows, then (for a domain that is not distributed) the central
    /// `aliasdomain`, then rcpthosts; a distributed domain not in the files is itself.
    /// `None`: a domain of the assign cdb whose directory is missing.
    fn real_domain(
        &mut self,
        l: &Layout,
        domain: &str,
        known: Option<&RealDomain>,
        learned: &mut Option<RealDomain>,
    ) -> Result<Option<String>, BackendError> {
        let files = self.shared.lookups.domain_files().current();
        match files.listed(domain) {
            Listed::Real(r) => return Ok(Some(r)),
            Listed::Missing => return Ok(None),
            Listed::Open => {}
        }
        if let Some(k) = known.filter(|k| k.asked == domain) {
            return Ok(Some(k.real.clone()));
        }
        if l.is_distributed(domain) {
            return Ok(Some(domain.to_string()));
        }
        let shared = self.shared.clone();
        let central = &l.dbs[l.central];
        let r =
            resolve(&files, domain, || self.run(central, |c| shared.sql.alias_domain(c, domain)))?;
        Ok(match r {
            Resolution::Real(real, _) => {
                *learned = Some(RealDomain { asked: domain.to_string(), real: real.clone() });
                Some(real)
            }
            Resolution::NotFound => None,
        })
    }

    fn routed(
        &mut self,
        l: &Layout,
        kind: QueryKind,
        email: &str,
        ip: &str,
        known: Option<&RealDomain>,
    ) -> Result<(Answer, Option<RealDomain>), BackendError> {
        let lookups = self.shared.lookups.clone();
        let default = lookups.config().default_domain.clone();
        let addr = Address::parse(email, default.as_deref());
        let mut learned = None;
        if kind == QueryKind::Domain {
            let asked = email.trim().trim_end_matches(' ');
            let folded = asked.to_lowercase();
            let answer = match self.real_domain(l, &folded, None, &mut learned)? {
                Some(real) if real != folded => Answer::Domain { domain: real, was_alias: true },
                _ => Answer::Domain { domain: asked.to_string(), was_alias: false },
            };
            return Ok((answer, learned));
        }
        let is_address =
            if kind == QueryKind::Limit { email.contains('@') } else { addr.is_some() };
        let Some(domain) = domain_of(kind, email, default.as_deref()) else {
            return Ok((not_found(kind, email, addr.as_ref()), None));
        };
        let Some(real) = self.real_domain(l, &domain, known, &mut learned)? else {
            return Ok((not_found(kind, email, addr.as_ref()), learned));
        };
        let knows = RealDomain { asked: domain.clone(), real: real.clone() };
        let on = |this: &mut Self, db: &Db| {
            this.run(db, |c| lookups.answer_knowing(c, kind, email, ip, Some(&knows)))
                .map(|(a, _)| a)
        };
        let answer = match (Layout::route(kind, is_address, l.is_distributed(&real)), &addr) {
            (Route::LocalDb, _) => on(self, &l.dbs[l.local])?,
            (Route::Distributed, Some(a)) => {
                let (shared, central) = (self.shared.clone(), &l.dbs[l.central]);
                let Some(hostid) =
                    self.run(central, |c| shared.sql.placement(c, &a.user, &real))?
                else {
                    return Ok((not_found(kind, email, Some(a)), learned));
                };
                let Some(ip) = self.run(central, |c| shared.sql.host_ip(c, &hostid))? else {
                    return Err(BackendError::new(
                        ErrorClass::QueryFailed,
                        format!("host_table has no IP for host {hostid:?} ({}@{real})", a.user),
                    ));
                };
                if kind == QueryKind::Host {
                    let local_ip = lookups.config().local_ip.clone().unwrap_or_default();
                    // As IndiMail: an SQL error, no row or port 0 give the default port.
                    let port = self
                        .run(central, |c| shared.sql.smtp_port(c, &real, &hostid, &local_ip))
                        .ok()
                        .flatten()
                        .map_or_else(|| lookups.config().mda_port.clone(), |p| p.to_string());
                    let host = MailHost { domain: a.domain.clone(), host: ip, port };
                    return Ok((Answer::Host { host: Some(host) }, learned));
                }
                match l.store_for(&real, Some(&ip)) {
                    Some((_, db)) => on(self, &l.dbs[*db])?,
                    // No entry of the domain on that mdahost: IndiMail's "not found".
                    None => not_found(kind, email, Some(a)),
                }
            }
            (Route::FirstEntry, Some(a)) => {
                let Some((entry, db)) = l.store_for(&real, None) else {
                    return Ok((not_found(kind, email, Some(a)), learned));
                };
                let db = &l.dbs[*db];
                match kind {
                    QueryKind::Host => {
                        let shared = self.shared.clone();
                        let here = self.run(db, |c| shared.sql.user_here(c, &a.user, &real))?;
                        Answer::Host {
                            host: here.then(|| MailHost {
                                domain: a.domain.clone(),
                                host: entry.mdahost.clone(),
                                port: lookups.config().mda_port.clone(),
                            }),
                        }
                    }
                    QueryKind::User => {
                        let first = on(self, db)?;
                        if first.is_negative() && self.alias_elsewhere(l, db, &a.user, &real)? {
                            Answer::User { status: UserStatus::Alias }
                        } else {
                            first
                        }
                    }
                    _ => on(self, db)?,
                }
            }
            _ => not_found(kind, email, addr.as_ref()),
        };
        Ok((answer, learned))
    }

    /// The database a PWD lookup of `email` goes to, by the same routing as [`routed`]
    /// (the central database's `hostcntrl` and `host_table` for a distributed domain);
    /// `None` where that lookup would answer "not found" without a store.
    ///
    /// [`routed`]: ClusterBackend::routed
    fn home_of(&mut self, l: &Layout, email: &str) -> Result<Option<usize>, BackendError> {
        let default = self.shared.lookups.config().default_domain.clone();
        let Some(a) = Address::parse(email, default.as_deref()) else { return Ok(None) };
        let mut learned = None;
        let Some(real) = self.real_domain(l, &a.domain, None, &mut learned)? else {
            return Ok(None);
        };
        if !l.is_distributed(&real) {
            return Ok(l.store_for(&real, None).map(|(_, db)| *db));
        }
        let (shared, central) = (self.shared.clone(), &l.dbs[l.central]);
        let Some(hostid) = self.run(central, |c| shared.sql.placement(c, &a.user, &real))? else {
            return Ok(None);
        };
        let Some(ip) = self.run(central, |c| shared.sql.host_ip(c, &hostid))? else {
            return Ok(None);
        };
        Ok(l.store_for(&real, Some(&ip)).map(|(_, db)| *db))
    }

    /// USER of a non-distributed domain whose first entry lacks the user: IndiMail counts
    /// `valias` rows on every entry of the domain.
    fn alias_elsewhere(
        &mut self,
        l: &Layout,
        first: &Db,
        user: &str,
        real: &str,
    ) -> Result<bool, BackendError> {
        let shared = self.shared.clone();
        let first_key = first.share_key();
        let mut seen = vec![first_key];
        for (_, i) in l.entries_of(real) {
            let db = &l.dbs[*i];
            let key = db.share_key();
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            if self.run(db, |c| shared.sql.alias_here(c, user, real))? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Backend for ClusterBackend {
    fn answer(&mut self, kind: QueryKind, email: &str, ip: &str) -> Result<Answer, BackendError> {
        self.answer_knowing(kind, email, ip, None).map(|(a, _)| a)
    }

    fn answer_knowing(
        &mut self,
        kind: QueryKind,
        email: &str,
        ip: &str,
        known: Option<&RealDomain>,
    ) -> Result<(Answer, Option<RealDomain>), BackendError> {
        let layout = self.shared.layout();
        match layout.as_ref() {
            Ok(l) => self.routed(l, kind, email, ip, known),
            Err(e) => Err(BackendError::new(ErrorClass::Config, format!("cluster layout: {e}"))),
        }
    }

    /// HUP: this worker's connections are closed, and the pools' idle ones (each worker
    /// does this at its next lookup; a connection opened since by another is closed again,
    /// which costs a reconnect and nothing else).
    fn reset(&mut self) {
        self.conns.clear();
        if let Some(p) = &self.shared.pools {
            p.close_idle();
        }
    }

    /// Connects to every database of the layout once (IndiMail's OpenDatabases), so
    /// PING shows each one's health and the log names each one that fails; the result is
    /// the central database's, which every distributed lookup needs (a mail store that is
    /// down costs only its own users).
    fn check(&mut self) -> Result<(), BackendError> {
        let layout = self.shared.layout();
        let l = layout
            .as_ref()
            .as_ref()
            .map_err(|e| BackendError::new(ErrorClass::Config, format!("cluster layout: {e}")))?;
        let mut central = Ok(());
        for (i, db) in l.dbs.iter().enumerate() {
            if let Err(e) = self.conn(db) {
                if i == l.central {
                    central = Err(e);
                } else {
                    log::warn!("at start: {e}");
                }
            }
        }
        central
    }

    /// The `-c` preload from every mail store, where IndiMail's reads the local database
    /// only: each store's recent logins (the local database's first), each kept only when a
    /// PWD lookup of that user would go to the database it came from (so a row left on
    /// another store, or of a domain no entry serves, is never preloaded), at most `max`
    /// in all. A store that cannot be read is a warning; the local one, an error.
    fn recent_logins(&mut self, secs: u64, max: usize) -> Result<Vec<Answer>, BackendError> {
        let layout = self.shared.layout();
        let Ok(l) = layout.as_ref() else { return Ok(Vec::new()) };
        let lookups = self.shared.lookups.clone();
        let mut stores = vec![l.local];
        for (_, i) in &l.entries {
            if !stores.contains(i) {
                stores.push(*i);
            }
        }
        let mut kept = Vec::new();
        for i in stores {
            if kept.len() >= max {
                break;
            }
            let found = match self.run(&l.dbs[i], |c| lookups.recent_logins(c, secs, max)) {
                Ok(found) => found,
                Err(e) if i == l.local => return Err(e),
                Err(e) => {
                    log::warn!("-c: {e}; that store's users are not preloaded");
                    continue;
                }
            };
            let before = kept.len();
            for a in found {
                let Answer::Pwd { email, .. } = &a else { continue };
                match self.home_of(l, email) {
                    Ok(Some(home)) if home == i => kept.push(a),
                    Ok(_) => {}
                    Err(e) => log::debug!("-c: {email} not preloaded: {e}"),
                }
                if kept.len() >= max {
                    break;
                }
            }
            log::debug!(
                "-c: {} of {}'s recent logins preloaded",
                kept.len() - before,
                l.dbs[i].settings.describe()
            );
        }
        Ok(kept)
    }

    /// A distributed domain's user: the HOST answer's host; any other user: the default
    /// IMAP server.
    fn mail_store(&mut self, user: &str) -> Result<Option<String>, BackendError> {
        match self.answer(QueryKind::Host, user, "")? {
            Answer::Host { host: Some(h) } => {
                let layout = self.shared.layout();
                let distributed = layout.as_ref().as_ref().is_ok_and(|l| {
                    let files = self.shared.lookups.domain_files().current();
                    let real = match files.listed(&h.domain.to_lowercase()) {
                        Listed::Real(r) => r,
                        _ => h.domain.to_lowercase(),
                    };
                    l.is_distributed(&real)
                });
                Ok(distributed.then(|| h.host.trim().to_string()))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlookup_core::LookupConfig;
    use std::collections::HashMap as Map;

    /// A clustered site in a temporary CONTROLDIR whose databases all refuse connections
    /// (port 1), with `MAX_FAIL_ATTEMPTS` 1 and a long retry interval.
    fn site(tag: &str, mcdinfo: &str) -> (std::path::PathBuf, Arc<ClusterShared>) {
        let dir = std::env::temp_dir().join(format!("cl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("host.cntrl"), "127.0.0.1:u:secret:1\n").unwrap();
        std::fs::write(dir.join("mcdinfo"), mcdinfo).unwrap();
        let vars: Map<&str, &str> =
            [("MAX_FAIL_ATTEMPTS", "1"), ("MYSQL_RETRY_INTERVAL", "60")].into_iter().collect();
        let get = |k: &str| vars.get(k).map(|v| v.to_string());
        let local = inlookup_core::MysqlSettings {
            host: "127.0.0.1".into(),
            port: 1,
            ..Default::default()
        };
        let cfg =
            ClusterConfig::from_lookup(&dir, &dir, &local, Some("10.0.0.1"), None, &get).unwrap();
        let lookups = Arc::new(
            Lookups::new(LookupConfig {
                domains: inlookup_core::domains::DomainSources {
                    listed: vec!["dist.example".into()],
                    assign_dir: dir.clone(),
                    controldir: dir.clone(),
                },
                ..LookupConfig::default()
            })
            .unwrap(),
        );
        let shared =
            ClusterShared::new(cfg, lookups, Duration::from_secs(10), Arc::new(AtomicU64::new(0)))
                .unwrap();
        (dir, Arc::new(shared))
    }

    const STORE: &str = "domain dist.example 1\nserver 127.0.0.1\nmdahost 10.0.0.2\nport 1\n\
                         use_ssl 0\ndatabase d\nuser u\npass secret\n";

    #[test]
    fn a_database_that_keeps_failing_is_not_tried_until_the_interval_passes() {
        let (dir, shared) = site("backoff", STORE);
        let mut b = ClusterBackend::new(shared.clone());
        // Two connects tried (refused), then "more than 1" failure: the third is not tried.
        for _ in 0..2 {
            let e = b.answer(QueryKind::Pwd, "alice@dist.example", "").unwrap_err();
            assert_eq!(e.class(), ErrorClass::ConnectRefused, "{e}");
            assert!(e.to_string().contains("connect to"), "{e}");
        }
        let e = b.answer(QueryKind::Pwd, "alice@dist.example", "").unwrap_err();
        assert!(e.to_string().contains("not tried for"), "{e}");
        assert_eq!(e.class(), ErrorClass::ConnectRefused, "the last error's class");
        // Another worker shares the back-off.
        let mut other = ClusterBackend::new(shared.clone());
        let e = other.answer(QueryKind::User, "bob@dist.example", "").unwrap_err();
        assert!(e.to_string().contains("not tried for"), "{e}");
        let health = shared.health();
        let central = health.iter().find(|h| h.server.contains("central")).unwrap();
        assert_eq!(central.state, BackendState::Down);
        assert_eq!(central.failures, 2);
        assert!(health.iter().all(|h| !h.server.contains("secret")), "{health:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_pool_bounds_connections_per_database_and_a_freed_place_wakes_a_waiter() {
        let p = Arc::new(Pools { per_db: 2, wait: Duration::from_millis(300), ..Pools::default() });
        assert!(matches!(p.take("a"), Ok(None)), "room: open one");
        assert!(matches!(p.take("a"), Ok(None)), "room: open another");
        assert!(matches!(p.take("b"), Ok(None)), "another database has its own bound");
        let started = Instant::now();
        assert!(p.take("a").is_err(), "both taken: waits, then fails");
        assert!(started.elapsed() >= Duration::from_millis(300), "waited the whole bound");
        let waiter = {
            let p = p.clone();
            std::thread::spawn(move || p.take("a").is_ok())
        };
        std::thread::sleep(Duration::from_millis(50));
        p.give("a", None); // a lost connection gives its place back
        assert!(waiter.join().unwrap(), "the waiter got the freed place");
        assert_eq!(p.lock()["a"].open, 2);
        p.close_idle();
        assert_eq!(p.lock()["a"].open, 2, "nothing idle to close");
    }

    #[test]
    fn a_store_asking_for_tls_gets_a_tls_connection_setting() {
        let (dir, shared) = site("tls", &STORE.replace("use_ssl 0", "use_ssl 1"));
        let mut b = ClusterBackend::new(shared.clone());
        let l = shared.layout();
        let l = l.as_ref().as_ref().unwrap();
        let (_, i) = l.store_for("dist.example", Some("10.0.0.2")).unwrap();
        let db = &l.dbs[*i];
        assert!(db.tls && db.settings.tls, "{db:?}");
        assert!(db.settings.describe().ends_with("(TLS)"), "{}", db.settings.describe());
        assert!(db.settings.opts().get_ssl_opts().is_some(), "TLS options set");
        assert!(!l.dbs[l.central].settings.tls, "host.cntrl has no ssl field here");
        // Nothing listens there: a connect error, not a refusal of the setting.
        let e = b.conn(db).unwrap_err();
        assert_eq!(e.class(), ErrorClass::ConnectRefused, "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_malformed_mcdinfo_fails_lookups_and_a_fixed_one_is_picked_up() {
        let (dir, shared) = site("bad", "server x\n");
        let mut b = ClusterBackend::new(shared.clone());
        let e = b.answer(QueryKind::Domain, "dist.example", "").unwrap_err();
        assert_eq!(e.class(), ErrorClass::Config);
        assert!(e.to_string().contains("incomplete"), "{e}");
        std::fs::write(dir.join("mcdinfo"), STORE).unwrap();
        assert!(!shared.check_files(Instant::now()), "looked at less than a second ago");
        assert!(shared.reload(), "as HUP does");
        // dist.example is listed and distributed: DOMAIN needs no database.
        let a = b.answer(QueryKind::Domain, "dist.example", "").unwrap();
        assert_eq!(a, Answer::Domain { domain: "dist.example".into(), was_alias: false });
        // A bare LIMIT domain goes to the local database (refused here).
        let e = b.answer(QueryKind::Limit, "dist.example", "").unwrap_err();
        assert!(e.to_string().contains("127.0.0.1:1/indimail"), "{e}");
        // An address of no domain at all: not found, no SQL.
        let a = b.answer(QueryKind::Pwd, "nobody", "").unwrap();
        assert_eq!(a, Answer::Pwd { email: "nobody".into(), passwd: None });
        std::fs::remove_dir_all(dir).unwrap();
    }
}
