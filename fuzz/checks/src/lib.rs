//! The invariants of inlookup's fuzz targets: one function per target, taking the fuzzer's
//! bytes and asserting what must hold for any input. A violated invariant panics, which is a
//! crash for libFuzzer (`fuzz/fuzz_targets/*.rs`, run by `scripts/fuzz.sh`) and a failure of
//! the corpus replay test (`tests/corpus.rs`, run by `cargo test` on stable Rust).
//!
//! | target | what it drives |
//! | --- | --- |
//! | [`frame`] | `inlookup_core::wire::decode` in the server's resync loop, whole and in chunks |
//! | [`payload`] | `inlookup::dispatch::Dispatcher` and the JSON requests of `inlookup_core::admin` |
//! | [`imap_response`] | `inlookup_imap::frame::Framer`, fed in chunks |
//! | [`imap_command`] | `inlookup_imap::command::parse` |
//! | [`shared_reader`] | `inlookup_core::shared::Reader` on corrupt images, and the writer |
//! | [`door_track`] | the IMAP front door's in-step trackers, `inlookup_imap::door::track` |
//!
//! `docs/fuzz.md` lists the invariants and the hostile input classes each target covers.

mod door_track;
mod frame;
mod imap_command;
mod imap_response;
mod payload;
mod shared_reader;

pub use door_track::door_track;
pub use frame::frame;
pub use imap_command::{imap_command, imap_command_str};
pub use imap_response::imap_response;
pub use payload::payload;
pub use shared_reader::shared_reader;

/// A target's checks: panics when an invariant does not hold for the input.
pub type Check = fn(&[u8]);

/// The targets, by the name of their corpus directory and fuzz target.
pub const TARGETS: [(&str, Check); 6] = [
    ("frame", frame),
    ("payload", payload),
    ("imap_response", imap_response),
    ("imap_command", imap_command),
    ("shared_reader", shared_reader),
    ("door_track", door_track),
];
