//! Bad input: each case, and what it gets. None may cost another client its request.

use crate::harness::{Daemon, Opts, TestDb};
use inquery::Lookup;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(2);
const SHORT: Duration = Duration::from_millis(300);

fn user_frame(r: &crate::harness::RawReply, email: &str) -> Vec<u8> {
    r.frame(1, email, "")
}

#[test]
fn unknown_type_gets_an_error_reply_not_silence() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let r = d.reply_fifo("unknown");
    d.write_raw(&r.frame(9, "alice@example.com", ""));
    assert_eq!(r.int(WAIT), Some(-1), "IndiMail sent nothing here; we send -1");
    assert!(d.log_text().contains("unknown query type 9"));
    assert_eq!(d.client().stats().unwrap().bad_requests, 1);
}

#[test]
fn a_malformed_frame_between_two_good_ones_costs_them_nothing() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let (a, b) = (d.reply_fifo("a"), d.reply_fifo("b"));
    let mut bytes = user_frame(&a, "testuser@example.com");
    bytes.extend_from_slice(&40i32.to_ne_bytes());
    bytes.extend_from_slice(b"\x01this is not a frame at all, no nuls....");
    bytes.extend_from_slice(&user_frame(&b, "nobody@example.com"));
    d.write_raw(&bytes);
    assert_eq!(a.int(WAIT), Some(0));
    assert_eq!(b.int(WAIT), Some(1));
    assert!(d.client().stats().unwrap().bad_frames >= 1);
    assert!(d.log_text().contains("malformed request body"));
}

#[test]
fn a_lying_length_does_not_swallow_the_next_clients_frame() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let (liar, honest) = (d.reply_fifo("liar"), d.reply_fifo("honest"));
    let mut bad = user_frame(&liar, "alice@example.com");
    let lie = (bad.len() - 4 + 30) as i32; // claims 30 bytes of the next frame
    bad[..4].copy_from_slice(&lie.to_ne_bytes());
    let mut bytes = bad;
    bytes.extend_from_slice(&user_frame(&honest, "olduser@example.com"));
    d.write_raw(&bytes);
    assert_eq!(honest.int(WAIT), Some(2));
    assert_eq!(liar.int(SHORT), None, "a frame that is not well-formed gets no reply");
}

#[test]
fn an_oversized_length_is_dropped_and_the_next_frame_served() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let ok = d.reply_fifo("ok");
    let mut bytes = 1_000_000i32.to_ne_bytes().to_vec();
    bytes.extend_from_slice(&[b'x'; 100]);
    bytes.extend_from_slice(&user_frame(&ok, "testuser@example.com"));
    d.write_raw(&bytes);
    assert_eq!(ok.int(WAIT), Some(0));
    assert!(d.log_text().contains("exceeds"), "{}", d.log_text());
}

#[test]
fn a_truncated_frame_is_dropped_after_timeoutread_and_later_requests_are_served() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let cut = d.reply_fifo("cut");
    let frame = user_frame(&cut, "alice@example.com");
    d.write_raw(&frame[..frame.len() - 5]);
    // Control file timeoutread is 2 s in the harness.
    std::thread::sleep(Duration::from_millis(2600));
    assert_eq!(cut.int(SHORT), None);
    assert!(d.log_text().contains("incomplete request"), "{}", d.log_text());
    let ok = d.reply_fifo("ok");
    d.write_raw(&user_frame(&ok, "testuser@example.com"));
    assert_eq!(ok.int(WAIT), Some(0));
}

#[test]
fn relay_without_ip_and_non_utf8_emails_get_error_replies() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let r = d.reply_fifo("relay");
    d.write_raw(&r.frame(2, "alice@example.com", ""));
    assert_eq!(r.int(WAIT), Some(-1));
    let r2 = d.reply_fifo("utf8");
    let mut frame = r2.frame(1, "xx@example.com", "");
    frame[6] = 0xff; // inside the email
    d.write_raw(&frame);
    assert_eq!(r2.int(WAIT), Some(-1));
    assert_eq!(d.client().stats().unwrap().bad_requests, 2);
}

#[test]
fn reply_paths_outside_fifotmpdir_symlinks_and_non_fifos_are_never_written() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    // 1. A FIFO outside FIFOTMPDIR, with a reader waiting: refused, nothing written.
    let outside = crate::harness::RawReply::new(d.dir.join("outside-fifo"));
    d.write_raw(&outside.frame(1, "testuser@example.com", ""));
    // 2. A regular file inside FIFOTMPDIR: refused, untouched.
    let file = d.tmp.join("victim");
    std::fs::write(&file, b"precious").unwrap();
    // Writable by the daemon's user, so only the FIFO check stands in the way.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let f2 = inlookup_core::wire::encode_request(
        1,
        b"testuser@example.com",
        file.as_os_str().as_bytes(),
        b"",
    )
    .unwrap();
    d.write_raw(&f2);
    // 3. A symlink inside FIFOTMPDIR to a FIFO outside: refused.
    let link = d.tmp.join("link");
    std::os::unix::fs::symlink(&outside.path, &link).unwrap();
    let f3 = inlookup_core::wire::encode_request(
        1,
        b"testuser@example.com",
        link.as_os_str().as_bytes(),
        b"",
    )
    .unwrap();
    d.write_raw(&f3);
    // 4. A `..` path that leaves FIFOTMPDIR: refused.
    let sneaky = format!("{}/../outside-fifo", d.tmp.display());
    d.write_raw(
        &inlookup_core::wire::encode_request(1, b"testuser@example.com", sneaky.as_bytes(), b"")
            .unwrap(),
    );
    // A good request after them all is still answered.
    let ok = d.reply_fifo("ok");
    d.write_raw(&ok.frame(1, "testuser@example.com", ""));
    assert_eq!(ok.int(WAIT), Some(0));
    assert_eq!(outside.int(SHORT), None, "nothing reached the outside FIFO");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    assert!(outside.path.exists(), "nothing outside was removed");
    let s = d.client().stats().unwrap();
    assert_eq!(s.refused_reply_paths, 4, "{}", d.log_text());
    assert!(d.log_text().contains("not in FIFOTMPDIR"));
    assert!(d.log_text().contains("not a FIFO"));
    assert!(d.log_text().contains("symbolic link"));
}

#[test]
fn a_client_that_vanished_costs_nothing_but_a_debug_line() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    // A request whose reply FIFO has no reader any more (the client gave up).
    let gone = d.tmp.join("gone");
    nix::unistd::mkfifo(&gone, nix::sys::stat::Mode::from_bits_truncate(0o660)).unwrap();
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &gone,
        nix::sys::stat::Mode::from_bits_truncate(0o660),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .unwrap();
    let f = inlookup_core::wire::encode_request(
        3,
        b"alice@example.com",
        gone.as_os_str().as_bytes(),
        b"",
    )
    .unwrap();
    d.write_raw(&f);
    // And one whose FIFO was removed.
    let f = inlookup_core::wire::encode_request(
        3,
        b"alice@example.com",
        d.tmp.join("never-made").as_os_str().as_bytes(),
        b"",
    )
    .unwrap();
    d.write_raw(&f);
    let c = d.client();
    assert!(c.passwd("alice@example.com").unwrap().is_some());
    let s = c.stats().unwrap();
    assert_eq!(s.vanished_clients, 2);
    assert_eq!(s.refused_reply_paths, 0);
    assert!(!gone.exists(), "the abandoned FIFO is cleaned up");
    assert!(d.log_text().contains("client gone"));
    assert!(!d.log_text().contains("warn: reply"), "no warning for a vanished client");
}

#[test]
fn client_side_checks_refuse_what_cannot_be_sent() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let c = d.client();
    let huge = "a".repeat(5000);
    assert!(matches!(c.passwd(&huge), Err(inquery::Error::BadArgument(_))));
    assert!(matches!(c.passwd("a\0b"), Err(inquery::Error::BadArgument(_))));
    let before = std::fs::read_dir(&d.tmp).unwrap().count();
    assert_eq!(before, 0, "refused requests leave no reply FIFO behind");
}
