//! Fuzz target: `softbus::fuzz::trust_store` over arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| softbus::fuzz::trust_store(data));
