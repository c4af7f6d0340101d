//! Test program: system calls with hostile arguments get error codes, never a kernel crash.
#![no_std]
#![no_main]

use abi::syscall::{Error, Sys, DEBUG_WRITE_MAX};

rt::entry!(main);

fn check(what: &str, got: u64, want: Error) -> bool {
    let ok = got == want as u64;
    rt::println!("syscall_check: {what}: {} (got {got}, want {})", if ok { "ok" } else { "WRONG" }, want as u64);
    ok
}

fn main() -> i32 {
    let dw = Sys::DebugWrite as u64;
    let text = "x";
    let mut ok = true;
    // Safety (every call below): the kernel must reject these without touching our memory.
    unsafe {
        ok &= check("unknown call", rt::sys::raw(0xdead, [0; 6]), Error::NoSuchCall);
        ok &= check("unmapped buffer", rt::sys::raw(dw, [0x1000, 8, 0, 0, 0, 0]), Error::BadAddress);
        ok &= check("kernel buffer", rt::sys::raw(dw, [0xffff_ffff_8010_0000, 8, 0, 0, 0, 0]), Error::BadAddress);
        ok &= check("non-canonical", rt::sys::raw(dw, [0x8000_0000_0000_0000, 8, 0, 0, 0, 0]), Error::BadAddress);
        ok &= check("wrapping", rt::sys::raw(dw, [u64::MAX - 2, 8, 0, 0, 0, 0]), Error::BadAddress);
        ok &= check(
            "too long",
            rt::sys::raw(dw, [text.as_ptr() as u64, DEBUG_WRITE_MAX as u64 + 1, 0, 0, 0, 0]),
            Error::InvalidArgument,
        );
        ok &=
            check("not UTF-8", rt::sys::raw(dw, [b"\xff\xfe".as_ptr() as u64, 2, 0, 0, 0, 0]), Error::InvalidArgument);
        // Partly mapped: starts on the last bytes of the stack, runs into the unmapped page above.
        let top = 0x0000_7fff_ffff_f000u64;
        ok &= check("running off the stack", rt::sys::raw(dw, [top - 4, 64, 0, 0, 0, 0]), Error::BadAddress);
    }
    rt::println!("syscall_check: {}", if ok { "all ok" } else { "FAILED" });
    if ok {
        0
    } else {
        1
    }
}
