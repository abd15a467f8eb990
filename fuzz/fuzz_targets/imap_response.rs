//! Fuzz target `imap_response`: the checks of `inlookup_fuzz_checks::imap_response` (docs/fuzz.md).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| inlookup_fuzz_checks::imap_response(data));
