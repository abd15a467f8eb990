//! What a run produced: settings, versions, measurements and the goals judged from them.
//! Serialised as `results.json`; `report` renders it again.

use crate::case::{Case, IMAP_NOT_MEASURED};
use crate::procfs::Machine;
use crate::stats::Cell;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How this run is set up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    /// Rounds of the matrix.
    pub rounds: usize,
    /// Seconds per case per round per client count.
    pub secs: f64,
    /// Client process counts.
    pub clients: Vec<usize>,
    /// Users asked in the matrix (the hot set, 1..=hot).
    pub hot_keys: u64,
    /// Generated users in the database.
    pub users: u64,
    /// Hits counted for the daemon's CPU, per client count.
    pub cpu_hits: u64,
    /// Client counts for the daemon's CPU.
    pub cpu_clients: Vec<usize>,
    /// Distinct keys of the 90 %-hit MariaDB CPU run (each asked 10 times).
    pub mdb_keys: u64,
    /// Lookups of each "without inlookup" MariaDB CPU run.
    pub mdb_without: u64,
    /// Client processes for the MariaDB CPU runs and the RSS fill.
    pub load_clients: usize,
    /// Cache sizes for the RSS measurement.
    pub rss_sizes: Vec<u64>,
    /// Quick development run.
    pub quick: bool,
    /// The daemons' settings beyond the defaults.
    pub daemon_env: BTreeMap<String, String>,
    /// Where the request and reply FIFOs live, and its filesystem.
    pub fifo_dir: String,
}

/// Versions of everything measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Versions {
    /// inlookup (PING).
    pub inlookup: String,
    /// MariaDB (SELECT VERSION()).
    pub mariadb: String,
    /// The mysql crate (Cargo.lock).
    pub mysql_crate: String,
    /// rustc -V.
    pub rustc: String,
    /// git describe of the tree measured (with -dirty when it had changes).
    pub git: String,
}

/// How busy the machine was with things other than this run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sharing {
    /// Wall time of the whole run, s.
    pub wall_s: f64,
    /// CPU the machine spent, all processes, s.
    pub machine_cpu_s: f64,
    /// CPU of this run: the bench, its workers, daemons, echo server (and MariaDB when it
    /// is the bench's own), s.
    pub ours_cpu_s: f64,
    /// The rest, s.
    pub others_cpu_s: f64,
    /// `others_cpu_s` as a share of the machine's capacity over the run.
    pub others_share: f64,
    /// /proc/loadavg at the start and the end.
    pub loadavg: [String; 2],
}

/// A FIFO server's CPU per request at one client count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonCpu {
    /// Which server: `inlookup` (hits), `echo` (the floor), `echo-checked` (the floor plus
    /// the daemon's reply-path checks).
    pub server: String,
    /// Client processes.
    pub clients: usize,
    /// Requests answered in the window (for inlookup: hits it counted).
    pub hits: u64,
    /// Misses inlookup counted in the window (should be 0).
    pub misses: u64,
    /// utime + stime, µs.
    pub cpu_us: f64,
    /// Per hit, µs.
    pub us_per_hit: f64,
    /// Per 100,000 hits, ms.
    pub ms_per_100k: f64,
    /// Wall time, s.
    pub wall_s: f64,
    /// Lookup requests that reached the daemon in the window (0 for the shared-memory
    /// rows: their hits never wake it).
    #[serde(default)]
    pub reached_daemon: u64,
}

/// MariaDB's statements per miss of one kind (`Com_select` before and after).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SelectRow {
    /// The kind asked (`pwd`, `user`).
    pub kind: String,
    /// Misses made (distinct users, one client, `CACHE_ENTRIES=0`).
    pub misses: u64,
    /// MariaDB's `Com_select` over them.
    pub com_select: u64,
    /// Per miss.
    pub per_miss: f64,
}

/// MariaDB's CPU for one way of making lookups.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MariadbRow {
    /// What was measured.
    pub label: String,
    /// Lookups made by the clients.
    pub lookups: u64,
    /// Of those, how many reached MariaDB.
    pub reached_mysql: u64,
    /// mariadbd utime + stime over the window, ms.
    pub cpu_ms: f64,
    /// Less the idle rate times the window, ms.
    pub cpu_ms_net: f64,
    /// Net, per 10,000 lookups, ms.
    pub ms_per_10k: f64,
    /// Wall time, s.
    pub wall_s: f64,
}

/// MariaDB's CPU measurement.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MariadbCpu {
    /// mariadbd's pid.
    pub pid: u32,
    /// Whether it was the bench's own instance (nobody else's queries in the numbers).
    pub own_instance: bool,
    /// Its idle CPU, ms per s (subtracted).
    pub idle_ms_per_s: f64,
    /// The runs.
    pub rows: Vec<MariadbRow>,
}

/// Resident memory at one cache size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RssRow {
    /// Entries in the cache (STATS).
    pub entries: u64,
    /// VmRSS, bytes.
    pub rss: u64,
    /// Over the empty-cache base, bytes.
    pub over_base: i64,
    /// Per entry, bytes.
    pub per_entry: f64,
}

/// The RSS measurement.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rss {
    /// CACHE_ENTRIES of the daemon measured.
    pub capacity: u64,
    /// VmRSS with workers connected and the cache empty, bytes.
    pub base: u64,
    /// One row per size.
    pub rows: Vec<RssRow>,
    /// Slope between the two largest sizes, bytes per entry (the per-entry cost without
    /// the hash table's one-off pages).
    pub marginal_per_entry: Option<f64>,
    /// Bytes of one PWD reply as cached.
    pub reply_bytes: usize,
    /// Bytes of one cache key.
    pub key_bytes: usize,
    /// Seconds the fill took.
    pub fill_s: f64,
    /// The shared-memory cache's pages in the daemon's RSS at the largest size (RssShmem),
    /// left out of VmRSS above: the shared cache is a budget of its own (SHARED_CACHE_MB).
    #[serde(default)]
    pub shared_rss: u64,
}

/// How the IMAP runs were set up, so neither inlookup's pool nor Dovecot's limits cap the
/// throughput at the largest client count.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImapSetup {
    /// Client process counts of the IMAP runs (the matrix's, and 1).
    pub clients: Vec<usize>,
    /// The two IMAP daemons' settings beyond the defaults (`IMAP_MAX_CONNECTIONS`,
    /// `IMAP_WORKERS`).
    pub daemon_env: String,
    /// The Dovecots' environment for `scripts/dovecot.sh start` beyond `DOVECOT_REUSE`.
    pub dovecot_env: String,
}

/// One goal of the issue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Goal {
    /// The goal as the issue states it.
    pub goal: String,
    /// What was measured, in words and numbers.
    pub measured: String,
    /// The ratio compared with the bound.
    pub ratio: Option<f64>,
    /// The bound.
    pub bound: String,
    /// Met, missed, or not measured.
    pub verdict: String,
}

/// Everything a run produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    /// UTC, ISO 8601.
    pub date: String,
    /// The command that produced this.
    pub command: String,
    /// The machine.
    pub machine: Machine,
    /// Versions.
    pub versions: Versions,
    /// Settings.
    pub settings: Option<Settings>,
    /// Other load on the machine.
    pub sharing: Sharing,
    /// The matrix.
    pub cells: Vec<Cell>,
    /// Why the IMAP rows are missing (empty when they were measured).
    pub imap: String,
    /// The IMAP rows, one client each, in `imap::RUNS` order.
    #[serde(default)]
    pub imap_cells: Vec<Cell>,
    /// The IMAP runs at every client count of `imap_setup.clients`, run by run in
    /// `imap::RUNS` order (the one-client cells are those of `imap_cells`).
    #[serde(default)]
    pub imap_throughput: Vec<Cell>,
    /// How the IMAP runs were set up.
    #[serde(default)]
    pub imap_setup: ImapSetup,
    /// `dovecot --version`.
    #[serde(default)]
    pub dovecot: String,
    /// CPU per request of inlookup (hits) and of the echo servers.
    pub daemon_cpu: Vec<DaemonCpu>,
    /// Statements per miss (issue 11: one SELECT per USER or PWD miss).
    #[serde(default)]
    pub selects: Vec<SelectRow>,
    /// The profile's what-if runs (one client).
    pub whatif: Vec<Cell>,
    /// MariaDB's CPU.
    pub mariadb_cpu: MariadbCpu,
    /// The daemon's RSS.
    pub rss: Rss,
    /// The goals.
    pub goals: Vec<Goal>,
    /// Seconds building the database (0 when reused).
    pub db_build_s: f64,
}

impl Results {
    /// The cell of a case at a client count.
    pub fn cell(&self, case: Case, clients: usize) -> Option<&Cell> {
        self.cells.iter().find(|c| c.case == case.name() && c.clients == clients)
    }

    /// Why the IMAP rows are missing: the recorded reason, or [`IMAP_NOT_MEASURED`] when a
    /// run recorded none.
    pub fn imap_missing(&self) -> &str {
        if self.imap.is_empty() {
            IMAP_NOT_MEASURED
        } else {
            &self.imap
        }
    }
}

fn ratio_goal(
    goal: &str,
    measured: String,
    ratio: Option<f64>,
    bound: &str,
    ok: impl Fn(f64) -> bool,
) -> Goal {
    let verdict = match ratio {
        Some(x) if x.is_finite() && ok(x) => "met",
        Some(x) if x.is_finite() => "missed",
        _ => "not measured",
    };
    Goal { goal: goal.into(), measured, ratio, bound: bound.into(), verdict: verdict.into() }
}

/// The goals, judged from this run.
pub fn goals(r: &Results) -> Vec<Goal> {
    let p50 = |c: Case| r.cell(c, 1).map(|x| x.p50_us);
    let tp = |c: Case, n: usize| r.cell(c, n).map(|x| x.throughput);
    let mut g = Vec::new();
    let (floor, hit, miss, raw) =
        (p50(Case::Floor), p50(Case::Hit), p50(Case::Miss), p50(Case::Raw));
    let (dd, dt) = (p50(Case::DirectDefault), p50(Case::DirectTuned));
    let div = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    g.push(ratio_goal(
        "hit p50 ≤ 1.2 × floor p50",
        format!("hit {:.1} µs, floor {:.1} µs", hit.unwrap_or(0.0), floor.unwrap_or(0.0)),
        div(hit, floor),
        "≤ 1.2",
        |x| x <= 1.2,
    ));
    let (th, tf) = (tp(Case::Hit, 16), tp(Case::Floor, 16));
    g.push(ratio_goal(
        "hit throughput ≥ 0.8 × floor at 16 clients",
        format!("hit {:.0} req/s, floor {:.0} req/s", th.unwrap_or(0.0), tf.unwrap_or(0.0)),
        div(th, tf),
        "≥ 0.8",
        |x| x >= 0.8,
    ));
    let fr = floor.zip(raw).map(|(a, b)| a + b);
    g.push(ratio_goal(
        "miss p50 ≤ 1.2 × (floor + raw persistent) p50",
        format!("miss {:.1} µs, floor + raw {:.1} µs", miss.unwrap_or(0.0), fr.unwrap_or(0.0)),
        div(miss, fr),
        "≤ 1.2",
        |x| x <= 1.2,
    ));
    g.push(ratio_goal(
        "direct per-lookup latency ≥ 3 × hit latency (p50, tuned options)",
        format!(
            "direct tuned {:.1} µs ({:.1} ×), crate defaults {:.1} µs ({:.1} ×), hit {:.1} µs",
            dt.unwrap_or(0.0),
            div(dt, hit).unwrap_or(0.0),
            dd.unwrap_or(0.0),
            div(dd, hit).unwrap_or(0.0),
            hit.unwrap_or(0.0)
        ),
        div(dt, hit),
        "≥ 3",
        |x| x >= 3.0,
    ));
    let row = |label: &str| {
        r.mariadb_cpu.rows.iter().find(|x| x.label.starts_with(label)).map(|x| x.ms_per_10k)
    };
    let (with, tuned, pers) =
        (row("with inlookup"), row("without: fresh connection, tuned"), row("without: persistent"));
    g.push(ratio_goal(
        "MariaDB CPU with inlookup at 90 % hits ≤ 1/10 of without (fresh connection per lookup, tuned)",
        format!(
            "{:.1} ms vs {:.1} ms per 10,000 lookups (vs a persistent connection: {:.1} ms, ratio {:.3})",
            with.unwrap_or(0.0),
            tuned.unwrap_or(0.0),
            pers.unwrap_or(0.0),
            div(with, pers).unwrap_or(f64::NAN)
        ),
        div(with, tuned),
        "≤ 0.1",
        |x| x <= 0.1,
    ));
    let imap = |label: &str| r.imap_cells.iter().find(|c| c.case == label).map(|c| c.p50_us);
    let [(reused_f, ..), (fresh_f, ..), (reused_r, ..), (fresh_r, ..), (_, _, _), (open_r, ..)] =
        crate::imap::RUNS;
    let (fresh, reused) = (imap(fresh_r), imap(reused_r));
    g.push(ratio_goal(
        "reused IMAP command ≥ 10 × faster than a fresh login (process-reusing Dovecot)",
        if r.imap_cells.is_empty() {
            r.imap_missing().into()
        } else {
            format!(
                "p50: fresh login {:.0} µs, inlookup session {:.0} µs (own open connection: \
                 {:.0} µs); on the forking Dovecot {:.0} µs against {:.0} µs ({:.1} ×)",
                fresh.unwrap_or(0.0),
                reused.unwrap_or(0.0),
                imap(open_r).unwrap_or(0.0),
                imap(fresh_f).unwrap_or(0.0),
                imap(reused_f).unwrap_or(0.0),
                div(imap(fresh_f), imap(reused_f)).unwrap_or(0.0)
            )
        },
        div(fresh, reused),
        "≥ 10",
        |x| x >= 10.0,
    ));
    let per = |k: &str| r.selects.iter().find(|s| s.kind == k).map(|s| s.per_miss);
    let worst_sel = per("pwd").zip(per("user")).map(|(a, b)| a.max(b));
    g.push(ratio_goal(
        "one SELECT per USER and per PWD miss (MariaDB's Com_select)",
        r.selects
            .iter()
            .map(|s| {
                format!(
                    "{}: {} over {} misses ({:.3} each)",
                    s.kind, s.com_select, s.misses, s.per_miss
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        worst_sel,
        "≤ 1.01 (the first miss of a domain also asks its alias domain)",
        |x| x <= 1.01,
    ));
    let (mp, mc) = (p50(Case::Mapped), p50(Case::MappedC));
    let worst_mapped = mp.zip(mc).map(|(a, b)| a.max(b));
    g.push(ratio_goal(
        "shared-memory hit p50 ≤ 2 µs and ≥ 25 × faster than the FIFO floor (Rust client and inquery())",
        format!(
            "Rust {:.2} µs, inquery() {:.2} µs, FIFO floor {:.1} µs, FIFO hit {:.1} µs: floor / worst = {:.0} ×",
            mp.unwrap_or(0.0),
            mc.unwrap_or(0.0),
            floor.unwrap_or(0.0),
            hit.unwrap_or(0.0),
            div(floor, worst_mapped).unwrap_or(0.0)
        ),
        worst_mapped.zip(floor).map(|(w, f)| if w <= 2.0 { f / w } else { 0.0 }),
        "≥ 25 (and the p50 ≤ 2 µs)",
        |x| x >= 25.0,
    ));
    let (tm, tmc) = (tp(Case::Mapped, 16), tp(Case::MappedC, 16));
    g.push(ratio_goal(
        "shared-memory hit throughput at 16 clients ≥ 10 × the FIFO hit's",
        format!(
            "Rust {:.0} req/s, inquery() {:.0} req/s, FIFO hit {:.0} req/s",
            tm.unwrap_or(0.0),
            tmc.unwrap_or(0.0),
            th.unwrap_or(0.0)
        ),
        div(tm.zip(tmc).map(|(a, b)| a.min(b)), th),
        "≥ 10",
        |x| x >= 10.0,
    ));
    let mapped_rows: Vec<&DaemonCpu> =
        r.daemon_cpu.iter().filter(|d| d.server.starts_with("inlookup, shared")).collect();
    g.push(ratio_goal(
        "daemon CPU per shared-memory hit: 0 (no request reaches it)",
        mapped_rows
            .iter()
            .map(|d| {
                format!(
                    "{}: {} hits, {} reached the daemon, {:.0} ms of its CPU at {} client(s)",
                    d.server,
                    d.hits,
                    d.reached_daemon,
                    d.cpu_us / 1000.0,
                    d.clients
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        (!mapped_rows.is_empty()).then(|| {
            mapped_rows.iter().map(|d| d.us_per_hit + d.reached_daemon as f64).fold(0.0, f64::max)
        }),
        "≤ 0.001 µs per hit, nothing reaching it",
        |x| x <= 0.001,
    ));
    let daemon: Vec<&DaemonCpu> = r.daemon_cpu.iter().filter(|d| d.server == "inlookup").collect();
    let worst = daemon
        .iter()
        .map(|d| d.us_per_hit)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    g.push(ratio_goal(
        "daemon CPU ≤ 10 µs per hit",
        daemon
            .iter()
            .map(|d| {
                let floor =
                    r.daemon_cpu.iter().find(|e| e.server == "echo" && e.clients == d.clients);
                format!(
                    "{:.2} µs at {} client(s) (echo server: {:.2} µs)",
                    d.us_per_hit,
                    d.clients,
                    floor.map_or(0.0, |e| e.us_per_hit)
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        worst.map(|w| w / 10.0),
        "≤ 1 (worst case / 10 µs)",
        |x| x <= 1.0,
    ));
    let last = r.rss.rows.last();
    g.push(ratio_goal(
        "RSS ≤ 300 bytes per cached PWD entry beyond a fixed base",
        match last {
            Some(l) => format!(
                "{:.0} B per entry at {} entries over the empty-cache base (hash table included); \
                 marginal {} B per entry",
                l.per_entry,
                l.entries,
                r.rss.marginal_per_entry.map_or_else(|| "–".into(), |m| format!("{m:.0}"))
            ),
            None => "not measured".into(),
        },
        last.map(|l| l.per_entry / 300.0),
        "≤ 1 (bytes / 300)",
        |x| x <= 1.0,
    ));
    g
}
