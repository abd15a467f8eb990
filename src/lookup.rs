//! The SQL behind each classic kind, over a MySQL connection the caller owns.
//!
//! Values always travel as bound parameters (`?`). Table names come from the operator's
//! configuration (IndiMail's MYSQL_TABLE and friends), are checked to be plain identifiers
//! and are quoted; no request byte ever becomes SQL text.

use crate::address::Address;
use crate::answer::{Answer, MailHost, Passwd, UserStatus, BOUNCE_MAIL};
use crate::control::{self, env_var};
use crate::domains::{resolve, DomainSources, DomainWatch, Listed, Resolution};
use crate::kind::QueryKind;
use crate::limits::{Limits, LIMIT_TYPE_DOMAIN};
use mysql::prelude::Queryable;
use std::fmt;
use std::sync::Arc;

/// The tables the lookups read, by IndiMail's names unless configured otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    /// Active users (MYSQL_TABLE, `indimail`).
    pub users: String,
    /// Inactive users (MYSQL_INACTIVE_TABLE, `indibak`).
    pub inactive: String,
    /// POP-before-SMTP (RELAY_TABLE, `relay`).
    pub relay: String,
    /// Aliases (`valias`).
    pub valias: String,
    /// Alias domains (`aliasdomain`).
    pub aliasdomain: String,
    /// User → mail store (`hostcntrl`).
    pub hostcntrl: String,
    /// Domain limits (`vlimits`).
    pub vlimits: String,
    /// Who logged in when (`lastauth`), for the `-c` preload.
    pub lastauth: String,
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            users: "indimail".into(),
            inactive: "indibak".into(),
            relay: "relay".into(),
            valias: "valias".into(),
            aliasdomain: "aliasdomain".into(),
            hostcntrl: "hostcntrl".into(),
            vlimits: "vlimits".into(),
            lastauth: "lastauth".into(),
        }
    }
}

/// How the lookups behave beyond the SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupConfig {
    /// Table names.
    pub tables: Tables,
    /// The domain for a bare user name (DEFAULT_DOMAIN or control/defaultdomain).
    pub default_domain: Option<String>,
    /// How long a relay row counts, in minutes (RELAY_CLEAR_MINUTES; 60, as IndiMail's
    /// inlookup without the setting).
    pub relay_clear_minutes: u32,
    /// The port in HOST replies when `smtp_port` has none (SMTP's 25; QMTP's 209 with
    /// IndiMail's ROUTES=qmtp; MDA_PORT over both).
    pub mda_port: String,
    /// The local host's IP, the mail store of a user of a domain that is not distributed
    /// (no `hostcntrl` row), as IndiMail's `findmdahost` answers: `control/hostip`, else the
    /// host name's IPv4 address ([`crate::control::local_ip`]). `None`: not known.
    pub local_ip: Option<String>,
    /// The mail store for users with no `hostcntrl` row (DEFAULT_MDAHOST; unset: HOST
    /// answers "not found" for them, as a non-clustered IndiMail does).
    pub default_mdahost: Option<String>,
    /// The files that say which domain a domain really is (REAL_DOMAINS, ALIAS_DOMAINS,
    /// ASSIGNDIR's cdb, rcpthosts), read before `aliasdomain`.
    pub domains: DomainSources,
}

impl Default for LookupConfig {
    fn default() -> Self {
        LookupConfig {
            tables: Tables::default(),
            default_domain: None,
            relay_clear_minutes: 60,
            mda_port: "25".into(),
            default_mdahost: None,
            local_ip: None,
            domains: DomainSources::default(),
        }
    }
}

impl LookupConfig {
    /// The configuration from IndiMail's variables (MYSQL_TABLE, MYSQL_INACTIVE_TABLE,
    /// RELAY_TABLE, RELAY_CLEAR_MINUTES, DEFAULT_DOMAIN, REAL_DOMAINS, ALIAS_DOMAINS,
    /// ASSIGNDIR, CONTROLDIR, ROUTES) and inlookup's (DEFAULT_MDAHOST, MDA_PORT), with
    /// `default_domain` already resolved by the caller.
    pub fn from_env(default_domain: Option<String>) -> LookupConfig {
        Self::from_lookup(default_domain, &env_var)
    }

    /// As [`LookupConfig::from_env`], reading variables through `get`.
    pub fn from_lookup(
        default_domain: Option<String>,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> LookupConfig {
        let mut c = LookupConfig { default_domain, ..LookupConfig::default() };
        let set = |dst: &mut String, name: &str| {
            if let Some(v) = get(name).filter(|v| !v.is_empty()) {
                *dst = v;
            }
        };
        set(&mut c.tables.users, "MYSQL_TABLE");
        set(&mut c.tables.inactive, "MYSQL_INACTIVE_TABLE");
        set(&mut c.tables.relay, "RELAY_TABLE");
        // IndiMail's ROUTES=qmtp makes QMTP's port (209) the default, as its findmdahost.
        if get("ROUTES").is_some_and(|r| r.trim().eq_ignore_ascii_case("qmtp")) {
            c.mda_port = "209".into();
        }
        set(&mut c.mda_port, "MDA_PORT");
        if let Some(m) = get("RELAY_CLEAR_MINUTES").and_then(|v| v.trim().parse().ok()) {
            c.relay_clear_minutes = m;
        }
        c.default_mdahost = get("DEFAULT_MDAHOST").filter(|v| !v.is_empty());
        let controldir = control::controldir(get("CONTROLDIR").as_deref());
        c.domains = DomainSources::from_lookup(&controldir, get);
        c
    }
}

/// Why a lookup failed (not found is an answer, not an error).
#[derive(Debug)]
pub enum LookupError {
    /// A configured table name is not a plain identifier.
    BadTableName(String),
    /// MySQL failed.
    Mysql(mysql::Error),
}

impl LookupError {
    /// True when the connection itself is broken (reconnect and retry), not the query.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            LookupError::Mysql(e) => is_connection_lost(e),
            LookupError::BadTableName(_) => false,
        }
    }
}

/// True when a MySQL error means the connection is gone: I/O, driver and codec errors,
/// and the server's "gone away", "lost", "shutdown" and "killed" codes.
pub fn is_connection_lost(e: &mysql::Error) -> bool {
    match e {
        mysql::Error::IoError(_) | mysql::Error::DriverError(_) | mysql::Error::CodecError(_) => {
            true
        }
        mysql::Error::MySqlError(m) => matches!(m.code, 1053 | 1927 | 2006 | 2013 | 4031),
        _ => false,
    }
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::BadTableName(t) => write!(f, "bad table name {t:?}"),
            // The server's own words, not the driver's debug form (`MySqlError { … }`).
            LookupError::Mysql(mysql::Error::MySqlError(m)) => {
                write!(f, "MySQL error {} ({}): {}", m.code, m.state, m.message)
            }
            LookupError::Mysql(e) => write!(f, "mysql: {e}"),
        }
    }
}

impl std::error::Error for LookupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LookupError::Mysql(e) => Some(e),
            LookupError::BadTableName(_) => None,
        }
    }
}

impl From<mysql::Error> for LookupError {
    fn from(e: mysql::Error) -> Self {
        LookupError::Mysql(e)
    }
}

/// The statements, built once from the table names.
#[derive(Debug, Clone)]
struct Sql {
    real_domain: String,
    user_gid: String,
    inactive_exists: String,
    alias_exists: String,
    relay: String,
    pwd_active: String,
    pwd_inactive: String,
    host: String,
    aliases: String,
    limits: String,
    recent_logins: String,
}

pub(crate) fn ident(name: &str) -> Result<String, LookupError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(format!("`{name}`"))
    } else {
        Err(LookupError::BadTableName(name.to_string()))
    }
}

const PW_COLUMNS: &str = "pw_name, pw_passwd, scram, pw_uid, pw_gid, pw_gecos, pw_dir, pw_shell";
const LIMIT_COLUMNS: &str = "domain_expiry, passwd_expiry, maxpopaccounts, maxaliases, \
    maxforwards, maxautoresponders, maxmailinglists, diskquota, maxmsgcount, defaultquota, \
    defaultmaxmsgcount, disable_pop, disable_imap, disable_dialup, disable_passwordchanging, \
    disable_webmail, disable_relay, disable_smtp, perm_account, perm_alias, perm_forward, \
    perm_autoresponder, perm_maillist, perm_quota, perm_defaultquota";

type PwRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Answers classic queries over a connection. Cheap to clone; share one per process.
#[derive(Debug, Clone)]
pub struct Lookups {
    config: LookupConfig,
    sql: Sql,
    /// The domain files, loaded once and shared by every clone (the daemon's I/O thread
    /// reloads them when they change).
    files: Arc<DomainWatch>,
}

impl Lookups {
    /// Builds the statements.
    ///
    /// # Errors
    /// [`LookupError::BadTableName`] when a configured table name is not `[A-Za-z0-9_]+`.
    pub fn new(config: LookupConfig) -> Result<Lookups, LookupError> {
        let t = &config.tables;
        let (users, inactive, relay) = (ident(&t.users)?, ident(&t.inactive)?, ident(&t.relay)?);
        let (valias, aliasdomain) = (ident(&t.valias)?, ident(&t.aliasdomain)?);
        let (hostcntrl, vlimits) = (ident(&t.hostcntrl)?, ident(&t.vlimits)?);
        let lastauth = ident(&t.lastauth)?;
        let sql = Sql {
            real_domain: format!("SELECT domain FROM {aliasdomain} WHERE alias = ? LIMIT 1"),
            user_gid: format!(
                "SELECT pw_gid FROM {users} WHERE pw_name = ? AND pw_domain = ? LIMIT 1"
            ),
            inactive_exists: format!(
                "SELECT 1 FROM {inactive} WHERE pw_name = ? AND pw_domain = ? LIMIT 1"
            ),
            alias_exists: format!("SELECT 1 FROM {valias} WHERE alias = ? AND domain = ? LIMIT 1"),
            relay: format!(
                "SELECT 1 FROM {relay} WHERE ipaddr = ? AND email = ? \
                 AND timestamp > UNIX_TIMESTAMP() - ? LIMIT 1"
            ),
            pwd_active: format!(
                "SELECT {PW_COLUMNS} FROM {users} WHERE pw_name = ? AND pw_domain = ? LIMIT 1"
            ),
            pwd_inactive: format!(
                "SELECT {PW_COLUMNS} FROM {inactive} WHERE pw_name = ? AND pw_domain = ? LIMIT 1"
            ),
            host: format!(
                "SELECT host FROM {hostcntrl} WHERE pw_name = ? AND pw_domain = ? LIMIT 1"
            ),
            aliases: format!(
                "SELECT valias_line FROM {valias} WHERE alias = ? AND domain = ? \
                 ORDER BY valias_line"
            ),
            limits: format!("SELECT {LIMIT_COLUMNS} FROM {vlimits} WHERE domain = ? LIMIT 1"),
            recent_logins: format!(
                "SELECT {PW_COLUMNS}, pw_domain FROM {users} JOIN \
                 (SELECT user, domain, MAX(timestamp) AS at FROM {lastauth} \
                  WHERE service IN ('imap', 'pop3', 'webm') \
                  AND timestamp >= NOW() - INTERVAL ? SECOND GROUP BY user, domain) AS l \
                 ON pw_name = l.user AND pw_domain = l.domain ORDER BY l.at DESC LIMIT ?"
            ),
        };
        let files = Arc::new(DomainWatch::new(config.domains.clone()));
        Ok(Lookups { config, sql, files })
    }

    /// The configuration in use.
    pub fn config(&self) -> &LookupConfig {
        &self.config
    }

    /// The domain files the lookups read, for whoever watches them
    /// ([`DomainWatch::check`], [`DomainWatch::reload`]).
    pub fn domain_files(&self) -> &Arc<DomainWatch> {
        &self.files
    }

    /// Answers one classic query. `email` is the request's email (or domain for DOMAIN and
    /// LIMIT), `ip` its IP (RELAY only).
    ///
    /// # Errors
    /// [`LookupError::Mysql`] when MySQL fails; see [`LookupError::is_connection_lost`].
    pub fn answer<C: Queryable>(
        &self,
        conn: &mut C,
        kind: QueryKind,
        email: &str,
        ip: &str,
    ) -> Result<Answer, LookupError> {
        self.answer_knowing(conn, kind, email, ip, None).map(|(a, _)| a)
    }

    /// As [`Lookups::answer`], with the real domain of the address's domain when the caller
    /// knows it already (the daemon, from its cached DOMAIN answer): then a USER, PWD, HOST,
    /// ALIAS or LIMIT lookup is one statement, not two. Returns, beside the answer, the real
    /// domain it had to look up, for the caller to remember.
    ///
    /// # Errors
    /// As [`Lookups::answer`].
    pub fn answer_knowing<C: Queryable>(
        &self,
        conn: &mut C,
        kind: QueryKind,
        email: &str,
        ip: &str,
        known: Option<&RealDomain>,
    ) -> Result<(Answer, Option<RealDomain>), LookupError> {
        let addr = Address::parse(email, self.config.default_domain.as_deref());
        let mut r = Resolver { known, learned: None };
        let answer = match kind {
            QueryKind::User => self.user(conn, addr, &mut r),
            QueryKind::Relay => self.relay(conn, email, addr, ip, &mut r),
            QueryKind::Pwd => self.pwd(conn, email, addr, &mut r),
            QueryKind::Host => self.host(conn, addr, &mut r),
            QueryKind::Alias => self.alias(conn, addr, &mut r),
            QueryKind::Limit => self.limit(conn, email, addr, &mut r),
            QueryKind::Domain => self.domain(conn, email),
            // The daemon answers its own kinds itself; a direct caller gets "not found".
            _ => Ok(Answer::User { status: UserStatus::Absent }),
        }?;
        Ok((answer, r.learned))
    }

    /// The real domain for an alias domain, or `domain` itself, in IndiMail's order
    /// ([`crate::domains`]): the domain files, then what the caller knows, else
    /// `aliasdomain` (remembered in `r`), then rcpthosts. `None`: a domain of the assign
    /// cdb whose directory is missing, which every kind answers as "not found".
    fn real_domain<C: Queryable>(
        &self,
        c: &mut C,
        domain: &str,
        r: &mut Resolver<'_>,
    ) -> Result<Option<String>, LookupError> {
        let files = self.files.current();
        // The files first: they are in memory, and what the caller remembers from an
        // answer (a cached DOMAIN echo) must not hide a missing domain directory.
        match files.listed(domain) {
            Listed::Real(real) => return Ok(Some(real)),
            Listed::Missing => return Ok(None),
            Listed::Open => {}
        }
        if let Some(k) = r.known.filter(|k| k.asked == domain) {
            return Ok(Some(k.real.clone()));
        }
        let resolved = resolve(&files, domain, || {
            c.exec_first::<String, _, _>(&self.sql.real_domain, (domain,))
        })?;
        match resolved {
            Resolution::Real(real, _) => {
                r.learned = Some(RealDomain { asked: domain.to_string(), real: real.clone() });
                Ok(Some(real))
            }
            Resolution::NotFound => Ok(None),
        }
    }

    fn user<C: Queryable>(
        &self,
        c: &mut C,
        a: Option<Address>,
        r: &mut Resolver<'_>,
    ) -> Result<Answer, LookupError> {
        let absent = Answer::User { status: UserStatus::Absent };
        let Some(a) = a else { return Ok(absent) };
        let Some(domain) = self.real_domain(c, &a.domain, r)? else { return Ok(absent) };
        let params = (a.user.as_str(), domain.as_str());
        let gid: Option<Option<i64>> = c.exec_first(&self.sql.user_gid, params)?;
        let status = if let Some(gid) = gid {
            if (gid.unwrap_or(0) as u32) & BOUNCE_MAIL != 0 {
                UserStatus::OverQuota
            } else {
                UserStatus::Active
            }
        } else if c.exec_first::<i64, _, _>(&self.sql.inactive_exists, params)?.is_some() {
            UserStatus::Inactive
        } else if c.exec_first::<i64, _, _>(&self.sql.alias_exists, params)?.is_some() {
            UserStatus::Alias
        } else {
            UserStatus::Absent
        };
        Ok(Answer::User { status })
    }

    /// RELAY: the `relay` row for `user@` the real domain, as IndiMail's RelayInLookup
    /// asks (the email as given when it is no address); "not found" (a missing domain
    /// directory) is 0.
    fn relay<C: Queryable>(
        &self,
        c: &mut C,
        email: &str,
        a: Option<Address>,
        ip: &str,
        r: &mut Resolver<'_>,
    ) -> Result<Answer, LookupError> {
        let email = match a {
            Some(a) => match self.real_domain(c, &a.domain, r)? {
                Some(real) => format!("{}@{real}", a.user),
                None => return Ok(Answer::Relay { allowed: false }),
            },
            None => email.trim().to_string(),
        };
        let secs = i64::from(self.config.relay_clear_minutes) * 60;
        let hit: Option<i64> = c.exec_first(&self.sql.relay, (ip.trim(), email.as_str(), secs))?;
        Ok(Answer::Relay { allowed: hit.is_some() })
    }

    fn pwd<C: Queryable>(
        &self,
        c: &mut C,
        email: &str,
        a: Option<Address>,
        r: &mut Resolver<'_>,
    ) -> Result<Answer, LookupError> {
        let Some(a) = a else {
            return Ok(Answer::Pwd { email: email.trim().to_string(), passwd: None });
        };
        let Some(domain) = self.real_domain(c, &a.domain, r)? else {
            return Ok(Answer::Pwd { email: format!("{}@{}", a.user, a.domain), passwd: None });
        };
        let params = (a.user.as_str(), domain.as_str());
        let mut inactive = false;
        let mut row: Option<PwRow> = c.exec_first(&self.sql.pwd_active, params)?;
        if row.is_none() {
            row = c.exec_first(&self.sql.pwd_inactive, params)?;
            inactive = row.is_some();
        }
        let email = format!("{}@{}", a.user, a.domain);
        let Some(row) = row else {
            return Ok(Answer::Pwd { email, passwd: None });
        };
        Ok(pwd_answer(row, a, inactive))
    }

    /// The PWD answers of the users who logged in by IMAP, POP3 or webmail during the last
    /// `secs` seconds (IndiMail's `lastauth`), the most recent first, at most `max`: what
    /// `inlookup -c SECS` puts in the cache before the first query.
    ///
    /// # Errors
    /// MySQL failed (a missing `lastauth` table among them).
    pub fn recent_logins<C: Queryable>(
        &self,
        c: &mut C,
        secs: u64,
        max: usize,
    ) -> Result<Vec<Answer>, LookupError> {
        let rows: Vec<mysql::Row> = c.exec(&self.sql.recent_logins, (secs, max as u64))?;
        let mut answers = Vec::with_capacity(rows.len());
        for mut r in rows {
            // NULLs are None (take::<Option<_>> converts them; take::<String> would panic).
            let mut text = |i: usize| r.take::<Option<String>, _>(i).flatten();
            let (name, crypt, scram) = (text(0), text(1), text(2));
            let (gecos, dir, shell, domain) = (text(5), text(6), text(7), text(8));
            let mut int = |i: usize| r.take::<Option<i64>, _>(i).flatten();
            let row: PwRow = (name, crypt, scram, int(3), int(4), gecos, dir, shell);
            let (Some(user), Some(domain)) = (row.0.clone(), domain) else { continue };
            let a = Address { user: user.to_lowercase(), domain: domain.to_lowercase() };
            answers.push(pwd_answer(row, a, false));
        }
        Ok(answers)
    }

    /// The user's mail store from `hostcntrl` alone (the host of a distributed domain's
    /// user), without HOST's fallback to this host for a domain that is not distributed:
    /// what the IMAP sessions route by.
    ///
    /// # Errors
    /// MySQL failed.
    pub fn mail_store<C: Queryable>(
        &self,
        c: &mut C,
        email: &str,
    ) -> Result<Option<String>, LookupError> {
        let Some(a) = Address::parse(email, self.config.default_domain.as_deref()) else {
            return Ok(None);
        };
        let Some(domain) = self.real_domain(c, &a.domain, &mut Resolver::default())? else {
            return Ok(None);
        };
        let host: Option<String> =
            c.exec_first(&self.sql.host, (a.user.as_str(), domain.as_str()))?;
        Ok(host.map(|h| h.trim().to_string()).filter(|h| !h.is_empty()))
    }

    fn host<C: Queryable>(
        &self,
        c: &mut C,
        a: Option<Address>,
        r: &mut Resolver<'_>,
    ) -> Result<Answer, LookupError> {
        let Some(a) = a else { return Ok(Answer::Host { host: None }) };
        let Some(domain) = self.real_domain(c, &a.domain, r)? else {
            return Ok(Answer::Host { host: None });
        };
        let params = (a.user.as_str(), domain.as_str());
        let mut host: Option<String> = c.exec_first(&self.sql.host, params)?;
        // Not distributed: the user's mail store is this host (DEFAULT_MDAHOST, else the
        // local IP), if the user exists here, active or not (IndiMail's sql_getpw).
        let local = self.config.default_mdahost.as_ref().or(self.config.local_ip.as_ref());
        if let (None, Some(local)) = (&host, local) {
            let here = c.exec_first::<Option<i64>, _, _>(&self.sql.user_gid, params)?.is_some()
                || c.exec_first::<i64, _, _>(&self.sql.inactive_exists, params)?.is_some();
            if here {
                host = Some(local.clone());
            }
        }
        Ok(Answer::Host {
            host: host.map(|h| {
                let h = h.trim().to_string();
                let (host, port) = match h.rsplit_once(':') {
                    Some((host, port)) if port.parse::<u16>().is_ok() => {
                        (host.to_string(), port.to_string())
                    }
                    _ => (h, self.config.mda_port.clone()),
                };
                // The domain as asked, as IndiMail's findmdahost answers (SQL used the real
                // one).
                MailHost { domain: a.domain.clone(), host, port }
            }),
        })
    }

    fn alias<C: Queryable>(
        &self,
        c: &mut C,
        a: Option<Address>,
        r: &mut Resolver<'_>,
    ) -> Result<Answer, LookupError> {
        let Some(a) = a else { return Ok(Answer::Alias { lines: Vec::new() }) };
        let Some(domain) = self.real_domain(c, &a.domain, r)? else {
            return Ok(Answer::Alias { lines: Vec::new() });
        };
        let lines: Vec<Option<String>> =
            c.exec(&self.sql.aliases, (a.user.as_str(), domain.as_str()))?;
        Ok(Answer::Alias { lines: lines.into_iter().flatten().collect() })
    }

    fn limit<C: Queryable>(
        &self,
        c: &mut C,
        email: &str,
        a: Option<Address>,
        r: &mut Resolver<'_>,
    ) -> Result<Answer, LookupError> {
        let is_user = email.contains('@');
        let domain = limit_domain(email, a.as_ref());
        if domain.is_empty() {
            return Ok(Answer::Limit { limits: None });
        }
        let Some(domain) = self.real_domain(c, &domain, r)? else {
            return Ok(Answer::Limit { limits: None });
        };
        let row: Option<mysql::Row> = c.exec_first(&self.sql.limits, (domain.as_str(),))?;
        let limits = match row {
            Some(r) => Some(limits_from_row(r)),
            // A user falls back to the defaults; a bare domain with no row is "not found",
            // which IndiMail's client reports as an error.
            None if is_user => Some(Limits::default()),
            None => None,
        };
        Ok(Answer::Limit { limits })
    }

    /// DOMAIN: the real domain in IndiMail's order, or the input echoed (IndiMail echoes
    /// whatever `get_real_domain` leaves NULL, a missing domain directory included).
    fn domain<C: Queryable>(&self, c: &mut C, input: &str) -> Result<Answer, LookupError> {
        let asked = input.trim().trim_end_matches(' ');
        let folded = asked.to_lowercase();
        let resolved = resolve(&self.files.current(), &folded, || {
            c.exec_first::<String, _, _>(&self.sql.real_domain, (folded.as_str(),))
        })?;
        Ok(match resolved {
            Resolution::Real(real, _) if real != folded => {
                Answer::Domain { domain: real, was_alias: true }
            }
            _ => Answer::Domain { domain: asked.to_string(), was_alias: false },
        })
    }
}

/// The domain whose real domain a lookup of this kind resolves first (the address's, or
/// LIMIT's domain), as [`Lookups::answer_knowing`] does: what a caller's cached DOMAIN answer
/// must be for to save the lookup its first statement.
///
/// ```
/// use inlookup_core::{lookup::domain_of, QueryKind};
/// assert_eq!(domain_of(QueryKind::Pwd, "Bob@Example.ORG", None).as_deref(), Some("example.org"));
/// assert_eq!(domain_of(QueryKind::User, "bob", Some("example.com")).as_deref(), Some("example.com"));
/// assert_eq!(domain_of(QueryKind::Limit, "example.net", None).as_deref(), Some("example.net"));
/// assert_eq!(domain_of(QueryKind::Relay, "bob@example.org", None).as_deref(), Some("example.org"));
/// assert_eq!(domain_of(QueryKind::Domain, "example.org", None), None);
/// ```
pub fn domain_of(kind: QueryKind, email: &str, default_domain: Option<&str>) -> Option<String> {
    let addr = Address::parse(email, default_domain);
    match kind {
        QueryKind::User
        | QueryKind::Pwd
        | QueryKind::Host
        | QueryKind::Alias
        | QueryKind::Relay => addr.map(|a| a.domain),
        QueryKind::Limit => Some(limit_domain(email, addr.as_ref())).filter(|d| !d.is_empty()),
        _ => None,
    }
}

/// A PWD answer from a user's row (`inactive`: the row is from the inactive table).
fn pwd_answer(row: PwRow, a: Address, inactive: bool) -> Answer {
    let (name, crypt, scram, uid, gid, gecos, dir, shell) = row;
    let email = format!("{}@{}", a.user, a.domain);
    let crypt = crypt.unwrap_or_default();
    let passwd = match scram {
        Some(s) => format!("{s},{crypt}"),
        None => crypt,
    };
    let passwd = Passwd {
        name: name.map(|n| n.to_lowercase()).unwrap_or(a.user),
        domain: a.domain,
        passwd,
        uid: uid.unwrap_or(0) as u32,
        gid: gid.unwrap_or(0) as u32,
        gecos: gecos.unwrap_or_default(),
        dir: dir.unwrap_or_default(),
        shell: shell.unwrap_or_default(),
        inactive,
    };
    Answer::Pwd { email, passwd: Some(passwd) }
}

/// LIMIT's domain: an address's, or the input itself as a domain.
fn limit_domain(email: &str, a: Option<&Address>) -> String {
    match a {
        Some(a) if email.contains('@') => a.domain.clone(),
        _ => email.trim().trim_end_matches(' ').to_lowercase(),
    }
}

/// A domain and its real domain (itself, unless it is an alias domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealDomain {
    /// The domain as the address has it (folded).
    pub asked: String,
    /// Its real domain.
    pub real: String,
}

/// What one lookup knows of the real domain before asking MySQL, and what it learned.
#[derive(Debug, Default)]
struct Resolver<'a> {
    known: Option<&'a RealDomain>,
    learned: Option<RealDomain>,
}

fn limits_from_row(r: mysql::Row) -> Limits {
    let i = |n: usize| r.get_opt::<i64, _>(n).and_then(Result::ok).unwrap_or(-1);
    let u = |n: usize| {
        r.get_opt::<i64, _>(n)
            .and_then(Result::ok)
            .map(|v| v as u64)
            .or_else(|| r.get_opt::<u64, _>(n).and_then(Result::ok))
            .unwrap_or(0)
    };
    let s = |n: usize| r.get_opt::<i64, _>(n).and_then(Result::ok).unwrap_or(0) as i16;
    Limits {
        domain_expiry: i(0),
        passwd_expiry: i(1),
        maxpopaccounts: i(2),
        maxaliases: i(3),
        maxforwards: i(4),
        maxautoresponders: i(5),
        maxmailinglists: i(6),
        diskquota: u(7),
        maxmsgcount: u(8),
        defaultquota: u(9),
        defaultmaxmsgcount: u(10),
        disable_pop: s(11),
        disable_imap: s(12),
        disable_dialup: s(13),
        disable_passwordchanging: s(14),
        disable_webmail: s(15),
        disable_relay: s(16),
        disable_smtp: s(17),
        perm_account: s(18),
        perm_alias: s(19),
        perm_forward: s(20),
        perm_autoresponder: s(21),
        perm_maillist: s(22),
        // The table has no per-list columns; IndiMail's vget_limits leaves them 0.
        perm_maillist_users: 0,
        perm_maillist_moderators: 0,
        perm_quota: s(23),
        perm_defaultquota: s(24),
        limit_type: LIMIT_TYPE_DOMAIN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_must_be_identifiers() {
        let bad = ["indimail; DROP TABLE x", "a`b", "", "x y", &"a".repeat(65)];
        for name in bad {
            let mut c = LookupConfig::default();
            c.tables.users = name.to_string();
            assert!(matches!(Lookups::new(c), Err(LookupError::BadTableName(_))), "{name}");
        }
        assert!(Lookups::new(LookupConfig::default()).is_ok());
    }

    #[test]
    fn routes_qmtp_makes_209_the_default_port_and_mda_port_wins() {
        let with = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> =
                vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let get = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            LookupConfig::from_lookup(None, &get).mda_port
        };
        assert_eq!(with(&[]), "25");
        assert_eq!(with(&[("ROUTES", "smtp")]), "25");
        assert_eq!(with(&[("ROUTES", "qmtp")]), "209");
        assert_eq!(with(&[("ROUTES", "qmtp"), ("MDA_PORT", "2525")]), "2525");
    }

    #[test]
    fn statements_bind_every_value() {
        let l = Lookups::new(LookupConfig::default()).unwrap();
        let s = &l.sql;
        for stmt in
            [&s.real_domain, &s.user_gid, &s.relay, &s.pwd_active, &s.host, &s.aliases, &s.limits]
        {
            assert!(!stmt.contains('"') && !stmt.contains('\''), "{stmt}");
            assert!(stmt.contains('?'), "{stmt}");
        }
    }
}
