//! The IndiMail-compatible wire format: request frames and reply framing. Pure code, no I/O.
//!
//! A request is one `write` of at most [`PIPE_BUF`] bytes:
//!
//! ```text
//! int32 (native endian) n | type byte | NUL | email | NUL | reply-FIFO path | NUL | ip | NUL
//!                          \__________________________ n bytes ___________________________/
//! ```
//!
//! A reply is a native-endian int32; for the kinds that carry a body it is the body's length
//! and that many bytes follow. `-1` is an error for every kind.
//!
//! The decoder does not trust the length: a frame is accepted only when its body has exactly
//! the shape above (four NULs, the last one closing the body). After a bad frame it finds the
//! next offset at which a well-formed frame begins, so one bad writer costs no other client
//! its request.

use std::fmt;

/// Linux's `PIPE_BUF`: the largest write a FIFO keeps atomic, and IndiMail's request limit.
pub const PIPE_BUF: usize = 4096;
/// Size of the length/status header of requests and replies.
pub const HEADER_LEN: usize = 4;
/// The largest request body: a whole frame fits in one atomic write.
pub const MAX_BODY: usize = PIPE_BUF - HEADER_LEN;
/// Smallest body: type byte and four NULs (`t\0\0p\0\0` needs a path, so 6 in practice).
const MIN_BODY: usize = 5;
/// The error reply, understood by IndiMail's client for every kind.
pub const ERROR_REPLY: [u8; 4] = (-1i32).to_ne_bytes();

/// One decoded request, borrowing from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The type byte (see [`crate::QueryKind::from_byte`]); unknown bytes are kept so the
    /// server can answer them with an error instead of silence.
    pub kind: u8,
    /// The email (or domain, or JSON payload for inlookup's own kinds).
    pub email: &'a [u8],
    /// Where the client waits for its reply.
    pub reply_path: &'a [u8],
    /// The client's IP for RELAY; may be empty.
    pub ip: &'a [u8],
}

/// Why bytes were not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The length was zero, negative or smaller than the smallest frame.
    BadLength(i32),
    /// The length was larger than a frame can be (`PIPE_BUF` minus the header).
    Oversized(i32),
    /// The body did not have the `type NUL email NUL path NUL ip NUL` shape.
    Malformed,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadLength(n) => write!(f, "bad request length {n}"),
            FrameError::Oversized(n) => write!(f, "request of {n} bytes exceeds {MAX_BODY}"),
            FrameError::Malformed => f.write_str("malformed request body"),
        }
    }
}

impl std::error::Error for FrameError {}

/// The result of looking at the front of a read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole frame; `used` bytes of the buffer belong to it.
    Frame { frame: Frame<'a>, used: usize },
    /// The buffer holds the start of what may be a frame: read more and call again.
    NeedMore,
    /// The front of the buffer is not a frame. Drop `skip` bytes: the next well-formed frame
    /// (or a possible start of one) begins there.
    Bad { error: FrameError, skip: usize },
}

/// What the body so far says about a candidate frame.
enum Shape {
    /// A complete, well-formed body.
    Whole,
    /// Consistent so far, but the claimed length is not all here yet.
    Partial,
    /// Cannot be a frame.
    Broken,
}

fn read_len(buf: &[u8]) -> i32 {
    i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]])
}

fn check_len(n: i32) -> Result<usize, FrameError> {
    if n < MIN_BODY as i32 {
        Err(FrameError::BadLength(n))
    } else if n as usize > MAX_BODY {
        Err(FrameError::Oversized(n))
    } else {
        Ok(n as usize)
    }
}

/// Checks the body (complete or not) of a frame whose length is `len`.
fn shape(body: &[u8], len: usize) -> Shape {
    let avail = &body[..body.len().min(len)];
    if avail.first() == Some(&0) || avail.get(1).is_some_and(|b| *b != 0) {
        return Shape::Broken;
    }
    let mut nuls = 0;
    for (i, b) in avail.iter().enumerate() {
        if *b == 0 {
            nuls += 1;
            // The 4th NUL must be the body's last byte; the path (between the 2nd and 3rd
            // NUL) must not be empty.
            if nuls == 3 && avail[i - 1] == 0 {
                return Shape::Broken;
            }
            if nuls == 4 {
                return if i == len - 1 { Shape::Whole } else { Shape::Broken };
            }
        }
    }
    if avail.len() == len {
        Shape::Broken
    } else {
        Shape::Partial
    }
}

fn split(body: &[u8]) -> Frame<'_> {
    let mut parts = body[2..body.len() - 1].split(|b| *b == 0);
    let email = parts.next().unwrap_or_default();
    let reply_path = parts.next().unwrap_or_default();
    let ip = parts.next().unwrap_or_default();
    Frame { kind: body[0], email, reply_path, ip }
}

/// Is a well-formed frame, or the start of one, at the front of `buf`?
fn plausible_start(buf: &[u8]) -> bool {
    if buf.len() < HEADER_LEN {
        // Too short to judge; a 0 first byte with a small length is still possible.
        return true;
    }
    match check_len(read_len(buf)) {
        Ok(len) => !matches!(shape(&buf[HEADER_LEN..], len), Shape::Broken),
        Err(_) => false,
    }
}

/// The offset, after `from`, at which a frame may begin; `buf.len()` if none.
fn resync(buf: &[u8], from: usize) -> usize {
    (from..buf.len()).find(|&k| plausible_start(&buf[k..])).unwrap_or(buf.len())
}

/// Decodes the frame at the front of `buf`.
///
/// ```
/// use inlookup_core::wire::{decode, encode_request, Decoded};
/// let bytes = encode_request(3, b"alice@example.com", b"/tmp/r1", b"").unwrap();
/// match decode(&bytes) {
///     Decoded::Frame { frame, used } => {
///         assert_eq!(frame.email, b"alice@example.com");
///         assert_eq!(used, bytes.len());
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < HEADER_LEN {
        return Decoded::NeedMore;
    }
    let len = match check_len(read_len(buf)) {
        Ok(len) => len,
        Err(error) => return Decoded::Bad { error, skip: resync(buf, 1) },
    };
    let body = &buf[HEADER_LEN..];
    match shape(body, len) {
        Shape::Whole => Decoded::Frame { frame: split(&body[..len]), used: HEADER_LEN + len },
        Shape::Partial => Decoded::NeedMore,
        Shape::Broken => Decoded::Bad { error: FrameError::Malformed, skip: resync(buf, 1) },
    }
}

/// Why a request could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// A field contains a NUL byte, which the format cannot carry.
    Nul(&'static str),
    /// The reply path is empty.
    NoReplyPath,
    /// The frame would be larger than one atomic FIFO write.
    TooLarge(usize),
    /// The type byte is 0.
    BadKind,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Nul(field) => write!(f, "the {field} contains a NUL byte"),
            EncodeError::NoReplyPath => f.write_str("the reply path is empty"),
            EncodeError::TooLarge(n) => {
                write!(f, "request of {n} bytes exceeds the FIFO's atomic write size {PIPE_BUF}")
            }
            EncodeError::BadKind => f.write_str("type byte 0 is not allowed"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Encodes one request frame (header included).
///
/// # Errors
/// A field with a NUL, an empty reply path, type byte 0, or a frame over [`PIPE_BUF`].
pub fn encode_request(
    kind: u8,
    email: &[u8],
    reply_path: &[u8],
    ip: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    if kind == 0 {
        return Err(EncodeError::BadKind);
    }
    for (name, field) in [("email", email), ("reply path", reply_path), ("ip", ip)] {
        if field.contains(&0) {
            return Err(EncodeError::Nul(name));
        }
    }
    if reply_path.is_empty() {
        return Err(EncodeError::NoReplyPath);
    }
    let body_len = 2 + email.len() + 1 + reply_path.len() + 1 + ip.len() + 1;
    if HEADER_LEN + body_len > PIPE_BUF {
        return Err(EncodeError::TooLarge(HEADER_LEN + body_len));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body_len);
    out.extend_from_slice(&(body_len as i32).to_ne_bytes());
    out.extend_from_slice(&[kind, 0]);
    out.extend_from_slice(email);
    out.push(0);
    out.extend_from_slice(reply_path);
    out.push(0);
    out.extend_from_slice(ip);
    out.push(0);
    Ok(out)
}

/// A bare-int reply (USER, RELAY, or `-1`).
pub fn int_reply(v: i32) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

/// A length-prefixed reply. `body` is sent as given (classic string replies include their
/// trailing NUL in it, as IndiMail's do).
pub fn body_reply(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&(body.len() as i32).to_ne_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads the int at the front of a reply.
pub fn reply_int(header: [u8; 4]) -> i32 {
    i32::from_ne_bytes(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(kind: u8, email: &str, path: &str, ip: &str) -> Vec<u8> {
        encode_request(kind, email.as_bytes(), path.as_bytes(), ip.as_bytes()).unwrap()
    }

    fn frames(mut buf: &[u8]) -> (Vec<(u8, Vec<u8>)>, usize) {
        let mut out = Vec::new();
        let mut bad = 0;
        loop {
            match decode(buf) {
                Decoded::Frame { frame, used } => {
                    out.push((frame.kind, frame.email.to_vec()));
                    buf = &buf[used..];
                }
                Decoded::Bad { skip, .. } => {
                    bad += 1;
                    buf = &buf[skip..];
                }
                Decoded::NeedMore => return (out, bad),
            }
        }
    }

    #[test]
    fn encodes_indimails_layout_byte_for_byte() {
        let b = req(3, "a@b", "/t/1", "");
        let mut want = 12i32.to_ne_bytes().to_vec();
        want.extend_from_slice(b"\x03\0a@b\0/t/1\0\0");
        assert_eq!(b, want);
        let b = req(2, "a@b", "/t/1", "10.0.0.1");
        assert!(b.ends_with(b"/t/1\x0010.0.0.1\0"));
    }

    #[test]
    fn decodes_every_field() {
        let b = req(2, "alice@example.com", "/tmp/x", "192.0.2.1");
        let Decoded::Frame { frame, used } = decode(&b) else { panic!() };
        assert_eq!(used, b.len());
        assert_eq!(frame.kind, 2);
        assert_eq!(frame.email, b"alice@example.com");
        assert_eq!(frame.reply_path, b"/tmp/x");
        assert_eq!(frame.ip, b"192.0.2.1");
    }

    #[test]
    fn empty_email_and_ip_are_allowed_by_the_codec() {
        let b = req(32, "", "/p", "");
        let Decoded::Frame { frame, .. } = decode(&b) else { panic!() };
        assert_eq!(frame.email, b"");
        assert_eq!(frame.ip, b"");
    }

    #[test]
    fn short_buffers_need_more() {
        let b = req(1, "alice@example.com", "/tmp/x", "");
        for cut in 0..b.len() {
            assert_eq!(decode(&b[..cut]), Decoded::NeedMore, "cut at {cut}");
        }
    }

    #[test]
    fn unknown_type_byte_still_decodes_so_it_can_be_answered() {
        let b = req(99, "x@y", "/p", "");
        let Decoded::Frame { frame, .. } = decode(&b) else { panic!() };
        assert_eq!(frame.kind, 99);
    }

    #[test]
    fn rejects_bad_lengths() {
        for n in [0i32, -1, -4096, 4] {
            let mut b = n.to_ne_bytes().to_vec();
            b.extend_from_slice(b"garbage");
            assert!(matches!(decode(&b), Decoded::Bad { error: FrameError::BadLength(_), .. }));
        }
        let mut b = 5000i32.to_ne_bytes().to_vec();
        b.extend_from_slice(&[1, 0, 0, 0]);
        assert!(matches!(decode(&b), Decoded::Bad { error: FrameError::Oversized(5000), .. }));
    }

    #[test]
    fn rejects_malformed_bodies() {
        let cases: [&[u8]; 6] = [
            b"\0\0a\0/p\0\0",     // type byte 0
            b"\x01xa\0/p\0\0",    // no NUL after the type
            b"\x01\0a\0\0\0",     // empty reply path
            b"\x01\0a\0/p\0\0\0", // five NULs
            b"\x01\0a\0/p\0\0x",  // does not end in its NUL
            b"\x01\0a\0/p\0ip",   // three NULs only
        ];
        for body in cases {
            let mut b = (body.len() as i32).to_ne_bytes().to_vec();
            b.extend_from_slice(body);
            assert!(
                matches!(decode(&b), Decoded::Bad { error: FrameError::Malformed, .. }),
                "{body:?}"
            );
        }
    }

    #[test]
    fn a_length_that_points_into_the_next_frame_is_caught_and_the_next_frame_kept() {
        let good = req(1, "bob@example.com", "/tmp/b", "");
        let mut liar = req(1, "eve@example.com", "/tmp/e", "");
        let lie = (liar.len() - 4 + 10) as i32;
        liar[..4].copy_from_slice(&lie.to_ne_bytes());
        let mut buf = liar.clone();
        buf.extend_from_slice(&good);
        let (ok, bad) = frames(&buf);
        assert_eq!(bad, 1);
        assert_eq!(ok, vec![(1, b"bob@example.com".to_vec())]);
    }

    #[test]
    fn a_too_short_length_is_caught_and_the_next_frame_kept() {
        let good = req(3, "bob@example.com", "/tmp/b", "");
        let mut liar = req(3, "eve@example.com", "/tmp/e", "");
        let lie = (liar.len() - 4 - 3) as i32;
        liar[..4].copy_from_slice(&lie.to_ne_bytes());
        let mut buf = liar;
        buf.extend_from_slice(&good);
        let (ok, bad) = frames(&buf);
        assert!(bad >= 1);
        assert_eq!(ok, vec![(3, b"bob@example.com".to_vec())]);
    }

    #[test]
    fn garbage_between_frames_costs_nobody_their_request() {
        let a = req(1, "a@x", "/tmp/a", "");
        let b = req(4, "b@x", "/tmp/b", "");
        let mut buf = a.clone();
        buf.extend_from_slice(b"\xff\xfe random junk \x00\x01\x02 more");
        buf.extend_from_slice(&b);
        let (ok, bad) = frames(&buf);
        assert!(bad >= 1);
        assert_eq!(ok, vec![(1, b"a@x".to_vec()), (4, b"b@x".to_vec())]);
    }

    #[test]
    fn encode_refuses_what_the_format_cannot_carry() {
        assert_eq!(encode_request(1, b"a\0b", b"/p", b""), Err(EncodeError::Nul("email")));
        assert_eq!(encode_request(1, b"a", b"", b""), Err(EncodeError::NoReplyPath));
        assert_eq!(encode_request(0, b"a", b"/p", b""), Err(EncodeError::BadKind));
        let big = vec![b'a'; PIPE_BUF];
        assert!(matches!(encode_request(1, &big, b"/p", b""), Err(EncodeError::TooLarge(_))));
        // The largest frame that fits is accepted and decodes.
        let email = vec![b'a'; PIPE_BUF - HEADER_LEN - 2 - 1 - 2 - 1 - 1];
        let b = encode_request(1, &email, b"/p", b"").unwrap();
        assert_eq!(b.len(), PIPE_BUF);
        assert!(matches!(decode(&b), Decoded::Frame { .. }));
    }

    #[test]
    fn replies_have_native_int_headers() {
        assert_eq!(int_reply(4), 4i32.to_ne_bytes().to_vec());
        assert_eq!(ERROR_REPLY.to_vec(), int_reply(-1));
        let r = body_reply(b"abc\0");
        assert_eq!(reply_int(r[..4].try_into().unwrap()), 4);
        assert_eq!(&r[4..], b"abc\0");
    }

    fn field() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(1u8..=255, 0..200)
    }

    proptest! {
        #[test]
        fn round_trip(kind in 1u8..=255, email in field(), path in proptest::collection::vec(1u8..=255, 1..200), ip in field()) {
            let b = encode_request(kind, &email, &path, &ip).unwrap();
            match decode(&b) {
                Decoded::Frame { frame, used } => {
                    prop_assert_eq!(used, b.len());
                    prop_assert_eq!(frame.kind, kind);
                    prop_assert_eq!(frame.email, &email[..]);
                    prop_assert_eq!(frame.reply_path, &path[..]);
                    prop_assert_eq!(frame.ip, &ip[..]);
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn any_bytes_never_panic_and_always_progress(junk in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut buf = &junk[..];
            loop {
                match decode(buf) {
                    Decoded::Frame { used, .. } => { prop_assert!(used > 0); buf = &buf[used..]; }
                    Decoded::Bad { skip, .. } => { prop_assert!(skip > 0); buf = &buf[skip..]; }
                    Decoded::NeedMore => break,
                }
            }
        }

        #[test]
        fn valid_frames_survive_junk_before_them(junk in proptest::collection::vec(any::<u8>(), 1..100), email in proptest::collection::vec(b'a'..=b'z', 1..40)) {
            // Junk then two good frames: at least the second always survives resync, and
            // every frame decoded is either one of ours or was made from junk bytes.
            let a = encode_request(1, &email, b"/tmp/a", b"").unwrap();
            let b = encode_request(3, &email, b"/tmp/b", b"").unwrap();
            let mut buf = junk.clone();
            buf.extend_from_slice(&a);
            buf.extend_from_slice(&b);
            let (ok, _) = frames(&buf);
            prop_assert!(ok.contains(&(3, email.clone())), "{:?}", ok);
        }
    }
}
