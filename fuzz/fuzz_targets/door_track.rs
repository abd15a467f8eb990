//! Fuzz target `door_track`: the checks of `inlookup_fuzz_checks::door_track` (docs/fuzz.md).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| inlookup_fuzz_checks::door_track(data));
