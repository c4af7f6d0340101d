//! The Tutti kernel ABI: numbers and layouts shared by the kernel, user-space programs and the
//! host tools (xtask, the system-test harness).
//!
//! This crate is `no_std` and has no dependencies so that every side of the ABI can use it.
//! Everything here is documented in `docs/abi.md`; change both together.
#![no_std]

pub mod console;
pub mod exit;
pub mod syscall;
