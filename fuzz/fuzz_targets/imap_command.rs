//! Fuzz target `imap_command`: the checks of `inlookup_fuzz_checks::imap_command` (docs/fuzz.md).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| inlookup_fuzz_checks::imap_command(data));
