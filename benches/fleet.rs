//! # fleet: invalidation lag and failover time on a real primary and replica
//!
//! Issue 13's bench cases. It starts its own primary and replica MariaDB (scripts/mariadb.sh
//! with MARIADB_SERVER_ID: binlog on, ROW, log_slave_updates; `replicate`), the demo data,
//! and three daemons of the release build:
//!
//! - A reads the primary and tails its binlog (INVALIDATE=binlog), B reads the replica and
//!   tails the replica's; both cache every kind for a day, so only invalidation can show a
//!   change. `--changes N` times (default 50): an UPDATE of a user's password on the
//!   primary, then both daemons asked over and over (about every 0.2 ms) until each gives the
//!   new hash; the time from the UPDATE's return (its commit) to each daemon's first new
//!   answer is that daemon's invalidation lag (client side, end to end).
//! - C reads the replica with the primary behind it (MYSQL_REPLICAS), PWD uncached.
//!   `--kills N` times (default 3): the replica's mariadbd is killed (SIGKILL) and C asked
//!   until an answer comes; the time from the kill to that answer is the failover time.
//!   The replica is started again and C waits until it serves from it before the next kill.
//!
//! - Refresh-ahead: two daemons on the primary, PWD cached 5 s, REFRESH_AHEAD 0 and 20;
//!   each asked the PWD of a hot set of three users in turn (about every millisecond) for
//!   `--hot-secs S` (default 12): the share of requests that missed, from each daemon's
//!   STATS.
//!
//! `scripts/bench.sh --only fleet` runs it and writes `docs/bench/fleet.md`.

#[path = "common.rs"]
#[allow(dead_code)]
mod common;

use common::{
    admin_conn, arg, cmd, fifo_client, num, pct, root, spawn_inlookup, CommonRes, Spawned,
};
use inquery::Lookup;
use mysql::prelude::Queryable;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DB: &str = "inl_fleet_bench";

/// `scripts/mariadb.sh SUB DIR [ARG]` with `env`; its stdout.
fn mariadb_sh(sub: &str, dir: &Path, extra: &[String], env: &[(&str, &str)]) -> CommonRes<String> {
    let out = Command::new(root().join("scripts/mariadb.sh"))
        .arg(sub)
        .arg(dir)
        .args(extra)
        .envs(env.iter().copied())
        .output()?;
    if !out.status.success() {
        return Err(format!("mariadb.sh {sub}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn start_server(dir: &Path, id: &str, port: Option<u16>) -> CommonRes<u16> {
    let extra: Vec<String> = port.map(|p| p.to_string()).into_iter().collect();
    let out = mariadb_sh("start", dir, &extra, &[("MARIADB_SERVER_ID", id)])?;
    Ok(out.split_whitespace().nth(1).ok_or("mariadb.sh start: no port")?.parse()?)
}

struct Daemon {
    spawned: Spawned,
    client: inquery::Client,
}

impl Daemon {
    fn start(bin: &Path, dir: &Path, port: u16, env: &[(&str, String)]) -> CommonRes<Daemon> {
        let spawned = spawn_inlookup(bin, dir, ("127.0.0.1", port, DB), env)?;
        let client = fifo_client(&spawned.fifo, &spawned.tmp, Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(p) = client.ping() {
                let up =
                    p.invalidation.as_ref().is_none_or(|i| i.state == "up" || i.state == "off");
                if up {
                    return Ok(Daemon { spawned, client });
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&spawned.log).unwrap_or_default();
                return Err(format!("daemon in {} not ready:\n{log}", dir.display()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn hash(&self) -> Option<String> {
        self.client.passwd("alice@example.com").ok().flatten().map(|p| p.passwd)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.spawned.child.kill();
        let _ = self.spawned.child.wait();
    }
}

fn main() -> CommonRes<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let changes = num(&args, "changes", 50)?;
    let kills = num(&args, "kills", 3)?;
    let hot_secs = num(&args, "hot-secs", 12)?;
    let out = arg(&args, "out").map_or_else(|| root().join("docs/bench"), PathBuf::from);
    // target/release/deps/fleet-… → target/release/inlookup
    let exe = std::env::current_exe()?;
    let bin = exe.parent().and_then(Path::parent).ok_or("no target dir")?.join("inlookup");
    if !bin.exists() {
        return Err(
            format!("{} not built (cargo build --release -p inlookup)", bin.display()).into()
        );
    }
    let base = std::env::temp_dir().join(format!("inl-fleet-bench-{}", std::process::id()));
    let (pdir, rdir) = (base.join("primary"), base.join("replica"));
    let result = (|| -> CommonRes<String> {
        let pport = start_server(&pdir, "1", None)?;
        let rport = start_server(&rdir, "2", None)?;
        mariadb_sh("replicate", &rdir, &[pport.to_string()], &[])?;
        let mut admin = admin_conn("127.0.0.1", pport)?;
        admin.query_drop(format!("CREATE DATABASE {DB}"))?;
        admin.query_drop(format!("USE {DB}"))?;
        for f in ["sql/schema.sql", "sql/demo.sql"] {
            admin.query_drop(std::fs::read_to_string(root().join(f))?)?;
        }
        let mut radmin = admin_conn("127.0.0.1", rport)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while radmin
            .query_first::<u64, _>(format!("SELECT COUNT(*) FROM {DB}.relay"))
            .ok()
            .flatten()
            .unwrap_or(0)
            == 0
        {
            if Instant::now() > deadline {
                return Err("the replica never got the demo rows".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let day =
            "user=86400,relay=86400,pwd=86400,host=86400,alias=86400,limit=86400,domain=86400";
        let inv = |from: u16| {
            vec![
                ("INVALIDATE", "binlog".to_string()),
                ("INVALIDATE_FROM", format!("127.0.0.1:{from}")),
                ("CACHE_TTL", day.to_string()),
                ("SHARED_CACHE", "off".to_string()),
            ]
        };
        let a = Daemon::start(&bin, &base.join("a"), pport, &inv(pport))?;
        let b = Daemon::start(&bin, &base.join("b"), rport, &inv(rport))?;
        // Lag: an UPDATE's commit to each daemon's first new answer.
        let (mut la, mut lb) = (Vec::new(), Vec::new());
        let mut missed = 0usize;
        for i in 0..changes {
            let _ = (a.hash(), b.hash()); // cached
            let want = format!("$5$bench{i}");
            admin.exec_drop(
                "UPDATE indimail SET pw_passwd = ? WHERE pw_name = 'alice'",
                (want.as_str(),),
            )?;
            let t0 = Instant::now();
            let (mut da, mut db) = (None, None);
            while (da.is_none() || db.is_none()) && t0.elapsed() < Duration::from_secs(10) {
                if da.is_none() && a.hash().is_some_and(|h| h.ends_with(&want)) {
                    da = Some(t0.elapsed());
                }
                if db.is_none() && b.hash().is_some_and(|h| h.ends_with(&want)) {
                    db = Some(t0.elapsed());
                }
            }
            match (da, db) {
                (Some(x), Some(y)) => {
                    la.push(x.as_secs_f64() * 1e3);
                    lb.push(y.as_secs_f64() * 1e3);
                }
                _ => missed += 1,
            }
        }
        la.sort_by(f64::total_cmp);
        lb.sort_by(f64::total_cmp);
        drop((a, b));
        // Failover: the replica killed, C's next good answer.
        let c_env = vec![
            ("MYSQL_REPLICAS", format!("127.0.0.1:{rport}")),
            ("REPLICA_CHECK_SECS", "1".to_string()),
            ("CACHE_TTL", "pwd=0/0".to_string()),
            ("SHARED_CACHE", "off".to_string()),
        ];
        let c = Daemon::start(&bin, &base.join("c"), pport, &c_env)?;
        let mut failover = Vec::new();
        for _ in 0..kills {
            // Serving from the replica first.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let _ = c.hash();
                let p = c.client.ping()?;
                if p.servers.iter().any(|s| s.role == "replica" && s.state == "up") {
                    break;
                }
                if Instant::now() > deadline {
                    return Err("the replica never served".into());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let pid = std::fs::read_to_string(rdir.join("mysqld.pid"))?.trim().parse::<i32>()?;
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )?;
            let t0 = Instant::now();
            while c.hash().is_none() && t0.elapsed() < Duration::from_secs(30) {}
            failover.push(t0.elapsed().as_secs_f64() * 1e3);
            // Wait for the old process to be gone, then start it again on its port.
            while Path::new(&format!("/proc/{pid}")).exists() {
                std::thread::sleep(Duration::from_millis(20));
            }
            start_server(&rdir, "2", Some(rport))?;
        }
        drop(c);
        // Refresh-ahead: the miss rate of a hot set at a short TTL.
        let mut hot = Vec::new();
        for pct in ["0", "20"] {
            let env = vec![
                ("CACHE_TTL", "pwd=5/5".to_string()),
                ("REFRESH_AHEAD", pct.to_string()),
                ("SHARED_CACHE", "off".to_string()),
            ];
            let d = Daemon::start(&bin, &base.join(format!("hot{pct}")), pport, &env)?;
            let users = ["alice@example.com", "full@example.com", "testuser@example.com"];
            let t0 = Instant::now();
            let mut i = 0usize;
            while t0.elapsed() < Duration::from_secs(hot_secs as u64) {
                let _ = d.client.passwd(users[i % users.len()]);
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            let k = d.client.stats()?.kinds.get("pwd").cloned().unwrap_or_default();
            hot.push((pct, k.requests, k.misses, k.refreshed_ahead));
        }
        let mut md =
            String::from("# A fleet on replication: invalidation lag and failover time\n\n");
        md.push_str(&format!(
            "`scripts/bench.sh --only fleet` ({}), debug logging off, release build. A primary \
             and a replica MariaDB on this machine replicating (ROW, log_slave_updates); \
             daemon A reads the primary and tails its binlog, B reads the replica and tails \
             the replica's, both caching every kind for a day. {changes} UPDATEs of a \
             password on the primary, each followed by asking both daemons over and over \
             until each gives the new hash: the time from the UPDATE's return to each \
             daemon's first new answer ({missed} changes not seen by both within 10 s). Load \
             average at the end: {} (a shared machine: other builds slow every case).\n\n",
            cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        ));
        md.push_str(
            "| daemon | p50 ms | p99 ms | max ms | goal |\n| --- | --- | --- | --- | --- |\n",
        );
        for (name, l, goal) in [
            ("A (primary's binlog)", &la, "p99 ≤ 1000 ms"),
            ("B (replica's binlog)", &lb, "p99 ≤ replication lag + 1000 ms"),
        ] {
            md.push_str(&format!(
                "| {name} | {:.1} | {:.1} | {:.1} | {goal} |\n",
                pct(l, 0.5),
                pct(l, 0.99),
                l.last().copied().unwrap_or(0.0)
            ));
        }
        md.push_str(&format!(
            "\nFailover: daemon C reads the replica with the primary behind it \
             (MYSQL_REPLICAS, PWD uncached); the replica's mariadbd is killed (SIGKILL) and C \
             asked until an answer comes, {kills} times (goal ≤ 1000 ms).\n\n\
             | kill | from the kill to the next good answer, ms |\n| --- | --- |\n"
        ));
        for (i, f) in failover.iter().enumerate() {
            md.push_str(&format!("| {} | {f:.1} |\n", i + 1));
        }
        md.push_str(&format!(
            "\nRefresh-ahead: a daemon on the primary, PWD cached 5 s, asked the PWD of three \
             users in turn about every millisecond for {hot_secs} s, with REFRESH_AHEAD 0 and \
             20 (its STATS).\n\n\
             | REFRESH_AHEAD | requests | misses | miss rate | refreshed in the background |\n\
             | --- | --- | --- | --- | --- |\n"
        ));
        for (pct, req, miss, refreshed) in &hot {
            md.push_str(&format!(
                "| {pct} | {req} | {miss} | {:.3} % | {refreshed} |\n",
                *miss as f64 * 100.0 / (*req).max(1) as f64
            ));
        }
        Ok(md)
    })();
    let _ = mariadb_sh("stop", &rdir, &[], &[]);
    let _ = mariadb_sh("stop", &pdir, &[], &[]);
    let _ = std::fs::remove_dir_all(&base);
    let md = result?;
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("fleet.md"), &md)?;
    println!("{md}");
    eprintln!("fleet bench: wrote {}", out.join("fleet.md").display());
    Ok(())
}
