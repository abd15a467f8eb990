//! # cluster: a connection per worker per database against a pool per database
//!
//! Issue 11 asked which a clustered site should have: each worker with its own connection
//! to every database it uses (W × D connections, no lock, no wait), or a small pool per
//! database shared by the workers (MYSQL_POOL_PER_DB=N: N × D connections, a lock and a
//! possible wait per statement). This measures both side by side on one MariaDB holding a
//! central database and two mail stores: the same daemon binary, `CACHE_ENTRIES=0` (every
//! request is a miss: `hostcntrl` and `host_table` on the central database, then the PWD
//! row on the user's store), the same client threads asking PWD of random users of a
//! distributed domain, rounds alternating between the settings. It reports p50/p99 and
//! throughput per setting and the MySQL connects each daemon made (its STATS
//! `mysql_connects`).
//!
//! `scripts/bench.sh --only cluster` runs it (about a minute) and writes
//! `docs/bench/cluster.md`. It creates the MySQL user `inlbench` (mcdinfo records need a
//! password) and the databases `inl_cl_central`, `inl_cl_a`, `inl_cl_b` on the bench's
//! MariaDB, and drops them at the end.
//!
//! Arguments: `--mysql HOST:PORT` (required), `--clients N` (16), `--workers N` (8),
//! `--secs S` per round (2), `--rounds R` (3), `--pools 2,4` (the pool sizes beside
//! per-worker), `--users N` (4000), `--out DIR` (docs/bench).

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

const DOMAIN: &str = "dist.example";
const DBS: [&str; 3] = ["inl_cl_central", "inl_cl_a", "inl_cl_b"];

/// The three databases: the schema in each, users split over the stores by parity, and
/// `hostcntrl`/`host_table` on the central one saying so.
fn prepare(c: &mut mysql::Conn, users: u64) -> CommonRes<()> {
    let schema = std::fs::read_to_string(root().join("sql/schema.sql"))?;
    for host in ["%", "localhost", "127.0.0.1"] {
        c.query_drop(format!("CREATE USER IF NOT EXISTS 'inlbench'@'{host}' IDENTIFIED BY 'pw'"))?;
        c.query_drop(format!("GRANT ALL PRIVILEGES ON `inl\\_cl\\_%`.* TO 'inlbench'@'{host}'"))?;
    }
    for db in DBS {
        c.query_drop(format!("DROP DATABASE IF EXISTS {db}"))?;
        c.query_drop(format!("CREATE DATABASE {db}"))?;
        c.query_drop(format!("USE {db}"))?;
        c.query_drop(&schema)?;
    }
    for (db, parity) in [("inl_cl_a", 0), ("inl_cl_b", 1)] {
        c.query_drop(format!(
            "INSERT INTO {db}.indimail (pw_name, pw_domain, pw_passwd, pw_uid, pw_gid, pw_gecos, \
             pw_dir, pw_shell) SELECT CONCAT('u', seq), '{DOMAIN}', SHA2(seq, 256), 1, 0, \
             'Bench User', CONCAT('/home/mail/u', seq), '524288000' \
             FROM seq_1_to_{users} WHERE seq % 2 = {parity}"
        ))?;
    }
    c.query_drop(format!(
        "INSERT INTO inl_cl_central.hostcntrl (pw_name, pw_domain, pw_passwd, host) \
         SELECT CONCAT('u', seq), '{DOMAIN}', 'x', IF(seq % 2 = 0, 'hostA', 'hostB') \
         FROM seq_1_to_{users}"
    ))?;
    c.query_drop(
        "INSERT INTO inl_cl_central.host_table (host, ipaddr) VALUES \
         ('hostA', '10.9.0.1'), ('hostB', '10.9.0.2')",
    )?;
    Ok(())
}

fn cleanup(c: &mut mysql::Conn) {
    for db in DBS {
        let _ = c.query_drop(format!("DROP DATABASE IF EXISTS {db}"));
    }
    for host in ["%", "localhost", "127.0.0.1"] {
        let _ = c.query_drop(format!("DROP USER IF EXISTS 'inlbench'@'{host}'"));
    }
}

/// One daemon of the comparison.
struct Daemon {
    label: String,
    spawned: common::Running,
}

fn start(
    bin: &Path,
    dir: &Path,
    (host, port): (&str, u16),
    label: &str,
    pool: usize,
    workers: usize,
) -> CommonRes<Daemon> {
    let control = dir.join("control");
    std::fs::create_dir_all(&control)?;
    std::fs::write(control.join("host.cntrl"), format!("{host}:inlbench:pw:{port}\n"))?;
    let record = |ip: &str, db: &str| {
        format!(
            "domain {DOMAIN} 1\nserver {host}\nmdahost {ip}\nport {port}\nuse_ssl 0\n\
             database {db}\nuser inlbench\npass pw\n\n"
        )
    };
    std::fs::write(
        control.join("mcdinfo"),
        record("10.9.0.1", "inl_cl_a") + &record("10.9.0.2", "inl_cl_b"),
    )?;
    let env = [
        ("CNTRL_DATABASE", "inl_cl_central".to_string()),
        ("REAL_DOMAINS", DOMAIN.to_string()),
        ("CACHE_ENTRIES", "0".to_string()),
        ("THREAD_COUNT", workers.to_string()),
        ("MYSQL_POOL_PER_DB", pool.to_string()),
        ("SHARED_CACHE", "off".to_string()),
        ("ASSIGNDIR", dir.join("users").display().to_string()),
    ];
    let spawned = common::Running(spawn_inlookup(bin, dir, (host, port, "inl_cl_a"), &env)?);
    let d = Daemon { label: label.to_string(), spawned };
    d.spawned.wait_ready(label)?;
    Ok(d)
}

/// `clients` threads asking PWD of random users for `secs`: latencies (µs) and errors.
fn round(d: &Daemon, clients: usize, secs: f64, users: u64) -> (Vec<f64>, u64, Duration) {
    pwd_load(&d.spawned, clients, secs, users, |i| format!("u{i}@{DOMAIN}"))
}

fn main() -> CommonRes<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mysql = arg(&args, "mysql").ok_or("--mysql HOST:PORT is required")?;
    let (host, port) = mysql.rsplit_once(':').ok_or("--mysql HOST:PORT")?;
    let port: u16 = port.parse()?;
    let clients = num(&args, "clients", 16usize)?;
    let workers = num(&args, "workers", 8usize)?;
    let secs = num(&args, "secs", 2.0f64)?;
    let rounds = num(&args, "rounds", 3usize)?;
    let users = num(&args, "users", 4000u64)?;
    let pools: Vec<usize> = arg(&args, "pools")
        .unwrap_or("2,4")
        .split(',')
        .map(|p| p.trim().parse::<usize>().map_err(|_| format!("--pools {p:?}")))
        .collect::<Result<_, _>>()?;
    let out = arg(&args, "out").map_or_else(|| root().join("docs/bench"), PathBuf::from);
    let bin = release_inlookup()?;
    let mut admin = admin_conn(host, port)?;
    eprintln!("cluster bench: preparing {users} users on {host}:{port}");
    prepare(&mut admin, users)?;
    let base = std::env::temp_dir().join(format!("inl-cluster-bench-{}", std::process::id()));
    let mut settings = vec![("a connection per worker per database".to_string(), 0usize)];
    settings.extend(pools.iter().map(|n| (format!("pool of {n} per database"), *n)));
    let result = (|| -> CommonRes<String> {
        let mut daemons = Vec::new();
        for (i, (label, pool)) in settings.iter().enumerate() {
            let dir = base.join(format!("d{i}"));
            daemons.push(start(&bin, &dir, (host, port), label, *pool, workers)?);
        }
        let mut lat: Vec<Vec<f64>> = vec![Vec::new(); daemons.len()];
        let mut done = vec![(0u64, 0u64, Duration::ZERO); daemons.len()];
        // Warm each daemon's connections (and MariaDB's buffer pool) once.
        for d in &daemons {
            round(d, clients, 0.5, users);
        }
        for r in 0..rounds {
            for k in 0..daemons.len() {
                let i = (k + r) % daemons.len(); // the order rotates
                let d = &daemons[i];
                let (l, errors, took) = round(d, clients, secs, users);
                eprintln!("cluster bench: round {} {}: {} answers", r + 1, d.label, l.len());
                done[i].0 += l.len() as u64;
                done[i].1 += errors;
                done[i].2 += took;
                lat[i].extend(l);
            }
        }
        let mut md = String::from(
            "# A clustered site's misses: a connection per worker against a pool per database\n\n",
        );
        md.push_str(&format!(
            "`scripts/bench.sh --only cluster` ({}). {clients} client threads asking PWD of \
             random users of {users} in a distributed domain (half on each of two mail store \
             databases), every request a miss (`CACHE_ENTRIES=0`: `hostcntrl` and \
             `host_table` on the central database, then the user's row on its store), \
             {workers} workers, {rounds} rounds of {secs} s per setting, the order rotating, \
             on one MariaDB holding the three databases. Connections: the daemon's own count \
             of MySQL connects (STATS `mysql_connects`, the start-up check's included) after \
             every round. Load average at the end: {} (another build or test on the \
             machine slows every setting alike; the ratios between them are what counts).\n\n",
            cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        ));
        md.push_str(
            "| setting | answers/s | p50 µs | p99 µs | errors | MySQL connects |\n\
             | --- | --- | --- | --- | --- | --- |\n",
        );
        for (i, d) in daemons.iter().enumerate() {
            let mut l = std::mem::take(&mut lat[i]);
            l.sort_by(f64::total_cmp);
            let rate = done[i].0 as f64 / done[i].2.as_secs_f64().max(1e-9);
            let c = fifo_client(&d.spawned.fifo, &d.spawned.tmp, Duration::from_secs(2));
            let connects = c.stats().map(|s| s.mysql_connects.to_string()).unwrap_or_default();
            md.push_str(&format!(
                "| {} | {:.0} | {:.1} | {:.1} | {} | {connects} |\n",
                d.label,
                rate,
                pct(&l, 0.5),
                pct(&l, 0.99),
                done[i].1
            ));
        }
        Ok(md)
    })();
    cleanup(&mut admin);
    let _ = std::fs::remove_dir_all(&base);
    let md = result?;
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("cluster.md"), &md)?;
    println!("{md}");
    eprintln!("cluster bench: wrote {}", out.join("cluster.md").display());
    Ok(())
}
