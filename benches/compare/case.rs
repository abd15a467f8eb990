//! The cases: what one request is in each.

use std::fmt;
use std::str::FromStr;

/// One way of answering a PWD lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Case {
    /// `inquery::Client::raw` against the bench's trivial FIFO echo server: the transport's
    /// physical limit.
    Floor,
    /// The same client against inlookup, the key already in its cache.
    Hit,
    /// The same client against an inlookup with `CACHE_ENTRIES=0`: every request goes to
    /// MySQL through a worker's persistent connection.
    Miss,
    /// `Lookups::answer` on an open MySQL connection: the backend's floor.
    Raw,
    /// Connect, `Lookups::answer`, close, with the mysql crate's defaults (a loopback TCP
    /// connect is redone over the server's Unix socket, `max_allowed_packet` is asked).
    DirectDefault,
    /// The same with inlookup's tuned options (`MysqlSettings::opts()`: TCP only).
    DirectTuned,
    /// The hit daemon's answer read from its shared-memory cache by the Rust client
    /// (`inquery::Client::raw` with the mapping): no FIFO, no daemon.
    Mapped,
    /// The same through the C ABI's `inquery()` (the function a C program calls).
    MappedC,
    /// A USER lookup against the miss daemon: USER's miss, beside PWD's.
    MissUser,
    /// The IMAP rows (a command on a reused inlookup session against connect + login +
    /// command + logout), measured apart from the matrix by `imap.rs`.
    Imap,
}

/// What the IMAP rows say when the run skipped them (`--only` without `imap`).
pub const IMAP_NOT_MEASURED: &str = "not measured in this run";

impl Case {
    /// The cases the matrix runs, in their reporting order.
    pub const MEASURED: [Case; 9] = [
        Case::Floor,
        Case::Hit,
        Case::Mapped,
        Case::MappedC,
        Case::Miss,
        Case::MissUser,
        Case::Raw,
        Case::DirectDefault,
        Case::DirectTuned,
    ];

    /// Every case: the measured ones, then IMAP.
    pub const ALL: [Case; 10] = {
        let mut all = [Case::Imap; 10];
        let mut i = 0;
        while i < Case::MEASURED.len() {
            all[i] = Case::MEASURED[i];
            i += 1;
        }
        all
    };

    /// Short name, used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Case::Floor => "floor",
            Case::Hit => "hit",
            Case::Miss => "miss",
            Case::Raw => "raw",
            Case::DirectDefault => "direct-default",
            Case::DirectTuned => "direct-tuned",
            Case::Mapped => "mapped",
            Case::MappedC => "mapped-c",
            Case::MissUser => "miss-user",
            Case::Imap => "imap",
        }
    }

    /// One line for people.
    pub fn describe(self) -> &'static str {
        match self {
            Case::Floor => "FIFO echo server, same client code (transport floor)",
            Case::Hit => "inlookup, answer from its cache",
            Case::Miss => "inlookup, CACHE_ENTRIES=0 (worker + persistent MySQL)",
            Case::Raw => "same SQL on an open MySQL connection, no inlookup",
            Case::DirectDefault => "fresh MySQL connection per lookup, mysql crate defaults",
            Case::DirectTuned => "fresh MySQL connection per lookup, MysqlSettings::opts()",
            Case::Mapped => "inlookup's shared-memory cache, Rust client (no FIFO)",
            Case::MappedC => "inlookup's shared-memory cache, C ABI inquery() (no FIFO)",
            Case::MissUser => "USER lookup, inlookup with CACHE_ENTRIES=0",
            Case::Imap => "IMAP command on a reused session vs fresh login",
        }
    }

    /// Plot colour.
    pub fn colour(self) -> &'static str {
        match self {
            Case::Floor => "#555555",
            Case::Hit => "#1f77b4",
            Case::Miss => "#ff7f0e",
            Case::Raw => "#2ca02c",
            Case::DirectDefault => "#d62728",
            Case::DirectTuned => "#9467bd",
            Case::Mapped => "#17becf",
            Case::MappedC => "#bcbd22",
            Case::MissUser => "#e377c2",
            Case::Imap => "#8c564b",
        }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Case {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Case::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| format!("unknown case {s:?}"))
    }
}
