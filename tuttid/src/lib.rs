//! `tuttid` and `tutti`: the Tutti soft bus on Linux hosts.
//!
//! Design: the protocol lives in the sans-IO `softbus` crate; this crate is the thin adapter
//! around it (after quinn and rustls' tokio adapters). The daemon ([`daemon`]) owns the
//! sockets, the clock and the files: UDP for discovery, TCP for sessions and pairing, a Unix
//! socket for the local API. The command line ([`client`]) only speaks the local API
//! ([`api`]: newline-delimited JSON), so everything it can do, a script can do too.
//! [`state`] keeps the key store, the trust store and the config file in the state directory;
//! [`services`] are the built-in services every daemon serves; [`storage`] is the shared
//! directory of `tutti serve`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod client;
pub mod config;
pub mod daemon;
pub mod services;
pub mod state;
pub mod storage;
