//! [`Sessions`] through its public API, against a small fake IMAP server on loopback, with
//! a test [`MailStore`].

#![allow(clippy::unwrap_used)]

use inlookup_core::admin::{
    ImapAuthReply, ImapCommandReply, ImapErrorCode, ImapFailure, ImapLoginReply, ImapLogoutReply,
    ImapStatus,
};
use inlookup_core::wire::HEADER_LEN;
use inlookup_core::QueryKind;
use inlookup_imap::{ImapConfig, MailStore, Request, Sessions};
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the fake server saw: every line the client sent, in order, across connections.
type Seen = Arc<Mutex<Vec<String>>>;

/// A fake IMAP server on 127.0.0.1: greets with UNSELECT and ID, logs in with password
/// `pw` only, and answers SELECT, NOOP, UNSELECT, ID, LOGOUT; `XSLOW` takes two seconds,
/// `XBYE` says BYE and hangs up.
fn fake_server() -> (u16, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            let s = s.clone();
            std::thread::spawn(move || serve_one(c, &s));
        }
    });
    (port, seen)
}

fn serve_one(mut out: TcpStream, seen: &Mutex<Vec<String>>) {
    let caps = "IMAP4rev1 UNSELECT ID";
    let _ = write!(out, "* OK [CAPABILITY {caps}] fake ready\r\n");
    let mut lines = BufReader::new(out.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end().to_string();
        seen.lock().unwrap().push(line.clone());
        let mut words = line.splitn(3, ' ');
        let tag = words.next().unwrap_or_default();
        let name = words.next().unwrap_or_default().to_ascii_uppercase();
        let args = words.next().unwrap_or_default();
        let reply = match name.as_str() {
            "LOGIN" if args.ends_with(" \"pw\"") => {
                format!("{tag} OK [CAPABILITY {caps}] Logged in\r\n")
            }
            "LOGIN" => format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
            "ID" => format!("* ID NIL\r\n{tag} OK ID completed\r\n"),
            "SELECT" => format!("* 3 EXISTS\r\n{tag} OK [READ-WRITE] Select completed\r\n"),
            "NOOP" | "UNSELECT" => format!("{tag} OK {name} completed\r\n"),
            "XSLOW" => {
                std::thread::sleep(Duration::from_millis(2000));
                format!("{tag} OK slow completed\r\n")
            }
            "XBYE" => {
                let _ = out.write_all(b"* BYE going away\r\n");
                return;
            }
            "LOGOUT" => {
                let _ = write!(out, "* BYE Logging out\r\n{tag} OK Logout completed\r\n");
                return;
            }
            _ => format!("{tag} BAD unknown command\r\n"),
        };
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// A test mail store: 127.0.0.1 for most users, with a few users who show the other
/// answers. Records whom it was asked about.
#[derive(Default)]
struct Stores {
    asked: Mutex<Vec<String>>,
}

impl MailStore for Stores {
    fn mail_store(
        &self,
        user: &str,
    ) -> Result<Option<String>, Box<dyn std::error::Error + Send + Sync>> {
        self.asked.lock().unwrap().push(user.to_string());
        match user {
            "nobody" => Ok(None),
            "blank" => Ok(Some("  ".into())),
            "broken" => Err("the hostcntrl lookup failed".into()),
            "mallory" => panic!("a mail store lookup panicked"),
            _ => Ok(Some(" 127.0.0.1 ".into())),
        }
    }
}

/// Sessions against the fake server; the default host refuses connections (nothing
/// listens on 127.0.0.2 at that port), so only users the store places reach the server.
fn sessions(max_connections: usize) -> (Sessions, Arc<Stores>, Seen) {
    let (port, seen) = fake_server();
    let cfg = ImapConfig {
        host: "127.0.0.2".into(),
        port,
        max_connections,
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(5),
        ..ImapConfig::default()
    };
    let stores = Arc::new(Stores::default());
    (Sessions::new(cfg, stores.clone()).unwrap(), stores, seen)
}

/// A reply's JSON body.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> T {
    let n = i32::from_ne_bytes(bytes[..HEADER_LEN].try_into().unwrap());
    assert_eq!(n as usize, bytes.len() - HEADER_LEN, "the length header");
    serde_json::from_slice(&bytes[HEADER_LEN..]).unwrap()
}

fn login(s: &Sessions, user: &str, password: &str, session: &str) -> ImapLoginReply {
    let p = serde_json::json!({"user": user, "password": password, "session": session, "ip": "192.0.2.7"});
    body(&s.serve(Request::Login, &p.to_string()))
}

fn command(s: &Sessions, session: &str, command: &str) -> ImapCommandReply {
    let p = serde_json::json!({"session": session, "command": command});
    body(&s.serve(Request::Command, &p.to_string()))
}

fn logout(s: &Sessions, session: &str) -> ImapLogoutReply {
    let p = serde_json::json!({"session": session});
    body(&s.serve(Request::Logout, &p.to_string()))
}

fn auth(s: &Sessions, user: &str, password: &str) -> ImapAuthReply {
    let p = serde_json::json!({"user": user, "password": password});
    body(&s.serve(Request::Auth, &p.to_string()))
}

/// A failure's code.
fn code(e: &Option<ImapFailure>) -> Option<ImapErrorCode> {
    e.as_ref().map(|f| f.code)
}

#[test]
fn requests_come_only_from_the_imap_kinds() {
    for kind in QueryKind::ALL {
        match Request::from_kind(kind) {
            Some(r) => assert_eq!(r.kind(), kind),
            None => assert!(!kind.is_imap(), "{kind}"),
        }
    }
    assert_eq!(Request::from_kind(QueryKind::ImapAuth), Some(Request::Auth));
    assert_eq!(Request::from_kind(QueryKind::Host), None);
}

#[test]
fn sessions_are_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Sessions>();
}

#[test]
fn a_session_logs_in_once_runs_commands_and_parks_at_logout() {
    let (s, stores, seen) = sessions(4);
    let r = login(&s, "alice", "pw", "s1");
    assert!(r.ok && !r.reused, "{r:?}");
    assert!(r.capabilities.contains(&"UNSELECT".to_string()));
    let r = login(&s, "alice", "pw", "s1");
    assert!(r.ok && r.reused, "{r:?}");
    let c = command(&s, "s1", "a1 SELECT INBOX");
    assert!(c.ok, "{c:?}");
    assert_eq!((c.tag.as_str(), c.status), ("a1", ImapStatus::Ok));
    assert_eq!(c.response, "* 3 EXISTS\r\na1 OK [READ-WRITE] Select completed\r\n");
    let l = logout(&s, "s1");
    assert!(l.ok && l.parked, "{l:?}");
    let c = command(&s, "s1", "a2 NOOP");
    assert_eq!(code(&c.error), Some(ImapErrorCode::NoSession));
    let r = login(&s, "alice", "pw", "s1");
    assert!(r.ok && r.reused, "the parked connection: {r:?}");
    let st = s.stats();
    assert_eq!((st.created, st.reused, st.parked, st.in_use), (1, 2, 1, 1));
    assert_eq!(*stores.asked.lock().unwrap(), ["alice"], "asked once, for the one connection");
    let seen = seen.lock().unwrap();
    let names: Vec<&str> = seen.iter().map(|l| l.split(' ').nth(1).unwrap_or("")).collect();
    assert_eq!(names, ["ID", "LOGIN", "SELECT", "UNSELECT"]);
    assert!(seen[0].contains("\"x-originating-ip\" \"192.0.2.7\""), "{}", seen[0]);
    assert!(!seen.iter().any(|l| l.starts_with("a1 ")), "the caller's tag never reaches it");
}

#[test]
fn auth_checks_are_cached_both_ways_and_forgotten_by_user() {
    let (s, _, _) = sessions(4);
    let a = auth(&s, "alice", "wrong");
    assert!(a.ok && !a.valid && !a.cached, "{a:?}");
    let a = auth(&s, "alice", "wrong");
    assert!(a.ok && !a.valid && a.cached, "{a:?}");
    let r = login(&s, "alice", "wrong", "s1");
    assert_eq!(code(&r.error), Some(ImapErrorCode::AuthFailed));
    assert!(r.error.as_ref().unwrap().message.contains("cached"), "{r:?}");
    let a = auth(&s, "alice", "pw");
    assert!(a.ok && a.valid && !a.cached, "{a:?}");
    let a = auth(&s, "alice", "pw");
    assert!(a.ok && a.valid && a.cached, "{a:?}");
    let st = s.stats();
    assert_eq!(
        (st.auth_misses, st.auth_hits, st.auth_negative_hits, st.login_failures),
        (2, 1, 2, 1)
    );
    assert_eq!((st.created, st.closed, st.opening, st.in_use), (1, 1, 0, 0));
    assert_eq!(s.forget(Some("bob")).auth_entries, 0);
    assert_eq!(s.forget(Some("alice")).auth_entries, 2);
    let a = auth(&s, "alice", "pw");
    assert!(a.valid && !a.cached, "forgotten: {a:?}");
}

#[test]
fn bad_requests_get_their_error_codes() {
    let (s, _, _) = sessions(4);
    let r: ImapLoginReply = body(&s.serve(Request::Login, "{not json"));
    assert_eq!(code(&r.error), Some(ImapErrorCode::BadRequest));
    let r = login(&s, "", "pw", "s1");
    assert_eq!(code(&r.error), Some(ImapErrorCode::BadRequest));
    let c = command(&s, "s1", "a LOGOUT");
    assert_eq!(code(&c.error), Some(ImapErrorCode::Refused));
    let c = command(&s, "s1", "a1 NOOP\r\na2 NOOP");
    assert_eq!(code(&c.error), Some(ImapErrorCode::BadRequest));
    let c = command(&s, "nope", "a NOOP");
    assert_eq!(code(&c.error), Some(ImapErrorCode::NoSession));
    assert_eq!(c.tag, "a");
    let l = logout(&s, "nope");
    assert_eq!(code(&l.error), Some(ImapErrorCode::NoSession));
}

#[test]
fn the_default_host_serves_users_without_a_store_and_when_the_lookup_fails() {
    let (s, stores, _) = sessions(4);
    for user in ["nobody", "blank", "broken"] {
        let r = login(&s, user, "pw", user);
        // The default host (127.0.0.2) refuses: that is where they were sent.
        assert_eq!(code(&r.error), Some(ImapErrorCode::Connect), "{user}: {r:?}");
        assert!(r.error.unwrap().message.contains("127.0.0.2"), "{user}");
    }
    assert!(login(&s, "carol", "pw", "c").ok, "a store's host, trimmed");
    assert_eq!(*stores.asked.lock().unwrap(), ["nobody", "blank", "broken", "carol"]);
    let st = s.stats();
    assert_eq!((st.connect_failures, st.created, st.opening), (3, 1, 0));
}

#[test]
fn a_server_that_hangs_up_mid_command_ends_the_session() {
    let (s, _, _) = sessions(4);
    assert!(login(&s, "alice", "pw", "s1").ok);
    let c = command(&s, "s1", "a1 XBYE");
    assert_eq!(code(&c.error), Some(ImapErrorCode::Disconnected), "{c:?}");
    assert_eq!(c.tag, "a1");
    let c = command(&s, "s1", "a2 NOOP");
    assert_eq!(code(&c.error), Some(ImapErrorCode::NoSession));
    let st = s.stats();
    assert_eq!((st.closed_broken, st.in_use, st.busy), (1, 0, 0));
}

#[test]
fn a_busy_table_and_a_busy_session_get_busy_replies_after_the_back_off() {
    let (s, _, _) = sessions(1);
    assert!(login(&s, "alice", "pw", "s1").ok);
    std::thread::scope(|scope| {
        let slow = scope.spawn(|| command(&s, "s1", "a1 XSLOW"));
        std::thread::sleep(Duration::from_millis(200));
        let t0 = Instant::now();
        let r = login(&s, "bob", "pw", "s2");
        assert_eq!(code(&r.error), Some(ImapErrorCode::Busy), "{r:?}");
        assert!(t0.elapsed() >= Duration::from_millis(500), "backed off first");
        let c = command(&s, "s1", "a2 NOOP");
        assert_eq!(code(&c.error), Some(ImapErrorCode::SessionBusy), "{c:?}");
        let slow = slow.join().unwrap();
        assert!(slow.ok, "{slow:?}");
    });
    assert_eq!(s.stats().busy_replies, 2);
    let r = login(&s, "bob", "pw", "s2");
    assert!(r.ok && !r.reused, "the idle connection is reclaimed: {r:?}");
    assert_eq!(s.stats().reclaimed, 1);
}

#[test]
fn a_panic_while_opening_frees_the_kept_place() {
    let (s, _, _) = sessions(1);
    let p = serde_json::json!({"user": "mallory", "password": "pw", "session": "m"}).to_string();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.serve(Request::Login, &p);
    }));
    assert!(panicked.is_err());
    assert_eq!(s.stats().opening, 0);
    let r = login(&s, "alice", "pw", "s1");
    assert!(r.ok, "the table of one has its place back: {r:?}");
}

#[test]
fn close_all_logs_out_stops_the_reaper_and_refuses_later_requests() {
    let (s, _, seen) = sessions(4);
    assert!(login(&s, "alice", "pw", "s1").ok);
    std::thread::scope(|scope| {
        let reaper = scope.spawn(|| s.reap());
        std::thread::sleep(Duration::from_millis(50));
        s.close_all(Instant::now() + Duration::from_secs(2));
        reaper.join().unwrap();
    });
    let r = login(&s, "alice", "pw", "s1");
    assert_eq!(code(&r.error), Some(ImapErrorCode::ShuttingDown));
    let a = auth(&s, "bob", "pw");
    assert_eq!(code(&a.error), Some(ImapErrorCode::ShuttingDown));
    assert_eq!(s.stats().closed, 1);
    assert!(seen.lock().unwrap().iter().any(|l| l.ends_with(" LOGOUT")));
}

#[test]
fn the_reaper_logs_out_of_flushed_parked_connections() {
    let (s, _, seen) = sessions(4);
    assert!(login(&s, "alice", "pw", "s1").ok);
    assert!(logout(&s, "s1").parked);
    std::thread::scope(|scope| {
        let reaper = scope.spawn(|| s.reap());
        let f = s.forget(None);
        assert_eq!((f.parked, f.in_use), (1, 0));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !seen.lock().unwrap().iter().any(|l| l.ends_with(" LOGOUT")) {
            assert!(Instant::now() < deadline, "no LOGOUT");
            std::thread::sleep(Duration::from_millis(10));
        }
        s.close_all(Instant::now());
        reaper.join().unwrap();
    });
    let st = s.stats();
    assert_eq!((st.closed, st.idle), (1, 0));
}
