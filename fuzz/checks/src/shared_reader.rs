//! Target `shared_reader`: a client's reader of the shared-memory cache
//! (`inlookup_core::shared::Reader`) given a corrupt or hostile image, and the writer and
//! reader together on what the input says to publish.
//!
//! Input: byte 0 chooses the mode and the key's length (bit 7: lay a valid header over the
//! image, so the fuzzer reaches the slots instead of stopping at the magic; bits 0-5: the
//! key's length), then the key, then the image (whole words; a tail is dropped).
//!
//! Invariants: opening and looking up never panic nor read out of bounds (the image is a
//! plain vector, so a bad index panics); a hit's reply fits a slot beside its key; a miss
//! leaves the output as it was; and a table written by [`Writer`] from the input reads back
//! exactly what was published, under its key only.

use inlookup_core::shared::{self, Lookup, Reader, Writer, SLOT_PAYLOAD, WAYS};
use std::sync::atomic::Ordering;

/// The header words a valid table of `slots` slots has (magic, version, slots, slot words).
fn overlay(image: &mut Vec<std::sync::atomic::AtomicU64>, slots: usize) {
    let want = shared::words_for(slots);
    while image.len() < want {
        image.push(std::sync::atomic::AtomicU64::new(0));
    }
    let valid = shared::zeroed(slots);
    Writer::init(&valid, slots, "example.com", 1).expect("a valid table");
    for i in 0..shared::HEADER_WORDS {
        image[i].store(valid[i].load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// The checks of `shared_reader` for one input.
pub fn shared_reader(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let klen = usize::from(mode & 0x3f).min(rest.len());
    let (key, image) = rest.split_at(klen);
    let mut words = shared::from_bytes(image);
    if mode & 0x80 != 0 {
        overlay(&mut words, WAYS * 2);
    }
    if let Ok(r) = Reader::open(&words) {
        let _ = (r.default_domain(), r.retired(), r.pid());
        for now in [0, 1, u64::MAX / 2, u64::MAX] {
            let mut out = b"kept".to_vec();
            match r.get(key, now, &mut out) {
                Lookup::Hit => {
                    assert!(out.starts_with(b"kept"), "a hit appends");
                    assert!(out.len() - 4 + key.len() <= SLOT_PAYLOAD, "a hit fits a slot");
                }
                Lookup::Miss => assert_eq!(out, b"kept", "a miss leaves the output"),
            }
        }
    }
    // Writer and reader together: publish the image's bytes as a reply under `key`.
    let reply = &image[..image.len().min(SLOT_PAYLOAD.saturating_sub(key.len()))];
    let table = shared::zeroed(WAYS * 2);
    let mut w = Writer::init(&table, WAYS * 2, "", 1).expect("a valid table");
    let r = Reader::open(&table).expect("the writer's table opens");
    assert!(w.publish(key, reply, u64::MAX));
    let mut out = Vec::new();
    assert_eq!(r.get(key, 0, &mut out), Lookup::Hit);
    assert_eq!(out, reply, "read back as published");
    let mut other = key.to_vec();
    other.push(0);
    out.clear();
    assert_eq!(r.get(&other, 0, &mut out), Lookup::Miss, "under its key only");
    w.clear();
    assert_eq!(r.get(key, 0, &mut out), Lookup::Miss, "a flush hides it");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed `seed-valid-hit` was written from the format's description alone (not by
    /// the writer): it reads as a hit, so the description and the code agree.
    #[test]
    fn the_seed_written_from_the_format_description_hits() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/shared_reader/seed-valid-hit");
        let data = std::fs::read(path).expect("the seed");
        let klen = usize::from(data[0] & 0x3f);
        let (key, image) = data[1..].split_at(klen);
        let words = shared::from_bytes(image);
        let r = Reader::open(&words).expect("a valid image");
        assert_eq!(r.default_domain(), Some("example.com"));
        let mut out = Vec::new();
        assert_eq!(r.get(key, 1, &mut out), Lookup::Hit);
        assert_eq!(out, b"\x05\0\0\0hello");
    }
}
