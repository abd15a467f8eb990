//! A client process. It sets up (a FIFO client, an open MySQL connection, or nothing),
//! prints `ready`, waits for one byte on stdin, then times requests for a while (or for a
//! number of requests) and writes what it measured to stdout:
//!
//! ```text
//! OK ERRORS ELAPSED_NS N<TAB>FIRST_ERROR\n   then N little-endian u32 latencies in ns
//! ```
//!
//! Keys: the worker owns lane `lane` of `lanes` over the user indices `first..end`: it asks
//! `first + (lane + j * lanes) mod (end - first)` for j = 0, 1, 2, … So concurrent workers
//! never ask the same key at once (no coalescing in the daemon), and with `end - first` a
//! multiple of `lanes` every key of the lane comes round equally often.

use crate::case::Case;
use crate::cli::Args;
use crate::setup::{email, fifo_client};
use crate::Res;
use inlookup_core::{Answer, LookupConfig, Lookups, MysqlSettings, QueryKind};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a worker measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests answered as expected.
    pub ok: u64,
    /// Requests that failed or got an unexpected answer.
    pub errors: u64,
    /// From the start signal to the last completion.
    pub elapsed: Duration,
    /// Latency of every successful request, in ns.
    pub latencies: Vec<u32>,
    /// The first error, for the report.
    pub first_error: String,
}

/// How one request is made.
enum Asker {
    Fifo(inquery::Client),
    /// USER instead of PWD.
    FifoUser(inquery::Client),
    /// The C ABI's `inquery()`, configured by this process's environment.
    Ffi,
    Lean(crate::lean::Lean),
    Raw {
        conn: Box<mysql::Conn>,
        lookups: Lookups,
    },
    Direct {
        opts: mysql::Opts,
        lookups: Lookups,
    },
    /// One IMAP command on a session inlookup keeps logged in.
    ImapReused {
        client: inquery::Client,
        session: String,
        n: u64,
    },
    /// Connect, LOGIN, the same command, LOGOUT, straight to Dovecot.
    ImapFresh(crate::imap::Fresh),
    /// The command on a connection of our own, logged in before timing.
    ImapOpen(crate::imap::Open),
}

impl Asker {
    fn new(case: Case, a: &Args) -> Res<Asker> {
        let lookups = || Lookups::new(LookupConfig::default());
        Ok(match case {
            Case::Floor | Case::Hit | Case::Miss if a.get("client") == Some("lean") => {
                Asker::Lean(crate::lean::Lean {
                    fifo: PathBuf::from(a.need("fifo")?),
                    tmpdir: PathBuf::from(a.need("tmpdir")?),
                    mode: 0o660,
                    timeout: Duration::from_secs(2),
                })
            }
            Case::Floor | Case::Hit | Case::Miss => Asker::Fifo(client(a, Duration::from_secs(2))?),
            Case::MissUser => Asker::FifoUser(client(a, Duration::from_secs(2))?),
            Case::Mapped => {
                let c = client(a, Duration::from_secs(2))?;
                let path = inquery::shared::path_for(Path::new(a.need("fifo")?));
                Asker::Fifo(c.with_shared(path))
            }
            Case::MappedC => {
                // What a mail program's environment says; read by inquery() on each call.
                // SAFETY (edition 2021: safe fn): set before any thread starts.
                std::env::set_var("INFIFO", a.need("fifo")?);
                std::env::set_var("FIFOTMPDIR", a.need("tmpdir")?);
                std::env::set_var("FIFO_MODE", "0660");
                Asker::Ffi
            }
            Case::Raw => {
                let conn = mysql::Conn::new(tuned(a)?)?;
                Asker::Raw { conn: Box::new(conn), lookups: lookups()? }
            }
            Case::DirectTuned => Asker::Direct { opts: tuned(a)?, lookups: lookups()? },
            Case::DirectDefault => {
                let (host, port) = a.host_port("mysql")?;
                // Only what a program must say; everything else is the crate's default.
                let opts = mysql::OptsBuilder::new()
                    .ip_or_hostname(Some(host))
                    .tcp_port(port)
                    .user(Some("root"))
                    .pass(Some(""))
                    .db_name(Some(a.need("db")?));
                Asker::Direct { opts: opts.into(), lookups: lookups()? }
            }
            Case::Imap => {
                let (user, pass) = (a.need("user")?, a.need("pass")?);
                match a.need("imap")? {
                    "reused" => {
                        let client = client(a, Duration::from_secs(5))?;
                        let session = format!("bench-{}-{}", a.need("lane")?, std::process::id());
                        client
                            .imap_login(user, pass, &session, "127.0.0.1")
                            .map_err(|e| format!("IMAP login through inlookup: {e}"))?;
                        Asker::ImapReused { client, session, n: 0 }
                    }
                    how @ ("fresh" | "open") => {
                        let f = crate::imap::Fresh {
                            addr: a.need("addr")?.parse()?,
                            user: user.into(),
                            pass: pass.into(),
                        };
                        if how == "fresh" {
                            Asker::ImapFresh(f)
                        } else {
                            Asker::ImapOpen(crate::imap::Open::connect(&f)?)
                        }
                    }
                    other => return Err(format!("imap={other}: want reused, fresh or open").into()),
                }
            }
        })
    }

    fn ask(&mut self, email: &str) -> Result<(), String> {
        match self {
            Asker::Fifo(c) => {
                pwstruct(c.raw(QueryKind::Pwd.byte(), email, "").map_err(|e| e.to_string()))
            }
            Asker::Lean(c) => pwstruct(c.raw(QueryKind::Pwd, email, "")),
            Asker::FifoUser(c) => match c.raw(QueryKind::User.byte(), email, "") {
                Ok((0, _)) => Ok(()),
                Ok((n, _)) => Err(format!("USER status {n}")),
                Err(e) => Err(e.to_string()),
            },
            Asker::Ffi => {
                let e = std::ffi::CString::new(email).map_err(|e| e.to_string())?;
                // SAFETY: a NUL-terminated email and a NULL IP, as inquery.h allows; the
                // result is read before the next call on this thread.
                let p = unsafe {
                    inquery::ffi::inquery(QueryKind::Pwd.byte() as _, e.as_ptr(), std::ptr::null())
                };
                if p.is_null() {
                    return Err("inquery() returned NULL".into());
                }
                // SAFETY: PWD's result is a `struct passwd` valid until the next call.
                let pw = unsafe { &*p.cast::<libc::passwd>() };
                // SAFETY: pw_name points at a NUL-terminated name in inquery()'s storage.
                let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
                if name.to_bytes().first() == Some(&b'u') {
                    Ok(())
                } else {
                    Err(format!("pw_name {name:?}"))
                }
            }
            Asker::Raw { conn, lookups } => {
                found(lookups.answer(&mut **conn, QueryKind::Pwd, email, ""))
            }
            Asker::ImapReused { client, session, n } => {
                *n += 1;
                let cmd = format!("s{n} {}", crate::imap::COMMAND);
                match client.imap_command(session, &cmd) {
                    Ok(r) if r.status == inquery::imap::ImapStatus::Ok => Ok(()),
                    Ok(r) => Err(format!("{:?} {}", r.status, r.text)),
                    Err(e) => Err(e.to_string()),
                }
            }
            Asker::ImapFresh(f) => f.ask(),
            Asker::ImapOpen(o) => o.ask(),
            Asker::Direct { opts, lookups } => {
                let mut conn = mysql::Conn::new(opts.clone()).map_err(|e| e.to_string())?;
                let r = found(lookups.answer(&mut conn, QueryKind::Pwd, email, ""));
                drop(conn);
                r
            }
        }
    }
}

/// The FIFO client of the `fifo=` and `tmpdir=` arguments, with a `read` timeout.
fn client(a: &Args, read: Duration) -> Res<inquery::Client> {
    Ok(fifo_client(Path::new(a.need("fifo")?), Path::new(a.need("tmpdir")?), read))
}

/// A raw PWD reply is a user's PWSTRUCT.
fn pwstruct(r: Result<(i32, Vec<u8>), String>) -> Result<(), String> {
    match r {
        Ok((n, body)) if n > 0 && body.starts_with(b"PWSTRUCT=u") => Ok(()),
        Ok((n, body)) => Err(format!("reply {n}: {:?}", String::from_utf8_lossy(&body))),
        Err(e) => Err(e),
    }
}

fn found(r: Result<Answer, inlookup_core::LookupError>) -> Result<(), String> {
    match r {
        Ok(Answer::Pwd { passwd: Some(_), .. }) => Ok(()),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// inlookup's own connection options, for the bench database.
fn tuned_settings(host: &str, port: u16, db: &str) -> MysqlSettings {
    MysqlSettings {
        host: host.to_string(),
        port,
        user: "root".into(),
        password: String::new(),
        database: db.to_string(),
        ..MysqlSettings::default()
    }
}

fn tuned(a: &Args) -> Res<mysql::Opts> {
    let (host, port) = a.host_port("mysql")?;
    Ok(tuned_settings(&host, port, a.need("db")?).opts())
}

/// `worker case=… fifo=… tmpdir=… mysql=… db=… first=… end=… lane=… lanes=…
/// (secs=… | requests=…)`.
pub fn main(args: &[String]) -> Res<()> {
    let a = Args::parse(args)?;
    let case: Case = a.need("case")?.parse()?;
    let (first, end): (u64, u64) = (a.or("first", 1)?, a.or("end", 2)?);
    let (lane, lanes): (u64, u64) = (a.or("lane", 0)?, a.or("lanes", 1)?);
    let span = end.checked_sub(first).filter(|s| *s > 0).ok_or("need first < end")?;
    let secs: f64 = a.or("secs", 0.0)?;
    let requests: u64 = a.or("requests", 0)?;
    let mut asker = Asker::new(case, &a)?;

    let mut out = std::io::stdout().lock();
    out.write_all(b"ready\n")?;
    out.flush()?;
    let mut go = [0u8; 1];
    if std::io::stdin().read(&mut go)? == 0 {
        return Ok(()); // the run was abandoned
    }

    let mut o = Outcome { latencies: Vec::with_capacity(1 << 16), ..Outcome::default() };
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut j = 0u64;
    let mut last = start;
    loop {
        if (requests > 0 && j >= requests) || (requests == 0 && last >= deadline) {
            break;
        }
        let key = email(first + (lane + j * lanes) % span);
        j += 1;
        let t = Instant::now();
        let r = asker.ask(&key);
        last = Instant::now();
        match r {
            Ok(()) => {
                o.ok += 1;
                o.latencies.push(u32::try_from((last - t).as_nanos()).unwrap_or(u32::MAX));
            }
            Err(e) => {
                o.errors += 1;
                if o.first_error.is_empty() {
                    o.first_error = e.replace(['\n', '\t'], " ");
                }
            }
        }
    }
    o.elapsed = last - start;
    write_outcome(&mut out, &o)?;
    out.flush()?;
    Ok(())
}

fn write_outcome(w: &mut impl Write, o: &Outcome) -> std::io::Result<()> {
    writeln!(
        w,
        "{} {} {} {}\t{}",
        o.ok,
        o.errors,
        o.elapsed.as_nanos(),
        o.latencies.len(),
        o.first_error
    )?;
    let mut bytes = Vec::with_capacity(o.latencies.len() * 4);
    for l in &o.latencies {
        bytes.extend_from_slice(&l.to_le_bytes());
    }
    w.write_all(&bytes)
}

/// Reads what [`write_outcome`] wrote.
pub fn read_outcome(r: &mut impl std::io::BufRead) -> Res<Outcome> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let (nums, err) = line.trim_end_matches('\n').split_once('\t').ok_or("bad worker header")?;
    let n: Vec<u64> = nums.split(' ').map(str::parse).collect::<Result<_, _>>()?;
    let [ok, errors, elapsed, count] = n[..] else { return Err("bad worker header".into()) };
    let mut bytes = vec![0u8; count as usize * 4];
    r.read_exact(&mut bytes)?;
    let latencies =
        bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(Outcome {
        ok,
        errors,
        elapsed: Duration::from_nanos(elapsed),
        latencies,
        first_error: err.to_string(),
    })
}
