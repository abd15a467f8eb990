//! # refresh: refresh-ahead's effect on the misses of a hot set at a short TTL
//!
//! Issue 13 asked for REFRESH_AHEAD's effect to be measured: a positive answer asked again
//! in the last PERCENT of its TTL is looked up again in the background while the cached one
//! is served, so a hot key should never miss. This runs the same daemon binary with
//! REFRESH_AHEAD=0 (off) and with the percentages given, side by side, rounds alternating:
//! client threads ask PWD of random users of a small hot set at a short PWD TTL, and it
//! reports per setting the share of requests that missed (from STATS: misses over
//! requests), the refreshes started, and the client's p50/p99/p99.9.
//!
//! `scripts/bench.sh --only refresh` runs it (about a minute) and writes
//! `docs/bench/refresh.md`. It creates the database `inl_refresh_bench` on the bench's
//! MariaDB and drops it at the end.
//!
//! Arguments: `--mysql HOST:PORT` (required), `--clients N` (4), `--hot N` (200 users),
//! `--ttl S` (PWD's positive TTL, 2), `--secs S` per round (6), `--rounds R` (2),
//! `--percents 20,50` (beside 0), `--out DIR` (docs/bench).

#[path = "common.rs"]
#[allow(dead_code)]
mod common;

use common::{
    admin_conn, arg, cmd, fifo_client, num, pct, pwd_load, release_inlookup, root, spawn_inlookup,
    CommonRes,
};
use mysql::prelude::Queryable;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DB: &str = "inl_refresh_bench";
const DOMAIN: &str = "example.com";

fn prepare(c: &mut mysql::Conn, hot: u64) -> CommonRes<()> {
    let schema = std::fs::read_to_string(root().join("sql/schema.sql"))?;
    c.query_drop(format!("DROP DATABASE IF EXISTS {DB}"))?;
    c.query_drop(format!("CREATE DATABASE {DB}"))?;
    c.query_drop(format!("USE {DB}"))?;
    c.query_drop(&schema)?;
    c.query_drop(format!(
        "INSERT INTO indimail (pw_name, pw_domain, pw_passwd, pw_uid, pw_gid, pw_gecos, \
         pw_dir, pw_shell) SELECT CONCAT('h', seq), '{DOMAIN}', SHA2(seq, 256), 1, 0, \
         'Hot User', CONCAT('/home/mail/h', seq), '524288000' FROM seq_1_to_{hot}"
    ))?;
    Ok(())
}

/// One daemon of the comparison.
struct Daemon {
    percent: u8,
    spawned: common::Running,
}

fn start(
    bin: &Path,
    dir: &Path,
    (host, port): (&str, u16),
    percent: u8,
    ttl: u64,
) -> CommonRes<Daemon> {
    let env = [
        ("REFRESH_AHEAD", percent.to_string()),
        ("CACHE_TTL", format!("pwd={ttl}/1")),
        ("REAL_DOMAINS", DOMAIN.to_string()),
        ("SHARED_CACHE", "off".to_string()),
        ("ASSIGNDIR", dir.join("users").display().to_string()),
    ];
    let spawned = common::Running(spawn_inlookup(bin, dir, (host, port, DB), &env)?);
    let d = Daemon { percent, spawned };
    d.spawned.wait_ready(&format!("REFRESH_AHEAD={percent}"))?;
    Ok(d)
}

/// PWD's counters: requests, misses, refreshes started.
fn counters(d: &Daemon) -> (u64, u64, u64) {
    let c = fifo_client(&d.spawned.fifo, &d.spawned.tmp, Duration::from_secs(2));
    c.stats()
        .ok()
        .and_then(|s| s.kinds.get("pwd").map(|k| (k.requests, k.misses, k.refreshed_ahead)))
        .unwrap_or_default()
}

/// `clients` threads asking PWD of random hot users for `secs`: latencies (µs) and errors.
fn round(d: &Daemon, clients: usize, secs: f64, hot: u64) -> (Vec<f64>, u64) {
    let (lat, errors, _) = pwd_load(&d.spawned, clients, secs, hot, |i| format!("h{i}@{DOMAIN}"));
    (lat, errors)
}

fn main() -> CommonRes<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mysql = arg(&args, "mysql").ok_or("--mysql HOST:PORT is required")?;
    let (host, port) = mysql.rsplit_once(':').ok_or("--mysql HOST:PORT")?;
    let port: u16 = port.parse()?;
    let clients = num(&args, "clients", 4usize)?;
    let hot = num(&args, "hot", 200u64)?;
    let ttl = num(&args, "ttl", 2u64)?;
    let secs = num(&args, "secs", 6.0f64)?;
    let rounds = num(&args, "rounds", 2usize)?;
    let mut percents = vec![0u8];
    for p in arg(&args, "percents").unwrap_or("20,50").split(',') {
        percents.push(p.trim().parse().map_err(|_| format!("--percents {p:?}"))?);
    }
    let out = arg(&args, "out").map_or_else(|| root().join("docs/bench"), PathBuf::from);
    let bin = release_inlookup()?;
    let mut admin = admin_conn(host, port)?;
    eprintln!("refresh bench: preparing {hot} users on {host}:{port}");
    prepare(&mut admin, hot)?;
    let base = std::env::temp_dir().join(format!("inl-refresh-bench-{}", std::process::id()));
    let result = (|| -> CommonRes<String> {
        let mut daemons = Vec::new();
        for (i, p) in percents.iter().enumerate() {
            daemons.push(start(&bin, &base.join(format!("d{i}")), (host, port), *p, ttl)?);
        }
        // Warm: every hot key cached once (their misses are not counted below).
        for d in &daemons {
            round(d, clients, 1.0, hot);
        }
        let mut lat: Vec<Vec<f64>> = vec![Vec::new(); daemons.len()];
        let mut errors = vec![0u64; daemons.len()];
        let mut seen = vec![(0u64, 0u64, 0u64); daemons.len()];
        for r in 0..rounds {
            for k in 0..daemons.len() {
                let i = (k + r) % daemons.len(); // the order rotates
                let d = &daemons[i];
                let before = counters(d);
                let (l, e) = round(d, clients, secs, hot);
                let after = counters(d);
                eprintln!(
                    "refresh bench: round {} REFRESH_AHEAD={}: {} answers",
                    r + 1,
                    d.percent,
                    l.len()
                );
                seen[i].0 += after.0 - before.0;
                seen[i].1 += after.1 - before.1;
                seen[i].2 += after.2 - before.2;
                errors[i] += e;
                lat[i].extend(l);
            }
        }
        let mut md = String::from("# Refresh-ahead: the misses of a hot set at a short TTL\n\n");
        md.push_str(&format!(
            "`scripts/bench.sh --only refresh` ({}). {clients} client threads asking PWD of \
             random users of a hot set of {hot}, PWD's positive TTL {ttl} s, {rounds} rounds \
             of {secs} s per setting, the order rotating, after one warm-up second each; the \
             same daemon binary, REFRESH_AHEAD as given. Misses and refreshes are the \
             daemon's own STATS counters over the rounds. A setting idles while the others run, \
             so its entries expire between rounds: {} misses ({hot} keys × {rounds} rounds) \
             are each key's first ask of a round whatever the setting, and refresh-ahead can \
             remove only the misses beyond them. Load average at the end: {}.\n\n",
            cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            hot * rounds as u64,
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        ));
        md.push_str(
            "| REFRESH_AHEAD | requests | misses | miss rate | refreshes | p50 µs | p99 µs | p99.9 µs | errors |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for (i, d) in daemons.iter().enumerate() {
            let mut l = std::mem::take(&mut lat[i]);
            l.sort_by(f64::total_cmp);
            let (req, miss, refr) = seen[i];
            let label =
                if d.percent == 0 { "0 (off)".to_string() } else { format!("{} %", d.percent) };
            md.push_str(&format!(
                "| {label} | {req} | {miss} | {:.3} % | {refr} | {:.1} | {:.1} | {:.1} | {} |\n",
                100.0 * miss as f64 / (req.max(1)) as f64,
                pct(&l, 0.5),
                pct(&l, 0.99),
                pct(&l, 0.999),
                errors[i]
            ));
        }
        Ok(md)
    })();
    let _ = admin.query_drop(format!("DROP DATABASE IF EXISTS {DB}"));
    let _ = std::fs::remove_dir_all(&base);
    let md = result?;
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("refresh.md"), &md)?;
    println!("{md}");
    eprintln!("refresh bench: wrote {}", out.join("refresh.md").display());
    Ok(())
}
