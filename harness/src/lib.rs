//! Boots a kernel under QEMU (TCG) with a deadline and reads what its console printed.
//!
//! Used by `cargo xtask` (to run Tutti and for benchmarks) and by the system tests. A [`Machine`]
//! describes one QEMU invocation; [`Machine::run`] starts it, collects the serial console line
//! by line with the time each line appeared, stops QEMU at the deadline, and returns a [`Run`]
//! that knows how the machine ended and whether the kernel reported a panic or a fault (with
//! its backtrace symbolised against the kernel ELF). See docs/testing.md.

pub mod linux;
mod machine;
pub mod net;
mod symbols;

pub use machine::{Crash, Ending, HarnessError, Line, Machine, Run, Running};
pub use symbols::Symbols;
