//! Fuzz target `frame`: the checks of `inlookup_fuzz_checks::frame` (docs/fuzz.md).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| inlookup_fuzz_checks::frame(data));
