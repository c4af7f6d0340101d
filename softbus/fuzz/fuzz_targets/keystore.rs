//! Fuzz target: `softbus::fuzz::keystore` over arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| softbus::fuzz::keystore(data));
