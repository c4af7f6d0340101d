//! Fuzz target: `softbus::fuzz::channel_machines`, the channel state machines fed arbitrary
//! channel messages.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| softbus::fuzz::channel_machines(data));
