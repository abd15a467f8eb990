//! `inquerytest top`: a live view of a running inlookup, as imapproxy's `pimpstat` or
//! `nscd -g` give one: two STATS snapshots an interval apart make each frame's rates.
//!
//! On a terminal the screen is redrawn every interval and `q` (or Ctrl-C) ends it, with the
//! terminal's settings restored; elsewhere each frame is printed after the last. `--once`
//! prints one frame and exits.

use crate::exit::{fail, print, query_failed, Fail, EXIT_OK, EXIT_SYSTEM};
use inlookup_core::admin::{KindStats, StatsReport};
use inlookup_core::QueryKind;
use inquery::Client;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs the view until `q`, Ctrl-C or TERM (or after one frame with `once`).
///
/// # Errors
/// The daemon stopped answering, or stdout went away.
pub(crate) fn run(client: &Client, once: bool, every: Duration) -> Result<i32, Fail> {
    let stats = || client.stats().map_err(|e| query_failed("top", &e));
    let mut prev = stats()?;
    let mut at = Instant::now();
    if once {
        std::thread::sleep(every);
        let now = stats()?;
        print(frame(&prev, &now, at.elapsed(), false))?;
        return Ok(EXIT_OK);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| fail(EXIT_SYSTEM, format!("signals: {e}")))?;
    }
    let tty = std::io::stdout().is_terminal();
    let keys = Keys::open();
    while !stop.load(Ordering::Relaxed) {
        if keys.as_ref().is_some_and(|k| k.quit_within(every)) {
            break;
        }
        if keys.is_none() {
            std::thread::sleep(every);
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = stats()?;
        let text = frame(&prev, &now, at.elapsed(), keys.is_some());
        print(if tty { format!("\x1b[H\x1b[2J{text}") } else { format!("{text}\n") })?;
        (prev, at) = (now, Instant::now());
    }
    Ok(EXIT_OK)
}

/// Standard input as a terminal that hands over each key at once (no line editing, no
/// echo; Ctrl-C still a signal); restored when dropped.
struct Keys {
    saved: Termios,
}

impl Keys {
    /// `None` when standard input is not a terminal.
    fn open() -> Option<Keys> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        raw.local_flags.remove(LocalFlags::ICANON | LocalFlags::ECHO);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(Keys { saved })
    }

    /// Waits up to `wait` for a key; true when it was `q` or `Q`. (A signal ends the wait
    /// early; the caller checks its flag.)
    fn quit_within(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let stdin = std::io::stdin();
            let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32)
                .unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) => return false,
                Ok(_) => {
                    let mut key = [0u8; 16];
                    match nix::unistd::read(stdin.as_fd(), &mut key) {
                        Ok(0) => return true, // the terminal went away
                        Ok(n) if key[..n].iter().any(|k| *k == b'q' || *k == b'Q') => return true,
                        _ => {}
                    }
                }
                Err(_) => return false,
            }
        }
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Per second, over the interval.
fn rate(new: u64, old: u64, secs: f64) -> String {
    format!("{:.1}/s", new.saturating_sub(old) as f64 / secs.max(0.001))
}

/// `part` of `whole` in per cent, or `-` when there was nothing.
fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_string()
    } else {
        format!("{:.1} %", part as f64 * 100.0 / whole as f64)
    }
}

/// The lookup kinds (IndiMail's seven and ALIAS-FULL) summed.
fn lookups(r: &StatsReport) -> KindStats {
    let mut t = KindStats::default();
    for k in QueryKind::ALL.iter().filter(|k| k.answers().is_some()) {
        if let Some(s) = r.kinds.get(k.name()) {
            t.requests += s.requests;
            t.hits += s.hits;
            t.negative_hits += s.negative_hits;
            t.misses += s.misses;
            t.coalesced += s.coalesced;
            t.backend_errors += s.backend_errors;
            t.stale_served += s.stale_served;
            t.queue_full += s.queue_full;
            t.evictions += s.evictions;
            t.expirations += s.expirations;
        }
    }
    t
}

/// One frame: the rates between two snapshots taken `elapsed` apart.
pub fn frame(old: &StatsReport, new: &StatsReport, elapsed: Duration, keys: bool) -> String {
    let secs = elapsed.as_secs_f64();
    let (o, n) = (lookups(old), lookups(new));
    let answered = |k: &KindStats| k.hits + k.negative_hits + k.misses;
    let hits = (n.hits + n.negative_hits).saturating_sub(o.hits + o.negative_hits);
    let mut f = String::new();
    let _ = writeln!(
        f,
        "inlookup {} (pid {}), up {} s; every {:.0} s{}",
        new.version,
        new.pid,
        new.uptime_secs,
        secs.round(),
        if keys { " (q to quit)" } else { "" }
    );
    let _ = writeln!(
        f,
        "lookups  {}   hits {} (negative {})   misses {}   coalesced {}   errors {}",
        rate(n.requests, o.requests, secs),
        pct(hits, answered(&n).saturating_sub(answered(&o))),
        pct(
            n.negative_hits.saturating_sub(o.negative_hits),
            answered(&n).saturating_sub(answered(&o))
        ),
        rate(n.misses, o.misses, secs),
        rate(n.coalesced, o.coalesced, secs),
        rate(n.backend_errors, o.backend_errors, secs),
    );
    let _ = writeln!(
        f,
        "cache    {} of {} entries   evictions {}   expired {}   served stale {}",
        new.cache_entries,
        new.cache_capacity,
        rate(n.evictions, o.evictions, secs),
        rate(n.expirations, o.expirations, secs),
        rate(n.stale_served, o.stale_served, secs),
    );
    let _ = writeln!(
        f,
        "workers  {} of {} busy   queue {}   in flight {}   refused (queue full) {}",
        new.workers_busy,
        new.workers,
        new.queued,
        new.in_flight,
        rate(n.queue_full, o.queue_full, secs),
    );
    let _ = writeln!(
        f,
        "replies  client gone {}   refused paths {}   failed {}   reply FIFOs swept {}",
        rate(new.vanished_clients, old.vanished_clients, secs),
        rate(new.refused_reply_paths, old.refused_reply_paths, secs),
        rate(new.failed_replies, old.failed_replies, secs),
        new.swept_reply_fifos,
    );
    for b in &new.backends {
        let _ = writeln!(f, "{}", b.line());
    }
    let (i, j) = (&old.imap, &new.imap);
    let _ = writeln!(
        f,
        "IMAP     {} in use ({} busy), {} idle, {} opening   logins {} new, {} reused   auth cache {} hits, {} misses",
        j.in_use,
        j.busy,
        j.idle,
        j.opening,
        rate(j.created, i.created, secs),
        rate(j.reused, i.reused, secs),
        rate(j.auth_hits + j.auth_negative_hits, i.auth_hits + i.auth_negative_hits, secs),
        rate(j.auth_misses, i.auth_misses, secs),
    );
    let _ =
        writeln!(f, "\n{:<11}{:>10}{:>9}{:>10}{:>10}", "kind", "req/s", "hits", "misses", "errors");
    for k in QueryKind::ALL.iter().filter(|k| k.answers().is_some()) {
        let (Some(a), Some(b)) = (old.kinds.get(k.name()), new.kinds.get(k.name())) else {
            continue;
        };
        if b.requests == 0 {
            continue;
        }
        let done = answered(b).saturating_sub(answered(a));
        let hit = (b.hits + b.negative_hits).saturating_sub(a.hits + a.negative_hits);
        let _ = writeln!(
            f,
            "{:<11}{:>10}{:>9}{:>10}{:>10}",
            k.name(),
            rate(b.requests, a.requests, secs),
            pct(hit, done),
            rate(b.misses, a.misses, secs),
            rate(b.backend_errors, a.backend_errors, secs),
        );
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_ratios_come_from_the_difference() {
        let mut a = StatsReport { cache_capacity: 100, workers: 5, ..StatsReport::default() };
        a.kinds.insert(
            "pwd".into(),
            KindStats { requests: 10, hits: 5, misses: 5, ..KindStats::default() },
        );
        let mut b = a.clone();
        b.kinds.insert(
            "pwd".into(),
            KindStats {
                requests: 30,
                hits: 23,
                negative_hits: 1,
                misses: 6,
                ..KindStats::default()
            },
        );
        let f = frame(&a, &b, Duration::from_secs(2), false);
        // 20 more requests in 2 s; of the 20 answered, 19 from the cache (1 negative).
        assert!(f.contains("lookups  10.0/s   hits 95.0 % (negative 5.0 %)   misses 0.5/s"), "{f}");
        assert!(f.contains("\npwd            10.0/s   95.0 %     0.5/s     0.0/s\n"), "{f}");
        assert!(f.contains("workers  0 of 5 busy   queue 0"), "{f}");
        assert!(!f.contains("(q to quit)"));
        // Nothing happened: no ratio, not 0 %.
        let idle = frame(&b, &b, Duration::from_secs(1), true);
        assert!(idle.contains("hits - (negative -)") && idle.contains("(q to quit)"), "{idle}");
    }
}
