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

fn main() -> ExitCode {
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
    let listener = match Listener::bind(&cfg) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    if let Some(t) = &target {
        for p in listener.paths() {
            t.chown(&p);
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
