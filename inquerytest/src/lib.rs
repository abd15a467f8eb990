//! # inquerytest
//!
//! The diagnostic CLI: asks inlookup (or IndiMail's inlookup, or MySQL directly) one
//! question and shows the answer, with IndiMail's `inquerytest` flags and exit codes first,
//! and inlookup's own requests (ping, stats, flush, the IMAP sessions) and JSON output
//! beyond them.
//!
//! The library holds the command-line definition ([`command`], for the man page:
//! `inquerytest --generate-man > inquerytest.1`) and the program itself ([`main_with`]);
//! `main.rs` only calls it.
//!
//! # Layout
//!
//! - [`cli`]: the clap definition and the man page.
//! - [`run`]: from arguments to a client, an answer, output and an exit code.
//! - [`exit`]: the exit codes, the early-stop type and printing, shared by the subcommands.
//! - [`top`]: `inquerytest top`, the live view.
//! - [`output`]: the human-readable and JSON forms of each answer.
//! - `imap`: `inquerytest imap login|cmd|logout|auth`, passwords from a file or stdin.
//! - [`private`]: a private inlookup for one query, when `-i` names no FIFO.

pub mod cli;
pub mod exit;
mod imap;
pub mod output;
pub mod private;
pub mod run;
pub mod top;

pub use cli::command;
pub use exit::{EXIT_FAILURE, EXIT_OK, EXIT_SYSTEM, EXIT_USAGE};
pub use run::main_with;
