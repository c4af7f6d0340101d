//! The service manifest of Tutti's init: the file `/etc/services` of the boot archive lists the
//! system services, each with its program, priority, quota, restart policy, backoff and
//! capabilities. docs/manifest.md describes the format.
//!
//! The parser treats the file as hostile: it never panics, checks every value and the file as
//! a whole (duplicate names, endpoints to services that do not exist, two services driving the
//! same I/O ports or interrupt line), and reports every problem with its line number.
#![no_std]

extern crate alloc;

mod parse;

pub use parse::*;
