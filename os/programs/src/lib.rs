//! What the native test and benchmark programs agree on: addresses, counts and labels.
#![no_std]

/// Benchmark iterations.
pub const CALLS: u64 = 10_000;
pub const NULLS: u64 = 100_000;
pub const NOTIFIES: u64 = 10_000;
pub const FAULTS: u64 = 1_000;
/// Warm-up rounds before each measurement.
pub const WARMUP: u64 = 1_000;

/// Where the fault benchmark's child touches pages, one after the other.
pub const FAULT_BASE: u64 = 0x2000_0000_0000;
/// Where the isolation test's init keeps a secret that another task then tries to read.
pub const SECRET_AT: u64 = 0x3000_0000_0000;

/// Labels understood by `benchpeer`.
pub mod peer {
    /// Echo the words back.
    pub const ECHO: u32 = 1;
    /// Notification ping-pong: the message carries the pong notification (SEND), words[0] the
    /// rounds; the reply carries the ping notification.
    pub const NOTIFY: u32 = 2;
}
