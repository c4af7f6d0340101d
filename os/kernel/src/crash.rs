//! Deliberate faults (`crash=<kind>` on the command line) that prove faults are caught and
//! reported. Each one must end in a fault report or a panic; returning is a bug.

use core::arch::asm;
use kcore::cmdline::CrashKind;

/// A byte of executable-looking code (`ret`) in the no-execute data segment.
static mut NOT_CODE: [u8; 1] = [0xc3];

/// Triggers the fault.
pub fn crash(kind: CrashKind) -> ! {
    log::info!("crash test: {kind:?}");
    match kind {
        CrashKind::Panic => panic!("deliberate panic (crash=panic)"),
        // Safety: the read is meant to fault (nothing is mapped there); the handler stops the machine.
        CrashKind::PageFault => unsafe {
            core::ptr::read_volatile(0x0000_0000_dead_b000 as *const u64);
        },
        // Safety: the write is meant to fault (text is read-only); the handler stops the machine.
        CrashKind::WriteText => unsafe {
            core::ptr::write_volatile(crash as *const () as *mut u8, 0xcc);
        },
        // Safety: the call is meant to fault (data is no-execute); the handler stops the machine.
        CrashKind::ExecData => unsafe {
            let f: extern "C" fn() = core::mem::transmute(&raw mut NOT_CODE as *mut u8);
            f();
        },
        // Safety: ud2 always raises #UD; the handler stops the machine.
        CrashKind::InvalidOpcode => unsafe { asm!("ud2") },
        // Safety: int3 raises #BP; the handler stops the machine.
        CrashKind::Breakpoint => unsafe { asm!("int3") },
        CrashKind::StackOverflow => {
            recurse(0);
        }
    }
    panic!("crash test {kind:?} did not fault")
}

/// Recurses until the stack runs into its guard page (the depth bound is far beyond the stack).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut buffer = [depth; 64];
    core::hint::black_box(&mut buffer);
    if depth > 1 << 40 {
        return buffer[3];
    }
    recurse(depth + 1) + buffer[3]
}
