//! The C ABI (`libinquery`, declared in `include/inquery.h`): IndiMail's `inquery()` with
//! its return conventions, a re-entrant `inquery_r()` for threaded programs, and the IMAP
//! session calls `inquery_imap_login()`, `_command()`, `_logout()` and `_auth()`.
//!
//! `inquery()` returns a pointer into storage of the calling thread, valid until that
//! thread's next call: an `int` for USER and RELAY, a `struct passwd` for PWD (`pw_name` the
//! local part, as IndiMail's strToPw), the raw 128-byte `struct vlimits` for LIMIT, a
//! NUL-terminated string for HOST, ALIAS and DOMAIN. It returns NULL with `userNotFound = 1`
//! and `errno = 0` when PWD, HOST or LIMIT find nothing, and NULL with `userNotFound = 0` and
//! `errno` set on failure. IndiMail kept that storage in statics; keeping it per thread
//! changes nothing for single-threaded callers and makes concurrent callers safe.
//!
//! The IMAP calls return -1 on failure with `errno` set, the daemon's failure code for
//! `inquery_imap_errcode()` and a message for `inquery_error()`, all of the calling thread.
//! They read passwords in place and keep no copy.
//!
//! Nothing panics across the boundary: every entry point runs inside `catch_unwind`, and a
//! panic becomes an `EIO` failure.

use crate::direct::Direct;
use crate::error::Error;
use crate::imap::{ImapError, ImapErrorCode, ImapStatus};
use crate::querier::{fallback_from_env, Mode, Querier};
use crate::{Client, Lookup};
use inlookup_core::answer::{pwd_record, PwFields};
use inlookup_core::limits::VLIMITS_SIZE;
use inlookup_core::wire::PIPE_BUF;
use inlookup_core::{Answer, QueryKind};
use nix::errno::Errno;
use std::cell::{Cell, RefCell};
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

/// Writes a PWD record into `out`, its strings into the arena.
fn fill_pw(
    p: &PwFields<'_>,
    out: &mut InqueryResult,
    arena: &mut Arena<'_>,
) -> Result<(), Failure> {
    out.is_inactive = c_int::from(p.inactive);
    out.pw = libc::passwd {
        pw_name: arena.put(p.name)?,
        pw_passwd: arena.put(p.passwd)?,
        pw_uid: p.uid,
        pw_gid: p.gid,
        pw_gecos: arena.put(p.gecos)?,
        pw_dir: arena.put(p.dir)?,
        pw_shell: arena.put(p.shell)?,
    };
    Ok(())
}

/// What a query got: an answer, or a PWD reply still in its bytes (a hit read from the
/// shared cache: its record is copied into the caller's buffer without an owned answer
/// between).
enum Got {
    Answer(Answer),
    PwdReply(Vec<u8>),
}

/// Writes what a query got into `out`, its strings into `buf`.
fn fill_got(got: &Got, out: &mut InqueryResult, buf: &mut [u8]) -> Result<(), Failure> {
    match got {
        Got::Answer(a) => fill(a, out, buf),
        Got::PwdReply(body) => match pwd_record(body) {
            Some(p) => {
                *out = InqueryResult::empty();
                fill_pw(&p, out, &mut Arena { buf, used: 0 })
            }
            // "No such user" (or malformed: decode says why).
            None => {
                let n = i32::try_from(body.len()).unwrap_or(i32::MAX);
                fill(&Answer::decode(QueryKind::Pwd, n, body, "").map_err(Error::from)?, out, buf)
            }
        },
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
        Answer::Pwd { passwd: Some(p), .. } => fill_pw(&p.fields(), out, &mut arena)?,
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
            Error::TooLarge(_) => libc::EMSGSIZE,
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

/// Borrows a C string argument for the call, without copying it (passwords are not copied
/// here at all). NULL is `EINVAL` when `required`, else empty. Every entry point reads its
/// strings with it.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid during the call.
unsafe fn c_arg<'a>(p: *const c_char, what: &str, required: bool) -> Result<&'a str, Failure> {
    if p.is_null() {
        return if required {
            Err(Failure::new(libc::EINVAL, format!("the {what} is NULL")))
        } else {
            Ok("")
        };
    }
    // SAFETY: not NULL, and the caller promises a NUL-terminated string alive for the call.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| Failure::new(libc::EINVAL, format!("the {what} is not UTF-8")))
}

/// A request read from C arguments, borrowed from them for the call.
struct Request<'a> {
    kind: QueryKind,
    email: &'a str,
    ip: &'a str,
}

/// # Safety
/// `email` and `ip` are NULL or NUL-terminated strings that stay valid during the call.
unsafe fn request<'a>(
    query_type: c_char,
    email: *const c_char,
    ip: *const c_char,
) -> Result<Request<'a>, Failure> {
    let kind = QueryKind::from_byte(query_type as u8)
        .filter(|k| k.is_classic())
        .ok_or_else(|| Failure::new(libc::EINVAL, format!("unknown query type {query_type}")))?;
    // SAFETY: the caller's promise, passed on.
    let (email, ip) = unsafe { (c_arg(email, "email", true)?, c_arg(ip, "IP address", false)?) };
    if kind == QueryKind::Relay && ip.is_empty() {
        return Err(Failure::new(libc::EINVAL, "a relay query needs an IP address"));
    }
    Ok(Request { kind, email, ip })
}

/// Asks the daemon named by the environment (read on every call, as IndiMail does), with
/// the MySQL fallback when INQUERY_FALLBACK is on.
fn answer(req: &Request<'_>) -> Result<Got, Failure> {
    // A hit in the daemon's shared cache first: no FIFO, no control file read.
    if let Some((n, body)) = crate::shared::reply_from_env(req.kind.byte(), req.email, req.ip) {
        if req.kind == QueryKind::Pwd && n > 0 && body.starts_with(b"PWSTRUCT=") {
            return Ok(Got::PwdReply(body));
        }
        if let Ok(a) = Answer::decode(req.kind, n, &body, req.email) {
            return Ok(Got::Answer(a));
        }
    }
    let q = Querier::with_parts(Mode::Daemon, Client::from_env(), shared_direct())
        .with_fallback(fallback_from_env());
    let a = q.ask(req.kind, req.email, req.ip);
    FALLBACKS.fetch_add(q.fallbacks(), Ordering::Relaxed);
    Ok(Got::Answer(a?))
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
            fill_got(&a, res, buf)?;
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
        fill_got(&a, out, bytes)
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

// ---- IMAP sessions (kinds 40-43): `inquery_imap_*` ----

/// `INQUERY_IMAP_BUFSIZE` (inquery.h): a buffer of this size holds any command's responses.
/// The daemon carries at most 512 KiB of them, plus the caller's tag in place of its own
/// (the whole request, tag included, is at most `PIPE_BUF`), plus the NUL.
pub const INQUERY_IMAP_BUFSIZE: usize = 512 * 1024 + PIPE_BUF;

/// The daemon's IMAP failure code as `INQUERY_IMAP_E_*` (inquery.h). The numbers are ABI:
/// never renumber, only add.
fn imap_code_number(code: ImapErrorCode) -> c_int {
    match code {
        ImapErrorCode::BadRequest => 1,
        ImapErrorCode::Refused => 2,
        ImapErrorCode::NoSession => 3,
        ImapErrorCode::Busy => 4,
        ImapErrorCode::SessionBusy => 5,
        ImapErrorCode::AuthFailed => 6,
        ImapErrorCode::Connect => 7,
        ImapErrorCode::Tls => 8,
        ImapErrorCode::Protocol => 9,
        ImapErrorCode::Timeout => 10,
        ImapErrorCode::Disconnected => 11,
        ImapErrorCode::TooLarge => 12,
        ImapErrorCode::ShuttingDown => 13,
        ImapErrorCode::Other => 99,
    }
}

/// The errno that stands for a daemon IMAP failure (the table in inquery.h).
fn imap_code_errno(code: ImapErrorCode) -> c_int {
    match code {
        ImapErrorCode::BadRequest => libc::EINVAL,
        ImapErrorCode::Refused => libc::EPERM,
        ImapErrorCode::NoSession => libc::ENOENT,
        ImapErrorCode::Busy | ImapErrorCode::SessionBusy => libc::EBUSY,
        ImapErrorCode::AuthFailed => libc::EACCES,
        ImapErrorCode::Connect => libc::ECONNREFUSED,
        ImapErrorCode::Tls | ImapErrorCode::Protocol => libc::EPROTO,
        ImapErrorCode::Timeout => libc::ETIMEDOUT,
        ImapErrorCode::Disconnected => libc::ECONNRESET,
        ImapErrorCode::TooLarge => libc::EMSGSIZE,
        ImapErrorCode::ShuttingDown => libc::ESHUTDOWN,
        ImapErrorCode::Other => libc::EIO,
    }
}

/// A failed IMAP call: errno and message as [`Failure`], and the daemon's code
/// (`INQUERY_IMAP_E_*`, 0 when the request got no IMAP answer).
struct ImapFail {
    failure: Failure,
    code: c_int,
}

impl From<Failure> for ImapFail {
    fn from(failure: Failure) -> ImapFail {
        ImapFail { failure, code: 0 }
    }
}

impl From<ImapError> for ImapFail {
    fn from(e: ImapError) -> ImapFail {
        match e {
            ImapError::Query(e) => Failure::from(e).into(),
            ImapError::Failed(f) => ImapFail {
                failure: Failure::new(imap_code_errno(f.code), f.message),
                code: imap_code_number(f.code),
            },
        }
    }
}

thread_local! {
    /// This thread's last `inquery_imap_*` outcome as `INQUERY_IMAP_E_*` (0: success, or a
    /// failure with no IMAP answer), for `inquery_imap_errcode()`.
    static LAST_IMAP_CODE: Cell<c_int> = const { Cell::new(0) };
}

/// Runs an IMAP call: a panic becomes an `EIO` failure; a failure sets errno, the message
/// for `inquery_error()` and the code for `inquery_imap_errcode()`; `None` then.
fn imap_call<T>(f: impl FnOnce() -> Result<T, ImapFail>) -> Option<T> {
    let outcome = catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(Failure::new(libc::EIO, "internal error in libinquery").into()));
    match outcome {
        Ok(v) => {
            LAST_IMAP_CODE.with(|c| c.set(0));
            Some(v)
        }
        Err(e) => {
            LAST_IMAP_CODE.with(|c| c.set(e.code));
            set_last_error(&e.failure.message);
            Errno::set_raw(e.failure.errno);
            None
        }
    }
}

/// Copies `response` and a NUL into `buf`. Too small: as much as fits (NUL-terminated when
/// `buf` is not empty) and `ERANGE`.
fn copy_response(response: &[u8], buf: &mut [u8]) -> Result<(), Failure> {
    let n = response.len();
    if n < buf.len() {
        buf[..n].copy_from_slice(response);
        buf[n] = 0;
        return Ok(());
    }
    if let Some(room) = buf.len().checked_sub(1) {
        buf[..room].copy_from_slice(&response[..room]);
        buf[room] = 0;
    }
    Err(Failure::new(
        libc::ERANGE,
        format!(
            "the responses need {} bytes and the buffer holds {}: only their start was kept \
             (INQUERY_IMAP_BUFSIZE always suffices)",
            n + 1,
            buf.len()
        ),
    ))
}

/// `INQUERY_IMAP_OK`, `_NO`, `_BAD`.
fn status_number(s: ImapStatus) -> c_int {
    match s {
        ImapStatus::Ok => 0,
        ImapStatus::No => 1,
        ImapStatus::Bad => 2,
    }
}

/// IMAP login for `session` (kind 40); see `include/inquery.h`.
///
/// # Safety
/// `user`, `password`, `session` and `ip` are NULL or NUL-terminated strings; `reused` is
/// NULL or points to a writable `int`.
#[no_mangle]
pub unsafe extern "C" fn inquery_imap_login(
    user: *const c_char,
    password: *const c_char,
    session: *const c_char,
    ip: *const c_char,
    reused: *mut c_int,
) -> c_int {
    let outcome = imap_call(|| {
        // SAFETY: the caller's promise about the four strings.
        let (user, password, session, ip) = unsafe {
            (
                c_arg(user, "user", true)?,
                c_arg(password, "password", true)?,
                c_arg(session, "session", true)?,
                c_arg(ip, "IP address", false)?,
            )
        };
        let login = Client::from_env().imap_login(user, password, session, ip)?;
        if !reused.is_null() {
            // SAFETY: not NULL, and the caller gives us the `int` to write.
            unsafe { *reused = c_int::from(login.reused) };
        }
        Ok(())
    });
    outcome.map_or(-1, |()| 0)
}

/// One IMAP command on `session`'s connection (kind 41); see `include/inquery.h`.
///
/// # Safety
/// `session` and `command` are NULL or NUL-terminated strings; `buf` points to `buflen`
/// writable bytes; `outlen` is NULL or points to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn inquery_imap_command(
    session: *const c_char,
    command: *const c_char,
    buf: *mut c_char,
    buflen: usize,
    outlen: *mut usize,
) -> c_int {
    let outcome = imap_call(|| {
        if buf.is_null() {
            return Err(Failure::new(libc::EINVAL, "buf is NULL").into());
        }
        // SAFETY: the caller's promise about the two strings.
        let (session, command) =
            unsafe { (c_arg(session, "session", true)?, c_arg(command, "command", true)?) };
        let r = Client::from_env().imap_command(session, command)?;
        if !outlen.is_null() {
            // SAFETY: not NULL, and the caller gives us the `size_t` to write.
            unsafe { *outlen = r.response.len() };
        }
        // SAFETY: `buf` is not NULL and the caller gives us `buflen` writable bytes.
        let bytes = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), buflen) };
        copy_response(&r.response, bytes)?;
        Ok(status_number(r.status))
    });
    outcome.unwrap_or(-1)
}

/// IMAP logout of `session` (kind 42); see `include/inquery.h`.
///
/// # Safety
/// `session` is NULL or a NUL-terminated string; `parked` is NULL or points to a writable
/// `int`.
#[no_mangle]
pub unsafe extern "C" fn inquery_imap_logout(session: *const c_char, parked: *mut c_int) -> c_int {
    let outcome = imap_call(|| {
        // SAFETY: the caller's promise about `session`.
        let session = unsafe { c_arg(session, "session", true)? };
        let p = Client::from_env().imap_logout(session)?;
        if !parked.is_null() {
            // SAFETY: not NULL, and the caller gives us the `int` to write.
            unsafe { *parked = c_int::from(p) };
        }
        Ok(())
    });
    outcome.map_or(-1, |()| 0)
}

/// IMAP credentials check (kind 43); see `include/inquery.h`.
///
/// # Safety
/// `user`, `password` and `ip` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn inquery_imap_auth(
    user: *const c_char,
    password: *const c_char,
    ip: *const c_char,
) -> c_int {
    let outcome = imap_call(|| {
        // SAFETY: the caller's promise about the three strings.
        let (user, password, ip) = unsafe {
            (
                c_arg(user, "user", true)?,
                c_arg(password, "password", true)?,
                c_arg(ip, "IP address", false)?,
            )
        };
        Ok(Client::from_env().imap_auth(user, password, ip)?.valid)
    });
    outcome.map_or(-1, c_int::from)
}

/// This thread's last `inquery_imap_*` outcome as `INQUERY_IMAP_E_*` (0 after a success,
/// or after a failure that got no IMAP answer from the daemon: see errno).
#[no_mangle]
pub extern "C" fn inquery_imap_errcode() -> c_int {
    LAST_IMAP_CODE.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlookup_core::{Limits, Passwd};
    use std::ptr::null;

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

    #[test]
    fn imap_failures_carry_their_code_and_an_errno() {
        use inlookup_core::admin::ImapFailure;
        let all = [
            ImapErrorCode::BadRequest,
            ImapErrorCode::Refused,
            ImapErrorCode::NoSession,
            ImapErrorCode::Busy,
            ImapErrorCode::SessionBusy,
            ImapErrorCode::AuthFailed,
            ImapErrorCode::Connect,
            ImapErrorCode::Tls,
            ImapErrorCode::Protocol,
            ImapErrorCode::Timeout,
            ImapErrorCode::Disconnected,
            ImapErrorCode::TooLarge,
            ImapErrorCode::ShuttingDown,
            ImapErrorCode::Other,
        ];
        let mut numbers: Vec<c_int> = all.iter().map(|c| imap_code_number(*c)).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), all.len(), "each code its own number");
        assert!(numbers.iter().all(|n| *n > 0), "0 means no IMAP answer");
        let f = ImapFail::from(ImapError::Failed(ImapFailure {
            code: ImapErrorCode::AuthFailed,
            message: "[AUTHENTICATIONFAILED] Authentication failed.".into(),
        }));
        assert_eq!((f.failure.errno, f.code), (libc::EACCES, 6));
        let f = ImapFail::from(ImapError::Query(Error::Backend));
        assert_eq!((f.failure.errno, f.code), (libc::EIO, 0));
    }

    #[test]
    fn responses_are_copied_with_a_nul_and_a_short_buffer_is_erange() {
        let mut buf = [b'#'; 8];
        assert!(copy_response(b"a OK\r\n", &mut buf).is_ok());
        assert_eq!(&buf[..7], b"a OK\r\n\0");
        let mut buf = [b'#'; 6];
        let e = copy_response(b"a OK\r\n", &mut buf).err().map(|f| f.errno);
        assert_eq!(e, Some(libc::ERANGE), "no room for the NUL");
        assert_eq!(&buf, b"a OK\r\0", "the start, NUL-terminated");
        assert_eq!(copy_response(b"x", &mut []).err().map(|f| f.errno), Some(libc::ERANGE));
    }

    #[test]
    fn imap_calls_refuse_null_arguments_with_einval() {
        let s = CString::new("s1").unwrap();
        let mut buf = [0 as c_char; 16];
        // SAFETY: NULL strings and buffers are refused before anything is read or sent.
        unsafe {
            let rc =
                inquery_imap_login(std::ptr::null(), s.as_ptr(), s.as_ptr(), null(), null_mut());
            assert_eq!((rc, Errno::last_raw(), inquery_imap_errcode()), (-1, libc::EINVAL, 0));
            let rc = inquery_imap_auth(s.as_ptr(), std::ptr::null(), null());
            assert_eq!((rc, Errno::last_raw()), (-1, libc::EINVAL));
            let rc = inquery_imap_command(s.as_ptr(), s.as_ptr(), null_mut(), 16, null_mut());
            assert_eq!((rc, Errno::last_raw()), (-1, libc::EINVAL));
            let rc = inquery_imap_command(s.as_ptr(), null(), buf.as_mut_ptr(), 16, null_mut());
            assert_eq!((rc, Errno::last_raw()), (-1, libc::EINVAL));
            assert_eq!(inquery_imap_logout(null(), null_mut()), -1);
        }
        // SAFETY: the message is a NUL-terminated string of this thread.
        let msg = unsafe { CStr::from_ptr(inquery_error()) }.to_string_lossy().into_owned();
        assert_eq!(msg, "the session is NULL");
    }
}
