//! The C ABI (`libinquery`, declared in `include/inquery.h`): IndiMail's `inquery()` with
//! its return conventions, and a re-entrant `inquery_r()` for threaded programs.
//!
//! `inquery()` returns a pointer into storage of the calling thread, valid until that
//! thread's next call: an `int` for USER and RELAY, a `struct passwd` for PWD (`pw_name` the
//! local part, as IndiMail's strToPw), the raw 128-byte `struct vlimits` for LIMIT, a
//! NUL-terminated string for HOST, ALIAS and DOMAIN. It returns NULL with `userNotFound = 1`
//! and `errno = 0` when PWD, HOST or LIMIT find nothing, and NULL with `userNotFound = 0` and
//! `errno` set on failure. IndiMail kept that storage in statics; keeping it per thread
//! changes nothing for single-threaded callers and makes concurrent callers safe.
//!
//! Nothing panics across the boundary: every entry point runs inside `catch_unwind`, and a
//! panic becomes an `EIO` failure.

use crate::direct::Direct;
use crate::error::Error;
use crate::querier::{fallback_from_env, Mode, Querier};
use crate::Client;
use inlookup_core::limits::VLIMITS_SIZE;
use inlookup_core::wire::PIPE_BUF;
use inlookup_core::{Answer, QueryKind};
use nix::errno::Errno;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_ulong, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// IndiMail's global: 1 after `inquery()` found no such user (PWD, HOST, LIMIT), else 0.
/// An `AtomicI32` has `int`'s size and alignment, so C declares it `extern int`.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static userNotFound: AtomicI32 = AtomicI32::new(0);

/// IndiMail's global: after a PWD `inquery()`, 1 when the record came from the inactive
/// table.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static is_inactive: AtomicI32 = AtomicI32::new(0);

/// The buffer size that always suffices for `inquery_r` (`INQUERY_BUFSIZE`): every answer
/// arrived in one reply of at most `PIPE_BUF` bytes, and its strings fit in as many.
pub const INQUERY_BUFSIZE: usize = PIPE_BUF;

/// Queries the MySQL fallback answered, process-wide (`inquery_fallbacks()`).
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// `struct vlimits`: its bytes, with the C struct's size (128) and alignment (8, a `long`'s).
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy)]
pub struct Vlimits(pub [u8; VLIMITS_SIZE]);

/// `struct inquery_result` (inquery.h): one answer of `inquery_r`, strings in the caller's
/// buffer.
#[repr(C)]
pub struct InqueryResult {
    /// USER: the status (0–4); RELAY: 1 may relay, 0 not; other kinds: 0.
    pub status: c_int,
    /// 1 when PWD, HOST or LIMIT found nothing.
    pub user_not_found: c_int,
    /// PWD: 1 when the record came from the inactive table.
    pub is_inactive: c_int,
    /// PWD: the record, `pw_name` the local part.
    pub pw: libc::passwd,
    /// LIMIT: the record.
    pub limits: Vlimits,
    /// HOST (`domain:host:port`), ALIAS (lines, each ending in `\n`; empty: none), DOMAIN.
    pub text: *mut c_char,
}

impl std::fmt::Debug for InqueryResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InqueryResult")
            .field("status", &self.status)
            .field("user_not_found", &self.user_not_found)
            .field("is_inactive", &self.is_inactive)
            .field("pw_uid", &self.pw.pw_uid)
            .field("text", &self.text)
            .finish_non_exhaustive()
    }
}

fn empty_passwd() -> libc::passwd {
    libc::passwd {
        pw_name: null_mut(),
        pw_passwd: null_mut(),
        pw_uid: 0,
        pw_gid: 0,
        pw_gecos: null_mut(),
        pw_dir: null_mut(),
        pw_shell: null_mut(),
    }
}

impl InqueryResult {
    fn empty() -> InqueryResult {
        InqueryResult {
            status: 0,
            user_not_found: 0,
            is_inactive: 0,
            pw: empty_passwd(),
            limits: Vlimits([0; VLIMITS_SIZE]),
            text: null_mut(),
        }
    }
}

/// A bump allocator over the caller's buffer: each string is copied with its NUL.
struct Arena<'a> {
    buf: &'a mut [u8],
    used: usize,
}

impl Arena<'_> {
    fn put(&mut self, s: &str) -> Result<*mut c_char, Failure> {
        let end = self.used + s.len() + 1;
        if end > self.buf.len() {
            return Err(Failure::new(libc::ERANGE, "the buffer is too small for the answer"));
        }
        self.buf[self.used..end - 1].copy_from_slice(s.as_bytes());
        self.buf[end - 1] = 0;
        let p = self.buf[self.used..].as_mut_ptr().cast::<c_char>();
        self.used = end;
        Ok(p)
    }
}

/// Writes `answer` into `out`, its strings into `buf`.
fn fill(answer: &Answer, out: &mut InqueryResult, buf: &mut [u8]) -> Result<(), Failure> {
    *out = InqueryResult::empty();
    let mut arena = Arena { buf, used: 0 };
    match answer {
        Answer::User { status } => out.status = *status as c_int,
        Answer::Relay { allowed } => out.status = c_int::from(*allowed),
        Answer::Pwd { passwd: None, .. }
        | Answer::Host { host: None }
        | Answer::Limit { limits: None } => out.user_not_found = 1,
        Answer::Pwd { passwd: Some(p), .. } => {
            out.is_inactive = c_int::from(p.inactive);
            out.pw = libc::passwd {
                pw_name: arena.put(&p.name)?,
                pw_passwd: arena.put(&p.passwd)?,
                pw_uid: p.uid,
                pw_gid: p.gid,
                pw_gecos: arena.put(&p.gecos)?,
                pw_dir: arena.put(&p.dir)?,
                pw_shell: arena.put(&p.shell)?,
            };
        }
        Answer::Host { host: Some(h) } => {
            out.text = arena.put(&format!("{}:{}:{}", h.domain, h.host, h.port))?;
        }
        Answer::Alias { lines } => {
            let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
            out.text = arena.put(&body)?;
        }
        Answer::Limit { limits: Some(l) } => out.limits = Vlimits(l.to_bytes()),
        Answer::Domain { domain, .. } => out.text = arena.put(domain)?,
    }
    Ok(())
}

/// A failed call: the errno to report and a message for `inquery_error()`.
struct Failure {
    errno: c_int,
    message: String,
}

impl Failure {
    fn new(errno: c_int, message: impl Into<String>) -> Failure {
        Failure { errno, message: message.into() }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let errno = match &e {
            Error::NotRunning(_) => libc::ENXIO,
            Error::Timeout { .. } => libc::ETIMEDOUT,
            Error::Malformed(_) => libc::EPROTO,
            Error::BadArgument(_) => libc::EINVAL,
            Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            Error::Backend | Error::Mysql(_) => libc::EIO,
        };
        Failure::new(errno, e.to_string())
    }
}

thread_local! {
    /// `inquery()`'s answer storage for this thread: the result and its strings.
    static SLOT: RefCell<Box<(InqueryResult, [u8; INQUERY_BUFSIZE])>> =
        RefCell::new(Box::new((InqueryResult::empty(), [0; INQUERY_BUFSIZE])));
    /// This thread's last failure, for `inquery_error()`.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// The MySQL access the fallback shares across calls (and so its connections).
fn shared_direct() -> Arc<Direct> {
    static DIRECT: OnceLock<Arc<Direct>> = OnceLock::new();
    DIRECT.get_or_init(|| Arc::new(Direct::from_env())).clone()
}

/// A request read from C arguments.
struct Request {
    kind: QueryKind,
    email: String,
    ip: String,
}

/// Reads a C string argument; NULL reads as empty.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid during the call.
unsafe fn c_str(p: *const c_char, what: &str) -> Result<String, Failure> {
    if p.is_null() {
        return Ok(String::new());
    }
    // SAFETY: not NULL, and the caller promises a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(str::to_string)
        .map_err(|_| Failure::new(libc::EINVAL, format!("the {what} is not UTF-8")))
}

/// # Safety
/// As [`c_str`], for both pointers.
unsafe fn request(
    query_type: c_char,
    email: *const c_char,
    ip: *const c_char,
) -> Result<Request, Failure> {
    let kind = QueryKind::from_byte(query_type as u8)
        .filter(|k| k.is_classic())
        .ok_or_else(|| Failure::new(libc::EINVAL, format!("unknown query type {query_type}")))?;
    if email.is_null() {
        return Err(Failure::new(libc::EINVAL, "the email is NULL"));
    }
    // SAFETY: the caller's promise, passed on.
    let (email, ip) = unsafe { (c_str(email, "email")?, c_str(ip, "IP address")?) };
    if kind == QueryKind::Relay && ip.is_empty() {
        return Err(Failure::new(libc::EINVAL, "a relay query needs an IP address"));
    }
    Ok(Request { kind, email, ip })
}

/// Asks the daemon named by the environment (read on every call, as IndiMail does), with
/// the MySQL fallback when INQUERY_FALLBACK is on.
fn answer(req: &Request) -> Result<Answer, Failure> {
    let q = Querier::with_parts(Mode::Daemon, Client::from_env(), shared_direct())
        .with_fallback(fallback_from_env());
    let a = q.ask(req.kind, &req.email, &req.ip);
    FALLBACKS.fetch_add(q.fallbacks(), Ordering::Relaxed);
    Ok(a?)
}

/// Runs `f`, turning a panic into a failure.
fn guarded<T>(f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(Failure::new(libc::EIO, "internal error in libinquery")))
}

/// IndiMail's `inquery()`; see `include/inquery.h` for the conventions.
///
/// # Safety
/// `email` and `ip` are NULL or NUL-terminated strings. The pointer returned is valid until
/// the calling thread's next `inquery()` or its exit.
#[no_mangle]
pub unsafe extern "C" fn inquery(
    query_type: c_char,
    email: *const c_char,
    ip: *const c_char,
) -> *mut c_void {
    userNotFound.store(0, Ordering::Relaxed);
    let outcome = guarded(|| {
        // SAFETY: the caller's promise about `email` and `ip`.
        let req = unsafe { request(query_type, email, ip) }?;
        let a = answer(&req)?;
        SLOT.with(|slot| {
            let mut slot = slot.borrow_mut();
            let (res, buf) = &mut **slot;
            fill(&a, res, buf)?;
            if req.kind == QueryKind::Pwd {
                is_inactive.store(res.is_inactive, Ordering::Relaxed);
            }
            if res.user_not_found != 0 {
                userNotFound.store(1, Ordering::Relaxed);
                return Ok(null_mut::<c_void>());
            }
            Ok(match req.kind {
                QueryKind::User | QueryKind::Relay => (&mut res.status as *mut c_int).cast(),
                QueryKind::Pwd => (&mut res.pw as *mut libc::passwd).cast(),
                QueryKind::Limit => (&mut res.limits as *mut Vlimits).cast(),
                _ => res.text.cast(),
            })
        })
    });
    match outcome {
        Ok(p) => {
            if p.is_null() {
                Errno::set_raw(0);
            }
            p
        }
        Err(f) => {
            set_last_error(&f.message);
            Errno::set_raw(f.errno);
            null_mut()
        }
    }
}

/// The re-entrant `inquery_r()`; see `include/inquery.h`.
///
/// # Safety
/// `email` and `ip` are NULL or NUL-terminated strings; `result` points to a writable
/// `struct inquery_result`; `buf` to `buflen` writable bytes. Neither global is touched.
#[no_mangle]
pub unsafe extern "C" fn inquery_r(
    query_type: c_char,
    email: *const c_char,
    ip: *const c_char,
    result: *mut InqueryResult,
    buf: *mut c_char,
    buflen: usize,
) -> c_int {
    let outcome = guarded(|| {
        if result.is_null() || buf.is_null() {
            return Err(Failure::new(libc::EINVAL, "result or buf is NULL"));
        }
        // SAFETY: the caller's promise about `email` and `ip`.
        let req = unsafe { request(query_type, email, ip) }?;
        let a = answer(&req)?;
        // SAFETY: `result` is not NULL and the caller gives it to us to write.
        let out = unsafe { &mut *result };
        // SAFETY: `buf` is not NULL and the caller gives us `buflen` writable bytes.
        let bytes = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), buflen) };
        fill(&a, out, bytes)
    });
    match outcome {
        Ok(()) => 0,
        Err(f) => {
            set_last_error(&f.message);
            f.errno
        }
    }
}

/// This thread's last failure in words (empty when none yet). Valid until the thread's
/// next failing call.
#[no_mangle]
pub extern "C" fn inquery_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// How many queries, process-wide, the MySQL fallback answered.
#[no_mangle]
pub extern "C" fn inquery_fallbacks() -> c_ulong {
    FALLBACKS.load(Ordering::Relaxed) as c_ulong
}

/// `sizeof(struct inquery_result)` as this library sees it, for a header check.
#[no_mangle]
pub extern "C" fn inquery_result_size() -> usize {
    std::mem::size_of::<InqueryResult>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlookup_core::{Limits, Passwd};

    #[test]
    fn the_c_structs_have_the_c_layout() {
        assert_eq!(std::mem::size_of::<Vlimits>(), 128);
        assert_eq!(std::mem::align_of::<Vlimits>(), std::mem::align_of::<libc::c_long>());
        assert_eq!(std::mem::size_of::<libc::passwd>(), 48);
        assert_eq!(std::mem::offset_of!(InqueryResult, pw), 16);
        assert_eq!(std::mem::offset_of!(InqueryResult, limits), 64);
        assert_eq!(std::mem::size_of::<InqueryResult>(), 200);
    }

    fn text(p: *mut c_char) -> String {
        // SAFETY: `fill` wrote a NUL-terminated string there, in a buffer still alive.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    #[test]
    fn answers_fill_the_caller_buffer_and_too_small_is_erange() {
        let mut out = InqueryResult::empty();
        let mut buf = [0u8; 256];
        let pw = Passwd {
            name: "alice".into(),
            domain: "example.com".into(),
            passwd: "$5$x".into(),
            uid: 1,
            gid: 16,
            gecos: "Alice".into(),
            dir: "/home/alice".into(),
            shell: "1000".into(),
            inactive: true,
        };
        let a = Answer::Pwd { email: "alice@example.com".into(), passwd: Some(pw) };
        assert!(fill(&a, &mut out, &mut buf).is_ok());
        assert_eq!(
            (text(out.pw.pw_name), text(out.pw.pw_dir)),
            ("alice".into(), "/home/alice".into())
        );
        assert_eq!((out.pw.pw_gid, out.is_inactive, out.user_not_found), (16, 1, 0));

        let a = Answer::Alias { lines: vec!["&a@x".into(), "&b@x".into()] };
        assert!(fill(&a, &mut out, &mut buf).is_ok());
        assert_eq!(text(out.text), "&a@x\n&b@x\n", "IndiMail's alias body");
        assert_eq!(out.is_inactive, 0, "every call starts afresh");

        let l = Limits { maxaliases: 7, ..Limits::default() };
        assert!(fill(&Answer::Limit { limits: Some(l) }, &mut out, &mut buf).is_ok());
        assert_eq!(Limits::from_bytes(&out.limits.0), Some(l));
        assert!(fill(&Answer::Host { host: None }, &mut out, &mut buf).is_ok());
        assert_eq!(out.user_not_found, 1);

        let mut tiny = [0u8; 4];
        let a = Answer::Domain { domain: "example.com".into(), was_alias: true };
        assert_eq!(fill(&a, &mut out, &mut tiny).err().map(|f| f.errno), Some(libc::ERANGE));
    }

    #[test]
    fn bad_arguments_are_einval_and_nothing_is_sent() {
        let email = CString::new("a@x").unwrap();
        let mut out = InqueryResult::empty();
        let mut buf = [0 as c_char; 64];
        for (t, ip) in [(0 as c_char, None), (9, None), (32, None), (2, None)] {
            let ip = ip.map_or(std::ptr::null(), |s: &CString| s.as_ptr());
            // SAFETY: valid strings and buffers, as the contract asks.
            let rc = unsafe { inquery_r(t, email.as_ptr(), ip, &mut out, buf.as_mut_ptr(), 64) };
            assert_eq!(rc, libc::EINVAL, "type {t}");
        }
        // SAFETY: a NULL result is refused before anything is written.
        let rc = unsafe {
            inquery_r(1, email.as_ptr(), std::ptr::null(), null_mut(), buf.as_mut_ptr(), 64)
        };
        assert_eq!(rc, libc::EINVAL);
        // SAFETY: as above; NULL email is refused.
        let p = unsafe { inquery(1, std::ptr::null(), std::ptr::null()) };
        assert!(p.is_null());
        assert_eq!(Errno::last_raw(), libc::EINVAL);
        // SAFETY: the message is a NUL-terminated string of this thread.
        let msg = unsafe { CStr::from_ptr(inquery_error()) }.to_string_lossy().into_owned();
        assert!(msg.contains("NULL"), "{msg}");
    }
}
