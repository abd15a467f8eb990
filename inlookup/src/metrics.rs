//! Metrics for a monitoring system: the counters of STATS in the Prometheus text exposition
//! format (version 0.0.4, which OpenMetrics scrapers read too), served over HTTP by the
//! `tiny_http` crate on a thread of its own at `METRICS_LISTEN`, to the peers
//! `METRICS_ALLOW` lets in (loopback by default).
//!
//! A scrape asks the I/O thread for a snapshot ([`ControlHandle::snapshot`]) and waits for
//! it on the metrics thread: the I/O thread makes the report between two requests and
//! never waits for the scraper.

use crate::error::Error;
use crate::signals::ControlHandle;
use inlookup_core::admin::{BackendState, StatsReport};
use inlookup_core::QueryKind;
use ipnet::IpNet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

/// How long a scrape waits for the I/O thread's snapshot before answering 503.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(2);

/// The metrics listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where to listen (METRICS_LISTEN).
    pub listen: SocketAddr,
    /// Who may scrape (METRICS_ALLOW): everyone else gets 403 and nothing else.
    pub allow: Vec<IpNet>,
}

/// Parses METRICS_ALLOW: addresses and CIDR ranges, comma-separated.
///
/// # Errors
/// An item that is neither.
pub fn parse_allow(s: &str) -> Result<Vec<IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|i| {
            i.parse::<IpNet>()
                .or_else(|_| i.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{i:?} is not an address or a CIDR range"))
        })
        .collect()
}

/// Starts the listener on a thread of its own.
///
/// # Errors
/// The address cannot be bound, or the thread not started.
pub fn start(cfg: &MetricsConfig, controls: ControlHandle) -> Result<(), Error> {
    let server = tiny_http::Server::http(cfg.listen).map_err(|e| Error::Io {
        what: "METRICS_LISTEN",
        source: std::io::Error::other(format!("{}: {e}", cfg.listen)),
    })?;
    let allow = cfg.allow.clone();
    log::info!(
        "metrics on http://{}/metrics for {}",
        cfg.listen,
        allow.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    );
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                answer(request, &allow, &controls);
            }
        })
        .map_err(Error::io("metrics thread"))?;
    Ok(())
}

fn answer(request: tiny_http::Request, allow: &[IpNet], controls: &ControlHandle) {
    let allowed = request.remote_addr().is_some_and(|a| allow.iter().any(|n| n.contains(&a.ip())));
    let (code, body, kind) = if !allowed {
        (403, "not allowed\n".to_string(), "text/plain")
    } else if request.url() != "/metrics" && !request.url().starts_with("/metrics?") {
        (404, "try /metrics\n".to_string(), "text/plain")
    } else {
        match controls.snapshot(SNAPSHOT_WAIT) {
            Some(r) => (200, render(&r), "text/plain; version=0.0.4; charset=utf-8"),
            None => (503, "the daemon did not answer\n".to_string(), "text/plain"),
        }
    };
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], kind.as_bytes());
    let mut response = tiny_http::Response::from_string(body).with_status_code(code);
    if let Ok(h) = header {
        response = response.with_header(h);
    }
    if let Err(e) = request.respond(response) {
        log::debug!("metrics: {e}");
    }
}

/// One metric family: `# HELP`, `# TYPE`, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn new<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            let l: Vec<String> =
                labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let _ = write!(self.out, "{{{}}}", l.join(","));
        }
        let _ = writeln!(self.out, " {value}");
        self
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Families of one unlabelled sample each: (name, help, value).
fn scalars(out: &mut String, kind: &str, families: &[(&str, &str, u64)]) {
    for (name, help, v) in families {
        Family::new(out, name, kind, help).sample(name, &[], *v);
    }
}

/// One of a kind's counters.
type KindCounter = fn(&inlookup_core::admin::KindStats) -> u64;

/// The report in the text exposition format.
pub fn render(r: &StatsReport) -> String {
    let mut out = String::new();
    let per_kind: [(&str, &str, KindCounter); 13] = [
        ("inlookup_requests_total", "Requests decoded, by kind.", |k| k.requests),
        ("inlookup_hits_total", "Answered from a fresh positive cache entry.", |k| k.hits),
        ("inlookup_negative_hits_total", "Answered from a fresh negative cache entry.", |k| {
            k.negative_hits
        }),
        ("inlookup_misses_total", "Sent to a worker (absent, expired or cache off).", |k| k.misses),
        ("inlookup_coalesced_total", "Misses that joined a lookup already in flight.", |k| {
            k.coalesced
        }),
        (
            "inlookup_refreshed_ahead_total",
            "Hits late in their TTL looked up again in the background (REFRESH_AHEAD).",
            |k| k.refreshed_ahead,
        ),
        ("inlookup_expired_total", "Cache entries found expired.", |k| k.expirations),
        ("inlookup_stale_served_total", "Failed lookups answered from an expired entry.", |k| {
            k.stale_served
        }),
        ("inlookup_backend_errors_total", "Lookups that failed in the backend.", |k| {
            k.backend_errors
        }),
        ("inlookup_queue_full_total", "Requests refused at once: the queue was full.", |k| {
            k.queue_full
        }),
        ("inlookup_evictions_total", "Entries pushed out of the full cache.", |k| k.evictions),
        ("inlookup_oversized_total", "Answers too long for a classic reply (-1 there).", |k| {
            k.oversized
        }),
        ("inlookup_refused_total", "Requests of this kind refused as bad.", |k| k.refused),
    ];
    for (name, help, get) in per_kind {
        let mut f = Family::new(&mut out, name, "counter", help);
        for kind in QueryKind::ALL {
            if let Some(k) = r.kinds.get(kind.name()) {
                f.sample(name, &[("kind", kind.name())], get(k));
            }
        }
    }
    let gauges = [
        ("inlookup_cache_entries", "Entries in the cache.", r.cache_entries),
        ("inlookup_cache_capacity", "The cache's capacity (0: off).", r.cache_capacity),
        ("inlookup_workers", "Lookup worker threads.", r.workers),
        ("inlookup_workers_busy", "Lookup workers serving a lookup now.", r.workers_busy),
        ("inlookup_queue_depth", "Lookups waiting for a worker.", r.queued),
        ("inlookup_in_flight", "Distinct lookups queued or running.", r.in_flight),
        ("inlookup_uptime_seconds", "Seconds since the daemon started.", r.uptime_secs),
    ];
    scalars(&mut out, "gauge", &gauges);
    let counters = [
        (
            "inlookup_bad_frames_total",
            "Bytes that were not a frame (one per resync).",
            r.bad_frames,
        ),
        ("inlookup_bad_requests_total", "Well-formed requests refused.", r.bad_requests),
        ("inlookup_mysql_connects_total", "MySQL connections opened.", r.mysql_connects),
        ("inlookup_worker_panics_total", "Lookup workers that panicked.", r.worker_panics),
        ("inlookup_reply_fifos_swept_total", "Abandoned reply FIFOs removed.", r.swept_reply_fifos),
    ];
    scalars(&mut out, "counter", &counters);
    let name = "inlookup_tcp_connections";
    Family::new(&mut out, name, "gauge", "TCP connections reading or waiting for a reply.").sample(
        name,
        &[],
        r.tcp_connections,
    );
    let name = "inlookup_tcp_connections_total";
    Family::new(&mut out, name, "counter", "TCP connections, by what became of them.")
        .sample(name, &[("outcome", "accepted")], r.tcp_connections_total)
        .sample(name, &[("outcome", "refused_allow")], r.tcp_refused)
        .sample(name, &[("outcome", "refused_busy")], r.tcp_busy)
        .sample(name, &[("outcome", "timed_out")], r.tcp_timed_out)
        .sample(name, &[("outcome", "tls_failed")], r.tcp_tls_failed);
    let name = "inlookup_replies_failed_total";
    Family::new(&mut out, name, "counter", "Replies not delivered, by cause.")
        .sample(name, &[("cause", "vanished")], r.vanished_clients)
        .sample(name, &[("cause", "refused_path")], r.refused_reply_paths)
        .sample(name, &[("cause", "full")], r.full_reply_fifos)
        .sample(name, &[("cause", "failed")], r.failed_replies.saturating_sub(r.full_reply_fifos));
    let name = "inlookup_backend_up";
    let mut f =
        Family::new(&mut out, name, "gauge", "1 if the backend answers, 0 if down or not tried.");
    for b in &r.backends {
        f.sample(name, &[("server", &b.server)], u64::from(b.state == BackendState::Up));
    }
    for (name, help, get) in [
        (
            "inlookup_backend_connects_total",
            "Connections opened to the backend.",
            (|b| b.connects) as fn(&inlookup_core::admin::BackendHealth) -> u64,
        ),
        ("inlookup_backend_failures_total", "Lookups or connects that failed.", |b| b.failures),
    ] {
        let mut f = Family::new(&mut out, name, "counter", help);
        for b in &r.backends {
            f.sample(name, &[("server", &b.server)], get(b));
        }
    }
    let i = &r.imap;
    let imap_gauges = [
        ("inlookup_imap_connections_in_use", "IMAP connections bound to a session.", i.in_use),
        ("inlookup_imap_connections_busy", "IMAP connections running a command.", i.busy),
        ("inlookup_imap_connections_idle", "IMAP connections parked.", i.idle),
        ("inlookup_imap_connections_opening", "IMAP connections being opened.", i.opening),
    ];
    scalars(&mut out, "gauge", &imap_gauges);
    let imap_counters = [
        ("inlookup_imap_created_total", "IMAP connections opened and logged in.", i.created),
        ("inlookup_imap_reused_total", "IMAP logins served by a kept connection.", i.reused),
        ("inlookup_imap_parked_total", "IMAP connections parked at logout.", i.parked),
        (
            "inlookup_imap_reclaimed_total",
            "Idle IMAP connections reclaimed for another.",
            i.reclaimed,
        ),
        (
            "inlookup_imap_closed_idle_total",
            "IMAP connections closed after the idle timeout.",
            i.closed_idle,
        ),
        (
            "inlookup_imap_closed_broken_total",
            "IMAP connections closed because they failed.",
            i.closed_broken,
        ),
        ("inlookup_imap_login_failures_total", "IMAP logins the server refused.", i.login_failures),
        ("inlookup_imap_connect_failures_total", "IMAP connects that failed.", i.connect_failures),
        ("inlookup_imap_busy_replies_total", "IMAP requests answered busy.", i.busy_replies),
        ("inlookup_imap_auth_hits_total", "IMAP auth cache hits (valid).", i.auth_hits),
        (
            "inlookup_imap_auth_negative_hits_total",
            "IMAP auth cache hits (invalid).",
            i.auth_negative_hits,
        ),
        ("inlookup_imap_auth_misses_total", "IMAP auth cache misses.", i.auth_misses),
    ];
    scalars(&mut out, "counter", &imap_counters);
    let d = &i.door;
    let door_gauges = [
        ("inlookup_imap_door_clients", "IMAP front door clients now.", d.clients),
        (
            "inlookup_imap_door_clients_peak",
            "IMAP front door clients at most at once.",
            d.peak_clients,
        ),
    ];
    scalars(&mut out, "gauge", &door_gauges);
    let door_counters = [
        ("inlookup_imap_door_accepted_total", "IMAP front door clients accepted.", d.accepted),
        (
            "inlookup_imap_door_refused_total",
            "IMAP front door clients sent away (too many).",
            d.refused,
        ),
        (
            "inlookup_imap_door_logins_fresh_total",
            "IMAP front door logins made at the server.",
            d.logins_fresh,
        ),
        (
            "inlookup_imap_door_logins_reused_total",
            "IMAP front door logins served by a parked connection.",
            d.logins_reused,
        ),
        (
            "inlookup_imap_door_logins_refused_total",
            "IMAP front door logins refused.",
            d.logins_refused,
        ),
        (
            "inlookup_imap_door_logouts_parked_total",
            "IMAP front door logouts that parked the connection.",
            d.logouts_parked,
        ),
        (
            "inlookup_imap_door_bytes_in_total",
            "Bytes relayed from IMAP front door clients.",
            d.bytes_in,
        ),
        (
            "inlookup_imap_door_bytes_out_total",
            "Bytes relayed to IMAP front door clients.",
            d.bytes_out,
        ),
        (
            "inlookup_imap_door_closed_mid_command_total",
            "IMAP connections closed because the door client left mid-command.",
            d.closed_mid_command,
        ),
        (
            "inlookup_imap_door_closed_state_changed_total",
            "IMAP connections logged out, not parked, after ENABLE or NOTIFY.",
            d.closed_state_changed,
        ),
    ];
    scalars(&mut out, "counter", &door_counters);
    if let Some(sh) = &r.shared_cache {
        let gauges = [
            ("inlookup_shared_cache_entries", "Entries published in the shared cache.", sh.entries),
            ("inlookup_shared_cache_bytes", "Key and reply bytes published.", sh.bytes),
            ("inlookup_shared_cache_slots", "Slots of the shared cache.", sh.slots),
            (
                "inlookup_shared_cache_generation",
                "The shared cache's flush generation.",
                sh.generation,
            ),
        ];
        scalars(&mut out, "gauge", &gauges);
        let counters = [
            ("inlookup_shared_cache_published_total", "Answers published.", sh.published),
            (
                "inlookup_shared_cache_too_big_total",
                "Answers too long for a shared cache slot.",
                sh.too_big,
            ),
        ];
        scalars(&mut out, "counter", &counters);
    }
    if let Some(inv) = r.invalidation.as_ref().filter(|i| i.state != "off") {
        let gauges = [
            (
                "inlookup_invalidation_up",
                "1 while the replication stream is read (INVALIDATE=binlog), 0 while answers live out their TTLs.",
                u64::from(inv.state == "up"),
            ),
            (
                "inlookup_invalidation_lag_milliseconds",
                "From the last event's time in the binlog (whole seconds) to its eviction.",
                inv.lag_ms.unwrap_or(0),
            ),
        ];
        scalars(&mut out, "gauge", &gauges);
        let counters = [
            (
                "inlookup_invalidation_events_total",
                "Row events of the IndiMail tables read.",
                inv.events,
            ),
            (
                "inlookup_invalidation_statements_total",
                "Statements on the IndiMail tables read (their kinds evicted whole).",
                inv.statements,
            ),
            (
                "inlookup_invalidation_evicted_total",
                "Cache entries evicted by them.",
                inv.keys_evicted,
            ),
            (
                "inlookup_invalidation_full_flushes_total",
                "Whole-cache flushes: the stream could not resume where it stopped.",
                inv.full_flushes,
            ),
            (
                "inlookup_invalidation_connects_total",
                "Times the stream was (re)connected.",
                inv.connects,
            ),
        ];
        scalars(&mut out, "counter", &counters);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlookup_core::admin::{BackendHealth, KindStats};

    #[test]
    fn every_family_has_help_and_type_and_labels_are_escaped() {
        let mut r = StatsReport::default();
        r.kinds.insert("pwd".into(), KindStats { requests: 3, hits: 2, ..KindStats::default() });
        r.backends.push(BackendHealth {
            server: "mysql://u@\"odd\"/db".into(),
            state: BackendState::Up,
            ..BackendHealth::default()
        });
        let text = render(&r);
        assert!(text.contains("inlookup_requests_total{kind=\"pwd\"} 3\n"), "{text}");
        assert!(text.contains("inlookup_hits_total{kind=\"pwd\"} 2\n"));
        assert!(text.contains("inlookup_backend_up{server=\"mysql://u@\\\"odd\\\"/db\"} 1\n"));
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(helps, types);
        assert!(helps > 30);
    }

    #[test]
    fn the_front_doors_counters_are_metrics() {
        let mut r = StatsReport::default();
        r.imap.door.logins_reused = 19;
        r.imap.door.peak_clients = 3;
        let text = render(&r);
        assert!(text.contains("inlookup_imap_door_logins_reused_total 19\n"), "{text}");
        assert!(
            text.contains(
                "# TYPE inlookup_imap_door_clients_peak gauge\ninlookup_imap_door_clients_peak 3\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn allow_lists_take_addresses_and_ranges() {
        let a = parse_allow("127.0.0.0/8, ::1,10.1.2.3").unwrap();
        assert_eq!(a.len(), 3);
        assert!(a[0].contains(&"127.9.9.9".parse::<std::net::IpAddr>().unwrap()));
        assert!(a[2].contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap()));
        assert!(parse_allow("localhost").is_err());
    }
}
