//! The end-to-end harness: real binaries, a real MariaDB, a database per test, a daemon per
//! test running as an unprivileged user, and raw FIFO access for the bad-input cases.

#![allow(dead_code)]

use inlookup_core::wire::encode_request;
use inquery::Client;
use mysql::prelude::Queryable;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    // target/debug/deps/e2e-xxxx → target/debug
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

/// A binary of the workspace, built once per test run so `cargo test` alone is enough.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile_release = target_dir().ends_with("release");
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root()).args([
            "build",
            "--quiet",
            "-p",
            "inlookup",
            "-p",
            "inquerytest",
            "-p",
            "inquery",
            "--bins",
            "--lib",
        ]);
        if profile_release {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build");
        assert!(st.success(), "cargo build of the binaries failed");
    });
    let p = target_dir().join(name);
    assert!(p.exists(), "{} not built", p.display());
    p
}

/// Where the shared MariaDB listens (host, port): INLOOKUP_TEST_MYSQL=host:port, else one on
/// 127.0.0.1:3306 if root can log in, else a throwaway one the project's script starts.
pub fn mysql_addr() -> (String, u16) {
    static ADDR: OnceLock<(String, u16)> = OnceLock::new();
    ADDR.get_or_init(|| {
        if let Ok(v) = std::env::var("INLOOKUP_TEST_MYSQL") {
            let (h, p) = v.rsplit_once(':').expect("INLOOKUP_TEST_MYSQL=host:port");
            return (h.to_string(), p.parse().expect("port"));
        }
        let state = target_dir().join("test-mariadb");
        let out = Command::new(root().join("scripts/mariadb.sh"))
            .arg("ensure")
            .arg(&state)
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/mariadb.sh");
        assert!(out.status.success(), "scripts/mariadb.sh ensure failed");
        let line = String::from_utf8_lossy(&out.stdout);
        let mut it = line.split_whitespace();
        let host = it.next().expect("host").to_string();
        let port = it.next().and_then(|p| p.parse().ok()).expect("port");
        (host, port)
    })
    .clone()
}

fn admin_conn(host: &str, port: u16) -> mysql::Conn {
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some(host))
        .tcp_port(port)
        .user(Some("root"))
        .pass(Some(""))
        .prefer_socket(false);
    mysql::Conn::new(opts).expect("connect to MariaDB as root")
}

/// A database of its own, loaded with `sql/schema.sql` and `sql/demo.sql`, dropped at the end.
pub struct TestDb {
    pub host: String,
    pub port: u16,
    pub name: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let (host, port) = mysql_addr();
        TestDb::on(&host, port)
    }

    pub fn on(host: &str, port: u16) -> TestDb {
        let name =
            format!("inl_t_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let mut c = admin_conn(host, port);
        c.query_drop(format!("DROP DATABASE IF EXISTS {name}")).unwrap();
        c.query_drop(format!("CREATE DATABASE {name}")).unwrap();
        c.query_drop(format!("USE {name}")).unwrap();
        for f in ["sql/schema.sql", "sql/demo.sql"] {
            let sql = std::fs::read_to_string(root().join(f)).unwrap();
            c.query_drop(sql).unwrap_or_else(|e| panic!("loading {f}: {e}"));
        }
        TestDb { host: host.to_string(), port, name }
    }

    /// A connection to this database, for changing data under the daemon.
    pub fn conn(&self) -> mysql::Conn {
        let mut c = admin_conn(&self.host, self.port);
        c.query_drop(format!("USE {}", self.name)).unwrap();
        c
    }

    pub fn exec(&self, sql: &str) {
        self.conn().query_drop(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = mysql::Conn::new(
            mysql::OptsBuilder::new()
                .ip_or_hostname(Some(&self.host))
                .tcp_port(self.port)
                .user(Some("root"))
                .prefer_socket(false),
        ) {
            let _ = c.query_drop(format!("DROP DATABASE IF EXISTS {}", self.name));
        }
    }
}

/// A throwaway CA and a certificate for 127.0.0.1 signed by it, made with openssl:
/// (the directory, the CA's PEM, the server's certificate, its key).
pub fn tls_files() -> (TempDir, std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let dir = TempDir::new("tcp-tls");
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(&dir.path).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-days", "2", "-subj", "/CN=inlookup test CA"],
        &["-keyout", "ca.key", "-out", "ca.pem"],
    ]
    .concat());
    run(&[&["req"][..], &ec, &["-subj", "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "s.csr"]]
        .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "s.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    let (ca, cert, key) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    (dir, ca, cert, key)
}

/// A throwaway MariaDB of the test's own (so the test may stop and restart it).
pub struct OwnMariadb {
    pub dir: PathBuf,
    pub port: u16,
}

impl OwnMariadb {
    pub fn start() -> OwnMariadb {
        Self::start_tls(None)
    }

    /// A throwaway MariaDB offering TLS with these files (the CA's PEM, the server's
    /// certificate and key), or none.
    pub fn start_tls(tls: Option<(&Path, &Path, &Path)>) -> OwnMariadb {
        Self::start_with(tls, &[])
    }

    /// A throwaway MariaDB with its binlog on: this server id, this binlog_format (ROW,
    /// STATEMENT, MIXED), binlog_row_image and binlog_row_metadata FULL, log_slave_updates
    /// (scripts/mariadb.sh MARIADB_SERVER_ID), kept across restarts.
    pub fn start_binlog(server_id: u32, format: &str) -> OwnMariadb {
        let id = server_id.to_string();
        Self::start_with(None, &[("MARIADB_SERVER_ID", &id), ("MARIADB_BINLOG_FORMAT", format)])
    }

    /// Makes this server a replica of `primary`, from the start of its binlog, and waits
    /// until both replication threads run.
    pub fn replicate_from(&self, primary: &OwnMariadb) {
        let out = Command::new(root().join("scripts/mariadb.sh"))
            .arg("replicate")
            .arg(&self.dir)
            .arg(primary.port.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "replicate: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A root connection to this server (no database chosen).
    pub fn admin(&self) -> mysql::Conn {
        admin_conn("127.0.0.1", self.port)
    }

    fn start_with(tls: Option<(&Path, &Path, &Path)>, env: &[(&str, &str)]) -> OwnMariadb {
        // Starts are serialised, and retried once: a free port found by one start can be
        // taken by another before mariadbd binds it.
        static STARTING: Mutex<()> = Mutex::new(());
        let _g = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = String::new();
        for _ in 0..2 {
            let dir = std::env::temp_dir().join(format!(
                "inl-own-mdb-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            if let Some((ca, cert, key)) = tls {
                std::fs::create_dir_all(dir.join("tls")).unwrap();
                for (from, to) in [(ca, "ca.pem"), (cert, "cert.pem"), (key, "key.pem")] {
                    std::fs::copy(from, dir.join("tls").join(to)).unwrap();
                }
            }
            let out = Command::new(root().join("scripts/mariadb.sh"))
                .arg("start")
                .arg(&dir)
                .envs(env.iter().copied())
                .output()
                .expect("mariadb.sh start");
            if out.status.success() {
                let line = String::from_utf8_lossy(&out.stdout).to_string();
                let port =
                    line.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("port");
                return OwnMariadb { dir, port };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            eprintln!("mariadb.sh start failed, retrying: {last}");
            let _ = Command::new(root().join("scripts/mariadb.sh")).arg("stop").arg(&dir).status();
            let _ = std::fs::remove_dir_all(&dir);
        }
        panic!("mariadb.sh start: {last}");
    }

    pub fn stop(&self) {
        let st = Command::new(root().join("scripts/mariadb.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(st.success());
    }

    pub fn restart(&self) {
        let out = Command::new(root().join("scripts/mariadb.sh"))
            .arg("start")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "restart: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for OwnMariadb {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

/// Options for a daemon under test.
#[derive(Clone, Default)]
pub struct Opts {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Opts {
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
}

/// A running `inlookup`, its directories and log.
pub struct Daemon {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub fifo_dir: PathBuf,
    pub tmp: PathBuf,
    pub control: PathBuf,
    pub log: PathBuf,
    pub fifos: Vec<PathBuf>,
}

/// Serialises starts so the 2-core machine is not swamped by parallel daemons starting.
static START: Mutex<()> = Mutex::new(());

impl Daemon {
    pub fn start(db: &TestDb, opts: Opts) -> Daemon {
        Daemon::start_on(&db.host, db.port, &db.name, opts)
    }

    pub fn start_on(host: &str, port: u16, database: &str, opts: Opts) -> Daemon {
        let _g = START.lock().unwrap_or_else(|e| e.into_inner());
        let mut d = Daemon::prepare(2, 2);
        d.spawn(host, port, database, &opts);
        d
    }

    /// The directories of a test daemon (FIFOs, FIFOTMPDIR, CONTROLDIR with these
    /// timeoutread and timeoutwrite), owned as IndiMail's service has them; nothing runs yet
    /// ([`Daemon::spawn`]).
    pub fn prepare(timeout_read: u64, timeout_write: u64) -> Daemon {
        let dir = std::env::temp_dir().join(format!(
            "inl-e2e-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let (fifo_dir, tmp, control) = (dir.join("fifo"), dir.join("tmp"), dir.join("control"));
        for d in [&dir, &fifo_dir, &tmp, &control] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(control.join("timeoutread"), format!("{timeout_read}\n")).unwrap();
        std::fs::write(control.join("timeoutwrite"), format!("{timeout_write}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        if is_root() {
            // As IndiMail's service does: the daemon runs as an unprivileged user, FIFOTMPDIR
            // is setgid to its group so clients' reply FIFOs (mode 0660) are writable by it.
            let nogroup = nix::unistd::Group::from_name("nogroup").ok().flatten().map(|g| g.gid);
            let nobody = nix::unistd::User::from_name("nobody").ok().flatten().map(|u| u.uid);
            nix::unistd::chown(&fifo_dir, nobody, nogroup).unwrap();
            nix::unistd::chown(&tmp, None, nogroup).unwrap();
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o2770)).unwrap();
        }
        let log = dir.join("inlookup.log");
        std::fs::write(&log, b"").unwrap();
        Daemon { child: None, dir, fifo_dir, tmp, control, log, fifos: Vec::new() }
    }

    /// Starts inlookup (again, after a kill) on this daemon's directories, appending to its
    /// log, with `--workers 4` unless `opts` names a worker count; waits until it answers.
    pub fn spawn(&mut self, host: &str, port: u16, database: &str, opts: &Opts) {
        let log = std::fs::OpenOptions::new().append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(bin("inlookup"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MYSQL_HOST", host)
            .env("MYSQL_VPORT", port.to_string())
            .env("MYSQL_USER", "root")
            .env("MYSQL_PASSWD", "")
            .env("MYSQL_DATABASE", database)
            .env("INFIFODIR", &self.fifo_dir)
            .env("FIFOTMPDIR", &self.tmp)
            .env("CONTROLDIR", &self.control)
            .arg("-v");
        if !opts.args.iter().any(|a| a == "--workers") {
            cmd.args(["--workers", "4"]);
        }
        if is_root() {
            cmd.args(["--user", "nobody"]);
        }
        // Off unless a test turns it on: tests count the daemon's hits, and a client in this
        // process would read them from the mapping instead (tests/e2e/shared_cache.rs).
        cmd.env("SHARED_CACHE", "off");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd.args(&opts.args);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        self.child = Some(cmd.spawn().expect("spawn inlookup"));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let fifos: Vec<PathBuf> = std::fs::read_dir(&self.fifo_dir)
                .map(|r| {
                    r.filter_map(Result::ok)
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_fifo()))
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default();
            if !fifos.is_empty() {
                let mut fifos = fifos;
                fifos.sort();
                self.fifos = fifos;
                if self.client().ping().is_ok() {
                    return;
                }
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("inlookup exited at start ({st}):\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "inlookup not ready:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// A client for the first request FIFO, reply FIFOs in this daemon's FIFOTMPDIR.
    pub fn client(&self) -> Client {
        self.client_for(&self.fifos[0])
    }

    pub fn client_for(&self, fifo: &Path) -> Client {
        let mut c = Client::for_fifo(fifo);
        c.tmpdir = self.tmp.clone();
        c.fifo_mode = 0o660;
        c.timeouts.read = Duration::from_secs(2);
        c.timeouts.write = Duration::from_secs(2);
        c
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (signals are handled asynchronously).
    pub fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.log_text().contains(needle) {
            assert!(Instant::now() < deadline, "log never said {needle:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// TERM, then the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "inlookup did not stop on TERM:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes raw bytes into the request FIFO, as a broken or hostile client would.
    pub fn write_raw(&self, bytes: &[u8]) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(&self.fifos[0]).unwrap();
        f.write_all(bytes).unwrap();
    }

    /// A reply FIFO in FIFOTMPDIR, opened for reading, for hand-made requests.
    pub fn reply_fifo(&self, name: &str) -> RawReply {
        RawReply::new(self.tmp.join(name))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- inlookup log ({}) ---\n{}", self.log.display(), self.log_text());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A reply FIFO made by hand.
pub struct RawReply {
    pub path: PathBuf,
    fd: std::os::fd::OwnedFd,
}

impl RawReply {
    pub fn new(path: PathBuf) -> RawReply {
        use nix::fcntl::{open, OFlag};
        use nix::sys::stat::Mode;
        nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o660)).unwrap();
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &path,
            Mode::from_bits_truncate(0o660),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .unwrap();
        let fd = open(&path, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()).unwrap();
        RawReply { path, fd }
    }

    /// A whole request frame replying here.
    pub fn frame(&self, kind: u8, email: &str, ip: &str) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        encode_request(kind, email.as_bytes(), self.path.as_os_str().as_bytes(), ip.as_bytes())
            .unwrap()
    }

    /// Whatever arrives within `wait` (empty: nothing came). The daemon writes a small
    /// reply in one write, so the first data is the whole reply; a moment more collects any
    /// tail of a large one.
    pub fn read(&self, wait: Duration) -> Vec<u8> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while Instant::now() < deadline {
            match nix::unistd::read(&self.fd, &mut buf) {
                Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ if !out.is_empty() => return out,
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        out
    }

    /// The leading int of whatever arrived, or `None` when nothing did.
    pub fn int(&self, wait: Duration) -> Option<i32> {
        let b = self.read(wait);
        (b.len() >= 4).then(|| i32::from_ne_bytes(b[..4].try_into().unwrap()))
    }
}

impl Drop for RawReply {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

// ---- Helpers for the client tests (cabi, cli, direct, leaks) ----

impl TestDb {
    /// Connection settings for this database, as a direct-mode client has them.
    pub fn mysql_settings(&self) -> inlookup_core::MysqlSettings {
        inlookup_core::MysqlSettings {
            host: self.host.clone(),
            port: self.port,
            user: "root".into(),
            password: String::new(),
            database: self.name.clone(),
            ..inlookup_core::MysqlSettings::default()
        }
    }

    /// The MYSQL_* variables that point a program (inquerytest, a C program's fallback, a
    /// private inlookup) at this database.
    pub fn mysql_env(&self) -> Vec<(String, String)> {
        [
            ("MYSQL_HOST", self.host.clone()),
            ("MYSQL_VPORT", self.port.to_string()),
            ("MYSQL_USER", "root".to_string()),
            ("MYSQL_PASSWD", String::new()),
            ("MYSQL_DATABASE", self.name.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Where the workspace's binaries and libinquery.so/.a are built (building them first).
pub fn build_dir() -> PathBuf {
    bin("inquerytest").parent().expect("target dir").to_path_buf()
}

/// A temporary directory of the test's own, removed when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "inl-{what}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir { path }
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The names left in a directory (reply FIFOs in a FIFOTMPDIR, say).
pub fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned())).collect()
        })
        .unwrap_or_default()
}
