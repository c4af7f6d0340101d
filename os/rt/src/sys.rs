//! System-call wrappers (docs/abi.md). Each one is the `syscall` instruction with the ABI's
//! register assignment, and turns the status in `rax` into a `Result`.

use abi::syscall::{Error, Sys};
use core::arch::asm;

/// The raw status of a call: 0 or an error code.
fn status(rax: u64) -> Result<(), Error> {
    match rax {
        0 => Ok(()),
        code => Err(Error::from_code(code).unwrap_or(Error::InvalidArgument)),
    }
}

/// Writes `text` (at most `DEBUG_WRITE_MAX` bytes) to the kernel console.
pub fn debug_write(text: &str) -> Result<(), Error> {
    let rax: u64;
    // Safety: the kernel only reads `len` bytes at `ptr`, which `text` provides; the call
    // clobbers rcx and r11 and preserves everything else.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") Sys::DebugWrite as u64 => rax,
            in("rdi") text.as_ptr(),
            in("rsi") text.len(),
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, readonly),
        );
    }
    status(rax)
}

/// Ends the calling task with `status`.
pub fn exit(status: i32) -> ! {
    // Safety: `exit` does not return; nothing of this task runs afterwards.
    unsafe {
        asm!("syscall", in("rax") Sys::Exit as u64, in("rdi") status as i64 as u64, options(noreturn, nostack));
    }
}

/// Makes a system call with raw arguments, for tests that must pass what the typed wrappers
/// never would (bad pointers, unknown numbers). Returns `rax`.
///
/// # Safety
/// The kernel treats the arguments as hostile, but a call that succeeds may change this
/// task's memory or state in ways the caller must be ready for.
pub unsafe fn raw(number: u64, args: [u64; 6]) -> u64 {
    let rax: u64;
    // Safety: the caller takes responsibility for the effects of the call.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") number => rax,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    rax
}
