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
}

impl QueryKind {
    /// Every kind, classic ones first.
    pub const ALL: [QueryKind; 10] = [
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
    ];

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
    }

    #[test]
    fn unused_bytes_are_no_kind() {
        for b in [0u8, 8, 9, 31, 35, 255] {
            assert_eq!(QueryKind::from_byte(b), None, "byte {b}");
        }
    }
}
