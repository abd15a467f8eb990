//! `inlookup`: bind the FIFOs, drop root, map signals, serve until TERM.

use clap::Parser;
use inlookup::{config, logging, metrics, privs, signals, Args, Backends, Config, Error, Listener};
use inlookup_core::Lookups;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A fatal error: said once on stderr (where the log goes too, unless it goes to syslog,
/// which then gets it as well).
fn fail(msg: impl std::fmt::Display) -> ExitCode {
    if logging::to_syslog() {
        log::error!("fatal: {msg}");
    }
    eprintln!("inlookup: fatal: {msg}");
    ExitCode::from(111)
}

/// `inlookup --generate-man` (hidden, first argument only): the man page in roff on stdout,
/// from the clap definitions; `scripts/gen-man.sh` writes it to `docs/man/inlookup.8`.
fn generate_man() -> ExitCode {
    let cmd = <Args as clap::CommandFactory>::command();
    let man = clap_mangen::Man::new(cmd).section("8").manual("System Manager's Manual");
    match man.render(&mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inlookup: --generate-man: {e}");
            ExitCode::from(111)
        }
    }
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "--generate-man") {
        return generate_man();
    }
    let args = Args::parse();
    let cfg = match Config::from_args(args, &config::process_env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("inlookup: {e}");
            return ExitCode::from(100);
        }
    };
    if let Err(e) = logging::init(cfg.syslog.as_deref(), cfg.debug) {
        eprintln!("inlookup: {e}");
        return ExitCode::from(111);
    }
    for notice in &cfg.notices {
        log::warn!("{notice}");
    }
    if inlookup::oneshot::wanted() {
        return match one_shot(&cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        };
    }
    match start(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Under tcpserver (TCPREMOTEIP set), as IndiMail's inlookup: one request from fd 0, its
/// reply to fd 1, over one MySQL connection, then exit.
fn one_shot(cfg: &Config) -> Result<(), Error> {
    use std::os::fd::AsFd;
    let lookups = Lookups::new(cfg.lookup.clone()).map_err(Error::Lookups)?;
    if let Some(t) = privs::target(cfg.user.as_deref())? {
        t.drop_root()?;
    }
    let mut backend = (Backends::from_config(cfg, lookups).map_err(Error::Lookups)?.factory)();
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    inlookup::oneshot::serve(&mut *backend, stdin.as_fd(), stdout.as_fd(), cfg.timeouts)
        .map_err(|e| Error::Io { what: "TCPREMOTEIP request", source: std::io::Error::other(e) })
}

/// Everything after logging: the lookups, privileges, FIFOs, signals, then [`inlookup::run`].
fn start(cfg: Config) -> Result<(), Error> {
    let lookups = Lookups::new(cfg.lookup.clone()).map_err(Error::Lookups)?;
    let target = privs::target(cfg.user.as_deref())?;
    // FIFO directories that bind is about to create: the unprivileged user must own them to
    // remove its FIFOs at exit (and a supervisor's restart must find them writable).
    let new_dirs: Vec<PathBuf> = if target.is_some() {
        let mut v: Vec<PathBuf> = cfg
            .fifos
            .iter()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
            .collect();
        v.dedup();
        v
    } else {
        Vec::new()
    };
    let mut listener = Listener::bind(&cfg)?;
    if let Some(t) = &target {
        for p in new_dirs.iter().chain(listener.paths().iter()) {
            t.chown(p);
        }
    }
    // After the FIFOs are chowned: the shared cache takes the first FIFO's group.
    let shared = listener.share(&cfg);
    if let Some(t) = &target {
        if let Some(p) = &shared {
            t.chown(p);
        }
        t.drop_root()?;
    }
    let (handle, controls) = signals::channel().map_err(Error::io("wake pipe"))?;
    if let Some(m) = &cfg.metrics {
        metrics::start(m, handle.clone())?;
    }
    signals::install(handle).map_err(Error::io("signals"))?;
    let backends = Backends::from_config(&cfg, lookups).map_err(Error::Lookups)?;
    inlookup::run(cfg, listener, backends, controls)
}
