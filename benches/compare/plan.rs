//! The orchestrator: sets everything up, runs the latency/throughput matrix, the CPU and
//! memory measurements, judges the goals and writes the results.

use crate::case::{Case, IMAP_NOT_MEASURED};
use crate::cli::Args;
use crate::procfs;
use crate::report;
use crate::results::{goals, DaemonCpu, MariadbRow, Results, Rss, RssRow, Settings};
use crate::setup::{self, pwd_body, run_workers, Amount, Db, RunDir, Server, Target};
use crate::stats::{Cell, CellAcc};
use crate::worker::Outcome;
use crate::Res;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `compare help`.
pub const USAGE: &str = "\
compare: inlookup benchmarks (normally run by scripts/bench.sh)

  cargo bench --bench compare -- run --mysql HOST:PORT [options]

  --mysql HOST:PORT      MariaDB with root and no password (required)
  --mariadb-pid PID      its mariadbd pid (default: read from @@pid_file)
  --own-mariadb          the MariaDB is the bench's own (say so in the report)
  --db NAME              bench database (default inl_bench; rebuilt when it differs)
  --inlookup PATH        daemon binary (default target/release/inlookup)
  --out DIR              where results.{md,json,svg} go (default docs/bench;
                         target/bench-quick with --quick)
  --tmp DIR              where the FIFO directories go (default /dev/shm when it is a
                         tmpfs, else $TMPDIR)
  --rounds N             rounds of the matrix and the what-if runs (default 5)
  --secs S               seconds per case per round (default 2)
  --clients LIST         client process counts (default 1,4,16,64)
  --rss LIST             cache sizes for the RSS measurement (default 10000,100000,1000000;
                         0 skips it)
  --only LIST            run only these parts: matrix,cpu,mariadb,whatif,imap,rss
                         (default all)
  --quick                short development run: 1 round, 0.5 s, clients 1,4,
                         fewer lookups for CPU, RSS at 10000 only
  --command TEXT         the command line to record in the report

  cargo bench --bench compare -- report [--out DIR]
                         render results.md and results.svg again from DIR/results.json
                         and docs/bench/findings.md, measuring nothing";

fn cmd_output(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .current_dir(setup::root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn mysql_crate_version() -> String {
    let lock = std::fs::read_to_string(setup::root().join("Cargo.lock")).unwrap_or_default();
    let mut it = lock.lines();
    while let Some(l) = it.next() {
        if l == "name = \"mysql\"" {
            if let Some(v) = it.next().and_then(|v| v.strip_prefix("version = ")) {
                return v.trim_matches('"').to_string();
            }
        }
    }
    String::new()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string()
}

/// Merges a batch into a cell's accumulator.
pub fn absorb(acc: &mut CellAcc, outs: Vec<Outcome>) {
    let mut rate = 0.0;
    for o in outs {
        if o.elapsed > Duration::ZERO {
            rate += o.ok as f64 / o.elapsed.as_secs_f64();
        }
        acc.ok += o.ok;
        acc.errors += o.errors;
        if acc.first_error.is_empty() {
            acc.first_error = o.first_error;
        }
        acc.latencies.extend_from_slice(&o.latencies);
    }
    acc.rounds.push(rate);
}

fn total_ok(outs: &[Outcome]) -> u64 {
    outs.iter().map(|o| o.ok).sum()
}

fn total_errors(outs: &[Outcome]) -> (u64, String) {
    let n = outs.iter().map(|o| o.errors).sum();
    let e = outs.iter().find(|o| !o.first_error.is_empty()).map(|o| o.first_error.clone());
    (n, e.unwrap_or_default())
}

/// Fails when a batch that must be clean had errors.
fn clean(what: &str, outs: &[Outcome]) -> Res<()> {
    let (n, e) = total_errors(outs);
    if n > 0 {
        return Err(format!("{what}: {n} requests failed, first: {e}").into());
    }
    Ok(())
}

/// The servers and targets of a run.
struct Rig {
    db: Db,
    echo: Server,
    /// The echo server doing the daemon's reply-path checks (profile only).
    checked: Server,
    hit: Server,
    miss: Server,
}

impl Rig {
    fn target(&self, case: Case) -> Target {
        match case {
            Case::Floor => Target::fifo(case, &self.echo),
            Case::Hit | Case::Mapped | Case::MappedC => Target::fifo(case, &self.hit),
            Case::Miss | Case::MissUser => Target::fifo(case, &self.miss),
            _ => Target::mysql(case, &self.db),
        }
    }
}

/// Writes `out_dir`/results.md (with the current docs/bench/findings.md) and results.svg.
fn render(out_dir: &Path, r: &Results) -> Res<()> {
    let findings = std::fs::read_to_string(setup::root().join("docs/bench/findings.md")).ok();
    std::fs::write(out_dir.join("results.md"), report::markdown(r, findings.as_deref()))?;
    std::fs::write(out_dir.join("results.svg"), report::svg(r))?;
    Ok(())
}

/// `report [--out DIR]`: renders results.md and results.svg again from DIR/results.json and
/// the current docs/bench/findings.md (after the findings were edited), without measuring.
pub fn rerender(args: &[String]) -> Res<()> {
    let a = Args::parse(args)?;
    let out_dir = a.get("out").map_or_else(|| setup::root().join("docs/bench"), PathBuf::from);
    let r: Results = serde_json::from_str(&std::fs::read_to_string(out_dir.join("results.json"))?)?;
    render(&out_dir, &r)?;
    eprintln!("bench: rendered {}/results.{{md,svg}} from results.json", out_dir.display());
    Ok(())
}

/// `run`.
pub fn main(args: &[String]) -> Res<()> {
    let a = Args::parse(args)?;
    let t_run = Instant::now();
    let quick = a.flag("quick");
    let (mysql_host, mysql_port) = a.host_port("mysql")?;
    let out_dir = a.get("out").map_or_else(
        || setup::root().join(if quick { "target/bench-quick" } else { "docs/bench" }),
        PathBuf::from,
    );
    let fifo_base = a.get("tmp").map_or_else(setup::default_fifo_base, PathBuf::from);
    let inlookup = a
        .get("inlookup")
        .map_or_else(|| setup::root().join("target/release/inlookup"), PathBuf::from);
    if !inlookup.exists() {
        return Err(format!(
            "{} not built (cargo build --release -p inlookup)",
            inlookup.display()
        )
        .into());
    }
    let rss_default: &[u64] = if quick { &[10_000] } else { &[10_000, 100_000, 1_000_000] };
    let mut rss_sizes: Vec<u64> = a.list("rss", rss_default)?;
    rss_sizes.retain(|n| *n > 0);
    rss_sizes.sort_unstable();
    let load_clients = 8usize;
    let only: Vec<String> = a.list("only", &[])?;
    let part = |p: &str| only.is_empty() || only.iter().any(|o| o == p);
    let clients_default: &[usize] = if quick { &[1, 4] } else { &[1, 4, 16, 64] };
    let mut settings = Settings {
        rounds: a.or("rounds", if quick { 1 } else { 5 })?,
        secs: a.or("secs", if quick { 0.5 } else { 2.0 })?,
        clients: a.list("clients", clients_default)?,
        hot_keys: 1024,
        users: 1_000_000,
        cpu_hits: if quick { 10_000 } else { 100_000 },
        cpu_clients: if quick { vec![1] } else { vec![1, 16] },
        mdb_keys: if quick { 1_000 } else { 5_000 },
        mdb_without: if quick { 4_000 } else { 20_000 },
        load_clients,
        rss_sizes,
        quick,
        daemon_env: BTreeMap::new(),
        fifo_dir: String::new(),
    };
    if settings.clients.iter().any(|c| *c == 0 || settings.hot_keys % *c as u64 != 0) {
        return Err("--clients: each count must divide 1024".into());
    }
    if let Some(&max) = settings.rss_sizes.last() {
        if max > settings.users {
            return Err(format!("--rss: at most {} entries", settings.users).into());
        }
    }

    let mut r = Results {
        command: a
            .get("command")
            .unwrap_or("cargo bench --bench compare -- run")
            .trim()
            .to_string(),
        date: cmd_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        machine: procfs::machine(),
        imap: IMAP_NOT_MEASURED.to_string(),
        dovecot: crate::imap::dovecot_version(),
        ..Results::default()
    };
    r.versions.mariadb = setup::mariadb_version(&mysql_host, mysql_port)?;
    r.versions.mysql_crate = mysql_crate_version();
    r.versions.rustc = cmd_output("rustc", &["-V"]);
    r.versions.git = cmd_output("git", &["describe", "--always", "--dirty"]);

    let mdb_pid = match a.get("mariadb-pid") {
        Some(p) => p.parse()?,
        None => setup::mariadb_pid(&mysql_host, mysql_port)?,
    };
    let own = a.flag("own-mariadb");
    r.mariadb_cpu.pid = mdb_pid;
    r.mariadb_cpu.own_instance = own;

    let start_machine = procfs::machine_ticks()?;
    let start_ours = procfs::own_and_children_cpu();
    let start_mdb = procfs::cpu_ticks(mdb_pid)?;
    r.sharing.loadavg[0] = loadavg();

    let db =
        Db::prepare(&mysql_host, mysql_port, a.get("db").unwrap_or("inl_bench"), settings.users)?;
    r.db_build_s = db.build_time.as_secs_f64();
    db.warm(1, settings.hot_keys + 1)?;

    let run = RunDir::new(&fifo_base)?;
    // The hit daemon keeps its entries for the whole run (the default PWD TTL, 300 s, is
    // shorter than a full run); everything else is inlookup's default.
    let hit_env = [("CACHE_TTL", "pwd=86400/20".to_string())];
    let miss_env = [("CACHE_ENTRIES", "0".to_string())];
    settings.fifo_dir = format!("{} ({})", run.0.display(), setup::fs_type(&run.0));
    for (label, [(k, v)]) in [("hit", &hit_env), ("miss", &miss_env)] {
        settings.daemon_env.insert(label.into(), format!("{k}={v}"));
    }
    let rig = Rig {
        echo: Server::echo(&run, "echo", &pwd_body(1), false)?,
        checked: Server::echo(&run, "echo-checked", &pwd_body(1), true)?,
        hit: Server::daemon(&inlookup, &run, "hit", &db, &hit_env)?,
        miss: Server::daemon(&inlookup, &run, "miss", &db, &miss_env)?,
        db,
    };
    r.versions.inlookup = rig.hit.client().ping()?.version;

    // Warm the hit daemon's cache with the hot set, and check every case answers.
    let hot_end = settings.hot_keys + 1;
    eprintln!("bench: warming the cache with {} users", settings.hot_keys);
    let outs = run_workers(
        &rig.target(Case::Hit),
        4,
        1,
        hot_end,
        Amount::Requests(settings.hot_keys / 4),
    )?;
    clean("warming", &outs)?;
    for case in Case::MEASURED {
        let outs = run_workers(&rig.target(case), 1, 1, hot_end, Amount::Requests(3))?;
        clean(&format!("checking {case}"), &outs)?;
    }
    let warm = rig.hit.stats()?.totals();
    if warm.misses != settings.hot_keys {
        return Err(
            format!("warming: {} misses, expected {}", warm.misses, settings.hot_keys).into()
        );
    }

    if part("matrix") {
        r.cells = matrix(&rig, &settings)?;
        let after = rig.hit.stats()?.totals();
        if after.misses != warm.misses {
            eprintln!(
                "bench: warning: the hit daemon missed {} times during the matrix",
                after.misses - warm.misses
            );
        }
    }
    if part("cpu") {
        r.daemon_cpu = daemon_cpu(&rig, &settings)?;
    }
    if part("mariadb") {
        r.selects = selects(&rig, &settings)?;
        r.mariadb_cpu.rows =
            mariadb_cpu(&rig, &settings, mdb_pid, &mut r.mariadb_cpu.idle_ms_per_s)?;
    }
    if part("whatif") {
        r.whatif = whatif(&rig, &settings)?;
    }
    let Rig { db, echo, checked, hit, miss } = rig;
    drop((echo, checked, hit, miss));
    if part("imap") {
        // Dovecot is a guest here: without it, the rest of the run still counts.
        let (rounds, secs) = (settings.rounds, settings.secs);
        match crate::imap::measure(&inlookup, &run, &db, rounds, secs, &settings.clients) {
            Ok(m) => {
                r.imap_cells = m.one;
                r.imap_throughput = m.by_clients;
                r.imap_setup = m.setup;
                r.imap.clear();
            }
            Err(e) => {
                eprintln!("bench: IMAP not measured: {e}");
                r.imap = format!("not measured: {e}");
            }
        }
    }
    if part("rss") && !settings.rss_sizes.is_empty() {
        r.rss = rss(&inlookup, &run, &db, &settings)?;
    }

    // Everything we started is reaped now, so its CPU is in our children's rusage.
    let end_machine = procfs::machine_ticks()?;
    let ours = procfs::own_and_children_cpu() - start_ours;
    let mdb =
        if own { procfs::ticks(procfs::cpu_ticks(mdb_pid)? - start_mdb) } else { Duration::ZERO };
    let machine_cpu = procfs::ticks(end_machine.0 - start_machine.0);
    let capacity = procfs::ticks(end_machine.1 - start_machine.1);
    r.sharing.wall_s = t_run.elapsed().as_secs_f64();
    r.sharing.machine_cpu_s = machine_cpu.as_secs_f64();
    r.sharing.ours_cpu_s = (ours + mdb).as_secs_f64();
    r.sharing.others_cpu_s = (r.sharing.machine_cpu_s - r.sharing.ours_cpu_s).max(0.0);
    r.sharing.others_share = r.sharing.others_cpu_s / capacity.as_secs_f64().max(1e-9);
    r.sharing.loadavg[1] = loadavg();
    r.settings = Some(settings);
    r.goals = goals(&r);

    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("results.json"), serde_json::to_string_pretty(&r)? + "\n")?;
    render(&out_dir, &r)?;
    eprintln!(
        "bench: wrote {}/results.{{md,json,svg}} in {:.0} s",
        out_dir.display(),
        r.sharing.wall_s
    );
    for g in &r.goals {
        eprintln!("bench: {:<8} {} ({})", g.verdict, g.goal, g.measured);
    }
    Ok(())
}

/// Rounds × client counts × cases, the case order rotating so no case always runs first
/// or last.
fn matrix(rig: &Rig, s: &Settings) -> Res<Vec<Cell>> {
    let mut acc: BTreeMap<(Case, usize), CellAcc> = BTreeMap::new();
    let cases = Case::MEASURED;
    let total = s.rounds * s.clients.len() * cases.len();
    let mut done = 0;
    for round in 0..s.rounds {
        for (ci, &clients) in s.clients.iter().enumerate() {
            let shift = (round + ci) % cases.len();
            for k in 0..cases.len() {
                let case = cases[(shift + k) % cases.len()];
                let outs = run_workers(
                    &rig.target(case),
                    clients,
                    1,
                    s.hot_keys + 1,
                    Amount::Secs(s.secs),
                )?;
                done += 1;
                let ok = total_ok(&outs);
                eprintln!(
                    "bench: [{done}/{total}] round {} {case:>14} × {clients:<2} {:>9.0} req/s",
                    round + 1,
                    ok as f64 / s.secs
                );
                absorb(acc.entry((case, clients)).or_default(), outs);
            }
        }
    }
    Ok(acc.into_iter().map(|((case, clients), a)| a.finish(case.name(), clients)).collect())
}

/// utime + stime over `cpu_hits` requests, at each client count: inlookup answering hits,
/// and for reference the echo server with and without the daemon's reply-path checks.
fn daemon_cpu(rig: &Rig, s: &Settings) -> Res<Vec<DaemonCpu>> {
    let mut rows = Vec::new();
    for &clients in &s.cpu_clients {
        let per = s.cpu_hits / clients as u64;
        for (server, srv, case) in [
            ("inlookup", &rig.hit, Case::Hit),
            ("inlookup, shared cache (Rust)", &rig.hit, Case::Mapped),
            ("inlookup, shared cache (inquery())", &rig.hit, Case::MappedC),
            ("echo", &rig.echo, Case::Floor),
            ("echo-checked", &rig.checked, Case::Floor),
        ] {
            let is_daemon = case != Case::Floor;
            let before = if is_daemon { Some(srv.stats()?.totals()) } else { None };
            let pid = srv.pid();
            let t0 = procfs::cpu_ticks(pid)?;
            let wall = Instant::now();
            let outs = run_workers(
                &Target::fifo(case, srv),
                clients,
                1,
                s.hot_keys + 1,
                Amount::Requests(per),
            )?;
            let wall = wall.elapsed();
            let t1 = procfs::cpu_ticks(pid)?;
            clean("CPU per request", &outs)?;
            let (hits, misses, reached) = match before {
                Some(b) if case == Case::Hit => {
                    let a = srv.stats()?.totals();
                    (a.hits - b.hits, a.misses - b.misses, a.requests - b.requests - 1)
                }
                Some(b) => {
                    // Hits read from the mapping: the daemon counts none of them.
                    let a = srv.stats()?.totals();
                    (total_ok(&outs), a.misses - b.misses, a.requests - b.requests - 1)
                }
                None => (total_ok(&outs), 0, total_ok(&outs)),
            };
            let cpu_us = procfs::ticks(t1 - t0).as_secs_f64() * 1e6;
            let us_per_hit = cpu_us / hits.max(1) as f64;
            eprintln!(
                "bench: CPU, {server}, {clients} clients: {hits} requests, {us_per_hit:.2} µs each"
            );
            rows.push(DaemonCpu {
                server: server.into(),
                clients,
                hits,
                misses,
                cpu_us,
                us_per_hit,
                ms_per_100k: us_per_hit * 100.0,
                wall_s: wall.as_secs_f64(),
                reached_daemon: reached,
            });
        }
    }
    Ok(rows)
}

/// One client, alternating: the matrix's FIFO cases next to the same with the what-if
/// client (no sleep before reading the reply) and the echo server doing the daemon's
/// reply-path checks. For the profile: what each costs.
fn whatif(rig: &Rig, s: &Settings) -> Res<Vec<Cell>> {
    let runs: Vec<(&str, Target)> = vec![
        ("floor", Target::fifo(Case::Floor, &rig.echo)),
        ("floor, no client sleep", Target::fifo(Case::Floor, &rig.echo).lean()),
        ("floor + daemon's reply checks", Target::fifo(Case::Floor, &rig.checked)),
        ("hit", Target::fifo(Case::Hit, &rig.hit)),
        ("hit, no client sleep", Target::fifo(Case::Hit, &rig.hit).lean()),
        ("miss", Target::fifo(Case::Miss, &rig.miss)),
        ("miss, no client sleep", Target::fifo(Case::Miss, &rig.miss).lean()),
        ("raw", Target::mysql(Case::Raw, &rig.db)),
    ];
    let mut acc: Vec<CellAcc> = runs.iter().map(|_| CellAcc::default()).collect();
    for round in 0..s.rounds {
        for k in 0..runs.len() {
            let i = (k + round) % runs.len();
            let outs = run_workers(&runs[i].1, 1, 1, s.hot_keys + 1, Amount::Secs(s.secs))?;
            eprintln!(
                "bench: what-if round {} {:<30} {:>7.0} req/s",
                round + 1,
                runs[i].0,
                total_ok(&outs) as f64 / s.secs
            );
            absorb(&mut acc[i], outs);
        }
    }
    Ok(acc.into_iter().zip(&runs).map(|(a, (label, _))| a.finish(label, 1)).collect())
}

/// MariaDB's `Com_select` per miss of PWD and of USER: distinct users never asked before,
/// one client, through the miss daemon.
fn selects(rig: &Rig, s: &Settings) -> Res<Vec<crate::results::SelectRow>> {
    let n = if s.quick { 500 } else { 2_000 };
    let mut conn = setup::admin_conn(&rig.db.host, rig.db.port)?;
    let mut com_select = || -> Res<u64> {
        use mysql::prelude::Queryable;
        let row: Option<(String, u64)> =
            conn.query_first("SHOW GLOBAL STATUS LIKE 'Com_select'")?;
        Ok(row.ok_or("no Com_select")?.1)
    };
    let mut rows = Vec::new();
    for (kind, case, first) in [("pwd", Case::Miss, 300_001), ("user", Case::MissUser, 400_001)] {
        let before = com_select()?;
        let outs = run_workers(&rig.target(case), 1, first, first + n, Amount::Requests(n))?;
        clean(&format!("{kind} misses"), &outs)?;
        let selects = com_select()? - before;
        let per_miss = selects as f64 / n as f64;
        eprintln!("bench: {kind} misses: {selects} SELECTs over {n} ({per_miss:.3} each)");
        rows.push(crate::results::SelectRow {
            kind: kind.into(),
            misses: n,
            com_select: selects,
            per_miss,
        });
    }
    Ok(rows)
}

/// mariadbd's CPU: through inlookup at a 90 % hit rate (each of `mdb_keys` fresh keys
/// asked 10 times: one miss, nine hits), and without inlookup (persistent connection,
/// fresh connection tuned, fresh connection with crate defaults).
fn mariadb_cpu(rig: &Rig, s: &Settings, pid: u32, idle_ms_per_s: &mut f64) -> Res<Vec<MariadbRow>> {
    // Keys no case has asked yet, far from the hot set.
    let (first, end) = (100_001, 100_001 + s.mdb_keys);
    rig.db.warm(first, end)?;
    let idle_window = Duration::from_secs(3);
    let t0 = procfs::cpu_ticks(pid)?;
    std::thread::sleep(idle_window);
    let idle = procfs::ticks(procfs::cpu_ticks(pid)? - t0);
    *idle_ms_per_s = idle.as_secs_f64() * 1e3 / idle_window.as_secs_f64();
    let c = s.load_clients;
    let runs: [(&str, Case, u64); 4] = [
        ("with inlookup, 90 % hits", Case::Hit, s.mdb_keys * 10),
        ("without: persistent connection", Case::Raw, s.mdb_without),
        ("without: fresh connection, tuned", Case::DirectTuned, s.mdb_without),
        ("without: fresh connection, crate defaults", Case::DirectDefault, s.mdb_without),
    ];
    let mut rows = Vec::new();
    for (label, case, lookups) in runs {
        let before = rig.hit.stats()?.totals();
        let t0 = procfs::cpu_ticks(pid)?;
        let wall = Instant::now();
        let outs =
            run_workers(&rig.target(case), c, first, end, Amount::Requests(lookups / c as u64))?;
        let wall = wall.elapsed();
        let t1 = procfs::cpu_ticks(pid)?;
        clean(label, &outs)?;
        let after = rig.hit.stats()?.totals();
        let reached = if case == Case::Hit { after.misses - before.misses } else { lookups };
        if case == Case::Hit
            && (reached != s.mdb_keys || after.hits - before.hits != lookups - s.mdb_keys)
        {
            eprintln!(
                "bench: warning: expected {} misses and {} hits, got {reached} and {}",
                s.mdb_keys,
                lookups - s.mdb_keys,
                after.hits - before.hits
            );
        }
        let cpu_ms = procfs::ticks(t1 - t0).as_secs_f64() * 1e3;
        let net = (cpu_ms - *idle_ms_per_s * wall.as_secs_f64()).max(0.0);
        let row = MariadbRow {
            label: label.into(),
            lookups,
            reached_mysql: reached,
            cpu_ms,
            cpu_ms_net: net,
            ms_per_10k: net * 10_000.0 / lookups as f64,
            wall_s: wall.as_secs_f64(),
        };
        eprintln!("bench: MariaDB CPU, {label}: {:.1} ms per 10,000 lookups", row.ms_per_10k);
        rows.push(row);
    }
    Ok(rows)
}

/// A daemon with room for the largest size: VmRSS with its workers connected and the
/// cache empty, then after filling it to each size with PWD lookups of generated users.
fn rss(inlookup: &Path, run: &RunDir, db: &Db, s: &Settings) -> Res<Rss> {
    let cap = *s.rss_sizes.last().ok_or("no sizes")?;
    let env = [("CACHE_ENTRIES", cap.to_string())];
    let d = Server::daemon(inlookup, run, "rss", db, &env)?;
    let pid = d.pid();
    let c = 32usize;
    // Connect every worker (a fixed cost), then empty the cache again.
    let outs = run_workers(&Target::fifo(Case::Hit, &d), 16, 1, 1 + 16 * 64, Amount::Requests(64))?;
    clean("RSS warm-up", &outs)?;
    d.client().flush(None, None)?;
    std::thread::sleep(Duration::from_millis(200));
    let base = procfs::vm_rss(pid)?;
    let mut out = Rss {
        capacity: cap,
        base,
        reply_bytes: crate::echo::reply_bytes(&pwd_body(1)).len(),
        key_bytes: inlookup_core::cache_key(
            inlookup_core::QueryKind::Pwd,
            &setup::email(1),
            "",
            None,
        )
        .len(),
        ..Rss::default()
    };
    let t = Instant::now();
    let mut filled = 0u64;
    for &n in &s.rss_sizes {
        let add = n - filled;
        let lanes = (1..=c).rev().find(|l| add % *l as u64 == 0).unwrap_or(1);
        eprintln!("bench: RSS: filling the cache to {n} entries");
        let outs = run_workers(
            &Target::fifo(Case::Miss, &d),
            lanes,
            filled + 1,
            n + 1,
            Amount::Requests(add / lanes as u64),
        )?;
        clean("RSS fill", &outs)?;
        filled = n;
        std::thread::sleep(Duration::from_millis(200));
        let entries = d.stats()?.cache_entries;
        let rss = procfs::vm_rss(pid)?;
        let over = rss as i64 - base as i64;
        eprintln!(
            "bench: RSS: {entries} entries, VmRSS {} KiB, {:.0} B per entry over base",
            rss / 1024,
            over as f64 / entries.max(1) as f64
        );
        out.rows.push(RssRow {
            entries,
            rss,
            over_base: over,
            per_entry: over as f64 / entries.max(1) as f64,
        });
    }
    out.fill_s = t.elapsed().as_secs_f64();
    out.shared_rss = procfs::shmem_rss(pid).unwrap_or(0);
    if let [.., a, b] = &out.rows[..] {
        out.marginal_per_entry =
            Some((b.rss as f64 - a.rss as f64) / (b.entries as f64 - a.entries as f64).max(1.0));
    }
    drop(d);
    Ok(out)
}
