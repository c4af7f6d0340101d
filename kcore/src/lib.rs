//! The portable core of the Tutti kernel.
//!
//! Everything in here is plain logic over plain data: no port I/O, no page tables, no
//! assembly. The bare-metal kernel (`os/kernel`) links it, and the host runs its unit tests
//! with `cargo test`, so the parts of the kernel that make decisions are tested without QEMU.
#![no_std]

extern crate alloc;

#[cfg(test)]
extern crate std;

pub mod arena;
pub mod cap;
pub mod cmdline;
pub mod frames;
pub mod kernel;
pub mod logring;
pub mod memmap;
pub mod sched;
