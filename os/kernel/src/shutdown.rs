//! Ending the machine: report a status to QEMU's `isa-debug-exit` device, or halt where there
//! is none.

use abi::exit::{ExitCode, DEBUG_EXIT_PORT};

/// Stops the machine with `code`. Under QEMU with `isa-debug-exit` the QEMU process exits
/// with `code.qemu_status()`; elsewhere the CPU halts.
pub fn exit(code: ExitCode) -> ! {
    // Safety: writing to the isa-debug-exit port ends QEMU; on a machine without the device
    // the write is ignored and we halt below.
    unsafe { crate::arch::cpu::outl(DEBUG_EXIT_PORT, code as u32) };
    crate::arch::cpu::halt_forever()
}

/// The first task ended: the machine stops, successfully if init's status was 0.
pub fn init_ended(status: i64) -> ! {
    exit(if status == 0 { ExitCode::Success } else { ExitCode::InitFailed })
}
