//! Choosing how to ask: the daemon over its FIFO, or MySQL directly, as IndiMail's callers
//! choose with QUERY_CACHE; and, if asked for, falling back to MySQL when the daemon is down.

use crate::direct::Direct;
use crate::error::Error;
use crate::{Client, Lookup};
use inlookup_core::admin::{PingReply, StatsReport};
use inlookup_core::control::env_var;
use inlookup_core::{Answer, QueryKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How a [`Querier`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The daemon when QUERY_CACHE is defined, MySQL otherwise (see [`Mode::from_query_cache`]).
    Auto,
    /// Always the daemon, over its FIFO.
    Daemon,
    /// Always MySQL, with the daemon's own SQL.
    Direct,
}

impl Mode {
    /// IndiMail's rule: QUERY_CACHE *defined* means "use inlookup", whatever its value. An
    /// envdir file holding an empty line defines it as empty, which counts; an empty file
    /// unsets it, which does not.
    ///
    /// ```
    /// use inquery::Mode;
    /// assert_eq!(Mode::from_query_cache(Some("")), Mode::Daemon);
    /// assert_eq!(Mode::from_query_cache(Some("1")), Mode::Daemon);
    /// assert_eq!(Mode::from_query_cache(None), Mode::Direct);
    /// ```
    pub fn from_query_cache(value: Option<&str>) -> Mode {
        if value.is_some() {
            Mode::Daemon
        } else {
            Mode::Direct
        }
    }

    /// [`Mode::Auto`] decided from the environment; the others as they are.
    pub fn resolve(self) -> Mode {
        match self {
            Mode::Auto => Mode::from_query_cache(env_var("QUERY_CACHE").as_deref()),
            m => m,
        }
    }
}

/// True when INQUERY_FALLBACK asks for the fallback (`1`, `yes`, `true` or `on`).
pub fn fallback_from_env() -> bool {
    env_var("INQUERY_FALLBACK").is_some_and(|v| {
        matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "yes" | "true" | "on")
    })
}

/// Asks the daemon or MySQL, the same typed calls ([`Lookup`]) either way.
///
/// ```no_run
/// use inquery::{Lookup, Mode, Querier, UserStatus};
/// // QUERY_CACHE set: the daemon; unset: MySQL. Fall back to MySQL if the daemon is down.
/// let q = Querier::from_env().with_fallback(true);
/// if q.user_status("alice@example.com")? == UserStatus::Active {
///     println!("deliver ({:?} mode, {} fallbacks)", q.mode(), q.fallbacks());
/// }
/// # Ok::<(), inquery::Error>(())
/// ```
#[derive(Debug)]
pub struct Querier {
    /// [`Mode::Daemon`] or [`Mode::Direct`], already resolved.
    mode: Mode,
    /// The FIFO client (daemon mode).
    client: Client,
    /// MySQL (direct mode, and the fallback); it connects only when first used.
    direct: Arc<Direct>,
    /// Answer from MySQL when the daemon is not running (daemon mode only).
    fallback: bool,
    /// How many queries the fallback answered.
    fallbacks: AtomicU64,
}

impl Querier {
    /// Mode [`Mode::Auto`], the FIFO client and MySQL settings from the environment, and
    /// the fallback on when INQUERY_FALLBACK is `1` (off by default).
    pub fn from_env() -> Querier {
        Querier::new(Mode::Auto).with_fallback(fallback_from_env())
    }

    /// The given mode, everything else from the environment; no fallback.
    pub fn new(mode: Mode) -> Querier {
        Querier::with_parts(mode, Client::from_env(), Arc::new(Direct::from_env()))
    }

    /// The given mode, client and MySQL access (share one [`Direct`] between queriers to
    /// share its connections); no fallback.
    pub fn with_parts(mode: Mode, client: Client, direct: Arc<Direct>) -> Querier {
        Querier {
            mode: mode.resolve(),
            client,
            direct,
            fallback: false,
            fallbacks: AtomicU64::new(0),
        }
    }

    /// Turns the fallback on or off: in daemon mode, a query the daemon cannot take
    /// ([`Error::NotRunning`]: no FIFO, or nobody reading it) is answered from MySQL instead.
    /// Timeouts and error replies are not retried: the daemon is up, and MySQL is likely
    /// the trouble.
    pub fn with_fallback(mut self, on: bool) -> Querier {
        self.fallback = on;
        self
    }

    /// [`Mode::Daemon`] or [`Mode::Direct`].
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The FIFO client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The MySQL access.
    pub fn direct(&self) -> &Direct {
        &self.direct
    }

    /// How many queries the fallback has answered.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    fn daemon_only(&self, what: &str) -> Result<&Client, Error> {
        match self.mode {
            Mode::Direct => {
                Err(Error::BadArgument(format!("{what} needs the daemon (direct mode)")))
            }
            _ => Ok(&self.client),
        }
    }

    /// PING the daemon. See [`Client::ping`].
    ///
    /// ```no_run
    /// let p = inquery::Querier::new(inquery::Mode::Daemon).ping()?;
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::BadArgument`] in direct mode; otherwise as [`Client::ping`].
    pub fn ping(&self) -> Result<PingReply, Error> {
        self.daemon_only("ping")?.ping()
    }

    /// The daemon's STATS. See [`Client::stats`].
    ///
    /// ```no_run
    /// let s = inquery::Querier::new(inquery::Mode::Daemon).stats()?;
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::BadArgument`] in direct mode; otherwise as [`Client::stats`].
    pub fn stats(&self) -> Result<StatsReport, Error> {
        self.daemon_only("stats")?.stats()
    }

    /// FLUSH the daemon's cache. See [`Client::flush`].
    ///
    /// ```no_run
    /// let n = inquery::Querier::new(inquery::Mode::Daemon).flush(None, None)?;
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::BadArgument`] in direct mode; otherwise as [`Client::flush`].
    pub fn flush(&self, kind: Option<QueryKind>, key: Option<&str>) -> Result<u64, Error> {
        self.daemon_only("flush")?.flush(kind, key)
    }
}

impl Lookup for Querier {
    /// Asks a classic kind, of the daemon or MySQL as the mode says.
    ///
    /// ```no_run
    /// use inquery::{Lookup, Querier, QueryKind};
    /// let a = Querier::from_env().ask(QueryKind::Pwd, "alice@example.com", "")?;
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// In daemon mode, as [`Client::ask`]; in direct mode (or falling back), as
    /// [`Direct::ask`].
    fn ask(&self, kind: QueryKind, email: &str, ip: &str) -> Result<Answer, Error> {
        match self.mode {
            Mode::Direct => self.direct.ask(kind, email, ip),
            _ => match self.client.ask(kind, email, ip) {
                Err(Error::NotRunning(_)) if self.fallback => {
                    self.fallbacks.fetch_add(1, Ordering::Relaxed);
                    self.direct.ask(kind, email, ip)
                }
                other => other,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlookup_core::{LookupConfig, MysqlSettings};

    #[test]
    fn query_cache_defined_even_empty_means_the_daemon() {
        assert_eq!(Mode::from_query_cache(Some("")), Mode::Daemon);
        assert_eq!(
            Mode::from_query_cache(Some("0")),
            Mode::Daemon,
            "defined is enough, as IndiMail"
        );
        assert_eq!(Mode::from_query_cache(None), Mode::Direct);
        assert_eq!(Mode::Daemon.resolve(), Mode::Daemon);
        assert_eq!(Mode::Direct.resolve(), Mode::Direct);
    }

    #[test]
    fn direct_mode_refuses_the_daemons_own_kinds() {
        let d = Arc::new(Direct::new(MysqlSettings::default(), LookupConfig::default()));
        let q = Querier::with_parts(Mode::Direct, Client::for_fifo("/nonexistent/fifo"), d);
        assert!(matches!(q.ping(), Err(Error::BadArgument(_))));
        assert!(matches!(q.stats(), Err(Error::BadArgument(_))));
        assert!(matches!(q.flush(None, None), Err(Error::BadArgument(_))));
    }

    #[test]
    fn without_fallback_a_missing_daemon_is_an_error_and_nothing_is_counted() {
        let d = Arc::new(Direct::new(MysqlSettings::default(), LookupConfig::default()));
        let mut c = Client::for_fifo("/nonexistent/inquery-test/fifo");
        c.tmpdir = std::env::temp_dir();
        let q = Querier::with_parts(Mode::Daemon, c, d.clone());
        assert!(matches!(q.user_status("a@x"), Err(Error::NotRunning(_))));
        assert_eq!((q.fallbacks(), d.connects()), (0, 0));
    }
}
