//! Tutti soft bus: the sans-IO protocol core that lets many devices act as one.
//!
//! Design (after smoltcp and quinn-proto): no sockets, no clocks, no threads and no
//! entropy source inside. The caller feeds received datagrams and the current time
//! ([`time::Instant`]), passes a `rand_core::CryptoRng` where randomness is needed, and
//! polls each state machine for datagrams to send and for events. Everything is `no_std` +
//! `alloc`, so the same code runs in the Tutti soft bus server and in the Linux daemon.
//!
//! Modules, bottom up: [`wire`] (the versioned frame format), [`identity`] (device keys and
//! ids), [`discovery`] (beacons, queries, the peer table), [`pairing`] (SPAKE2 pairing with a
//! short code), [`trust`] (the trust store, the sessions' trust policy), [`session`] (Noise XX
//! handshake and encrypted records with replay protection), [`connection`] (a session over a
//! TCP byte stream with keepalive and failure detection), [`rpc`] (calls with deadlines and
//! cancellation over a session), [`pubsub`] (topics with acknowledged, ordered delivery),
//! [`stream`] (byte streams with flow control), [`file`] (resumable, hash-checked file
//! transfer over a stream), [`capability`] (typed capability descriptors and the per-peer
//! allow/deny/ask policy). [`time`] and [`rng`] carry the caller's clock and randomness.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod capability;
pub mod connection;
pub mod discovery;
pub mod file;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod identity;
pub mod pairing;
pub mod pubsub;
pub mod rng;
pub mod rpc;
pub mod session;
pub mod storage;
pub mod stream;
pub mod time;
pub mod trust;
pub mod wire;
