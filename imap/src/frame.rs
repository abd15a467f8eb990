//! Framing the IMAP server's responses exactly: where one response ends and the next begins.
//!
//! A response is one line ending in CRLF, except that a line of a *data* response may end
//! in a literal announcement `{n}`: then exactly `n` bytes follow (anything at all, CRLF
//! included) and the response goes on with another line. Status responses (`* OK`,
//! `* NO`, `* BAD`, `* BYE`, `* PREAUTH`, every tagged completion) and continuation
//! requests (`+ …`) carry free text, which may end in `{5}` without announcing anything,
//! so a literal is honoured only in data responses (`* 3 FETCH …`, `* LIST …`). A line
//! is never split at a lone LF: that is a framing error, as is a line or a response over
//! its limit. Incomplete input is not an error: [`Framer::next_response`] says "need more".
//!
//! The framer never looks inside a literal, so a message body that contains
//! `\r\na1 OK done\r\n` cannot end a response early (imapproxy's desync).

use inlookup_core::admin::ImapStatus;
use std::fmt;

/// The biggest line (between CRLFs, literals apart) accepted from a server.
pub const MAX_LINE: usize = 64 * 1024;

/// What a response is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `* …`: untagged data or status. `bye` is true for `* BYE`.
    Untagged {
        /// The server is closing the connection.
        bye: bool,
    },
    /// `+ …`: the server waits for a literal's bytes (or an authentication step).
    Continuation,
    /// `tag STATUS text`: the completion of the command with that tag. `status` is `None`
    /// when the word after the tag is not OK, NO or BAD (out of step).
    Tagged {
        /// The tag as sent.
        tag: Vec<u8>,
        /// OK, NO or BAD.
        status: Option<ImapStatus>,
    },
}

/// One whole response: every byte of it, final CRLF and literals included.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// The bytes, exactly as the server sent them.
    pub bytes: Vec<u8>,
    /// What it is.
    pub kind: Kind,
}

impl fmt::Debug for Response {
    /// Never shows the bytes: they may hold a message body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Response({:?}, {} bytes)", self.kind, self.bytes.len())
    }
}

impl Response {
    /// The first line without its CRLF (a literal's announcement included).
    pub fn first_line(&self) -> &[u8] {
        let end = self.bytes.windows(2).position(|w| w == b"\r\n").unwrap_or(self.bytes.len());
        &self.bytes[..end]
    }

    /// For a status response or tagged completion: the text after the status word
    /// (`[CAPABILITY …] Logged in`), lossily decoded.
    pub fn text(&self) -> String {
        let line = self.first_line();
        let mut it = line.splitn(3, |b| *b == b' ');
        let (_tag, _status) = (it.next(), it.next());
        String::from_utf8_lossy(it.next().unwrap_or_default()).into_owned()
    }

    /// The length of the first token (the tag, `*` or `+`).
    pub fn tag_len(&self) -> usize {
        self.bytes.iter().position(|b| *b == b' ' || *b == b'\r').unwrap_or(self.bytes.len())
    }
}

/// Why the server's bytes cannot be framed. The connection is out of step: close it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A LF without the CR before it (or an empty line).
    BareLf,
    /// A line longer than [`MAX_LINE`].
    LineTooLong,
    /// A response larger than the framer's limit.
    TooLarge,
    /// A tagged response with an empty tag (the line began with a space).
    EmptyTag,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BareLf => f.write_str("a line ended in LF without CR"),
            FrameError::LineTooLong => write!(f, "a response line longer than {MAX_LINE} bytes"),
            FrameError::TooLarge => f.write_str("a response larger than the limit"),
            FrameError::EmptyTag => f.write_str("a response line beginning with a space"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Cuts a byte stream into responses. Feed it with [`Framer::push`], take responses with
/// [`Framer::next_response`].
///
/// ```
/// use inlookup_imap::frame::{Framer, Kind};
/// let mut f = Framer::new(1 << 20);
/// f.push(b"* 1 FETCH (BODY[] {7}\r\nA\r\nB OK)\r\na1 OK done\r\n");
/// let fetch = f.next_response().unwrap().unwrap();
/// assert_eq!(fetch.bytes, b"* 1 FETCH (BODY[] {7}\r\nA\r\nB OK)\r\n");
/// let done = f.next_response().unwrap().unwrap();
/// assert!(matches!(done.kind, Kind::Tagged { .. }));
/// assert!(f.next_response().unwrap().is_none());
/// ```
#[derive(Debug)]
pub struct Framer {
    /// Bytes received and not yet returned; the current response starts at 0.
    buf: Vec<u8>,
    /// Bytes before this (in the current response) are framed already.
    at: usize,
    /// Where the current line begins (after the last literal).
    line_start: usize,
    /// Literal bytes still to come before `line_start`.
    literal: usize,
    /// The current response's kind and whether it may carry literals, once its first line
    /// is complete.
    first: Option<(Kind, bool)>,
    /// The largest response accepted.
    max_response: usize,
}

impl Framer {
    /// A framer that refuses responses over `max_response` bytes.
    pub fn new(max_response: usize) -> Framer {
        Framer { buf: Vec::new(), at: 0, line_start: 0, literal: 0, first: None, max_response }
    }

    /// Adds bytes read from the server.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that are not part of a returned response.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole response, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// The bytes cannot be IMAP responses ([`FrameError`]): the stream is out of step.
    pub fn next_response(&mut self) -> Result<Option<Response>, FrameError> {
        loop {
            if self.literal > 0 {
                let take = (self.buf.len() - self.at).min(self.literal);
                self.at += take;
                self.literal -= take;
                if self.literal > 0 {
                    return Ok(None);
                }
            }
            let Some(i) = self.buf[self.at..].iter().position(|b| *b == b'\n') else {
                self.at = self.buf.len();
                if self.at - self.line_start > MAX_LINE + 1 {
                    return Err(FrameError::LineTooLong);
                }
                if self.at > self.max_response {
                    return Err(FrameError::TooLarge);
                }
                return Ok(None);
            };
            let lf = self.at + i;
            if lf == self.line_start || self.buf[lf - 1] != b'\r' {
                return Err(FrameError::BareLf);
            }
            let line = &self.buf[self.line_start..lf - 1];
            if line.len() > MAX_LINE {
                return Err(FrameError::LineTooLong);
            }
            if self.first.is_none() {
                self.first = Some(classify(line)?);
            }
            let literals = self.first.as_ref().is_some_and(|(_, l)| *l);
            let announced = if literals { literal_len(line) } else { None };
            self.at = lf + 1;
            if self.at > self.max_response {
                return Err(FrameError::TooLarge);
            }
            if let Some(n) = announced {
                if n > self.max_response.saturating_sub(self.at) {
                    return Err(FrameError::TooLarge);
                }
                self.literal = n;
                self.line_start = self.at + n;
                continue;
            }
            let bytes: Vec<u8> = self.buf.drain(..self.at).collect();
            let (kind, _) = self.first.take().unwrap_or((Kind::Untagged { bye: false }, false));
            self.at = 0;
            self.line_start = 0;
            return Ok(Some(Response { bytes, kind }));
        }
    }
}

fn word_is(w: &[u8], s: &str) -> bool {
    w.eq_ignore_ascii_case(s.as_bytes())
}

/// A first line's kind, and whether the response may carry literals.
fn classify(line: &[u8]) -> Result<(Kind, bool), FrameError> {
    let mut words = line.split(|b| *b == b' ');
    let first = words.next().unwrap_or_default();
    let second = words.next().unwrap_or_default();
    match first {
        b"*" => {
            let status = ["OK", "NO", "BAD", "BYE", "PREAUTH"].iter().any(|s| word_is(second, s));
            Ok((Kind::Untagged { bye: word_is(second, "BYE") }, !status))
        }
        b"+" => Ok((Kind::Continuation, false)),
        b"" => Err(FrameError::EmptyTag),
        tag => {
            let status = if word_is(second, "OK") {
                Some(ImapStatus::Ok)
            } else if word_is(second, "NO") {
                Some(ImapStatus::No)
            } else if word_is(second, "BAD") {
                Some(ImapStatus::Bad)
            } else {
                None
            };
            Ok((Kind::Tagged { tag: tag.to_vec(), status }, false))
        }
    }
}

/// The length announced by a line ending in `{n}` (or `{n+}`), if it does.
fn literal_len(line: &[u8]) -> Option<usize> {
    literal_announcement(line).map(|(_, n)| n)
}

/// A literal announcement at the end of `line` (`{n}`, `{n+}`, `~{n}`): where its `{` is,
/// and n. Shared with the caller's commands ([`crate::command::parse`]).
pub(crate) fn literal_announcement(line: &[u8]) -> Option<(usize, usize)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((open, std::str::from_utf8(digits).ok()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(input: &[u8]) -> Result<Vec<Response>, FrameError> {
        let mut f = Framer::new(1 << 20);
        f.push(input);
        let mut out = Vec::new();
        while let Some(r) = f.next_response()? {
            out.push(r);
        }
        assert_eq!(f.buffered(), 0, "left over");
        Ok(out)
    }

    fn tagged(r: &Response) -> (&[u8], Option<ImapStatus>) {
        match &r.kind {
            Kind::Tagged { tag, status } => (tag, *status),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_literal_with_crlf_and_a_fake_completion_inside_is_one_response() {
        let body = b"Subject: x\r\n\r\na1 OK FETCH completed\r\n* BYE\r\n";
        let mut input = format!("* 1 FETCH (UID 7 BODY[] {{{}}}\r\n", body.len()).into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(b" FLAGS (\\Seen))\r\na1 OK FETCH completed.\r\n");
        let rs = all(&input).unwrap();
        assert_eq!(rs.len(), 2);
        assert!(rs[0].bytes.ends_with(b"(\\Seen))\r\n"));
        assert_eq!(rs[0].kind, Kind::Untagged { bye: false });
        assert_eq!(tagged(&rs[1]), (&b"a1"[..], Some(ImapStatus::Ok)));
        assert_eq!(rs[1].text(), "FETCH completed.");
    }

    #[test]
    fn several_literals_and_an_empty_one_in_one_response() {
        let input =
            b"* 2 FETCH (BODY[1] {3}\r\nabc BODY[2] {0}\r\n BODY[3] {2}\r\n\r\n)\r\nx OK\r\n";
        let rs = all(input).unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].bytes.len(), input.len() - b"x OK\r\n".len());
        assert_eq!(rs[1].text(), "");
    }

    #[test]
    fn status_text_ending_in_braces_announces_no_literal() {
        let rs = all(b"* OK see {5}\r\na NO try {3}\r\n+ go on {2}\r\n* BYE bye {1}\r\n").unwrap();
        assert_eq!(rs.len(), 4);
        assert_eq!(rs[2].kind, Kind::Continuation);
        assert_eq!(rs[3].kind, Kind::Untagged { bye: true });
        assert_eq!(tagged(&rs[1]).1, Some(ImapStatus::No));
    }

    #[test]
    fn split_reads_give_the_same_responses_at_every_cut() {
        let input: &[u8] =
            b"* OK [CAPABILITY IMAP4rev1] hi\r\n* 1 FETCH (BODY[] {5}\r\na\r\nb\r)\r\n+ Ready\r\nt1 BAD no\r\n";
        let whole = all(input).unwrap();
        for cut in 0..=input.len() {
            for cut2 in cut..=input.len() {
                let mut f = Framer::new(1 << 20);
                let mut got = Vec::new();
                for part in [&input[..cut], &input[cut..cut2], &input[cut2..]] {
                    f.push(part);
                    while let Some(r) = f.next_response().unwrap() {
                        got.push(r);
                    }
                }
                assert_eq!(got, whole, "cuts at {cut} and {cut2}");
            }
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_guess() {
        assert_eq!(all(b"* OK hi\n").unwrap_err(), FrameError::BareLf);
        assert_eq!(all(b"\r\n").unwrap_err(), FrameError::EmptyTag);
        assert_eq!(all(b"\n").unwrap_err(), FrameError::BareLf);
        assert_eq!(all(b" OK x\r\n").unwrap_err(), FrameError::EmptyTag);
        let long = vec![b'a'; MAX_LINE + 10];
        let mut f = Framer::new(1 << 20);
        f.push(&long);
        assert_eq!(f.next_response().unwrap_err(), FrameError::LineTooLong);
        let mut f = Framer::new(100);
        f.push(b"* 1 FETCH (BODY[] {1000}\r\n");
        assert_eq!(f.next_response().unwrap_err(), FrameError::TooLarge);
        // A tagged line whose second word is no status is framed, with no status.
        let rs = all(b"a1 FETCH x\r\n").unwrap();
        assert_eq!(tagged(&rs[0]).1, None);
    }

    #[test]
    fn an_incomplete_literal_waits() {
        let mut f = Framer::new(1 << 20);
        f.push(b"* 1 FETCH (BODY[] {10}\r\n12345");
        assert_eq!(f.next_response().unwrap(), None);
        f.push(b"67890)\r\n");
        assert_eq!(f.next_response().unwrap().unwrap().bytes.len(), 24 + 10 + 3);
    }

    #[test]
    fn literal_announcements() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {12}"), Some(12));
        assert_eq!(literal_len(b"x {12+}"), Some(12));
        assert_eq!(literal_len(b"x ~{3}"), Some(3));
        assert_eq!(literal_len(b"x {}"), None);
        assert_eq!(literal_len(b"x {1a}"), None);
        assert_eq!(literal_len(b"x {99999999999999999999}"), None);
        assert_eq!(literal_len(b"x 12}"), None);
    }

    /// A response made of parts: lines without CR/LF and literals of anything.
    fn arb_response() -> impl Strategy<Value = Vec<u8>> {
        let text = proptest::collection::vec(
            prop::sample::select(b"abc {}()[]\"\\*+0123456789OKNOBAD".to_vec()),
            0..12,
        );
        let literal = proptest::collection::vec(any::<u8>(), 0..40);
        (
            prop::sample::select(vec![
                "* 1 FETCH",
                "* LIST",
                "* OK",
                "* BYE",
                "+",
                "a1 OK",
                "t NO",
            ]),
            proptest::collection::vec((text, literal), 0..4),
            proptest::collection::vec(
                prop::sample::select(b"abc ()[]\"\\*+0123456789".to_vec()),
                0..12,
            ),
        )
            .prop_map(|(head, parts, tail)| {
                let data = head.starts_with("* 1") || head.starts_with("* LIST");
                let mut out = head.as_bytes().to_vec();
                for (text, lit) in parts {
                    out.push(b' ');
                    out.extend(text.iter().filter(|b| **b != b'{' && **b != b'}'));
                    if data {
                        out.extend(format!(" {{{}}}\r\n", lit.len()).bytes());
                        out.extend(&lit);
                    }
                }
                out.push(b' ');
                // A tail ending in `}` could be read as a literal announcement.
                out.extend(tail.iter().filter(|b| **b != b'}'));
                out.extend(b"\r\n");
                out
            })
    }

    proptest! {
        /// Whatever the responses hold and however the stream is cut, the framer returns
        /// exactly the responses that were sent.
        #[test]
        fn frames_what_was_sent(
            resps in proptest::collection::vec(arb_response(), 1..6),
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let stream: Vec<u8> = resps.concat();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut f = Framer::new(1 << 20);
            let mut got = Vec::new();
            let mut from = 0;
            for c in cuts.into_iter().chain([stream.len()]) {
                f.push(&stream[from..c]);
                from = c;
                while let Some(r) = f.next_response().unwrap() {
                    got.push(r.bytes);
                }
            }
            prop_assert_eq!(got, resps);
            prop_assert_eq!(f.buffered(), 0);
        }

        /// Arbitrary bytes never panic and never produce more bytes than went in.
        #[test]
        fn garbage_never_panics(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut f = Framer::new(1 << 16);
            f.push(&input);
            let mut n = 0;
            while let Ok(Some(r)) = f.next_response() {
                n += r.bytes.len();
                prop_assert!(r.bytes.ends_with(b"\r\n"));
            }
            prop_assert!(n <= input.len());
        }
    }
}
