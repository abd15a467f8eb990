//! What the benchmark (`benches/compare.rs`) and the soak (`benches/soak.rs`) share: a
//! root MySQL connection, the FIFO client, and an inlookup started in directories of its
//! own as IndiMail's service has them. Each includes this file as a module of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Errors of these helpers.
pub type CommonRes<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// True when running as root (then inlookup runs as nobody).
pub fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

/// A root connection (no password) to host:port, never switching to a socket.
pub fn admin_conn(host: &str, port: u16) -> CommonRes<mysql::Conn> {
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some(host))
        .tcp_port(port)
        .user(Some("root"))
        .pass(Some(""))
        .prefer_socket(false);
    Ok(mysql::Conn::new(opts)?)
}

/// The FIFO client of the workers and the orchestrator: reply FIFOs in `tmpdir` with mode
/// 0660 (the daemon's group writes them), a 2 s write timeout and a `read` one.
pub fn fifo_client(fifo: &Path, tmpdir: &Path, read: Duration) -> inquery::Client {
    // The FIFO every time: the shared-memory cache is measured as cases of its own.
    let mut c = inquery::Client::for_fifo(fifo).with_shared(None);
    c.tmpdir = tmpdir.to_path_buf();
    c.fifo_mode = 0o660;
    c.timeouts.read = read;
    c.timeouts.write = Duration::from_secs(2);
    c
}

/// An inlookup just spawned: its process, request FIFO, FIFOTMPDIR and log.
#[derive(Debug)]
pub struct Spawned {
    /// The process.
    pub child: Child,
    /// Its request FIFO (there once it serves).
    pub fifo: PathBuf,
    /// Its FIFOTMPDIR.
    pub tmp: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
}

/// Spawns `bin` in `dir`/{fifo,tmp,control} (timeoutread and timeoutwrite 2 s; as root:
/// running as nobody, FIFOTMPDIR setgid to its group, as IndiMail's service), against the
/// database `name` at host:port as root, with `env` added. Does not wait for it.
pub fn spawn_inlookup(
    bin: &Path,
    dir: &Path,
    (host, port, name): (&str, u16, &str),
    env: &[(&str, String)],
) -> CommonRes<Spawned> {
    use std::os::unix::fs::PermissionsExt;
    let (fifo_dir, tmp, control) = (dir.join("fifo"), dir.join("tmp"), dir.join("control"));
    for d in [dir, &fifo_dir, &tmp, &control] {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(control.join("timeoutread"), "2\n")?;
    std::fs::write(control.join("timeoutwrite"), "2\n")?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    if is_root() {
        // As IndiMail's service: the daemon runs unprivileged; FIFOTMPDIR is setgid to its
        // group so clients' reply FIFOs (mode 0660) are writable by it.
        let nogroup = nix::unistd::Group::from_name("nogroup")?.map(|g| g.gid);
        let nobody = nix::unistd::User::from_name("nobody")?.map(|u| u.uid);
        nix::unistd::chown(&fifo_dir, nobody, nogroup)?;
        nix::unistd::chown(&tmp, None, nogroup)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o2770))?;
    }
    let log = dir.join("inlookup.log");
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MYSQL_HOST", host)
        .env("MYSQL_VPORT", port.to_string())
        .env("MYSQL_USER", "root")
        .env("MYSQL_PASSWD", "")
        .env("MYSQL_DATABASE", name)
        .env("INFIFODIR", &fifo_dir)
        .env("FIFOTMPDIR", &tmp)
        .env("CONTROLDIR", &control);
    if is_root() {
        cmd.args(["--user", "nobody"]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(&log)?);
    let child = cmd.spawn().map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    Ok(Spawned { child, fifo: fifo_dir.join("infifo"), tmp, log })
}

/// The workspace root (where `target/`, `sql/` and `docs/` are).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The value after `--NAME` in `args`.
pub fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let flag = format!("--{name}");
    args.iter().position(|a| *a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// `--NAME`'s value parsed, or `default` when absent.
pub fn num<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> CommonRes<T> {
    match arg(args, name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("--{name} {v:?}: not a number").into()),
    }
}

/// The `p` quantile (0 to 1) of `sorted`, by nearest rank; 0 for none.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// What `c args` prints, trimmed (empty when it cannot run).
pub fn cmd(c: &str, args: &[&str]) -> String {
    Command::new(c)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// target/release/inlookup, which scripts/bench.sh builds.
pub fn release_inlookup() -> CommonRes<PathBuf> {
    let bin = root().join("target/release/inlookup");
    if !bin.exists() {
        return Err(
            format!("{} not built (cargo build --release -p inlookup)", bin.display()).into()
        );
    }
    Ok(bin)
}

impl Spawned {
    /// Waits until the daemon answers PING on its FIFO (at most 15 s; then its log is the
    /// error).
    pub fn wait_ready(&self, what: &str) -> CommonRes<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let c = fifo_client(&self.fifo, &self.tmp, Duration::from_secs(2));
            if self.fifo.exists() && c.ping().is_ok() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!("{what}: inlookup not ready:\n{log}").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// TERM, then reaps it.
    pub fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// `clients` threads asking PWD of `who(i)` for random `i` in 1..=`n` for `secs`, on
/// `spawned`'s FIFO: the latencies of the answers found (µs), the requests that failed or
/// found nothing, and the time it took.
pub fn pwd_load(
    spawned: &Spawned,
    clients: usize,
    secs: f64,
    n: u64,
    who: fn(u64) -> String,
) -> (Vec<f64>, u64, Duration) {
    use std::time::Instant;
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|t| {
            let c = fifo_client(&spawned.fifo, &spawned.tmp, Duration::from_secs(6));
            std::thread::spawn(move || {
                use inquery::Lookup;
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1);
                while Instant::now() < until {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let t0 = Instant::now();
                    match c.passwd(&who(1 + x % n)) {
                        Ok(Some(_)) => lat.push(t0.elapsed().as_secs_f64() * 1e6),
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().unwrap_or_default();
        all.extend(l);
        errors += e;
    }
    (all, errors, started.elapsed())
}

/// A spawned daemon that is stopped (TERM, reaped) when dropped.
#[derive(Debug)]
pub struct Running(pub Spawned);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.stop();
    }
}

impl std::ops::Deref for Running {
    type Target = Spawned;
    fn deref(&self) -> &Spawned {
        &self.0
    }
}
