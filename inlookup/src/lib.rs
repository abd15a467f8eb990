//! # inlookup
//!
//! The daemon: answers IndiMail's lookups over FIFOs from a bounded, ordered cache in front
//! of persistent MySQL connections. One I/O thread polls the request FIFOs, decodes, answers
//! cache hits and inlookup's own kinds itself, and hands misses to a bounded pool of worker
//! threads, each owning one MySQL connection; a slow backend never stalls a cache hit.
//!
//! The binary builds its [`Config`] ([`Config::from_args`]), sets up logging, binds the
//! FIFOs ([`Listener::bind`]), drops root, installs the signal mapping and calls [`run`]
//! with its listener, its backends and its controls; tests drive the same [`run`] with
//! backends built to fail, stall or panic, and send the controls themselves.
//!
//! # Layout
//!
//! A miss, from frame to reply: [`server`] reads and decodes it, [`dispatch`] decides (a
//! miss: queue a lookup), [`pool`] runs it on a worker, [`backend`] asks MySQL (with the
//! SQL of `inlookup_core::lookup`), and [`fifo`] writes the reply.
//!
//! - [`server`]: the I/O thread: poll, read, decode, and carry out the dispatcher's effects.
//! - [`dispatch`]: every decision: cache, coalescing, flush generations, counters, health.
//! - [`pool`]: the one worker pool (bounded queue, threads, job guard), for lookups and IMAP.
//! - [`backend`]: what answers a miss ([`backend::MysqlBackend`]), its typed errors, and
//!   the lookup handler the pool runs.
//! - [`cluster`]: IndiMail's clustered layout: each lookup on the database IndiMail's would
//!   ask (central or the user's mail store), back-off and health per database.
//! - [`fifo`]: request FIFOs, the confined reply FIFOs and the [`fifo::Replier`].
//! - [`cache`]: the LRU with per-kind positive and negative TTLs.
//! - [`imap`]: the wiring of the IMAP sessions (crate `inlookup-imap`) into the daemon.
//! - [`config`]: flags and IndiMail's environment names, resolved into a [`Config`].
//! - [`signals`]: signals into [`signals::Control`] messages.
//! - [`stats`]: counters and their USR1 text.
//! - [`tcp`]: lookups over TCP (TCP_LISTEN): the listener, the allow-list, the connections
//!   waiting for their reply.
//! - [`oneshot`]: IndiMail's mode under tcpserver (TCPREMOTEIP): one request on fd 0, its
//!   reply on fd 1, straight from MySQL.
//! - [`binlog`], [`invalidate`]: INVALIDATE=binlog: the replication stream's reader and
//!   the mapping from a changed row to the cache keys it makes stale.
//! - [`replicas`]: MYSQL_REPLICAS: reads over replicas, failover, lag checks.
//! - [`metrics`]: the counters over HTTP for a monitoring system (METRICS_LISTEN).
//! - [`error`]: the daemon's [`Error`].
//! - [`logging`], [`privs`], [`wake`]: stderr/syslog logging, dropping root, the self-pipe.

pub mod backend;
pub mod binlog;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod dispatch;
pub mod door;
pub mod error;
pub mod fifo;
pub mod imap;
pub mod invalidate;
pub mod logging;
pub mod metrics;
pub mod oneshot;
pub mod pool;
pub mod privs;
pub mod replicas;
pub mod server;
pub mod shared;
pub mod signals;
pub mod stats;
pub mod tcp;
pub mod wake;

pub use backend::Backends;
pub use config::{Args, Config};
pub use error::Error;
pub use server::{run, Listener};
