//! # compare: inlookup against the transport floor, raw MySQL and a connection per lookup
//!
//! `scripts/bench.sh` is the one command; it builds this program and runs
//! `cargo bench --bench compare -- run --mysql HOST:PORT …`. The program starts its own
//! daemons and an echo server, runs every case side by side (rounds × client counts × cases,
//! the case order rotating each time so drift hits every case alike), measures CPU and
//! memory from `/proc`, and writes `docs/bench/results.{md,json,svg}`. See
//! `docs/bench/README.md` for what each case means and how to read the results.
//!
//! Concurrency is real: every client is a separate process (this same binary re-executed
//! as `worker`), timing each request with a monotonic clock.
//!
//! # Layout
//!
//! - [`cli`]: `key=value` and `--flag value` arguments.
//! - [`case`]: the cases and what each measures.
//! - [`worker`]: a client process: one case, one key lane, timed requests.
//! - [`imap`]: the IMAP rows: a command on an inlookup session against a fresh login, on a
//!   forking and a process-reusing Dovecot.
//! - [`lean`]: a what-if client (inquery's `raw` without its 50 µs sleep), for the profile.
//! - [`echo`]: the floor: a trivial single-threaded FIFO echo server.
//! - [`setup`]: the bench database, inlookup daemons, the echo process, worker spawning.
//! - [`procfs`]: CPU ticks, RSS and machine load from `/proc`.
//! - [`stats`]: percentiles and per-cell summaries.
//! - [`plan`]: the orchestrator: the matrix, CPU, MariaDB, what-if and RSS measurements.
//! - [`results`]: what a run produced (`results.json`) and the goals judged from it.
//! - [`report`]: `results.md`, `results.json`, `results.svg`.
//! - [`common`]: what the soak shares (`benches/common.rs`).

#[path = "compare/case.rs"]
mod case;
#[path = "compare/cli.rs"]
mod cli;
#[path = "common.rs"]
#[allow(dead_code)]
mod common;
#[path = "compare/echo.rs"]
mod echo;
#[path = "compare/imap.rs"]
mod imap;
#[path = "compare/lean.rs"]
mod lean;
#[path = "compare/plan.rs"]
mod plan;
#[path = "compare/procfs.rs"]
mod procfs;
#[path = "compare/report.rs"]
mod report;
#[path = "compare/results.rs"]
mod results;
#[path = "compare/setup.rs"]
mod setup;
#[path = "compare/stats.rs"]
mod stats;
#[path = "compare/worker.rs"]
mod worker;

use std::process::ExitCode;

/// The failure type of this program: a message is enough for a benchmark.
pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    // `cargo bench` appends `--bench`; it means nothing to a harness-less program.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let (cmd, rest) = match args.first().map(String::as_str) {
        Some(c @ ("run" | "report" | "worker" | "echo" | "help" | "--help" | "-h")) => {
            (c, &args[1..])
        }
        _ => ("run", &args[..]),
    };
    let result = match cmd {
        "worker" => worker::main(rest),
        "echo" => echo::main(rest),
        "report" => plan::rerender(rest),
        "help" | "--help" | "-h" => {
            println!("{}", plan::USAGE);
            Ok(())
        }
        _ => plan::main(rest),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}
