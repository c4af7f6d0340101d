//! How a Tutti machine ends: the status the kernel writes to QEMU's `isa-debug-exit` device.
//!
//! QEMU turns a value `v` written to the device's port into the process exit status
//! `(v << 1) | 1`. A plain QEMU exit (for example after a triple fault with `-no-reboot`) is 0,
//! and QEMU's own errors are 1, so every status below is distinct from those.

/// The I/O port of the `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Why the kernel stopped the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Orderly shutdown: everything that was asked for was done.
    Success = 0x10,
    /// A kernel panic (a bug in the kernel).
    Panic = 0x11,
    /// The machine was started with a configuration the kernel refuses: an unknown or malformed
    /// command-line option, a missing or corrupt boot archive, too little memory.
    BadConfig = 0x12,
    /// A CPU exception in kernel mode (a bug in the kernel).
    KernelFault = 0x13,
    /// The first task (init) ended with a non-zero status or was killed by a fault.
    InitFailed = 0x14,
}

impl ExitCode {
    /// Every exit code, for decoders.
    pub const ALL: [ExitCode; 5] =
        [ExitCode::Success, ExitCode::Panic, ExitCode::BadConfig, ExitCode::KernelFault, ExitCode::InitFailed];

    /// The exit status of the QEMU process when the kernel exits with this code.
    pub const fn qemu_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }

    /// The exit code behind a QEMU process exit status, if it is one of ours.
    pub fn from_qemu_status(status: i32) -> Option<ExitCode> {
        ExitCode::ALL.into_iter().find(|c| c.qemu_status() == status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_avoid_qemu_own_codes() {
        for code in ExitCode::ALL {
            let status = code.qemu_status();
            assert!(status > 1, "{code:?} collides with QEMU's own statuses");
            assert_eq!(ExitCode::from_qemu_status(status), Some(code));
        }
        assert_eq!(ExitCode::from_qemu_status(0), None);
        assert_eq!(ExitCode::from_qemu_status(1), None);
    }
}
