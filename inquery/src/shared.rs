//! Hits without a round trip: the daemon's shared-memory cache, read in this process.
//!
//! The daemon publishes its cached replies in a file beside its request FIFO
//! (`INFIFO.cache`; the format is [`inlookup_core::shared`]). A process maps it read-only
//! once and looks keys up in it without a system call; a miss, an expired entry, a slot
//! being rewritten or anything it cannot trust sends the query over the FIFO as before, so
//! the answer is always the daemon's. The mapping is process-wide and found again when the
//! daemon gives it up (it marks the old file retired when it stops or a new daemon replaces
//! it) or when the file's name points at another file (checked at most once a second).
//!
//! `SHARED_CACHE=off` turns the fast path off for a client; `SHARED_CACHE=/path` names the
//! file when the daemon was given one.

use inlookup_core::address::cache_key_into;
use inlookup_core::shared::{self, Lookup, Reader, Words};
use inlookup_core::wire::{reply_int, HEADER_LEN};
use inlookup_core::QueryKind;
use memmap2::Mmap;
use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// How often the file's name is checked for a new file, and a missing file looked for.
const RECHECK_MS: u64 = 1000;

/// A read-only mapping as the table's words.
#[derive(Debug)]
struct Mapping(Mmap);

impl Words for Mapping {
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned and whole words long (the reader checks the
        // length it needs), lives as long as `self`, and is only read, with atomic loads.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<AtomicU64>(), self.0.len() / 8) }
    }
}

/// The process's mapping (or the memory of failing to find one).
#[derive(Debug)]
struct Mapped {
    path: PathBuf,
    /// `None`: no usable file at `path` when last looked.
    table: Option<(Reader<Mapping>, (u64, u64))>,
    /// When to look at the file's name again (CLOCK_MONOTONIC ms).
    recheck_at: AtomicU64,
}

static MAPPED: RwLock<Option<Mapped>> = RwLock::new(None);

/// Maps the table at `path`: a regular file (never through a symlink) holding a valid,
/// live table.
fn map(path: &Path) -> Option<(Reader<Mapping>, (u64, u64))> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let md = f.metadata().ok()?;
    if !md.is_file() {
        return None;
    }
    // SAFETY: a regular file read only through atomic loads; the daemon never truncates it
    // (a new daemon replaces it by rename, and this mapping keeps the old one).
    let map = unsafe { Mmap::map(&f).ok()? };
    let r = Reader::open(Mapping(map)).ok()?;
    (!r.retired() && alive(r.pid())).then_some((r, (md.dev(), md.ino())))
}

/// Whether the daemon that wrote a table still runs (a killed one cannot retire its table;
/// its successor would, but until one starts its answers must not outlive it).
fn alive(pid: u64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// The file's identity now, if it is there.
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Looks `key` up in the table at `path`, mapping or remapping it first when needed.
fn get(path: &Path, key: &mut String, kind: QueryKind, email: &str, ip: &str) -> Option<Vec<u8>> {
    let now = shared::reader_now_ms();
    {
        let guard = MAPPED.read().ok()?;
        if let Some(m) = guard.as_ref().filter(|m| m.path == path) {
            if now < m.recheck_at.load(Ordering::Relaxed) {
                match &m.table {
                    Some((r, _)) if !r.retired() => return lookup(r, key, kind, email, ip, now),
                    Some(_) => {} // given up by its daemon: look for the new file now
                    None => return None,
                }
            }
        }
    }
    refresh(path, now);
    let guard = MAPPED.read().ok()?;
    match &guard.as_ref()?.table {
        Some((r, _)) if !r.retired() => lookup(r, key, kind, email, ip, now),
        _ => None,
    }
}

/// Brings the process's mapping up to date for `path`: keeps it while it is live and the
/// name still points at it, else maps the file anew (or remembers that there is none).
fn refresh(path: &Path, now: u64) {
    let Ok(mut guard) = MAPPED.write() else { return };
    if let Some(m) = guard.as_ref().filter(|m| m.path == path) {
        let due = now >= m.recheck_at.load(Ordering::Relaxed);
        let keep = match &m.table {
            Some((r, id)) => {
                !r.retired() && (!due || (identity(path) == Some(*id) && alive(r.pid())))
            }
            None => !due,
        };
        if keep {
            if due {
                m.recheck_at.store(now + RECHECK_MS, Ordering::Relaxed);
            }
            return;
        }
    }
    *guard = Some(Mapped {
        path: path.to_path_buf(),
        table: map(path),
        recheck_at: AtomicU64::new(now + RECHECK_MS),
    });
}

fn lookup(
    r: &Reader<Mapping>,
    key: &mut String,
    kind: QueryKind,
    email: &str,
    ip: &str,
    now: u64,
) -> Option<Vec<u8>> {
    cache_key_into(key, kind, email, ip, r.default_domain());
    let mut out = Vec::with_capacity(shared::SLOT_PAYLOAD);
    (r.get(key.as_bytes(), now, &mut out) == Lookup::Hit).then_some(out)
}

/// Where a client looks for the shared cache: `SHARED_CACHE` when set (`off` for nowhere),
/// else beside the request FIFO the client would write to.
pub fn path_for(request_fifo_base: &Path) -> Option<PathBuf> {
    match inlookup_core::control::env_var("SHARED_CACHE").as_deref().map(str::trim) {
        Some("off" | "0" | "no") => None,
        Some(p) if p.starts_with('/') => Some(PathBuf::from(p)),
        _ => {
            let mut s = request_fifo_base.as_os_str().to_os_string();
            s.push(".cache");
            Some(PathBuf::from(s))
        }
    }
}

/// The daemon's reply to a classic query (`kind_byte` as on the wire, ALIAS-FULL
/// included), as `(leading int, body)` exactly as the FIFO would have brought it, if the
/// shared cache at `path` holds a fresh one.
pub fn reply(path: &Path, kind_byte: u8, email: &str, ip: &str) -> Option<(i32, Vec<u8>)> {
    let (base, _) = QueryKind::from_byte(kind_byte)?.answers()?;
    if base == QueryKind::Relay && ip.trim().is_empty() {
        return None;
    }
    let mut key = String::with_capacity(email.len() + ip.len() + 64);
    let mut bytes = get(path, &mut key, base, email, ip)?;
    let header: [u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
    let n = reply_int(header);
    bytes.drain(..HEADER_LEN);
    let bare = QueryKind::from_byte(kind_byte).is_some_and(QueryKind::reply_is_bare_int);
    if bare || n <= 0 {
        bytes.clear();
    } else if bytes.len() != n as usize {
        return None;
    }
    Some((n, bytes))
}

/// The variables that say where the shared cache is, as raw bytes.
/// SHARED_CACHE, INFIFO, INFIFODIR, INDIMAILDIR (as far as they matter), and whether a TCP
/// mode is on.
type EnvKey = ([Option<Vec<u8>>; 4], bool);

fn env_key() -> EnvKey {
    let get = |name: &std::ffi::CStr| {
        // SAFETY: getenv with a NUL-terminated name; the value is copied at once. (As in any
        // C library, a concurrent setenv of another thread is the caller's race.)
        let p = unsafe { libc::getenv(name.as_ptr()) };
        // SAFETY: a non-NULL getenv result is a NUL-terminated string.
        (!p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes().to_vec())
    };
    // Only what decides the path: an absolute SHARED_CACHE or INFIFO ends the search.
    let settled = |v: &Option<Vec<u8>>| v.as_ref().is_some_and(|v| v.starts_with(b"/"));
    // Asked over TCP (inquery's TCP modes), a daemon elsewhere answers: no local mapping.
    if get(c"INQUERY_TCP").is_some()
        || (get(c"TCPCLIENT").is_some() && get(c"TCPREMOTEIP").is_some())
    {
        return ([None, None, None, None], true);
    }
    let shared = get(c"SHARED_CACHE");
    if settled(&shared)
        || shared.as_deref().is_some_and(|v| [&b"off"[..], b"0", b"no"].contains(&v.trim_ascii()))
    {
        return ([shared, None, None, None], false);
    }
    let infifo = get(c"INFIFO");
    if settled(&infifo) {
        return ([shared, infifo, None, None], false);
    }
    ([shared, infifo, get(c"INFIFODIR"), get(c"INDIMAILDIR")], false)
}

thread_local! {
    /// The last environment seen and the path it named: `inquery()` reads the environment
    /// on every call, as IndiMail's does, without rebuilding the path each time.
    static ENV_PATH: std::cell::RefCell<Option<(EnvKey, Option<PathBuf>)>> =
        const { std::cell::RefCell::new(None) };
}

/// [`reply`] for the shared cache the environment names (SHARED_CACHE, else beside the
/// request FIFO of INFIFO, INFIFODIR and INDIMAILDIR): the C ABI's way in.
pub fn reply_from_env(kind_byte: u8, email: &str, ip: &str) -> Option<(i32, Vec<u8>)> {
    let key = env_key();
    ENV_PATH.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.as_ref().is_none_or(|(k, _)| *k != key) {
            let path =
                if key.1 { None } else { path_for(&crate::resolve::Target::from_env().base()) };
            *cached = Some((key, path));
        }
        let path = cached.as_ref()?.1.as_deref()?;
        reply(path, kind_byte, email, ip)
    })
}

/// Forgets the process's mapping (tests; a program that wants to let the file go).
pub fn unmap() {
    if let Ok(mut g) = MAPPED.write() {
        *g = None;
    }
}
