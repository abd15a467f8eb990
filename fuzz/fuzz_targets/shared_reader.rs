//! Fuzz target `shared_reader`: the checks of `inlookup_fuzz_checks::shared_reader` (docs/fuzz.md).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| inlookup_fuzz_checks::shared_reader(data));
