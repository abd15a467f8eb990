//! Payloads of inlookup's own kinds (PING, STATS, FLUSH): JSON in the email field of the
//! request, JSON in the length-prefixed reply.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most JSON a reply of inlookup's own kinds may carry.
pub const MAX_JSON_REPLY: usize = 1 << 20;

/// PING's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReply {
    /// The daemon's version.
    pub version: String,
    /// Its pid.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_secs: u64,
}

/// Counters for one query kind. All are exact: only the daemon's I/O thread changes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindStats {
    /// Requests of this kind decoded.
    pub requests: u64,
    /// Answered from a fresh positive cache entry.
    pub hits: u64,
    /// Answered from a fresh negative ("not found") cache entry.
    pub negative_hits: u64,
    /// Sent to a worker (cache off, absent or expired).
    pub misses: u64,
    /// Joined a lookup already in flight for the same key instead of querying again.
    pub coalesced: u64,
    /// Entries pushed out of the full cache by this kind's inserts.
    pub evictions: u64,
    /// Entries found expired.
    pub expirations: u64,
    /// Lookups that failed in MySQL.
    pub backend_errors: u64,
    /// Failed lookups answered from an expired entry instead (serve-stale).
    pub stale_served: u64,
    /// Requests refused at once because the worker queue was full.
    pub queue_full: u64,
}

/// STATS' reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    /// The daemon's version.
    pub version: String,
    /// Its pid.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Entries in the cache now.
    pub cache_entries: u64,
    /// The cache's capacity (0: caching off).
    pub cache_capacity: u64,
    /// Worker threads (each with one MySQL connection).
    pub workers: u64,
    /// Lookups queued or running now.
    pub in_flight: u64,
    /// MySQL connections opened since start (reconnects included).
    pub mysql_connects: u64,
    /// Per kind, by its short name.
    pub kinds: BTreeMap<String, KindStats>,
    /// Bytes that were not a frame, counted once per resync.
    pub bad_frames: u64,
    /// Well-formed requests refused: unknown type, bad field, missing IP.
    pub bad_requests: u64,
    /// Replies not written because the reply path was not a FIFO in FIFOTMPDIR.
    pub refused_reply_paths: u64,
    /// Replies dropped because the client had already gone.
    pub vanished_clients: u64,
    /// Whether debug logging is on (USR2 toggles it).
    pub debug: bool,
}

impl StatsReport {
    /// The counters summed over every kind.
    pub fn totals(&self) -> KindStats {
        let mut t = KindStats::default();
        for k in self.kinds.values() {
            t.requests += k.requests;
            t.hits += k.hits;
            t.negative_hits += k.negative_hits;
            t.misses += k.misses;
            t.coalesced += k.coalesced;
            t.evictions += k.evictions;
            t.expirations += k.expirations;
            t.backend_errors += k.backend_errors;
            t.stale_served += k.stale_served;
            t.queue_full += k.queue_full;
        }
        t
    }
}

/// FLUSH's payload: everything (both `None`), one kind, or one key of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushRequest {
    /// A kind's short name (`pwd`), or none for all kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// An email or domain, as a client would ask it; needs `kind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// FLUSH's reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushReply {
    /// How many entries were dropped.
    pub flushed: u64,
}
