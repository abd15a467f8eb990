//! # inlookup
//!
//! The daemon: answers IndiMail's lookups over FIFOs from a bounded, ordered cache in front
//! of persistent MySQL connections. One I/O thread polls the request FIFOs, decodes, answers
//! cache hits and inlookup's own kinds itself, and hands misses to a bounded pool of worker
//! threads, each owning one MySQL connection; a slow backend never stalls a cache hit.
//!
//! The binary binds the FIFOs ([`Listener::bind`]), drops root, installs the signal
//! mapping and calls [`run`]; tests drive the same [`run`] with backends built to fail.
//!
//! # Layout
//!
//! - [`config`]: flags and IndiMail's environment names, resolved into a [`Config`].
//! - [`server`]: the I/O thread ([`run`]).
//! - [`cache`]: the LRU with per-kind positive and negative TTLs.
//! - [`pool`]: the bounded job queue and worker threads.
//! - [`backend`]: what answers a miss ([`backend::MysqlBackend`]).
//! - [`fifo`]: request FIFOs and the confined reply writer.
//! - [`imap`]: persistent, reusable IMAP sessions (the four IMAP kinds).
//! - [`signals`]: signals into [`signals::Control`] messages.
//! - [`stats`]: counters and their USR1 text.
//! - [`logging`], [`privs`], [`wake`]: stderr/syslog logging, dropping root, the self-pipe.

pub mod backend;
pub mod cache;
pub mod config;
pub mod fifo;
pub mod imap;
pub mod logging;
pub mod pool;
pub mod privs;
pub mod server;
pub mod signals;
pub mod stats;
pub mod wake;

pub use config::{Args, Config};
pub use server::{run, Listener, ServeError};
