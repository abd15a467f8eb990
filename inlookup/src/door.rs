//! The IMAP front door's listener (IMAP_LISTEN): unmodified IMAP clients (webmail) connect
//! here and get pooled, logged-in connections from the same pool as the FIFO kinds 40–43
//! ([`inlookup_imap::door`] speaks the protocol).
//!
//! Model: one accepting thread per listening socket and one thread per client, bounded by
//! IMAP_LISTEN_MAX_CLIENTS (default 256): one more client gets `* BYE` at once and is
//! closed. A thread whose client left waits for the next one (up to 16 wait), since a
//! woken thread runs at once where a new one may wait a scheduler slice on a busy machine. A client's thread spends its life blocked in poll or in a read, so the bound is
//! on memory (a small stack and a 64 KiB buffer each), not on CPU; the IMAP connections
//! themselves stay bounded by IMAP_MAX_CONNECTIONS, and a login that finds the pool full
//! backs off as the kinds do and then gets `NO [UNAVAILABLE]`.
//!
//! IMAP_LISTEN is a comma-separated list of `ADDRESS:PORT` (plain, with STARTTLS when a
//! certificate is given), `imaps://ADDRESS:PORT` (TLS from the first byte) and absolute
//! Unix socket paths. An address other than loopback needs IMAP_LISTEN_CERT and
//! IMAP_LISTEN_KEY: passwords must not cross a network in clear, so without them the
//! daemon refuses to start.

use crossbeam_channel::{Receiver, Sender};
use inlookup_imap::door::io::ClientStream;
use inlookup_imap::door::DoorSettings;
use inlookup_imap::Sessions;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// IMAP_LISTEN_MAX_CLIENTS when unset.
pub const DEFAULT_MAX_CLIENTS: usize = 256;

/// One place to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoorAddr {
    /// Plain TCP (STARTTLS offered when there is a certificate).
    Tcp(SocketAddr),
    /// TLS from the first byte (`imaps://`).
    Tls(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for DoorAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DoorAddr::Tcp(a) => write!(f, "{a}"),
            DoorAddr::Tls(a) => write!(f, "imaps://{a}"),
            DoorAddr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The front door's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorConfig {
    /// Where to listen (IMAP_LISTEN).
    pub listen: Vec<DoorAddr>,
    /// The PEM certificate chain and key (IMAP_LISTEN_CERT, IMAP_LISTEN_KEY).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Clients at most (IMAP_LISTEN_MAX_CLIENTS).
    pub max_clients: usize,
}

fn config_error(setting: &'static str, reason: String) -> crate::Error {
    crate::Error::Config { setting, reason }
}

impl DoorConfig {
    /// Resolves IMAP_LISTEN, IMAP_LISTEN_CERT, IMAP_LISTEN_KEY and
    /// IMAP_LISTEN_MAX_CLIENTS; `None` when IMAP_LISTEN is unset or empty.
    ///
    /// # Errors
    /// An entry that is not `ADDRESS:PORT`, `imaps://ADDRESS:PORT` or an absolute path; a
    /// certificate without its key or the other way round; `imaps://` without them; an
    /// address other than loopback without them; 0 clients.
    pub fn resolve(
        listen: Option<&str>,
        cert: Option<&Path>,
        key: Option<&Path>,
        max_clients: usize,
    ) -> Result<Option<DoorConfig>, crate::Error> {
        let given =
            |p: Option<&Path>| p.filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf);
        let tls = match (given(cert), given(key)) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((c, k)),
            (Some(_), None) => {
                return Err(config_error(
                    "IMAP_LISTEN_KEY",
                    "IMAP_LISTEN_CERT is set: give its private key too".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(config_error(
                    "IMAP_LISTEN_CERT",
                    "IMAP_LISTEN_KEY is set: give its certificate too".into(),
                ))
            }
        };
        let Some(l) = listen.map(str::trim).filter(|l| !l.is_empty()) else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for item in l.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let addr = if let Some(rest) = item.strip_prefix("imaps://") {
                DoorAddr::Tls(rest.parse().map_err(|_| {
                    config_error("IMAP_LISTEN", format!("{item:?} is not imaps://ADDRESS:PORT"))
                })?)
            } else if item.starts_with('/') {
                DoorAddr::Unix(PathBuf::from(item))
            } else {
                DoorAddr::Tcp(item.parse().map_err(|_| {
                    config_error(
                        "IMAP_LISTEN",
                        format!("{item:?} is not ADDRESS:PORT, imaps://ADDRESS:PORT or an absolute socket path"),
                    )
                })?)
            };
            match &addr {
                DoorAddr::Tls(_) if tls.is_none() => {
                    return Err(config_error(
                        "IMAP_LISTEN",
                        format!("{item} needs a certificate: set IMAP_LISTEN_CERT and IMAP_LISTEN_KEY"),
                    ))
                }
                DoorAddr::Tcp(a) | DoorAddr::Tls(a) if !a.ip().is_loopback() && tls.is_none() => {
                    return Err(config_error(
                        "IMAP_LISTEN",
                        format!(
                            "{a} is not a loopback address: passwords would cross the network in clear; \
                             set IMAP_LISTEN_CERT and IMAP_LISTEN_KEY (STARTTLS and imaps://), or listen on loopback"
                        ),
                    ))
                }
                _ => {}
            }
            out.push(addr);
        }
        if out.is_empty() {
            return Ok(None);
        }
        if max_clients == 0 {
            return Err(config_error(
                "IMAP_LISTEN_MAX_CLIENTS",
                "0 clients could be served; give 1 or more".into(),
            ));
        }
        Ok(Some(DoorConfig { listen: out, tls, max_clients }))
    }

    /// For the start-up log.
    pub fn describe(&self) -> String {
        let l: Vec<String> = self.listen.iter().map(ToString::to_string).collect();
        format!(
            "IMAP front door on {}{}; at most {} clients",
            l.join(", "),
            if self.tls.is_some() { " (TLS: STARTTLS and imaps://)" } else { " (no TLS)" },
            self.max_clients
        )
    }
}

/// A bound socket.
#[derive(Debug)]
enum Socket {
    Tcp(TcpListener, bool),
    Unix(UnixListener, PathBuf),
}

/// The door's sockets, bound (and its certificate read) before privileges are dropped.
#[derive(Debug)]
pub struct Bound {
    sockets: Vec<Socket>,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_clients: usize,
}

impl Bound {
    /// Binds every IMAP_LISTEN entry and reads the certificate. A Unix socket path left by
    /// an earlier run is replaced (only if it is a socket).
    ///
    /// # Errors
    /// A socket cannot be bound, or the certificate or key cannot be used.
    pub fn bind(cfg: &DoorConfig) -> std::io::Result<Bound> {
        let tls = match &cfg.tls {
            None => None,
            Some((c, k)) => Some(inlookup_imap::tls::server_config(c, k, "IMAP_LISTEN_CERT")?),
        };
        let mut sockets = Vec::new();
        for a in &cfg.listen {
            sockets.push(match a {
                DoorAddr::Tcp(s) => Socket::Tcp(TcpListener::bind(s)?, false),
                DoorAddr::Tls(s) => Socket::Tcp(TcpListener::bind(s)?, true),
                DoorAddr::Unix(p) => {
                    use std::os::unix::fs::FileTypeExt;
                    if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()) {
                        let _ = std::fs::remove_file(p);
                    }
                    let l = UnixListener::bind(p).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
                    })?;
                    Socket::Unix(l, p.clone())
                }
            });
        }
        Ok(Bound { sockets, tls, max_clients: cfg.max_clients })
    }

    /// The TCP addresses bound (for tests with port 0).
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| match s {
                Socket::Tcp(l, _) => l.local_addr().ok(),
                Socket::Unix(..) => None,
            })
            .collect()
    }
}

/// The running door: its accepting threads (which live as long as the process) and the
/// Unix socket paths to remove at the end.
#[derive(Debug)]
pub struct DoorSide {
    unix_paths: Vec<PathBuf>,
}

impl Drop for DoorSide {
    fn drop(&mut self) {
        for p in &self.unix_paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// What every client thread shares.
struct Shared {
    sessions: Arc<Sessions>,
    settings: DoorSettings,
    /// Clients served now.
    clients: AtomicUsize,
    max_clients: usize,
    next: AtomicU64,
    /// Threads waiting for a client on `jobs`.
    idle: AtomicUsize,
    jobs: (Sender<Job>, Receiver<Job>),
}

/// A client for a thread: its stream, whether its listener is `imaps://`, its number.
type Job = (ClientStream, bool, u64);

/// Threads kept waiting for the next client at most; more end when their client leaves.
const SPARE_THREADS: usize = 16;

impl DoorSide {
    /// Starts an accepting thread per socket.
    ///
    /// # Errors
    /// A thread could not be spawned.
    pub fn start(
        bound: Bound,
        sessions: Arc<Sessions>,
        command_timeout: Duration,
    ) -> std::io::Result<DoorSide> {
        let settings =
            DoorSettings { tls: bound.tls.clone(), command_timeout, ..DoorSettings::default() };
        let shared = Arc::new(Shared {
            sessions,
            settings,
            clients: AtomicUsize::new(0),
            max_clients: bound.max_clients,
            next: AtomicU64::new(0),
            idle: AtomicUsize::new(0),
            jobs: crossbeam_channel::unbounded(),
        });
        let mut unix_paths = Vec::new();
        for s in bound.sockets {
            let sh = shared.clone();
            match s {
                Socket::Tcp(l, implicit) => {
                    std::thread::Builder::new().name("imap-door".into()).spawn(move || {
                        for c in l.incoming() {
                            match c {
                                Ok(c) => {
                                    let _ = c.set_nodelay(true);
                                    client(&sh, ClientStream::Tcp(c), implicit);
                                }
                                Err(e) => accept_failed(&e),
                            }
                        }
                    })?;
                }
                Socket::Unix(l, p) => {
                    unix_paths.push(p);
                    std::thread::Builder::new().name("imap-door".into()).spawn(move || {
                        for c in l.incoming() {
                            match c {
                                Ok(c) => client(&sh, ClientStream::Unix(c), false),
                                Err(e) => accept_failed(&e),
                            }
                        }
                    })?;
                }
            }
        }
        Ok(DoorSide { unix_paths })
    }
}

fn accept_failed(e: &std::io::Error) {
    log::warn!("IMAP door: accept failed: {e}");
    // Out of descriptors, say: do not spin.
    std::thread::sleep(Duration::from_millis(100));
}

/// A client: to a waiting thread (a woken thread runs at once; a new one can wait a
/// scheduler slice on a busy machine), to a new thread, or `* BYE` when there are too
/// many.
fn client(sh: &Arc<Shared>, mut stream: ClientStream, implicit_tls: bool) {
    if sh.clients.fetch_add(1, Ordering::SeqCst) >= sh.max_clients {
        sh.clients.fetch_sub(1, Ordering::SeqCst);
        sh.sessions.door_note(|d| d.refused += 1);
        if !implicit_tls {
            let _ = stream.set_timeouts(Duration::from_secs(1), Duration::from_secs(1));
            let _ = stream.write_all(b"* BYE Too many connections; try again later.\r\n");
        }
        stream.close();
        return;
    }
    let n = sh.next.fetch_add(1, Ordering::Relaxed);
    // A waiting thread is taken (counted off here, so two clients never count on one).
    if sh.idle.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1)).is_ok() {
        if sh.jobs.0.send((stream, implicit_tls, n)).is_err() {
            sh.clients.fetch_sub(1, Ordering::SeqCst);
        }
        return;
    }
    let sh2 = sh.clone();
    let spawned = std::thread::Builder::new()
        .name("imap-door-client".into())
        .stack_size(256 * 1024)
        .spawn(move || worker(&sh2, (stream, implicit_tls, n)));
    if let Err(e) = spawned {
        sh.clients.fetch_sub(1, Ordering::SeqCst);
        log::warn!("IMAP door: no thread for a client: {e}");
    }
}

/// A client thread: serves its first client, then waits for more while few others wait.
fn worker(sh: &Arc<Shared>, first: Job) {
    let mut job = first;
    loop {
        let (stream, implicit_tls, n) = job;
        inlookup_imap::door::serve(&sh.sessions, stream, implicit_tls, &sh.settings, n);
        sh.clients.fetch_sub(1, Ordering::SeqCst);
        if sh.idle.load(Ordering::SeqCst) >= SPARE_THREADS {
            return;
        }
        sh.idle.fetch_add(1, Ordering::SeqCst);
        match sh.jobs.1.recv() {
            Ok(j) => job = j,
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(l: &str, tls: bool) -> Result<Option<DoorConfig>, String> {
        let (c, k) = (Path::new("/c.pem"), Path::new("/k.pem"));
        let (c, k) = if tls { (Some(c), Some(k)) } else { (None, None) };
        DoorConfig::resolve(Some(l), c, k, 4).map_err(|e| e.to_string())
    }

    #[test]
    fn listen_lists() {
        let c = resolve("127.0.0.1:1144, /run/door.sock", false).unwrap().unwrap();
        assert_eq!(c.listen[0], DoorAddr::Tcp("127.0.0.1:1144".parse().unwrap()));
        assert_eq!(c.listen[1], DoorAddr::Unix("/run/door.sock".into()));
        assert!(resolve("", false).unwrap().is_none());
        let c = resolve("imaps://[::1]:993,0.0.0.0:143", true).unwrap().unwrap();
        assert_eq!(c.listen[0], DoorAddr::Tls("[::1]:993".parse().unwrap()));
    }

    #[test]
    fn refusals() {
        let e = resolve("0.0.0.0:1144", false).unwrap_err();
        assert!(
            e.contains("IMAP_LISTEN")
                && e.contains("not a loopback")
                && e.contains("IMAP_LISTEN_CERT"),
            "{e}"
        );
        assert!(resolve("imaps://127.0.0.1:993", false).unwrap_err().contains("certificate"));
        assert!(resolve("relative.sock", false).is_err());
        let e =
            DoorConfig::resolve(Some("127.0.0.1:1"), Some(Path::new("/c")), None, 4).unwrap_err();
        assert!(e.to_string().contains("IMAP_LISTEN_KEY"), "{e}");
        assert!(DoorConfig::resolve(Some("127.0.0.1:1"), None, None, 0).is_err());
    }
}
