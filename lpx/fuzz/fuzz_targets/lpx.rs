//! Fuzz target: `lpx::fuzz::exercise` (decoders of process memory; address-space, pipe and
//! descriptor-table operations) over arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lpx::fuzz::exercise(data));
