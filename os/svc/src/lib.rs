//! What init and the system services agree on (docs/services.md): the boot protocol between
//! init and each service, the name service's protocol, the console driver's protocol, and
//! client helpers for all three.
#![no_std]

extern crate alloc;

mod common;
pub mod fs;
pub mod linux;
pub mod net;
pub mod netdrv;
pub mod softbus;

pub use common::*;
