//! INVALIDATE=binlog: a thread that reads the replication stream of INVALIDATE_FROM the
//! way a replica does (`COM_BINLOG_DUMP`, the `mysql` crate's `binlog` feature) and tells
//! the I/O thread which cache keys each changed row of the IndiMail tables makes stale
//! ([`crate::invalidate`]).
//!
//! - At each connect it checks the server's settings (`log_bin`, `binlog_format=ROW`,
//!   `binlog_row_image=FULL`, `binlog_row_metadata=FULL`) and the user's grants
//!   (REPLICATION SLAVE; BINLOG MONITOR, REPLICATION CLIENT on MySQL, for its position)
//!   and says what to set when one is missing; until then the stream is `down` and
//!   answers live out their TTLs. (`binlog_row_metadata` short of FULL is only a warning:
//!   rows are then read by IndiMail's column order.)
//! - It keeps its position (the binlog file and offset after the last transaction read)
//!   and resumes there after a reconnect, so what changed while it was away is still
//!   evicted. When it cannot resume (the binlog was purged, the source is another server)
//!   the cache is flushed once and it starts from the current position.
//! - A heartbeat (`@master_heartbeat_period`, every [`HEARTBEAT`]) and a read timeout
//!   ([`SILENCE`]) find a dead stream that says nothing.

use crate::invalidate::{self, Row, Target};
use crate::wake::Waker;
use crossbeam_channel::{Receiver, Sender};
use inlookup_core::admin::InvalidationStatus;
use inlookup_core::MysqlSettings;
use mysql::binlog::events::EventData;
use mysql::prelude::Queryable;
use mysql::{BinlogRequest, Conn, OptsBuilder};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// INVALIDATE's state, shared by the reader (stream, position) and the I/O thread
/// (evictions, lag), read by PING, STATS and USR1.
pub type StatusHandle = Arc<Mutex<InvalidationStatus>>;

/// How often the source sends a heartbeat when it has nothing else to send.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// No event nor heartbeat for this long: the stream is dead.
pub const SILENCE: Duration = Duration::from_secs(5);

/// Reconnect back-off after a failure: from this, doubling…
const RETRY_MIN: Duration = Duration::from_millis(500);
/// …up to this.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// INVALIDATE=binlog's settings.
#[derive(Debug, Clone)]
pub struct BinlogConfig {
    /// The server streamed from, with the lookups' user, password and database.
    pub source: MysqlSettings,
    /// The server id it registers with.
    pub server_id: u32,
}

impl BinlogConfig {
    /// INVALIDATE, INVALIDATE_FROM and INVALIDATE_SERVER_ID resolved over the lookups'
    /// MySQL settings; `None` when INVALIDATE is off.
    ///
    /// # Errors
    /// INVALIDATE_FROM is not `HOST[:PORT]`, or INVALIDATE_SERVER_ID is 0.
    pub fn resolve(
        mode: &str,
        from: Option<&str>,
        server_id: Option<u32>,
        mysql: &MysqlSettings,
        fifo: &std::path::Path,
    ) -> Result<Option<BinlogConfig>, crate::Error> {
        if mode != "binlog" {
            return Ok(None);
        }
        let mut source = mysql.clone();
        // The stream's reads wait for events; its own timeout is SILENCE.
        source.read_timeout = SILENCE;
        if let Some(f) = from.map(str::trim).filter(|f| !f.is_empty()) {
            let (host, port) = match f.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
                    let port = p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                        crate::Error::Config {
                            setting: "INVALIDATE_FROM",
                            reason: format!("{f:?}: bad port {p:?} (give HOST[:PORT])"),
                        }
                    })?;
                    (h.trim_matches(|c| c == '[' || c == ']').to_string(), port)
                }
                _ => (f.to_string(), mysql.port),
            };
            if host.is_empty() {
                return Err(crate::Error::Config {
                    setting: "INVALIDATE_FROM",
                    reason: format!("{f:?}: no host (give HOST[:PORT])"),
                });
            }
            source.host = host;
            source.port = port;
            source.socket = None;
        }
        let server_id = match server_id {
            Some(0) => {
                return Err(crate::Error::Config {
                    setting: "INVALIDATE_SERVER_ID",
                    reason: "0 is no server id; give 1 to 4294967295".into(),
                })
            }
            Some(id) => id,
            None => default_server_id(&host_name(), fifo),
        };
        Ok(Some(BinlogConfig { source, server_id }))
    }

    /// The source as logs and STATS name it.
    pub fn source_name(&self) -> String {
        match &self.source.socket {
            Some(s) => format!("socket {s}"),
            None => format!("{}:{}", self.source.host, self.source.port),
        }
    }
}

/// This host's name (for the default server id).
fn host_name() -> String {
    // uname(2)'s nodename, as the kernel keeps it.
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// A server id from the host name and the request FIFO's path: stable across restarts
/// (FNV-1a, not the standard library's randomly keyed hash), different for two daemons of
/// one host, in 1_000_000..2^31 (clear of the small ids servers are usually given).
pub fn default_server_id(host: &str, fifo: &std::path::Path) -> u32 {
    use std::os::unix::ffi::OsStrExt;
    let mut h: u32 = 0x811c_9dc5;
    for b in host.as_bytes().iter().chain(b"\0").chain(fifo.as_os_str().as_bytes()) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    1_000_000 + h % (0x7fff_ffff - 1_000_000)
}

/// What the reader tells the I/O thread.
#[derive(Debug)]
pub enum Message {
    /// Evict these (a row event at `time`, Unix seconds in the binlog).
    Evict { targets: Vec<Target>, time: u32 },
    /// Flush everything: what the stream missed is unknown. `gap`: it could not resume
    /// where it stopped (otherwise it came up after the daemon ran without it).
    Flush { why: String, gap: bool },
}

/// The running reader: its messages and its state.
#[derive(Debug)]
pub struct Reader {
    /// What it found.
    pub rx: Receiver<Message>,
    /// Its state, for PING and STATS.
    pub status: StatusHandle,
}

/// Starts the reader thread.
///
/// # Errors
/// The thread could not be started.
pub fn start(cfg: BinlogConfig, waker: Waker) -> std::io::Result<Reader> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let status = Arc::new(Mutex::new(InvalidationStatus {
        state: "down".into(),
        reason: Some("connecting".into()),
        source: cfg.source_name(),
        server_id: cfg.server_id,
        ..InvalidationStatus::default()
    }));
    let mut r = Tail {
        cfg,
        tx,
        waker,
        status: status.clone(),
        position: None,
        source_id: None,
        warned: None,
        metadata_warned: false,
    };
    std::thread::Builder::new().name("binlog".into()).spawn(move || r.run())?;
    Ok(Reader { rx, status })
}

/// Why a session ended.
#[derive(Debug)]
enum Stop {
    /// The server's settings or the user's grants do not allow it: what to set.
    Settings(String),
    /// The connection or the stream failed.
    Failed(String),
    /// The saved position is gone (purged, or another server).
    CannotResume(String),
}

/// `@@log_bin`, `@@binlog_format`, `@@binlog_row_image`, `@@server_id`.
type ServerSettings = (Option<String>, Option<String>, Option<String>, Option<u32>);

/// The reader's state across sessions.
struct Tail {
    cfg: BinlogConfig,
    tx: Sender<Message>,
    waker: Waker,
    status: StatusHandle,
    /// Where the next session starts: after the last transaction read.
    position: Option<(String, u64)>,
    /// The source's `@@server_id` at the last session.
    source_id: Option<u32>,
    /// The last reason logged for being down (said once until it changes).
    warned: Option<String>,
    metadata_warned: bool,
}

impl Tail {
    fn run(&mut self) {
        let mut wait = RETRY_MIN;
        loop {
            let began = Instant::now();
            let stop = self.session();
            let (reason, pause) = match stop {
                Stop::CannotResume(why) => {
                    log::warn!("invalidation: {why}: flushing the cache once and reading from the current position");
                    self.position = None;
                    self.send(Message::Flush { why, gap: true });
                    continue;
                }
                // Settings are fixed by hand: look again now and then.
                Stop::Settings(r) => (r, RETRY_MAX),
                Stop::Failed(r) => (r, wait),
            };
            // A session that ran a while starts the back-off afresh.
            if began.elapsed() > Duration::from_secs(30) {
                wait = RETRY_MIN;
            }
            self.down(reason);
            std::thread::sleep(pause);
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InvalidationStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, m: Message) {
        if self.tx.send(m).is_ok() {
            self.waker.wake();
        }
    }

    fn down(&mut self, reason: String) {
        let was_up = {
            let mut s = self.lock();
            let was = s.state == "up";
            s.state = "down".into();
            s.reason = Some(reason.clone());
            was
        };
        if was_up || self.warned.as_deref() != Some(reason.as_str()) {
            log::warn!(
                "invalidation stream from {} down: {reason}; answers live out their TTLs until it is back",
                self.cfg.source_name()
            );
            self.warned = Some(reason);
        }
    }

    fn up(&mut self, file: &str, pos: u64, resumed: bool) {
        {
            let mut s = self.lock();
            s.state = "up".into();
            s.reason = None;
            s.connects += 1;
            s.position = Some(format!("{file}:{pos}"));
        }
        log::info!(
            "invalidation stream up from {} as server id {}, {} {file}:{pos}",
            self.cfg.source_name(),
            self.cfg.server_id,
            if resumed { "resuming at" } else { "from the current position" }
        );
        self.warned = None;
    }

    fn save(&mut self, file: &str, pos: u64) {
        self.position = Some((file.to_string(), pos));
        self.lock().position = Some(format!("{file}:{pos}"));
    }

    /// Checks what the stream needs; returns the source's current position and server id.
    fn check(&mut self, conn: &mut Conn) -> Result<(String, u64, u32), Stop> {
        let src = self.cfg.source_name();
        let failed = |e: mysql::Error| Stop::Failed(format!("{src}: {e}"));
        let row: Option<ServerSettings> = conn
            .query_first(
                "SELECT CAST(@@log_bin AS CHAR), @@binlog_format, @@binlog_row_image, @@server_id",
            )
            .map_err(failed)?;
        let (log_bin, format, image, server_id) = row.unwrap_or_default();
        let mut missing = Vec::new();
        if !matches!(log_bin.as_deref(), Some("1" | "ON" | "on")) {
            missing.push(format!("log_bin is off on {src}: start it with log_bin and a server_id"));
        }
        let format = format.unwrap_or_default();
        if !format.eq_ignore_ascii_case("ROW") {
            missing.push(format!(
                "binlog_format is {format} on {src}: set binlog_format=ROW (SET GLOBAL binlog_format=ROW and in the server's configuration)"
            ));
        }
        let image = image.unwrap_or_default();
        if !image.eq_ignore_ascii_case("FULL") {
            missing
                .push(format!("binlog_row_image is {image} on {src}: set binlog_row_image=FULL"));
        }
        let grants: Vec<String> = conn.query("SHOW GRANTS").map_err(failed)?;
        let may_stream = grants.iter().any(|g| {
            let g = g.to_ascii_uppercase();
            g.contains("ALL PRIVILEGES ON *.*")
                || g.contains("REPLICATION SLAVE")
                || g.contains("REPLICATION REPLICA")
        });
        if !may_stream {
            missing.push(format!(
                "{} may not read the binlog: GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO it (REPLICATION CLIENT instead of BINLOG MONITOR on MySQL)",
                self.cfg.source.user
            ));
        }
        let status: Result<Option<mysql::Row>, _> = conn.query_first("SHOW MASTER STATUS");
        let current = match status {
            Ok(Some(r)) => {
                let file: Option<String> = r.get(0);
                let pos: Option<u64> = r.get(1);
                file.zip(pos)
            }
            Ok(None) => None,
            Err(mysql::Error::MySqlError(e)) if e.code == 1227 => {
                missing.push(format!(
                    "{} may not read the binlog position: GRANT BINLOG MONITOR ON *.* TO it (REPLICATION CLIENT on MySQL)",
                    self.cfg.source.user
                ));
                None
            }
            Err(e) => return Err(failed(e)),
        };
        if !missing.is_empty() {
            return Err(Stop::Settings(missing.join("; ")));
        }
        let Some((file, pos)) = current else {
            return Err(Stop::Settings(format!(
                "{src} reports no binlog position: start it with log_bin"
            )));
        };
        // Column names in the row events: without them rows are read by position.
        let metadata: Result<Option<String>, _> = conn.query_first("SELECT @@binlog_row_metadata");
        let metadata = metadata.ok().flatten().unwrap_or_else(|| "unknown".into());
        if !metadata.eq_ignore_ascii_case("FULL") && !self.metadata_warned {
            self.metadata_warned = true;
            log::warn!("invalidation: binlog_row_metadata is {metadata} on {src}: set binlog_row_metadata=FULL; until then rows are read by IndiMail's column order");
        }
        Ok((file, pos, server_id.unwrap_or(0)))
    }

    /// Whether the source still has `file` and it reaches `pos` (`SHOW BINARY LOGS` on a
    /// connection of its own); `None` when it cannot tell.
    fn still_there(&self, file: &str, pos: u64) -> Option<bool> {
        let mut conn = Conn::new(OptsBuilder::from_opts(self.cfg.source.opts())).ok()?;
        let logs: Vec<mysql::Row> = conn.query("SHOW BINARY LOGS").ok()?;
        // None listed: a server between its shutdown and its start, not a purge.
        if logs.is_empty() {
            return None;
        }
        Some(logs.iter().any(|r| {
            r.get::<String, _>(0).as_deref() == Some(file)
                && r.get::<u64, _>(1).is_some_and(|size| size >= pos)
        }))
    }

    /// One connection: check, stream until it fails.
    fn session(&mut self) -> Stop {
        let src = self.cfg.source_name();
        let opts = OptsBuilder::from_opts(self.cfg.source.opts());
        let mut conn = match Conn::new(opts) {
            Ok(c) => c,
            Err(e) => return Stop::Failed(format!("connect to {src}: {e}")),
        };
        let (cur_file, cur_pos, server_id) = match self.check(&mut conn) {
            Ok(c) => c,
            Err(stop) => return stop,
        };
        if let Some(old) = self.source_id.filter(|old| *old != server_id) {
            self.source_id = Some(server_id);
            if self.position.is_some() {
                return Stop::CannotResume(format!(
                    "{src} is another server (server id {old}, now {server_id})"
                ));
            }
        }
        self.source_id = Some(server_id);
        let resuming = self.position.is_some();
        let (mut file, mut pos) = self.position.clone().unwrap_or((cur_file, cur_pos));
        let heartbeat = format!("SET @master_heartbeat_period = {}", HEARTBEAT.as_nanos());
        if let Err(e) = conn.query_drop(heartbeat) {
            return Stop::Failed(format!("{src}: setting the heartbeat: {e}"));
        }
        let request = BinlogRequest::new(self.cfg.server_id)
            .with_filename(file.clone().into_bytes())
            .with_pos(pos);
        let mut stream = match conn.get_binlog_stream(request) {
            Ok(s) => s,
            Err(e) => return Stop::Failed(format!("{src}: binlog dump: {e}")),
        };
        let database = self.cfg.source.database.clone();
        let mut up = false;
        let mut seen_fde = false;
        loop {
            let event = match stream.next() {
                None => return Stop::Failed(format!("{src} ended the stream")),
                Some(Ok(e)) => e,
                Some(Err(mysql::Error::MySqlError(e))) if e.code == 1236 && !up && resuming => {
                    // 1236 also comes from a server shutting down or starting ("binary log
                    // is not open"): only a position that is gone from its binlogs is a gap.
                    return match self.still_there(&file, pos) {
                        Some(false) => Stop::CannotResume(format!(
                            "{src} cannot resume at {file}:{pos} ({})",
                            e.message
                        )),
                        _ => Stop::Failed(format!("{src}: {}", e.message)),
                    };
                }
                Some(Err(mysql::Error::MySqlError(e))) if e.code == 1236 && !up => {
                    return Stop::Settings(format!("{src}: {}", e.message))
                }
                Some(Err(e)) => return Stop::Failed(format!("{src}: {e}")),
            };
            if !up {
                up = true;
                self.up(&file, pos, resuming);
                // Where it started is where it resumes, until a transaction is read.
                self.save(&file, pos);
                if !resuming {
                    // Answers cached before the stream was up may be stale already.
                    let why = "invalidation stream up at the current position".to_string();
                    self.send(Message::Flush { why, gap: false });
                }
            }
            let header = event.header();
            let artificial = header.flags_raw() & 0x20 != 0 || header.log_pos() == 0;
            let data = match event.read_data() {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => {
                    log::debug!(
                        "invalidation: an event of type {} unread: {e}",
                        header.event_type_raw()
                    );
                    continue;
                }
            };
            match data {
                // The first (fake) rotate, sent before the format description, is read as
                // if it had no checksum, so its name ends in the checksum's bytes; it only
                // names the file asked for. Later ones switch files.
                EventData::FormatDescriptionEvent(_) => seen_fde = true,
                EventData::RotateEvent(r) if seen_fde => {
                    file = r.name().into_owned();
                    pos = r.position();
                    self.save(&file, pos);
                }
                EventData::XidEvent(_) if !artificial => {
                    pos = u64::from(header.log_pos());
                    self.save(&file, pos);
                }
                EventData::QueryEvent(q) => {
                    let query = q.query();
                    if q.schema() == database || query.contains(database.as_str()) {
                        let targets = invalidate::statement_targets(&query);
                        if !targets.is_empty() {
                            self.lock().statements += 1;
                            log::info!(
                                "invalidation: a statement on {:?}: evicting their kinds",
                                invalidate::statement_tables(&query)
                            );
                            self.send(Message::Evict { targets, time: header.timestamp() });
                        }
                    }
                    if !artificial
                        && !query
                            .trim_start()
                            .get(..5)
                            .is_some_and(|w| w.eq_ignore_ascii_case("BEGIN"))
                    {
                        pos = u64::from(header.log_pos());
                        self.save(&file, pos);
                    }
                }
                EventData::RowsEvent(re) => {
                    let Some(tme) = stream.get_tme(re.table_id()) else {
                        log::debug!("invalidation: a row event without its table map");
                        continue;
                    };
                    let table = tme.table_name().to_lowercase();
                    if tme.database_name() != database || !invalidate::watched(&table) {
                        continue;
                    }
                    let mut targets: Vec<Target> = Vec::new();
                    let mut readable = true;
                    for images in re.rows(tme) {
                        let Ok((before, after)) = images else {
                            readable = false;
                            break;
                        };
                        for image in [before, after].into_iter().flatten() {
                            match invalidate::row_targets(&table, &row(&image)) {
                                Some(ts) => {
                                    for t in ts {
                                        if !targets.contains(&t) {
                                            targets.push(t);
                                        }
                                    }
                                }
                                None => readable = false,
                            }
                        }
                    }
                    if !readable {
                        log::warn!("invalidation: a row of {table} could not be read: evicting every answer it feeds");
                        targets.extend(invalidate::table_kinds(&table));
                    }
                    self.lock().events += 1;
                    self.send(Message::Evict { targets, time: header.timestamp() });
                }
                _ => {}
            }
        }
    }
}

/// A row image as [`invalidate::row_targets`] reads it: names and text values.
fn row(image: &mysql::binlog::row::BinlogRow) -> Row {
    use mysql::binlog::value::BinlogValue;
    use mysql::Value;
    let mut cols = Vec::with_capacity(image.len());
    for (i, c) in image.columns_ref().iter().enumerate() {
        let v = match image.as_ref(i) {
            Some(BinlogValue::Value(Value::Bytes(b))) => {
                Some(String::from_utf8_lossy(b).into_owned())
            }
            Some(BinlogValue::Value(Value::Int(n))) => Some(n.to_string()),
            Some(BinlogValue::Value(Value::UInt(n))) => Some(n.to_string()),
            _ => None,
        };
        cols.push((c.name_str().into_owned(), v));
    }
    Row(cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_default_server_id_is_stable_and_differs_per_fifo() {
        let a = default_server_id("mx1", Path::new("/run/indimail/inlookup/infifo"));
        assert_eq!(a, default_server_id("mx1", Path::new("/run/indimail/inlookup/infifo")));
        assert_ne!(a, default_server_id("mx1", Path::new("/run/indimail/inlookup/infifo2")));
        assert_ne!(a, default_server_id("mx2", Path::new("/run/indimail/inlookup/infifo")));
        assert!((1_000_000..0x7fff_ffff).contains(&a));
    }

    #[test]
    fn invalidate_from_and_the_server_id() {
        let m = MysqlSettings { host: "db1".into(), port: 3307, ..MysqlSettings::default() };
        let f = Path::new("/x/infifo");
        assert!(BinlogConfig::resolve("off", Some("r1"), None, &m, f).unwrap().is_none());
        let c = BinlogConfig::resolve("binlog", None, None, &m, f).unwrap().unwrap();
        assert_eq!(
            (c.source_name(), c.server_id),
            ("db1:3307".into(), default_server_id(&host_name(), f))
        );
        let c = BinlogConfig::resolve("binlog", Some("r1:3310"), Some(7), &m, f).unwrap().unwrap();
        assert_eq!((c.source_name(), c.server_id), ("r1:3310".into(), 7));
        assert_eq!(c.source.database, m.database, "the lookups' database and user");
        let c = BinlogConfig::resolve("binlog", Some("r2"), None, &m, f).unwrap().unwrap();
        assert_eq!(c.source_name(), "r2:3307", "the primary's port by default");
        for bad in ["r1:x", "r1:0", ":3306"] {
            let e =
                BinlogConfig::resolve("binlog", Some(bad), None, &m, f).unwrap_err().to_string();
            assert!(e.starts_with("INVALIDATE_FROM"), "{bad}: {e}");
        }
        let e = BinlogConfig::resolve("binlog", None, Some(0), &m, f).unwrap_err().to_string();
        assert!(e.starts_with("INVALIDATE_SERVER_ID"), "{e}");
    }
}
