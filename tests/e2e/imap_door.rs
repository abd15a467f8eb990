//! The IMAP front door (IMAP_LISTEN) against a real Dovecot, driven by Python's imaplib
//! (`imap_door.py`) and by hand over a socket: the pool's reuse proved by Dovecot's log,
//! byte-identical large literals both ways, a wrong password that never evicts nor
//! reuses, a client killed mid-FETCH whose connection is never parked, the refusals.

use crate::harness::{root, Daemon, Opts, TestDb};
use crate::imap::{client, eventually, Dovecot};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A daemon with the door on a free loopback port, and that port.
pub(crate) fn door(db: &TestDb, opts: Opts) -> (Daemon, u16) {
    let port = free_port();
    let d = Daemon::start(db, opts.env("IMAP_LISTEN", &format!("127.0.0.1:{port}")));
    (d, port)
}

/// Runs `imap_door.py PORT USER PASSWORD ARGS…`; its output, or a panic with it.
fn py(port: u16, user: &str, password: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(root().join("tests/e2e/imap_door.py"))
        .arg(port.to_string())
        .arg(user)
        .arg(password)
        .args(args)
        .output()
        .expect("run python3");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "imap_door.py {args:?}: {}\n{text}", out.status);
    text
}

/// The door's counters once every client has gone (a client has its tagged LOGOUT reply
/// before the door has parked its connection).
fn settled(d: &Daemon) -> inlookup_core::admin::ImapStats {
    eventually("every door client is gone", || client(d).stats().unwrap().imap.door.clients == 0);
    client(d).stats().unwrap().imap
}

/// A hand-driven client.
struct Raw {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Raw { r: BufReader::new(s.try_clone().unwrap()), w: s }
    }
    /// The next line; empty when the door closed (a reset too: it may close with the
    /// client's bytes unread).
    fn line(&mut self) -> String {
        let mut l = String::new();
        if self.r.read_line(&mut l).is_err() {
            l.clear();
        }
        l
    }
    fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).unwrap();
    }
    /// Lines up to and including the one starting with `tag `.
    fn until(&mut self, tag: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "closed before {tag}: {out:?}");
            let done = l.starts_with(&format!("{tag} "));
            out.push(l);
            if done {
                return out;
            }
        }
    }
}

#[test]
fn imaplib_full_session_and_twenty_sessions_cost_one_dovecot_login() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let (d, port) = door(&db, dv.opts());
    let out = py(port, "alice", "secret", &["full"]);
    assert!(out.contains("append: 5") && out.contains("full: ok"), "{out}");
    py(port, "alice", "secret", &["loop", "20"]);
    dv.wait_logins("alice", 1);
    let s = settled(&d);
    assert_eq!((s.door.logins_fresh, s.door.logins_reused), (1, 20), "{:?}", s.door);
    assert_eq!(s.door.logouts_parked, 21, "{:?}", s.door);
    assert_eq!(s.door.closed_mid_command, 0);
    assert!(
        s.door.bytes_in > 5 * 1024 * 1024 && s.door.bytes_out > 5 * 1024 * 1024,
        "{:?}",
        s.door
    );
    assert!(s.door.peak_clients >= 1 && s.door.accepted == 21, "{:?}", s.door);
    // The FIFO kinds use the same pool: the door's parked connection is one of its slots.
    assert_eq!((s.created, s.idle), (1, 1), "{s:?}");
    d.signal(nix::sys::signal::Signal::SIGUSR1);
    d.wait_log("21 accepted, 0 refused; logins 1 fresh, 20 reused, 0 refused; 21 logouts parked");
}

#[test]
fn a_wrong_password_fails_as_dovecots_and_never_reuses_or_evicts() {
    let dv = Dovecot::start();
    dv.adduser("carol", "pw-one");
    let db = TestDb::new();
    let (d, port) = door(&db, dv.opts().env("IMAP_AUTH_NEG_TTL", "0"));
    py(port, "carol", "pw-one", &["loop", "1"]); // parked for carol/pw-one
    let out = py(port, "carol", "pw-one", &["wrong"]);
    assert!(out.contains("AUTHENTICATIONFAILED") && out.contains("retry ok"), "{out}");
    dv.wait_logins("carol", 1); // the retry took the parked connection: not evicted
                                // A different, right password never takes the connection parked for the old one.
    dv.adduser("carol", "pw-two");
    py(port, "carol", "pw-two", &["loop", "1"]);
    dv.wait_logins("carol", 2);
    let s = settled(&d);
    assert_eq!(s.door.logins_refused, 1, "{:?}", s.door);
    assert_eq!(s.login_failures, 1, "{s:?}");
}

#[test]
fn an_unknown_user_is_refused_like_dovecot_with_the_cached_refusal() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let (d, port) = door(&db, dv.opts());
    py(port, "nobody-here", "x", &["refused"]);
    py(port, "nobody-here", "x", &["refused"]);
    let s = settled(&d);
    assert_eq!((s.door.logins_refused, s.login_failures, s.auth_negative_hits), (2, 1, 1), "{s:?}");
}

#[test]
fn capabilities_offer_plain_and_login_only_and_nothing_unrelayable() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let (_d, port) = door(&db, dv.opts());
    let out = py(port, "alice", "secret", &["capability"]);
    let before = out.lines().find(|l| l.starts_with("before: ")).unwrap();
    let after = out.lines().find(|l| l.starts_with("after: ")).unwrap();
    assert!(before.contains("AUTH=PLAIN") && before.contains("AUTH=LOGIN"), "{out}");
    assert!(
        !before.contains("CRAM") && !before.contains("DIGEST") && !before.contains("STARTTLS"),
        "{out}"
    );
    assert!(after.contains("IMAP4rev1") && after.contains("IDLE"), "{out}");
    assert!(
        !after.contains("AUTH=") && !after.contains("STARTTLS") && !after.contains("COMPRESS"),
        "{out}"
    );
}

#[test]
fn authenticate_plain_and_login_and_id_pass_the_ip_and_qualify_the_identity() {
    let dv = Dovecot::start();
    dv.trust_loopback();
    let db = TestDb::new();
    let (d, port) = door(&db, dv.opts());
    let b64 = |s: &[u8]| {
        let out = Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        out.stdin.as_ref().unwrap().write_all(s).unwrap();
        String::from_utf8(out.wait_with_output().unwrap().stdout).unwrap()
    };
    // AUTHENTICATE PLAIN with SASL-IR, then LOGOUT: parked.
    let mut c = Raw::connect(port);
    assert!(c.line().starts_with("* OK [CAPABILITY IMAP4rev1"));
    c.send(&format!("a1 AUTHENTICATE PLAIN {}\r\n", b64(b"\0alice\0secret")));
    let l = c.until("a1");
    assert!(l.last().unwrap().starts_with("a1 OK [CAPABILITY"), "{l:?}");
    c.send("a2 LOGOUT\r\n");
    let l = c.until("a2");
    assert_eq!(l, ["* BYE Logging out.\r\n", "a2 OK Logout completed.\r\n"]);
    // AUTHENTICATE LOGIN, asked step by step: reuses it.
    let mut c = Raw::connect(port);
    c.line();
    c.send("b1 AUTHENTICATE LOGIN\r\n");
    assert_eq!(c.line(), "+ VXNlcm5hbWU6\r\n");
    c.send(&format!("{}\r\n", b64(b"alice")));
    assert_eq!(c.line(), "+ UGFzc3dvcmQ6\r\n");
    c.send(&format!("{}\r\n", b64(b"secret")));
    assert!(c.until("b1").last().unwrap().starts_with("b1 OK"));
    c.send("b2 LOGOUT\r\n");
    c.until("b2");
    dv.wait_logins("alice", 1);
    // With an ID qualifier: a connection of its own (never the unqualified one).
    let mut c = Raw::connect(port);
    c.line();
    c.send("c1 ID (\"x-session-id\" \"web-77\" \"x-originating-ip\" \"192.0.2.44\")\r\n");
    assert!(c.until("c1").last().unwrap().starts_with("c1 OK"));
    c.send("c2 LOGIN alice secret\r\nc3 SELECT INBOX\r\n");
    assert!(c.until("c2").last().unwrap().starts_with("c2 OK"));
    assert!(c.until("c3").last().unwrap().starts_with("c3 OK"));
    c.send("c4 LOGOUT\r\n");
    c.until("c4");
    dv.wait_logins("alice", 2);
    // The end user's address went on to Dovecot (which trusts it from loopback).
    assert_eq!(dv.login_ips("alice"), ["127.0.0.1", "192.0.2.44"]);
    let s = settled(&d);
    assert_eq!((s.door.logins_fresh, s.door.logins_reused, s.door.logouts_parked), (2, 1, 3));
}

#[test]
fn a_client_killed_mid_fetch_leaves_no_byte_for_the_next_session() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let (d, port) = door(&db, dv.opts());
    // A large message to fetch (5 MB), appended through the door.
    py(port, "alice", "secret", &["full"]); // appends, checks, expunges; parks
    let mut c = Raw::connect(port);
    c.line();
    c.send("a1 LOGIN alice secret\r\n");
    c.until("a1");
    let big = "x".repeat(76) + "\r\n";
    let msg = format!("Subject: big\r\n\r\n{}", big.repeat(80_000));
    c.send(&format!("a2 APPEND INBOX {{{}+}}\r\n", msg.len()));
    c.send(&msg);
    c.send("\r\n");
    assert!(c.until("a2").last().unwrap().starts_with("a2 OK"));
    c.send("a3 SELECT INBOX\r\n");
    c.until("a3");
    c.send("a4 FETCH 2 (BODY.PEEK[])\r\n");
    let mut first = [0u8; 4096];
    c.r.read_exact(&mut first).unwrap(); // the FETCH is under way
    drop(c); // killed mid-FETCH
    eventually("the door closed the connection mid-command", || {
        client(&d).stats().unwrap().imap.door.closed_mid_command == 1
    });
    // The next session logs in fresh and sees only its own responses.
    let mut c = Raw::connect(port);
    c.line();
    c.send("b1 LOGIN alice secret\r\nb2 NOOP\r\n");
    let l = c.until("b1");
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("b1 OK"), "{l:?}");
    let l = c.until("b2");
    assert!(l.iter().all(|x| !x.contains("xxxx")), "{l:?}");
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("b2 OK NOOP completed"), "{l:?}");
    c.send(
        "b3 SELECT INBOX\r\nb4 STORE 2 +FLAGS.SILENT (\\Deleted)\r\nb5 EXPUNGE\r\nb6 LOGOUT\r\n",
    );
    c.until("b6");
    let s = settled(&d);
    assert_eq!(s.door.closed_mid_command, 1, "{:?}", s.door);
    assert!(s.door.logins_fresh >= 2, "{:?}", s.door);
}

#[test]
fn beyond_max_clients_a_client_gets_bye_at_once() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let (d, port) = door(&db, dv.opts().env("IMAP_LISTEN_MAX_CLIENTS", "2"));
    let mut a = Raw::connect(port);
    let mut b = Raw::connect(port);
    assert!(a.line().starts_with("* OK"));
    assert!(b.line().starts_with("* OK"));
    let mut c = Raw::connect(port);
    assert!(c.line().starts_with("* BYE Too many connections"), "third client");
    drop(a);
    eventually("a place is free again", || client(&d).stats().unwrap().imap.door.clients == 1);
    let mut e = Raw::connect(port);
    assert!(e.line().starts_with("* OK"));
    b.send("x LOGOUT\r\n");
    b.until("x");
    drop((b, c, e));
    let s = settled(&d);
    assert_eq!(s.door.refused, 1, "{:?}", s.door);
    assert_eq!(s.door.peak_clients, 2, "{:?}", s.door);
}

#[test]
fn a_non_loopback_door_without_a_certificate_refuses_to_start() {
    let out = Command::new(crate::harness::bin("inlookup"))
        .args(["--imap-listen", "127.0.0.1:1144,0.0.0.0:1144", "-f", "/nonexistent/infifo"])
        .output()
        .expect("run inlookup");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(100), "{text}");
    assert!(
        text.contains("IMAP_LISTEN")
            && text.contains("not a loopback")
            && text.contains("IMAP_LISTEN_CERT"),
        "{text}"
    );
}

#[test]
fn starttls_at_the_door_then_login() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let (_tls, _ca, cert, key) = crate::harness::tls_files();
    let (_d, port) = door(
        &db,
        dv.opts()
            .env("IMAP_LISTEN_CERT", &cert.display().to_string())
            .env("IMAP_LISTEN_KEY", &key.display().to_string()),
    );
    let out = py(port, "alice", "secret", &["starttls"]);
    assert!(out.contains("starttls: ok"), "{out}");
    dv.wait_logins("alice", 1);
}

#[test]
fn an_imaps_listener_and_a_unix_socket_beside_the_plain_one() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let (_tls, _ca, cert, key) = crate::harness::tls_files();
    let (plain, tls) = (free_port(), free_port());
    let sock_dir = crate::harness::TempDir::new("door-sock");
    let sock = sock_dir.join("door.sock");
    let listen = format!("127.0.0.1:{plain},imaps://127.0.0.1:{tls},{}", sock.display());
    let d = Daemon::start(
        &db,
        dv.opts()
            .env("IMAP_LISTEN", &listen)
            .env("IMAP_LISTEN_CERT", &cert.display().to_string())
            .env("IMAP_LISTEN_KEY", &key.display().to_string()),
    );
    let out = py(tls, "alice", "secret", &["imaps"]);
    assert!(out.contains("imaps: ok"), "{out}");
    // The Unix socket: the same door, the connection parked by imaps reused.
    let s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("* OK [CAPABILITY IMAP4rev1"), "{line}");
    assert!(!line.contains("STARTTLS"), "no STARTTLS on a Unix socket: {line}");
    w.write_all(b"u1 LOGIN alice secret\r\nu2 LOGOUT\r\n").unwrap();
    let mut all = String::new();
    r.read_to_string(&mut all).unwrap();
    assert!(all.starts_with("u1 OK") && all.ends_with("u2 OK Logout completed.\r\n"), "{all}");
    dv.wait_logins("alice", 1);
    let st = settled(&d);
    assert_eq!((st.door.logins_fresh, st.door.logins_reused), (1, 1), "{:?}", st.door);
}

#[test]
fn roundcubes_own_imap_library_works_through_the_door_with_one_dovecot_login() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let (d, port) = door(&db, dv.opts());
    let out = Command::new("php")
        .arg(root().join("tests/e2e/imap_door_roundcube.php"))
        .args([&port.to_string(), "alice", "secret", "3"])
        .output()
        .expect("php (Debian's php-cli and roundcube-core: scripts/deps.sh roundcube)");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("roundcube: ok"), "{text}");
    assert_eq!(text.matches("1 messages, subject 'Welcome'").count(), 3, "{text}");
    dv.wait_logins("alice", 1);
    let s = settled(&d);
    assert_eq!((s.door.logins_fresh, s.door.logins_reused, s.door.logouts_parked), (1, 2, 3));
}

#[test]
fn after_login_idle_passes_through_and_starttls_and_compress_are_refused() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let (d, port) = door(&db, dv.opts());
    let mut c = Raw::connect(port);
    c.line();
    c.send("a1 LOGIN alice secret\r\na2 SELECT INBOX\r\n");
    c.until("a1");
    c.until("a2");
    c.send("a3 STARTTLS\r\n");
    assert!(c.until("a3").last().unwrap().starts_with("a3 BAD"));
    c.send("a4 COMPRESS DEFLATE\r\n");
    assert!(c.until("a4").last().unwrap().starts_with("a4 BAD"));
    c.send("a5 CAPABILITY\r\n");
    let l = c.until("a5");
    assert!(l[0].starts_with("* CAPABILITY IMAP4rev1") && !l[0].contains("STARTTLS"), "{l:?}");
    c.send("a6 IDLE\r\n");
    assert!(c.line().starts_with("+ "), "IDLE's continuation");
    c.send("DONE\r\n");
    assert!(c.until("a6").last().unwrap().starts_with("a6 OK"));
    c.send("a7 LOGOUT\r\n");
    c.until("a7");
    // In step after IDLE: parked, and the next session starts unselected.
    let mut c = Raw::connect(port);
    c.line();
    c.send("b1 LOGIN alice secret\r\nb2 FETCH 1 (FLAGS)\r\nb3 LOGOUT\r\n");
    c.until("b1");
    assert!(c.until("b2").last().unwrap().starts_with("b2 BAD"), "no mailbox selected");
    c.until("b3");
    dv.wait_logins("alice", 1);
    let s = settled(&d);
    assert_eq!((s.door.logouts_parked, s.door.closed_mid_command), (2, 0), "{:?}", s.door);
}

#[test]
fn a_full_pool_answers_unavailable_and_the_client_may_retry() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let (_d, port) = door(&db, dv.opts().env("IMAP_MAX_CONNECTIONS", "1"));
    let mut a = Raw::connect(port);
    a.line();
    a.send("a1 LOGIN alice secret\r\n");
    a.until("a1"); // holds the pool's only connection
    let mut b = Raw::connect(port);
    b.line();
    b.send("b1 LOGIN alice secret\r\n");
    let l = b.line();
    assert!(l.starts_with("b1 NO [UNAVAILABLE]"), "{l}");
    a.send("a2 LOGOUT\r\n");
    a.until("a2");
    b.send("b2 LOGIN alice secret\r\n");
    assert!(b.until("b2").last().unwrap().starts_with("b2 OK"), "the parked one, now free");
    dv.wait_logins("alice", 1);
}

#[test]
fn bad_input_before_login_gets_clear_errors_and_never_a_hang() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let (d, port) = door(&db, dv.opts());
    let mut c = Raw::connect(port);
    c.line();
    c.send("\r\n");
    assert!(c.line().starts_with("* BAD"), "an empty line");
    c.send("a1 LOGIN \"unterminated\r\n");
    assert!(c.line().starts_with("a1 BAD unterminated"), "a bad quoted string");
    c.send("a2 SELECT INBOX\r\n");
    assert!(c.line().starts_with("a2 BAD SELECT is not a command before login"));
    c.send("a3 LOGIN {999999}\r\n");
    assert!(c.line().starts_with("a3 BAD literal too large"));
    c.send("a4 AUTHENTICATE CRAM-MD5\r\n");
    assert!(c.line().starts_with("a4 NO [CANNOT]"));
    c.send("a5 AUTHENTICATE PLAIN\r\n");
    assert_eq!(c.line(), "+ \r\n");
    c.send("*\r\n");
    assert!(c.line().starts_with("a5 BAD Authentication cancelled"));
    c.send("a6 AUTHENTICATE PLAIN !!!\r\n");
    assert!(c.line().starts_with("a6 BAD not base64"));
    c.send("a7 ID (\"odd\")\r\n");
    assert!(c.line().starts_with("a7 BAD ID wants pairs"));
    // A synchronizing literal for the password, as clients send one with odd characters.
    c.send("a8 LOGIN alice {6}\r\n");
    assert!(c.line().starts_with("+ "));
    c.send("secret\r\n");
    assert!(c.until("a8").last().unwrap().starts_with("a8 OK"));
    c.send("a9 LOGOUT\r\n");
    c.until("a9");
    // Ten errors: sent away. A line longer than 8 KiB before login: closed.
    let mut c = Raw::connect(port);
    c.line();
    for i in 0..10 {
        c.send(&format!("b{i} FROB\r\n"));
        assert!(c.line().starts_with(&format!("b{i} BAD")));
    }
    c.send("b10 NOOP\r\n");
    assert_eq!(c.line(), "* BYE Too many errors.\r\n");
    let mut c = Raw::connect(port);
    c.line();
    c.send(&"x".repeat(20_000));
    assert_eq!(c.line(), "", "closed");
    let s = settled(&d);
    assert_eq!((s.door.logins_fresh, s.door.closed_mid_command), (1, 0), "{:?}", s.door);
}

#[test]
fn with_the_server_down_the_door_greets_and_a_login_is_unavailable() {
    let db = TestDb::new();
    let closed = free_port();
    let (_d, port) = door(
        &db,
        Opts::default().env("IMAP_HOST", "127.0.0.1").env("IMAP_PORT", &closed.to_string()),
    );
    for round in 0..2 {
        let mut c = Raw::connect(port);
        let g = c.line();
        assert!(g.starts_with("* OK [CAPABILITY IMAP4rev1") && g.contains("AUTH=PLAIN"), "{g}");
        c.send("a1 LOGIN alice secret\r\n");
        let l = c.line();
        assert!(l.starts_with("a1 NO [UNAVAILABLE]"), "round {round}: {l}");
        c.send("a2 LOGOUT\r\n");
        c.until("a2");
    }
}

#[test]
fn a_session_that_used_enable_is_logged_out_not_parked() {
    let dv = Dovecot::start();
    let db = TestDb::new();
    let (d, port) = door(&db, dv.opts());
    let mut c = Raw::connect(port);
    c.line();
    c.send("a1 LOGIN alice secret\r\na2 ENABLE CONDSTORE\r\na3 LOGOUT\r\n");
    c.until("a3");
    let mut c = Raw::connect(port);
    c.line();
    c.send("b1 LOGIN alice secret\r\nb2 LOGOUT\r\n");
    c.until("b2");
    dv.wait_logins("alice", 2); // the ENABLEd connection was not reused
    let s = settled(&d);
    assert_eq!((s.door.closed_state_changed, s.door.logouts_parked), (1, 1), "{:?}", s.door);
}
