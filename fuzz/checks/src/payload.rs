//! Target `payload`: requests as the dispatcher sees them once decoded (inlookup's own JSON
//! kinds above all), and the JSON request types of `inlookup_core::admin`.

use inlookup::backend::{BackendError, Done, ErrorClass, Form, LookupJob, Outcome};
use inlookup::cache::{Cache, Ttls};
use inlookup::dispatch::{Dispatcher, Effects, Settings, Status};
use inlookup::fifo::ReplyFailure;
use inlookup::imap::ImapJob;
use inlookup::pool::Refused;
use inlookup_core::admin::{
    FlushReply, FlushRequest, ImapAuthRequest, ImapCommandRequest, ImapLoginRequest,
    ImapLogoutRequest, PingReply, StatsReport,
};
use inlookup_core::wire::{ERROR_REPLY, HEADER_LEN, PIPE_BUF};
use inlookup_core::QueryKind;
use inlookup_imap::{Forgotten, Request as ImapRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::path::Path;
use std::time::{Duration, Instant};

/// Separates the records of an input (never part of UTF-8, so it costs the JSON nothing).
const RECORD: u8 = 0xff;
/// Record kinds that are not requests (type bytes no kind uses).
const FINISH: u8 = 0xfe;
const ADVANCE: u8 = 0xfd;
const HUP: u8 = 0xfc;
const REFUSE: u8 = 0xfb;
const VANISH: u8 = 0xfa;

/// An answer too long for a classic reply (ALIAS-FULL territory).
const LONG_ANSWER: usize = PIPE_BUF + 100;

/// The world as the dispatcher sees it, recorded; refuses queueing and delivery when told.
#[derive(Debug, Default)]
struct World {
    replies: Vec<(Vec<u8>, Vec<u8>)>,
    jobs: VecDeque<LookupJob>,
    imap_jobs: Vec<ImapJob>,
    refuse: Option<Refused>,
    vanish: bool,
}

impl Effects for World {
    fn reply(&mut self, to: &[u8], bytes: &[u8]) -> Result<(), ReplyFailure> {
        self.replies.push((to.to_vec(), bytes.to_vec()));
        if self.vanish {
            Err(ReplyFailure::Vanished)
        } else {
            Ok(())
        }
    }
    fn lookup(&mut self, job: LookupJob) -> Result<(), Refused> {
        match self.refuse {
            Some(r) => Err(r),
            None => {
                self.jobs.push_back(job);
                Ok(())
            }
        }
    }
    fn imap(&mut self, job: ImapJob) -> Result<(), Refused> {
        match self.refuse {
            Some(r) => Err(r),
            None => {
                self.imap_jobs.push(job);
                Ok(())
            }
        }
    }
    fn forget_imap(&mut self, _user: Option<&str>) -> Forgotten {
        Forgotten { auth_entries: 1, parked: 1, in_use: 1 }
    }
    fn reset_backends(&mut self) {}
    fn status(&self) -> Status {
        Status::default()
    }
}

/// One request of the input.
#[derive(Debug)]
struct Asked {
    kind: u8,
    email: Vec<u8>,
    ip: Vec<u8>,
    /// Answered by the worker that ran its lookup (it started one that succeeded).
    by_worker: bool,
}

/// What finishing a lookup job reports, from two bytes of the input.
fn done(job: LookupJob, how: u8, body: &[u8]) -> (Done, Option<Vec<u8>>) {
    let outcome = if how & 1 == 1 {
        let error = BackendError::new(ErrorClass::ConnectionLost, "fuzzed failure");
        Outcome::Failed { error, starter: job.reply_to.clone() }
    } else {
        let reply = if how & 2 == 2 { vec![b'x'; LONG_ANSWER] } else { body.to_vec() };
        Outcome::Answered { reply, negative: how & 4 == 4 }
    };
    let answered = match &outcome {
        Outcome::Answered { reply, .. } => Some(reply.clone()),
        Outcome::Failed { .. } => None,
    };
    (Done { key: job.key, kind: job.kind, epoch: job.epoch, outcome, learned: None }, answered)
}

/// Does FLUSH accept this payload? (What `Dispatcher::flush` decides, from the docs.)
fn flush_accepts(payload: &str) -> bool {
    if payload.trim().is_empty() {
        return true;
    }
    match serde_json::from_str::<FlushRequest>(payload) {
        Ok(FlushRequest { kind: None, key }) => key.is_none(),
        Ok(FlushRequest { kind: Some(k), .. }) => k.is_imap() || k.is_classic(),
        Err(_) => false,
    }
}

/// The body of a JSON reply, checked: a length header that matches, then JSON of `T`.
fn json_body<T: DeserializeOwned>(reply: &[u8]) -> T {
    assert!(reply.len() >= HEADER_LEN, "a JSON reply without a header");
    let n = i32::from_ne_bytes([reply[0], reply[1], reply[2], reply[3]]);
    assert_eq!(usize::try_from(n).ok(), Some(reply.len() - HEADER_LEN), "a lying length");
    match serde_json::from_slice(&reply[HEADER_LEN..]) {
        Ok(v) => v,
        Err(e) => panic!("a JSON reply that does not parse: {e}"),
    }
}

/// `serde_json::from_slice` of a request type never panics, and what parses survives a
/// round trip.
fn round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(bytes: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(bytes).ok()?;
    let again = match serde_json::to_vec(&v) {
        Ok(j) => j,
        Err(e) => panic!("a parsed request does not serialise: {e}"),
    };
    let back: Result<T, _> = serde_json::from_slice(&again);
    assert_eq!(back.as_ref().ok(), Some(&v), "a request changed in a JSON round trip");
    Some(v)
}

/// The reply a request got is one its kind can get.
fn check_reply(a: &Asked, reply: &[u8], answers: &[Vec<u8>]) {
    let utf8 = std::str::from_utf8(&a.email).ok().zip(std::str::from_utf8(&a.ip).ok());
    let Some(kind) = QueryKind::from_byte(a.kind) else {
        assert_eq!(reply, ERROR_REPLY, "an unknown kind");
        return;
    };
    let Some((email, ip)) = utf8 else {
        assert_eq!(reply, ERROR_REPLY, "a request that is not UTF-8");
        return;
    };
    match kind {
        QueryKind::Ping if reply != ERROR_REPLY => {
            json_body::<PingReply>(reply);
        }
        QueryKind::Stats if reply != ERROR_REPLY => {
            json_body::<StatsReport>(reply);
        }
        QueryKind::Flush => {
            if flush_accepts(email) {
                json_body::<FlushReply>(reply);
            } else {
                assert_eq!(reply, ERROR_REPLY, "FLUSH accepted a bad payload");
            }
        }
        QueryKind::Relay if ip.trim().is_empty() => assert_eq!(reply, ERROR_REPLY),
        k if k.is_imap() => assert_eq!(reply, ERROR_REPLY, "IMAP replies are the workers'"),
        k if k.is_classic() || k == QueryKind::AliasFull => {
            // An answer a lookup gave (as cached, or served stale), or -1; a classic reply
            // is never longer than PIPE_BUF.
            assert!(
                reply == ERROR_REPLY || answers.iter().any(|a| a[..] == *reply),
                "{k}: a reply no lookup gave"
            );
            if k.is_classic() {
                assert!(reply.len() <= PIPE_BUF, "{k}: a reply of {} bytes", reply.len());
            }
        }
        _ => {}
    }
}

/// Target `payload`. The input is records separated by `0xff`. A record whose first byte is
/// a control runs it: `0xfe h body` finishes the oldest lookup job (h odd: the backend
/// failed; else answered `body`, or a 4196-byte answer when h & 2, "not found" when h & 4),
/// `0xfd s` moves the clock `30 s` times s on, `0xfc` is a HUP, `0xfb r` refuses queueing
/// from now on (r % 3: no, queue full, closed), `0xfa` makes every delivery fail from now on
/// (`Vanished`) or no longer. Any other record is a request: its first byte the type byte,
/// then the email (or JSON payload), reply path and IP, separated by NULs (a decoded frame
/// has no NUL in a field); the reply path is made unique per request.
///
/// Checks: `request` and `finished` never panic; every request gets exactly one outcome (a
/// reply, a lookup job it started, or an IMAP job) and, once every lookup job is finished,
/// exactly one answer (a reply, or the worker's for a lookup that succeeded); nothing is
/// left in flight; each reply is one its kind can get ([`check_reply`]); lookup and IMAP jobs
/// carry the request's fields. The payload of every request of a type byte from 32 (PING)
/// to 43 (IMAP-AUTH) also goes through `serde_json` as each request type of
/// `inlookup_core::admin` ([`round_trip`]), and an IMAP-COMMAND payload's command through
/// the `imap_command` target's checks.
pub fn payload(data: &[u8]) {
    let settings =
        // Refresh-ahead off: with it a hit may start a job too, and every request here has
        // exactly one outcome.
        Settings {
            workers: 2,
            default_domain: Some("example.com".into()),
            backend: "fuzz".into(),
            refresh_ahead: 0,
        };
    let mut d = Dispatcher::new(settings, Cache::new(8, Ttls::default(), Duration::from_secs(600)));
    let mut w = World::default();
    let start = Instant::now();
    let mut now = start;
    let mut asked: Vec<Asked> = Vec::new();
    let mut paths: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut answers: Vec<Vec<u8>> = Vec::new();
    let mut outcomes_before = 0;
    for record in data.split(|b| *b == RECORD) {
        let Some((&first, rest)) = record.split_first() else { continue };
        match first {
            FINISH => {
                if let Some(job) = w.jobs.pop_front() {
                    let how = rest.first().copied().unwrap_or(0);
                    finish(&mut d, &mut w, &mut asked, &paths, &mut answers, job, how, rest, now);
                }
            }
            ADVANCE => {
                let s = u64::from(rest.first().copied().unwrap_or(1));
                now += Duration::from_secs(30 * s);
            }
            HUP => d.hup(&mut w),
            REFUSE => {
                w.refuse = match rest.first().copied().unwrap_or(0) % 3 {
                    0 => None,
                    1 => Some(Refused::Full),
                    _ => Some(Refused::Closed),
                }
            }
            VANISH => w.vanish = !w.vanish,
            kind => {
                let mut fields = rest.split(|b| *b == 0);
                let email = fields.next().unwrap_or_default().to_vec();
                let given = fields.next().unwrap_or_default();
                let ip = fields.next().unwrap_or_default().to_vec();
                let i = asked.len();
                let mut path = format!("/tmp/f{i}.").into_bytes();
                path.extend_from_slice(given);
                paths.insert(path.clone(), i);
                let frame =
                    inlookup_core::wire::Frame { kind, email: &email, reply_path: &path, ip: &ip };
                d.request(Path::new("infifo"), frame, now, &mut w);
                // Exactly one outcome for this request, now.
                let outcomes = w.replies.len() + w.jobs.len() + w.imap_jobs.len();
                let new = outcomes - outcomes_before;
                asked.push(Asked { kind, email, ip, by_worker: false });
                assert!(new <= 1, "request {i} had {new} outcomes");
                if new == 0 {
                    // It joined a lookup in flight: answered when that finishes.
                    assert!(d.in_flight() > 0, "request {i} had no outcome and joined nothing");
                }
            }
        }
        outcomes_before = w.replies.len() + w.jobs.len() + w.imap_jobs.len();
        if (QueryKind::Ping.byte()..=QueryKind::ImapAuth.byte()).contains(&first) {
            check_payload(rest);
        }
    }
    while let Some(job) = w.jobs.pop_front() {
        let how = (job.epoch as u8) ^ (job.reply_to.len() as u8);
        finish(&mut d, &mut w, &mut asked, &paths, &mut answers, job, how, b"ok\0", now);
    }
    assert_eq!((d.in_flight(), d.waiting()), (0, 0), "lookups left in flight");

    // Every request answered exactly once; every reply fits its request.
    let mut answered = vec![0usize; asked.len()];
    for (to, reply) in &w.replies {
        let Some(&i) = paths.get(to) else { panic!("a reply to a path nobody gave") };
        answered[i] += 1;
        check_reply(&asked[i], reply, &answers);
    }
    for job in &w.imap_jobs {
        let Some(&i) = paths.get(&job.reply_to[..]) else { panic!("an IMAP job for nobody") };
        answered[i] += 1;
        let a = &asked[i];
        let kind = QueryKind::from_byte(a.kind).and_then(ImapRequest::from_kind);
        assert_eq!(kind, Some(job.request), "an IMAP job of another kind");
        assert_eq!(job.payload.as_bytes(), &a.email[..], "an IMAP job with another payload");
    }
    for (i, a) in asked.iter().enumerate() {
        answered[i] += usize::from(a.by_worker);
        assert_eq!(answered[i], 1, "request {i} ({a:?}) was answered {} times", answered[i]);
    }
}

/// Finishes one lookup job as a worker would: checks it carries its request's fields, marks
/// the starter answered when the lookup succeeded (the worker writes that reply), and hands
/// the result to the dispatcher.
#[allow(clippy::too_many_arguments)]
fn finish(
    d: &mut Dispatcher,
    w: &mut World,
    asked: &mut [Asked],
    paths: &HashMap<Vec<u8>, usize>,
    answers: &mut Vec<Vec<u8>>,
    job: LookupJob,
    how: u8,
    body: &[u8],
    now: Instant,
) {
    let Some(&i) = paths.get(&job.reply_to[..]) else { panic!("a lookup job for nobody") };
    let a = &mut asked[i];
    let kind = QueryKind::from_byte(a.kind);
    assert_eq!(kind.and_then(QueryKind::answers).map(|(base, _)| base), Some(job.kind));
    let whole = kind.and_then(QueryKind::answers).is_some_and(|(_, whole)| whole);
    assert_eq!(job.form, if whole { Form::Whole } else { Form::Capped });
    assert_eq!((job.email.as_bytes(), job.ip.as_bytes()), (&a.email[..], &a.ip[..]));
    let (done, answer) = done(job, how, body);
    if let Some(reply) = answer {
        a.by_worker = true;
        answers.push(Form::Capped.fit(&reply).to_vec());
        answers.push(reply);
    }
    d.finished(done, now, w);
}

/// The payload of a record of one of inlookup's own kinds (or a byte between them) through
/// every JSON request type.
fn check_payload(fields: &[u8]) {
    let payload = fields.split(|b| *b == 0).next().unwrap_or_default();
    round_trip::<FlushRequest>(payload);
    round_trip::<ImapLoginRequest>(payload);
    round_trip::<ImapLogoutRequest>(payload);
    round_trip::<ImapAuthRequest>(payload);
    if let Some(c) = round_trip::<ImapCommandRequest>(payload) {
        crate::imap_command_str(&c.command);
    }
}
