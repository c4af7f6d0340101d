//! Fuzz target: `softbus::fuzz::storage` (remote file requests and replies) over arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| softbus::fuzz::storage(data));
