//! The runtime of native Tutti programs.
//!
//! A program is a `#![no_std] #![no_main]` binary that names its main function with
//! [`entry!`]. The runtime provides the ELF entry point `_start` (which calls main and exits
//! with its status), the system-call wrappers ([`sys`]), console output ([`print!`],
//! [`println!`]), a panic handler that reports the panic and exits with status 101, and:
//!
//! - [`heap`]: the global allocator, so programs may `extern crate alloc` and use `Vec`,
//!   `String`, `Box`, `BTreeMap`;
//! - [`log`](mod@log): a `log` backend (level `Info` from startup), `[INFO] prefix: message`;
//! - [`ipc`]: typed requests and responses ([`protocol!`]), a client, a server loop and
//!   shared buffers;
//! - [`spawn`]: starting programs from the boot archive in new tasks;
//! - [`sync`]: a lock for the threads of a task.
//!
//! docs/runtime.md describes all of it.
#![no_std]

extern crate alloc;
extern crate freestanding;

pub mod device;
pub mod heap;
pub mod ipc;
pub mod log;
pub mod spawn;
pub mod sync;
pub mod sys;

use core::fmt::Write;

core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "    xor ebp, ebp",   // the end of frame-pointer backtraces
    "    and rsp, -16",   // the System V ABI wants a 16-byte aligned stack at calls
    "    call {start}",   // rdi: the word the task's creator passed
    "    ud2",
    start = sym start,
);

static STARTUP_ARG: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The word this task's creator passed to its first thread (for a spawned program: the handle
/// of the capability given to it, see [`spawn`]).
pub fn startup_arg() -> u64 {
    STARTUP_ARG.load(core::sync::atomic::Ordering::Relaxed)
}

extern "Rust" {
    /// Defined by [`entry!`].
    fn __tutti_main() -> i32;
}

extern "C" fn start(arg: u64) -> ! {
    STARTUP_ARG.store(arg, core::sync::atomic::Ordering::Relaxed);
    log::init(log::LevelFilter::Info);
    // Safety: `entry!` defines the symbol with this signature in every program.
    let status = unsafe { __tutti_main() };
    sys::exit(status)
}

/// Names the program's main function: `rt::entry!(main);` with `fn main() -> i32`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        fn __tutti_main() -> i32 {
            let main: fn() -> i32 = $main;
            main()
        }
    };
}

/// A stack of `size` bytes (rounded up to 16, aligned to 16) for a new thread, from the heap,
/// or `None` when the heap cannot grow. Stacks are never returned. (They used to come from a
/// 256 KiB pool in every program's BSS, which cost each task that memory whether it made
/// threads or not.)
pub fn stack(size: usize) -> Option<&'static mut [u8]> {
    let layout = core::alloc::Layout::from_size_align(size.max(16).next_multiple_of(16), 16).ok()?;
    // Safety: the layout has a non-zero size.
    let base = unsafe { alloc::alloc::alloc_zeroed(layout) };
    if base.is_null() {
        return None;
    }
    // Safety: `base` points to `layout.size()` fresh zeroed bytes owned by nobody else, and
    // they are never freed, so the slice may live forever.
    Some(unsafe { core::slice::from_raw_parts_mut(base, layout.size()) })
}

/// The time-stamp counter (guest instructions under `-icount shift=0`), for benchmarks.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // Safety: rdtsc only reads the counter.
    unsafe { core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
}

/// Console output through the kernel's debug console, in chunks the kernel accepts.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let mut rest = s;
        while !rest.is_empty() {
            let mut cut = rest.len().min(abi::syscall::DEBUG_WRITE_MAX);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            sys::debug_write(abi::syscall::init_caps::CONSOLE, &rest[..cut]).map_err(|_| core::fmt::Error)?;
            rest = &rest[cut..];
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn print_args(args: core::fmt::Arguments) {
    // Assembled first, then written in one system call (up to 512 bytes), so a line is never
    // split by other tasks' output.
    let mut line = log::Line::new();
    let _ = line.write_fmt(args);
    line.flush();
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::print_args(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::print_args(format_args!("{}\n", format_args!($($arg)*))) };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    match info.location() {
        Some(l) => println!("panic at {}:{}: {}", l.file(), l.line(), info.message()),
        None => println!("panic: {}", info.message()),
    }
    sys::exit(101)
}
