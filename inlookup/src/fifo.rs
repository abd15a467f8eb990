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
                        sys("mkdir", Errno::from_raw(e.raw_os_error().unwrap_or(0)))
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
            WriteFailed::TimedOut { .. } | WriteFailed::WriterGone => None,
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

/// Writes replies, from any thread: the I/O thread answers hits and its own kinds, workers
/// answer the requests they served. A reply of at most `PIPE_BUF` bytes is written at
/// once; a larger one (STATS, IMAP) is handed, with its opened FIFO, to one writer thread
/// that waits for the client to read, up to the write timeout.
#[derive(Debug, Clone)]
pub struct Replier {
    /// FIFOTMPDIR.
    dir: std::sync::Arc<ReplyDir>,
    /// To the writer thread of large replies.
    large: crossbeam_channel::Sender<(OwnedFd, Vec<u8>)>,
    /// How long a write may wait (timeoutwrite).
    write_timeout: std::time::Duration,
}

impl Replier {
    /// A replier for FIFOTMPDIR, and its writer thread for large replies (which ends when
    /// the last clone of the replier is dropped).
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start(
        dir: std::sync::Arc<ReplyDir>,
        write_timeout: std::time::Duration,
    ) -> std::io::Result<Replier> {
        let (large, queue) = crossbeam_channel::bounded::<(OwnedFd, Vec<u8>)>(64);
        std::thread::Builder::new().name("reply-writer".into()).spawn(move || {
            for (fd, bytes) in queue {
                let deadline = std::time::Instant::now() + write_timeout;
                if let Err(e) = write_reply(&fd, &bytes, deadline) {
                    log::debug!("large reply of {} bytes not delivered: {e}", bytes.len());
                }
            }
        })?;
        Ok(Replier { dir, large, write_timeout })
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
    /// As [`ReplyDir::open_reply`] and [`write_reply`].
    pub fn send(&self, path: &[u8], bytes: &[u8]) -> Result<(), ReplyFailure> {
        let reply = self.open(path)?;
        self.write(reply, bytes)
    }

    /// Checks and opens a reply FIFO ([`ReplyDir::open_reply`]) without writing: a worker
    /// opens its client's FIFO before it reports, so that a client already gone is
    /// counted no later than the lookup's result.
    ///
    /// # Errors
    /// As [`ReplyDir::open_reply`].
    pub fn open<'p>(&self, path: &'p [u8]) -> Result<ReplyFifo<'p>, ReplyFailure> {
        self.dir.open_reply(path)
    }

    /// Writes a reply to a FIFO from [`Replier::open`] (a large one: hands it to the writer
    /// thread); removes the FIFO's name if the write failed.
    ///
    /// # Errors
    /// As [`write_reply`].
    pub fn write(&self, reply: ReplyFifo<'_>, bytes: &[u8]) -> Result<(), ReplyFailure> {
        if bytes.len() <= inlookup_core::wire::PIPE_BUF {
            let deadline = std::time::Instant::now() + self.write_timeout;
            let sent = write_reply(&reply.fd, bytes, deadline);
            if sent.is_err() {
                self.dir.remove(&reply);
            }
            return sent;
        }
        self.large
            .send((reply.fd, bytes.to_vec()))
            .map_err(|_| ReplyFailure::Failed(WriteFailed::WriterGone))
    }
}

/// Writes a whole reply to a reply FIFO opened by [`ReplyDir::open_reply`]. A reply of at
/// most `PIPE_BUF` bytes into a fresh FIFO goes in one write; a longer one waits for the
/// client to read, up to `deadline`.
pub fn write_reply(
    fd: &OwnedFd,
    bytes: &[u8],
    deadline: std::time::Instant,
) -> Result<(), ReplyFailure> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut off = 0;
    while off < bytes.len() {
        match nix::unistd::write(fd, &bytes[off..]) {
            Ok(n) => off += n,
            Err(Errno::EINTR) => {}
            Err(Errno::EPIPE) => return Err(ReplyFailure::Vanished),
            Err(Errno::EAGAIN) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(ReplyFailure::Failed(WriteFailed::TimedOut {
                        written: off,
                        of: bytes.len(),
                    }));
                }
                let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32)
                    .unwrap_or(PollTimeout::MAX);
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut fds, ms);
            }
            Err(e) => return Err(ReplyFailure::Failed(WriteFailed::Write(e))),
        }
    }
    Ok(())
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
        write_reply(&reply.fd, b"hello", Instant::now() + Duration::from_secs(1)).unwrap();
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
}
