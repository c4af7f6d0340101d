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

/// The typed protocol of `rt_ipc_server` (tested by `rt_ipc`): a store of numbers under
/// numeric keys, and of byte strings passed through a shared buffer.
pub mod kv {
    use rt::ipc::{BufRange, Cap};

    /// The largest shared buffer the server makes.
    pub const BUFFER_MAX: u64 = 1 << 20;
    /// The longest byte string the server stores.
    pub const BLOB_MAX: u64 = 64 * 1024;

    rt::protocol! {
        /// The key-value store.
        pub protocol Kv {
            /// What a client asks.
            request Request {
                /// Stores `value` under `key`; an existing value only with `overwrite`.
                Put { key: u64, value: u64, overwrite: bool } = 1,
                /// The value under `key`.
                Get { key: u64 } = 2,
                /// A shared buffer of `len` bytes for this client (one per badge).
                OpenBuffer { len: u64 } = 3,
                /// The sum of the bytes of `range` of the client's buffer.
                Sum { range: BufRange } = 4,
                /// Stores the bytes of `range` of the client's buffer under `key`.
                Store { key: u64, range: BufRange } = 5,
                /// Writes the bytes stored under `key` to the client's buffer at `offset`.
                Load { key: u64, offset: u64 } = 6,
            }
            /// What the server answers.
            response Response {
                Done = 1,
                /// `Put` without `overwrite` of a key that has a value; a second `OpenBuffer`.
                Exists = 2,
                Value { value: Option<u64> } = 3,
                /// The client's buffer (a copy of the capability without `REVOKE`).
                Buffer { memory: Cap, len: u64 } = 4,
                Total { sum: u64 } = 5,
                Loaded { len: u64 } = 6,
                /// A range or offset outside the buffer.
                OutOfRange = 7,
                /// The client has no buffer yet.
                NoBuffer = 8,
                /// Above `BUFFER_MAX` or `BLOB_MAX`.
                TooLarge = 9,
                NotFound = 10,
                /// The server ran out of memory for this request.
                NoMemory = 11,
            }
        }
    }
}
