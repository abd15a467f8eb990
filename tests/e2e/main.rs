//! End-to-end tests: the real `inlookup` binary against a real MariaDB, asked through the
//! real client and through raw FIFO writes. One binary, one harness (`harness.rs`).

// The harness's helpers are test code too; a failed setup step should panic with its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod alias_domains;
mod bad_input;
mod cabi;
mod caching;
mod cli;
mod cluster;
mod concurrency;
mod direct;
mod fleet;
mod hostile;
mod imap;
mod imap_clients;
mod imap_door;
mod keepalive;
mod kinds;
mod leaks;
mod lifecycle;
mod metrics;
mod mysql_tls;
mod real_faults;
mod service;
mod shared_cache;
mod tcp;
mod top;
