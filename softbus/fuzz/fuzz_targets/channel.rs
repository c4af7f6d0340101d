//! Fuzz target: `softbus::fuzz::channel` over arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| softbus::fuzz::channel(data));
