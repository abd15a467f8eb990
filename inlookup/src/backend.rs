//! What answers a cache miss: a [`Backend`] owned by one worker thread. The real one keeps
//! a persistent MySQL connection; tests plug in backends built to fail or to stall.

use inlookup_core::{Answer, LookupError, Lookups, MysqlSettings, QueryKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One worker's way of answering classic queries.
pub trait Backend: Send {
    /// Answers one query; the error is a message for the log (no secrets).
    fn answer(&mut self, kind: QueryKind, email: &str, ip: &str) -> Result<Answer, String>;
    /// Drops connections so the next query opens fresh ones (HUP).
    fn reset(&mut self);
}

/// Makes one backend per worker.
pub type BackendFactory = Arc<dyn Fn() -> Box<dyn Backend> + Send + Sync>;

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

impl std::fmt::Debug for MysqlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

    /// A factory of these, for the pool.
    pub fn factory(
        settings: MysqlSettings,
        lookups: Lookups,
        ping_after: Duration,
        connects: Arc<AtomicU64>,
    ) -> BackendFactory {
        let (s, l) = (Arc::new(settings), Arc::new(lookups));
        Arc::new(move || {
            Box::new(MysqlBackend::new(s.clone(), l.clone(), ping_after, connects.clone()))
                as Box<dyn Backend>
        })
    }

    /// The open connection, checked with a ping when it sat idle; a new one otherwise.
    fn connection(&mut self) -> Result<&mut mysql::Conn, String> {
        let stale = match &mut self.conn {
            Some((c, used)) if used.elapsed() >= self.ping_after => c.ping().is_err(),
            Some(_) => false,
            None => true,
        };
        if stale {
            self.conn = None;
            let c = mysql::Conn::new(self.settings.opts())
                .map_err(|e| format!("connect to {}: {e}", self.settings.describe()))?;
            self.connects.fetch_add(1, Ordering::Relaxed);
            log::debug!("connected to {}", self.settings.describe());
            self.conn = Some((c, Instant::now()));
        }
        let (c, used) = self.conn.as_mut().ok_or("no connection")?;
        *used = Instant::now();
        Ok(c)
    }
}

impl Backend for MysqlBackend {
    fn answer(&mut self, kind: QueryKind, email: &str, ip: &str) -> Result<Answer, String> {
        // One retry on a fresh connection when the old one turns out dead: every lookup is
        // a read, so repeating it is safe.
        for attempt in 0..2 {
            let lookups = self.lookups.clone();
            let conn = self.connection()?;
            match lookups.answer(conn, kind, email, ip) {
                Ok(a) => return Ok(a),
                Err(e) if e.is_connection_lost() => {
                    self.conn = None;
                    if attempt == 1 {
                        return Err(e.to_string());
                    }
                    log::info!("MySQL connection lost ({e}); reconnecting");
                }
                Err(e @ LookupError::Mysql(_)) | Err(e @ LookupError::BadTableName(_)) => {
                    return Err(e.to_string())
                }
            }
        }
        Err("unreachable".into())
    }

    fn reset(&mut self) {
        self.conn = None;
    }
}
