//! # soak: a million requests with a fault every few seconds (issue 10, item 8)
//!
//! `scripts/soak.sh` is the one command: it starts the soak's own MariaDB and runs
//! `cargo bench --bench soak -- run --mysql HOST:PORT --mariadb-dir DIR …`. This program
//! then builds the soak database, starts its own inlookup (release build, as nobody when
//! root, its own INFIFODIR, FIFOTMPDIR and CONTROLDIR), and forks 64 client processes (this
//! binary re-executed as `client`) that ask 10^6 PWD questions between them, 90 % of them
//! for a hot set of users (cache hits) and 10 % for keys never asked before (misses: half
//! generated users, half users nobody has). Every reply is compared byte for byte with the
//! one expected for its key (each names its user), so a reply meant for another request is
//! seen. Meanwhile a fault comes every few seconds, in rotation: MariaDB SIGKILLed and
//! restarted, MariaDB SIGSTOPped for a few seconds, SIGHUP to the daemon, and a burst of
//! hostile clients (reply FIFOs kept full, ALIAS and ALIAS-FULL of a 120-line alias list,
//! reply FIFOs abandoned). The daemon's fds, threads and RSS are sampled every second.
//! Results: `docs/soak.md` and `docs/soak.svg` (or `--out DIR`).
//!
//! Counted per client and per second: right answers, `-1`s (expected while MariaDB is down
//! or frozen: counted against the fault windows), lost replies (the client's timeout),
//! crossed replies (an answer, but not this key's) and other failures. The run fails (exit
//! 1, after writing the report) unless lost, crossed and other are all 0.

use inlookup_core::admin::StatsReport;
use inlookup_core::wire::encode_request;
use mysql::prelude::Queryable;
use nix::fcntl::{open, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "common.rs"]
#[allow(dead_code)]
mod common;
use common::{admin_conn, fifo_client, spawn_inlookup};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The generated users' domain.
const DOMAIN: &str = "soak.example";
/// The alias with 120 lines (about 7 KB: too long for a classic ALIAS reply).
const MANY: &str = "many@example.com";
const MANY_LINES: usize = 120;
/// After a fault ends, -1s within this many seconds still count as the fault's (lookups
/// queued during it finish with -1 up to the daemon's MySQL timeout, 2 s, later).
const GRACE_SECS: u64 = 3;

const USAGE: &str = "\
Usage: cargo bench --bench soak -- run --mysql HOST:PORT --mariadb-dir DIR [options]

  --requests N      requests in all (default 1000000)
  --clients N       client processes (default 64)
  --hot N           hot users, asked 90 % of the time (default 2000)
  --rate N          requests per second in all, paced (default 4000; 0: as fast as they go)
  --fault-every S   seconds between faults (default 5)
  --stop-secs S     how long a SIGSTOP holds MariaDB (default 3)
  --timeout S       the clients' read timeout (default 10)
  --max-secs S      stop the run after S seconds whatever happens (default 900)
  --inlookup PATH   the daemon (default target/release/inlookup)
  --out DIR         where soak.md and soak.svg go (default docs)
  --command TEXT    the command line shown in the report";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let r = match args.first().map(String::as_str) {
        Some("client") => client_main(&args[1..]),
        Some("run") => run_main(&args[1..]),
        _ => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shared bits

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the run.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The email of generated user `i`.
fn email(i: u64) -> String {
    format!("u{i:07}@{DOMAIN}")
}

/// The exact PWD reply body for generated user `i` (checked against the daemon at start).
fn pwd_body(i: u64) -> Vec<u8> {
    let name = format!("u{i:07}");
    format!(
        "PWSTRUCT={name}@{DOMAIN}:$5$soak${i:08X}:1:0:Soak User:/home/mail/{DOMAIN}/{name}:\
         524288000:0\0"
    )
    .into_bytes()
}

/// The exact PWD reply body for a user nobody has.
fn no_such_user(email: &str) -> Vec<u8> {
    format!("PWSTRUCT=No such user {email}\0").into_bytes()
}

fn kv(args: &[String]) -> BTreeMap<String, String> {
    args.iter().filter_map(|a| a.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect()
}

fn get<T: std::str::FromStr>(m: &BTreeMap<String, String>, k: &str) -> Res<T> {
    m.get(k).ok_or(format!("missing {k}="))?.parse().map_err(|_| format!("bad {k}=").into())
}

/// What one client saw in one second of the run.
#[derive(Debug, Default, Clone, Copy)]
struct Bucket {
    right: u64,
    minus_one: u64,
    lost: u64,
    crossed: u64,
    other: u64,
    max_us: u64,
}

impl Bucket {
    fn add(&mut self, o: &Bucket) {
        self.right += o.right;
        self.minus_one += o.minus_one;
        self.lost += o.lost;
        self.crossed += o.crossed;
        self.other += o.other;
        self.max_us = self.max_us.max(o.max_us);
    }
    fn total(&self) -> u64 {
        self.right + self.minus_one + self.lost + self.crossed + self.other
    }
}

// ---------------------------------------------------------------------------------------
// A client process

/// xorshift64*: the keys a client asks, reproducible from its id.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `client fifo= tmp= id= count= hot= cold= rate= epoch= timeout=`: asks `count` PWD
/// questions, prints one line per second it saw (`b SEC right -1 lost crossed other
/// max_us`) and up to 20 lines describing bad replies (`x …`).
fn client_main(args: &[String]) -> Res<bool> {
    let m = kv(args);
    let (fifo, tmp): (PathBuf, PathBuf) = (get(&m, "fifo")?, get(&m, "tmp")?);
    let (id, count, hot, cold): (u64, u64, u64, u64) =
        (get(&m, "id")?, get(&m, "count")?, get(&m, "hot")?, get(&m, "cold")?);
    let (rate, epoch, timeout): (f64, u64, f64) =
        (get(&m, "rate")?, get(&m, "epoch")?, get(&m, "timeout")?);
    let c = fifo_client(&fifo, &tmp, Duration::from_secs_f64(timeout));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    let mut buckets: BTreeMap<u64, Bucket> = BTreeMap::new();
    let mut bad = Vec::new();
    let (mut misses, start) = (0u64, mono_ns());
    let gap = if rate > 0.0 { (1e9 / rate) as u64 } else { 0 };
    let mut next = start;
    for _ in 0..count {
        if gap > 0 {
            let now = mono_ns();
            if next > now {
                std::thread::sleep(Duration::from_nanos(next - now));
            } else if now - next > 1_000_000_000 {
                next = now; // a second behind (a fault held us): no burst to catch up
            }
            next += gap;
        }
        let (key, want) = if rng.next() % 10 != 0 {
            let i = 1 + rng.next() % hot;
            (email(i), pwd_body(i))
        } else {
            misses += 1;
            if misses % 2 == 0 {
                // A generated user of this client's own range, asked once.
                let i = cold + id * count / 10 + misses / 2;
                (email(i), pwd_body(i))
            } else {
                let e = format!("nx{id}x{misses}@{DOMAIN}");
                let w = no_such_user(&e);
                (e, w)
            }
        };
        let t0 = mono_ns();
        let r = c.raw(inlookup_core::QueryKind::Pwd.byte(), &key, "");
        let t1 = mono_ns();
        let b = buckets.entry(t0.saturating_sub(epoch) / 1_000_000_000).or_default();
        b.max_us = b.max_us.max((t1 - t0) / 1000);
        match r {
            Ok((n, body)) if n > 0 && body == want => b.right += 1,
            Ok((-1, _)) | Err(inquery::Error::Backend) => b.minus_one += 1,
            Ok((n, body)) => {
                b.crossed += 1;
                bad.push(format!("crossed {key}: {n} {:?}", String::from_utf8_lossy(&body)));
            }
            Err(inquery::Error::Timeout { .. }) => {
                b.lost += 1;
                bad.push(format!("lost {key} at {} s", t0.saturating_sub(epoch) / 1_000_000_000));
            }
            Err(e) => {
                b.other += 1;
                bad.push(format!("other {key}: {e}"));
            }
        }
    }
    let mut out = std::io::stdout().lock();
    for (s, b) in &buckets {
        writeln!(
            out,
            "b {s} {} {} {} {} {} {}",
            b.right, b.minus_one, b.lost, b.crossed, b.other, b.max_us
        )?;
    }
    for x in bad.iter().take(20) {
        writeln!(out, "x {x}")?;
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------
// The run

#[derive(Debug, Clone)]
struct Opts {
    mysql_host: String,
    mysql_port: u16,
    mariadb_dir: PathBuf,
    requests: u64,
    clients: u64,
    hot: u64,
    rate: f64,
    fault_every: f64,
    stop_secs: f64,
    timeout: f64,
    max_secs: u64,
    inlookup: PathBuf,
    out: PathBuf,
    command: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parse_opts(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        mysql_host: String::new(),
        mysql_port: 0,
        mariadb_dir: PathBuf::new(),
        requests: 1_000_000,
        clients: 64,
        hot: 2000,
        rate: 4000.0,
        fault_every: 5.0,
        stop_secs: 3.0,
        timeout: 10.0,
        max_secs: 900,
        inlookup: root().join("target/release/inlookup"),
        out: root().join("docs"),
        command: "scripts/soak.sh".into(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--mysql" => {
                let s = v()?;
                let (h, p) = s.rsplit_once(':').ok_or("--mysql HOST:PORT")?;
                o.mysql_host = h.into();
                o.mysql_port = p.parse()?;
            }
            "--mariadb-dir" => o.mariadb_dir = v()?.into(),
            "--requests" => o.requests = v()?.parse()?,
            "--clients" => o.clients = v()?.parse()?,
            "--hot" => o.hot = v()?.parse()?,
            "--rate" => o.rate = v()?.parse()?,
            "--fault-every" => o.fault_every = v()?.parse()?,
            "--stop-secs" => o.stop_secs = v()?.parse()?,
            "--timeout" => o.timeout = v()?.parse()?,
            "--max-secs" => o.max_secs = v()?.parse()?,
            "--inlookup" => o.inlookup = v()?.into(),
            "--out" => o.out = v()?.into(),
            "--command" => o.command = v()?,
            "-h" | "--help" | "help" => return Err(USAGE.into()),
            x => return Err(format!("unknown argument {x}\n{USAGE}").into()),
        }
    }
    if o.mysql_port == 0 || o.mariadb_dir.as_os_str().is_empty() {
        return Err(format!("--mysql and --mariadb-dir are required\n{USAGE}").into());
    }
    if o.clients == 0 || o.hot == 0 || o.requests < o.clients {
        return Err("--clients, --hot must be positive and --requests ≥ --clients".into());
    }
    Ok(o)
}

/// The soak database: schema, demo rows, `users` generated users and the 120-line alias.
fn prepare_db(o: &Opts, users: u64) -> Res<String> {
    let name = "inl_soak".to_string();
    let mut c = admin_conn(&o.mysql_host, o.mysql_port)?;
    c.query_drop(format!("DROP DATABASE IF EXISTS {name}"))?;
    c.query_drop(format!("CREATE DATABASE {name}"))?;
    c.query_drop(format!("USE {name}"))?;
    for f in ["sql/schema.sql", "sql/demo.sql"] {
        c.query_drop(std::fs::read_to_string(root().join(f))?)?;
    }
    c.query_drop(format!(
        "INSERT INTO indimail (pw_name, pw_domain, pw_passwd, pw_uid, pw_gid, pw_gecos, pw_dir, \
         pw_shell) SELECT CONCAT('u', LPAD(seq, 7, '0')), '{DOMAIN}', \
         CONCAT('$5$soak$', LPAD(HEX(seq), 8, '0')), 1, 0, 'Soak User', \
         CONCAT('/home/mail/{DOMAIN}/u', LPAD(seq, 7, '0')), '524288000' FROM seq_1_to_{users}"
    ))?;
    let (alias, domain) = MANY.split_once('@').ok_or("alias")?;
    let lines: Vec<String> = (0..MANY_LINES)
        .map(|i| {
            format!("('{alias}','{domain}','&forward-to-someone-far-away-{i:03}@example.org')")
        })
        .collect();
    c.query_drop(format!(
        "INSERT INTO valias (alias, domain, valias_line) VALUES {}",
        lines.join(",")
    ))?;
    Ok(name)
}

/// The run's directories: on /dev/shm when it is there (as the bench), else the temp dir.
#[derive(Debug)]
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug)]
struct Daemon {
    child: Option<Child>,
    fifo: PathBuf,
    tmp: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn start(o: &Opts, run: &RunDir, db: &str) -> Res<Daemon> {
        let db = (o.mysql_host.as_str(), o.mysql_port, db);
        let sp = spawn_inlookup(&o.inlookup, &run.0.join("inlookup"), db, &[])?;
        let mut d = Daemon { child: Some(sp.child), fifo: sp.fifo, tmp: sp.tmp, log: sp.log };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !(d.fifo.exists() && d.client(2.0).ping().is_ok()) {
            if let Some(st) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("inlookup exited at start ({st}):\n{}", d.log_text()).into());
            }
            if Instant::now() > deadline {
                return Err(format!("inlookup not ready:\n{}", d.log_text()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(d)
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    fn client(&self, read: f64) -> inquery::Client {
        fifo_client(&self.fifo, &self.tmp, Duration::from_secs_f64(read))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// TERM (it answers what is in flight and removes its FIFO), KILL after 15 s.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One sample of the daemon, taken every second.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    t: f64,
    fds: u64,
    threads: u64,
    rss_kib: u64,
    requests: Option<u64>,
}

fn sample(pid: i32, t: f64) -> Sample {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Sample { t, fds, threads: field("Threads:"), rss_kib: field("VmRSS:"), requests: None }
}

/// One fault as it happened.
#[derive(Debug, Clone)]
struct Fault {
    kind: &'static str,
    start: f64,
    end: f64,
    note: String,
}

/// What the hostile bursts saw.
#[derive(Debug, Default, Clone)]
struct Hostile {
    full_fifo_requests: u64,
    alias_classic: u64,
    alias_classic_minus_one: u64,
    alias_full: u64,
    alias_full_whole: u64,
    abandoned: u64,
    wrong: Vec<String>,
}

/// True while `pid` exists and is not a zombie.
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')))
}

fn mariadb_pid(dir: &Path) -> Res<i32> {
    Ok(std::fs::read_to_string(dir.join("mysqld.pid"))?.trim().parse()?)
}

/// A reply FIFO in FIFOTMPDIR with a client's name (`inquery.PID.HEX`), mode 0660.
fn make_fifo(tmp: &Path, n: u64) -> Res<PathBuf> {
    let p = tmp.join(format!("inquery.{}.{:016x}", std::process::id(), 0x50a4_0000_0000 + n));
    nix::unistd::mkfifo(&p, Mode::from_bits_truncate(0o660))?;
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &p,
        Mode::from_bits_truncate(0o660),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )?;
    Ok(p)
}

/// Writes one request frame into the request FIFO, as a hand-made client does.
fn send(fifo: &Path, kind: u8, email: &str, reply: &Path) -> Res<()> {
    let frame = encode_request(kind, email.as_bytes(), reply.as_os_str().as_bytes(), b"")
        .map_err(|e| e.to_string())?;
    let fd = open(fifo, OFlag::O_WRONLY | OFlag::O_NONBLOCK, Mode::empty())?;
    nix::unistd::write(&fd, &frame)?;
    Ok(())
}

/// The hostile burst: reply FIFOs kept full, classic ALIAS and ALIAS-FULL of the 120-line
/// alias, and reply FIFOs abandoned before or after their reply.
fn hostile_burst(d: &Daemon, round: u64, h: &mut Hostile) -> Res<String> {
    use inlookup_core::QueryKind as K;
    let c = d.client(5.0);
    let mut n = round * 100;
    let mut next = || {
        n += 1;
        n
    };
    // Full FIFOs (opened read-write and filled): a hit, a miss, a PING, an ALIAS-FULL.
    let mut held: Vec<(PathBuf, OwnedFd)> = Vec::new();
    let asks = [
        (K::Pwd.byte(), email(1)),
        (K::Pwd.byte(), format!("hostile{round}@{DOMAIN}")),
        (K::Ping.byte(), String::new()),
        (K::AliasFull.byte(), MANY.to_string()),
    ];
    for (kind, key) in &asks {
        let p = make_fifo(&d.tmp, next())?;
        let fd = open(&p, OFlag::O_RDWR | OFlag::O_NONBLOCK, Mode::empty())?;
        while nix::unistd::write(&fd, &[0u8; 4096]).is_ok() {}
        send(&d.fifo, *kind, key, &p)?;
        h.full_fifo_requests += 1;
        held.push((p, fd));
    }
    // Meanwhile: classic ALIAS (too long: -1) and ALIAS-FULL (whole), three of each.
    let want: Vec<String> = (0..MANY_LINES)
        .map(|i| format!("&forward-to-someone-far-away-{i:03}@example.org"))
        .collect();
    for _ in 0..3 {
        h.alias_classic += 1;
        match c.raw(K::Alias.byte(), MANY, "") {
            Ok((-1, _)) | Err(inquery::Error::Backend) => h.alias_classic_minus_one += 1,
            r => h.wrong.push(format!("classic ALIAS: {:?}", r.map(|(n, b)| (n, b.len())))),
        }
        h.alias_full += 1;
        match c.raw(K::AliasFull.byte(), MANY, "") {
            Ok((n, body)) if n > 0 => {
                let text = String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(&body));
                let mut got: Vec<String> = text.lines().map(str::to_string).collect();
                got.sort();
                if got == want {
                    h.alias_full_whole += 1;
                } else {
                    h.wrong.push(format!("ALIAS-FULL: {} lines", got.len()));
                }
            }
            r => h.wrong.push(format!("ALIAS-FULL: {:?}", r.map(|(n, b)| (n, b.len())))),
        }
    }
    // Abandoned: three clients gone before the reply (no reader), three after it (the
    // name is left for the sweep). None of them removes its FIFO.
    for i in 0..6 {
        let p = make_fifo(&d.tmp, next())?;
        let fd = open(&p, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty())?;
        if i < 3 {
            drop(fd);
            send(&d.fifo, K::Pwd.byte(), &email(2), &p)?;
        } else {
            send(&d.fifo, K::Pwd.byte(), &email(2), &p)?;
            std::thread::sleep(Duration::from_millis(50));
            drop(fd);
        }
        h.abandoned += 1;
    }
    // The full FIFOs are held past the large reply's timeoutwrite (2 s), then closed; the
    // names the daemon did not remove are ours to remove.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        for (p, fd) in held {
            drop(fd);
            let _ = std::fs::remove_file(p);
        }
    });
    Ok(format!("{} full, 6 ALIAS/ALIAS-FULL, 6 abandoned", asks.len()))
}

/// One fault, by its place in the rotation.
fn fault(o: &Opts, d: &Daemon, i: u64, h: &mut Hostile) -> (&'static str, Res<String>) {
    match i % 4 {
        0 => (
            "mariadb-kill",
            (|| {
                let pid = mariadb_pid(&o.mariadb_dir)?;
                kill(Pid::from_raw(pid), Signal::SIGKILL)?;
                let deadline = Instant::now() + Duration::from_secs(15);
                while running(pid) {
                    // Ours to reap when it is our descendant (we are its subreaper).
                    let _ = nix::sys::wait::waitpid(
                        Pid::from_raw(pid),
                        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                    );
                    if Instant::now() > deadline {
                        return Err("mariadbd survived SIGKILL".into());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let t = Instant::now();
                let out = Command::new(root().join("scripts/mariadb.sh"))
                    .arg("start")
                    .arg(&o.mariadb_dir)
                    .arg(o.mysql_port.to_string())
                    .stdin(Stdio::null())
                    .output()?;
                if !out.status.success() {
                    return Err(format!(
                        "mariadb.sh start: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                    .into());
                }
                Ok(format!("pid {pid} killed; restarted in {:.1} s", t.elapsed().as_secs_f64()))
            })(),
        ),
        1 => (
            "mariadb-stop",
            (|| {
                let pid = Pid::from_raw(mariadb_pid(&o.mariadb_dir)?);
                kill(pid, Signal::SIGSTOP)?;
                std::thread::sleep(Duration::from_secs_f64(o.stop_secs));
                kill(pid, Signal::SIGCONT)?;
                Ok(format!("stopped {:.0} s", o.stop_secs))
            })(),
        ),
        2 => (
            "hup",
            (|| {
                kill(Pid::from_raw(d.pid()), Signal::SIGHUP)?;
                Ok("cache flushed, backends reconnect".to_string())
            })(),
        ),
        _ => ("hostile", hostile_burst(d, i, h)),
    }
}

struct Clients {
    children: Vec<(Child, std::thread::JoinHandle<String>)>,
}

fn run_main(args: &[String]) -> Res<bool> {
    let o = parse_opts(args)?;
    // MariaDB restarted by a fault is started by our child (mariadb.sh) and detaches: as its
    // subreaper we can reap it after the next SIGKILL instead of leaving a zombie.
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let per_client = o.requests / o.clients;
    let requests = per_client * o.clients;
    // Cold users: each client's misses are half generated users of its own range.
    let cold = o.hot + 1;
    let users = cold + o.clients * per_client / 10 + per_client / 10 + 10;
    eprintln!("soak: building database inl_soak with {users} users");
    let db = prepare_db(&o, users)?;
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let run = RunDir(base.join(format!("inl-soak-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&run.0);
    std::fs::create_dir_all(&run.0)?;
    std::fs::set_permissions(&run.0, std::fs::Permissions::from_mode(0o755))?;
    let mut d = Daemon::start(&o, &run, &db)?;
    let c = d.client(5.0);
    // The expected answers are the daemon's, byte for byte.
    for (key, want) in [
        (email(1), pwd_body(1)),
        (email(users - 1), pwd_body(users - 1)),
        (format!("nobody@{DOMAIN}"), no_such_user(&format!("nobody@{DOMAIN}"))),
    ] {
        let (_, body) = c.raw(inlookup_core::QueryKind::Pwd.byte(), &key, "")?;
        if body != want {
            return Err(format!(
                "the soak's expected answer for {key} is {:?}, the daemon says {:?}",
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(&body)
            )
            .into());
        }
    }
    eprintln!("soak: warming {} hot users", o.hot);
    for i in 1..=o.hot {
        c.raw(inlookup_core::QueryKind::Pwd.byte(), &email(i), "")?;
    }
    let before = c.stats()?;

    let epoch = mono_ns();
    let t0 = Instant::now();
    let secs = |t0: Instant| t0.elapsed().as_secs_f64();
    eprintln!(
        "soak: {requests} requests from {} client processes, a fault every {} s",
        o.clients, o.fault_every
    );
    let exe = std::env::current_exe()?;
    let mut clients = Clients { children: Vec::new() };
    for id in 0..o.clients {
        let mut child = Command::new(&exe)
            .arg("client")
            .arg(format!("fifo={}", d.fifo.display()))
            .arg(format!("tmp={}", d.tmp.display()))
            .arg(format!("id={id}"))
            .arg(format!("count={per_client}"))
            .arg(format!("hot={}", o.hot))
            .arg(format!("cold={cold}"))
            .arg(format!("rate={}", o.rate / o.clients as f64))
            .arg(format!("epoch={epoch}"))
            .arg(format!("timeout={}", o.timeout))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut out = child.stdout.take().ok_or("no stdout")?;
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        clients.children.push((child, reader));
    }

    let done = Arc::new(AtomicBool::new(false));
    // The sampler: fds, threads, RSS every second, and the daemon's request counter.
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let sampler = {
        let (done, samples, pid, c) = (done.clone(), samples.clone(), d.pid(), d.client(2.0));
        std::thread::spawn(move || {
            let mut next = 0.0;
            while !done.load(Ordering::SeqCst) {
                let t = secs(t0);
                if t >= next {
                    let mut s = sample(pid, t);
                    s.requests = c.stats().ok().map(|r| r.kinds.values().map(|k| k.requests).sum());
                    samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                    next += 1.0;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // Faults in rotation, one every fault_every seconds, from fault_every on.
    let mut faults: Vec<Fault> = Vec::new();
    let mut hostile = Hostile::default();
    let mut i = 0u64;
    let all_done = |cl: &mut Clients| {
        cl.children.iter_mut().all(|(ch, _)| ch.try_wait().ok().flatten().is_some())
    };
    let mut timed_out = false;
    loop {
        let at = o.fault_every * (i + 1) as f64;
        while secs(t0) < at && !all_done(&mut clients) && secs(t0) < o.max_secs as f64 {
            std::thread::sleep(Duration::from_millis(50));
        }
        if all_done(&mut clients) {
            break;
        }
        if secs(t0) >= o.max_secs as f64 {
            timed_out = true;
            break;
        }
        let start = secs(t0);
        let (kind, r) = fault(&o, &d, i, &mut hostile);
        let end = secs(t0);
        let note = r.unwrap_or_else(|e| format!("FAILED: {e}"));
        eprintln!("soak: {start:6.1} s  {kind:<13} {note}");
        faults.push(Fault { kind, start, end, note });
        i += 1;
    }
    if timed_out {
        eprintln!("soak: --max-secs reached: stopping the clients");
        for (ch, _) in &mut clients.children {
            let _ = ch.kill();
        }
    }
    let mut buckets: BTreeMap<u64, Bucket> = BTreeMap::new();
    let mut bad = Vec::new();
    let mut failed_clients = 0;
    for (mut ch, reader) in clients.children {
        let st = ch.wait()?;
        if !st.success() {
            failed_clients += 1;
        }
        let text = reader.join().unwrap_or_default();
        for l in BufReader::new(text.as_bytes()).lines().map_while(Result::ok) {
            let f: Vec<&str> = l.split(' ').collect();
            if f.first() == Some(&"b") && f.len() == 8 {
                let n: Vec<u64> = f[1..].iter().filter_map(|v| v.parse().ok()).collect();
                if n.len() == 7 {
                    let b = Bucket {
                        right: n[1],
                        minus_one: n[2],
                        lost: n[3],
                        crossed: n[4],
                        other: n[5],
                        max_us: n[6],
                    };
                    buckets.entry(n[0]).or_default().add(&b);
                }
            } else if let Some(x) = l.strip_prefix("x ") {
                bad.push(x.to_string());
            }
        }
    }
    let elapsed = secs(t0);
    // Let the sweep take the abandoned FIFOs (older than timeoutread + timeoutwrite = 4 s,
    // swept every 2 s) before the last look at the daemon.
    std::thread::sleep(Duration::from_secs(7));
    done.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    let after = c.stats()?;
    let leftover = std::fs::read_dir(&d.tmp).map_or(0, |r| r.count());
    let status = d.stop();
    let log = d.log_text();
    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();

    let r = Report {
        o: &o,
        requests,
        elapsed,
        buckets,
        bad,
        faults,
        hostile,
        samples,
        before,
        after,
        leftover,
        failed_clients,
        timed_out,
        exit: status.map_or("killed".into(), |s| s.to_string()),
        panics: log.matches("panicked").count(),
    };
    r.write()?;
    Ok(r.clean())
}

// ---------------------------------------------------------------------------------------
// The report

/// The end of `soak.md`: what the figures mean.
const HOW: &str = "\
## How it counts

- **Right**: the reply's bytes are exactly the PWD answer of the key asked (each names its
  user: `PWSTRUCT=u0000042@soak.example:…` or `PWSTRUCT=No such user nx3x17@soak.example`),
  checked against the daemon's own answer for three keys before the run.
- **Crossed**: an answer that is not the one for the key asked (another request's reply, a
  truncated one, garbage). Must be 0.
- **Lost**: the client's read timeout passed with no reply. The timeout (10 s) is generous on
  purpose: while MariaDB is frozen, up to 64 misses wait behind 5 workers whose MySQL read
  timeout is timeoutread (2 s), so a miss may wait a few seconds for its `-1`; lost means no
  reply at all, not a slow one (the benchmark, `docs/bench/`, measures the times). Must be 0.
- **`-1`**: the daemon's error reply. Expected while MariaDB is dead, restarting or frozen,
  for misses only (hits are answered from the cache; an expired entry is served stale). A
  `-1` in a second that overlaps a fault's window, stretched by 3 s for lookups that were
  queued during it, is the fault's; any other is listed as outside.
- **Faults** in rotation: `mariadb-kill` (SIGKILL, then `scripts/mariadb.sh start` on the
  same port: InnoDB crash recovery), `mariadb-stop` (SIGSTOP, then SIGCONT), `hup` (the
  daemon flushes its cache and reconnects), `hostile` (four requests replying into FIFOs
  their client opened read-write and filled: a hit, a miss, a PING and an ALIAS-FULL; three
  classic ALIAS and three ALIAS-FULL of a 120-line alias; six requests whose reply FIFO is
  abandoned, three before and three after the reply, left for the sweep).
- **Samples**: `/proc/PID/fd`, `Threads` and `VmRSS` of `/proc/PID/status` of the daemon,
  every second; the request rate is the clients' requests per second. VmRSS follows the
  cache, which gains an entry for every key asked once (up to CACHE_ENTRIES, 100,000) and is
  emptied by each HUP: growth within that bound is the cache, not a leak; fds and threads
  must come back to their level after every fault.
";

/// One panel of the plot: its title, its points (seconds, value) and its colour.
type Panel = (&'static str, Vec<(f64, f64)>, &'static str);

struct Report<'a> {
    o: &'a Opts,
    requests: u64,
    elapsed: f64,
    buckets: BTreeMap<u64, Bucket>,
    bad: Vec<String>,
    faults: Vec<Fault>,
    hostile: Hostile,
    samples: Vec<Sample>,
    before: StatsReport,
    after: StatsReport,
    leftover: usize,
    failed_clients: usize,
    timed_out: bool,
    exit: String,
    panics: usize,
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .current_dir(root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

impl Report<'_> {
    fn totals(&self) -> Bucket {
        let mut t = Bucket::default();
        for b in self.buckets.values() {
            t.add(b);
        }
        t
    }

    /// The fault (kind) whose window, stretched by GRACE_SECS, holds second `s`.
    fn fault_at(&self, s: u64) -> Option<&'static str> {
        let (a, b) = (s as f64, s as f64 + 1.0);
        self.faults.iter().find(|f| a < f.end + GRACE_SECS as f64 && b > f.start).map(|f| f.kind)
    }

    fn clean(&self) -> bool {
        let t = self.totals();
        t.lost == 0
            && t.crossed == 0
            && t.other == 0
            && t.total() == self.requests
            && self.hostile.wrong.is_empty()
            && self.failed_clients == 0
            && !self.timed_out
            && self.panics == 0
    }

    fn write(&self) -> Res<()> {
        std::fs::create_dir_all(&self.o.out)?;
        std::fs::write(self.o.out.join("soak.md"), self.markdown())?;
        std::fs::write(self.o.out.join("soak.svg"), self.svg())?;
        eprintln!("soak: wrote {}/soak.md and soak.svg", self.o.out.display());
        Ok(())
    }

    fn markdown(&self) -> String {
        let o = self.o;
        let t = self.totals();
        let mut m = String::new();
        let commit = sh("git", &["rev-parse", "--short", "HEAD"]);
        let dirty = !sh("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or(String::new(), |(_, v)| v.trim().to_string());
        let mem = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024);
        let ncpu = std::thread::available_parallelism().map_or(1, usize::from);
        let _ = writeln!(m, "# Soak: a million requests with a fault every few seconds\n");
        let _ = writeln!(
            m,
            "Issue 10, item 8. Produced by `benches/soak.rs` (see its header, and \
             `scripts/soak.sh`); `docs/soak.svg` is the plot. Rerun with the command below; the \
             figures here are one run's.\n"
        );
        let verdict = if self.clean() { "**clean**" } else { "**NOT CLEAN**" };
        let _ = writeln!(m, "| | |\n| --- | --- |");
        let _ = writeln!(m, "| command | `{}` |", o.command.trim());
        let _ = writeln!(m, "| date | {} |", sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]));
        let _ = writeln!(
            m,
            "| commit | {commit}{} |",
            if dirty { " with uncommitted changes in the tree" } else { "" }
        );
        let _ = writeln!(
            m,
            "| machine | {cpu}, {ncpu} CPUs, {mem} MiB, Linux {}; shared with other builds |",
            sh("uname", &["-r"])
        );
        let _ = writeln!(
            m,
            "| load | {} requests (PWD) from {} client processes, {:.0} % for {} hot users, \
             the rest for keys never asked before; paced at {} req/s in all; clients' read \
             timeout {} s |",
            self.requests,
            o.clients,
            90.0,
            o.hot,
            if o.rate > 0.0 { format!("{:.0}", o.rate) } else { "unpaced".into() },
            o.timeout
        );
        let _ = writeln!(
            m,
            "| daemon | target/release/inlookup, defaults (5 workers, queue 1024, cache 100,000, \
             serve-stale on); timeoutread 2 s, timeoutwrite 2 s |"
        );
        let _ = writeln!(
            m,
            "| faults | one every {} s in rotation: MariaDB SIGKILL + restart, SIGSTOP {} s + \
             SIGCONT, SIGHUP to the daemon, hostile burst |",
            o.fault_every, o.stop_secs
        );
        let _ = writeln!(m, "| duration | {:.0} s |", self.elapsed);
        let _ = writeln!(m, "| verdict | {verdict} |\n");

        let during: u64 = self
            .buckets
            .iter()
            .filter(|(s, _)| self.fault_at(**s).is_some())
            .map(|(_, b)| b.minus_one)
            .sum();
        let _ = writeln!(m, "## Totals\n");
        let _ = writeln!(m, "| | count |\n| --- | ---: |");
        let _ = writeln!(m, "| requests sent by the clients | {} |", t.total());
        let _ = writeln!(m, "| answered, the right answer for the key | {} |", t.right);
        let _ = writeln!(m, "| `-1` during a fault (its window plus {GRACE_SECS} s) | {during} |");
        let _ = writeln!(m, "| `-1` outside any fault | {} |", t.minus_one - during);
        let _ = writeln!(m, "| **lost** (the client's {} s timeout) | **{}** |", o.timeout, t.lost);
        let _ = writeln!(m, "| **crossed** (another key's answer) | **{}** |", t.crossed);
        let _ = writeln!(m, "| other client errors | {} |", t.other);
        let _ = writeln!(
            m,
            "| slowest reply | {:.2} s |",
            self.buckets.values().map(|b| b.max_us).max().unwrap_or(0) as f64 / 1e6
        );
        let _ = writeln!(m, "| client processes that failed | {} |", self.failed_clients);
        let _ = writeln!(m, "| daemon panics in its log | {} |", self.panics);
        let _ = writeln!(m, "| daemon exit on TERM at the end | {} |\n", self.exit);
        if !self.bad.is_empty() {
            let _ = writeln!(m, "Bad replies (first of each client):\n");
            for b in self.bad.iter().take(40) {
                let _ = writeln!(m, "- {b}");
            }
            let _ = writeln!(m);
        }

        let (a, b) = (&self.before, &self.after);
        let sum = |s: &StatsReport, f: fn(&inlookup_core::admin::KindStats) -> u64| -> u64 {
            s.kinds.values().map(f).sum()
        };
        let _ = writeln!(m, "The daemon's counters over the run (STATS after less before):\n");
        let _ = writeln!(m, "| counter | count |\n| --- | ---: |");
        for (name, f) in [
            ("requests", (|k| k.requests) as fn(&inlookup_core::admin::KindStats) -> u64),
            ("hits", |k| k.hits),
            ("negative_hits", |k| k.negative_hits),
            ("misses", |k| k.misses),
            ("coalesced", |k| k.coalesced),
            ("backend_errors", |k| k.backend_errors),
            ("stale_served", |k| k.stale_served),
            ("queue_full", |k| k.queue_full),
            ("oversized", |k| k.oversized),
        ] {
            let _ = writeln!(m, "| {name} | {} |", sum(b, f) - sum(a, f));
        }
        for (name, x, y) in [
            ("mysql_connects", a.mysql_connects, b.mysql_connects),
            ("failed_replies", a.failed_replies, b.failed_replies),
            ("vanished_clients", a.vanished_clients, b.vanished_clients),
            ("swept_reply_fifos", a.swept_reply_fifos, b.swept_reply_fifos),
            ("bad_frames", a.bad_frames, b.bad_frames),
        ] {
            let _ = writeln!(m, "| {name} | {} |", y - x);
        }
        let _ = writeln!(m, "| names left in FIFOTMPDIR at the end | {} |\n", self.leftover);

        let h = &self.hostile;
        let _ = writeln!(m, "## Hostile clients\n");
        let _ = writeln!(m, "| | count |\n| --- | ---: |");
        let _ =
            writeln!(m, "| requests replying into a FIFO kept full | {} |", h.full_fifo_requests);
        let _ = writeln!(
            m,
            "| classic ALIAS of the {MANY_LINES}-line alias: `-1`, as it must be | {} of {} |",
            h.alias_classic_minus_one, h.alias_classic
        );
        let _ = writeln!(
            m,
            "| ALIAS-FULL of it: all {MANY_LINES} lines | {} of {} |",
            h.alias_full_whole, h.alias_full
        );
        let _ = writeln!(m, "| requests whose reply FIFO was abandoned | {} |", h.abandoned);
        for w in h.wrong.iter().take(20) {
            let _ = writeln!(m, "| wrong: {w} | |");
        }
        let _ = writeln!(m);

        let _ = writeln!(m, "## The daemon over time (sampled every second)\n");
        let range = |f: fn(&Sample) -> u64| {
            let v: Vec<u64> = self.samples.iter().map(f).filter(|v| *v > 0).collect();
            (v.iter().min().copied().unwrap_or(0), v.iter().max().copied().unwrap_or(0))
        };
        let (f0, f1) = range(|s| s.fds);
        let (t0, t1) = range(|s| s.threads);
        let (r0, r1) = range(|s| s.rss_kib);
        let first_last = |f: fn(&Sample) -> u64| {
            (self.samples.first().map_or(0, f), self.samples.last().map_or(0, f))
        };
        let (fa, fz) = first_last(|s| s.fds);
        let (ta, tz) = first_last(|s| s.threads);
        let (ra, rz) = first_last(|s| s.rss_kib);
        let _ = writeln!(m, "| | min | max | first | last |\n| --- | ---: | ---: | ---: | ---: |");
        let _ = writeln!(m, "| open fds | {f0} | {f1} | {fa} | {fz} |");
        let _ = writeln!(m, "| threads | {t0} | {t1} | {ta} | {tz} |");
        let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
        let _ = writeln!(m, "| VmRSS | {} | {} | {} | {} |\n", mib(r0), mib(r1), mib(ra), mib(rz));
        let _ = writeln!(m, "![fds, threads, RSS and request rate over time](soak.svg)\n");

        let _ = writeln!(m, "## Faults\n");
        let mut per: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (s, bk) in &self.buckets {
            if let Some(k) = self.fault_at(*s) {
                per.entry(k).or_default().1 += bk.minus_one;
            }
        }
        for f in &self.faults {
            per.entry(f.kind).or_default().0 += 1;
        }
        let _ = writeln!(m, "| fault | times | `-1`s in its windows |\n| --- | ---: | ---: |");
        for (k, (n, ones)) in &per {
            let _ = writeln!(m, "| {k} | {n} | {ones} |");
        }
        let _ = writeln!(m, "\n<details><summary>Every fault</summary>\n");
        let _ = writeln!(m, "| at (s) | took (s) | fault | what happened | `-1`s |");
        let _ = writeln!(m, "| ---: | ---: | --- | --- | ---: |");
        for f in &self.faults {
            let ones: u64 = self
                .buckets
                .iter()
                .filter(|(s, _)| {
                    let a = **s as f64;
                    a < f.end + GRACE_SECS as f64 && a + 1.0 > f.start
                })
                .map(|(_, b)| b.minus_one)
                .sum();
            let _ = writeln!(
                m,
                "| {:.1} | {:.1} | {} | {} | {ones} |",
                f.start,
                f.end - f.start,
                f.kind,
                f.note
            );
        }
        let _ = writeln!(m, "\n</details>\n");
        let _ = write!(m, "{HOW}");
        m
    }

    fn svg(&self) -> String {
        let (w, left, right, ph, gap, top) = (960.0, 70.0, 20.0, 120.0, 34.0, 60.0);
        let tmax = self.elapsed.max(1.0);
        let x = |t: f64| left + (w - left - right) * t / tmax;
        let rate: Vec<(f64, f64)> =
            self.buckets.iter().map(|(s, b)| (*s as f64 + 0.5, b.total() as f64)).collect();
        let panels: [Panel; 4] = [
            ("open fds", self.samples.iter().map(|s| (s.t, s.fds as f64)).collect(), "#1f77b4"),
            ("threads", self.samples.iter().map(|s| (s.t, s.threads as f64)).collect(), "#2ca02c"),
            (
                "VmRSS (MiB)",
                self.samples.iter().map(|s| (s.t, s.rss_kib as f64 / 1024.0)).collect(),
                "#9467bd",
            ),
            ("requests/s (clients)", rate, "#444444"),
        ];
        let h = top + 4.0 * (ph + gap) + 20.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="18" font-size="14">inlookup soak: {} requests, {} clients, a fault every {} s ({:.0} s)</text>"#,
            self.requests, self.o.clients, self.o.fault_every, self.elapsed
        );
        let colors = [
            ("mariadb-kill", "#d62728"),
            ("mariadb-stop", "#ff7f0e"),
            ("hup", "#17becf"),
            ("hostile", "#8c564b"),
        ];
        for (i, (k, c)) in colors.iter().enumerate() {
            let lx = left + i as f64 * 150.0;
            let _ = writeln!(
                s,
                r#"<rect x="{lx}" y="30" width="12" height="12" fill="{c}" opacity="0.5"/><text x="{}" y="40">{k}</text>"#,
                lx + 16.0
            );
        }
        for (i, (name, pts, color)) in panels.iter().enumerate() {
            let y0 = top + i as f64 * (ph + gap);
            let max = pts.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
            let min = 0.0;
            let y = |v: f64| y0 + ph - ph * (v - min) / (max - min);
            let _ = writeln!(
                s,
                r##"<rect x="{left}" y="{y0}" width="{}" height="{ph}" fill="none" stroke="#999"/>"##,
                w - left - right
            );
            for f in &self.faults {
                let c = colors.iter().find(|(k, _)| *k == f.kind).map_or("#000", |c| c.1);
                let (a, b) = (x(f.start), x(f.end).max(x(f.start) + 1.5));
                let _ = writeln!(
                    s,
                    r#"<rect x="{a:.1}" y="{y0}" width="{:.1}" height="{ph}" fill="{c}" opacity="0.25"/>"#,
                    b - a
                );
            }
            let path: Vec<String> =
                pts.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.2" points="{}"/>"#,
                path.join(" ")
            );
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" font-size="12">{name}</text>"#,
                left + 4.0,
                y0 - 4.0
            );
            for v in [0.0, max / 2.0, max] {
                let _ = writeln!(
                    s,
                    r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                    left - 4.0,
                    y(v) + 4.0,
                    if max < 10.0 { format!("{v:.1}") } else { format!("{v:.0}") }
                );
            }
        }
        let ybot = top + 4.0 * (ph + gap) - gap + 14.0;
        let step = if tmax > 300.0 { 60.0 } else { 30.0 };
        let mut t = 0.0;
        while t <= tmax {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{ybot}" text-anchor="middle">{t:.0} s</text>"#,
                x(t)
            );
            t += step;
        }
        let _ = writeln!(s, "</svg>");
        s
    }
}
