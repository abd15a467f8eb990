//! Direct mode: the same questions answered straight from MySQL, without the daemon, as
//! IndiMail's callers do when QUERY_CACHE is not set.
//!
//! The SQL is the root package's [`Lookups`], the daemon's own, and every answer goes through
//! the same reply codec the daemon's replies do ([`Answer::encode_whole`] then
//! [`Answer::decode`]), so for the same data direct mode and the daemon give identical
//! answers (an alias list longer than a classic reply whole, as the client gets it through
//! ALIAS-FULL).

use crate::error::Error;
use crate::Lookup;
use inlookup_core::control;
use inlookup_core::wire::{encode_request, reply_int, HEADER_LEN};
use inlookup_core::{Answer, LookupConfig, LookupError, Lookups, MysqlSettings, QueryKind};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Idle connections kept for reuse; more are closed after their query.
const MAX_IDLE: usize = 4;

/// Answers classic queries over MySQL connections of its own. Share one per process (it is
/// `Sync`): connections are opened on first use, kept, and reopened once when lost.
pub struct Direct {
    /// Where MySQL is and as whom (MYSQL_* variables and `host.mysql`), read once.
    settings: MysqlSettings,
    /// Table names, DEFAULT_DOMAIN, RELAY_CLEAR_MINUTES: what the daemon would use.
    config: LookupConfig,
    /// The statements, built on first use so that a bad table name fails the call (with
    /// the reason) rather than the construction.
    lookups: OnceLock<Lookups>,
    /// Connections between calls; a call takes one or opens one, and puts it back.
    idle: Mutex<Vec<mysql::Conn>>,
    /// Connections opened so far, reconnects included (for tests and diagnostics).
    connects: AtomicU64,
}

impl std::fmt::Debug for Direct {
    /// Where and as whom, never the password (a `mysql::Conn` would print its options).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().map_or(0, |v| v.len());
        f.debug_struct("Direct")
            .field("mysql", &self.settings)
            .field("idle", &idle)
            .field("connects", &self.connects())
            .finish_non_exhaustive()
    }
}

impl Direct {
    /// Direct mode with explicit settings.
    ///
    /// ```no_run
    /// use inquery::{direct::Direct, Lookup};
    /// use inlookup_core::{LookupConfig, MysqlSettings};
    /// let s = MysqlSettings { host: "127.0.0.1".into(), ..MysqlSettings::default() };
    /// let d = Direct::new(s, LookupConfig::default());
    /// let status = d.user_status("alice@example.com")?;
    /// # Ok::<(), inquery::Error>(())
    /// ```
    pub fn new(settings: MysqlSettings, config: LookupConfig) -> Direct {
        Direct {
            settings,
            config,
            lookups: OnceLock::new(),
            idle: Mutex::new(Vec::new()),
            connects: AtomicU64::new(0),
        }
    }

    /// Direct mode configured as the daemon would be from the same environment:
    /// [`MysqlSettings::from_env`] with CONTROLDIR's `host.mysql`, and
    /// [`LookupConfig::from_env`] with DEFAULT_DOMAIN (or `control/defaultdomain`).
    /// Nothing is connected yet.
    ///
    /// ```no_run
    /// use inquery::Lookup;
    /// let d = inquery::direct::Direct::from_env();
    /// let pw = d.passwd("alice@example.com")?;
    /// # Ok::<(), inquery::Error>(())
    /// ```
    pub fn from_env() -> Direct {
        let dir = control::controldir(control::env_var("CONTROLDIR").as_deref());
        Direct::from_controldir(&dir)
    }

    /// As [`Direct::from_env`], with the control directory given.
    pub fn from_controldir(dir: &Path) -> Direct {
        let config = LookupConfig {
            local_ip: control::local_ip(dir),
            domains: inlookup_core::domains::DomainSources::from_lookup(dir, &control::env_var),
            ..LookupConfig::from_env(control::default_domain(dir))
        };
        Direct::new(MysqlSettings::from_env(dir), config)
    }

    /// The connection settings in use (`{:?}` never shows the password).
    pub fn settings(&self) -> &MysqlSettings {
        &self.settings
    }

    /// MySQL connections opened so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    fn lookups(&self) -> Result<&Lookups, Error> {
        if let Some(l) = self.lookups.get() {
            return Ok(l);
        }
        let l = Lookups::new(self.config.clone()).map_err(Error::Mysql)?;
        Ok(self.lookups.get_or_init(|| l))
    }

    fn connect(&self) -> Result<mysql::Conn, Error> {
        self.connects.fetch_add(1, Ordering::Relaxed);
        mysql::Conn::new(self.settings.opts()).map_err(|e| Error::Mysql(LookupError::Mysql(e)))
    }

    fn put_back(&self, conn: mysql::Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// Runs `f` on a connection: an idle one, or a new one. A kept connection that turns
    /// out to be lost (MySQL restarted, idle timeout) is replaced once and `f` retried.
    fn with_conn<T>(
        &self,
        f: impl Fn(&mut mysql::Conn) -> Result<T, LookupError>,
    ) -> Result<T, Error> {
        let kept = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let (mut conn, reused) = match kept {
            Some(c) => (c, true),
            None => (self.connect()?, false),
        };
        match f(&mut conn) {
            Ok(v) => {
                self.put_back(conn);
                Ok(v)
            }
            Err(e) if reused && e.is_connection_lost() => {
                drop(conn);
                let mut conn = self.connect()?;
                let v = f(&mut conn).map_err(Error::Mysql)?;
                self.put_back(conn);
                Ok(v)
            }
            Err(e) => {
                if !e.is_connection_lost() {
                    self.put_back(conn);
                }
                Err(Error::Mysql(e))
            }
        }
    }
}

impl Lookup for Direct {
    /// Asks a classic kind from MySQL, as [`crate::Client::ask`] does the daemon.
    ///
    /// ```no_run
    /// use inquery::{direct::Direct, Answer, Lookup, QueryKind};
    /// let a = Direct::from_env().ask(QueryKind::Domain, "example.org", "")?;
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::BadArgument`] for what the daemon would never be sent (not a classic kind,
    /// RELAY without an IP, a NUL byte, too long); [`Error::Mysql`] when MySQL fails or a
    /// configured table name is not an identifier. An answer longer than a classic reply
    /// can carry comes whole, as [`crate::Client::ask`] gets it (through ALIAS-FULL).
    fn ask(&self, kind: QueryKind, email: &str, ip: &str) -> Result<Answer, Error> {
        check_request(kind, email, ip)?;
        let lookups = self.lookups()?;
        let answer = self.with_conn(|c| lookups.answer(c, kind, email, ip))?;
        // Through the reply codec, exactly as the daemon's answer reaches its client.
        let reply = answer.encode_whole();
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&reply[..HEADER_LEN]);
        Ok(Answer::decode(kind, reply_int(header), &reply[HEADER_LEN..], email)?)
    }
}

/// Refuses what the FIFO client would refuse before sending, so both modes fail alike.
fn check_request(kind: QueryKind, email: &str, ip: &str) -> Result<(), Error> {
    crate::lookup::check_classic(kind, ip)?;
    // The shortest reply path possible: what does not fit with it never fits.
    encode_request(kind.byte(), email.as_bytes(), b"/", ip.as_bytes())
        .map(drop)
        .map_err(|e| Error::BadArgument(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_the_daemon_would_never_get_are_refused_before_mysql() {
        // No MySQL anywhere near: each of these must fail before connecting.
        let d = Direct::new(
            MysqlSettings { host: "192.0.2.1".into(), ..MysqlSettings::default() },
            LookupConfig::default(),
        );
        for (kind, email, ip) in [
            (QueryKind::Ping, "", ""),
            (QueryKind::Relay, "a@x", " "),
            (QueryKind::User, "a\0b@x", ""),
            (QueryKind::Pwd, &"x".repeat(5000), ""),
        ] {
            assert!(matches!(d.ask(kind, email, ip), Err(Error::BadArgument(_))), "{kind} {ip:?}");
        }
        assert_eq!(d.connects(), 0);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let s = MysqlSettings { password: "hunter2".into(), ..MysqlSettings::default() };
        let d = Direct::new(s, LookupConfig::default());
        assert!(!format!("{d:?}").contains("hunter2"), "{d:?}");
    }

    #[test]
    fn a_bad_table_name_fails_the_call_not_the_construction() {
        let mut config = LookupConfig::default();
        config.tables.users = "x; DROP TABLE y".into();
        let d = Direct::new(MysqlSettings::default(), config);
        let e = d.user_status("a@x").unwrap_err();
        assert!(e.to_string().contains("bad table name"), "{e}");
        assert_eq!(d.connects(), 0);
    }
}
