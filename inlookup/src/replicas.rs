//! MYSQL_REPLICAS: lookups spread over healthy replicas, the primary (MYSQL_HOST) when none
//! is healthy, with failover inside one request.
//!
//! - Each worker keeps a connection per server it has used ([`ReplicaBackend`]); the
//!   servers' health is shared by all of them ([`ReplicaSet`]).
//! - A server whose query or connect fails is marked down at once and the lookup goes on to
//!   the next server in the same request; the down server is tried again after a back-off
//!   of 100 ms, doubling to 10 s while it keeps failing.
//! - A checker thread reads each replica's `SHOW SLAVE STATUS` every REPLICA_CHECK_SECS: one
//!   whose `Seconds_Behind_Master` passes MAX_REPLICATION_LAG, or whose SQL thread is
//!   stopped, is skipped. MariaDB reports a NULL lag in both the stopped case and when the
//!   replica has lost its primary (IO thread reconnecting, SQL thread running); in that
//!   second case it keeps serving: it is the freshest copy left. Reading the lag needs
//!   REPLICA MONITOR (SLAVE MONITOR) on MariaDB; without it a replica is used unchecked.
//! - One log line per state change.

use crate::backend::{Backend, BackendError, ErrorClass, MysqlBackend};
use inlookup_core::admin::{BackendHealth, BackendState, ServerHealth};
use inlookup_core::{Answer, Lookups, MysqlSettings, QueryKind, RealDomain};
use mysql::prelude::Queryable;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The first back-off of a server that failed…
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// …doubling up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// MYSQL_REPLICAS' settings.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// The replicas (the primary is MYSQL_HOST's settings).
    pub replicas: Vec<MysqlSettings>,
    /// How often each replica's lag is read.
    pub check_every: Duration,
    /// Lag beyond which a replica is skipped, in seconds.
    pub max_lag: u64,
}

impl ReplicaConfig {
    /// MYSQL_REPLICAS (`HOST[:PORT]` or IndiMail's `host:user:pass:port`, comma-separated)
    /// over the primary's settings; `None` when empty.
    ///
    /// # Errors
    /// An entry with a bad port.
    pub fn resolve(
        list: Option<&str>,
        check_secs: u64,
        max_lag: u64,
        primary: &MysqlSettings,
    ) -> Result<Option<ReplicaConfig>, crate::Error> {
        let mut replicas = Vec::new();
        for item in list.unwrap_or("").split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let mut s = primary.clone();
            s.socket = None;
            match item.split(':').count() {
                1 => s.host = item.to_string(),
                2 => {
                    let (h, p) = item.split_once(':').unwrap_or((item, ""));
                    s.host = h.to_string();
                    s.port =
                        p.parse().ok().filter(|p| *p > 0).ok_or_else(|| crate::Error::Config {
                            setting: "MYSQL_REPLICAS",
                            reason: format!("{item:?}: bad port {p:?} (give HOST[:PORT])"),
                        })?;
                }
                _ => s.apply_host_line(item),
            }
            if s.host.is_empty() {
                return Err(crate::Error::Config {
                    setting: "MYSQL_REPLICAS",
                    reason: format!("{item:?}: no host"),
                });
            }
            replicas.push(s);
        }
        Ok((!replicas.is_empty()).then(|| ReplicaConfig {
            replicas,
            check_every: Duration::from_secs(check_secs.max(1)),
            max_lag,
        }))
    }
}

/// Why a replica is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Skip {
    /// Its SQL thread is stopped.
    SqlStopped,
    /// Further behind than MAX_REPLICATION_LAG.
    Behind(u64),
}

/// One server's shared state.
#[derive(Debug)]
struct State {
    /// Known to answer (false until the first success).
    tried: bool,
    /// Down: not used before this time (then tried again).
    down_until: Option<Instant>,
    /// The next back-off.
    backoff: Duration,
    /// The last error, while down.
    error: Option<String>,
    /// A replica's lag at the last check, and whether that skips it.
    lag: Option<u64>,
    skip: Option<Skip>,
    lookups: u64,
    failures: u64,
}

impl State {
    /// A server not tried yet.
    fn fresh() -> State {
        State {
            tried: false,
            down_until: None,
            backoff: BACKOFF_MIN,
            error: None,
            lag: None,
            skip: None,
            lookups: 0,
            failures: 0,
        }
    }
}

#[derive(Debug)]
struct Server {
    settings: Arc<MysqlSettings>,
    primary: bool,
    state: Mutex<State>,
}

impl Server {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn address(&self) -> String {
        match &self.settings.socket {
            Some(s) => format!("socket {s}"),
            None => format!("{}:{}", self.settings.host, self.settings.port),
        }
    }

    fn role(&self) -> &'static str {
        if self.primary {
            "primary"
        } else {
            "replica"
        }
    }

    /// Usable now: not down (or its back-off is over), not skipped.
    fn usable(&self, now: Instant) -> bool {
        let s = self.lock();
        s.skip.is_none() && s.down_until.is_none_or(|t| now >= t)
    }

    /// It answered (`lookup`: a lookup, not the start-up check).
    fn succeeded(&self, lookup: bool) {
        let mut s = self.lock();
        s.lookups += u64::from(lookup);
        s.tried = true;
        if s.down_until.take().is_some() {
            log::info!("{} {} is up again", self.role(), self.address());
        }
        s.backoff = BACKOFF_MIN;
        s.error = None;
    }

    fn failed(&self, why: &str) {
        let mut s = self.lock();
        s.failures += 1;
        s.tried = true;
        let first = s.down_until.is_none();
        let wait = s.backoff;
        s.down_until = Some(Instant::now() + wait);
        s.backoff = (wait * 2).min(BACKOFF_MAX);
        s.error = Some(why.to_string());
        if first {
            log::warn!(
                "{} {} is down: {why}; retried after a back-off from 100 ms",
                self.role(),
                self.address()
            );
        }
    }

    fn set_lag(&self, lag: Option<u64>, skip: Option<Skip>) {
        let mut s = self.lock();
        if s.skip != skip {
            match &skip {
                None => log::info!("replica {} serves again (lag {:?} s)", self.address(), lag),
                Some(Skip::SqlStopped) => {
                    log::warn!("replica {} skipped: its SQL thread is stopped", self.address())
                }
                Some(Skip::Behind(n)) => log::warn!(
                    "replica {} skipped: {n} s behind its primary (MAX_REPLICATION_LAG)",
                    self.address()
                ),
            }
        }
        s.lag = lag;
        s.skip = skip;
    }

    fn health(&self, connects: u64) -> (ServerHealth, BackendHealth) {
        let s = self.lock();
        let (state, reason) = match (&s.down_until, &s.skip) {
            (Some(_), _) => ("down", s.error.clone()),
            (None, Some(Skip::SqlStopped)) => ("skipped", Some("SQL thread stopped".to_string())),
            (None, Some(Skip::Behind(n))) => {
                ("skipped", Some(format!("{n} s behind, over MAX_REPLICATION_LAG")))
            }
            (None, None) if s.tried => ("up", None),
            (None, None) => ("unknown", None),
        };
        let sh = ServerHealth {
            address: self.address(),
            role: self.role().into(),
            state: state.into(),
            reason: reason.clone(),
            lag_secs: s.lag,
            lookups: s.lookups,
            failures: s.failures,
        };
        let bh = BackendHealth {
            server: format!("{} ({})", self.settings.describe(), self.role()),
            state: match state {
                "down" => BackendState::Down,
                "unknown" => BackendState::Unknown,
                _ => BackendState::Up,
            },
            error_class: s.down_until.map(|_| "down".to_string()),
            error: reason,
            connects,
            failures: s.failures,
            ..BackendHealth::default()
        };
        (sh, bh)
    }
}

/// The primary and the replicas, shared by every worker.
#[derive(Debug)]
pub struct ReplicaSet {
    /// The primary first, then the replicas.
    servers: Vec<Server>,
    /// Where the next lookup starts among the replicas.
    next: AtomicUsize,
    lookups: Arc<Lookups>,
    ping_after: Duration,
    connects: Arc<AtomicU64>,
}

impl ReplicaSet {
    /// The set, and its lag checker thread started.
    ///
    /// # Errors
    /// The checker thread could not be started.
    pub fn start(
        primary: MysqlSettings,
        cfg: &ReplicaConfig,
        lookups: Arc<Lookups>,
        ping_after: Duration,
        connects: Arc<AtomicU64>,
    ) -> std::io::Result<Arc<ReplicaSet>> {
        let server = |settings: MysqlSettings, primary: bool| Server {
            settings: Arc::new(settings),
            primary,
            state: Mutex::new(State::fresh()),
        };
        let mut servers = vec![server(primary, true)];
        servers.extend(cfg.replicas.iter().cloned().map(|s| server(s, false)));
        let set = Arc::new(ReplicaSet {
            servers,
            next: AtomicUsize::new(0),
            lookups,
            ping_after,
            connects,
        });
        let (checked, every, max_lag) = (set.clone(), cfg.check_every, cfg.max_lag);
        std::thread::Builder::new()
            .name("replica-check".into())
            .spawn(move || checked.check_loop(every, max_lag))?;
        Ok(set)
    }

    /// The order in which a lookup tries the servers: the usable replicas from the next in
    /// turn, then the primary; servers down or skipped last (a lookup that found none of
    /// the others answering still tries them).
    fn order(&self) -> Vec<usize> {
        let now = Instant::now();
        let n = self.servers.len() - 1;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut usable: Vec<usize> =
            (0..n).map(|i| 1 + (start + i) % n).filter(|&i| self.servers[i].usable(now)).collect();
        if self.servers[0].usable(now) {
            usable.push(0);
        }
        usable
    }

    fn check_loop(&self, every: Duration, max_lag: u64) {
        let mut conns: Vec<Option<mysql::Conn>> = self.servers.iter().map(|_| None).collect();
        let mut warned_grant = false;
        loop {
            for (i, server) in self.servers.iter().enumerate().skip(1) {
                let conn = match conns[i].take() {
                    Some(c) => c,
                    None => match mysql::Conn::new(server.settings.opts()) {
                        Ok(c) => c,
                        Err(e) => {
                            server.failed(&format!("lag check: connect: {e}"));
                            continue;
                        }
                    },
                };
                let mut conn = conn;
                match conn.query_first::<mysql::Row, _>("SHOW SLAVE STATUS") {
                    Ok(Some(row)) => {
                        let text = |name: &str| -> Option<String> {
                            row.get_opt::<Option<String>, _>(name).and_then(Result::ok).flatten()
                        };
                        let lag: Option<u64> =
                            text("Seconds_Behind_Master").and_then(|v| v.parse().ok());
                        let sql = text("Slave_SQL_Running").unwrap_or_default();
                        let skip = if !sql.eq_ignore_ascii_case("Yes") {
                            Some(Skip::SqlStopped)
                        } else {
                            // NULL with the SQL thread running: the replica lost its
                            // primary; it keeps serving, the freshest copy left.
                            lag.filter(|l| *l > max_lag).map(Skip::Behind)
                        };
                        server.set_lag(lag, skip);
                        conns[i] = Some(conn);
                    }
                    Ok(None) => {
                        server.set_lag(None, None);
                        conns[i] = Some(conn);
                    }
                    Err(mysql::Error::MySqlError(e)) if e.code == 1227 => {
                        if !warned_grant {
                            warned_grant = true;
                            log::warn!("replica {}: reading its lag needs REPLICA MONITOR (GRANT SLAVE MONITOR ON *.* on MariaDB, REPLICATION CLIENT on MySQL); it is used unchecked", server.address());
                        }
                        server.set_lag(None, None);
                        conns[i] = Some(conn);
                    }
                    Err(e) => server.failed(&format!("lag check: {e}")),
                }
            }
            std::thread::sleep(every);
        }
    }

    /// PING's and STATS' `servers`, and a backend health entry per server.
    pub fn health(&self) -> (Vec<ServerHealth>, Vec<BackendHealth>) {
        let connects = self.connects.load(Ordering::Relaxed);
        self.servers.iter().map(|s| s.health(connects)).unzip()
    }
}

/// One worker's backend over a [`ReplicaSet`]: a connection per server it used.
pub struct ReplicaBackend {
    set: Arc<ReplicaSet>,
    backends: Vec<MysqlBackend>,
}

impl std::fmt::Debug for ReplicaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplicaBackend({} servers)", self.backends.len())
    }
}

impl ReplicaBackend {
    /// A backend over the set, connecting lazily.
    pub fn new(set: Arc<ReplicaSet>) -> ReplicaBackend {
        let backends = set
            .servers
            .iter()
            .map(|s| {
                MysqlBackend::new(
                    s.settings.clone(),
                    set.lookups.clone(),
                    set.ping_after,
                    set.connects.clone(),
                )
            })
            .collect();
        ReplicaBackend { set, backends }
    }

    /// Runs `f` on the servers in turn until one answers.
    fn each<T>(
        &mut self,
        lookup: bool,
        mut f: impl FnMut(&mut MysqlBackend) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut last = None;
        for i in self.set.order() {
            match f(&mut self.backends[i]) {
                Ok(v) => {
                    self.set.servers[i].succeeded(lookup);
                    return Ok(v);
                }
                Err(e) => {
                    self.set.servers[i].failed(&e.to_string());
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            BackendError::new(ErrorClass::ConnectRefused, "every server is down or skipped")
        }))
    }
}

impl Backend for ReplicaBackend {
    fn answer(&mut self, kind: QueryKind, email: &str, ip: &str) -> Result<Answer, BackendError> {
        self.each(true, |b| b.answer(kind, email, ip))
    }

    fn answer_knowing(
        &mut self,
        kind: QueryKind,
        email: &str,
        ip: &str,
        known: Option<&RealDomain>,
    ) -> Result<(Answer, Option<RealDomain>), BackendError> {
        self.each(true, |b| b.answer_knowing(kind, email, ip, known))
    }

    fn reset(&mut self) {
        self.backends.iter_mut().for_each(Backend::reset);
    }

    fn check(&mut self) -> Result<(), BackendError> {
        self.each(false, Backend::check)
    }

    fn recent_logins(&mut self, secs: u64, max: usize) -> Result<Vec<Answer>, BackendError> {
        self.each(true, |b| b.recent_logins(secs, max))
    }

    fn mail_store(&mut self, user: &str) -> Result<Option<String>, BackendError> {
        self.each(true, |b| b.mail_store(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_parse_over_the_primarys_settings() {
        let p = MysqlSettings {
            host: "db1".into(),
            port: 3307,
            user: "u".into(),
            ..MysqlSettings::default()
        };
        assert!(ReplicaConfig::resolve(None, 2, 30, &p).unwrap().is_none());
        assert!(ReplicaConfig::resolve(Some(" "), 2, 30, &p).unwrap().is_none());
        let c =
            ReplicaConfig::resolve(Some("r1, r2:3310,r3:ro:pw:3311"), 0, 30, &p).unwrap().unwrap();
        let got: Vec<(String, u16, String)> =
            c.replicas.iter().map(|s| (s.host.clone(), s.port, s.user.clone())).collect();
        assert_eq!(
            got,
            [
                ("r1".into(), 3307, "u".into()),
                ("r2".into(), 3310, "u".into()),
                ("r3".into(), 3311, "ro".into())
            ]
        );
        assert_eq!(c.check_every, Duration::from_secs(1), "at least a second");
        let e = ReplicaConfig::resolve(Some("r1:x"), 2, 30, &p).unwrap_err().to_string();
        assert!(e.starts_with("MYSQL_REPLICAS"), "{e}");
    }

    #[test]
    fn a_failed_server_backs_off_doubling_and_a_success_resets_it() {
        let s = Server {
            settings: Arc::new(MysqlSettings::default()),
            primary: false,
            state: Mutex::new(State::fresh()),
        };
        let now = Instant::now();
        assert!(s.usable(now));
        s.failed("refused");
        assert!(!s.usable(Instant::now()), "down at once");
        assert!(s.usable(Instant::now() + Duration::from_millis(150)), "tried again after 100 ms");
        for _ in 0..10 {
            s.failed("refused");
        }
        assert_eq!(s.lock().backoff, BACKOFF_MAX, "doubling up to 10 s");
        assert_eq!(s.health(0).0.state, "down");
        s.succeeded(true);
        let backoff = s.lock().backoff;
        assert_eq!((backoff, s.health(0).0.state.as_str()), (BACKOFF_MIN, "up"));
        s.set_lag(None, Some(Skip::SqlStopped));
        assert!(!s.usable(Instant::now()));
        assert_eq!(s.health(0).0.state, "skipped");
        s.set_lag(Some(3), None);
        assert!(s.usable(Instant::now()));
    }
}
