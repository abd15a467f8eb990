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
