//! Fuzz target: `softbus::fuzz::capabilities`, the capability list decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| softbus::fuzz::capabilities(data));
