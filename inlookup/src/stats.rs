//! The daemon's counters, owned by the I/O thread (so exact, without atomics).

use crate::fifo::{ReplyFailure, WriteFailed};
use inlookup_core::admin::{KindStats, StatsReport};
use inlookup_core::QueryKind;
use std::fmt::Write as _;

/// Every counter the daemon keeps.
#[derive(Debug, Default)]
pub struct Stats {
    /// Per kind, indexed by [`slot`].
    pub kinds: [KindStats; QueryKind::ALL.len()],
    /// Resyncs after bytes that were not a frame.
    pub bad_frames: u64,
    /// Well-formed but unacceptable requests.
    pub bad_requests: u64,
    /// Replies refused because the path was not a FIFO in FIFOTMPDIR.
    pub refused_reply_paths: u64,
    /// Replies dropped because the client was gone.
    pub vanished_clients: u64,
    /// Replies that could not be written to a FIFO that was there (full, or a write error).
    pub failed_replies: u64,
    /// Of those: small replies to a full FIFO.
    pub full_reply_fifos: u64,
    /// PWD answers preloaded by `-c`.
    pub preloaded: u64,
}

/// The index of a kind in [`Stats::kinds`].
pub fn slot(kind: QueryKind) -> usize {
    QueryKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

impl Stats {
    /// The counters of one kind.
    pub fn kind(&mut self, kind: QueryKind) -> &mut KindStats {
        &mut self.kinds[slot(kind)]
    }

    /// Counts and logs a reply's fate, whoever wrote it.
    pub fn account(&mut self, path: &[u8], sent: Result<(), ReplyFailure>) {
        match sent {
            Ok(()) => {}
            Err(ReplyFailure::Vanished) => {
                self.vanished_clients += 1;
                log::debug!("{}: client gone before its reply", String::from_utf8_lossy(path));
            }
            Err(ReplyFailure::Refused(why)) => {
                self.refused_reply_paths += 1;
                log::warn!("not replying to {:?}: {why}", String::from_utf8_lossy(path));
            }
            Err(ReplyFailure::Failed(why @ WriteFailed::Full)) => {
                // A client that keeps its own reply FIFO full hurts only itself.
                self.failed_replies += 1;
                self.full_reply_fifos += 1;
                log::debug!("reply to {:?} not written: {why}", String::from_utf8_lossy(path));
            }
            Err(ReplyFailure::Failed(why)) => {
                self.failed_replies += 1;
                log::warn!("reply to {:?} {why}", String::from_utf8_lossy(path));
            }
        }
    }

    /// Fills the per-kind and global counters of a STATS report.
    pub fn fill(&self, r: &mut StatsReport) {
        for (k, s) in QueryKind::ALL.iter().zip(&self.kinds) {
            r.kinds.insert(k.name().to_string(), s.clone());
        }
        r.bad_frames = self.bad_frames;
        r.bad_requests = self.bad_requests;
        r.refused_reply_paths = self.refused_reply_paths;
        r.vanished_clients = self.vanished_clients;
        r.failed_replies = self.failed_replies;
        r.full_reply_fifos = self.full_reply_fifos;
        r.preloaded = self.preloaded;
    }
}

/// The USR1 log text: IndiMail's one-line `User:Relay:Password:Limit:Alias:Host:Domain`
/// request counts, then one readable line per kind that saw traffic, the global counters,
/// and the IMAP pool's line ([`inlookup_core::admin::ImapStats::line`]).
pub fn describe(r: &StatsReport) -> Vec<String> {
    let n = |name: &str| r.kinds.get(name).map_or(0, |k| k.requests);
    // IndiMail computes queries per second for this line but never prints it; here it is.
    let total = r.totals().requests;
    let rate = match r.uptime_secs {
        0 => "n/a".to_string(), // under a second: no rate worth printing
        up => format!("{:.2}", total as f64 / up as f64),
    };
    let mut lines = vec![format!(
        "queries User:Relay:Password:Limit:Alias:Host:Domain = {}:{}:{}:{}:{}:{}:{}; {total} in all, {rate} per second since start; cache {} of {} entries; uptime {} s",
        n("user"), n("relay"), n("pwd"), n("limit"), n("alias"), n("host"), n("domain"),
        r.cache_entries, r.cache_capacity, r.uptime_secs
    )];
    for (name, k) in &r.kinds {
        if k.requests == 0 {
            continue;
        }
        let mut l = format!(
            "{name}: {} requests, {} hits, {} negative hits, {} misses",
            k.requests, k.hits, k.negative_hits, k.misses
        );
        let extra = [
            ("coalesced", k.coalesced),
            ("refreshed ahead", k.refreshed_ahead),
            ("evictions", k.evictions),
            ("expirations", k.expirations),
            ("backend errors", k.backend_errors),
            ("served stale", k.stale_served),
            ("refused (queue full)", k.queue_full),
            ("too long for a classic reply", k.oversized),
        ];
        for (what, v) in extra.iter().filter(|(_, v)| *v > 0) {
            let _ = write!(l, ", {v} {what}");
        }
        lines.push(l);
    }
    lines.push(format!(
        "{} bad frames, {} bad requests, {} refused reply paths, {} vanished clients, {} failed replies, {} abandoned reply FIFOs swept, {} in flight, {} MySQL connects (workers, the start-up check, IMAP's mail-store lookups)",
        r.bad_frames, r.bad_requests, r.refused_reply_paths, r.vanished_clients, r.failed_replies, r.swept_reply_fifos, r.in_flight, r.mysql_connects
    ));
    if r.tcp_connections_total + r.tcp_refused + r.tcp_busy > 0 {
        lines.push(format!(
            "TCP: {} connections open, {} in all, {} refused by TCP_ALLOW, {} refused at TCP_MAX_CLIENTS, {} timed out, {} failed TLS",
            r.tcp_connections, r.tcp_connections_total, r.tcp_refused, r.tcp_busy, r.tcp_timed_out, r.tcp_tls_failed
        ));
    }
    for b in &r.backends {
        lines.push(b.line());
    }
    lines.push(r.imap.line());
    if let Some(sh) = &r.shared_cache {
        lines.push(sh.line());
    }
    if let Some(inv) = &r.invalidation {
        lines.push(inv.line());
    }
    for s in &r.servers {
        lines.push(s.line());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlookup_core::admin::ImapStats;

    #[test]
    fn the_first_line_has_indimails_counts_and_the_rate() {
        let mut r = StatsReport { uptime_secs: 10, ..StatsReport::default() };
        r.kinds.insert("pwd".into(), KindStats { requests: 20, ..KindStats::default() });
        r.kinds.insert("user".into(), KindStats { requests: 5, ..KindStats::default() });
        r.kinds.insert("ping".into(), KindStats { requests: 1, ..KindStats::default() });
        assert_eq!(
            describe(&r)[0],
            "queries User:Relay:Password:Limit:Alias:Host:Domain = 5:0:20:0:0:0:0; 26 in all, 2.60 per second since start; cache 0 of 0 entries; uptime 10 s"
        );
    }

    #[test]
    fn the_imap_line_names_every_counter() {
        let i = ImapStats {
            created: 1,
            reused: 2,
            parked: 3,
            reclaimed: 4,
            closed_idle: 5,
            closed_broken: 6,
            closed: 7,
            in_use: 8,
            busy: 9,
            idle: 10,
            opening: 11,
            peak_open: 12,
            peak_in_use: 13,
            login_failures: 14,
            connect_failures: 15,
            busy_replies: 16,
            auth_hits: 17,
            auth_negative_hits: 18,
            auth_misses: 19,
            door: inlookup_core::admin::DoorStats {
                clients: 20,
                peak_clients: 21,
                accepted: 22,
                refused: 23,
                logins_fresh: 24,
                logins_reused: 25,
                logins_refused: 26,
                logouts_parked: 27,
                bytes_in: 28,
                bytes_out: 29,
                closed_mid_command: 30,
                closed_state_changed: 31,
            },
        };
        let r = StatsReport { imap: i, ..StatsReport::default() };
        let lines = describe(&r);
        let l = lines.last().unwrap();
        assert_eq!(
            l,
            "IMAP: 1 created, 2 reused, 3 parked, 4 reclaimed, 5 closed idle, 6 closed broken, 7 closed; now 8 in use (9 busy), 10 idle, 11 opening; peaks 12 open, 13 in use; auth cache 17 hits, 18 negative hits, 19 misses; 14 login failures, 15 connect failures, 16 busy replies; door: 20 clients now, peak 21, 22 accepted, 23 refused; logins 24 fresh, 25 reused, 26 refused; 27 logouts parked; 28 bytes in, 29 bytes out; 30 closed mid-command, 31 closed for changed state"
        );
    }
}
