//! A private inlookup for one query, as IndiMail's inquerytest forks one when `-i` names a
//! FIFO that does not exist: started on that FIFO, asked, stopped, and its FIFO removed.

use inquery::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to answer its first PING.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// How long it may take to stop on TERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// A running private inlookup; stopped, and its files removed, when dropped.
#[derive(Debug)]
pub struct PrivateServer {
    /// The daemon (None once reaped).
    child: Option<Child>,
    /// The request FIFO it serves, removed at the end.
    fifo: PathBuf,
    /// Its own FIFOTMPDIR, so its replies can reach us whoever it runs as.
    tmpdir: PathBuf,
    /// Where its stderr goes unless verbose, for the reason it failed to start.
    log: PathBuf,
}

/// The user a root inquerytest runs the server as: INLOOKUP_USER, else nobody.
fn server_user() -> String {
    std::env::var("INLOOKUP_USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "nobody".into())
}

fn make_tmpdir() -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let base = std::env::temp_dir();
    for n in 0..100u32 {
        let dir = base.join(format!("inquerytest.{}.{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("mkdir {}: {e}", dir.display())),
        }
    }
    Err(format!("cannot make a private directory in {}", base.display()))
}

/// As root, the server drops to `user`: give that user's group the directory (setgid, so
/// our reply FIFOs, mode 0660, are the group's too), as IndiMail's FIFOTMPDIR is set up.
fn share_with(dir: &Path, user: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let u = nix::unistd::User::from_name(user)
        .map_err(|e| format!("user {user}: {e}"))?
        .ok_or_else(|| format!("no such user {user:?} (set INLOOKUP_USER)"))?;
    nix::unistd::chown(dir, None, Some(u.gid))
        .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2770))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))
}

impl PrivateServer {
    /// Starts `inlookup` (the one next to this program) on `fifo` and waits until it
    /// answers a PING. Its MySQL settings come from this environment.
    ///
    /// # Errors
    /// No `inlookup` binary, a directory or spawn failure, or a server that exits or does
    /// not answer in time (with the last line it logged).
    pub fn start(fifo: &Path, verbose: bool) -> Result<PrivateServer, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let bin = exe.with_file_name("inlookup");
        if !bin.exists() {
            return Err(format!("{} not found: a private server needs it", bin.display()));
        }
        let tmpdir = make_tmpdir()?;
        let log = tmpdir.join("inlookup.log");
        let mut server = PrivateServer { child: None, fifo: fifo.to_path_buf(), tmpdir, log };
        let mut cmd = Command::new(&bin);
        cmd.arg("-f").arg(fifo).args(["--workers", "1"]).env("FIFOTMPDIR", &server.tmpdir);
        if nix::unistd::getuid().is_root() {
            let user = server_user();
            share_with(&server.tmpdir, &user)?;
            cmd.args(["--user", &user]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        if verbose {
            cmd.arg("-v").stderr(Stdio::inherit());
        } else {
            let f = std::fs::File::create(&server.log)
                .map_err(|e| format!("{}: {e}", server.log.display()))?;
            cmd.stderr(f);
        }
        let child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        server.child = Some(child);
        server.wait_ready()?;
        Ok(server)
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// A client of this server.
    pub fn client(&self) -> Client {
        let mut c = Client::for_fifo(&self.fifo);
        c.tmpdir = self.tmpdir.clone();
        c
    }

    fn last_log_line(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().last().map(|l| format!(": {l}")).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        let mut probe = self.client();
        probe.timeouts.read = Duration::from_secs(1);
        probe.timeouts.write = Duration::from_secs(1);
        loop {
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!(
                    "the private inlookup exited at start ({st}){}",
                    self.last_log_line()
                ));
            }
            if self.fifo.exists() && probe.ping().is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the private inlookup did not answer within {} s{}",
                    READY_WITHIN.as_secs(),
                    self.last_log_line()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + STOP_WITHIN;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        // The server removes its FIFO on TERM; after a KILL it is still there.
        if std::fs::symlink_metadata(&self.fifo).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_fifo()
        }) {
            let _ = std::fs::remove_file(&self.fifo);
        }
        let _ = std::fs::remove_dir_all(&self.tmpdir);
    }
}
