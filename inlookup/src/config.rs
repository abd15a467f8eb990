//! Configuration: command-line flags, each also read from IndiMail's environment name (an
//! envdir under daemontools or runit sets them), plus CONTROLDIR's control files.

use crate::cache::Ttls;
use clap::Parser;
use inlookup_core::control::{self, Timeouts};
use inlookup_core::domains::DomainSources;
use inlookup_core::{LookupConfig, MysqlSettings};
use std::path::PathBuf;
use std::time::Duration;

/// inlookup: answers IndiMail's user, relay, password, host, alias, limit and domain
/// queries over FIFOs, from a cache in front of persistent MySQL connections.
#[derive(Debug, Clone, Parser)]
#[command(name = "inlookup", version, about, long_about = LONG_ABOUT)]
pub struct Args {
    /// Request FIFO: absolute, `./relative`, or a name inside --fifo-dir.
    #[arg(short = 'f', long = "infifo", env = "INFIFO", default_value = "infifo")]
    pub infifo: String,

    /// Serve INFIFO.1 … INFIFO.N from this one process (N ≤ 1: INFIFO itself). IndiMail
    /// clients given a relative INFIFO find the instances and spread over them.
    #[arg(short = 'i', long = "instances", default_value_t = 1)]
    pub instances: u32,

    /// Preload the PWD answers of users who logged in by IMAP, POP3 or webmail during the
    /// last SECS seconds (IndiMail's `lastauth` table), in the background: the daemon
    /// serves at once. 0: no preload.
    #[arg(short = 'c', long = "preload", env = "CACHE_COUNT", value_name = "SECS")]
    pub preload_secs: Option<u64>,

    /// At most this many answers preloaded by -c (0: as many as the cache holds).
    #[arg(long, env = "MAX_BTREE_COUNT", default_value_t = 0)]
    pub preload_max: usize,

    /// Log one line per request (as DEBUG does; USR2 toggles it at run time).
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,

    /// Directory of a relative INFIFO.
    #[arg(long, env = "INFIFODIR", default_value = "/run/indimail/inlookup")]
    pub fifo_dir: PathBuf,

    /// Where clients create their reply FIFOs; replies go nowhere else.
    #[arg(long, env = "FIFOTMPDIR", default_value = "/tmp")]
    pub fifo_tmpdir: PathBuf,

    /// Mode of the request FIFOs the daemon creates (octal).
    #[arg(long, env = "FIFO_MODE", default_value = "0660", value_parser = parse_octal)]
    pub fifo_mode: u32,

    /// IndiMail's control directory (timeoutread, timeoutwrite, host.mysql, defaultdomain);
    /// relative to /etc/indimail unless absolute.
    #[arg(long, env = "CONTROLDIR")]
    pub controldir: Option<String>,

    /// Worker threads, each with one persistent MySQL connection.
    #[arg(long, env = "THREAD_COUNT", default_value_t = 5)]
    pub workers: usize,

    /// Lookups that may wait for a worker; beyond that a request gets an error reply at once.
    #[arg(long, env = "QUEUE_SIZE", default_value_t = 1024)]
    pub queue: usize,

    /// Cache capacity in entries; 0 turns the cache off.
    #[arg(long, env = "CACHE_ENTRIES", default_value_t = 100_000)]
    pub cache_entries: usize,

    /// The shared-memory cache clients read hits from without a round trip: `off`, or the
    /// file's path (default: beside the request FIFO, `INFIFO.cache`; one for all
    /// instances). Mode 0640 with the request FIFO's group.
    #[arg(long, env = "SHARED_CACHE", default_value = "")]
    pub shared_cache: String,

    /// The kinds published in the shared cache (PWD answers carry password hashes).
    #[arg(long, env = "SHARED_KINDS", default_value = "user,relay,pwd,host,alias,limit,domain")]
    pub shared_kinds: String,

    /// The shared cache's size bound in MiB (its slots: CACHE_ENTRIES and a quarter, of
    /// 512 bytes each, within this).
    #[arg(long, env = "SHARED_CACHE_MB", default_value_t = 128)]
    pub shared_cache_mb: usize,

    /// Per-kind TTLs in seconds over the defaults, `kind=POSITIVE[/NEGATIVE],…`
    /// (defaults user=300/20 relay=60/5 pwd=300/20 host=600/20 alias=300/20 limit=600/60
    /// domain=3600/300).
    #[arg(long, env = "CACHE_TTL", default_value = "")]
    pub ttl: String,

    /// When MySQL fails, answer from an expired entry if one is at most --max-stale old.
    #[arg(long, env = "SERVE_STALE", default_value = "1", value_parser = parse_flag, action = clap::ArgAction::Set)]
    pub serve_stale: bool,

    /// Oldest expired entry serve-stale may use, in seconds past its expiry.
    #[arg(long, env = "MAX_STALE", default_value_t = 3600)]
    pub max_stale: u64,

    /// Refresh-ahead: a positive answer asked again in the last PERCENT of its TTL is looked
    /// up again by a worker in the background while the cached one is served, so hot keys
    /// never miss (0: off; 1 to 99).
    #[arg(long, env = "REFRESH_AHEAD", value_name = "PERCENT", default_value_t = 20,
          value_parser = clap::value_parser!(u8).range(0..100))]
    pub refresh_ahead: u8,

    /// Ping a MySQL connection idle this many seconds before reusing it.
    #[arg(long, env = "MYSQL_PING_IDLE", default_value_t = 10)]
    pub ping_idle: u64,

    /// Kernel buffer for each request FIFO, in bytes (bursts queue there).
    #[arg(long, env = "PIPE_SIZE", default_value_t = 1 << 20)]
    pub pipe_size: usize,

    /// On TERM, wait at most this many seconds for lookups in flight.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value_t = 5)]
    pub shutdown_grace: u64,

    /// User to run as when started as root (required then: inlookup never serves as root).
    #[arg(long, env = "INLOOKUP_USER")]
    pub user: Option<String>,

    /// Log to syslog with this facility (e.g. `mail`, `daemon`) instead of stderr.
    #[arg(long, env = "SYSLOG")]
    pub syslog: Option<String>,

    /// MySQL host, over MYSQL_HOST and control/host.mysql (the password is read only from
    /// MYSQL_PASSWD or host.mysql, never from the command line).
    #[arg(long)]
    pub mysql_host: Option<String>,

    /// MySQL port, over MYSQL_VPORT.
    #[arg(long)]
    pub mysql_port: Option<u16>,

    /// MySQL user, over MYSQL_USER.
    #[arg(long)]
    pub mysql_user: Option<String>,

    /// MySQL database, over MYSQL_DATABASE.
    #[arg(long)]
    pub mysql_database: Option<String>,

    /// MySQL Unix socket, over MYSQL_SOCKET.
    #[arg(long)]
    pub mysql_socket: Option<String>,

    /// IMAP server for users without a mail store in hostcntrl.
    #[arg(long, env = "IMAP_HOST", default_value = "127.0.0.1")]
    pub imap_host: String,

    /// IMAP port, also for mail stores found in hostcntrl.
    #[arg(long, env = "IMAP_PORT", default_value_t = 143)]
    pub imap_port: u16,

    /// IMAP transport: plain, starttls or imaps.
    #[arg(long, env = "IMAP_TLS", default_value = "plain")]
    pub imap_tls: inlookup_imap::TlsMode,

    /// Verify the IMAP server's certificate (0 turns verification off).
    #[arg(long, env = "IMAP_TLS_VERIFY", default_value = "1", value_parser = parse_flag, action = clap::ArgAction::Set)]
    pub imap_tls_verify: bool,

    /// Do not verify the IMAP server's certificate (as IMAP_TLS_VERIFY=0).
    #[arg(long)]
    pub imap_insecure_skip_verify: bool,

    /// Trust exactly the CA certificates in this PEM file for IMAP TLS, not the system's.
    #[arg(long, env = "IMAP_CA_FILE")]
    pub imap_ca_file: Option<PathBuf>,

    /// IMAP connections open at most.
    #[arg(long, env = "IMAP_MAX_CONNECTIONS", default_value_t = 15)]
    pub imap_max_connections: usize,

    /// Seconds an IMAP connection may stay unused before it is closed.
    #[arg(long, env = "IMAP_IDLE_TIMEOUT", default_value_t = 420)]
    pub imap_idle_timeout: u64,

    /// Park IMAP connections at logout for the same user's next login (0: close them).
    #[arg(long, env = "IMAP_PARK", default_value = "1", value_parser = parse_flag, action = clap::ArgAction::Set)]
    pub imap_park: bool,

    /// Seconds a valid password stays in the IMAP auth cache.
    #[arg(long, env = "IMAP_AUTH_TTL", default_value_t = 60)]
    pub imap_auth_ttl: u64,

    /// Seconds an invalid password stays in the IMAP auth cache.
    #[arg(long, env = "IMAP_AUTH_NEG_TTL", default_value_t = 10)]
    pub imap_auth_neg_ttl: u64,

    /// IMAP worker threads (default: IMAP_MAX_CONNECTIONS + 2).
    #[arg(long, env = "IMAP_WORKERS")]
    pub imap_workers: Option<usize>,

    /// Seconds for an IMAP connect, greeting and TLS handshake.
    #[arg(long, env = "IMAP_CONNECT_TIMEOUT", default_value_t = 5)]
    pub imap_connect_timeout: u64,

    /// Seconds for one IMAP command to complete; past it the connection is closed.
    #[arg(long, env = "IMAP_COMMAND_TIMEOUT", default_value_t = 60)]
    pub imap_command_timeout: u64,

    /// Serve metrics (Prometheus text format) over HTTP at ADDRESS:PORT, e.g.
    /// 127.0.0.1:9167 (unset: no listener).
    #[arg(long, env = "METRICS_LISTEN", value_name = "ADDRESS:PORT")]
    pub metrics_listen: Option<String>,

    /// Who may scrape the metrics: addresses and CIDR ranges, comma-separated (others get
    /// 403).
    #[arg(long, env = "METRICS_ALLOW", default_value = "127.0.0.0/8,::1")]
    pub metrics_allow: String,

    /// Also answer lookups over TCP at ADDRESS:PORT, in IndiMail's framing (one request per
    /// connection), from the same cache (unset: no listener). Anything but loopback needs
    /// --tcp-allow.
    #[arg(long, env = "TCP_LISTEN", value_name = "ADDRESS:PORT")]
    pub tcp_listen: Option<String>,

    /// Who may ask over TCP: addresses and CIDR ranges, comma-separated (others are closed
    /// on with no byte sent). Default: loopback only.
    #[arg(long, env = "TCP_ALLOW")]
    pub tcp_allow: Option<String>,

    /// TCP connections reading or waiting for their reply at most; one more is closed at
    /// once.
    #[arg(long, env = "TCP_MAX_CLIENTS", default_value_t = crate::tcp::DEFAULT_MAX_CLIENTS)]
    pub tcp_max_clients: usize,

    /// Speak TLS on the TCP listener with this PEM certificate chain (with --tcp-tls-key;
    /// every connection is then TLS, IndiMail's plain framing inside it).
    #[arg(long, env = "TCP_TLS_CERT", value_name = "PEM")]
    pub tcp_tls_cert: Option<PathBuf>,

    /// The PEM private key of --tcp-tls-cert (read before privileges are dropped, so it
    /// may be readable by root alone).
    #[arg(long, env = "TCP_TLS_KEY", value_name = "PEM")]
    pub tcp_tls_key: Option<PathBuf>,

    /// Before an IMAP login, pass the end user's IP to a server that offers ID
    /// (`ID ("x-originating-ip" …)`; Dovecot honours it from login_trusted_networks).
    #[arg(long, env = "IMAP_SEND_ID", default_value = "1", value_parser = parse_flag, action = clap::ArgAction::Set)]
    pub imap_send_id: bool,

    /// The IMAP front door: unmodified IMAP clients (webmail) connect here and get pooled
    /// sessions. Comma-separated ADDRESS:PORT, imaps://ADDRESS:PORT and absolute Unix
    /// socket paths (unset: no listener). Anything but loopback needs --imap-listen-cert.
    #[arg(long, env = "IMAP_LISTEN", value_name = "LIST")]
    pub imap_listen: Option<String>,

    /// PEM certificate chain for the front door's STARTTLS and imaps:// (with
    /// --imap-listen-key).
    #[arg(long, env = "IMAP_LISTEN_CERT", value_name = "PEM")]
    pub imap_listen_cert: Option<PathBuf>,

    /// The PEM private key of --imap-listen-cert (read before privileges are dropped).
    #[arg(long, env = "IMAP_LISTEN_KEY", value_name = "PEM")]
    pub imap_listen_key: Option<PathBuf>,

    /// Front-door clients at most (a thread each); one more gets `* BYE` at once.
    #[arg(long, env = "IMAP_LISTEN_MAX_CLIENTS", default_value_t = crate::door::DEFAULT_MAX_CLIENTS)]
    pub imap_listen_max_clients: usize,

    /// Cache invalidation: `off` (answers live out their TTLs) or `binlog` (read the
    /// replication stream of INVALIDATE_FROM as a replica does and evict the answers of
    /// each changed row at once; long positive TTLs are then safe).
    #[arg(long, env = "INVALIDATE", default_value = "off", value_parser = ["off", "binlog"])]
    pub invalidate: String,

    /// The server whose binlog INVALIDATE=binlog reads, `HOST[:PORT]` (default: the
    /// primary, MYSQL_HOST's; a replica with log_slave_updates works too, so each host can
    /// tail its nearest replica). Same user and password as the lookups.
    #[arg(long, env = "INVALIDATE_FROM", value_name = "HOST[:PORT]")]
    pub invalidate_from: Option<String>,

    /// The server id the binlog reader registers with: unique among the source's replicas
    /// and readers (default: derived from the host name and the request FIFO's path, so
    /// two daemons on one host differ, and stable across restarts).
    #[arg(long, env = "INVALIDATE_SERVER_ID", value_name = "ID")]
    pub invalidate_server_id: Option<u32>,

    /// Read replicas of MYSQL_HOST's database, comma-separated `HOST[:PORT]` (or IndiMail's
    /// `host:user:pass:port`): lookups go to the healthy ones, spread evenly, and to the
    /// primary when none is; a server that fails is skipped within the same request.
    #[arg(long, env = "MYSQL_REPLICAS", value_name = "LIST")]
    pub mysql_replicas: Option<String>,

    /// Seconds between reads of each replica's lag (SHOW SLAVE STATUS).
    #[arg(long, env = "REPLICA_CHECK_SECS", default_value_t = 2)]
    pub replica_check_secs: u64,

    /// A replica further behind its primary than this many seconds is skipped.
    #[arg(long, env = "MAX_REPLICATION_LAG", default_value_t = 30)]
    pub max_replication_lag: u64,
}

/// The man page's DESCRIPTION (and `--help`'s opening).
const LONG_ABOUT: &str = "inlookup answers IndiMail's seven lookups (user, relay, password, \
host, alias, limit, domain), inlookup's own requests (ping, stats, flush) and its pooled IMAP \
sessions over FIFOs, wire-compatible with IndiMail's inlookup: one I/O thread answers cache \
hits, a bounded pool of workers with persistent MySQL connections answers misses. It runs in \
the foreground under daemontools, runit or systemd, never as root. Every flag can also be \
set by the environment name shown (an envdir). Signals: HUP flushes the caches and \
reconnects, USR1 logs the counters, USR2 toggles debug lines, TERM stops after what is in \
flight.";

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim().trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{s:?} is not an octal mode"))
}

fn parse_flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" | "" => Ok(false),
        _ => Err(format!("{s:?}: use 1 or 0")),
    }
}

/// Everything the daemon needs, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// Request FIFO paths (one per instance).
    pub fifos: Vec<PathBuf>,
    /// FIFOTMPDIR.
    pub fifo_tmpdir: PathBuf,
    /// Request FIFO mode.
    pub fifo_mode: u32,
    /// Worker threads.
    pub workers: usize,
    /// Queue bound.
    pub queue: usize,
    /// Cache capacity (0: off).
    pub cache_entries: usize,
    /// TTLs.
    pub ttls: Ttls,
    /// Serve-stale on backend failure.
    pub serve_stale: bool,
    /// Serve-stale age limit.
    pub max_stale: Duration,
    /// Refresh-ahead percent of the positive TTL (0: off).
    pub refresh_ahead: u8,
    /// Ping after this much idleness.
    pub ping_idle: Duration,
    /// Pipe buffer size.
    pub pipe_size: usize,
    /// Shutdown grace.
    pub shutdown_grace: Duration,
    /// timeoutread / timeoutwrite.
    pub timeouts: Timeouts,
    /// Per-request debug lines at start.
    pub debug: bool,
    /// MySQL.
    pub mysql: MysqlSettings,
    /// Lookup behaviour.
    pub lookup: LookupConfig,
    /// User to drop to.
    pub user: Option<String>,
    /// Syslog facility.
    pub syslog: Option<String>,
    /// The IMAP sessions.
    pub imap: inlookup_imap::ImapConfig,
    /// The metrics listener, if any.
    pub metrics: Option<crate::metrics::MetricsConfig>,
    /// The TCP listener for lookups, if any.
    pub tcp: Option<crate::tcp::TcpConfig>,
    /// The IMAP front door (IMAP_LISTEN), if set.
    pub door: Option<crate::door::DoorConfig>,
    /// `-c`: preload PWD answers of users active this many seconds back, at most so many.
    pub preload: Option<(u64, usize)>,
    /// The shared-memory cache, unless off (or the cache is).
    pub shared: Option<crate::shared::SharedSettings>,
    /// IndiMail's clustered layout (host.cntrl or CNTRL_HOST, mcdinfo), if the site is
    /// clustered; `None`: one database, host.mysql's.
    pub cluster: Option<inlookup_core::cluster::ClusterConfig>,
    /// Warnings about the settings, for the log once it is set up.
    pub notices: Vec<String>,
    /// INVALIDATE=binlog: where the binlog reader streams from, as whom; `None`: off.
    pub invalidation: Option<crate::binlog::BinlogConfig>,
    /// MYSQL_REPLICAS, if any (not on a clustered site).
    pub replicas: Option<crate::replicas::ReplicaConfig>,
}

/// Where [`Config::from_args`] reads variables that have no flag: the process environment
/// ([`process_env`]) or, in tests, a map.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, as [`Env`].
pub fn process_env(name: &str) -> Option<String> {
    control::env_var(name)
}

impl Config {
    /// Resolves flags (clap has already merged the environment names it knows into
    /// them), the variables without a flag, read through `env`, and the control files in
    /// CONTROLDIR. Logs nothing: warnings go to [`Config::notices`].
    ///
    /// # Errors
    /// A setting that does not parse, with a message naming it.
    pub fn from_args(a: Args, env: Env<'_>) -> Result<Config, crate::Error> {
        let controldir = control::controldir(a.controldir.as_deref());
        let mut mysql = MysqlSettings::from_lookup(&controldir, env);
        if let Some(h) = a.mysql_host {
            mysql.host = h;
        }
        if let Some(p) = a.mysql_port {
            mysql.port = p;
        }
        if let Some(u) = a.mysql_user {
            mysql.user = u;
        }
        if let Some(d) = a.mysql_database {
            mysql.database = d;
        }
        if let Some(s) = a.mysql_socket {
            mysql.socket = Some(s);
        }
        let ttls: Ttls = a
            .ttl
            .parse()
            .map_err(|reason| crate::Error::Config { setting: "CACHE_TTL", reason })?;
        // IndiMail turns debug on for any DEBUG that is set; "0" (or empty) means off here,
        // which is what an envdir file holding 0 is meant to say.
        let debug = a.verbose || env("DEBUG").is_some_and(|v| debug_on(&v));
        let notices = Vec::new();
        let default_domain = control::default_domain_from(&controldir, env);
        let max_connections = a.imap_max_connections.max(1);
        let imap = inlookup_imap::ImapConfig {
            host: a.imap_host,
            port: a.imap_port,
            tls: a.imap_tls,
            verify: a.imap_tls_verify && !a.imap_insecure_skip_verify,
            ca_file: a.imap_ca_file.filter(|p| !p.as_os_str().is_empty()),
            max_connections,
            idle_timeout: Duration::from_secs(a.imap_idle_timeout.max(1)),
            park: a.imap_park,
            auth_ttl: Duration::from_secs(a.imap_auth_ttl),
            auth_negative_ttl: Duration::from_secs(a.imap_auth_neg_ttl),
            workers: a.imap_workers.filter(|n| *n > 0).unwrap_or(max_connections + 2),
            connect_timeout: Duration::from_secs(a.imap_connect_timeout.max(1)),
            command_timeout: Duration::from_secs(a.imap_command_timeout.max(1)),
            send_id: a.imap_send_id,
            keepalive: inlookup_imap::Keepalive {
                idle: mysql.keepalive_idle,
                interval: mysql.keepalive_interval,
                count: mysql.keepalive_count,
            },
            ..inlookup_imap::ImapConfig::default()
        };
        let metrics = match a.metrics_listen.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
            None => None,
            Some(l) => Some(crate::metrics::MetricsConfig {
                listen: l.parse().map_err(|_| crate::Error::Config {
                    setting: "METRICS_LISTEN",
                    reason: format!("{l:?} is not ADDRESS:PORT"),
                })?,
                allow: crate::metrics::parse_allow(&a.metrics_allow)
                    .map_err(|reason| crate::Error::Config { setting: "METRICS_ALLOW", reason })?,
            }),
        };
        let tcp = crate::tcp::TcpConfig::resolve(
            a.tcp_listen.as_deref(),
            a.tcp_allow.as_deref(),
            a.tcp_max_clients,
            (a.tcp_tls_cert.as_deref(), a.tcp_tls_key.as_deref()),
        )?;
        let door = crate::door::DoorConfig::resolve(
            a.imap_listen.as_deref(),
            a.imap_listen_cert.as_deref(),
            a.imap_listen_key.as_deref(),
            a.imap_listen_max_clients,
        )?;
        let timeouts = Timeouts::from_controldir(&controldir);
        // A lookup's client waits timeoutread for its answer: a MySQL read or write that
        // takes longer (a frozen server, a connect after HUP) only holds a worker for nothing.
        mysql.read_timeout = mysql.read_timeout.min(timeouts.read);
        mysql.write_timeout = mysql.write_timeout.min(timeouts.read);
        if a.workers == 0 {
            return Err(crate::Error::Config {
                setting: "THREAD_COUNT",
                reason: "0 workers could answer no miss; give 1 or more".into(),
            });
        }
        let base = crate::fifo::request_paths(&a.fifo_dir, &a.infifo, 1).remove(0);
        let base_fifo = base.clone();
        let shared = match a.shared_cache.trim() {
            "off" | "0" | "no" => None,
            _ if a.cache_entries == 0 => None,
            p => {
                let path = if p.is_empty() {
                    let mut s = base.into_os_string();
                    s.push(".cache");
                    PathBuf::from(s)
                } else if p.starts_with('/') {
                    PathBuf::from(p)
                } else {
                    return Err(crate::Error::Config {
                        setting: "SHARED_CACHE",
                        reason: format!("{p:?}: give an absolute path, or off"),
                    });
                };
                let kinds = crate::shared::SharedSettings::parse_kinds(&a.shared_kinds)
                    .map_err(|reason| crate::Error::Config { setting: "SHARED_KINDS", reason })?;
                let slots = crate::shared::SharedSettings::slots_for(
                    a.cache_entries,
                    a.shared_cache_mb.saturating_mul(1 << 20),
                );
                kinds.contains(&true).then_some(crate::shared::SharedSettings {
                    path,
                    kinds,
                    slots,
                })
            }
        };
        let lookup = LookupConfig {
            local_ip: control::local_ip(&controldir),
            domains: DomainSources::from_lookup(&controldir, env),
            ..LookupConfig::from_lookup(default_domain, env)
        };
        let cluster = inlookup_core::cluster::ClusterConfig::from_lookup(
            &controldir,
            &lookup.domains.assign_dir,
            &mysql,
            lookup.local_ip.as_deref(),
            lookup.default_domain.as_deref(),
            env,
        );
        let invalidation = crate::binlog::BinlogConfig::resolve(
            &a.invalidate,
            a.invalidate_from.as_deref(),
            a.invalidate_server_id,
            &mysql,
            &base_fifo,
        )?;
        let replicas = crate::replicas::ReplicaConfig::resolve(
            a.mysql_replicas.as_deref(),
            a.replica_check_secs,
            a.max_replication_lag,
            &mysql,
        )?;
        let mut notices = notices;
        let replicas = match (replicas, &cluster) {
            (Some(_), Some(_)) => {
                notices.push("MYSQL_REPLICAS is ignored on a clustered site (host.cntrl)".into());
                None
            }
            (r, _) => r,
        };
        Ok(Config {
            refresh_ahead: a.refresh_ahead,
            replicas,
            invalidation,
            cluster,
            shared,
            fifos: crate::fifo::request_paths(&a.fifo_dir, &a.infifo, a.instances),
            fifo_tmpdir: a.fifo_tmpdir,
            fifo_mode: a.fifo_mode,
            workers: a.workers,
            queue: a.queue.max(1),
            cache_entries: a.cache_entries,
            ttls,
            serve_stale: a.serve_stale,
            max_stale: Duration::from_secs(a.max_stale),
            ping_idle: Duration::from_secs(a.ping_idle),
            pipe_size: a.pipe_size,
            shutdown_grace: Duration::from_secs(a.shutdown_grace),
            timeouts,
            debug,
            mysql,
            lookup,
            user: a.user.filter(|u| !u.is_empty()),
            syslog: a.syslog.filter(|s| !s.is_empty()),
            imap,
            metrics,
            tcp,
            door,
            preload: a.preload_secs.filter(|s| *s > 0).map(|s| {
                let max = if a.preload_max == 0 { a.cache_entries } else { a.preload_max };
                (s, max.min(a.cache_entries))
            }),
            notices,
        })
    }

    /// The one start-up line: the effective configuration, without secrets.
    pub fn describe(&self) -> String {
        let fifos: Vec<String> = self.fifos.iter().map(|p| p.display().to_string()).collect();
        format!(
            "serving {} (mode {:o}){}; replies in {}; {} workers, queue {}; cache {} entries, serve-stale {} (max {} s), refresh-ahead {}; shared cache {}; {}; timeouts read {} s write {} s; default domain {}; domains from {} and {}",
            fifos.join(", "),
            self.fifo_mode,
            self.tcp.as_ref().map_or(String::new(), |t| format!(
                " and TCP {}{} for {} (at most {} connections)",
                t.listen,
                if t.tls.is_some() { " (TLS)" } else { "" },
                t.allow.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                t.max_clients
            )),
            self.fifo_tmpdir.display(),
            self.workers,
            self.queue,
            self.cache_entries,
            if self.serve_stale { "on" } else { "off" },
            self.max_stale.as_secs(),
            match self.refresh_ahead {
                0 => "off".to_string(),
                p => format!("{p} %"),
            },
            self.shared.as_ref().map_or("off".to_string(), |s| format!(
                "{} ({} slots)",
                s.path.display(),
                s.slots
            )),
            match &self.cluster {
                None => self.mysql.describe(),
                Some(c) => format!(
                    "clustered: central {} (host.cntrl), mail stores from {}, local {}",
                    c.central_line().split(':').next().unwrap_or(""),
                    c.mcdinfo.display(),
                    self.mysql.describe()
                ),
            },
            self.timeouts.read.as_secs(),
            self.timeouts.write.as_secs(),
            self.lookup.default_domain.as_deref().unwrap_or("(none)"),
            self.lookup.domains.assign_cdb().display(),
            self.lookup.domains.controldir.join("rcpthosts").display(),
        ) + &match &self.replicas {
            None => String::new(),
            Some(r) => format!(
                "; replicas {} (lag checked every {} s, at most {} s)",
                r.replicas
                    .iter()
                    .map(|s| format!("{}:{}", s.host, s.port))
                    .collect::<Vec<_>>()
                    .join(", "),
                r.check_every.as_secs(),
                r.max_lag
            ),
        } + &match &self.invalidation {
            None => "; invalidation off (TTLs only)".to_string(),
            Some(b) => format!(
                "; invalidation from the binlog of {} as server id {}",
                b.source_name(),
                b.server_id
            ),
        }
    }
}

/// DEBUG's value: off where [`parse_flag`] reads off (empty, `0`, `no`, `off`, `false`),
/// on for anything else (IndiMail's meaning for any other value).
fn debug_on(v: &str) -> bool {
    parse_flag(v).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_values() {
        for on in ["1", "yes", "y", "on", "DEBUG"] {
            assert!(debug_on(on), "{on}");
        }
        for off in ["", " ", "0", "no", "off", "False"] {
            assert!(!debug_on(off), "{off:?}");
        }
    }

    #[test]
    fn modes_and_flags_parse() {
        assert_eq!(parse_octal("0660"), Ok(0o660));
        assert_eq!(parse_octal("660"), Ok(0o660));
        assert!(parse_octal("0990").is_err());
        assert_eq!(parse_flag("yes"), Ok(true));
        assert_eq!(parse_flag("0"), Ok(false));
        assert!(parse_flag("maybe").is_err());
    }

    #[test]
    fn variables_without_a_flag_come_from_the_env_given() {
        let a = Args::try_parse_from(["inlookup"]).unwrap();
        let env = |name: &str| match name {
            "DEBUG" => Some("1".to_string()),
            "DEFAULT_DOMAIN" => Some("Example.COM".to_string()),
            "MYSQL_USER" => Some("reader".to_string()),
            "RELAY_CLEAR_MINUTES" => Some("30".to_string()),
            _ => None,
        };
        let c = Config::from_args(a.clone(), &env).unwrap();
        assert!(c.debug);
        assert_eq!(c.lookup.default_domain.as_deref(), Some("example.com"));
        assert_eq!(c.mysql.user, "reader");
        assert_eq!(c.lookup.relay_clear_minutes, 30);
        let quiet = Config::from_args(a, &|_| None).unwrap();
        assert!(!quiet.debug && quiet.notices.is_empty());
    }

    #[test]
    fn indimail_flags_are_accepted() {
        let a =
            Args::try_parse_from(["inlookup", "-f", "/x/infifo", "-i", "3", "-v", "-c", "86400"])
                .unwrap();
        assert_eq!(
            (a.infifo.as_str(), a.instances, a.verbose, a.preload_secs),
            ("/x/infifo", 3, true, Some(86400))
        );
        let c = Config::from_args(a, &|_| None).unwrap();
        assert_eq!(c.fifos.len(), 3);
        let shared = c.shared.as_ref().expect("the shared cache is on by default");
        assert_eq!(shared.path, PathBuf::from("/x/infifo.cache"), "one file for all instances");
        assert_eq!(c.preload, Some((86400, 100_000)), "-c preloads, bounded by the cache");
        assert!(c.describe().contains("/x/infifo.2"));
        assert!(!c.describe().contains(&c.mysql.password));
        assert!(c.tcp.is_none(), "no TCP listener unless asked");
    }

    #[test]
    fn tcp_settings_come_from_flags_or_the_environment_names() {
        let a = Args::try_parse_from(["inlookup", "--tcp-listen", "127.0.0.1:4000"]).unwrap();
        let c = Config::from_args(a, &|_| None).unwrap();
        let t = c.tcp.as_ref().unwrap();
        assert_eq!((t.listen.port(), t.max_clients), (4000, crate::tcp::DEFAULT_MAX_CLIENTS));
        assert!(c.describe().contains("TCP 127.0.0.1:4000 for 127.0.0.0/8, ::1"));
        let a = Args::try_parse_from(["inlookup", "--tcp-listen", "0.0.0.0:4000"]).unwrap();
        let e = Config::from_args(a, &|_| None).unwrap_err().to_string();
        assert!(e.starts_with("TCP_LISTEN:") && e.contains("set TCP_ALLOW"), "{e}");
        let a = Args::try_parse_from([
            "inlookup",
            "--tcp-listen",
            "0.0.0.0:4000",
            "--tcp-allow",
            "10.0.0.0/8",
            "--tcp-max-clients",
            "3",
        ])
        .unwrap();
        let t = Config::from_args(a, &|_| None).unwrap().tcp.unwrap();
        assert_eq!((t.allow.len(), t.max_clients), (1, 3));
    }
}
