//! Target `frame`: the request decoder and its resync, as the server's read loop uses them.

use inlookup_core::wire::{self, Decoded, Frame, FrameError, HEADER_LEN, MAX_BODY, PIPE_BUF};

/// How many offsets at the front of a skipped run are checked to be no frame start (each
/// costs a decode, which resyncs itself; the last offset is checked too).
const SKIPPED_CHECKED: usize = 3;

/// Read sizes the chunked replay cycles through (a FIFO read returns whatever one or more
/// writers wrote: a byte, a frame, several frames, a whole pipe).
const CHUNKS: [usize; 9] = [1, 2, 3, 5, 8, 13, 64, 512, PIPE_BUF];

/// A decoded frame, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    kind: u8,
    email: Vec<u8>,
    reply_path: Vec<u8>,
    ip: Vec<u8>,
}

impl From<&Frame<'_>> for Owned {
    fn from(f: &Frame<'_>) -> Owned {
        Owned {
            kind: f.kind,
            email: f.email.to_vec(),
            reply_path: f.reply_path.to_vec(),
            ip: f.ip.to_vec(),
        }
    }
}

fn header(buf: &[u8]) -> Option<i32> {
    buf.get(..HEADER_LEN).map(|h| i32::from_ne_bytes([h[0], h[1], h[2], h[3]]))
}

/// Decodes `data` as one buffer, step by step, checking each step; returns the frames and
/// how many bytes are left as an incomplete frame.
///
/// - `Frame { used }`: `HEADER_LEN < used <= min(left, PIPE_BUF)`; the frame has a type byte
///   other than 0, a reply path, no NUL in a field, and re-encodes to exactly the `used`
///   bytes, which decode back to the same fields.
/// - `Bad { error, skip }`: `1 <= skip <= left`; the error matches the header (a length
///   below 5, above `MAX_BODY`, or a valid length and a malformed body); none of the first
///   skipped offsets is a frame start; and the next step is never `Bad` again (resync lands
///   on a frame, the start of one, or the end).
/// - `NeedMore`: what is left is less than a header, or a valid length with fewer bytes than
///   it announces, so less than `PIPE_BUF`: the server never holds more than one frame.
/// - The loop ends: at most one step per byte, plus the last.
fn decode_all(data: &[u8]) -> (Vec<Owned>, usize) {
    let mut buf = data;
    let mut frames = Vec::new();
    let mut after_bad = false;
    for _ in 0..=data.len() {
        match wire::decode(buf) {
            Decoded::Frame { frame, used } => {
                assert!(used > HEADER_LEN && used <= buf.len() && used <= PIPE_BUF, "used {used}");
                check_frame(&frame, &buf[..used]);
                frames.push(Owned::from(&frame));
                buf = &buf[used..];
                after_bad = false;
            }
            Decoded::Bad { error, skip } => {
                assert!(skip >= 1 && skip <= buf.len(), "skip {skip} of {}", buf.len());
                assert!(!after_bad, "resync stopped at an offset that is not a frame start");
                let Some(n) = header(buf) else {
                    panic!("Bad for {} bytes, less than a header", buf.len());
                };
                match error {
                    FrameError::BadLength(m) => assert!(m == n && n < 5, "{error:?} for {n}"),
                    FrameError::Oversized(m) => {
                        assert!(m == n && n > MAX_BODY as i32, "{error:?} for {n}")
                    }
                    FrameError::Malformed => {
                        assert!((5..=MAX_BODY as i32).contains(&n), "{error:?} for {n}")
                    }
                }
                let last = skip.min(SKIPPED_CHECKED);
                for k in (1..last).chain((skip > last).then_some(skip - 1)) {
                    // Only the bytes a frame at k could have: the same verdict, a shorter
                    // resync.
                    let window = &buf[k..buf.len().min(k + PIPE_BUF)];
                    assert!(
                        matches!(wire::decode(window), Decoded::Bad { .. }),
                        "offset {k} inside a skip of {skip} is a frame start"
                    );
                }
                buf = &buf[skip..];
                after_bad = true;
            }
            Decoded::NeedMore => {
                if let Some(n) = header(buf) {
                    assert!((5..=MAX_BODY as i32).contains(&n), "NeedMore with length {n}");
                    assert!(buf.len() < HEADER_LEN + n as usize, "NeedMore with {n} bytes here");
                }
                assert!(buf.len() < PIPE_BUF);
                return (frames, buf.len());
            }
        }
    }
    panic!("the decode loop did not end within {} steps", data.len() + 1);
}

/// A decoded frame is one `encode_request` makes, byte for byte.
fn check_frame(frame: &Frame<'_>, bytes: &[u8]) {
    assert_ne!(frame.kind, 0);
    assert!(!frame.reply_path.is_empty());
    for field in [frame.email, frame.reply_path, frame.ip] {
        assert!(!field.contains(&0), "a NUL in a field");
    }
    let again = wire::encode_request(frame.kind, frame.email, frame.reply_path, frame.ip);
    assert_eq!(again.as_deref(), Ok(bytes), "re-encoding gives other bytes");
    match wire::decode(bytes) {
        Decoded::Frame { frame: back, used } => {
            assert_eq!(used, bytes.len());
            assert_eq!(&back, frame);
        }
        other => panic!("a re-encoded frame decodes to {other:?}"),
    }
}

/// Feeds `data` to a buffer the way the server does (append a read, decode every whole
/// frame from the front, keep the rest), with read sizes cycling through [`CHUNKS`] from a
/// start the data picks. Checks that the buffer never holds a whole frame's worth after
/// serving, and returns the frames and the bytes left.
fn decode_chunked(data: &[u8]) -> (Vec<Owned>, usize) {
    let mut buf: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    let mut sizes = CHUNKS.iter().cycle().skip(usize::from(data.first().copied().unwrap_or(0)));
    let mut rest = data;
    while !rest.is_empty() {
        let n = sizes.next().copied().unwrap_or(1).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        let mut at = 0;
        loop {
            match wire::decode(&buf[at..]) {
                Decoded::Frame { frame, used } => {
                    frames.push(Owned::from(&frame));
                    at += used;
                }
                Decoded::Bad { skip, .. } => at += skip,
                Decoded::NeedMore => break,
            }
        }
        buf.drain(..at);
        assert!(buf.len() < PIPE_BUF, "{} bytes held after serving", buf.len());
    }
    (frames, buf.len())
}

/// Target `frame`: see [`decode_all`] and [`decode_chunked`]; read in any chunks, the same
/// bytes give the same frames and leave the same incomplete tail as read at once.
pub fn frame(data: &[u8]) {
    let whole = decode_all(data);
    let chunked = decode_chunked(data);
    assert_eq!(chunked, whole, "reading in chunks changed the frames");
}
