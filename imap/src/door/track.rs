//! Keeping in step with both directions of a relayed IMAP connection without holding any
//! literal: the client's commands are cut into their first line (looked at: tag, name),
//! the lines after each literal and the literals themselves (passed on as they come); the
//! server's responses are scanned for their first line's head and the ends of responses.
//! So the door knows at every byte whether a command is in flight or a literal pending.

use crate::frame::literal_announcement;

/// The longest line (between literals) a client may send after login: a line is looked at
/// whole before it is passed on; literals are never held and have no limit.
pub const MAX_CLIENT_LINE: usize = 1 << 20;
/// How much of a server line's start is kept (tag, status and a little text).
const HEAD: usize = 128;
/// How much of a server line's end is kept (a literal announcement is shorter).
const TAIL: usize = 32;

/// A piece of the client's stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Bytes to pass on as they are: a literal's, a line after a literal, IDLE's DONE.
    Raw(Vec<u8>),
    /// A command's first line, with its CRLF.
    Command {
        /// The tag.
        tag: String,
        /// The command's name, upper case (`UID FETCH` gives `UID`).
        name: String,
        /// The whole line.
        line: Vec<u8>,
        /// The line ends by announcing a literal.
        literal: bool,
    },
}

/// A client line longer than [`MAX_CLIENT_LINE`].
#[derive(Debug, PartialEq, Eq)]
pub struct LineTooLong;

/// The client's direction.
#[derive(Debug, Default)]
pub struct ClientTrack {
    /// Literal bytes still to come.
    literal: u64,
    /// The next line continues the command (it follows a literal).
    cont: bool,
    /// A synchronizing literal is announced, and the server has not said go ahead.
    sync_wait: bool,
    /// The command whose lines are being sent.
    tag: String,
    /// IDLE was sent: the next line is its DONE.
    idle: bool,
    /// The line so far.
    line: Vec<u8>,
}

/// A line's text without its CRLF (or LF).
fn body(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

impl ClientTrack {
    /// Cuts the client's bytes into pieces, keeping any partial line for the next call.
    ///
    /// # Errors
    /// A line longer than [`MAX_CLIENT_LINE`].
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Piece>, LineTooLong> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < data.len() {
            if self.literal > 0 {
                let take = usize::try_from(self.literal).unwrap_or(usize::MAX).min(data.len() - i);
                out.push(Piece::Raw(data[i..i + take].to_vec()));
                self.literal -= take as u64;
                // A literal's first byte: the server has said go ahead (or it was LITERAL+).
                self.sync_wait = false;
                i += take;
                continue;
            }
            let Some(k) = data[i..].iter().position(|b| *b == b'\n') else {
                self.line.extend_from_slice(&data[i..]);
                if self.line.len() > MAX_CLIENT_LINE {
                    return Err(LineTooLong);
                }
                break;
            };
            self.line.extend_from_slice(&data[i..=i + k]);
            i += k + 1;
            if self.line.len() > MAX_CLIENT_LINE {
                return Err(LineTooLong);
            }
            let line = std::mem::take(&mut self.line);
            let text = body(&line);
            let literal = literal_announcement(text);
            if self.cont || self.idle {
                self.idle = false;
                out.push(Piece::Raw(line.clone()));
            } else {
                let mut words = text.splitn(3, |b| *b == b' ');
                let tag = String::from_utf8_lossy(words.next().unwrap_or_default()).into_owned();
                let name =
                    String::from_utf8_lossy(words.next().unwrap_or_default()).to_ascii_uppercase();
                self.idle = name == "IDLE" && literal.is_none();
                self.tag.clone_from(&tag);
                out.push(Piece::Command {
                    tag,
                    name,
                    line: line.clone(),
                    literal: literal.is_some(),
                });
            }
            match literal {
                Some((_, n)) => {
                    self.literal = n as u64;
                    self.cont = true;
                    self.sync_wait = !text.ends_with(b"+}") && n > 0;
                }
                None => {
                    self.cont = false;
                    self.sync_wait = false;
                }
            }
        }
        Ok(out)
    }

    /// The server completed command `tag`: a synchronizing literal it was asked for will not
    /// come, and an IDLE it refused needs no DONE.
    pub fn server_done(&mut self, tag: &str) {
        if self.tag != tag {
            return;
        }
        if self.sync_wait {
            self.literal = 0;
            self.cont = false;
            self.sync_wait = false;
        }
        self.idle = false;
    }

    /// Between commands: no line begun, no literal or line after one to come, no IDLE.
    pub fn in_step(&self) -> bool {
        self.literal == 0 && !self.cont && !self.idle && self.line.is_empty()
    }
}

/// The server's direction.
#[derive(Debug, Default)]
pub struct ServerTrack {
    /// Literal bytes still to come.
    literal: u64,
    /// The next line continues the response (it follows a literal).
    cont: bool,
    /// The start of the line so far.
    head: Vec<u8>,
    /// The start of the response's first line, once that line is done.
    first: Vec<u8>,
    /// The end of the line so far.
    tail: Vec<u8>,
}

/// A whole response: where it ends in the bytes fed, and its first line's start.
#[derive(Debug, PartialEq, Eq)]
pub struct Done {
    /// Offset just past the response in the bytes of this [`ServerTrack::feed`].
    pub end: usize,
    /// The first line's first bytes (its tag and status).
    pub head: Vec<u8>,
}

impl Done {
    /// A tagged completion's tag (`None` for `*` and `+` responses).
    pub fn tag(&self) -> Option<&str> {
        let w = self.head.split(|b| *b == b' ').next()?;
        let w = std::str::from_utf8(w).ok()?;
        (w != "*" && w != "+" && !w.is_empty()).then_some(w)
    }

    /// A continuation request (`+ …`).
    pub fn continuation(&self) -> bool {
        self.head.first() == Some(&b'+')
    }

    /// The status word after the tag, upper case.
    pub fn status(&self) -> String {
        let w = self.head.split(|b| *b == b' ').nth(1).unwrap_or_default();
        String::from_utf8_lossy(body(w)).to_ascii_uppercase()
    }
}

impl ServerTrack {
    fn absorb(&mut self, bytes: &[u8]) {
        let room = HEAD.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.tail.extend_from_slice(&bytes[bytes.len().saturating_sub(TAIL)..]);
        let extra = self.tail.len().saturating_sub(TAIL);
        self.tail.drain(..extra);
    }

    /// Scans the server's bytes; returns the responses they complete.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Done> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < data.len() {
            if self.literal > 0 {
                let take = usize::try_from(self.literal).unwrap_or(usize::MAX).min(data.len() - i);
                self.literal -= take as u64;
                i += take;
                continue;
            }
            let Some(k) = data[i..].iter().position(|b| *b == b'\n') else {
                self.absorb(&data[i..]);
                break;
            };
            self.absorb(&data[i..=i + k]);
            i += k + 1;
            if !self.cont {
                self.first = std::mem::take(&mut self.head);
            }
            self.head.clear();
            let tail = std::mem::take(&mut self.tail);
            match literal_announcement(body(&tail)) {
                Some((_, n)) => {
                    self.literal = n as u64;
                    self.cont = true;
                }
                None => {
                    self.cont = false;
                    out.push(Done { end: i, head: std::mem::take(&mut self.first) });
                }
            }
        }
        out
    }

    /// Between responses.
    pub fn at_boundary(&self) -> bool {
        self.literal == 0 && !self.cont && self.head.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &[Piece]) -> Vec<String> {
        p.iter()
            .map(|p| match p {
                Piece::Raw(b) => format!("raw {}", b.len()),
                Piece::Command { tag, name, .. } => format!("{tag} {name}"),
            })
            .collect()
    }

    #[test]
    fn client_literals_pass_in_pieces_and_keep_step() {
        let mut t = ClientTrack::default();
        let p = t.feed(b"a1 APPEND INBOX {10}\r\n01234").unwrap();
        assert_eq!(names(&p), ["a1 APPEND", "raw 5"]);
        assert!(!t.in_step());
        let p = t.feed(b"56789\r\na2 NO").unwrap();
        assert_eq!(names(&p), ["raw 5", "raw 2"]);
        assert!(!t.in_step(), "a line begun");
        let p = t.feed(b"OP\r\n").unwrap();
        assert_eq!(names(&p), ["a2 NOOP"]);
        assert!(t.in_step());
    }

    #[test]
    fn a_literal_holding_crlf_and_braces_is_not_a_line() {
        let mut t = ClientTrack::default();
        let p = t.feed(b"a APPEND X {8+}\r\nb LOGOUT\r\n").unwrap();
        assert_eq!(names(&p), ["a APPEND", "raw 8", "raw 2"]);
        assert!(t.in_step());
    }

    #[test]
    fn refused_sync_literal_and_idle() {
        let mut t = ClientTrack::default();
        t.feed(b"a APPEND X {100}\r\n").unwrap();
        assert!(!t.in_step());
        t.server_done("a");
        assert!(t.in_step());
        let p = t.feed(b"b IDLE\r\n").unwrap();
        assert_eq!(names(&p), ["b IDLE"]);
        assert!(!t.in_step());
        let p = t.feed(b"DONE\r\n").unwrap();
        assert_eq!(names(&p), ["raw 6"]);
        assert!(t.in_step());
    }

    #[test]
    fn client_bytes_cut_anywhere_pass_whole_and_in_order() {
        let whole: &[u8] =
            b"a1 LOGIN x y\r\na2 APPEND INBOX {11}\r\nb3 LOGOUT\r\n\r\na4 NOOP\r\na5 IDLE\r\nDONE\r\na6 LOGOUT\r\n";
        for cut in 0..whole.len() {
            let mut t = ClientTrack::default();
            let mut pieces = t.feed(&whole[..cut]).unwrap();
            pieces.extend(t.feed(&whole[cut..]).unwrap());
            let mut bytes = Vec::new();
            let mut tags = Vec::new();
            for p in &pieces {
                match p {
                    Piece::Raw(b) => bytes.extend_from_slice(b),
                    Piece::Command { tag, line, .. } => {
                        tags.push(tag.clone());
                        bytes.extend_from_slice(line);
                    }
                }
            }
            assert_eq!(bytes, whole, "cut {cut}");
            assert_eq!(
                tags,
                ["a1", "a2", "a4", "a5", "a6"],
                "cut {cut}: the literal's LOGOUT is data"
            );
            assert!(t.in_step(), "cut {cut}");
        }
    }

    #[test]
    fn long_client_line_is_an_error() {
        let mut t = ClientTrack::default();
        let big = vec![b'x'; MAX_CLIENT_LINE + 1];
        assert_eq!(t.feed(&big), Err(LineTooLong));
    }

    #[test]
    fn server_responses_with_literals_split_anywhere() {
        let whole: &[u8] = b"* 1 FETCH (BODY[] {11}\r\na3 OK {5}\r\n)\r\n+ go\r\na3 OK done\r\n";
        for cut in 0..whole.len() {
            let mut t = ServerTrack::default();
            let mut done = t.feed(&whole[..cut]);
            done.extend(t.feed(&whole[cut..]));
            let heads: Vec<_> =
                done.iter().map(|d| (d.tag().map(str::to_string), d.status())).collect();
            assert_eq!(heads.len(), 3, "cut {cut}");
            assert_eq!(heads[0].0, None);
            assert!(done[1].continuation());
            assert_eq!(heads[2], (Some("a3".to_string()), "OK".to_string()));
            assert!(t.at_boundary());
        }
    }

    #[test]
    fn server_mid_literal_is_not_a_boundary() {
        let mut t = ServerTrack::default();
        assert!(t.feed(b"* 1 FETCH (BODY[] {100}\r\nabc").is_empty());
        assert!(!t.at_boundary());
    }
}
