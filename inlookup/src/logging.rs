//! Logging through the `log` facade: stderr (multilog and svlogd add timestamps) or syslog.
//! Debug lines are switched on and off at run time (`-v`, DEBUG, USR2).

use crate::error::LoggingError;
use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::Mutex;

/// Where log lines go.
enum Sink {
    Stderr,
    Syslog(Mutex<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>),
}

struct Logger {
    sink: Sink,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        match &self.sink {
            Sink::Stderr => {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "inlookup: {}: {}",
                    r.level().as_str().to_lowercase(),
                    r.args()
                );
            }
            Sink::Syslog(l) => {
                let msg = r.args().to_string();
                if let Ok(mut l) = l.lock() {
                    let _ = match r.level() {
                        log::Level::Error => l.err(msg),
                        log::Level::Warn => l.warning(msg),
                        log::Level::Info => l.info(msg),
                        _ => l.debug(msg),
                    };
                }
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the logger; `syslog_facility` chooses syslog. Debug lines start on if `debug`.
///
/// # Errors
/// An unknown facility or no syslog socket.
pub fn init(syslog_facility: Option<&str>, debug: bool) -> Result<(), LoggingError> {
    let sink = match syslog_facility {
        None => Sink::Stderr,
        Some(f) => {
            let facility: syslog::Facility =
                f.parse().map_err(|_| LoggingError::UnknownFacility(f.into()))?;
            let fmt = syslog::Formatter3164 {
                facility,
                hostname: None,
                process: "inlookup".into(),
                pid: std::process::id(),
            };
            let l = syslog::unix(fmt).map_err(LoggingError::Syslog)?;
            SYSLOG.store(true, std::sync::atomic::Ordering::Relaxed);
            Sink::Syslog(Mutex::new(l))
        }
    };
    // A second init (tests running the server in-process) keeps the first logger.
    let _ = log::set_boxed_logger(Box::new(Logger { sink }));
    set_debug(debug);
    Ok(())
}

/// Turns per-request debug lines on or off.
pub fn set_debug(on: bool) {
    log::set_max_level(if on { LevelFilter::Debug } else { LevelFilter::Info });
}

/// Whether log lines go to syslog (not stderr).
pub fn to_syslog() -> bool {
    SYSLOG.load(std::sync::atomic::Ordering::Relaxed)
}

/// Set when [`init`] chose syslog.
static SYSLOG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether debug lines are on.
pub fn debug_enabled() -> bool {
    log::max_level() >= LevelFilter::Debug
}
