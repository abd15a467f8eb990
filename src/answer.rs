//! What an answer is, for each classic kind, and its exact IndiMail reply bytes both ways.

use crate::kind::QueryKind;
use crate::limits::Limits;
use crate::wire::{body_reply, int_reply, ERROR_REPLY, PIPE_BUF};
use serde::{Deserialize, Serialize};
use std::fmt;

/// USER_QUERY's status int.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// 0: an active user.
    Active = 0,
    /// 1: no such user.
    Absent = 1,
    /// 2: the user is in the inactive table (`indibak`).
    Inactive = 2,
    /// 3: active but over quota (`pw_gid & BOUNCE_MAIL`).
    OverQuota = 3,
    /// 4: not a user but a valias alias (qmail-smtpd counts it as deliverable).
    Alias = 4,
}

impl UserStatus {
    /// The status for a reply int; `None` for `-1` (error) and anything unknown.
    pub fn from_int(v: i32) -> Option<UserStatus> {
        Some(match v {
            0 => UserStatus::Active,
            1 => UserStatus::Absent,
            2 => UserStatus::Inactive,
            3 => UserStatus::OverQuota,
            4 => UserStatus::Alias,
            _ => return None,
        })
    }

    /// A word for people and JSON.
    pub fn describe(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Absent => "absent",
            UserStatus::Inactive => "inactive",
            UserStatus::OverQuota => "over quota",
            UserStatus::Alias => "alias",
        }
    }
}

/// `pw_gid` bit that marks a user whose mail bounces (over quota), IndiMail's BOUNCE_MAIL.
pub const BOUNCE_MAIL: u32 = 0x10;

/// A passwd record as PWD_QUERY carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Passwd {
    /// The local part (`alice`): IndiMail's client sets `pw_name` to it.
    pub name: String,
    /// The domain as asked (lower case).
    pub domain: String,
    /// The password hash; `scram,crypt` when the user has a SCRAM secret.
    pub passwd: String,
    /// `pw_uid`.
    pub uid: u32,
    /// `pw_gid` (its bits are IndiMail's per-user flags).
    pub gid: u32,
    /// `pw_gecos`.
    pub gecos: String,
    /// `pw_dir`, the mail directory.
    pub dir: String,
    /// `pw_shell`, which IndiMail uses for the quota.
    pub shell: String,
    /// True when the record came from the inactive table.
    pub inactive: bool,
}

/// Where a user's mail lives: HOST_QUERY's `domain:mdahost:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailHost {
    /// The user's domain.
    pub domain: String,
    /// The mail store host.
    pub host: String,
    /// The port (SMTP by default).
    pub port: String,
}

/// The answer to one classic query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    /// USER.
    User { status: UserStatus },
    /// RELAY: true when a recent POP/IMAP login from that IP allows relaying.
    Relay { allowed: bool },
    /// PWD: the record, or `None` and the email for "No such user".
    Pwd { email: String, passwd: Option<Passwd> },
    /// HOST: the mail store, or `None` when the user has none.
    Host { host: Option<MailHost> },
    /// ALIAS: the valias lines (empty: none).
    Alias { lines: Vec<String> },
    /// LIMIT: the limits, or `None` for a bare domain with no row.
    Limit { limits: Option<Limits> },
    /// DOMAIN: the real domain, and whether the input was an alias domain.
    Domain { domain: String, was_alias: bool },
}

/// Why reply bytes are not a valid answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// The daemon answered -1 (or, for PWD and LIMIT, 0): its backend failed.
    Backend,
    /// The reply did not have the kind's format.
    Malformed(String),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Backend => f.write_str("inlookup service returned error"),
            ReplyError::Malformed(why) => write!(f, "malformed reply: {why}"),
        }
    }
}

impl std::error::Error for ReplyError {}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

impl Answer {
    /// The kind this answers.
    pub fn kind(&self) -> QueryKind {
        match self {
            Answer::User { .. } => QueryKind::User,
            Answer::Relay { .. } => QueryKind::Relay,
            Answer::Pwd { .. } => QueryKind::Pwd,
            Answer::Host { .. } => QueryKind::Host,
            Answer::Alias { .. } => QueryKind::Alias,
            Answer::Limit { .. } => QueryKind::Limit,
            Answer::Domain { .. } => QueryKind::Domain,
        }
    }

    /// True for "not found" answers, which are cached with the shorter negative TTL.
    pub fn is_negative(&self) -> bool {
        match self {
            Answer::User { status } => *status == UserStatus::Absent,
            Answer::Relay { allowed } => !allowed,
            Answer::Pwd { passwd, .. } => passwd.is_none(),
            Answer::Host { host } => host.is_none(),
            Answer::Alias { lines } => lines.is_empty(),
            Answer::Limit { limits } => limits.is_none(),
            Answer::Domain { was_alias, .. } => !was_alias,
        }
    }

    /// The reply bytes, header included, exactly as IndiMail's inlookup sends them.
    ///
    /// A classic reply longer than `PIPE_BUF` becomes `-1`, as in IndiMail (its clients
    /// have no room for more).
    ///
    /// ```
    /// use inlookup_core::{Answer, UserStatus};
    /// let r = Answer::User { status: UserStatus::Inactive }.encode();
    /// assert_eq!(r, 2i32.to_ne_bytes());
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let out = self.encode_whole();
        if out.len() > PIPE_BUF {
            ERROR_REPLY.to_vec()
        } else {
            out
        }
    }

    /// The reply bytes as [`Answer::encode`] makes them, however long: what ALIAS-FULL
    /// ([`crate::QueryKind::AliasFull`]) sends, and what the daemon caches.
    ///
    /// ```
    /// use inlookup_core::Answer;
    /// let lines: Vec<String> = (0..300).map(|i| format!("&user{i}@example.com")).collect();
    /// let a = Answer::Alias { lines };
    /// assert!(a.encode_whole().len() > 4096);
    /// assert_eq!(a.encode(), (-1i32).to_ne_bytes());
    /// ```
    pub fn encode_whole(&self) -> Vec<u8> {
        match self {
            Answer::User { status } => int_reply(*status as i32),
            Answer::Relay { allowed } => int_reply(i32::from(*allowed)),
            Answer::Pwd { email, passwd: None } => {
                body_reply(&nul_terminated(&format!("PWSTRUCT=No such user {email}")))
            }
            Answer::Pwd { passwd: Some(p), .. } => body_reply(&nul_terminated(&format!(
                "PWSTRUCT={}@{}:{}:{}:{}:{}:{}:{}:{}",
                p.name,
                p.domain,
                p.passwd,
                p.uid,
                p.gid,
                p.gecos,
                p.dir,
                p.shell,
                u8::from(p.inactive)
            ))),
            Answer::Host { host: None } => int_reply(0),
            Answer::Host { host: Some(h) } => {
                body_reply(&nul_terminated(&format!("{}:{}:{}", h.domain, h.host, h.port)))
            }
            Answer::Alias { lines } => {
                let mut body = Vec::new();
                for l in lines {
                    body.extend_from_slice(l.as_bytes());
                    body.push(b'\n');
                }
                body.push(0);
                body_reply(&body)
            }
            Answer::Limit { limits: None } => int_reply(0),
            Answer::Limit { limits: Some(l) } => body_reply(&l.to_bytes()),
            Answer::Domain { domain, .. } => body_reply(&nul_terminated(domain)),
        }
    }

    /// Reads a reply: `status` is the leading int, `body` the bytes after it (empty for the
    /// bare-int kinds). `asked` is the email or domain the request carried (DOMAIN's answer
    /// is "was an alias" only when it differs).
    ///
    /// # Errors
    /// [`ReplyError::Backend`] for the daemon's error replies, [`ReplyError::Malformed`]
    /// for bytes that are not the kind's format.
    pub fn decode(
        kind: QueryKind,
        status: i32,
        body: &[u8],
        asked: &str,
    ) -> Result<Answer, ReplyError> {
        let bad = |why: &str| Err(ReplyError::Malformed(format!("{kind} reply: {why}")));
        if status < 0 {
            return Err(ReplyError::Backend);
        }
        let text = |body: &[u8]| -> Result<String, ReplyError> {
            let body = body.strip_suffix(&[0]).unwrap_or(body);
            String::from_utf8(body.to_vec())
                .map_err(|_| ReplyError::Malformed(format!("{kind} reply is not UTF-8")))
        };
        match kind {
            QueryKind::User => match UserStatus::from_int(status) {
                Some(status) => Ok(Answer::User { status }),
                None => bad(&format!("unknown status {status}")),
            },
            QueryKind::Relay => Ok(Answer::Relay { allowed: status != 0 }),
            QueryKind::Pwd => {
                if status == 0 {
                    return Err(ReplyError::Backend);
                }
                let s = text(body)?;
                let Some(rest) = s.strip_prefix("PWSTRUCT=") else {
                    return bad("no PWSTRUCT= prefix");
                };
                if let Some(email) = rest.strip_prefix("No such user ") {
                    return Ok(Answer::Pwd { email: email.to_string(), passwd: None });
                }
                parse_pwstruct(rest).map(|p| {
                    let mut email = String::with_capacity(p.name.len() + 1 + p.domain.len());
                    email.push_str(&p.name);
                    email.push('@');
                    email.push_str(&p.domain);
                    Answer::Pwd { email, passwd: Some(p) }
                })
            }
            QueryKind::Host => {
                if status == 0 {
                    return Ok(Answer::Host { host: None });
                }
                let s = text(body)?;
                let mut it = s.splitn(3, ':');
                match (it.next(), it.next(), it.next()) {
                    (Some(d), Some(h), Some(p)) => Ok(Answer::Host {
                        host: Some(MailHost {
                            domain: d.to_string(),
                            host: h.to_string(),
                            port: p.to_string(),
                        }),
                    }),
                    _ => bad("not domain:host:port"),
                }
            }
            QueryKind::Alias => {
                let s = text(body)?;
                Ok(Answer::Alias { lines: s.lines().map(str::to_string).collect() })
            }
            QueryKind::Limit => {
                if status == 0 {
                    return Ok(Answer::Limit { limits: None });
                }
                match Limits::from_bytes(body) {
                    Some(l) => Ok(Answer::Limit { limits: Some(l) }),
                    None => bad(&format!("{} bytes, not a vlimits record", body.len())),
                }
            }
            QueryKind::Domain => {
                if status == 0 {
                    return bad("empty");
                }
                let domain = text(body)?;
                let was_alias = !domain.eq_ignore_ascii_case(asked.trim());
                Ok(Answer::Domain { domain, was_alias })
            }
            _ => bad("not a classic kind"),
        }
    }
}

/// A PWD record's fields, borrowed from the reply: for callers that copy them elsewhere
/// (the C ABI fills its caller's buffer) without an owned [`Passwd`] in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PwFields<'a> {
    /// `pw_name`.
    pub name: &'a str,
    /// The domain after `@`.
    pub domain: &'a str,
    /// `pw_passwd`.
    pub passwd: &'a str,
    /// `pw_uid`.
    pub uid: u32,
    /// `pw_gid`.
    pub gid: u32,
    /// `pw_gecos`.
    pub gecos: &'a str,
    /// `pw_dir`.
    pub dir: &'a str,
    /// `pw_shell`.
    pub shell: &'a str,
    /// The record came from the inactive table.
    pub inactive: bool,
}

impl Passwd {
    /// The same record, borrowed.
    pub fn fields(&self) -> PwFields<'_> {
        PwFields {
            name: &self.name,
            domain: &self.domain,
            passwd: &self.passwd,
            uid: self.uid,
            gid: self.gid,
            gecos: &self.gecos,
            dir: &self.dir,
            shell: &self.shell,
            inactive: self.inactive,
        }
    }
}

/// The record of a PWD reply body (`PWSTRUCT=…`, its NUL), if it holds one: `None` for
/// "No such user" and anything malformed (which [`Answer::decode`] then explains).
pub fn pwd_record(body: &[u8]) -> Option<PwFields<'_>> {
    let body = body.strip_suffix(&[0]).unwrap_or(body);
    let rest = std::str::from_utf8(body).ok()?.strip_prefix("PWSTRUCT=")?;
    if rest.starts_with("No such user ") {
        return None;
    }
    pwstruct_fields(rest).ok()
}

/// Splits `user@domain:passwd:uid:gid:gecos:dir:shell:is_inactive` (after `PWSTRUCT=`).
fn pwstruct_fields(s: &str) -> Result<PwFields<'_>, ReplyError> {
    let bad = |why: &str| ReplyError::Malformed(format!("pwd reply: {why}"));
    let mut it = s.split(':');
    let mut f = [""; 8];
    let mut n = 0;
    for part in it.by_ref().take(8) {
        f[n] = part;
        n += 1;
    }
    let extra = it.count();
    if n + extra != 8 {
        return Err(bad(&format!("{} fields, want 8", n + extra)));
    }
    let (name, domain) = f[0].split_once('@').unwrap_or((f[0], ""));
    let num = |v: &str, what: &str| v.parse::<u32>().map_err(|_| bad(&format!("bad {what}")));
    Ok(PwFields {
        name,
        domain,
        passwd: f[1],
        uid: num(f[2], "uid")?,
        gid: num(f[3], "gid")?,
        gecos: f[4],
        dir: f[5],
        shell: f[6],
        inactive: f[7] == "1",
    })
}

/// Parses a PWD record into an owned [`Passwd`].
fn parse_pwstruct(s: &str) -> Result<Passwd, ReplyError> {
    let f = pwstruct_fields(s)?;
    Ok(Passwd {
        name: f.name.to_string(),
        domain: f.domain.to_string(),
        passwd: f.passwd.to_string(),
        uid: f.uid,
        gid: f.gid,
        gecos: f.gecos.to_string(),
        dir: f.dir.to_string(),
        shell: f.shell.to_string(),
        inactive: f.inactive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(r: &[u8]) -> (i32, &[u8]) {
        (i32::from_ne_bytes(r[..4].try_into().unwrap()), &r[4..])
    }

    fn alice() -> Passwd {
        Passwd {
            name: "alice".into(),
            domain: "example.com".into(),
            passwd: "$5$x$y".into(),
            uid: 1,
            gid: 0,
            gecos: "Alice".into(),
            dir: "/home/mail/alice".into(),
            shell: "524288000".into(),
            inactive: false,
        }
    }

    #[test]
    fn pwd_reply_is_indimails_bytes_with_the_nul_counted() {
        let r = Answer::Pwd { email: "alice@example.com".into(), passwd: Some(alice()) }.encode();
        let (n, body) = split(&r);
        let want = b"PWSTRUCT=alice@example.com:$5$x$y:1:0:Alice:/home/mail/alice:524288000:0\0";
        assert_eq!(body, want);
        assert_eq!(n as usize, want.len());
    }

    #[test]
    fn pwd_absent_matches_the_observed_original() {
        let r = Answer::Pwd { email: "nobody@example.com".into(), passwd: None }.encode();
        let (n, body) = split(&r);
        assert_eq!(n, 41, "the original sent 41 for this email");
        assert_eq!(body, b"PWSTRUCT=No such user nobody@example.com\0");
    }

    #[test]
    fn alias_none_is_a_lone_nul_and_lines_end_in_newline() {
        let r = Answer::Alias { lines: vec![] }.encode();
        assert_eq!(split(&r), (1, &b"\0"[..]));
        let r = Answer::Alias { lines: vec!["&a@x".into(), "&b@x".into()] }.encode();
        assert_eq!(split(&r).1, b"&a@x\n&b@x\n\0");
    }

    #[test]
    fn not_found_forms() {
        assert_eq!(Answer::Host { host: None }.encode(), 0i32.to_ne_bytes());
        assert_eq!(Answer::Limit { limits: None }.encode(), 0i32.to_ne_bytes());
        assert_eq!(Answer::Relay { allowed: false }.encode(), 0i32.to_ne_bytes());
        assert_eq!(Answer::Relay { allowed: true }.encode(), 1i32.to_ne_bytes());
        let host =
            MailHost { domain: "example.com".into(), host: "127.0.0.1".into(), port: "25".into() };
        let r = Answer::Host { host: Some(host) }.encode();
        assert_eq!(split(&r), (25, &b"example.com:127.0.0.1:25\0"[..]), "as observed");
    }

    #[test]
    fn oversized_classic_replies_become_errors() {
        let lines = vec!["x".repeat(100); 50];
        assert_eq!(Answer::Alias { lines }.encode(), ERROR_REPLY);
    }

    #[test]
    fn every_answer_round_trips() {
        let answers = vec![
            ("a@x", Answer::User { status: UserStatus::OverQuota }),
            ("a@x", Answer::Relay { allowed: true }),
            (
                "alice@example.com",
                Answer::Pwd { email: "alice@example.com".into(), passwd: Some(alice()) },
            ),
            ("n@x", Answer::Pwd { email: "n@x".into(), passwd: None }),
            ("a@x", Answer::Host { host: None }),
            ("a@x", Answer::Alias { lines: vec!["&b@x".into()] }),
            ("a@x", Answer::Alias { lines: vec![] }),
            ("x", Answer::Limit { limits: Some(Limits { maxaliases: 3, ..Limits::default() }) }),
            ("x", Answer::Limit { limits: None }),
            ("example.org", Answer::Domain { domain: "example.com".into(), was_alias: true }),
            ("example.net", Answer::Domain { domain: "example.net".into(), was_alias: false }),
        ];
        for (asked, a) in answers {
            let r = a.encode();
            let (n, body) = split(&r);
            let back = Answer::decode(a.kind(), n, body, asked).unwrap();
            assert_eq!(back, a);
        }
    }

    #[test]
    fn decode_reports_errors_and_garbage() {
        assert_eq!(Answer::decode(QueryKind::User, -1, b"", "a"), Err(ReplyError::Backend));
        assert_eq!(Answer::decode(QueryKind::Pwd, 0, b"", "a"), Err(ReplyError::Backend));
        assert!(matches!(
            Answer::decode(QueryKind::User, 9, b"", "a"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            Answer::decode(QueryKind::Pwd, 4, b"abc\0", "a"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            Answer::decode(QueryKind::Pwd, 20, b"PWSTRUCT=a@b:x:y:z\0", "a"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            Answer::decode(QueryKind::Limit, 3, b"abc", "a"),
            Err(ReplyError::Malformed(_))
        ));
    }

    #[test]
    fn negatives() {
        assert!(Answer::User { status: UserStatus::Absent }.is_negative());
        assert!(!Answer::User { status: UserStatus::Inactive }.is_negative());
        assert!(Answer::Domain { domain: "x".into(), was_alias: false }.is_negative());
    }
}
