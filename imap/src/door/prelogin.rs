//! Before login the door speaks IMAP itself (RFC 3501's not-authenticated state): the
//! greeting, CAPABILITY, NOOP, ID, LOGOUT, STARTTLS, LOGIN and AUTHENTICATE PLAIN and
//! LOGIN (with SASL-IR). Nothing a client sends here reaches a server as such: a login
//! takes a connection from the pool ([`crate::Sessions::door_login`]).

use super::io::ClientStream;
use crate::frame::literal_announcement;
use base64::Engine as _;
use std::io::{self, Read, Write};

/// The longest line, and literal, a client may send before login.
pub const MAX_PRELOGIN: usize = 8 * 1024;
/// Commands that failed or were not understood before the client is sent away.
pub const MAX_ERRORS: usize = 10;

/// The client's bytes, read ahead in a buffer (what is left goes to the relay).
#[derive(Debug)]
pub struct Reader {
    /// The client.
    pub stream: ClientStream,
    /// Read but not yet used.
    pub buf: Vec<u8>,
}

/// Why a command could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed, closed or timed out.
    Io(io::Error),
    /// Not IMAP we understand: the text for a BAD.
    Bad(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// One argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An atom (NIL included).
    Atom(String),
    /// A quoted string or a literal.
    Str(Vec<u8>),
    /// `(`.
    Open,
    /// `)`.
    Close,
}

impl Token {
    /// An astring's bytes (atom, quoted or literal).
    pub fn astring(&self) -> Option<&[u8]> {
        match self {
            Token::Atom(a) if !a.eq_ignore_ascii_case("NIL") => Some(a.as_bytes()),
            Token::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A command: tag, name (upper case), arguments.
#[derive(Debug)]
pub struct Command {
    /// The tag.
    pub tag: String,
    /// The name, upper case.
    pub name: String,
    /// The arguments.
    pub args: Vec<Token>,
}

/// Splits a line's text (no literal in it) into tokens.
///
/// # Errors
/// An unterminated quoted string or a bad character.
pub fn tokenize(text: &[u8], out: &mut Vec<Token>) -> Result<(), String> {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b' ' => i += 1,
            b'(' => {
                out.push(Token::Open);
                i += 1;
            }
            b')' => {
                out.push(Token::Close);
                i += 1;
            }
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                loop {
                    match text.get(i) {
                        None => return Err("unterminated quoted string".into()),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            let Some(c) = text.get(i + 1) else {
                                return Err("unterminated quoted string".into());
                            };
                            s.push(*c);
                            i += 2;
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                i += 1;
                out.push(Token::Str(s));
            }
            c if c.is_ascii_graphic() => {
                let start = i;
                while i < text.len() && !b" ()\"".contains(&text[i]) {
                    if !text[i].is_ascii_graphic() {
                        return Err("bad character in an atom".into());
                    }
                    i += 1;
                }
                out.push(Token::Atom(String::from_utf8_lossy(&text[start..i]).into_owned()));
            }
            _ => return Err("bad character".into()),
        }
    }
    Ok(())
}

impl Reader {
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One line without its CRLF.
    ///
    /// # Errors
    /// I/O, or a line longer than [`MAX_PRELOGIN`].
    pub fn line(&mut self) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(k) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=k).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() > MAX_PRELOGIN {
                return Err(ReadError::Io(io::Error::other("line too long before login")));
            }
            self.fill()?;
        }
    }

    fn exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Sends bytes to the client.
    ///
    /// # Errors
    /// I/O.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// The next command, its literals read (synchronizing ones asked for with `+`).
    ///
    /// # Errors
    /// I/O; [`ReadError::Bad`] (with the tag when known) for what is not a command.
    pub fn command(&mut self) -> Result<Command, (Option<String>, ReadError)> {
        let mut line = self.line().map_err(|e| (None, e))?;
        let mut tokens = Vec::new();
        loop {
            let (text, literal) = match literal_announcement(&line) {
                Some((open, n)) => (&line[..open], Some((n, !line.ends_with(b"+}")))),
                None => (&line[..], None),
            };
            let tagged = tokenize(text, &mut tokens);
            let first = match tokens.first() {
                Some(Token::Atom(t)) => Some(t.clone()),
                _ => None,
            };
            let tag = || first.clone();
            if let Err(e) = tagged {
                return Err((tag(), ReadError::Bad(e)));
            }
            let Some((n, sync)) = literal else { break };
            if n > MAX_PRELOGIN {
                return Err((tag(), ReadError::Bad("literal too large before login".into())));
            }
            if sync {
                self.send(b"+ Ready for literal data\r\n").map_err(|e| (tag(), e.into()))?;
            }
            let data = self.exact(n).map_err(|e| (tag(), e.into()))?;
            tokens.push(Token::Str(data));
            line = self.line().map_err(|e| (tag(), e))?;
        }
        let mut it = tokens.into_iter();
        let tag = match it.next() {
            Some(Token::Atom(t)) if !t.contains(['*', '+', '%', '{']) => t,
            _ => return Err((None, ReadError::Bad("no tag".into()))),
        };
        let Some(Token::Atom(name)) = it.next() else {
            return Err((Some(tag), ReadError::Bad("no command".into())));
        };
        Ok(Command { tag, name: name.to_ascii_uppercase(), args: it.collect() })
    }
}

/// `ID` arguments: the field pairs of its list (`NIL` gives none).
pub fn id_fields(args: &[Token]) -> Result<Vec<(String, String)>, String> {
    match args {
        [Token::Atom(a)] if a.eq_ignore_ascii_case("NIL") => Ok(Vec::new()),
        [Token::Open, inner @ .., Token::Close] => {
            if inner.len() % 2 != 0 || inner.len() > 60 {
                return Err("ID wants pairs of strings".into());
            }
            let mut out = Vec::new();
            for pair in inner.chunks(2) {
                let (Some(k), v) = (pair[0].astring(), &pair[1]) else {
                    return Err("ID field names are strings".into());
                };
                let v = v.astring().unwrap_or_default();
                out.push((
                    String::from_utf8_lossy(k).to_ascii_lowercase(),
                    String::from_utf8_lossy(v).into_owned(),
                ));
            }
            Ok(out)
        }
        _ => Err("ID wants a list or NIL".into()),
    }
}

/// PLAIN's message (`authzid NUL authcid NUL password`): user and password. An
/// authorization identity other than the user is refused (the door logs in as users, not
/// for them).
pub fn plain(b64: &[u8]) -> Result<(String, String), String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "not base64".to_string())?;
    let parts: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    let [authz, user, password] = parts[..] else {
        return Err("PLAIN wants authzid, authcid and password".into());
    };
    let user = String::from_utf8(user.to_vec()).map_err(|_| "the user is not UTF-8")?;
    let password = String::from_utf8(password.to_vec()).map_err(|_| "the password is not UTF-8")?;
    if !authz.is_empty() && authz != user.as_bytes() {
        return Err("no authorization identity other than the user".into());
    }
    Ok((user, password))
}

/// A base64 line of a SASL exchange.
pub fn b64_text(b64: &[u8]) -> Result<String, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "not base64".to_string())?;
    String::from_utf8(raw).map_err(|_| "not UTF-8".to_string())
}

/// The greeting's and CAPABILITY's list before login: the server's, with the `AUTH=`
/// mechanisms replaced by the door's (PLAIN and LOGIN), STARTTLS only when the door offers
/// it here, and nothing it cannot relay.
pub fn prelogin_caps(server: Option<&[String]>, starttls: bool) -> String {
    let fallback = ["IMAP4REV1", "LITERAL+", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE"];
    let mut caps: Vec<String> = match server {
        Some(c) => c.to_vec(),
        None => fallback.iter().map(|s| (*s).to_string()).collect(),
    };
    caps.retain(|c| {
        !c.starts_with("AUTH=")
            && !c.starts_with("COMPRESS")
            && !matches!(
                c.as_str(),
                "STARTTLS" | "LOGINDISABLED" | "SASL-IR" | "ID" | "UNAUTHENTICATE"
            )
    });
    if !caps.iter().any(|c| c == "IMAP4REV1") {
        caps.insert(0, "IMAP4REV1".into());
    }
    for c in ["SASL-IR", "ID"] {
        caps.push(c.into());
    }
    if starttls {
        caps.push("STARTTLS".into());
    }
    caps.push("AUTH=PLAIN".into());
    caps.push("AUTH=LOGIN".into());
    names(&caps)
}

/// After login: the server's list minus what the door does not relay.
pub fn postlogin_caps(server: &[String]) -> String {
    let mut caps = server.to_vec();
    caps.retain(|c| {
        !c.starts_with("AUTH=")
            && !c.starts_with("COMPRESS")
            && !matches!(c.as_str(), "STARTTLS" | "LOGINDISABLED" | "SASL-IR" | "UNAUTHENTICATE")
    });
    names(&caps)
}

/// IMAP4REV1 spelled as servers do.
fn names(caps: &[String]) -> String {
    caps.iter()
        .map(|c| if c == "IMAP4REV1" { "IMAP4rev1" } else { c.as_str() })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let mut t = Vec::new();
        tokenize(br#"a1 LOGIN "jo \"x\"" pw"#, &mut t).unwrap();
        assert_eq!(t[2], Token::Str(b"jo \"x\"".to_vec()));
        assert_eq!(t[3], Token::Atom("pw".into()));
        assert!(tokenize(b"a \"open", &mut Vec::new()).is_err());
        let mut t = Vec::new();
        tokenize(br#"("x-originating-ip" "10.1.2.3" "name" NIL)"#, &mut t).unwrap();
        let f = id_fields(&t).unwrap();
        assert_eq!(f[0], ("x-originating-ip".into(), "10.1.2.3".into()));
        assert_eq!(f[1], ("name".into(), String::new()));
    }

    #[test]
    fn sasl_plain() {
        let b = base64::engine::general_purpose::STANDARD.encode(b"\0jo\0pw");
        assert_eq!(plain(b.as_bytes()).unwrap(), ("jo".into(), "pw".into()));
        let b = base64::engine::general_purpose::STANDARD.encode(b"admin\0jo\0pw");
        assert!(plain(b.as_bytes()).is_err());
        assert!(plain(b"!!").is_err());
    }

    #[test]
    fn capabilities_offer_only_the_doors_mechanisms() {
        let server: Vec<String> = [
            "IMAP4REV1",
            "SASL-IR",
            "AUTH=CRAM-MD5",
            "AUTH=DIGEST-MD5",
            "AUTH=PLAIN",
            "STARTTLS",
            "LOGINDISABLED",
            "IDLE",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        let c = prelogin_caps(Some(&server), false);
        assert!(!c.contains("CRAM") && !c.contains("DIGEST") && !c.contains("STARTTLS"), "{c}");
        assert!(!c.contains("LOGINDISABLED") && c.contains("AUTH=PLAIN AUTH=LOGIN"), "{c}");
        assert!(c.starts_with("IMAP4rev1 "), "{c}");
        assert!(prelogin_caps(Some(&server), true).contains("STARTTLS"));
        let after: Vec<String> = ["IMAP4REV1", "IDLE", "COMPRESS=DEFLATE", "STARTTLS", "MOVE"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        assert_eq!(postlogin_caps(&after), "IMAP4rev1 IDLE MOVE");
    }
}
