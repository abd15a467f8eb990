//! The FIFOs: the request FIFOs the daemon reads, and the reply FIFOs it writes to.
//!
//! Request FIFOs are opened `O_RDWR | O_NONBLOCK`: holding a write end of our own, we never
//! read EOF when the last client closes. Reply FIFOs are opened only inside FIFOTMPDIR (the
//! name is opened relative to a descriptor of it with `O_NOFOLLOW`; a reply path must name
//! FIFOTMPDIR as configured, or a directory that is FIFOTMPDIR by device and inode), and
//! must be FIFOs by `fstat`. Clients remove their reply FIFOs; the daemon removes one only
//! when its client cannot (nobody reads it any more, or the write failed).

use nix::errno::Errno;
use nix::fcntl::{open, openat, FcntlArg, OFlag};
use nix::sys::stat::{fstat, fstatat, stat, Mode, SFlag};
use nix::unistd::mkfifo;
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// A request FIFO the daemon serves.
#[derive(Debug)]
pub struct RequestFifo {
    /// Its path, removed at shutdown.
    pub path: PathBuf,
    /// Read (and write) end.
    pub fd: OwnedFd,
}

/// Why the daemon cannot serve a FIFO.
#[derive(Debug)]
pub enum FifoError {
    /// The path exists and is not a FIFO.
    NotAFifo(PathBuf),
    /// Another process already reads this FIFO (another inlookup is running).
    InUse(PathBuf),
    /// A system call failed.
    Sys(PathBuf, &'static str, Errno),
}

impl fmt::Display for FifoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FifoError::NotAFifo(p) => write!(f, "{}: exists and is not a FIFO", p.display()),
            FifoError::InUse(p) => {
                write!(f, "{}: another process is already serving this FIFO", p.display())
            }
            FifoError::Sys(p, what, e) => write!(f, "{}: {what}: {e}", p.display()),
        }
    }
}

impl std::error::Error for FifoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FifoError::Sys(_, _, e) => Some(e),
            FifoError::NotAFifo(_) | FifoError::InUse(_) => None,
        }
    }
}

fn is_fifo(mode: nix::libc::mode_t) -> bool {
    SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) == SFlag::S_IFIFO
}

impl RequestFifo {
    /// Creates (if absent) and opens a request FIFO with permissions `mode`, and asks the
    /// kernel for a pipe buffer of `pipe_size` bytes so bursts queue instead of failing.
    ///
    /// # Errors
    /// The path is not a FIFO, another daemon holds it, or a system call failed.
    pub fn open(path: &Path, mode: u32, pipe_size: usize) -> Result<RequestFifo, FifoError> {
        let sys = |what, e| FifoError::Sys(path.to_path_buf(), what, e);
        match stat(path) {
            Ok(st) if !is_fifo(st.st_mode) => return Err(FifoError::NotAFifo(path.into())),
            Ok(_) => {
                // A reader already there means a live daemon: opening for write succeeds.
                let probe = open(
                    path,
                    OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                    Mode::empty(),
                );
                if probe.is_ok() {
                    return Err(FifoError::InUse(path.into()));
                }
            }
            Err(Errno::ENOENT) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                        FifoError::Sys(dir.to_path_buf(), "mkdir", errno)
                    })?;
                }
                mkfifo(path, Mode::from_bits_truncate(mode)).map_err(|e| sys("mkfifo", e))?;
            }
            Err(e) => return Err(sys("stat", e)),
        }
        let fd = open(path, OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| sys("open", e))?;
        let st = fstat(&fd).map_err(|e| sys("fstat", e))?;
        if !is_fifo(st.st_mode) {
            return Err(FifoError::NotAFifo(path.into()));
        }
        // The umask may have narrowed mkfifo's mode: set it exactly.
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(|e| sys("chmod", e))?;
        if pipe_size > 0 {
            if let Err(e) = nix::fcntl::fcntl(&fd, FcntlArg::F_SETPIPE_SZ(pipe_size as i32)) {
                log::warn!(
                    "{}: cannot raise the pipe buffer to {pipe_size} bytes: {e}",
                    path.display()
                );
            }
        }
        Ok(RequestFifo { path: path.to_path_buf(), fd })
    }

    /// Removes the FIFO's name (clients then find no daemon).
    pub fn unlink(&self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            log::warn!("{}: cannot remove: {e}", self.path.display());
        }
    }
}

/// The request FIFO paths for `infifo` and `instances`: `infifo` itself for 0 or 1, else
/// `infifo.1` … `infifo.N`. A relative `infifo` lives in `dir` unless it starts with `.`.
pub fn request_paths(dir: &Path, infifo: &str, instances: u32) -> Vec<PathBuf> {
    let base = if infifo.starts_with('/') || infifo.starts_with('.') {
        PathBuf::from(infifo)
    } else {
        dir.join(infifo)
    };
    if instances <= 1 {
        return vec![base];
    }
    (1..=instances)
        .map(|n| {
            let mut p = base.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        })
        .collect()
}

/// Why a reply was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyFailure {
    /// The client already gave up (no reader, or the FIFO is gone). Not the daemon's fault.
    Vanished,
    /// The path is not one of ours. Nothing was written.
    Refused(PathRefused),
    /// A write failed or could not finish in time.
    Failed(WriteFailed),
}

/// Why a reply path is not one the daemon writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefused {
    /// It ends in a slash, `.` or `..`.
    NoFileName,
    /// Its directory is not FIFOTMPDIR.
    OutsideDir,
    /// The name is a symbolic link.
    Symlink,
    /// The name is not a FIFO.
    NotAFifo,
    /// Its directory could not be looked at.
    Directory(Errno),
}

/// Why a reply to a good path could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFailed {
    /// Opening the FIFO failed.
    Open(Errno),
    /// `fstat` of the opened FIFO failed.
    Fstat(Errno),
    /// A write failed.
    Write(Errno),
    /// The FIFO cannot take a small reply whole at once: its reader keeps it full.
    Full,
    /// The client read too slowly: `written` of `of` bytes by the deadline.
    TimedOut {
        /// Bytes written.
        written: usize,
        /// The reply's length.
        of: usize,
    },
    /// The thread that writes large replies is gone (the daemon is stopping).
    WriterGone,
}

impl fmt::Display for ReplyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyFailure::Vanished => f.write_str("client gone"),
            ReplyFailure::Refused(why) => write!(f, "refused: {why}"),
            ReplyFailure::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

impl std::error::Error for ReplyFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplyFailure::Vanished => None,
            ReplyFailure::Refused(e) => Some(e),
            ReplyFailure::Failed(e) => Some(e),
        }
    }
}

impl fmt::Display for PathRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathRefused::NoFileName => f.write_str("no file name"),
            PathRefused::OutsideDir => f.write_str("not in FIFOTMPDIR"),
            PathRefused::Symlink => f.write_str("a symbolic link"),
            PathRefused::NotAFifo => f.write_str("not a FIFO"),
            PathRefused::Directory(e) => write!(f, "directory: {e}"),
        }
    }
}

impl std::error::Error for PathRefused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PathRefused::Directory(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for WriteFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteFailed::Open(e) => write!(f, "open: {e}"),
            WriteFailed::Fstat(e) => write!(f, "fstat: {e}"),
            WriteFailed::Write(e) => write!(f, "write: {e}"),
            WriteFailed::Full => f.write_str("the reply FIFO is full (its reader does not read)"),
            WriteFailed::TimedOut { written, of } => {
                write!(f, "timed out after {written} of {of} bytes")
            }
            WriteFailed::WriterGone => f.write_str("writer thread gone"),
        }
    }
}

impl std::error::Error for WriteFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteFailed::Open(e) | WriteFailed::Fstat(e) | WriteFailed::Write(e) => Some(e),
            WriteFailed::TimedOut { .. } | WriteFailed::WriterGone | WriteFailed::Full => None,
        }
    }
}

/// FIFOTMPDIR, held open so reply names are resolved inside it and nowhere else.
#[derive(Debug)]
pub struct ReplyDir {
    /// The path's bytes without trailing slashes: a reply path whose directory part is
    /// exactly this needs no `stat` (its name is opened under `fd` anyway).
    spelled: Box<[u8]>,
    /// A descriptor of it, for `openat`/`unlinkat`.
    fd: OwnedFd,
    /// Its device and inode: a reply path's parent must be this very directory.
    id: (u64, u64),
}

/// A reply FIFO opened by [`ReplyDir::open_reply`]: the descriptor to write to, and its
/// name in FIFOTMPDIR, to remove if the reply could not be written ([`ReplyDir::remove`]).
#[derive(Debug)]
pub struct ReplyFifo<'p> {
    /// Write end, non-blocking; a FIFO by `fstat`.
    pub fd: OwnedFd,
    /// The plain name inside FIFOTMPDIR.
    name: &'p OsStr,
}

impl ReplyDir {
    /// Opens FIFOTMPDIR.
    ///
    /// # Errors
    /// It does not exist or is not a directory.
    pub fn open(path: &Path) -> Result<ReplyDir, FifoError> {
        let fd = open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| FifoError::Sys(path.into(), "open FIFOTMPDIR", e))?;
        let st = fstat(&fd).map_err(|e| FifoError::Sys(path.into(), "fstat", e))?;
        let bytes = path.as_os_str().as_bytes();
        let trimmed = match bytes.iter().rposition(|&b| b != b'/') {
            Some(last) => &bytes[..=last],
            None => &bytes[..0], // "/" (or "//"): a reply path "/name" has an empty directory part
        };
        Ok(ReplyDir { spelled: trimmed.into(), fd, id: (st.st_dev, st.st_ino) })
    }

    /// Checks a reply path and opens it for writing, without blocking, never following a
    /// symlink, only if it is a FIFO directly inside FIFOTMPDIR.
    ///
    /// When the path's directory part is FIFOTMPDIR spelled exactly as configured, the
    /// name is opened under the descriptor held since start, which confines it to that
    /// directory whatever happened to the path since; any other spelling (`./`, `//`,
    /// a symlink to it) is accepted only if it `stat`s to the same device and inode.
    ///
    /// A FIFO nobody reads any more (its client gave up or died) is removed here; a good
    /// one is left in place: the caller writes, and calls [`ReplyDir::remove`] only if the
    /// write failed.
    pub fn open_reply<'p>(&self, reply_path: &'p [u8]) -> Result<ReplyFifo<'p>, ReplyFailure> {
        let refuse = |why| Err(ReplyFailure::Refused(why));
        let (dir, name) = match reply_path.iter().rposition(|&b| b == b'/') {
            Some(i) => (Some(&reply_path[..i]), &reply_path[i + 1..]),
            None => (None, reply_path),
        };
        let plain = !name.is_empty() && name != b"." && name != b"..";
        let name = if plain && dir == Some(&*self.spelled) {
            OsStr::from_bytes(name)
        } else {
            self.check_parent(reply_path)?
        };
        let flags = OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENXIO) => {
                self.remove_if_fifo(name);
                return Err(ReplyFailure::Vanished);
            }
            Err(Errno::ENOENT) => return Err(ReplyFailure::Vanished),
            Err(Errno::ELOOP) => return refuse(PathRefused::Symlink),
            Err(e) => return Err(ReplyFailure::Failed(WriteFailed::Open(e))),
        };
        match fstat(&fd) {
            Ok(st) if is_fifo(st.st_mode) => {}
            Ok(_) => return refuse(PathRefused::NotAFifo),
            Err(e) => return Err(ReplyFailure::Failed(WriteFailed::Fstat(e))),
        }
        Ok(ReplyFifo { fd, name })
    }

    /// The slow path of [`ReplyDir::open_reply`]: the reply path's parent, however spelled,
    /// must be FIFOTMPDIR by device and inode. Returns the plain name to open in it.
    fn check_parent<'p>(&self, reply_path: &'p [u8]) -> Result<&'p OsStr, ReplyFailure> {
        let refuse = |why| Err(ReplyFailure::Refused(why));
        let path = Path::new(OsStr::from_bytes(reply_path));
        let Some(Component::Normal(name)) = path.components().next_back() else {
            return refuse(PathRefused::NoFileName);
        };
        if reply_path.ends_with(b"/") {
            return refuse(PathRefused::NoFileName);
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        match stat(parent) {
            Ok(st) if (st.st_dev, st.st_ino) == self.id => Ok(name),
            Ok(_) => refuse(PathRefused::OutsideDir),
            Err(Errno::ENOENT) => Err(ReplyFailure::Vanished),
            Err(e) => refuse(PathRefused::Directory(e)),
        }
    }

    /// Removes a reply FIFO's name when its reply could not be written, so nothing is left
    /// behind if its client is stuck or gone. No `fstatat` first: the `fstat` in
    /// [`ReplyDir::open_reply`] showed a FIFO, and checking the name again would be no less
    /// racy (a process that can swap a file into FIFOTMPDIR can remove it itself).
    pub fn remove(&self, reply: &ReplyFifo<'_>) {
        let _ = unlinkat(&self.fd, reply.name, UnlinkatFlags::NoRemoveDir);
    }

    /// Removes abandoned reply FIFOs: names a client gives its reply FIFO
    /// ([`is_reply_name`]), FIFOs by `fstatat` without following a symlink, unchanged for
    /// `older_than`, and read by nobody (opening one for writing fails with ENXIO). Only
    /// names directly in FIFOTMPDIR are looked at and removed, through its descriptor, so no
    /// rename of a directory on the path can point the removal elsewhere; the name is
    /// removed only if it is still the FIFO found (same device and inode). A FIFO still
    /// read (a client waiting longer than the usual timeouts) is left alone. Returns how
    /// many went.
    pub fn sweep(&self, older_than: std::time::Duration) -> usize {
        let Ok(mut dir) = nix::dir::Dir::openat(
            &self.fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            return 0;
        };
        let now = std::time::SystemTime::now();
        let names: Vec<std::ffi::CString> = dir
            .iter()
            .filter_map(Result::ok)
            .filter(|e| is_reply_name(e.file_name().to_bytes()))
            .map(|e| e.file_name().to_owned())
            .collect();
        let mut removed = 0;
        for name in names {
            let flags = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
            let Ok(st) = fstatat(&self.fd, name.as_c_str(), flags) else { continue };
            let changed = st.st_mtime.max(st.st_ctime);
            let age = now
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
                .saturating_sub(changed);
            if !is_fifo(st.st_mode) || age < older_than.as_secs() as i64 {
                continue;
            }
            let wr = OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            match openat(&self.fd, name.as_c_str(), wr, Mode::empty()) {
                Err(Errno::ENXIO) => {}
                _ => continue, // read by someone, or gone, or not ours to open
            }
            let same = fstatat(&self.fd, name.as_c_str(), flags)
                .is_ok_and(|again| (again.st_dev, again.st_ino) == (st.st_dev, st.st_ino));
            if same && unlinkat(&self.fd, name.as_c_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Unlinks a name in FIFOTMPDIR if (and only if) it is a FIFO there: a FIFO nobody
    /// reads any more (the client gave up), found without opening it.
    fn remove_if_fifo(&self, name: &OsStr) {
        if let Ok(st) = fstatat(&self.fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            if is_fifo(st.st_mode) {
                let _ = unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir);
            }
        }
    }
}

/// True for the names clients give their reply FIFOs: IndiMail's `inquery()` uses its pid
/// and `time()` in digits, inquery (and libinquery) `inquery.PID.HEX`. The sweep looks at no
/// other name, so FIFOs of other programs in a shared FIFOTMPDIR (`/tmp`) are left alone.
///
/// ```
/// use inlookup::fifo::is_reply_name;
/// assert!(is_reply_name(b"123451733100000"));
/// assert!(is_reply_name(b"inquery.4242.00ff00ff00ff00ff"));
/// assert!(!is_reply_name(b"inquery.4242."));
/// assert!(!is_reply_name(b"mysql.sock"));
/// assert!(!is_reply_name(b""));
/// ```
pub fn is_reply_name(name: &[u8]) -> bool {
    let digits = |b: &[u8]| !b.is_empty() && b.iter().all(u8::is_ascii_digit);
    if digits(name) {
        return true;
    }
    let Some(rest) = name.strip_prefix(b"inquery.") else { return false };
    match rest.iter().position(|&b| b == b'.') {
        Some(dot) => {
            let (pid, hex) = (&rest[..dot], &rest[dot + 1..]);
            digits(pid) && !hex.is_empty() && hex.iter().all(u8::is_ascii_hexdigit)
        }
        None => false,
    }
}

/// Writes replies, from any thread: the I/O thread answers hits and its own kinds, workers
/// answer the requests they served. No reply write ever waits: a reply of at most
/// `PIPE_BUF` bytes goes in one non-blocking write or not at all (a FIFO that cannot take it
/// whole is a failed delivery, never a stall); a larger one (STATS, IMAP, ALIAS-FULL) is
/// handed, with its opened FIFO, to the writer thread ([`LargeWriter`]), which writes every
/// large reply as its reader takes it, each up to its own deadline (timeoutwrite), so one
/// slow reader never delays another's reply.
#[derive(Debug, Clone)]
pub struct Replier {
    /// FIFOTMPDIR.
    dir: std::sync::Arc<ReplyDir>,
    /// To the writer thread of large replies, and its wake pipe.
    large: crossbeam_channel::Sender<Large>,
    large_wake: crate::wake::Waker,
    /// How long a large reply may take (timeoutwrite).
    write_timeout: std::time::Duration,
    /// Large replies not delivered by their deadline, or failed.
    failed_large: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// TCP connections waiting for their reply (empty without TCP_LISTEN).
    tcp: crate::tcp::Waiting,
}

/// A reply destination opened by [`Replier::open`], ready for [`Replier::write`].
#[derive(Debug)]
pub enum Opened<'p> {
    /// A client's reply FIFO.
    Fifo(ReplyFifo<'p>),
    /// A TCP connection, taken from those waiting: closed once its reply is out.
    Tcp(crate::tcp::Waiter),
}

/// A large reply being written.
#[derive(Debug)]
struct Large {
    fd: OwnedFd,
    bytes: Vec<u8>,
    written: usize,
    deadline: std::time::Instant,
}

impl Replier {
    /// A replier for FIFOTMPDIR, and its writer thread for large replies (which ends when
    /// the last clone of the replier is dropped).
    ///
    /// # Errors
    /// The thread or its wake pipe could not be made.
    pub fn start(
        dir: std::sync::Arc<ReplyDir>,
        write_timeout: std::time::Duration,
    ) -> std::io::Result<Replier> {
        let (large, queue) = crossbeam_channel::unbounded::<Large>();
        let (large_wake, wake) = crate::wake::pair().map_err(std::io::Error::from)?;
        let failed_large = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failed = failed_large.clone();
        std::thread::Builder::new()
            .name("reply-writer".into())
            .spawn(move || LargeWriter { queue, wake, failed, writing: Vec::new() }.run())?;
        let tcp = crate::tcp::Waiting::default();
        Ok(Replier { dir, large, large_wake, write_timeout, failed_large, tcp })
    }

    /// The same replier, also answering the TCP connections waiting in `tcp`.
    pub fn with_tcp(self, tcp: crate::tcp::Waiting) -> Replier {
        Replier { tcp, ..self }
    }

    /// Opens the reply FIFO and writes the reply (or hands a large one to the writer
    /// thread).
    ///
    /// A delivered reply's FIFO is left to its client, which removes it on every path
    /// (inquery's guard; IndiMail's `inquery()` unlinks it after every outcome): a third
    /// directory update per request, by the daemon, cost 2–3 µs of its CPU per hit and
    /// contended with every client's `mkfifo` and `unlink` (`docs/bench/findings.md`,
    /// finding 2). The daemon removes the name only when its client cannot: the write
    /// failed here, or nobody reads the FIFO any more ([`ReplyDir::open_reply`]).
    ///
    /// # Errors
    /// As [`ReplyDir::open_reply`] and [`Replier::write`].
    pub fn send(&self, path: &[u8], bytes: &[u8]) -> Result<(), ReplyFailure> {
        let reply = self.open(path)?;
        self.write(reply, bytes)
    }

    /// Checks and opens a reply destination without writing: a reply FIFO
    /// ([`ReplyDir::open_reply`]), or the TCP connection a reply address names
    /// ([`crate::tcp::Destination`]). A worker opens its client's before it reports, so that
    /// a client already gone is counted no later than the lookup's result.
    ///
    /// # Errors
    /// As [`ReplyDir::open_reply`]; [`ReplyFailure::Vanished`] for a connection no longer
    /// waiting (it timed out).
    pub fn open<'p>(&self, path: &'p [u8]) -> Result<Opened<'p>, ReplyFailure> {
        match crate::tcp::Destination::of(path) {
            crate::tcp::Destination::Fifo(p) => self.dir.open_reply(p).map(Opened::Fifo),
            crate::tcp::Destination::Tcp(id) => {
                self.tcp.take(id).map(Opened::Tcp).ok_or(ReplyFailure::Vanished)
            }
        }
    }

    /// Writes a reply to a destination from [`Replier::open`]. To a FIFO: a small reply at
    /// once or not at all (then the FIFO's name is removed), a large one by the writer
    /// thread. To a TCP connection: what the socket takes now, the rest by the writer
    /// thread (by timeoutwrite); the connection is closed when the reply is out.
    ///
    /// # Errors
    /// [`WriteFailed::Full`] when the FIFO cannot take a small reply whole; a write error.
    pub fn write(&self, reply: Opened<'_>, bytes: &[u8]) -> Result<(), ReplyFailure> {
        let reply = match reply {
            Opened::Fifo(f) => f,
            Opened::Tcp(waiter) => return self.write_tcp(waiter, bytes),
        };
        if bytes.len() <= inlookup_core::wire::PIPE_BUF {
            let sent = write_small(&reply.fd, bytes);
            if sent.is_err() {
                self.dir.remove(&reply);
            }
            return sent;
        }
        let deadline = std::time::Instant::now() + self.write_timeout;
        let large = Large { fd: reply.fd, bytes: bytes.to_vec(), written: 0, deadline };
        self.large.send(large).map_err(|_| ReplyFailure::Failed(WriteFailed::WriterGone))?;
        self.large_wake.wake();
        Ok(())
    }

    /// A reply to a TCP connection, without waiting: the rest of what the socket does not
    /// take at once goes to the writer thread. On a TLS connection the reply is encrypted
    /// first, so what is written is the same kind of bytes either way.
    fn write_tcp(&self, mut waiter: crate::tcp::Waiter, reply: &[u8]) -> Result<(), ReplyFailure> {
        use std::io::{ErrorKind, Write};
        let wire;
        let bytes = if waiter.tls.is_some() {
            wire = waiter.wire_bytes(reply).map_err(|_| ReplyFailure::Vanished)?;
            &wire[..]
        } else {
            reply
        };
        let mut stream = waiter.stream;
        let mut written = 0;
        while written < bytes.len() {
            match stream.write(&bytes[written..]) {
                Ok(0) => return Err(ReplyFailure::Vanished),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let deadline = std::time::Instant::now() + self.write_timeout;
                    let fd = OwnedFd::from(stream);
                    let large = Large { fd, bytes: bytes.to_vec(), written, deadline };
                    self.large
                        .send(large)
                        .map_err(|_| ReplyFailure::Failed(WriteFailed::WriterGone))?;
                    self.large_wake.wake();
                    return Ok(());
                }
                Err(e)
                    if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) =>
                {
                    return Err(ReplyFailure::Vanished)
                }
                Err(e) => {
                    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                    return Err(ReplyFailure::Failed(WriteFailed::Write(errno)));
                }
            }
        }
        Ok(())
    }

    /// Large replies the writer thread could not deliver (too slow a reader, or an error).
    pub fn failed_large(&self) -> u64 {
        self.failed_large.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A reply of at most `PIPE_BUF` bytes in one non-blocking write: a pipe takes such a
/// write whole or not at all.
fn write_small(fd: &OwnedFd, bytes: &[u8]) -> Result<(), ReplyFailure> {
    loop {
        return match nix::unistd::write(fd, bytes) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(_) | Err(Errno::EAGAIN) => Err(ReplyFailure::Failed(WriteFailed::Full)),
            Err(Errno::EINTR) => continue,
            Err(Errno::EPIPE) => Err(ReplyFailure::Vanished),
            Err(e) => Err(ReplyFailure::Failed(WriteFailed::Write(e))),
        };
    }
}

/// The writer thread of large replies: polls every reply it is writing and writes to each
/// as much as its reader has room for, until it is whole, its reader is gone, or its
/// deadline passes.
struct LargeWriter {
    queue: crossbeam_channel::Receiver<Large>,
    wake: crate::wake::WakeReceiver,
    failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    writing: Vec<Large>,
}

impl LargeWriter {
    fn run(mut self) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let mut closed = false;
            loop {
                match self.queue.try_recv() {
                    Ok(l) => self.writing.push(l),
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            let now = std::time::Instant::now();
            let failed = &self.failed;
            self.writing.retain_mut(|l| match l.advance(now) {
                Some(Ok(())) => false,
                Some(Err(e)) => {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    log::debug!("large reply of {} bytes not delivered: {e}", l.bytes.len());
                    false
                }
                None => true,
            });
            if closed && self.writing.is_empty() {
                return;
            }
            let next = self.writing.iter().map(|l| l.deadline).min();
            let ms = next.map_or(PollTimeout::NONE, |d| {
                let left = d.saturating_duration_since(now).as_millis().clamp(1, 60_000);
                PollTimeout::try_from(left as i32).unwrap_or(PollTimeout::MAX)
            });
            let mut fds = Vec::with_capacity(self.writing.len() + 1);
            fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
            fds.extend(self.writing.iter().map(|l| PollFd::new(l.fd.as_fd(), PollFlags::POLLOUT)));
            let _ = poll(&mut fds, if closed { PollTimeout::from(10u8) } else { ms });
            drop(fds);
            self.wake.drain();
        }
    }
}

impl Large {
    /// Writes what the FIFO takes now: `Some(Ok)` when whole, `Some(Err)` when it failed or
    /// its time is up, `None` to wait for room.
    fn advance(&mut self, now: std::time::Instant) -> Option<Result<(), ReplyFailure>> {
        while self.written < self.bytes.len() {
            match nix::unistd::write(&self.fd, &self.bytes[self.written..]) {
                Ok(n) => self.written += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) if now < self.deadline => return None,
                Err(Errno::EAGAIN) => {
                    let (written, of) = (self.written, self.bytes.len());
                    return Some(Err(ReplyFailure::Failed(WriteFailed::TimedOut { written, of })));
                }
                Err(Errno::EPIPE | Errno::ECONNRESET) => return Some(Err(ReplyFailure::Vanished)),
                Err(e) => return Some(Err(ReplyFailure::Failed(WriteFailed::Write(e)))),
            }
        }
        Some(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("inl-fifo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn instance_paths() {
        let d = Path::new("/run/x");
        assert_eq!(request_paths(d, "infifo", 1), vec![PathBuf::from("/run/x/infifo")]);
        assert_eq!(request_paths(d, "/abs/f", 0), vec![PathBuf::from("/abs/f")]);
        assert_eq!(
            request_paths(d, "infifo", 3),
            ["/run/x/infifo.1", "/run/x/infifo.2", "/run/x/infifo.3"].map(PathBuf::from).to_vec()
        );
    }

    #[test]
    fn reply_paths_are_confined_to_fifotmpdir() {
        let d = tmp("confine");
        let other = tmp("confine-other");
        let rd = ReplyDir::open(&d).unwrap();
        // A regular file inside: refused, untouched.
        std::fs::write(d.join("file"), b"keep").unwrap();
        let file = d.join("file");
        let r = rd.open_reply(file.as_os_str().as_bytes());
        assert!(matches!(r, Err(ReplyFailure::Refused(_))), "{r:?}");
        assert_eq!(std::fs::read(d.join("file")).unwrap(), b"keep");
        // A FIFO outside: refused.
        mkfifo(&other.join("f"), Mode::from_bits_truncate(0o600)).unwrap();
        let _reader =
            open(&other.join("f"), OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()).unwrap();
        assert!(matches!(
            rd.open_reply(other.join("f").as_os_str().as_bytes()),
            Err(ReplyFailure::Refused(_))
        ));
        // Escaping with .. : refused.
        let sneaky =
            format!("{}/../{}/f", d.display(), other.file_name().unwrap().to_string_lossy());
        assert!(matches!(rd.open_reply(sneaky.as_bytes()), Err(ReplyFailure::Refused(_))));
        // A symlink inside pointing at the outside FIFO: refused.
        std::os::unix::fs::symlink(other.join("f"), d.join("link")).unwrap();
        assert!(matches!(
            rd.open_reply(d.join("link").as_os_str().as_bytes()),
            Err(ReplyFailure::Refused(_))
        ));
        assert!(other.join("f").exists());
        // A FIFO inside with a reader: opened and written; its name left to the client
        // unless the caller removes it.
        mkfifo(&d.join("ok"), Mode::from_bits_truncate(0o600)).unwrap();
        let reader =
            open(&d.join("ok"), OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()).unwrap();
        let ok_path = d.join("ok");
        let reply = rd.open_reply(ok_path.as_os_str().as_bytes()).unwrap();
        write_small(&reply.fd, b"hello").unwrap();
        assert!(d.join("ok").exists());
        rd.remove(&reply);
        assert!(!d.join("ok").exists());
        let mut buf = [0u8; 8];
        assert_eq!(nix::unistd::read(&reader, &mut buf).unwrap(), 5);
        // Other spellings of FIFOTMPDIR take the slow path and still work, or are refused.
        mkfifo(&d.join("ok2"), Mode::from_bits_truncate(0o600)).unwrap();
        let _reader2 =
            open(&d.join("ok2"), OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()).unwrap();
        for spelled in [format!("{}/./ok2", d.display()), format!("{}//ok2", d.display())] {
            let r = rd.open_reply(spelled.as_bytes());
            assert!(r.is_ok(), "{spelled}: {r:?}");
        }
        for bad in [
            format!("{}/..", d.display()),
            format!("{}/.", d.display()),
            format!("{}/", d.display()),
        ] {
            let r = rd.open_reply(bad.as_bytes());
            assert!(matches!(r, Err(ReplyFailure::Refused(_))), "{bad}: {r:?}");
        }
        // A symlink to FIFOTMPDIR is the same directory: accepted by device and inode.
        let alias = other.join("alias");
        std::os::unix::fs::symlink(&d, &alias).unwrap();
        assert!(rd.open_reply(alias.join("ok2").as_os_str().as_bytes()).is_ok());
        // A directory spelled like FIFOTMPDIR's parent plus a name is not FIFOTMPDIR.
        std::fs::create_dir(d.join("sub")).unwrap();
        mkfifo(&d.join("sub/f"), Mode::from_bits_truncate(0o600)).unwrap();
        let _reader3 =
            open(&d.join("sub/f"), OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()).unwrap();
        assert!(matches!(
            rd.open_reply(d.join("sub/f").as_os_str().as_bytes()),
            Err(ReplyFailure::Refused(_))
        ));
        // A FIFO with no reader: the client vanished; the leftover name is removed.
        mkfifo(&d.join("gone"), Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(
            rd.open_reply(d.join("gone").as_os_str().as_bytes()).err(),
            Some(ReplyFailure::Vanished)
        );
        assert!(!d.join("gone").exists());
        // No such path: vanished.
        assert_eq!(
            rd.open_reply(d.join("nope").as_os_str().as_bytes()).err(),
            Some(ReplyFailure::Vanished)
        );
        std::fs::remove_dir_all(&d).unwrap();
        std::fs::remove_dir_all(&other).unwrap();
    }

    #[test]
    fn a_second_daemon_on_the_same_fifo_is_refused() {
        let d = tmp("inuse");
        let p = d.join("infifo");
        let first = RequestFifo::open(&p, 0o660, 0).unwrap();
        assert!(matches!(RequestFifo::open(&p, 0o660, 0), Err(FifoError::InUse(_))));
        drop(first);
        // A stale FIFO with nobody reading is reused.
        let again = RequestFifo::open(&p, 0o660, 0).unwrap();
        again.unlink();
        assert!(!p.exists());
        std::fs::write(&p, b"x").unwrap();
        assert!(matches!(RequestFifo::open(&p, 0o660, 0), Err(FifoError::NotAFifo(_))));
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A reader end for `path` that also holds a write end (as a hostile client would).
    fn hostile_reader(path: &Path) -> OwnedFd {
        mkfifo(path, Mode::from_bits_truncate(0o600)).unwrap();
        open(path, OFlag::O_RDWR | OFlag::O_NONBLOCK, Mode::empty()).unwrap()
    }

    fn fill(fd: &OwnedFd) {
        while nix::unistd::write(fd, &[0u8; 4096]).is_ok() {}
    }

    #[test]
    fn a_full_reply_fifo_is_a_failed_delivery_not_a_wait() {
        let d = tmp("full");
        let r = Replier::start(
            std::sync::Arc::new(ReplyDir::open(&d).unwrap()),
            Duration::from_secs(30),
        )
        .unwrap();
        let f = d.join("full");
        let hostile = hostile_reader(&f);
        fill(&hostile);
        // A wait would end in TimedOut after 30 s; a full FIFO is Full at once.
        assert_eq!(
            r.send(f.as_os_str().as_bytes(), b"\x01\0\0\0"),
            Err(ReplyFailure::Failed(WriteFailed::Full))
        );
        assert!(!f.exists(), "the name of a FIFO that could not take its reply is removed");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_slow_reader_does_not_delay_another_large_reply() {
        let d = tmp("large");
        let r = Replier::start(
            std::sync::Arc::new(ReplyDir::open(&d).unwrap()),
            Duration::from_secs(30),
        )
        .unwrap();
        let (slow, fast) = (d.join("slow"), d.join("fast"));
        let stuck = hostile_reader(&slow);
        fill(&stuck);
        mkfifo(&fast, Mode::from_bits_truncate(0o600)).unwrap();
        let reader = open(&fast, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()).unwrap();
        let big = vec![7u8; 200_000];
        r.send(slow.as_os_str().as_bytes(), &big).unwrap();
        r.send(fast.as_os_str().as_bytes(), &big).unwrap();
        // The fast reader gets its whole reply while the slow one's is still waiting (up to
        // its 30 s deadline). The 10 s bound is only there so a regression fails instead of
        // hanging; the benchmark measures times.
        let mut got = 0;
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(10);
        while got < big.len() {
            assert!(Instant::now() < deadline, "only {got} of {} bytes arrived", big.len());
            match nix::unistd::read(&reader, &mut buf) {
                Ok(n) => got += n,
                Err(Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("read: {e}"),
            }
        }
        assert_eq!(got, big.len());
        drop(stuck);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
