//! Fuzz target: `softbus::fuzz::pairing` over arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| softbus::fuzz::pairing(data));
