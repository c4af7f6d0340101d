//! The host-testable logic of `linuxd`, Tutti's Linux personality server (docs/linux.md):
//! x86_64 system-call numbers and their names, errno values, the byte layouts of the Linux
//! structures the server writes into a process (`stat`, `statx`, `linux_dirent64`, `utsname`,
//! ...), the initial stack with argv, envp and the auxiliary vector, file-descriptor tables,
//! the bookkeeping of a process's address space, pipe buffers, wait statuses and signal
//! dispositions, paths, and a seeded random generator.
//!
//! Nothing here makes a system call: the server (`os/programs/src/bin/linuxd/`) does those
//! and keeps these structures.

#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod errno;
pub mod fd;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod mem;
pub mod nr;
pub mod path;
pub mod pipe;
pub mod proc;
pub mod procfs;
pub mod rng;
pub mod stack;
pub mod structs;
