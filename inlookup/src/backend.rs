//! What answers a cache miss: a [`Backend`] owned by one worker thread (the real one keeps a
//! persistent MySQL connection; tests plug in backends built to fail, stall or panic), the
//! [`Lookup`] handler the worker pool runs, and the typed [`BackendError`] it reports.

use crate::pool::{Finished, Handler, Reply};
use inlookup_core::domains::DomainWatch;
use inlookup_core::wire::{ERROR_REPLY, PIPE_BUF};
use inlookup_core::{Answer, CacheKey, LookupError, Lookups, MysqlSettings, QueryKind, RealDomain};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One worker's way of answering classic queries.
pub trait Backend: Send {
    /// Answers one query.
    ///
    /// # Errors
    /// The backend could not answer (not found is an answer).
    fn answer(&mut self, kind: QueryKind, email: &str, ip: &str) -> Result<Answer, BackendError>;
    /// As [`Backend::answer`], knowing the real domain of the address's domain already (from
    /// the cached DOMAIN answer), so that the lookup needs one statement; returns the real
    /// domain it looked up, if it did. By default: [`Backend::answer`], learning nothing.
    ///
    /// # Errors
    /// As [`Backend::answer`].
    fn answer_knowing(
        &mut self,
        kind: QueryKind,
        email: &str,
        ip: &str,
        known: Option<&RealDomain>,
    ) -> Result<(Answer, Option<RealDomain>), BackendError> {
        let _ = known;
        self.answer(kind, email, ip).map(|a| (a, None))
    }
    /// Drops connections so the next query opens fresh ones (HUP).
    fn reset(&mut self);
    /// Connects (once, at start), to report the backend's health before any lookup.
    ///
    /// # Errors
    /// The backend cannot be reached or refuses us.
    fn check(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
    /// The PWD answers of users who logged in during the last `secs` seconds, at most `max`
    /// (the `-c` preload); none by default.
    ///
    /// # Errors
    /// The backend could not answer.
    fn recent_logins(&mut self, secs: u64, max: usize) -> Result<Vec<Answer>, BackendError> {
        let _ = (secs, max);
        Ok(Vec::new())
    }
    /// The user's mail store from `hostcntrl` alone (none: the default IMAP server); by
    /// default the host of the HOST answer.
    ///
    /// # Errors
    /// The backend could not answer.
    fn mail_store(&mut self, user: &str) -> Result<Option<String>, BackendError> {
        Ok(match self.answer(QueryKind::Host, user, "")? {
            Answer::Host { host: Some(h) } => Some(h.host.trim().to_string()),
            _ => None,
        })
    }
}

/// Makes one backend per worker.
pub type BackendFactory = Arc<dyn Fn() -> Box<dyn Backend> + Send + Sync>;

/// The backends a daemon runs with: how to make one, and how many connections they opened.
#[derive(Clone)]
pub struct Backends {
    /// Makes one backend per worker (and for the IMAP side's mail-store lookups).
    pub factory: BackendFactory,
    /// Connections opened by every backend (shown in STATS).
    pub connects: Arc<AtomicU64>,
    /// The domain files the backends' lookups read, for the I/O thread to watch and
    /// reload (none for backends of one's own).
    pub domains: Option<Arc<DomainWatch>>,
    /// The health of each database, for backends that track it themselves (the clustered
    /// layout); `None`: the dispatcher's single health entry.
    pub health: Option<HealthFn>,
    /// The clustered layout, for the I/O thread to watch its files and reload them on HUP
    /// (none when the site is not clustered).
    pub cluster: Option<Arc<crate::cluster::ClusterShared>>,
    /// MYSQL_REPLICAS: each server's health and lag, for PING and STATS.
    pub servers: Option<ServersFn>,
}

/// Reports the servers of MYSQL_REPLICAS.
#[derive(Clone)]
pub struct ServersFn(pub Arc<dyn Fn() -> Vec<inlookup_core::admin::ServerHealth> + Send + Sync>);

impl fmt::Debug for ServersFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServersFn")
    }
}

/// Reports one health entry per database.
#[derive(Clone)]
pub struct HealthFn(pub Arc<dyn Fn() -> Vec<inlookup_core::admin::BackendHealth> + Send + Sync>);

impl HealthFn {
    /// The entries now.
    pub fn report(&self) -> Vec<inlookup_core::admin::BackendHealth> {
        (self.0)()
    }
}

impl fmt::Debug for HealthFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HealthFn")
    }
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Backends({} connects)", self.connects.load(Ordering::Relaxed))
    }
}

impl Backends {
    /// Backends from a factory of one's own (tests); they count no connects.
    pub fn new(factory: BackendFactory) -> Backends {
        Backends {
            factory,
            connects: Arc::new(AtomicU64::new(0)),
            domains: None,
            health: None,
            cluster: None,
            servers: None,
        }
    }

    /// MySQL backends, connecting lazily, pinging a connection idle `ping_after`.
    pub fn mysql(settings: MysqlSettings, lookups: Lookups, ping_after: Duration) -> Backends {
        let connects = Arc::new(AtomicU64::new(0));
        let domains = Some(lookups.domain_files().clone());
        let (s, l, c) = (Arc::new(settings), Arc::new(lookups), connects.clone());
        let factory: BackendFactory = Arc::new(move || {
            Box::new(MysqlBackend::new(s.clone(), l.clone(), ping_after, c.clone()))
                as Box<dyn Backend>
        });
        Backends { factory, connects, domains, health: None, cluster: None, servers: None }
    }

    /// MYSQL_REPLICAS: backends over the primary and its replicas ([`crate::replicas`]).
    fn replicas(
        cfg: &crate::Config,
        replicas: &crate::replicas::ReplicaConfig,
        lookups: Lookups,
    ) -> Backends {
        let connects = Arc::new(AtomicU64::new(0));
        let domains = Some(lookups.domain_files().clone());
        let set = match crate::replicas::ReplicaSet::start(
            cfg.mysql.clone(),
            replicas,
            Arc::new(lookups.clone()),
            cfg.ping_idle,
            connects.clone(),
        ) {
            Ok(set) => set,
            Err(e) => {
                log::error!(
                    "MYSQL_REPLICAS: no lag checker thread ({e}): the primary alone serves"
                );
                return Backends::mysql(cfg.mysql.clone(), lookups, cfg.ping_idle);
            }
        };
        let (s, h, v) = (set.clone(), set.clone(), set);
        let factory: BackendFactory = Arc::new(move || {
            Box::new(crate::replicas::ReplicaBackend::new(s.clone())) as Box<dyn Backend>
        });
        let health = HealthFn(Arc::new(move || h.health().1));
        let servers = ServersFn(Arc::new(move || v.health().0));
        Backends {
            factory,
            connects,
            domains,
            health: Some(health),
            cluster: None,
            servers: Some(servers),
        }
    }

    /// The backends of a configuration: the clustered layout's when the site is clustered
    /// ([`crate::cluster`]), else MySQL backends on host.mysql's database.
    ///
    /// # Errors
    /// A table name of the clustered layout that is not a plain identifier.
    pub fn from_config(cfg: &crate::Config, lookups: Lookups) -> Result<Backends, LookupError> {
        let Some(cluster) = cfg.cluster.clone() else {
            if let Some(r) = &cfg.replicas {
                return Ok(Backends::replicas(cfg, r, lookups));
            }
            return Ok(Backends::mysql(cfg.mysql.clone(), lookups, cfg.ping_idle));
        };
        let connects = Arc::new(AtomicU64::new(0));
        let domains = Some(lookups.domain_files().clone());
        let shared = Arc::new(crate::cluster::ClusterShared::new(
            cluster,
            Arc::new(lookups),
            cfg.ping_idle,
            connects.clone(),
        )?);
        let (s, watched) = (shared.clone(), shared.clone());
        let factory: BackendFactory = Arc::new(move || {
            Box::new(crate::cluster::ClusterBackend::new(s.clone())) as Box<dyn Backend>
        });
        let health = HealthFn(Arc::new(move || shared.health()));
        Ok(Backends {
            factory,
            connects,
            domains,
            health: Some(health),
            cluster: Some(watched),
            servers: None,
        })
    }
}

/// What kind of failure a backend had: what health and logs say, and what an operator
/// fixes (a password, a database name, a server that is down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Nothing listens at the address, or it cannot be reached.
    ConnectRefused,
    /// The server refused the user or password (or the user the database).
    AccessDenied,
    /// The database does not exist.
    UnknownDatabase,
    /// The connection broke during a query.
    ConnectionLost,
    /// The connect or a query took too long.
    Timeout,
    /// The server answered a query with an error.
    QueryFailed,
    /// The configuration cannot work (a bad table name).
    Config,
    /// The worker serving the lookup panicked.
    Panicked,
    /// Anything else.
    Other,
}

impl ErrorClass {
    /// The class of a MySQL error.
    pub fn of_mysql(e: &mysql::Error) -> ErrorClass {
        use mysql::DriverError as D;
        match e {
            mysql::Error::MySqlError(m) => match m.code {
                1044 | 1045 | 1698 => ErrorClass::AccessDenied,
                1049 => ErrorClass::UnknownDatabase,
                1053 | 1927 | 2006 | 2013 | 4031 => ErrorClass::ConnectionLost,
                _ => ErrorClass::QueryFailed,
            },
            mysql::Error::IoError(io) => ErrorClass::of_io(io),
            // The packet codec's I/O error: a read timeout shows as EAGAIN here.
            mysql::Error::CodecError(c) => {
                match std::error::Error::source(c).and_then(|s| s.downcast_ref::<std::io::Error>())
                {
                    Some(io) => ErrorClass::of_io(io),
                    None => ErrorClass::ConnectionLost,
                }
            }
            mysql::Error::DriverError(D::ConnectTimeout | D::Timeout) => ErrorClass::Timeout,
            mysql::Error::DriverError(D::CouldNotConnect(_)) => ErrorClass::ConnectRefused,
            mysql::Error::DriverError(_) => ErrorClass::ConnectionLost,
            _ => ErrorClass::Other,
        }
    }

    /// The class of an I/O error on a MySQL connection (a socket read or write timeout is
    /// EAGAIN or ETIMEDOUT).
    fn of_io(io: &std::io::Error) -> ErrorClass {
        match io.kind() {
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::NotFound
            | std::io::ErrorKind::AddrNotAvailable => ErrorClass::ConnectRefused,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorClass::Timeout,
            _ => ErrorClass::ConnectionLost,
        }
    }

    /// The class of a lookup's failure.
    pub fn of_lookup(e: &LookupError) -> ErrorClass {
        match e {
            LookupError::Mysql(m) => ErrorClass::of_mysql(m),
            LookupError::BadTableName(_) => ErrorClass::Config,
        }
    }

    /// A short name, for logs and STATS.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::ConnectRefused => "connect refused",
            ErrorClass::AccessDenied => "access denied",
            ErrorClass::UnknownDatabase => "unknown database",
            ErrorClass::ConnectionLost => "connection lost",
            ErrorClass::Timeout => "timeout",
            ErrorClass::QueryFailed => "query failed",
            ErrorClass::Config => "configuration",
            ErrorClass::Panicked => "worker panicked",
            ErrorClass::Other => "error",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a backend could not answer: its class, and a message for the log (no secrets).
#[derive(Debug)]
pub struct BackendError {
    class: ErrorClass,
    message: String,
    source: Option<LookupError>,
}

impl BackendError {
    /// An error of a class, with a message.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> BackendError {
        BackendError { class, message: message.into(), source: None }
    }

    /// A lookup's failure, with what was being done (`connect to …`), keeping its class.
    pub fn lookup(context: Option<String>, e: LookupError) -> BackendError {
        let message = match context {
            Some(c) => format!("{c}: {e}"),
            None => e.to_string(),
        };
        BackendError { class: ErrorClass::of_lookup(&e), message, source: Some(e) }
    }

    /// The worker serving the lookup panicked.
    pub fn panicked() -> BackendError {
        BackendError::new(ErrorClass::Panicked, "the worker serving this lookup panicked")
    }

    /// Its class.
    pub fn class(&self) -> ErrorClass {
        self.class
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<&str> for BackendError {
    /// An error of class [`ErrorClass::Other`].
    fn from(message: &str) -> BackendError {
        BackendError::new(ErrorClass::Other, message)
    }
}

/// How much of an answer a request takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// At most `PIPE_BUF` bytes, as IndiMail's clients read it: a longer answer is `-1`.
    Capped,
    /// All of it (ALIAS-FULL).
    Whole,
}

impl Form {
    /// The reply for a request of this form: the answer, or `-1` when it is too long for a
    /// capped request.
    pub fn fit(self, reply: &[u8]) -> &[u8] {
        if self == Form::Capped && reply.len() > PIPE_BUF {
            &ERROR_REPLY
        } else {
            reply
        }
    }
}

/// A lookup for a worker.
#[derive(Debug)]
pub struct LookupJob {
    /// The cache key; requests for the same key share the result.
    pub key: CacheKey,
    /// The classic kind asked of the backend.
    pub kind: QueryKind,
    /// What the request that started the lookup takes of the answer.
    pub form: Form,
    /// The email or domain as asked.
    pub email: String,
    /// The IP (RELAY).
    pub ip: String,
    /// The cache generation when queued: a result from before a flush is not cached.
    pub epoch: u64,
    /// The reply path of the request that started the lookup, which the worker answers
    /// itself when the lookup succeeds.
    pub reply_to: Box<[u8]>,
    /// The real domain of the address's domain, when the cache knows it.
    pub known: Option<RealDomain>,
}

/// A finished lookup, for the I/O thread.
#[derive(Debug)]
pub struct Done {
    /// The job's key.
    pub key: CacheKey,
    /// The job's kind.
    pub kind: QueryKind,
    /// The job's epoch.
    pub epoch: u64,
    /// What came of it.
    pub outcome: Outcome,
    /// The real domain the lookup had to find out, for the DOMAIN cache.
    pub learned: Option<RealDomain>,
}

/// What came of a lookup.
#[derive(Debug)]
pub enum Outcome {
    /// Answered: the whole reply (already written by the worker to the request that
    /// started the lookup, or `-1` there if it was too long for it) and whether the answer
    /// is "not found".
    Answered {
        /// The whole reply, to cache and to send to the requests that joined.
        reply: Vec<u8>,
        /// True for "not found".
        negative: bool,
    },
    /// The backend failed (or the worker panicked): nobody has been answered, the request
    /// that started the lookup included.
    Failed {
        /// Why.
        error: BackendError,
        /// The reply path of the request that started the lookup.
        starter: Box<[u8]>,
    },
}

/// The worker pool's handler for lookups: one backend per worker.
pub struct Lookup {
    backend: Box<dyn Backend>,
    /// Bumped on HUP: the backend reconnects before its next lookup.
    reset: Arc<AtomicU64>,
    seen: u64,
}

impl fmt::Debug for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lookup(reset generation {})", self.seen)
    }
}

impl Lookup {
    /// A handler around a backend; `reset` is the pool-wide HUP generation.
    pub fn new(backend: Box<dyn Backend>, reset: Arc<AtomicU64>) -> Lookup {
        let seen = reset.load(Ordering::Acquire);
        Lookup { backend, reset, seen }
    }
}

impl Handler for Lookup {
    type Job = LookupJob;
    type Output = Result<(Answer, Option<RealDomain>), BackendError>;
    type Report = Done;

    fn handle(&mut self, job: &LookupJob) -> Self::Output {
        let g = self.reset.load(Ordering::Acquire);
        if g != self.seen {
            self.backend.reset();
            self.seen = g;
        }
        self.backend.answer_knowing(job.kind, &job.email, &job.ip, job.known.as_ref())
    }

    /// A found answer goes to the request that started the lookup from the worker itself,
    /// right after the I/O thread has it to cache (so by the time that client can ask
    /// again, the cache holds the answer); a failure goes back for the I/O thread to
    /// answer everyone waiting (serve-stale, or the error reply).
    fn finish(job: LookupJob, output: Option<Self::Output>) -> Finished<Done> {
        let LookupJob { key, kind, form, epoch, reply_to, .. } = job;
        let mut learned = None;
        let (outcome, reply) = match output {
            Some(Ok((answer, found))) => {
                learned = found;
                let bytes = answer.encode_whole();
                // A refresh ahead (no reply path) answers nobody itself.
                let reply = (!reply_to.is_empty())
                    .then(|| Reply { to: reply_to, bytes: form.fit(&bytes).to_vec() });
                (Outcome::Answered { reply: bytes, negative: answer.is_negative() }, reply)
            }
            Some(Err(error)) => (Outcome::Failed { error, starter: reply_to }, None),
            None => (Outcome::Failed { error: BackendError::panicked(), starter: reply_to }, None),
        };
        Finished { report: Some(Done { key, kind, epoch, outcome, learned }), reply }
    }
}

/// A persistent MySQL connection answering with the shared [`Lookups`].
pub struct MysqlBackend {
    /// Where to connect.
    settings: Arc<MysqlSettings>,
    /// The SQL.
    lookups: Arc<Lookups>,
    /// The open connection, if any, and when it was last used.
    conn: Option<(mysql::Conn, Instant)>,
    /// A connection idle longer than this is pinged before reuse.
    ping_after: Duration,
    /// Connections opened by every worker (shown in STATS).
    connects: Arc<AtomicU64>,
}

impl fmt::Debug for MysqlBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MysqlBackend({})", self.settings.describe())
    }
}

impl MysqlBackend {
    /// A backend that connects lazily, on its first query.
    pub fn new(
        settings: Arc<MysqlSettings>,
        lookups: Arc<Lookups>,
        ping_after: Duration,
        connects: Arc<AtomicU64>,
    ) -> MysqlBackend {
        MysqlBackend { settings, lookups, conn: None, ping_after, connects }
    }

    /// The open connection, checked with a ping when it sat idle; a new one otherwise.
    fn connection(&mut self) -> Result<&mut mysql::Conn, BackendError> {
        let stale = match &mut self.conn {
            Some((c, used)) if used.elapsed() >= self.ping_after => c.ping().is_err(),
            Some(_) => false,
            None => true,
        };
        let open = match self.conn.take() {
            Some(open) if !stale => open,
            _ => {
                let c = mysql::Conn::new(self.settings.opts()).map_err(|e| {
                    let context = format!("connect to {}", self.settings.describe());
                    BackendError::lookup(Some(context), LookupError::Mysql(e))
                })?;
                self.connects.fetch_add(1, Ordering::Relaxed);
                log::debug!("connected to {}", self.settings.describe());
                (c, Instant::now())
            }
        };
        let (c, used) = self.conn.insert(open);
        *used = Instant::now();
        Ok(c)
    }
}

impl Backend for MysqlBackend {
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
        let lookups = self.lookups.clone();
        match lookups.answer_knowing(self.connection()?, kind, email, ip, known) {
            Err(e) if e.is_connection_lost() => {
                self.conn = None;
                // A timeout is not retried: the server is frozen or overloaded, and the
                // read timeout is already capped at the client's own (timeoutread).
                if ErrorClass::of_lookup(&e) == ErrorClass::Timeout {
                    return Err(BackendError::lookup(None, e));
                }
                // Once more on a fresh connection: every lookup is a read, so repeating it
                // is safe.
                log::info!("MySQL connection lost ({e}); reconnecting");
                lookups.answer_knowing(self.connection()?, kind, email, ip, known).map_err(|e| {
                    if e.is_connection_lost() {
                        self.conn = None;
                    }
                    BackendError::lookup(None, e)
                })
            }
            r => r.map_err(|e| BackendError::lookup(None, e)),
        }
    }

    fn reset(&mut self) {
        self.conn = None;
    }

    fn check(&mut self) -> Result<(), BackendError> {
        self.connection().map(|_| ())
    }

    fn recent_logins(&mut self, secs: u64, max: usize) -> Result<Vec<Answer>, BackendError> {
        let lookups = self.lookups.clone();
        let conn = self.connection()?;
        lookups.recent_logins(conn, secs, max).map_err(|e| BackendError::lookup(None, e))
    }

    fn mail_store(&mut self, user: &str) -> Result<Option<String>, BackendError> {
        let lookups = self.lookups.clone();
        let conn = self.connection()?;
        lookups.mail_store(conn, user).map_err(|e| {
            if e.is_connection_lost() {
                self.conn = None;
            }
            BackendError::lookup(None, e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_errors_keep_their_class() {
        let server = |code| {
            mysql::Error::MySqlError(mysql::MySqlError {
                state: "28000".into(),
                message: "m".into(),
                code,
            })
        };
        assert_eq!(ErrorClass::of_mysql(&server(1045)), ErrorClass::AccessDenied);
        assert_eq!(ErrorClass::of_mysql(&server(1049)), ErrorClass::UnknownDatabase);
        assert_eq!(ErrorClass::of_mysql(&server(2013)), ErrorClass::ConnectionLost);
        assert_eq!(ErrorClass::of_mysql(&server(1146)), ErrorClass::QueryFailed);
        let io = |k| mysql::Error::IoError(std::io::Error::from(k));
        assert_eq!(
            ErrorClass::of_mysql(&io(std::io::ErrorKind::ConnectionRefused)),
            ErrorClass::ConnectRefused
        );
        assert_eq!(ErrorClass::of_mysql(&io(std::io::ErrorKind::TimedOut)), ErrorClass::Timeout);
        let e = BackendError::lookup(Some("connect to x".into()), LookupError::Mysql(server(1045)));
        assert_eq!(e.class(), ErrorClass::AccessDenied);
        assert!(e.to_string().starts_with("connect to x: "), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(
            ErrorClass::of_lookup(&LookupError::BadTableName("x y".into())),
            ErrorClass::Config
        );
    }
}
