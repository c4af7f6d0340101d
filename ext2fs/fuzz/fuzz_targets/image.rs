//! Fuzz target: `ext2fs::fuzz::exercise` (mount, walk, change, sync, walk) over arbitrary images.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ext2fs::fuzz::exercise(data));
