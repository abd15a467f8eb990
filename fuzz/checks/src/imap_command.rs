//! Target `imap_command`: a caller's IMAP command (the `command` of an IMAP-COMMAND request),
//! checked and cut into segments by `inlookup_imap::command::parse`.

use inlookup_imap::command::{parse, Command, CommandError, REFUSED};

/// Characters IMAP allows in a tag (ASTRING-CHAR less `+`), as the parser must demand.
fn tag_char(b: u8) -> bool {
    b.is_ascii_graphic() && !b"(){%*\"\\+".contains(&b)
}

/// The bytes after a `{`: the digits of a literal announcement, an optional `+` (LITERAL+),
/// `}` and the CRLF after it; its length in bytes and the announced size.
fn announcement(s: &[u8]) -> Option<(usize, usize)> {
    let s = s.strip_prefix(b"{")?;
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let mut len = 1 + digits;
    let n: usize = std::str::from_utf8(&s[..digits]).ok()?.parse().ok()?;
    if s.get(digits) == Some(&b'+') {
        len += 1;
    }
    s[len - 1..].starts_with(b"}\r\n").then_some((len + 3, n))
}

/// An `Ok` command is exactly the caller's text: walking the text alongside the segments,
/// each segment's line before its announcement is the text there, the announcement in the
/// text (`{n}` or `{n+}`, leading zeros allowed) gives the literal's size, the literal is
/// the next n bytes of the text, and the last line is the rest of the text (with a CRLF
/// added when it had none). No line holds a CR, LF or NUL but its final CRLF, so nothing a
/// caller writes becomes a second command; the literals go to the server only after it
/// asked for them.
fn check_ok(text: &str, c: &Command) {
    let s = text.as_bytes();
    assert!(!c.tag.is_empty() && c.tag.bytes().all(tag_char), "tag {:?}", c.tag);
    assert!(s.starts_with(c.tag.as_bytes()) && s.get(c.tag.len()) == Some(&b' '));
    assert!(!c.name.is_empty() && !REFUSED.contains(&c.name.as_str()), "name {:?}", c.name);
    assert_eq!(c.name, c.name.to_ascii_uppercase());
    let mut at = c.tag.len() + 1;
    assert!(s[at..].to_ascii_uppercase().starts_with(c.name.as_bytes()), "name not first");
    assert!(!c.segments.is_empty());
    let last = c.segments.len() - 1;
    for (i, seg) in c.segments.iter().enumerate() {
        let body = seg.line.strip_suffix(b"\r\n").unwrap_or_else(|| panic!("segment {i}: no CRLF"));
        assert!(
            !body.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)),
            "segment {i}: a CR, LF or NUL inside its line"
        );
        match &seg.literal {
            Some(literal) => {
                assert!(i < last, "the last segment has a literal");
                let ann = format!("{{{}}}", literal.len());
                let before = body
                    .strip_suffix(ann.as_bytes())
                    .unwrap_or_else(|| panic!("segment {i}: no {{n}} for its literal"));
                assert!(s[at..].starts_with(before), "segment {i}: not the caller's text");
                at += before.len();
                let Some((len, n)) = announcement(&s[at..]) else {
                    panic!("segment {i}: the text has no announcement here");
                };
                assert_eq!(n, literal.len(), "segment {i}: the literal's size");
                at += len;
                assert!(s[at..].starts_with(literal), "segment {i}: literal not the text's");
                at += literal.len();
            }
            None => {
                assert_eq!(i, last, "a segment before the last has no literal");
                let rest = &s[at..];
                assert!(
                    seg.line == rest || [rest, b"\r\n"].concat() == seg.line,
                    "the last line is not the rest of the text"
                );
                at = s.len();
            }
        }
    }
    assert_eq!(at, s.len());
    // Parsing what is sent gives the same segments (`{n+}` is `{n}` already).
    let mut sent = format!("{} ", c.tag).into_bytes();
    for seg in &c.segments {
        sent.extend_from_slice(&seg.line);
        sent.extend_from_slice(seg.literal.as_deref().unwrap_or_default());
    }
    let sent = String::from_utf8(sent).unwrap_or_else(|_| panic!("sent bytes are not UTF-8"));
    // (Its name, for logs only, may differ: in `a X{007}` CRLF … the name is the word up
    // to the line break, announcement included, which is sent as `{7}`.)
    match parse(&sent) {
        Ok(again) => assert!(
            again.tag == c.tag && again.segments == c.segments,
            "the command as sent parses differently"
        ),
        Err(e) => panic!("the command as sent is refused: {e:?}"),
    }
}

/// Errors are the right ones for what is plainly there: no space is `NoCommand`, a bad tag
/// `BadTag`, a refused name `Refused`; and a one-line command with a good tag, a name that
/// is not refused (letters and digits), no NUL and no `}` is never refused.
fn check_err(text: &str, e: &CommandError) {
    let s = text.as_bytes();
    let Some(sp) = s.iter().position(|b| *b == b' ') else {
        assert_eq!(*e, CommandError::NoCommand);
        return;
    };
    let tag = &s[..sp];
    if tag.is_empty() || !tag.iter().all(|b| tag_char(*b)) {
        assert_eq!(*e, CommandError::BadTag);
        return;
    }
    let rest = &s[sp + 1..];
    let name_len =
        rest.iter().position(|b| matches!(b, b' ' | b'\r' | b'\n')).unwrap_or(rest.len());
    let name = String::from_utf8_lossy(&rest[..name_len]).to_ascii_uppercase();
    if name.is_empty() {
        assert_eq!(*e, CommandError::NoCommand);
        return;
    }
    if REFUSED.contains(&name.as_str()) {
        assert_eq!(*e, CommandError::Refused(name));
        return;
    }
    let line = rest.strip_suffix(b"\r\n").unwrap_or(rest);
    let plain = name.bytes().all(|b| b.is_ascii_alphanumeric())
        && !line.iter().any(|b| matches!(b, b'\r' | b'\n' | 0 | b'}'));
    assert!(!plain, "a plain one-line command was refused: {e:?}");
}

/// Target `imap_command` on a string: `parse` never panics, and its answer is checked by
/// [`check_ok`] or [`check_err`]. Also run by the `payload` target on the `command` of
/// every IMAP-COMMAND payload that parses.
pub fn imap_command_str(text: &str) {
    match parse(text) {
        Ok(c) => check_ok(text, &c),
        Err(e) => check_err(text, &e),
    }
}

/// Target `imap_command`: the bytes as UTF-8 (the daemon takes only UTF-8 payloads), lossily
/// when they are not, so the fuzzer's non-UTF-8 inputs still reach the parser.
pub fn imap_command(data: &[u8]) {
    imap_command_str(&String::from_utf8_lossy(data));
}
