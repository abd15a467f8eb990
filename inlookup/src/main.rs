//! `inlookup`: bind the FIFOs, drop root, map signals, serve until TERM.

use clap::Parser;
use inlookup::backend::MysqlBackend;
use inlookup::{logging, privs, signals, Args, Config, Listener};
use inlookup_core::Lookups;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    log::error!("{msg}");
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
    let cfg = match Config::from_args(args) {
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
    let lookups = match Lookups::new(cfg.lookup.clone()) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let target = match privs::target(cfg.user.as_deref()) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    // FIFO directories that bind is about to create: the unprivileged user must own them to
    // remove its FIFOs at exit (and a supervisor's restart must find them writable).
    let new_dirs: Vec<std::path::PathBuf> = if target.is_some() {
        let mut v: Vec<std::path::PathBuf> = cfg
            .fifos
            .iter()
            .filter_map(|p| p.parent().map(std::path::Path::to_path_buf))
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
            .collect();
        v.dedup();
        v
    } else {
        Vec::new()
    };
    let listener = match Listener::bind(&cfg) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    if let Some(t) = &target {
        for p in new_dirs.iter().chain(listener.paths().iter()) {
            t.chown(p);
        }
        if let Err(e) = t.drop_root() {
            return fail(e);
        }
    }
    let (handle, controls) = match signals::channel() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if let Err(e) = signals::install(handle) {
        return fail(format!("signals: {e}"));
    }
    let connects = Arc::new(AtomicU64::new(0));
    let backends =
        MysqlBackend::factory(cfg.mysql.clone(), lookups, cfg.ping_idle, connects.clone());
    match inlookup::run(cfg, listener, backends, connects, controls) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
