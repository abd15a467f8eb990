//! # inquery
//!
//! How a program asks inlookup. [`Client`] sends one query over the daemon's request FIFO
//! and reads the answer from a private reply FIFO, exactly as IndiMail's `inquery()` does
//! (same wire format, FIFO resolution, FIFO_MODE and timeouts), with typed results and
//! typed errors. [`Direct`] answers the same calls from MySQL with the daemon's own SQL, and
//! [`Querier`] picks one of the two as IndiMail's callers do (QUERY_CACHE), optionally
//! falling back to MySQL when the daemon is down. All three answer the seven classic
//! questions through one trait, [`Lookup`] (`ask` plus the typed calls `user_status`,
//! `relay_allowed`, `passwd`, `host`, `aliases`, `limits`, `real_domain`): bring it into
//! scope with `use inquery::Lookup;`. C programs link `libinquery` and include
//! `inquery.h` for a drop-in `inquery()` and a re-entrant `inquery_r()`.
//!
//! ```no_run
//! use inquery::{Client, Lookup, UserStatus};
//! let c = Client::from_env();
//! match c.user_status("alice@example.com") {
//!     Ok(UserStatus::Active) => println!("deliver"),
//!     Ok(other) => println!("refuse: {}", other.describe()),
//!     Err(e) => eprintln!("temporary failure: {e}"),
//! }
//! ```
//!
//! # Layout
//!
//! - [`lookup`]: the typed calls, written once for all three ([`Lookup`]).
//! - [`client`]: the FIFO client.
//! - [`resolve`]: which request FIFO (INFIFO, INFIFODIR, instances).
//! - [`error`]: what can go wrong, and in which phase.
//! - [`direct`]: direct mode, the same calls over MySQL.
//! - [`querier`]: daemon or direct (QUERY_CACHE), and the fallback.
//! - [`ffi`]: the C ABI behind `include/inquery.h`.
//! - [`imap`]: IMAP sessions kept by the daemon (login, command, logout, auth).

pub mod client;
pub mod direct;
pub mod error;
pub mod ffi;
pub mod imap;
pub mod lookup;
pub mod querier;
pub mod resolve;
pub mod shared;
pub mod tcp;

pub use client::Client;
pub use direct::Direct;
pub use error::{Error, Phase};
pub use inlookup_core::{Answer, Limits, MailHost, Passwd, QueryKind, UserStatus};
pub use lookup::Lookup;
pub use querier::{Mode, Querier};

/// A random number from the OS, for reply FIFO names and instance choice.
pub(crate) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No entropy source: fall back to time and pid, still unique per process.
        let t =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32);
    }
    u64::from_ne_bytes(b)
}

/// A uniformly random index below `n` (n > 0).
pub(crate) fn random_index(n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    // Rejection sampling keeps the choice uniform.
    let n = n as u64;
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let r = random_u64();
        if r < zone {
            return (r % n) as usize;
        }
    }
}
