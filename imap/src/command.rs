//! A caller's command, checked and cut where the server must be heard before the rest is
//! sent: one IMAP command with the caller's tag, optional literals (`{n}` CRLF, then n
//! bytes), and nothing after its end. Also the LOGIN command built with quoting or
//! literals, so no password can break out of its argument.

use crate::frame::literal_announcement;
use std::fmt;

/// Commands a caller may not send through a kept session: they would log in or out
/// behind the connection table's back, change the stream (TLS, compression), or wait for input or
/// send responses the proxy cannot pair with a command.
pub const REFUSED: [&str; 8] =
    ["LOGIN", "AUTHENTICATE", "LOGOUT", "STARTTLS", "COMPRESS", "IDLE", "NOTIFY", "UNAUTHENTICATE"];

/// One piece of a command: a line to send, then (for all but the last) a literal to send
/// once the server has asked for it with a continuation request.
#[derive(Clone, PartialEq, Eq)]
pub struct Segment {
    /// The line, ending in `{n}` CRLF before a literal or in CRLF at the end. The first
    /// segment's line holds everything after the tag (the tag is the connection's own).
    pub line: Vec<u8>,
    /// The literal's bytes.
    pub literal: Option<Vec<u8>>,
}

impl fmt::Debug for Segment {
    /// Sizes only: a segment may hold a password or a message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Segment({} bytes, literal {:?})",
            self.line.len(),
            self.literal.as_ref().map(Vec::len)
        )
    }
}

/// A command ready to send.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    /// The caller's tag, put back on the tagged completion.
    pub tag: String,
    /// The command name in upper case (`SELECT`, `UID`), for logs.
    pub name: String,
    /// What to send.
    pub segments: Vec<Segment>,
}

impl fmt::Debug for Command {
    /// Only the tag and name: arguments may be a password or a message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({} {}, {} segments)", self.tag, self.name, self.segments.len())
    }
}

/// Why a caller's command cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// No tag, or a tag with characters IMAP does not allow in one.
    BadTag,
    /// A tag and nothing else.
    NoCommand,
    /// A command name with characters no IMAP atom has (a disguised refused command, such
    /// as `LOGOUT{0}` or `LOGOUT` and a tab, among them).
    BadName,
    /// A CR or LF that is not the CRLF after a literal announcement: a second command.
    LineBreak,
    /// A NUL outside a literal.
    Nul,
    /// A literal announced longer than what follows.
    ShortLiteral,
    /// A command inlookup does not pass on.
    Refused(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::BadTag => f.write_str("the command needs a tag of IMAP atom characters first"),
            CommandError::NoCommand => f.write_str("a tag without a command"),
            CommandError::BadName => {
                f.write_str("the command name must be an IMAP atom (letters, digits, no brackets)")
            }
            CommandError::LineBreak => f.write_str(
                "a line break that does not follow a {n} literal announcement (one command per request)",
            ),
            CommandError::Nul => f.write_str("a NUL byte outside a literal"),
            CommandError::ShortLiteral => f.write_str("a literal shorter than its announced length"),
            CommandError::Refused(name) => write!(
                f,
                "{name} is not passed on: use the IMAP login, logout and auth requests instead"
            ),
        }
    }
}

impl std::error::Error for CommandError {}

/// Characters allowed in a tag: ASTRING-CHAR except `+` (RFC 9051).
fn tag_char(b: u8) -> bool {
    b.is_ascii_graphic() && !b"(){%*\"\\+".contains(&b)
}

/// Checks a caller's command and cuts it into segments. A final CRLF is optional;
/// `{n+}` (LITERAL+) is sent as `{n}`, so a server without LITERAL+ stays in step.
///
/// ```
/// use inlookup_imap::command::parse;
/// let c = parse("a7 APPEND INBOX {5}\r\nhello").unwrap();
/// assert_eq!((c.tag.as_str(), c.name.as_str(), c.segments.len()), ("a7", "APPEND", 2));
/// assert!(parse("a1 NOOP\r\na2 NOOP").is_err());
/// assert!(parse("a1 LOGOUT").is_err());
/// ```
///
/// # Errors
/// [`CommandError`]: the text is not exactly one command inlookup passes on.
pub fn parse(text: &str) -> Result<Command, CommandError> {
    let s = text.as_bytes();
    let sp = s.iter().position(|b| *b == b' ').ok_or(CommandError::NoCommand)?;
    let tag = &s[..sp];
    if tag.is_empty() || !tag.iter().all(|b| tag_char(*b)) {
        return Err(CommandError::BadTag);
    }
    let rest = &s[sp + 1..];
    let name_len =
        rest.iter().position(|b| matches!(b, b' ' | b'\r' | b'\n')).unwrap_or(rest.len());
    let name = String::from_utf8_lossy(&rest[..name_len]).to_ascii_uppercase();
    if name.is_empty() {
        return Err(CommandError::NoCommand);
    }
    // An atom, as every IMAP command name is: `LOGOUT{0}` or `LOGOUT` and a tab must not
    // pass for another command than the refused one a server may take it for.
    if !rest[..name_len].iter().all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(b)) {
        return Err(CommandError::BadName);
    }
    if REFUSED.contains(&name.as_str()) {
        return Err(CommandError::Refused(name));
    }
    let mut segments = Vec::new();
    let mut pos = 0;
    loop {
        let line_end = rest[pos..].iter().position(|b| matches!(b, b'\r' | b'\n')).map(|i| pos + i);
        let end = line_end.unwrap_or(rest.len());
        let line = &rest[pos..end];
        if line.contains(&0) {
            return Err(CommandError::Nul);
        }
        let literal = literal_announcement(line);
        let Some(eol) = line_end else {
            // The end, without a CRLF: a literal announced here would never come.
            if literal.is_some() {
                return Err(CommandError::ShortLiteral);
            }
            let mut line = line.to_vec();
            line.extend_from_slice(b"\r\n");
            segments.push(Segment { line, literal: None });
            break;
        };
        if !rest[eol..].starts_with(b"\r\n") {
            return Err(CommandError::LineBreak);
        }
        let Some((open, n)) = literal else {
            if eol + 2 == rest.len() {
                segments.push(Segment { line: rest[pos..].to_vec(), literal: None });
                break;
            }
            return Err(CommandError::LineBreak);
        };
        let lit_start = eol + 2;
        let literal = rest[lit_start..].get(..n).ok_or(CommandError::ShortLiteral)?;
        let mut out = line[..open].to_vec();
        out.extend_from_slice(format!("{{{n}}}\r\n").as_bytes());
        segments.push(Segment { line: out, literal: Some(literal.to_vec()) });
        pos = lit_start + n;
    }
    Ok(Command { tag: String::from_utf8_lossy(tag).into_owned(), name, segments })
}

/// `s` as an IMAP quoted string, or `None` when a quoted string cannot hold it (CR, LF,
/// NUL or 8-bit bytes).
fn quoted(s: &str) -> Option<String> {
    let ok = s.bytes().all(|b| (1..0x80).contains(&b) && !matches!(b, b'\r' | b'\n'));
    ok.then(|| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
}

/// `LOGIN user password`, each argument quoted when it can be and a literal otherwise
/// (CR, LF, NUL or 8-bit bytes), so no argument can end the command early.
pub fn login(user: &str, password: &str) -> Command {
    let mut segments = Vec::new();
    let mut line = b"LOGIN".to_vec();
    for arg in [user, password] {
        line.push(b' ');
        if let Some(q) = quoted(arg) {
            line.extend_from_slice(q.as_bytes());
        } else {
            line.extend_from_slice(format!("{{{}}}\r\n", arg.len()).as_bytes());
            segments.push(Segment {
                line: std::mem::take(&mut line),
                literal: Some(arg.as_bytes().to_vec()),
            });
        }
    }
    line.extend_from_slice(b"\r\n");
    segments.push(Segment { line, literal: None });
    Command { tag: String::new(), name: "LOGIN".into(), segments }
}

/// `ID (…)` (RFC 2971) with the given field–value pairs, every string quoted. A pair that
/// cannot be quoted (CR, LF, NUL or 8-bit bytes) is left out.
///
/// ```
/// use inlookup_imap::command::id;
/// let c = id(&[("x-originating-ip", "192.0.2.7")]);
/// assert_eq!(c.segments[0].line, b"ID (\"x-originating-ip\" \"192.0.2.7\")\r\n");
/// ```
pub fn id(fields: &[(&str, &str)]) -> Command {
    let pairs: Vec<String> =
        fields.iter().filter_map(|(k, v)| Some(format!("{} {}", quoted(k)?, quoted(v)?))).collect();
    let list = if pairs.is_empty() { "NIL".to_string() } else { format!("({})", pairs.join(" ")) };
    Command {
        tag: String::new(),
        name: "ID".into(),
        segments: vec![Segment { line: format!("ID {list}\r\n").into_bytes(), literal: None }],
    }
}

/// A command without arguments (`CAPABILITY`, `UNSELECT`, `LOGOUT`, `STARTTLS`).
pub fn simple(name: &str) -> Command {
    Command {
        tag: String::new(),
        name: name.into(),
        segments: vec![Segment { line: format!("{name}\r\n").into_bytes(), literal: None }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wire(c: &Command, tag: &str) -> Vec<u8> {
        let mut out = format!("{tag} ").into_bytes();
        for s in &c.segments {
            out.extend_from_slice(&s.line);
            if let Some(l) = &s.literal {
                out.extend_from_slice(l);
            }
        }
        out
    }

    #[test]
    fn plain_commands_get_a_crlf_and_keep_their_text() {
        let c = parse("A001 select \"INBOX\"").unwrap();
        assert_eq!((c.tag.as_str(), c.name.as_str()), ("A001", "SELECT"));
        assert_eq!(wire(&c, "x1"), b"x1 select \"INBOX\"\r\n");
        assert_eq!(parse("a NOOP\r\n").unwrap().segments.len(), 1);
        assert_eq!(parse("a UID FETCH 1:* FLAGS").unwrap().name, "UID");
    }

    #[test]
    fn literals_with_crlf_inside_and_literal_plus_become_synchronizing() {
        let c = parse("a APPEND INBOX (\\Seen) {13+}\r\nHi\r\n\r\nthere\r\n {3}\r\nabc").unwrap();
        assert_eq!(c.segments.len(), 3);
        assert_eq!(c.segments[0].line, b"APPEND INBOX (\\Seen) {13}\r\n");
        assert_eq!(c.segments[0].literal.as_deref(), Some(&b"Hi\r\n\r\nthere\r\n"[..]));
        assert_eq!(c.segments[1].line, b" {3}\r\n");
        assert_eq!(c.segments[2].line, b"\r\n");
    }

    #[test]
    fn anything_but_one_command_is_refused() {
        assert_eq!(parse("NOOP"), Err(CommandError::NoCommand));
        assert_eq!(parse("a "), Err(CommandError::NoCommand));
        assert_eq!(parse(" NOOP"), Err(CommandError::BadTag));
        assert_eq!(parse("a+ NOOP"), Err(CommandError::BadTag));
        assert_eq!(parse("a NOOP\r\nb NOOP"), Err(CommandError::LineBreak));
        assert_eq!(parse("a NOOP\nb NOOP"), Err(CommandError::LineBreak));
        assert_eq!(parse("a NOOP\rb"), Err(CommandError::LineBreak));
        assert_eq!(parse("a X {5}\r\nabc"), Err(CommandError::ShortLiteral));
        assert_eq!(parse("a X \0"), Err(CommandError::Nul));
        assert_eq!(parse("a X {2}"), Err(CommandError::ShortLiteral), "the server would wait");
        assert_eq!(parse("a X {2}\r\n"), Err(CommandError::ShortLiteral));
        assert_eq!(parse("a X {2}\r\n\r\n").unwrap().segments[1].line, b"\r\n");
        for name in REFUSED {
            assert_eq!(
                parse(&format!("t {}", name.to_lowercase())),
                Err(CommandError::Refused(name.into()))
            );
        }
    }

    #[test]
    fn id_quotes_its_strings_and_leaves_out_what_it_cannot_quote() {
        let c = id(&[("x-originating-ip", "2001:db8::1"), ("x-a", "q\"b\\"), ("x-b", "c\r\n")]);
        assert_eq!(
            wire(&c, "L1"),
            b"L1 ID (\"x-originating-ip\" \"2001:db8::1\" \"x-a\" \"q\\\"b\\\\\")\r\n".to_vec()
        );
        assert_eq!(wire(&id(&[]), "L2"), b"L2 ID NIL\r\n".to_vec());
    }

    #[test]
    fn login_quotes_or_uses_literals() {
        let c = login("alice", "se\"c\\ret");
        assert_eq!(wire(&c, "t"), b"t LOGIN \"alice\" \"se\\\"c\\\\ret\"\r\n");
        let c = login("bob", "p\r\nw\u{e9}");
        assert_eq!(c.segments.len(), 2);
        assert_eq!(c.segments[0].line, b"LOGIN \"bob\" {6}\r\n");
        assert_eq!(wire(&c, "t"), b"t LOGIN \"bob\" {6}\r\np\r\nw\xc3\xa9\r\n");
        assert!(!format!("{c:?}").contains("p\r\n"), "Debug never shows arguments");
    }

    proptest! {
        /// Whatever the text, a parsed command sends exactly the caller's bytes (with
        /// `{n+}` turned into `{n}` and a CRLF at the end), and no segment line has a line
        /// break anywhere but at its end.
        #[test]
        fn parse_keeps_the_bytes(text in "[a-z]{1,3} [A-Z]{1,6}( [a-z{}+0-9\r\n]{0,12}){0,3}") {
            if let Ok(c) = parse(&text) {
                let sent = wire(&c, &c.tag);
                let expected = if text.ends_with("\r\n") { text.clone() } else { format!("{text}\r\n") };
                if !text.contains("+}") {
                    prop_assert_eq!(String::from_utf8_lossy(&sent).into_owned(), expected);
                }
                for s in &c.segments {
                    let l = &s.line[..s.line.len() - 2];
                    prop_assert!(!l.contains(&b'\r') && !l.contains(&b'\n'));
                }
            }
        }

        /// LOGIN never lets an argument add a line of its own.
        #[test]
        fn login_arguments_stay_arguments(user in "[ -~]{0,8}", pw in any::<String>()) {
            let c = login(&user, &pw);
            for s in &c.segments {
                let l = &s.line[..s.line.len() - 2];
                prop_assert!(!l.contains(&b'\r') && !l.contains(&b'\n'));
            }
        }
    }

    #[test]
    fn a_refused_command_in_disguise_is_refused_too() {
        for text in ["a LOGOUT{0}\r\n", "a LOGOUT\t", "a LOG(OUT", "a X]"] {
            assert_eq!(parse(text).err(), Some(CommandError::BadName), "{text:?}");
        }
        assert_eq!(parse("a logout").err(), Some(CommandError::Refused("LOGOUT".into())));
        assert!(parse("a UID FETCH 1:* (FLAGS)").is_ok());
        assert!(parse("a X-CUSTOM.cmd_1").is_ok());
    }
}
