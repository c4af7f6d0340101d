//! Fuzz target: `softbus::fuzz::stream` over arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| softbus::fuzz::stream(data));
