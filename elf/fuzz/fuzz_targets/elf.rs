//! Fuzz target: `elf::fuzz::exercise` (parse whole and headers-only, use every accessor) over
//! arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| elf::fuzz::exercise(data));
