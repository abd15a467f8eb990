//! The query kinds: IndiMail's seven classic ones and inlookup's own.

use std::fmt;
use std::str::FromStr;

/// What a request asks. The discriminant is the type byte on the wire.
///
/// Bytes 1–7 are IndiMail's (`indimail.h`, "Fifo Server Definitions") and keep its reply
/// formats exactly. Bytes from 32 up are inlookup's own; they carry a JSON payload in the
/// email field and get a length-prefixed JSON reply (see `docs/protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum QueryKind {
    /// USER_QUERY: is this a deliverable local user? Reply: a status int.
    User = 1,
    /// RELAY_QUERY: did this user authenticate recently from this IP (POP-before-SMTP)?
    Relay = 2,
    /// PWD_QUERY: the passwd record, as a `PWSTRUCT=` string.
    Pwd = 3,
    /// HOST_QUERY: the user's mail store, `domain:host:port`.
    Host = 4,
    /// ALIAS_QUERY: the user's valias lines.
    Alias = 5,
    /// LIMIT_QUERY: the domain limits record, as raw `struct vlimits` bytes.
    Limit = 6,
    /// DOMAIN_QUERY: the real domain behind an alias domain.
    Domain = 7,
    /// PING: is the daemon alive, and which version. JSON reply.
    Ping = 32,
    /// STATS: the daemon's counters. JSON reply.
    Stats = 33,
    /// FLUSH: drop cache entries (all, one kind, or one key). JSON payload and reply.
    Flush = 34,
    /// ALIAS with the whole answer: ALIAS's reply, however long. The classic kind stays
    /// capped at `PIPE_BUF`, as IndiMail's clients expect (a longer answer is `-1` there).
    AliasFull = 36,
    /// IMAP login: a logged-in IMAP connection for a session, reused when one is held.
    ImapLogin = 40,
    /// IMAP command: one command line (and its literals) on a session's connection.
    ImapCommand = 41,
    /// IMAP logout: reset the session's connection and park it (or close it).
    ImapLogout = 42,
    /// IMAP auth: only check a user's credentials, from a cache when it knows them.
    ImapAuth = 43,
}

impl QueryKind {
    /// Every kind, classic ones first.
    pub const ALL: [QueryKind; 15] = [
        QueryKind::User,
        QueryKind::Relay,
        QueryKind::Pwd,
        QueryKind::Host,
        QueryKind::Alias,
        QueryKind::Limit,
        QueryKind::Domain,
        QueryKind::Ping,
        QueryKind::Stats,
        QueryKind::Flush,
        QueryKind::AliasFull,
        QueryKind::ImapLogin,
        QueryKind::ImapCommand,
        QueryKind::ImapLogout,
        QueryKind::ImapAuth,
    ];

    /// The four IMAP kinds, served by the IMAP pool (never cached by the LRU).
    pub const IMAP: [QueryKind; 4] =
        [QueryKind::ImapLogin, QueryKind::ImapCommand, QueryKind::ImapLogout, QueryKind::ImapAuth];

    /// The seven kinds answered from MySQL and cached.
    pub const CLASSIC: [QueryKind; 7] = [
        QueryKind::User,
        QueryKind::Relay,
        QueryKind::Pwd,
        QueryKind::Host,
        QueryKind::Alias,
        QueryKind::Limit,
        QueryKind::Domain,
    ];

    /// The kind for a type byte, or `None` for a byte no kind uses.
    ///
    /// ```
    /// use inlookup_core::QueryKind;
    /// assert_eq!(QueryKind::from_byte(3), Some(QueryKind::Pwd));
    /// assert_eq!(QueryKind::from_byte(8), None);
    /// ```
    pub fn from_byte(b: u8) -> Option<QueryKind> {
        QueryKind::ALL.into_iter().find(|k| *k as u8 == b)
    }

    /// The type byte.
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// True for IndiMail's seven kinds (bytes 1–7), whose replies keep IndiMail's formats.
    pub fn is_classic(self) -> bool {
        (self as u8) <= 7
    }

    /// True for the IMAP kinds (bytes 40–43), answered by the IMAP pool.
    pub fn is_imap(self) -> bool {
        matches!(
            self,
            QueryKind::ImapLogin
                | QueryKind::ImapCommand
                | QueryKind::ImapLogout
                | QueryKind::ImapAuth
        )
    }

    /// The classic kind whose answer this kind asks for, and whether in whole: ALIAS-FULL is
    /// ALIAS uncapped; a classic kind is itself, capped at `PIPE_BUF`; other kinds have none.
    ///
    /// ```
    /// use inlookup_core::QueryKind;
    /// assert_eq!(QueryKind::AliasFull.answers(), Some((QueryKind::Alias, true)));
    /// assert_eq!(QueryKind::Alias.answers(), Some((QueryKind::Alias, false)));
    /// assert_eq!(QueryKind::Ping.answers(), None);
    /// ```
    pub fn answers(self) -> Option<(QueryKind, bool)> {
        match self {
            QueryKind::AliasFull => Some((QueryKind::Alias, true)),
            k if k.is_classic() => Some((k, false)),
            _ => None,
        }
    }

    /// True when the reply is a bare int with no body (USER and RELAY).
    pub fn reply_is_bare_int(self) -> bool {
        matches!(self, QueryKind::User | QueryKind::Relay)
    }

    /// The short lower-case name used in flags, JSON and logs (`pwd`, `user`, …).
    pub fn name(self) -> &'static str {
        match self {
            QueryKind::User => "user",
            QueryKind::Relay => "relay",
            QueryKind::Pwd => "pwd",
            QueryKind::Host => "host",
            QueryKind::Alias => "alias",
            QueryKind::Limit => "limit",
            QueryKind::Domain => "domain",
            QueryKind::Ping => "ping",
            QueryKind::Stats => "stats",
            QueryKind::Flush => "flush",
            QueryKind::AliasFull => "alias-full",
            QueryKind::ImapLogin => "imap-login",
            QueryKind::ImapCommand => "imap-cmd",
            QueryKind::ImapLogout => "imap-logout",
            QueryKind::ImapAuth => "imap-auth",
        }
    }

    /// IndiMail's label for the kind, as its debug log prints it (`Password Query`).
    pub fn label(self) -> &'static str {
        match self {
            QueryKind::User => "User Query",
            QueryKind::Relay => "Relay Query",
            QueryKind::Pwd => "Password Query",
            QueryKind::Host => "Host Query",
            QueryKind::Alias => "Alias Query",
            QueryKind::Limit => "Limit Query",
            QueryKind::Domain => "Domain Query",
            QueryKind::Ping => "Ping",
            QueryKind::Stats => "Stats",
            QueryKind::Flush => "Flush",
            QueryKind::AliasFull => "Alias Query (whole)",
            QueryKind::ImapLogin => "IMAP Login",
            QueryKind::ImapCommand => "IMAP Command",
            QueryKind::ImapLogout => "IMAP Logout",
            QueryKind::ImapAuth => "IMAP Auth",
        }
    }
}

impl fmt::Display for QueryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a name or number that is no query kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKind(pub String);

impl fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown query type {:?}: use 1-7 or user, relay, pwd, host, alias, limit, domain",
            self.0
        )
    }
}

impl std::error::Error for UnknownKind {}

impl FromStr for QueryKind {
    type Err = UnknownKind;

    /// Accepts the short name (`pwd`), IndiMail's digit (`3`), or the type byte in decimal.
    ///
    /// ```
    /// use inlookup_core::QueryKind;
    /// assert_eq!("3".parse::<QueryKind>().unwrap(), QueryKind::Pwd);
    /// assert_eq!("Alias".parse::<QueryKind>().unwrap(), QueryKind::Alias);
    /// assert!("9".parse::<QueryKind>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Ok(n) = t.parse::<u8>() {
            return QueryKind::from_byte(n).ok_or_else(|| UnknownKind(s.to_string()));
        }
        QueryKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

impl serde::Serialize for QueryKind {
    /// As its short name (`pwd`), the name FLUSH and `CACHE_TTL` take.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for QueryKind {
    /// From anything [`QueryKind::from_str`] accepts.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_classic_bytes_are_indimails() {
        for k in QueryKind::ALL {
            assert_eq!(QueryKind::from_byte(k.byte()), Some(k));
            assert_eq!(k.name().parse::<QueryKind>().unwrap(), k);
        }
        let classic: Vec<u8> = QueryKind::CLASSIC.iter().map(|k| k.byte()).collect();
        assert_eq!(classic, vec![1, 2, 3, 4, 5, 6, 7]);
        assert!(QueryKind::CLASSIC.iter().all(|k| k.is_classic()));
        assert!(!QueryKind::Ping.is_classic());
        for k in QueryKind::IMAP {
            assert!(k.is_imap() && !k.is_classic(), "{k}");
        }
        assert_eq!(QueryKind::ALL.iter().filter(|k| k.is_imap()).count(), 4);
        assert_eq!("imap-cmd".parse::<QueryKind>().unwrap(), QueryKind::ImapCommand);
    }

    #[test]
    fn unused_bytes_are_no_kind() {
        for b in [0u8, 8, 9, 31, 35, 39, 44, 255] {
            assert_eq!(QueryKind::from_byte(b), None, "byte {b}");
        }
    }
}
