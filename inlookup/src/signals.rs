//! The one place that maps signals to actions. Handlers do no work: a thread turns each
//! signal into a [`Control`] message for the I/O thread.

use crate::wake::{self, WakeReceiver, Waker};
use crossbeam_channel::{unbounded, Receiver, Sender};
use inlookup_core::admin::StatsReport;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

/// What the I/O thread is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// HUP: flush every cache entry and reconnect every backend.
    FlushAndReconnect,
    /// USR1: log the counters.
    LogStats,
    /// USR2: toggle per-request debug lines.
    ToggleDebug,
    /// TERM / INT: stop reading, finish what is in flight, remove the FIFOs, exit 0.
    Shutdown,
}

/// The action for a signal.
pub fn action(sig: i32) -> Option<Control> {
    match sig {
        SIGHUP => Some(Control::FlushAndReconnect),
        SIGUSR1 => Some(Control::LogStats),
        SIGUSR2 => Some(Control::ToggleDebug),
        SIGTERM | SIGINT => Some(Control::Shutdown),
        _ => None,
    }
}

/// Sends [`Control`] messages to a running server, from signals, tests or an embedder.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    tx: Sender<Control>,
    /// Where a snapshot of the counters is asked for (metrics): the channel to answer on.
    snapshots: Sender<Sender<StatsReport>>,
    waker: Waker,
}

/// The server's end: the messages, and the wake pipe the I/O thread polls (workers wake it
/// through the same pipe).
#[derive(Debug)]
pub struct Controls {
    pub(crate) rx: Receiver<Control>,
    pub(crate) snapshots: Receiver<Sender<StatsReport>>,
    pub(crate) wake: WakeReceiver,
    pub(crate) waker: Waker,
}

/// A connected pair: give [`Controls`] to [`crate::run`], keep the handle.
///
/// # Errors
/// No descriptors left for the wake pipe.
pub fn channel() -> std::io::Result<(ControlHandle, Controls)> {
    let (tx, rx) = unbounded();
    let (snapshots_tx, snapshots) = unbounded();
    let (waker, wake) = wake::pair().map_err(std::io::Error::from)?;
    let handle = ControlHandle { tx, snapshots: snapshots_tx, waker: waker.clone() };
    Ok((handle, Controls { rx, snapshots, wake, waker }))
}

impl ControlHandle {
    /// Asks the server to do `c`.
    pub fn send(&self, c: Control) {
        let _ = self.tx.send(c);
        self.waker.wake();
    }

    /// The server's counters, as STATS gives them, if it answers within `within` (the I/O
    /// thread makes the report between two requests; nothing waits on the asker).
    pub fn snapshot(&self, within: std::time::Duration) -> Option<StatsReport> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.snapshots.send(tx).ok()?;
        self.waker.wake();
        rx.recv_timeout(within).ok()
    }
}

/// Ignores SIGPIPE (a vanished client must cost an EPIPE, not the process) and forwards
/// HUP, USR1, USR2, TERM and INT to `handle` from a small thread.
///
/// # Errors
/// The signal handlers could not be installed.
pub fn install(handle: ControlHandle) -> std::io::Result<()> {
    // SAFETY: setting SIGPIPE's disposition to SIG_IGN installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
    let mut signals = Signals::new([SIGHUP, SIGUSR1, SIGUSR2, SIGTERM, SIGINT])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            if let Some(c) = action(sig) {
                handle.send(c);
            }
        }
    })?;
    Ok(())
}
