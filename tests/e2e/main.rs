//! End-to-end tests: the real `inlookup` binary against a real MariaDB, asked through the
//! real client and through raw FIFO writes. One binary, one harness (`harness.rs`).

mod harness;

mod bad_input;
mod caching;
mod concurrency;
mod kinds;
mod lifecycle;
