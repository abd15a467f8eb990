//! The IMAP front door: unmodified IMAP clients (webmail) connect to the daemon, which
//! speaks IMAP to them before login ([`prelogin`]), takes a logged-in connection from the
//! pool the FIFO kinds use ([`crate::Sessions::door_login`]), relays bytes both ways in
//! step ([`track`]) and answers LOGOUT itself, parking the connection for the same
//! identity's next login. This module serves one client on the calling thread; the
//! daemon listens, bounds the clients and gives each a thread.
//!
//! A client that leaves in the middle of a command or a literal gets its server
//! connection closed, never parked: the next session must not see a byte of the last
//! one's responses.

pub mod io;
pub mod prelogin;
pub mod track;

use crate::conn::Conn;
use crate::sessions::{DoorIdentity, DoorLogin};
use crate::table::Lease;
use crate::Sessions;
use io::{nothing_yet, poll2, ClientStream};
use prelogin::{Command, ReadError, Reader, Token};
use rustls::ServerConfig;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use track::{ClientTrack, Piece, ServerTrack};

/// How long the relay's reads wait once poll said readable (TLS records may come in parts).
const SHORT_READ: Duration = Duration::from_millis(200);
/// A client's writes, or the server's, that take longer fail the session.
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// The door's settings for its clients.
#[derive(Debug, Clone)]
pub struct DoorSettings {
    /// TLS for implicit-TLS listeners and STARTTLS (`None`: neither is offered).
    pub tls: Option<Arc<ServerConfig>>,
    /// A client silent this long after login is closed (its connection parked when in
    /// step): RFC 3501's 30 minutes.
    pub idle_timeout: Duration,
    /// A client silent this long before login is closed.
    pub login_timeout: Duration,
    /// The longest wait for the server to finish the client's commands at LOGOUT.
    pub command_timeout: Duration,
}

impl Default for DoorSettings {
    fn default() -> Self {
        DoorSettings {
            tls: None,
            idle_timeout: Duration::from_secs(30 * 60),
            login_timeout: Duration::from_secs(60),
            command_timeout: Duration::from_secs(60),
        }
    }
}

/// What the client told before login.
#[derive(Debug, Default)]
struct Told {
    ip: String,
    qualifier: String,
}

/// A logged-in connection for the client.
struct LoggedIn<'a> {
    lease: Lease<'a, Conn>,
    caps: String,
}

/// Serves one client on this thread until it leaves. `implicit_tls`: the listener is
/// `imaps://` (the handshake comes first). `n` numbers the client (its key in the pool).
pub fn serve(
    sessions: &Sessions,
    stream: ClientStream,
    implicit_tls: bool,
    s: &DoorSettings,
    n: u64,
) {
    sessions.door_note(|d| {
        d.accepted += 1;
        d.clients += 1;
        d.peak_clients = d.peak_clients.max(d.clients);
    });
    serve_client(sessions, stream, implicit_tls, s, n);
    sessions.door_note(|d| d.clients = d.clients.saturating_sub(1));
}

fn serve_client(
    sessions: &Sessions,
    stream: ClientStream,
    implicit_tls: bool,
    s: &DoorSettings,
    n: u64,
) {
    if stream.set_timeouts(s.login_timeout, WRITE_TIMEOUT).is_err() {
        return;
    }
    let stream = match (implicit_tls, &s.tls) {
        (true, Some(tls)) => match stream.into_tls(tls.clone()) {
            Ok(t) => t,
            Err(e) => {
                log::debug!("IMAP door: TLS handshake failed: {e}");
                return;
            }
        },
        _ => stream,
    };
    let mut r = Reader { stream, buf: Vec::new() };
    let key = sessions.door_session_key(n);
    let Some(logged) = prelogin(sessions, &mut r, s, &key) else {
        r.stream.close();
        return;
    };
    let LoggedIn { mut lease, .. } = logged;
    let leftover = std::mem::take(&mut r.buf);
    let caps = logged.caps;
    let mut relay = Relay::new(&caps);
    let in_step = relay.run(&mut r.stream, &mut lease, leftover, s);
    sessions.door_note(|d| {
        d.bytes_in += relay.bytes_in;
        d.bytes_out += relay.bytes_out;
    });
    // Parked before the client hears its LOGOUT answered: its next login finds it.
    let parked = sessions.door_end(lease, in_step, relay.changed);
    if let Some(tag) = &relay.logout {
        if in_step {
            let bye = format!("* BYE Logging out.\r\n{tag} OK Logout completed.\r\n");
            let _ = r.stream.write_all(bye.as_bytes());
        }
    }
    r.stream.close();
    log::debug!(
        "IMAP door client {n}: {} ({} bytes in, {} out)",
        if parked { "connection parked" } else { "connection closed" },
        relay.bytes_in,
        relay.bytes_out
    );
}

/// The not-authenticated state, until a login succeeds (`Some`) or the client leaves.
fn prelogin<'a>(
    sessions: &'a Sessions,
    r: &mut Reader,
    s: &DoorSettings,
    key: &str,
) -> Option<LoggedIn<'a>> {
    let server_caps = sessions.door_capabilities();
    let caps = |r: &Reader| {
        prelogin::prelogin_caps(server_caps.as_deref(), s.tls.is_some() && r.stream.can_starttls())
    };
    let greeting = format!("* OK [CAPABILITY {}] inlookup IMAP front door ready.\r\n", caps(r));
    r.send(greeting.as_bytes()).ok()?;
    let mut told = Told::default();
    let mut errors = 0;
    loop {
        if errors >= prelogin::MAX_ERRORS {
            let _ = r.send(b"* BYE Too many errors.\r\n");
            return None;
        }
        let cmd = match r.command() {
            Ok(c) => c,
            Err((tag, ReadError::Bad(why))) => {
                errors += 1;
                let tag = tag.unwrap_or_else(|| "*".into());
                r.send(format!("{tag} BAD {why}\r\n").as_bytes()).ok()?;
                continue;
            }
            Err((_, ReadError::Io(e))) => {
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut
                {
                    let _ = r.send(b"* BYE Autologout; idle for too long.\r\n");
                }
                return None;
            }
        };
        let Command { tag, name, args } = cmd;
        let reply = match name.as_str() {
            "CAPABILITY" => {
                format!("* CAPABILITY {}\r\n{tag} OK Pre-login capabilities listed.\r\n", caps(r))
            }
            "NOOP" => format!("{tag} OK NOOP completed.\r\n"),
            "LOGOUT" => {
                let _ = r.send(
                    format!("* BYE Logging out.\r\n{tag} OK Logout completed.\r\n").as_bytes(),
                );
                return None;
            }
            "ID" => match prelogin::id_fields(&args) {
                Ok(fields) => {
                    for (k, v) in fields {
                        match k.as_str() {
                            "x-originating-ip" if v.trim().parse::<std::net::IpAddr>().is_ok() => {
                                told.ip = v.trim().to_string();
                            }
                            "x-session-id" => told.qualifier = v,
                            _ => {}
                        }
                    }
                    format!("* ID (\"name\" \"inlookup\")\r\n{tag} OK ID completed.\r\n")
                }
                Err(e) => {
                    errors += 1;
                    format!("{tag} BAD {e}\r\n")
                }
            },
            "STARTTLS" => match &s.tls {
                Some(tls) if r.stream.can_starttls() && args.is_empty() => {
                    r.send(format!("{tag} OK Begin TLS negotiation now.\r\n").as_bytes()).ok()?;
                    // What came before the handshake is dropped (RFC 3501 6.2.1).
                    r.buf.clear();
                    let plain = std::mem::replace(&mut r.stream, placeholder()?);
                    match plain.into_tls(tls.clone()) {
                        Ok(t) => r.stream = t,
                        Err(e) => {
                            log::debug!("IMAP door: STARTTLS handshake failed: {e}");
                            return None;
                        }
                    }
                    continue;
                }
                _ => {
                    errors += 1;
                    format!("{tag} BAD STARTTLS is not offered here.\r\n")
                }
            },
            "LOGIN" => match args.as_slice() {
                [u, p] if u.astring().is_some() && p.astring().is_some() => {
                    let user =
                        String::from_utf8_lossy(u.astring().unwrap_or_default()).into_owned();
                    let password =
                        String::from_utf8_lossy(p.astring().unwrap_or_default()).into_owned();
                    match login(sessions, r, &tag, &user, &password, &told, key) {
                        Some(l) => return Some(l),
                        None => {
                            errors += 1;
                            continue;
                        }
                    }
                }
                _ => {
                    errors += 1;
                    format!("{tag} BAD LOGIN wants a user and a password.\r\n")
                }
            },
            "AUTHENTICATE" => match authenticate(r, &tag, &args) {
                Ok(Some((user, password))) => {
                    match login(sessions, r, &tag, &user, &password, &told, key) {
                        Some(l) => return Some(l),
                        None => {
                            errors += 1;
                            continue;
                        }
                    }
                }
                Ok(None) => return None,
                Err(reply) => {
                    errors += 1;
                    reply
                }
            },
            _ => {
                errors += 1;
                format!("{tag} BAD {name} is not a command before login.\r\n")
            }
        };
        r.send(reply.as_bytes()).ok()?;
    }
}

/// A stand-in stream while the real one is handed to the TLS handshake.
fn placeholder() -> Option<ClientStream> {
    std::os::unix::net::UnixStream::pair().ok().map(|(a, _)| ClientStream::Unix(a))
}

/// AUTHENTICATE PLAIN or LOGIN: `Ok(Some(user, password))`, `Ok(None)` when the client
/// left, `Err(reply)` for a tagged BAD or NO.
fn authenticate(
    r: &mut Reader,
    tag: &str,
    args: &[Token],
) -> Result<Option<(String, String)>, String> {
    let bad = |why: &str| format!("{tag} BAD {why}\r\n");
    let (mech, ir) = match args {
        [Token::Atom(m)] => (m.to_ascii_uppercase(), None),
        [Token::Atom(m), Token::Atom(ir)] => (m.to_ascii_uppercase(), Some(ir.clone())),
        _ => return Err(bad("AUTHENTICATE wants a mechanism")),
    };
    // One step of the exchange: the initial response if given (`=` is empty), else asked.
    let mut step = |challenge: &str, given: Option<String>| -> Result<Option<Vec<u8>>, String> {
        if let Some(g) = given {
            return Ok(Some(if g == "=" { Vec::new() } else { g.into_bytes() }));
        }
        if r.send(format!("+ {challenge}\r\n").as_bytes()).is_err() {
            return Ok(None);
        }
        match r.line() {
            Ok(l) if l == b"*" => Err(bad("Authentication cancelled.")),
            Ok(l) => Ok(Some(l)),
            Err(_) => Ok(None),
        }
    };
    match mech.as_str() {
        "PLAIN" => {
            let Some(msg) = step("", ir)? else { return Ok(None) };
            prelogin::plain(&msg).map(Some).map_err(|e| bad(&e))
        }
        "LOGIN" => {
            let Some(u) = step("VXNlcm5hbWU6", ir)? else { return Ok(None) };
            let Some(p) = step("UGFzc3dvcmQ6", None)? else { return Ok(None) };
            let user = prelogin::b64_text(&u).map_err(|e| bad(&e))?;
            let password = prelogin::b64_text(&p).map_err(|e| bad(&e))?;
            Ok(Some((user, password)))
        }
        _ => Err(format!("{tag} NO [CANNOT] Only PLAIN and LOGIN are offered.\r\n")),
    }
}

/// A login through the pool; the tagged reply sent. `None`: refused or failed (the
/// client may try again), or the client is gone.
fn login<'a>(
    sessions: &'a Sessions,
    r: &mut Reader,
    tag: &str,
    user: &str,
    password: &str,
    told: &Told,
    key: &str,
) -> Option<LoggedIn<'a>> {
    if user.is_empty() {
        let _ = r
            .send(format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n").as_bytes());
        return None;
    }
    let who = DoorIdentity { user, password, ip: &told.ip, qualifier: &told.qualifier };
    match sessions.door_login(who, key) {
        DoorLogin::Ok { lease, .. } => {
            let caps = prelogin::postlogin_caps(lease.capabilities());
            let ok = format!("{tag} OK [CAPABILITY {caps}] Logged in\r\n");
            if r.send(ok.as_bytes()).is_err() {
                // Gone before the relay: the connection is in step all the same.
                sessions.door_end(lease, true, false);
                return None;
            }
            Some(LoggedIn { lease, caps })
        }
        DoorLogin::Refused(text) => {
            let _ = r.send(format!("{tag} NO {}\r\n", one_line(&text)).as_bytes());
            None
        }
        DoorLogin::Unavailable(text) => {
            let _ = r.send(format!("{tag} NO [UNAVAILABLE] {}\r\n", one_line(&text)).as_bytes());
            None
        }
    }
}

/// A server's or our text, safe on one line.
fn one_line(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// The relay's state for one client.
struct Relay {
    client: ClientTrack,
    server: ServerTrack,
    /// Tags of commands passed on and not yet completed.
    pending: Vec<String>,
    /// Our own answers, waiting for the server's stream to reach a response boundary.
    inject: Vec<u8>,
    /// The client sent LOGOUT (its tag).
    logout: Option<String>,
    caps: String,
    bytes_in: u64,
    bytes_out: u64,
    /// The session changed what UNSELECT does not reset: not to be parked.
    changed: bool,
}

/// Does this command change the connection's state beyond what UNSELECT resets, in a way
/// the next session could trip on? ENABLE does (QRESYNC turns EXPUNGE into VANISHED,
/// UTF8=ACCEPT changes how strings come), and so does NOTIFY. CONDSTORE turned on by a
/// command's MODSEQ only adds items a later session's client may ignore: not counted.
fn changes_state(name: &str) -> bool {
    matches!(name, "ENABLE" | "NOTIFY")
}

/// What stops the relay.
enum Stop {
    /// Go on.
    No,
    /// Stop; the connection is (or is not) in step.
    Done(bool),
}

impl Relay {
    fn new(caps: &str) -> Relay {
        Relay {
            client: ClientTrack::default(),
            server: ServerTrack::default(),
            pending: Vec::new(),
            inject: Vec::new(),
            logout: None,
            caps: caps.to_string(),
            bytes_in: 0,
            bytes_out: 0,
            changed: false,
        }
    }

    fn in_step(&self) -> bool {
        self.client.in_step() && self.server.at_boundary() && self.pending.is_empty()
    }

    /// Relays until the client leaves or logs out, or the server goes. True when the
    /// server connection is left in step (fit to park).
    fn run(
        &mut self,
        client: &mut ClientStream,
        conn: &mut Conn,
        leftover: Vec<u8>,
        s: &DoorSettings,
    ) -> bool {
        if client.set_timeouts(SHORT_READ, WRITE_TIMEOUT).is_err()
            || conn.set_relay_timeouts(SHORT_READ, WRITE_TIMEOUT).is_err()
        {
            return false;
        }
        if !leftover.is_empty() {
            if let Stop::Done(step) = self.client_bytes(&leftover, client, conn) {
                return step;
            }
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut last = Instant::now();
        let mut logout_since: Option<Instant> = None;
        loop {
            if let Some(tag) = &self.logout {
                let since = *logout_since.get_or_insert_with(Instant::now);
                if self.pending.is_empty() && self.server.at_boundary() {
                    // The BYE and the tagged OK follow once the connection is parked.
                    let _ = client.write_all(&self.inject);
                    return true;
                }
                if since.elapsed() > s.command_timeout {
                    let _ = client.write_all(
                        format!("* BYE Logging out.\r\n{tag} OK Logout completed.\r\n").as_bytes(),
                    );
                    return false;
                }
            }
            if !self.inject.is_empty() && self.server.at_boundary() {
                let bytes = std::mem::take(&mut self.inject);
                if client.write_all(&bytes).and_then(|()| client.flush()).is_err() {
                    return false;
                }
            }
            let watch_client = self.logout.is_none();
            let cb = watch_client && client.has_buffered();
            let sb = conn.has_buffered();
            let (cr, sr) = if cb || sb {
                (cb, sb)
            } else {
                match poll2(client.raw_fd(), watch_client, conn.raw_fd(), Duration::from_secs(1)) {
                    Ok(r) => r,
                    Err(_) => return false,
                }
            };
            if !cr && !sr {
                if last.elapsed() > s.idle_timeout {
                    let _ = client.write_all(b"* BYE Autologout; idle for too long.\r\n");
                    return self.in_step();
                }
                continue;
            }
            last = Instant::now();
            if sr {
                match conn.relay_read(&mut buf) {
                    Ok(n) if n > 0 => {
                        if !self.server_bytes(&buf[..n], client) {
                            return false;
                        }
                    }
                    Err(e) if nothing_yet(&e) => {}
                    _ => {
                        if self.server.at_boundary() {
                            let _ = client
                                .write_all(b"* BYE The IMAP server closed the connection.\r\n");
                        }
                        return false;
                    }
                }
            }
            if cr {
                match client.read(&mut buf) {
                    Ok(0) => return self.in_step(),
                    Ok(n) => {
                        if let Stop::Done(step) = self.client_bytes(&buf[..n], client, conn) {
                            return step;
                        }
                    }
                    Err(e) if nothing_yet(&e) => {}
                    Err(_) => return self.in_step(),
                }
            }
        }
    }

    /// Passes the server's bytes on, our answers slipped in at a response boundary. False
    /// when the client cannot be written to.
    fn server_bytes(&mut self, data: &[u8], client: &mut ClientStream) -> bool {
        self.bytes_out += data.len() as u64;
        let done = self.server.feed(data);
        let mut from = 0;
        if !self.inject.is_empty() {
            if let Some(first) = done.first() {
                let inject = std::mem::take(&mut self.inject);
                if client
                    .write_all(&data[..first.end])
                    .and_then(|()| client.write_all(&inject))
                    .is_err()
                {
                    return false;
                }
                from = first.end;
            }
        }
        if client.write_all(&data[from..]).and_then(|()| client.flush()).is_err() {
            return false;
        }
        for d in &done {
            if let Some(tag) = d.tag() {
                if matches!(d.status().as_str(), "OK" | "NO" | "BAD") {
                    if let Some(i) = self.pending.iter().position(|t| t == tag) {
                        self.pending.remove(i);
                    }
                    self.client.server_done(tag);
                }
            }
        }
        true
    }

    /// Passes the client's bytes on, answering LOGOUT, CAPABILITY and what the door does
    /// not relay itself.
    fn client_bytes(&mut self, data: &[u8], client: &mut ClientStream, conn: &mut Conn) -> Stop {
        self.bytes_in += data.len() as u64;
        let pieces = match self.client.feed(data) {
            Ok(p) => p,
            Err(_) => {
                let _ = client.write_all(b"* BYE Line too long.\r\n");
                return Stop::Done(false);
            }
        };
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Piece::Raw(b) => out.extend_from_slice(&b),
                Piece::Command { tag, name, line, literal: false } if name == "LOGOUT" => {
                    let _ = line;
                    self.logout = Some(tag);
                    break;
                }
                Piece::Command { tag, name, literal: false, .. }
                    if matches!(name.as_str(), "STARTTLS" | "COMPRESS" | "UNAUTHENTICATE") =>
                {
                    self.answer(format!(
                        "{tag} BAD {name} is not available through this proxy.\r\n"
                    ));
                }
                Piece::Command { tag, name, literal: false, .. } if name == "CAPABILITY" => {
                    self.answer(format!(
                        "* CAPABILITY {}\r\n{tag} OK Capability completed.\r\n",
                        self.caps
                    ));
                }
                Piece::Command { tag, name, line, .. } => {
                    self.changed |= changes_state(&name);
                    out.extend_from_slice(&line);
                    self.pending.push(tag);
                }
            }
        }
        if !out.is_empty() && conn.relay_write(&out).is_err() {
            return Stop::Done(false);
        }
        Stop::No
    }

    /// Our own answer to the client, sent at the next response boundary.
    fn answer(&mut self, text: String) {
        self.inject.extend_from_slice(text.as_bytes());
    }
}
