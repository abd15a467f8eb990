//! Target `imap_response`: cutting an IMAP server's byte stream into responses with
//! `inlookup_imap::frame::Framer`, fed in chunks as reads return them.

use inlookup_imap::frame::{FrameError, Framer, Kind, Response};

/// Bytes at the front of the input that are settings, not stream: two for the framer's
/// limit, four for the read sizes.
const SETTINGS: usize = 6;

/// The framer's limit for the input: from 1 byte to 8 KiB, so that `TooLarge` is reachable
/// with inputs of libFuzzer's usual size (the daemon's is 512 KiB).
fn max_response(data: &[u8]) -> usize {
    1 + usize::from(u16::from_le_bytes([data[0], data[1]])) % 8192
}

/// What feeding the stream gave: the responses and how it ended.
#[derive(Debug, PartialEq)]
struct Run {
    responses: Vec<Response>,
    error: Option<FrameError>,
}

/// Feeds `stream` in reads of `sizes` (cycled), taking every response after each read
/// until the framer needs more or fails. Checks as it goes:
///
/// - the framer never holds more than the limit once it asked for more bytes, so never more
///   than the limit plus one read;
/// - every response is at most the limit, ends in CRLF, and the responses, in order, are
///   the stream's bytes from its start (nothing lost, reordered or invented);
/// - a response's kind is what its first line says (`+` continuation, `*` untagged, BYE
///   included, anything else tagged with that tag and status);
/// - after the framer asked for more, what it holds is the rest of the stream so far.
fn feed(stream: &[u8], sizes: &[usize], max: usize) -> Run {
    let mut f = Framer::new(max);
    let mut responses = Vec::new();
    let mut taken = 0;
    let mut pushed = 0;
    let mut sizes = sizes.iter().cycle();
    while pushed < stream.len() {
        let n = sizes.next().copied().unwrap_or(1).clamp(1, stream.len() - pushed);
        f.push(&stream[pushed..pushed + n]);
        pushed += n;
        assert!(f.buffered() <= max + n, "{} bytes held, limit {max}, read {n}", f.buffered());
        loop {
            match f.next_response() {
                Ok(Some(r)) => {
                    check_response(&r, max);
                    assert_eq!(
                        r.bytes[..],
                        stream[taken..taken + r.bytes.len()],
                        "a response that is not the next bytes of the stream"
                    );
                    taken += r.bytes.len();
                    responses.push(r);
                }
                Ok(None) => {
                    assert!(f.buffered() <= max, "{} bytes held, limit {max}", f.buffered());
                    assert_eq!(f.buffered(), pushed - taken, "bytes held are not the rest");
                    break;
                }
                Err(error) => return Run { responses, error: Some(error) },
            }
        }
    }
    Run { responses, error: None }
}

fn check_response(r: &Response, max: usize) {
    assert!(r.bytes.len() <= max, "a response of {} bytes, limit {max}", r.bytes.len());
    assert!(r.bytes.ends_with(b"\r\n"), "a response not ending in CRLF");
    let line = r.first_line();
    assert!(!line.contains(&b'\n'));
    let mut words = line.split(|b| *b == b' ');
    let first = words.next().unwrap_or_default();
    let second = words.next().unwrap_or_default();
    match &r.kind {
        Kind::Continuation => assert_eq!(first, b"+"),
        Kind::Untagged { bye } => {
            assert_eq!(first, b"*");
            assert_eq!(*bye, second.eq_ignore_ascii_case(b"BYE"));
        }
        Kind::Tagged { tag, status } => {
            assert!(!tag.is_empty() && tag[..] == *first && first != b"*" && first != b"+");
            let word = status.map(|s| format!("{s:?}").to_ascii_uppercase());
            let said =
                ["OK", "NO", "BAD"].into_iter().find(|w| second.eq_ignore_ascii_case(w.as_bytes()));
            assert_eq!(word.as_deref(), said, "status of {:?}", r.kind);
        }
    }
}

/// Target `imap_response`: bytes 0–1 choose the limit, bytes 2–5 four read sizes (1 to
/// 256), the rest is the server's stream. [`feed`]'s checks hold, and reading the stream in
/// those chunks gives the same responses as reading it at once, and fails if and only if
/// that fails (a cut may change which error is seen first, never what was framed: a
/// response is refused only for what its own bytes are).
pub fn imap_response(data: &[u8]) {
    if data.len() < SETTINGS {
        return;
    }
    let max = max_response(data);
    let sizes: Vec<usize> = data[2..SETTINGS].iter().map(|b| 1 + usize::from(*b)).collect();
    let stream = &data[SETTINGS..];
    let chunked = feed(stream, &sizes, max);
    let whole = feed(stream, &[stream.len().max(1)], max);
    assert_eq!(chunked.responses, whole.responses, "cuts changed the responses");
    assert_eq!(
        chunked.error.is_some(),
        whole.error.is_some(),
        "cuts changed whether the stream fails: {:?} vs {:?}",
        chunked.error,
        whole.error
    );
}
