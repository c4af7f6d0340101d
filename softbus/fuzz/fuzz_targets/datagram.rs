//! Fuzz target: `softbus::fuzz::datagram` over arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| softbus::fuzz::datagram(data));
