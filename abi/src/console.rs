//! Fixed lines the kernel prints on the console that tools look for.

/// The start of the line printed when kernel bring-up is complete. It is followed by
/// ` (tsc <n>, kernel <m> cycles)`: the time-stamp counter since reset (guest instructions under
/// `-icount shift=0`) and the part of it spent in the kernel.
pub const READY: &str = "Tutti ready";
