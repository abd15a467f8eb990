//! Lookups over TCP: the daemon's TCP_LISTEN in IndiMail's framing (byte for byte the FIFO's
//! replies, the same cache, TCP_ALLOW, timeoutread for slow senders), inlookup under
//! TCPREMOTEIP (one request on fd 0/1), the tcplookup relay, and inquery's TCP modes
//! (INQUERY_TCP, and fds 6/7 under TCPCLIENT) through inquerytest.

use crate::harness::*;
use inlookup_core::wire::encode_request;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static REPLY: AtomicUsize = AtomicUsize::new(0);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A daemon with TCP_LISTEN on a free loopback port, and that port.
fn tcp_daemon(db: &TestDb, opts: Opts) -> (Daemon, u16) {
    let port = free_port();
    let d = Daemon::start(db, opts.env("TCP_LISTEN", &format!("127.0.0.1:{port}")));
    (d, port)
}

/// IndiMail's framing over TCP, as its clients send it (path `socket`): all the bytes
/// that came back before the daemon closed.
fn ask_tcp(port: u16, kind: u8, email: &str, ip: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&encode_request(kind, email.as_bytes(), b"socket", ip.as_bytes()).unwrap())
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// The same question over the FIFO, by hand: the raw reply bytes.
fn ask_fifo(d: &Daemon, kind: u8, email: &str, ip: &str) -> Vec<u8> {
    let r = d.reply_fifo(&format!("r{}", REPLY.fetch_add(1, Ordering::SeqCst)));
    d.write_raw(&r.frame(kind, email, ip));
    r.read(Duration::from_secs(3))
}

const CLASSIC: [(u8, &str, &str); 10] = [
    (1, "alice@example.com", ""),
    (1, "nobody@example.com", ""),
    (2, "alice@example.com", "192.0.2.10"),
    (3, "alice@example.com", ""),
    (3, "nobody@example.com", ""),
    (4, "testuser@example.com", ""),
    (5, "sales@example.com", ""),
    (6, "example.com", ""),
    (7, "example.org", ""),
    (7, "example.net", ""),
];

#[test]
fn tcp_replies_are_byte_identical_to_fifo_replies_for_every_classic_kind() {
    let db = TestDb::new();
    let (d, port) = tcp_daemon(&db, Opts::default());
    for (kind, email, ip) in CLASSIC {
        // A miss over TCP (a worker answers the connection), a hit over the FIFO, a hit
        // over TCP (the I/O thread answers it).
        let miss = ask_tcp(port, kind, email, ip);
        let fifo = ask_fifo(&d, kind, email, ip);
        let hit = ask_tcp(port, kind, email, ip);
        assert!(miss.len() >= 4, "kind {kind} {email}: {miss:?}");
        assert_eq!(miss, fifo, "kind {kind} {email}: TCP miss vs FIFO");
        assert_eq!(hit, fifo, "kind {kind} {email}: TCP hit vs FIFO");
    }
    let st = d.client().stats().unwrap();
    assert_eq!(st.tcp_connections_total, 2 * CLASSIC.len() as u64);
    assert_eq!(st.tcp_connections, 0, "every connection was answered and closed");
    assert_eq!((st.tcp_refused, st.tcp_timed_out), (0, 0));
}

#[test]
fn a_hit_over_tcp_is_a_cache_hit_in_stats() {
    let db = TestDb::new();
    let (d, port) = tcp_daemon(&db, Opts::default());
    assert_eq!(ask_tcp(port, 1, "alice@example.com", ""), 0i32.to_ne_bytes());
    assert_eq!(ask_tcp(port, 1, "alice@example.com", ""), 0i32.to_ne_bytes());
    let st = d.client().stats().unwrap();
    let user = &st.kinds["user"];
    assert_eq!((user.requests, user.misses, user.hits), (2, 1, 1));
    assert_eq!(st.tcp_connections_total, 2);
}

#[test]
fn a_peer_outside_tcp_allow_is_closed_with_no_byte() {
    let db = TestDb::new();
    let (d, port) = tcp_daemon(&db, Opts::default().env("TCP_ALLOW", "127.0.0.2/32"));
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(&encode_request(1, b"alice@example.com", b"socket", b"").unwrap());
    let mut got = Vec::new();
    // Closed (or reset, when the request was already in its buffer): nothing either way.
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty(), "{got:?}");
    let st = d.client().stats().unwrap();
    assert_eq!((st.tcp_refused, st.tcp_connections_total), (1, 0));
    assert_eq!(st.kinds["user"].requests, 0, "the request was never read");
}

#[test]
fn a_half_frame_is_closed_after_timeoutread_and_delays_nobody() {
    let db = TestDb::new();
    let (d, port) = tcp_daemon(&db, Opts::default()); // timeoutread 2 s
    let frame = encode_request(1, b"alice@example.com", b"socket", b"").unwrap();
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(&frame[..7]).unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    // Other clients are answered while the slow one stalls: before its timeout closed it.
    assert_eq!(ask_tcp(port, 1, "alice@example.com", ""), 0i32.to_ne_bytes());
    assert_eq!(ask_fifo(&d, 1, "alice@example.com", ""), 0i32.to_ne_bytes());
    let st = d.client().stats().unwrap();
    assert_eq!((st.tcp_timed_out, st.tcp_connections), (0, 1), "the slow one still waits");
    slow.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let mut got = Vec::new();
    let _ = slow.read_to_end(&mut got);
    let after = started.elapsed();
    assert!(got.is_empty(), "{got:?}");
    assert!(after >= Duration::from_millis(1500), "closed at timeoutread, not before: {after:?}");
    let st = d.client().stats().unwrap();
    assert_eq!(st.tcp_timed_out, 1);
    assert_eq!(st.tcp_connections, 0);
}

/// `cmd` with the daemon's directories and this database, as a tcpserver service has them.
fn service_cmd(d: &Daemon, db: &TestDb, program: &str) -> Command {
    let mut c = Command::new(bin(program));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CONTROLDIR", &d.control)
        .env("FIFOTMPDIR", &d.tmp)
        .env("FIFO_MODE", "0660")
        .envs(db.mysql_env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs `c`, writes `input` to its stdin and closes it; exit code and stdout.
fn run_with_input(mut c: Command, input: &[u8]) -> (Option<i32>, Vec<u8>, String) {
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn inlookup_under_tcpremoteip_answers_one_request_on_stdin_as_the_daemon_does() {
    let db = TestDb::new();
    let (d, _port) = tcp_daemon(&db, Opts::default());
    for (kind, email, ip) in CLASSIC {
        let mut c = service_cmd(&d, &db, "inlookup");
        c.env("TCPREMOTEIP", "127.0.0.1");
        if is_root() {
            c.args(["--user", "nobody"]);
        }
        let frame = encode_request(kind, email.as_bytes(), b"socket", ip.as_bytes()).unwrap();
        let (code, out, err) = run_with_input(c, &frame);
        assert_eq!(code, Some(0), "kind {kind} {email}: {err}");
        assert_eq!(out, ask_fifo(&d, kind, email, ip), "kind {kind} {email}");
    }
    // Half a request: nothing written, a failure exit, after timeoutread (2 s here).
    let mut c = service_cmd(&d, &db, "inlookup");
    c.env("TCPREMOTEIP", "127.0.0.1");
    if is_root() {
        c.args(["--user", "nobody"]);
    }
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&[20, 0, 0, 0, 1, 0]).unwrap();
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(111));
    assert!(out.stdout.is_empty());
    assert!(t.elapsed() >= Duration::from_millis(1500), "{:?}", t.elapsed());
}

#[test]
fn tcplookup_relays_one_request_to_the_local_fifo_and_says_minus_one_without_a_daemon() {
    let db = TestDb::new();
    let (d, _port) = tcp_daemon(&db, Opts::default());
    let fifo = d.fifos[0].to_string_lossy().into_owned();
    for (kind, email, ip) in CLASSIC {
        let mut c = service_cmd(&d, &db, "tcplookup");
        c.env("INFIFO", &fifo).env("TCPREMOTEIP", "127.0.0.1");
        let frame = encode_request(kind, email.as_bytes(), b"socket", ip.as_bytes()).unwrap();
        let (code, out, err) = run_with_input(c, &frame);
        assert_eq!(code, Some(0), "kind {kind} {email}: {err}");
        assert_eq!(out, ask_fifo(&d, kind, email, ip), "kind {kind} {email}");
    }
    assert!(entries(&d.tmp).is_empty(), "tcplookup's reply FIFOs are gone: {:?}", entries(&d.tmp));
    // Instances found as inquery finds them: a relative INFIFO in INFIFODIR, no `.1`.
    let mut c = service_cmd(&d, &db, "tcplookup");
    c.env("INFIFO", d.fifos[0].file_name().unwrap()).env("INFIFODIR", &d.fifo_dir);
    let frame = encode_request(1, b"alice@example.com", b"socket", b"").unwrap();
    let (code, out, err) = run_with_input(c, &frame);
    assert_eq!((code, out), (Some(0), 0i32.to_ne_bytes().to_vec()), "{err}");
    // No daemon: -1 (an error to every IndiMail client) and exit 111.
    let mut c = service_cmd(&d, &db, "tcplookup");
    c.env("INFIFO", d.dir.join("no-such-fifo"));
    let (code, out, _) = run_with_input(c, &frame);
    assert_eq!((code, out), (Some(111), (-1i32).to_ne_bytes().to_vec()));
    // Garbage on stdin: nothing written, exit 100.
    let mut c = service_cmd(&d, &db, "tcplookup");
    c.env("INFIFO", &fifo);
    let (code, out, _) = run_with_input(c, &[0xff; 16]);
    assert_eq!((code, out.len()), (Some(100), 0));
}

/// inquerytest with no `-i`, so the inquery client reads its transport from the
/// environment; INFIFO names nothing, so only TCP can answer.
fn inquerytest_tcp(d: &Daemon, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(bin("inquerytest"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CONTROLDIR", &d.control)
        .env("FIFOTMPDIR", &d.tmp)
        .env("INFIFO", d.dir.join("no-such-fifo"))
        .envs(env.iter().copied())
        .args(["-q", "1", "testuser@example.com"]);
    c
}

#[test]
fn inquery_asks_over_tcp_with_inquery_tcp() {
    let db = TestDb::new();
    let (d, port) = tcp_daemon(&db, Opts::default());
    let addr = format!("127.0.0.1:{port}");
    let out = inquerytest_tcp(&d, &[("INQUERY_TCP", &addr)]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text, "testuser@example.com: active, all services enabled\n");
    assert_eq!(d.client().stats().unwrap().tcp_connections_total, 1);
    // Nothing listening: a failure, not a hang.
    let closed = format!("127.0.0.1:{}", free_port());
    let out = inquerytest_tcp(&d, &[("INQUERY_TCP", &closed)]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn inquery_under_tcpclient_writes_fd_7_and_reads_fd_6() {
    use std::os::fd::AsRawFd;
    let db = TestDb::new();
    let (d, port) = tcp_daemon(&db, Opts::default());
    // As ucspi-tcp's tcpclient does: the connection is the child's fds 6 and 7.
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let fd = sock.as_raw_fd();
    let mut c = inquerytest_tcp(&d, &[("TCPCLIENT", ""), ("TCPREMOTEIP", "127.0.0.1")]);
    // SAFETY: between fork and exec only dup2, which is async-signal-safe, is called.
    unsafe {
        c.pre_exec(move || {
            for to in [6, 7] {
                if libc::dup2(fd, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = c.output().unwrap();
    drop(sock);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text, "testuser@example.com: active, all services enabled\n");
    assert_eq!(d.client().stats().unwrap().tcp_connections_total, 1);
}

/// IndiMail's framing inside TLS, with rustls verifying the daemon against `ca`: the
/// reply's bytes, read until the daemon's close_notify.
fn ask_tls(port: u16, ca: &std::path::Path, kind: u8, email: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(&encode_request(kind, email.as_bytes(), b"socket", b"").unwrap()).unwrap();
    let mut out = Vec::new();
    tls.read_to_end(&mut out).expect("the reply, then a clean close_notify");
    out
}

/// A daemon whose TCP listener speaks TLS with this certificate and key, and its port.
fn tls_daemon(db: &TestDb, cert: &std::path::Path, key: &std::path::Path) -> (Daemon, u16) {
    let opts = Opts::default()
        .env("TCP_TLS_CERT", cert.to_str().unwrap())
        .env("TCP_TLS_KEY", key.to_str().unwrap());
    tcp_daemon(db, opts)
}

/// One request through `openssl s_client` trusting `ca` and checking the address: its exit
/// code, what it printed (the reply) and its stderr.
fn s_client(
    port: u16,
    ca: &std::path::Path,
    kind: u8,
    email: &str,
) -> (Option<i32>, Vec<u8>, String) {
    let mut c = Command::new("openssl");
    c.args(["s_client", "-quiet", "-verify_return_error", "-verify_ip", "127.0.0.1"])
        .arg("-CAfile")
        .arg(ca)
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_with_input(c, &encode_request(kind, email.as_bytes(), b"socket", b"").unwrap())
}

#[test]
fn tls_on_the_tcp_listener_gives_the_fifo_replies_to_rustls_and_to_openssl() {
    let db = TestDb::new();
    let (_files, ca, cert, key) = tls_files();
    let (d, port) = tls_daemon(&db, &cert, &key);
    for (kind, email, ip) in CLASSIC.iter().filter(|(_, _, ip)| ip.is_empty()) {
        let miss = ask_tls(port, &ca, *kind, email);
        let fifo = ask_fifo(&d, *kind, email, ip);
        assert!(miss.len() >= 4, "kind {kind} {email}: {miss:?}");
        assert_eq!(miss, fifo, "kind {kind} {email}: TLS miss vs FIFO");
        assert_eq!(ask_tls(port, &ca, *kind, email), fifo, "kind {kind} {email}: TLS hit");
    }
    // A TLS client nobody here wrote, verifying the certificate and the address.
    let (code, out, err) = s_client(port, &ca, 3, "alice@example.com");
    assert_eq!(code, Some(0), "openssl s_client: {err}");
    assert_eq!(out, ask_fifo(&d, 3, "alice@example.com", ""), "PWD through openssl");
    let st = d.client().stats().unwrap();
    assert_eq!(st.tcp_tls_failed, 0);
    assert_eq!(st.tcp_connections, 0, "every connection answered and closed");
}

#[test]
fn a_plain_request_or_an_untrusting_client_at_a_tls_listener_gets_no_answer() {
    let db = TestDb::new();
    let (_files, _ca, cert, key) = tls_files();
    let (_other, other_ca, _, _) = tls_files();
    let (d, port) = tls_daemon(&db, &cert, &key);
    // IndiMail's plain framing: not a TLS record; closed, after at most TLS's alert.
    let got = ask_tcp(port, 1, "alice@example.com", "");
    assert_ne!(got, 0i32.to_ne_bytes(), "no answer in the clear");
    assert!(got.is_empty() || got[0] == 0x15, "nothing, or a TLS alert record: {got:?}");
    // A client that trusts another CA only gives up on the certificate.
    let (code, out, err) = s_client(port, &other_ca, 1, "alice@example.com");
    assert_ne!(code, Some(0));
    assert!(err.contains("verify"), "openssl refused the certificate: {err}");
    assert!(out.is_empty(), "{out:?}");
    // The daemon sees the close in its own time: wait until no connection is open.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut st = d.client().stats().unwrap();
    while st.tcp_connections > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        st = d.client().stats().unwrap();
    }
    assert_eq!(st.tcp_tls_failed, 2, "both counted");
    assert_eq!(st.kinds["user"].requests, 0, "neither request was read");
    // The daemon still serves TLS clients.
    assert_eq!(st.tcp_connections, 0);
}

#[test]
fn a_tls_certificate_without_its_key_or_a_bad_key_stops_the_daemon_with_a_message() {
    let (files, _ca, cert, _key) = tls_files();
    let listen = format!("127.0.0.1:{}", free_port());
    let run = |env: &[(&str, &std::path::Path)]| {
        let d = Daemon::prepare(2, 2);
        let mut c = Command::new(bin("inlookup"));
        c.env("FIFOTMPDIR", &d.tmp)
            .env("CONTROLDIR", &d.control)
            .arg("-f")
            .arg(d.dir.join("fifo/infifo"))
            .env("TCP_LISTEN", &listen)
            .envs(env.iter().map(|(k, v)| (k, v)));
        if is_root() {
            c.args(["--user", "nobody"]);
        }
        let out = c.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(&[("TCP_TLS_CERT", &cert)]);
    assert_eq!(code, Some(100), "{err}");
    assert!(err.contains("TCP_TLS_KEY") && err.contains("private key"), "{err}");
    let bad = files.join("bad.pem");
    std::fs::write(&bad, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    let (code, err) = run(&[("TCP_TLS_CERT", &cert), ("TCP_TLS_KEY", &bad)]);
    assert_eq!(code, Some(111), "{err}");
    assert!(err.contains("TCP_TLS_CERT") && err.contains("bad.pem"), "names the key: {err}");
}

#[test]
fn a_plain_client_reaches_a_tls_listener_through_stunnels_client_mode() {
    let db = TestDb::new();
    let (files, ca, cert, key) = tls_files();
    let (d, port) = tls_daemon(&db, &cert, &key);
    let local = free_port();
    let conf = files.join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\n[inlookup]\nclient = yes\naccept = 127.0.0.1:{local}\n\
             connect = 127.0.0.1:{port}\nverifyChain = yes\nCAfile = {}\ncheckIP = 127.0.0.1\n",
            ca.display()
        ),
    )
    .unwrap();
    let mut stunnel = Command::new("stunnel4")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("stunnel4 (scripts/deps.sh stunnel)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", local)).is_err() {
        assert!(Instant::now() < deadline, "stunnel never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = d.client().stats().unwrap();
    let before = st.tcp_connections_total;
    // inquery's own TCP mode, unchanged, at stunnel's plain end.
    let addr = format!("127.0.0.1:{local}");
    let out = inquerytest_tcp(&d, &[("INQUERY_TCP", &addr)]).output().unwrap();
    let _ = stunnel.kill();
    let _ = stunnel.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text, "testuser@example.com: active, all services enabled\n");
    let st = d.client().stats().unwrap();
    assert!(st.tcp_connections_total > before, "it went to the TLS listener");
    assert_eq!(st.kinds["user"].requests, 1);
}
