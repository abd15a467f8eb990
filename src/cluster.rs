//! IndiMail's clustered layout, read-only: the central control database (`host.cntrl` or
//! CNTRL_HOST), the mail store databases of `mcdinfo` (MCDFILE) with the automatic entries
//! for the domains of `users/assign`, and which database each lookup goes to.
//!
//! Everything here is pure (text in, values out) apart from [`ClusterSql`], which runs the
//! central database's statements over a connection the caller owns:
//!
//! - [`parse_mcdinfo`]: IndiMail's `mcdinfo` format (`#` comments, the key ends at the first
//!   space and is matched by prefix, `domain NAME [0|1]` before a `server` record, exactly 7
//!   keys per record, `use_ssl` mandatory).
//! - [`auto_entries`]: the entries IndiMail adds for the virtual, non-alias domains of
//!   `users/assign` that `mcdinfo` does not name (all on the local database, `host.mysql`).
//! - [`Layout`]: the databases and the entries, with [`Layout::route`], the routing decision
//!   per kind, and [`Layout::store_for`], IndiMail's choice of a mail store.
//! - [`Backoff`]: IndiMail's MAX_FAIL_ATTEMPTS / MYSQL_RETRY_INTERVAL per database.
//!
//! The daemon never writes `mcdinfo` nor the `dbinfo` table (IndiMail's inlookup rewrites the
//! file when the table is newer, which needs write access to the control directory and the
//! master database): it reads the file only, and re-reads it when it changes.

use crate::kind::QueryKind;
use crate::lookup::{ident, LookupError, Tables};
use crate::mysqlconf::MysqlSettings;
use mysql::prelude::Queryable;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// IndiMail's MAX_FAIL_ATTEMPTS default.
pub const DEFAULT_MAX_FAIL_ATTEMPTS: u32 = 5;
/// IndiMail's MYSQL_RETRY_INTERVAL default.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// Whether a domain's users are spread over several mail stores (mcdinfo's `domain NAME
/// [0|1]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// `domain NAME` or `domain NAME 0`: every user on the entry's mail store.
    Local,
    /// `domain NAME 1`: `hostcntrl` on the central database says which store holds a user.
    Distributed,
    /// No `domain` line before the record (IndiMail's `unknown domain`, flag -1).
    Unknown,
}

/// One mail store database of `mcdinfo`, or an automatic entry.
#[derive(Clone, PartialEq, Eq)]
pub struct McdEntry {
    /// The domain the entry serves (`unknown domain` without a `domain` line).
    pub domain: String,
    /// The `domain` line's flag.
    pub spread: Spread,
    /// The MySQL server (`server`).
    pub server: String,
    /// The mail store's host, as `host_table.ipaddr` must spell it (`mdahost`).
    pub mdahost: String,
    /// The MySQL port (`port`; 0 = the default, 3306).
    pub port: u16,
    /// `use_ssl`: TLS to MySQL asked for.
    pub use_ssl: bool,
    /// `database`.
    pub database: String,
    /// `user`.
    pub user: String,
    /// `pass`. Never logged.
    pub password: String,
    /// Made from `users/assign`, not read from mcdinfo (IndiMail's `isLocal`).
    pub auto: bool,
}

impl fmt::Debug for McdEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "McdEntry({} {:?} mdahost {} mysql://{}@{}:{}/{}{}{})",
            self.domain,
            self.spread,
            self.mdahost,
            self.user,
            self.server,
            self.port,
            self.database,
            if self.use_ssl { " ssl" } else { "" },
            if self.auto { " auto" } else { "" }
        )
    }
}

/// Why `mcdinfo` could not be loaded (IndiMail loads nothing then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McdError {
    /// A line has a key and no value (line number, from 1).
    NoValue(usize),
    /// A key that no record has, inside a record.
    UnknownKey(usize, String),
    /// A `server` line before the record before it had its 7 keys.
    Incomplete(usize),
    /// The file ends inside a record.
    IncompleteAtEnd,
    /// A record without `use_ssl` (or with another key twice): it has 7 keys but not the
    /// right ones.
    MissingKey(usize, &'static str),
    /// `port` is not a number.
    BadPort(usize),
}

impl fmt::Display for McdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            McdError::NoValue(n) => write!(f, "line {n} has no value"),
            McdError::UnknownKey(n, k) => write!(f, "line {n}: unknown key {k:?}"),
            McdError::Incomplete(n) => write!(f, "the record before line {n} is incomplete"),
            McdError::IncompleteAtEnd => f.write_str("the last record is incomplete"),
            McdError::MissingKey(n, k) => write!(f, "the record ending at line {n} has no {k}"),
            McdError::BadPort(n) => write!(f, "line {n}: port is not a number"),
        }
    }
}

impl std::error::Error for McdError {}

/// The keys of a record, in IndiMail's order of matching (by prefix).
const RECORD_KEYS: [&str; 7] = ["server", "mdahost", "port", "use_ssl", "database", "user", "pass"];

/// Parses `mcdinfo` text by IndiMail's rules.
///
/// ```
/// use inlookup_core::cluster::{parse_mcdinfo, Spread};
/// let text = "# stores\ndomain dist.example 1\nserver 10.0.0.1\nmdahost 10.0.0.1\n\
///             port 3306\nuse_ssl 0\ndatabase indimail\nuser indimail\npass secret\n";
/// let e = parse_mcdinfo(text).unwrap();
/// assert_eq!((e[0].domain.as_str(), e[0].spread), ("dist.example", Spread::Distributed));
/// // Without use_ssl the record has six keys: IndiMail refuses the file.
/// assert!(parse_mcdinfo(&text.replace("use_ssl 0\n", "")).is_err());
/// ```
///
/// # Errors
/// Any [`McdError`]: the whole file is refused, as IndiMail refuses it.
pub fn parse_mcdinfo(text: &str) -> Result<Vec<McdEntry>, McdError> {
    let mut out = Vec::new();
    // The `domain` line for the record being built; reset when a record completes.
    let mut domain: Option<(String, Spread)> = None;
    // The record being built: its entry and the keys seen (IndiMail counts them).
    let mut building: Option<(McdEntry, Vec<&'static str>)> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = raw.split('#').next().unwrap_or("");
        let line = line.trim_start();
        if line.is_empty() {
            continue;
        }
        let Some((key, rest)) = line.split_once(' ') else {
            return Err(McdError::NoValue(n));
        };
        let value = rest.trim_start();
        if value.is_empty() {
            return Err(McdError::NoValue(n));
        }
        if key.starts_with("domain") {
            let (name, flag) = match value.split_once(' ') {
                Some((name, flag)) => (name, flag.trim_start()),
                None => (value, ""),
            };
            // IndiMail's scan_int: leading digits (and sign), 0 otherwise.
            let spread = if int_prefix(flag) == 1 { Spread::Distributed } else { Spread::Local };
            domain = Some((name.to_string(), spread));
            continue;
        }
        if ["count", "table", "time"].iter().any(|k| key.starts_with(k)) {
            continue;
        }
        if key.starts_with("server") {
            if building.is_some() {
                return Err(McdError::Incomplete(n));
            }
            let entry = McdEntry {
                domain: String::new(),
                spread: Spread::Unknown,
                server: value.to_string(),
                mdahost: String::new(),
                port: 0,
                use_ssl: false,
                database: String::new(),
                user: String::new(),
                password: String::new(),
                auto: false,
            };
            building = Some((entry, vec!["server"]));
            continue;
        }
        // A record's key before any `server` line: IndiMail has no record to put it in and
        // skips it.
        let Some((entry, seen)) = building.as_mut() else { continue };
        let Some(k) = RECORD_KEYS[1..].iter().find(|k| key.starts_with(*k)) else {
            return Err(McdError::UnknownKey(n, key.to_string()));
        };
        match *k {
            "mdahost" => entry.mdahost = value.to_string(),
            "port" => {
                let p = int_prefix(value);
                entry.port = u16::try_from(p.max(0)).map_err(|_| McdError::BadPort(n))?;
            }
            "use_ssl" => entry.use_ssl = int_prefix(value) != 0,
            "database" => entry.database = value.to_string(),
            "user" => entry.user = value.to_string(),
            _ => entry.password = value.to_string(),
        }
        seen.push(k);
        if seen.len() == RECORD_KEYS.len() {
            if let Some(missing) = RECORD_KEYS.iter().find(|k| !seen.contains(k)) {
                return Err(McdError::MissingKey(n, missing));
            }
            let (mut entry, _) = building.take().expect("a record is being built");
            let (name, spread) =
                domain.take().unwrap_or_else(|| ("unknown domain".into(), Spread::Unknown));
            entry.domain = name;
            entry.spread = spread;
            out.push(entry);
        }
    }
    if building.is_some() {
        return Err(McdError::IncompleteAtEnd);
    }
    Ok(out)
}

/// C's `scan_int` as IndiMail uses it: an optional sign and leading digits; 0 otherwise.
fn int_prefix(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    let v: i64 = digits[..end].parse().unwrap_or(0);
    if neg {
        -v
    } else {
        v
    }
}

/// The local database as automatic entries name it: host.mysql's server and credentials,
/// MYSQL_DATABASE, and the local IP as mdahost.
#[derive(Debug, Clone)]
pub struct LocalStore {
    /// host.mysql (MYSQL_HOST and friends).
    pub settings: MysqlSettings,
    /// `control/hostip`, else the host name's IPv4 (`localhost` when unknown, as IndiMail).
    pub mdahost: String,
}

/// IndiMail's automatic entries: one per virtual (`+` line), non-alias domain of the
/// `users/assign` text (its second `:` field) that `existing` has no entry for, all on the
/// local database; if there is none, one for `default_domain`. `is_alias` says whether a
/// domain is an alias domain (its directory a symlink).
///
/// ```
/// use inlookup_core::cluster::{auto_entries, LocalStore};
/// let local = LocalStore { settings: Default::default(), mdahost: "192.0.2.1".into() };
/// let assign = "+a.example-:a.example:555:555:/d/a.example:-::\n+b.example-:b.example:555:555:/d/b.example:-::\n.\n";
/// let e = auto_entries(assign, &[], &local, &|d| d == "b.example", Some("a.example"));
/// assert_eq!(e.len(), 1);
/// assert_eq!((e[0].domain.as_str(), e[0].mdahost.as_str(), e[0].auto), ("a.example", "192.0.2.1", true));
/// ```
pub fn auto_entries(
    assign: &str,
    existing: &[McdEntry],
    local: &LocalStore,
    is_alias: &dyn Fn(&str) -> bool,
    default_domain: Option<&str>,
) -> Vec<McdEntry> {
    let make = |domain: &str| McdEntry {
        domain: domain.to_string(),
        spread: Spread::Local,
        server: local.settings.host.clone(),
        mdahost: local.mdahost.clone(),
        port: local.settings.port,
        use_ssl: false,
        database: local.settings.database.clone(),
        user: local.settings.user.clone(),
        password: local.settings.password.clone(),
        auto: true,
    };
    let mut out: Vec<McdEntry> = Vec::new();
    for line in assign.lines() {
        if !line.starts_with('+') {
            continue;
        }
        let Some(domain) = line.split(':').nth(1).filter(|d| !d.is_empty()) else { continue };
        if is_alias(domain) || existing.iter().chain(out.iter()).any(|e| e.domain == domain) {
            continue;
        }
        out.push(make(domain));
    }
    if out.is_empty() {
        if let Some(d) = default_domain {
            out.push(make(d));
        }
    }
    out
}

/// The settings for an mcdinfo entry's database, with the connection's timeouts and
/// keepalive taken from `base` (host.mysql's).
pub fn entry_settings(e: &McdEntry, base: &MysqlSettings) -> MysqlSettings {
    MysqlSettings {
        host: e.server.clone(),
        port: if e.port == 0 { 3306 } else { e.port },
        socket: None,
        user: e.user.clone(),
        password: e.password.clone(),
        database: e.database.clone(),
        tls: e.use_ssl,
        ..base.clone()
    }
}

/// A database of the layout.
#[derive(Debug, Clone)]
pub struct Db {
    /// Where and as whom.
    pub settings: MysqlSettings,
    /// TLS asked for (mcdinfo's `use_ssl`, host.cntrl's `ssl`): `settings.tls` says the
    /// same, and the connection is TLS (MYSQL_TLS_CA, MYSQL_TLS_VERIFY apply).
    pub tls: bool,
}

impl Db {
    /// The key that decides whether two entries share a connection (IndiMail shares a
    /// handle when server, port, database, user and password match). Holds the password:
    /// never log it.
    pub fn share_key(&self) -> String {
        let s = &self.settings;
        format!(
            "{}\0{}\0{}\0{}\0{}\0{}\0{}",
            s.host,
            s.port,
            s.socket.as_deref().unwrap_or(""),
            s.user,
            s.password,
            s.database,
            self.tls
        )
    }
}

/// Which database a lookup goes to first, as IndiMail's would (its reference §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The address's domain is distributed: `hostcntrl` and `host_table` on the central
    /// database name the mail store, whose entry then answers (HOST stops at the central
    /// database).
    Distributed,
    /// Not distributed: the first entry of the real domain answers; none is "not found".
    FirstEntry,
    /// LIMIT for a bare domain: the local database (host.mysql), as IndiMail's
    /// VlimitInLookup asks it.
    LocalDb,
    /// DOMAIN: the domain files, then the central `aliasdomain` (for a domain that is not
    /// distributed), then rcpthosts; no mail store.
    DomainOnly,
    /// No address to route (no `@` and no default domain): answered "not found" with no
    /// SQL.
    Nowhere,
}

/// The clustered layout: the central database, the local one and the mail stores.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The databases, each once (entries sharing server, port, database, user and password
    /// share one); [`Layout::central`] and [`Layout::local`] index into it.
    pub dbs: Vec<Db>,
    /// The central database (host.cntrl / CNTRL_HOST).
    pub central: usize,
    /// The local database (host.mysql).
    pub local: usize,
    /// mcdinfo's entries, then the automatic ones, each with the index of its database.
    pub entries: Vec<(McdEntry, usize)>,
}

impl Layout {
    /// A layout from the central and local settings and the entries (mcdinfo's, then the
    /// automatic ones); `central_tls` is host.cntrl's `ssl` field.
    pub fn new(
        central: MysqlSettings,
        central_tls: bool,
        local: MysqlSettings,
        entries: Vec<McdEntry>,
    ) -> Layout {
        let mut l = Layout { dbs: Vec::new(), central: 0, local: 0, entries: Vec::new() };
        let central = MysqlSettings { tls: central_tls, ..central };
        l.central = l.add(Db { settings: central, tls: central_tls });
        let base = local.clone();
        let local_tls = local.tls;
        l.local = l.add(Db { settings: local, tls: local_tls });
        for e in entries {
            let settings = entry_settings(&e, &base);
            let i = l.add(Db { settings, tls: e.use_ssl });
            l.entries.push((e, i));
        }
        l
    }

    fn add(&mut self, db: Db) -> usize {
        let key = db.share_key();
        if let Some(i) = self.dbs.iter().position(|d| d.share_key() == key) {
            return i;
        }
        self.dbs.push(db);
        self.dbs.len() - 1
    }

    /// IndiMail's `is_distributed_domain`: the flag of the first entry for `domain`
    /// (compared exactly); not distributed when there is none.
    pub fn is_distributed(&self, domain: &str) -> bool {
        self.entries
            .iter()
            .find(|(e, _)| e.domain == domain)
            .is_some_and(|(e, _)| e.spread == Spread::Distributed)
    }

    /// The routing decision for a lookup of `kind`: `address` says whether the request
    /// names a user (`u@d`, or a bare user with a default domain), `distributed` whether
    /// its real domain is distributed.
    ///
    /// ```
    /// use inlookup_core::cluster::{Layout, Route};
    /// use inlookup_core::QueryKind;
    /// assert_eq!(Layout::route(QueryKind::Pwd, true, true), Route::Distributed);
    /// assert_eq!(Layout::route(QueryKind::Pwd, true, false), Route::FirstEntry);
    /// assert_eq!(Layout::route(QueryKind::Limit, false, true), Route::LocalDb);
    /// assert_eq!(Layout::route(QueryKind::Domain, false, false), Route::DomainOnly);
    /// ```
    pub fn route(kind: QueryKind, address: bool, distributed: bool) -> Route {
        match kind {
            QueryKind::Domain => Route::DomainOnly,
            QueryKind::Limit if !address => Route::LocalDb,
            _ if !address => Route::Nowhere,
            _ if distributed => Route::Distributed,
            _ => Route::FirstEntry,
        }
    }

    /// IndiMail's choice of a mail store (sqlOpen_user): the first entry whose domain is
    /// `real` and, when `mdahost` is given (a distributed domain's `host_table.ipaddr`),
    /// whose mdahost is spelled exactly so.
    pub fn store_for(&self, real: &str, mdahost: Option<&str>) -> Option<&(McdEntry, usize)> {
        self.entries
            .iter()
            .find(|(e, _)| e.domain == real && mdahost.is_none_or(|m| e.mdahost == m))
    }

    /// Every entry of `real` (USER's alias check when the first entry lacks the user).
    pub fn entries_of<'a>(&'a self, real: &'a str) -> impl Iterator<Item = &'a (McdEntry, usize)> {
        self.entries.iter().filter(move |(e, _)| e.domain == real)
    }
}

/// IndiMail's per-database back-off (dbload.c connect_db): after more than `max_fail`
/// failed connects in a row, a connect within `interval` of the last attempt fails
/// without being tried. A success resets the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backoff {
    /// Failed connects in a row.
    pub failed: u32,
    /// When the last connect was tried.
    pub last_attempt: Option<Instant>,
}

impl Backoff {
    /// Whether a connect may be tried at `now`; `Err` with how long to wait otherwise.
    ///
    /// ```
    /// use inlookup_core::cluster::Backoff;
    /// use std::time::{Duration, Instant};
    /// let (t0, five) = (Instant::now(), Duration::from_secs(5));
    /// let mut b = Backoff::default();
    /// for _ in 0..6 { assert!(b.may_try(t0, 5, five).is_ok()); b.failed_at(t0); }
    /// assert!(b.may_try(t0 + Duration::from_secs(1), 5, five).is_err());
    /// assert!(b.may_try(t0 + five, 5, five).is_ok());
    /// ```
    ///
    /// # Errors
    /// The time left before the next attempt.
    pub fn may_try(&self, now: Instant, max_fail: u32, interval: Duration) -> Result<(), Duration> {
        match self.last_attempt {
            Some(at) if self.failed > max_fail => {
                let since = now.saturating_duration_since(at);
                if since < interval {
                    Err(interval - since)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// A connect failed at `now`.
    pub fn failed_at(&mut self, now: Instant) {
        self.failed = self.failed.saturating_add(1);
        self.last_attempt = Some(now);
    }

    /// A connect succeeded at `now`.
    pub fn succeeded_at(&mut self, now: Instant) {
        self.failed = 0;
        self.last_attempt = Some(now);
    }
}

/// The central database's tables (IndiMail's names; CNTRL_TABLE renames `hostcntrl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTables {
    /// User → mail store host id (CNTRL_TABLE, `hostcntrl`).
    pub hostcntrl: String,
    /// Host id → IP (`host_table`).
    pub host_table: String,
    /// SMTP port per mail store and domain (`smtp_port`).
    pub smtp_port: String,
    /// Alias domains (`aliasdomain`).
    pub aliasdomain: String,
}

impl Default for ClusterTables {
    fn default() -> Self {
        ClusterTables {
            hostcntrl: "hostcntrl".into(),
            host_table: "host_table".into(),
            smtp_port: "smtp_port".into(),
            aliasdomain: "aliasdomain".into(),
        }
    }
}

/// The statements of the clustered layout, with bound parameters only.
#[derive(Debug, Clone)]
pub struct ClusterSql {
    placement: String,
    host_ip: String,
    smtp_port: String,
    alias_domain: String,
    user_here: String,
    inactive_here: String,
    alias_here: String,
}

impl ClusterSql {
    /// Builds the statements from the central tables and the mail stores' (`users`,
    /// `inactive`, `valias`).
    ///
    /// # Errors
    /// [`LookupError::BadTableName`] for a name that is not `[A-Za-z0-9_]+`.
    pub fn new(central: &ClusterTables, store: &Tables) -> Result<ClusterSql, LookupError> {
        let (hostcntrl, host_table) = (ident(&central.hostcntrl)?, ident(&central.host_table)?);
        let (smtp_port, aliasdomain) = (ident(&central.smtp_port)?, ident(&central.aliasdomain)?);
        let (users, inactive, valias) =
            (ident(&store.users)?, ident(&store.inactive)?, ident(&store.valias)?);
        Ok(ClusterSql {
            placement: format!(
                "SELECT host FROM {hostcntrl} WHERE pw_name = ? AND pw_domain = ? LIMIT 1"
            ),
            host_ip: format!("SELECT ipaddr FROM {host_table} WHERE host = ? LIMIT 1"),
            smtp_port: format!(
                "SELECT port FROM {smtp_port} WHERE domain = ? AND host = ? \
                 AND (src_host = ? OR src_host LIKE '*%') \
                 ORDER BY src_host = ? DESC LIMIT 1"
            ),
            alias_domain: format!("SELECT domain FROM {aliasdomain} WHERE alias = ? LIMIT 1"),
            user_here: format!("SELECT 1 FROM {users} WHERE pw_name = ? AND pw_domain = ? LIMIT 1"),
            inactive_here: format!(
                "SELECT 1 FROM {inactive} WHERE pw_name = ? AND pw_domain = ? LIMIT 1"
            ),
            alias_here: format!("SELECT 1 FROM {valias} WHERE alias = ? AND domain = ? LIMIT 1"),
        })
    }

    /// findhost's host id for `user@real`: its `hostcntrl` row, else the domain's `*` row.
    ///
    /// # Errors
    /// MySQL failed.
    pub fn placement<C: Queryable>(
        &self,
        c: &mut C,
        user: &str,
        real: &str,
    ) -> Result<Option<String>, LookupError> {
        for name in [user, "*"] {
            let host: Option<String> = c.exec_first(&self.placement, (name, real))?;
            if let Some(h) = host.map(|h| h.trim().to_string()).filter(|h| !h.is_empty()) {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }

    /// `host_table.ipaddr` of a host id.
    ///
    /// # Errors
    /// MySQL failed.
    pub fn host_ip<C: Queryable>(
        &self,
        c: &mut C,
        hostid: &str,
    ) -> Result<Option<String>, LookupError> {
        let ip: Option<String> = c.exec_first(&self.host_ip, (hostid,))?;
        Ok(ip.map(|i| i.trim().to_string()).filter(|i| !i.is_empty()))
    }

    /// The `smtp_port` row's port for (real, hostid), from `local_ip` or any (`*…`);
    /// `None` for no row or port 0.
    ///
    /// # Errors
    /// MySQL failed.
    pub fn smtp_port<C: Queryable>(
        &self,
        c: &mut C,
        real: &str,
        hostid: &str,
        local_ip: &str,
    ) -> Result<Option<u16>, LookupError> {
        let port: Option<Option<i64>> =
            c.exec_first(&self.smtp_port, (real, hostid, local_ip, local_ip))?;
        Ok(port.flatten().and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0))
    }

    /// The central `aliasdomain` row of `alias`.
    ///
    /// # Errors
    /// MySQL failed.
    pub fn alias_domain<C: Queryable>(
        &self,
        c: &mut C,
        alias: &str,
    ) -> Result<Option<String>, LookupError> {
        Ok(c.exec_first(&self.alias_domain, (alias,))?)
    }

    /// Whether `user@real` is a user of this mail store, active or inactive (IndiMail's
    /// sql_getpw in findmdahost).
    ///
    /// # Errors
    /// MySQL failed.
    pub fn user_here<C: Queryable>(
        &self,
        c: &mut C,
        user: &str,
        real: &str,
    ) -> Result<bool, LookupError> {
        Ok(c.exec_first::<i64, _, _>(&self.user_here, (user, real))?.is_some()
            || c.exec_first::<i64, _, _>(&self.inactive_here, (user, real))?.is_some())
    }

    /// Whether `user@real` is an alias (`valias`) on this mail store.
    ///
    /// # Errors
    /// MySQL failed.
    pub fn alias_here<C: Queryable>(
        &self,
        c: &mut C,
        user: &str,
        real: &str,
    ) -> Result<bool, LookupError> {
        Ok(c.exec_first::<i64, _, _>(&self.alias_here, (user, real))?.is_some())
    }
}

/// Where the clustered layout comes from: read at start, and again whenever one of
/// [`ClusterConfig::files`] changes (or on HUP). Its `Debug` form hides CNTRL_HOST, which
/// may hold a password.
#[derive(Clone)]
pub struct ClusterConfig {
    /// CONTROLDIR, for `host.cntrl`.
    pub controldir: PathBuf,
    /// CNTRL_HOST, used when `host.cntrl` is absent or empty.
    pub cntrl_host: Option<String>,
    /// The central database's settings before the host.cntrl line applies: CNTRL_USER
    /// (`indimail`), CNTRL_PASSWD (`ssh-1.5-`), CNTRL_SOCKET, CNTRL_VPORT (3306),
    /// CNTRL_DATABASE (`indimail`); timeouts and keepalive as host.mysql's.
    pub central_base: MysqlSettings,
    /// MCDFILE: `mcdinfo` in CONTROLDIR, or the path given.
    pub mcdinfo: PathBuf,
    /// ASSIGNDIR's `assign`, for the automatic entries.
    pub assign: PathBuf,
    /// The local database and this host's mdahost.
    pub local: LocalStore,
    /// The default domain (the automatic entry when assign adds none).
    pub default_domain: Option<String>,
    /// The central tables (CNTRL_TABLE).
    pub tables: ClusterTables,
    /// MAX_FAIL_ATTEMPTS (5).
    pub max_fail: u32,
    /// MYSQL_RETRY_INTERVAL (5 s).
    pub retry_interval: Duration,
    /// MYSQL_POOL_PER_DB: 0 (the default) gives each worker its own connection to each
    /// database it uses; N > 0 shares at most N connections per database among all workers.
    pub pool_per_db: usize,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("controldir", &self.controldir)
            .field("cntrl_host", &self.cntrl_host.as_ref().map(|_| "(set)"))
            .field("central_base", &self.central_base)
            .field("mcdinfo", &self.mcdinfo)
            .field("assign", &self.assign)
            .field("local", &self.local)
            .field("default_domain", &self.default_domain)
            .field("tables", &self.tables)
            .field("max_fail", &self.max_fail)
            .field("retry_interval", &self.retry_interval)
            .field("pool_per_db", &self.pool_per_db)
            .finish()
    }
}

impl ClusterConfig {
    /// The clustered layout's settings, or `None` when the site is not clustered (neither
    /// `controldir/host.cntrl` nor CNTRL_HOST): then the daemon serves one database, as
    /// before. `local` is host.mysql's settings, `local_ip` this host's IP.
    pub fn from_lookup(
        controldir: &Path,
        assign_dir: &Path,
        local: &MysqlSettings,
        local_ip: Option<&str>,
        default_domain: Option<&str>,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Option<ClusterConfig> {
        let cntrl_host = get("CNTRL_HOST").filter(|v| !v.is_empty());
        if cntrl_host.is_none() && !controldir.join("host.cntrl").exists() {
            return None;
        }
        let val = |n: &str| get(n).filter(|v| !v.is_empty());
        let mut central = MysqlSettings {
            host: "localhost".into(),
            socket: val("CNTRL_SOCKET"),
            ..local.clone()
        };
        central.user = val("CNTRL_USER").unwrap_or_else(|| "indimail".into());
        central.password = get("CNTRL_PASSWD").unwrap_or_else(|| "ssh-1.5-".into());
        central.database = val("CNTRL_DATABASE").unwrap_or_else(|| "indimail".into());
        central.port = val("CNTRL_VPORT")
            .and_then(|v| v.trim().parse::<u16>().ok())
            .filter(|p| *p != 0)
            .unwrap_or(3306);
        let mcd = val("MCDFILE").unwrap_or_else(|| "mcdinfo".into());
        let mcdinfo = if mcd.starts_with('/') || mcd.starts_with('.') {
            PathBuf::from(mcd)
        } else {
            controldir.join(mcd)
        };
        let secs = |n: &str, d: u64| val(n).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(d);
        let mut tables = ClusterTables::default();
        if let Some(t) = val("CNTRL_TABLE") {
            tables.hostcntrl = t;
        }
        Some(ClusterConfig {
            controldir: controldir.to_path_buf(),
            cntrl_host,
            central_base: central,
            mcdinfo,
            assign: assign_dir.join("assign"),
            local: LocalStore {
                settings: local.clone(),
                mdahost: local_ip.unwrap_or("localhost").to_string(),
            },
            default_domain: default_domain.map(str::to_string),
            tables,
            max_fail: u32::try_from(secs("MAX_FAIL_ATTEMPTS", 5)).unwrap_or(u32::MAX),
            retry_interval: Duration::from_secs(secs("MYSQL_RETRY_INTERVAL", 5)),
            pool_per_db: usize::try_from(secs("MYSQL_POOL_PER_DB", 0)).unwrap_or(usize::MAX),
        })
    }

    /// The files whose change reloads the layout: host.cntrl, mcdinfo, assign.
    pub fn files(&self) -> [PathBuf; 3] {
        [self.controldir.join("host.cntrl"), self.mcdinfo.clone(), self.assign.clone()]
    }

    /// The central database's line: host.cntrl's first line, else CNTRL_HOST, else
    /// `localhost` (IndiMail's inlookup passes the file's line first).
    pub fn central_line(&self) -> String {
        crate::control::read_line(&self.controldir, "host.cntrl")
            .or_else(|| self.cntrl_host.clone())
            .unwrap_or_else(|| "localhost".into())
    }

    /// Reads the files into a layout. `is_alias` says whether an assign domain is an alias
    /// domain (no automatic entry).
    ///
    /// # Errors
    /// mcdinfo cannot be read (other than absent) or does not parse: the message says why.
    pub fn load(&self, is_alias: &dyn Fn(&str) -> bool) -> Result<Layout, String> {
        let line = self.central_line();
        let mut central = self.central_base.clone();
        central.apply_host_line(&line);
        let central_tls = line.split(':').nth(4) == Some("ssl");
        let mut entries = match std::fs::read_to_string(&self.mcdinfo) {
            Ok(text) => {
                parse_mcdinfo(&text).map_err(|e| format!("{}: {e}", self.mcdinfo.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: {e}", self.mcdinfo.display())),
        };
        let assign = std::fs::read_to_string(&self.assign).unwrap_or_default();
        let auto =
            auto_entries(&assign, &entries, &self.local, is_alias, self.default_domain.as_deref());
        entries.extend(auto);
        Ok(Layout::new(central, central_tls, self.local.settings.clone(), entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = "server 10.0.0.1\nmdahost 192.0.2.1\nport 3307\nuse_ssl 0\n\
                          database indimail\nuser indimail\npass s3cret\n";

    #[test]
    fn a_record_needs_its_domain_line_first_and_seven_keys() {
        let text = format!("# a comment\n\n  domain dist.example 1  # trailing\n{RECORD}");
        let e = parse_mcdinfo(&text).unwrap();
        assert_eq!(e.len(), 1);
        let e = &e[0];
        assert_eq!((e.domain.as_str(), e.spread), ("dist.example", Spread::Distributed));
        assert_eq!(
            (e.server.as_str(), e.mdahost.as_str(), e.port),
            ("10.0.0.1", "192.0.2.1", 3307)
        );
        assert_eq!(
            (e.database.as_str(), e.user.as_str(), e.password.as_str()),
            ("indimail", "indimail", "s3cret")
        );
        assert!(!e.use_ssl && !e.auto);
        // No flag: not distributed; no domain line: IndiMail's "unknown domain", -1.
        let e = parse_mcdinfo(&format!("domain a.example\n{RECORD}{RECORD}")).unwrap();
        assert_eq!((e[0].domain.as_str(), e[0].spread), ("a.example", Spread::Local));
        assert_eq!((e[1].domain.as_str(), e[1].spread), ("unknown domain", Spread::Unknown));
        assert_eq!(
            parse_mcdinfo(&format!("domain b.example 0\n{RECORD}")).unwrap()[0].spread,
            Spread::Local
        );
    }

    #[test]
    fn keys_end_at_the_first_space_and_match_by_prefix() {
        // Keys in any order; `passwd` matches `pass`; a tab does not end a key.
        let text = "domain x.example 1\nserver db\nuser u\npasswd p w\nport 0\ndatabase d\n\
                    use_ssl 1\nmdahost m\ncount 3\ntable dbinfo\ntime 12\n";
        let e = parse_mcdinfo(text).unwrap();
        assert_eq!((e[0].password.as_str(), e[0].port, e[0].use_ssl), ("p w", 0, true));
        assert_eq!(parse_mcdinfo("server\tdb\n"), Err(McdError::NoValue(1)));
        // Trailing spaces of a value are kept.
        let e = parse_mcdinfo(&RECORD.replace("pass s3cret", "pass s3cret  ")).unwrap();
        assert_eq!(e[0].password, "s3cret  ");
    }

    #[test]
    fn malformed_files_are_refused_whole() {
        assert_eq!(parse_mcdinfo("domain\n"), Err(McdError::NoValue(1)));
        assert_eq!(parse_mcdinfo("server db\nuser \n"), Err(McdError::NoValue(2)));
        assert_eq!(
            parse_mcdinfo("server db\nbogus 1\n"),
            Err(McdError::UnknownKey(2, "bogus".into()))
        );
        assert_eq!(parse_mcdinfo("server db\nserver db2\n"), Err(McdError::Incomplete(2)));
        // inlookup.9's six-key example (no use_ssl) is incomplete.
        let six = RECORD.replace("use_ssl 0\n", "");
        assert_eq!(parse_mcdinfo(&six), Err(McdError::IncompleteAtEnd));
        // Seven keys, one twice and use_ssl missing.
        let dup = RECORD.replace("use_ssl 0", "user again");
        assert_eq!(parse_mcdinfo(&dup), Err(McdError::MissingKey(7, "use_ssl")));
        assert_eq!(
            parse_mcdinfo(&RECORD.replace("port 3307", "port 99999")),
            Err(McdError::BadPort(3))
        );
        // A record's key before any server line is skipped, as IndiMail skips it.
        assert_eq!(parse_mcdinfo(&format!("mdahost early\n{RECORD}")).unwrap().len(), 1);
        assert_eq!(parse_mcdinfo("# nothing\n").unwrap(), vec![]);
    }

    fn local() -> LocalStore {
        let settings = MysqlSettings {
            host: "dblocal".into(),
            port: 3310,
            database: "idb".into(),
            ..MysqlSettings::default()
        };
        LocalStore { settings, mdahost: "192.0.2.9".into() }
    }

    #[test]
    fn auto_entries_cover_the_assign_domains_mcdinfo_lacks() {
        let assign = "+a.example-:a.example:1:1:/d/a:-::\n+b.example-:b.example:1:1:/d/b:-::\n\
                      +alias.example-:alias.example:1:1:/d/x:-::\n=user:x\nnocolon\n.\n";
        let existing = parse_mcdinfo(&format!("domain a.example 1\n{RECORD}")).unwrap();
        let e = auto_entries(assign, &existing, &local(), &|d| d == "alias.example", Some("z"));
        assert_eq!(e.len(), 1);
        let b = &e[0];
        assert_eq!((b.domain.as_str(), b.spread, b.auto), ("b.example", Spread::Local, true));
        assert_eq!((b.server.as_str(), b.port, b.database.as_str()), ("dblocal", 3310, "idb"));
        assert_eq!(b.mdahost, "192.0.2.9");
        // Nothing new: one entry for the default domain (IndiMail adds it even then).
        let e = auto_entries("", &existing, &local(), &|_| false, Some("z.example"));
        assert_eq!(e.iter().map(|e| e.domain.as_str()).collect::<Vec<_>>(), ["z.example"]);
        assert!(auto_entries("", &[], &local(), &|_| false, None).is_empty());
    }

    fn layout() -> Layout {
        let text = format!(
            "domain dist.example 1\n{}domain dist.example 1\n{}domain local.example\n{}",
            RECORD.replace("192.0.2.1", "10.1.0.1"),
            RECORD.replace("192.0.2.1", "10.1.0.2").replace("10.0.0.1", "10.0.0.2"),
            RECORD.replace("192.0.2.1", "10.1.0.1"),
        );
        let entries = parse_mcdinfo(&text).unwrap();
        let central = MysqlSettings { host: "central".into(), ..MysqlSettings::default() };
        Layout::new(central, false, local().settings, entries)
    }

    #[test]
    fn entries_on_the_same_database_share_it() {
        let l = layout();
        // central, local, store 1 (twice: dist and local.example), store 2.
        assert_eq!(l.dbs.len(), 4);
        assert_eq!(l.entries[0].1, l.entries[2].1);
        assert_ne!(l.entries[0].1, l.entries[1].1);
        assert_ne!(l.central, l.local);
    }

    #[test]
    fn each_kind_goes_where_indimails_would() {
        use QueryKind::*;
        for k in [User, Relay, Pwd, Host, Alias, Limit] {
            assert_eq!(Layout::route(k, true, true), Route::Distributed, "{k}");
            assert_eq!(Layout::route(k, true, false), Route::FirstEntry, "{k}");
        }
        assert_eq!(Layout::route(Limit, false, true), Route::LocalDb);
        assert_eq!(Layout::route(Limit, false, false), Route::LocalDb);
        assert_eq!(Layout::route(Domain, false, true), Route::DomainOnly);
        assert_eq!(Layout::route(Domain, true, true), Route::DomainOnly);
        assert_eq!(Layout::route(Pwd, false, false), Route::Nowhere);
        let l = layout();
        assert!(l.is_distributed("dist.example"));
        assert!(!l.is_distributed("local.example"));
        assert!(!l.is_distributed("Dist.example"), "compared exactly, as IndiMail");
        assert!(!l.is_distributed("other.example"));
        // The mail store: the first entry of the domain with that exact mdahost.
        assert_eq!(l.store_for("dist.example", Some("10.1.0.2")).unwrap().0.server, "10.0.0.2");
        assert_eq!(l.store_for("dist.example", Some("10.1.0.1")).unwrap().0.server, "10.0.0.1");
        assert!(l.store_for("dist.example", Some("10.1.0.01")).is_none());
        assert_eq!(l.store_for("local.example", None).unwrap().0.domain, "local.example");
        assert!(l.store_for("other.example", None).is_none());
        assert_eq!(l.entries_of("dist.example").count(), 2);
    }

    #[test]
    fn backoff_waits_only_after_more_than_max_failures() {
        let (t0, iv) = (Instant::now(), Duration::from_secs(5));
        let mut b = Backoff::default();
        assert!(b.may_try(t0, 5, iv).is_ok());
        for _ in 0..5 {
            b.failed_at(t0);
        }
        // 5 failures: not yet "more than 5".
        assert!(b.may_try(t0, 5, iv).is_ok());
        b.failed_at(t0);
        assert_eq!(b.may_try(t0 + Duration::from_secs(2), 5, iv), Err(Duration::from_secs(3)));
        assert!(b.may_try(t0 + iv, 5, iv).is_ok());
        b.failed_at(t0 + iv);
        assert!(b.may_try(t0 + iv, 5, iv).is_err(), "a new failure waits again");
        b.succeeded_at(t0 + iv);
        assert!(b.may_try(t0 + iv, 5, iv).is_ok());
        assert_eq!(b.failed, 0);
        // MAX_FAIL_ATTEMPTS 0: every failure makes the next try wait.
        let mut b = Backoff::default();
        b.failed_at(t0);
        assert!(b.may_try(t0, 0, iv).is_err());
    }

    #[test]
    fn statements_bind_every_value() {
        let s = ClusterSql::new(&ClusterTables::default(), &Tables::default()).unwrap();
        for stmt in [&s.placement, &s.host_ip, &s.alias_domain, &s.user_here, &s.alias_here] {
            assert!(!stmt.contains('"') && !stmt.contains('\''), "{stmt}");
            assert!(stmt.contains('?'), "{stmt}");
        }
        let bad = ClusterTables { hostcntrl: "x; DROP".into(), ..ClusterTables::default() };
        assert!(ClusterSql::new(&bad, &Tables::default()).is_err());
    }

    #[test]
    fn entry_debug_never_shows_the_password() {
        let e = &parse_mcdinfo(RECORD).unwrap()[0];
        assert!(!format!("{e:?}").contains("s3cret"));
    }

    #[test]
    fn a_site_is_clustered_by_host_cntrl_or_cntrl_host_and_the_file_wins() {
        use std::collections::HashMap;
        let dir = std::env::temp_dir().join(format!("cl-cfg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = |vars: &[(&str, &str)]| {
            let m: HashMap<String, String> =
                vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let local = MysqlSettings { host: "dblocal".into(), ..MysqlSettings::default() };
            ClusterConfig::from_lookup(&dir, &dir, &local, None, None, &move |k| m.get(k).cloned())
        };
        assert!(cfg(&[]).is_none(), "neither: one database, as before");
        let c = cfg(&[("CNTRL_HOST", "central1:cu:hush:3309"), ("CNTRL_DATABASE", "ctl")]).unwrap();
        assert!(!format!("{c:?}").contains("hush"), "no password in the Debug form");
        assert_eq!(c.central_line(), "central1:cu:hush:3309");
        assert_eq!(c.mcdinfo, dir.join("mcdinfo"));
        assert_eq!((c.max_fail, c.retry_interval), (5, Duration::from_secs(5)));
        assert_eq!(c.local.mdahost, "localhost", "IndiMail's fallback without a local IP");
        let l = c.load(&|_| false).unwrap();
        let central = &l.dbs[l.central].settings;
        assert_eq!(
            (central.host.as_str(), central.user.as_str(), central.port, central.database.as_str()),
            ("central1", "cu", 3309, "ctl")
        );
        assert_eq!(central.password, "hush");
        assert!(l.entries.is_empty(), "no mcdinfo, no assign, no default domain");
        std::fs::write(dir.join("host.cntrl"), "central2:u2::/run/c.sock:ssl\n").unwrap();
        let c = cfg(&[
            ("CNTRL_HOST", "central1"),
            ("MCDFILE", "/x/mcd"),
            ("MAX_FAIL_ATTEMPTS", "2"),
            ("MYSQL_RETRY_INTERVAL", "9"),
        ])
        .unwrap();
        assert_eq!(c.central_line(), "central2:u2::/run/c.sock:ssl", "the file wins");
        assert_eq!(c.mcdinfo, PathBuf::from("/x/mcd"));
        assert_eq!((c.max_fail, c.retry_interval), (2, Duration::from_secs(9)));
        let l = c.load(&|_| false).unwrap();
        assert_eq!(l.dbs[l.central].settings.socket.as_deref(), Some("/run/c.sock"));
        assert_eq!(l.dbs[l.central].settings.password, "ssh-1.5-", "empty: IndiMail's default");
        assert!(l.dbs[l.central].tls, "host.cntrl's ssl field");
        assert!(cfg(&[]).is_some(), "the file alone makes the site clustered");
        std::fs::write(dir.join("mcdinfo"), "server x\n").unwrap();
        let c = cfg(&[("MCDFILE", "mcdinfo")]).unwrap();
        assert!(c.load(&|_| false).unwrap_err().contains("incomplete"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
