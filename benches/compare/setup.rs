//! What the cases run against: the bench database (schema, demo rows and a million
//! generated users), inlookup daemons started exactly as the end-to-end harness starts
//! them (own INFIFODIR/FIFOTMPDIR/CONTROLDIR in a temp dir, as `nobody` when root), the
//! echo server, and the client processes.

use crate::case::Case;
pub use crate::common::fifo_client;
use crate::common::spawn_inlookup;
use crate::worker::{read_outcome, Outcome};
use crate::Res;
use mysql::prelude::Queryable;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// The generated users' domain.
pub const DOMAIN: &str = "bench.example";

/// The email of generated user `i` (1-based): `u0000042@bench.example`.
pub fn email(i: u64) -> String {
    format!("u{i:07}@{DOMAIN}")
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Generated users: realistic field sizes (a SHA-256 crypt string, a maildir path, a
/// quota), so a PWD reply is about as long as a real one.
fn users_sql(n: u64) -> String {
    format!(
        "INSERT INTO indimail (pw_name, pw_domain, pw_passwd, pw_uid, pw_gid, pw_gecos, pw_dir, \
         pw_shell) SELECT CONCAT('u', LPAD(seq, 7, '0')), '{DOMAIN}', \
         CONCAT('$5$rounds=5000$', LPAD(HEX(seq), 16, '0'), '$', LEFT(SHA2(seq, 256), 43)), \
         1, 0, 'Bench User', CONCAT('/home/mail/{DOMAIN}/u', LPAD(seq, 7, '0')), '524288000' \
         FROM seq_1_to_{n}"
    )
}

/// The PWD reply body inlookup sends for generated user `i`, as the floor's echo body.
pub fn pwd_body(i: u64) -> String {
    let name = format!("u{i:07}");
    let hash = "0".repeat(43); // same length as LEFT(SHA2(seq, 256), 43)
    format!(
        "PWSTRUCT={name}@{DOMAIN}:$5$rounds=5000${i:016X}${hash}:1:0:Bench User:\
         /home/mail/{DOMAIN}/{name}:524288000:0"
    )
}

/// FNV-1a, to notice a changed schema or generator.
fn fingerprint(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// A root connection (no password) to host:port, never switching to a socket.
pub fn admin_conn(host: &str, port: u16) -> Res<mysql::Conn> {
    crate::common::admin_conn(host, port).map_err(|e| e as Box<dyn std::error::Error>)
}

/// The bench database.
#[derive(Debug, Clone)]
pub struct Db {
    /// MariaDB host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The database.
    pub name: String,
    /// True when this run (re)built it; false when an identical one was reused.
    pub built: bool,
    /// How long building took.
    pub build_time: Duration,
}

impl Db {
    /// Makes sure `name` holds sql/schema.sql, sql/demo.sql and `users` generated users,
    /// reusing it when an earlier run left exactly that.
    pub fn prepare(host: &str, port: u16, name: &str, users: u64) -> Res<Db> {
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("bad database name {name:?}").into());
        }
        let schema = std::fs::read_to_string(root().join("sql/schema.sql"))?;
        let demo = std::fs::read_to_string(root().join("sql/demo.sql"))?;
        let gen = users_sql(users);
        let fp = fingerprint(&[&schema, &demo, &gen]);
        let mut c = admin_conn(host, port)?;
        let have: Option<String> = c
            .query_first(format!("SELECT fingerprint FROM {name}.bench_meta LIMIT 1"))
            .unwrap_or(None);
        let mut db = Db {
            host: host.into(),
            port,
            name: name.into(),
            built: false,
            build_time: Duration::ZERO,
        };
        if have.as_deref() == Some(fp.as_str()) {
            return Ok(db);
        }
        let t = Instant::now();
        eprintln!("bench: building database {name} with {users} generated users");
        c.query_drop(format!("DROP DATABASE IF EXISTS {name}"))?;
        c.query_drop(format!("CREATE DATABASE {name}"))?;
        c.query_drop(format!("USE {name}"))?;
        c.query_drop(&schema)?;
        c.query_drop(&demo)?;
        c.query_drop(&gen)?;
        c.query_drop("CREATE TABLE bench_meta (fingerprint CHAR(16) NOT NULL)")?;
        c.exec_drop("INSERT INTO bench_meta VALUES (?)", (fp,))?;
        db.built = true;
        db.build_time = t.elapsed();
        Ok(db)
    }

    /// Reads a range of users once, so the first case to ask them does not pay for the
    /// disk reads.
    pub fn warm(&self, first: u64, end: u64) -> Res<()> {
        let mut c = admin_conn(&self.host, self.port)?;
        let (a, b) = (format!("u{first:07}"), format!("u{end:07}"));
        let _: Option<u64> = c.exec_first(
            format!(
                "SELECT COUNT(*) FROM {}.indimail WHERE pw_name >= ? AND pw_name < ? \
                 AND LENGTH(pw_passwd) > 0",
                self.name
            ),
            (a, b),
        )?;
        Ok(())
    }
}

/// MariaDB's version string.
pub fn mariadb_version(host: &str, port: u16) -> Res<String> {
    let v: Option<String> = admin_conn(host, port)?.query_first("SELECT VERSION()")?;
    Ok(v.unwrap_or_default())
}

/// The pid of the MariaDB server at host:port, read from its pid file (needs a local
/// server whose pid file we may read).
pub fn mariadb_pid(host: &str, port: u16) -> Res<u32> {
    let f: Option<String> = admin_conn(host, port)?.query_first("SELECT @@pid_file")?;
    let f = f.ok_or("no @@pid_file")?;
    let pid: u32 = std::fs::read_to_string(&f)?.trim().parse()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if !matches!(comm.trim(), "mariadbd" | "mysqld") {
        return Err(format!("pid {pid} from {f} is not mariadbd").into());
    }
    Ok(pid)
}

/// The filesystem type of the mount holding `p` (from /proc/mounts, longest prefix).
pub fn fs_type(p: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: (usize, String) = (0, String::new());
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [_, mnt, ty, ..] = f[..] {
            if p.starts_with(mnt) && mnt.len() >= best.0 {
                best = (mnt.len(), ty.to_string());
            }
        }
    }
    best.1
}

/// Where the FIFOs go by default: /dev/shm when it is a tmpfs (as /run and, on most
/// systems, /tmp are), else the temp directory.
pub fn default_fifo_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && fs_type(shm) == "tmpfs" {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A temp directory of this run, removed at the end.
#[derive(Debug)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    /// Creates `BASE/inl-bench-PID`, world-searchable so `nobody` reaches its FIFOs.
    pub fn new(base: &Path) -> Res<RunDir> {
        let d = base.join(format!("inl-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
        Ok(RunDir(d))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A FIFO server the client cases talk to: a daemon or the echo server.
#[derive(Debug)]
pub struct Server {
    /// What it is, for messages.
    pub label: String,
    /// The process.
    child: Option<Child>,
    /// Its stdin (the echo server exits when it closes).
    stdin: Option<ChildStdin>,
    /// The request FIFO.
    pub fifo: PathBuf,
    /// Where clients make reply FIFOs.
    pub tmp: PathBuf,
    /// Its log (daemons).
    pub log: Option<PathBuf>,
}

impl Server {
    /// Starts `inlookup` on the bench database with extra environment `env`, exactly as
    /// the end-to-end harness does, but without `-v` (one log line per request would be
    /// measured too).
    pub fn daemon(
        bin: &Path,
        run: &RunDir,
        label: &str,
        db: &Db,
        env: &[(&str, String)],
    ) -> Res<Server> {
        let sp = spawn_inlookup(bin, &run.0.join(label), (&db.host, db.port, &db.name), env)
            .map_err(|e| e as Box<dyn std::error::Error>)?;
        let mut s = Server {
            label: label.into(),
            child: Some(sp.child),
            stdin: None,
            fifo: sp.fifo,
            tmp: sp.tmp,
            log: Some(sp.log),
        };
        s.wait_ready()?;
        Ok(s)
    }

    /// Starts the echo server (this program as `echo`), answering `body`; with `checks`,
    /// doing the daemon's reply-path checks too (for the profile).
    pub fn echo(run: &RunDir, label: &str, body: &str, checks: bool) -> Res<Server> {
        let dir = run.0.join(label);
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        let fifo = dir.join("infifo");
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("echo").arg(format!("fifo={}", fifo.display())).arg(format!("body={body}"));
        if checks {
            cmd.arg(format!("checks={}", tmp.display()));
        }
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            return Err("echo server did not start".into());
        }
        let stdin = child.stdin.take();
        Ok(Server { label: label.into(), child: Some(child), stdin, fifo, tmp, log: None })
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// A client for it, set up as the workers' clients are.
    pub fn client(&self) -> inquery::Client {
        fifo_client(&self.fifo, &self.tmp, Duration::from_secs(2))
    }

    /// The daemon's counters.
    pub fn stats(&self) -> Res<inlookup_core::admin::StatsReport> {
        Ok(self.client().stats()?)
    }

    fn log_text(&self) -> String {
        self.log.as_ref().and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Res<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.fifo.exists() && self.client().ping().is_ok() {
                return Ok(());
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(
                    format!("{} exited at start ({st}):\n{}", self.label, self.log_text()).into()
                );
            }
            if Instant::now() >= deadline {
                return Err(format!("{} not ready:\n{}", self.label, self.log_text()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it: TERM for a daemon (it drains and removes its FIFOs), stdin closed for
    /// the echo server; KILL after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        drop(self.stdin.take());
        if self.log.is_some() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where a batch of workers sends its requests.
#[derive(Debug, Clone)]
pub struct Target {
    /// The case.
    pub case: Case,
    /// `fifo=`, `tmpdir=` for the FIFO cases; `mysql=`, `db=` for the others.
    pub args: Vec<String>,
}

impl Target {
    /// A FIFO case against `server`.
    pub fn fifo(case: Case, server: &Server) -> Target {
        Target {
            case,
            args: vec![
                format!("fifo={}", server.fifo.display()),
                format!("tmpdir={}", server.tmp.display()),
            ],
        }
    }

    /// The same with the what-if client that does not sleep before reading its reply.
    pub fn lean(mut self) -> Target {
        self.args.push("client=lean".into());
        self
    }

    /// A MySQL case against the bench database.
    pub fn mysql(case: Case, db: &Db) -> Target {
        Target {
            case,
            args: vec![format!("mysql={}:{}", db.host, db.port), format!("db={}", db.name)],
        }
    }
}

/// How long or how much each worker of a batch runs.
#[derive(Debug, Clone, Copy)]
pub enum Amount {
    /// For this long.
    Secs(f64),
    /// Exactly this many requests each.
    Requests(u64),
}

/// Runs `clients` worker processes against `target` over user indices `first..end` (one
/// lane each), all starting together, and returns what each measured.
pub fn run_workers(
    target: &Target,
    clients: usize,
    first: u64,
    end: u64,
    amount: Amount,
) -> Res<Vec<Outcome>> {
    let exe = std::env::current_exe()?;
    let mut kids: Vec<(Child, ChildStdin, BufReader<ChildStdout>)> = Vec::with_capacity(clients);
    let how = match amount {
        Amount::Secs(s) => format!("secs={s}"),
        Amount::Requests(n) => format!("requests={n}"),
    };
    let kill_all = |kids: &mut Vec<(Child, ChildStdin, BufReader<ChildStdout>)>| {
        for (c, _, _) in kids.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    };
    for lane in 0..clients {
        let spawned = Command::new(&exe)
            .arg("worker")
            .arg(format!("case={}", target.case))
            .args(&target.args)
            .arg(format!("first={first}"))
            .arg(format!("end={end}"))
            .arg(format!("lane={lane}"))
            .arg(format!("lanes={clients}"))
            .arg(&how)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                kill_all(&mut kids);
                return Err(format!("spawn worker: {e}").into());
            }
        };
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            kill_all(&mut kids);
            return Err("worker pipes".into());
        };
        kids.push((child, stdin, BufReader::with_capacity(1 << 16, stdout)));
    }
    for (_, _, out) in kids.iter_mut() {
        let mut line = String::new();
        let ready = out.read_line(&mut line).is_ok() && line.trim() == "ready";
        if !ready {
            kill_all(&mut kids);
            return Err(format!("a {} worker failed to start", target.case).into());
        }
    }
    for (_, stdin, _) in kids.iter_mut() {
        stdin.write_all(b"g")?;
        stdin.flush()?;
    }
    let mut outcomes = Vec::with_capacity(clients);
    for (mut child, stdin, mut out) in kids {
        drop(stdin);
        let o = read_outcome(&mut out);
        let st = child.wait()?;
        let o = o.map_err(|e| format!("{} worker ({st}): {e}", target.case))?;
        outcomes.push(o);
    }
    Ok(outcomes)
}
