//! Test program: system calls with hostile arguments get error codes, never a kernel crash.
#![no_std]
#![no_main]

use abi::syscall::{encode_call, init_caps::CONSOLE, Error, Sys, DEBUG_WRITE_MAX};
use rt::sys;

rt::entry!(main);

fn check(what: &str, got: Result<impl Sized, Error>, want: Error) -> bool {
    let ok = matches!(got, Err(e) if e == want);
    let got = got.err();
    rt::println!("syscall_check: {what}: {} (got {got:?}, want {want:?})", if ok { "ok" } else { "WRONG" });
    ok
}

/// `debug_write` with a raw pointer and length.
fn write_raw(ptr: u64, len: u64) -> Result<(), Error> {
    sys::syscall(Sys::DebugWrite, CONSOLE, [ptr, len, 0, 0, 0, 0, 0]).map(drop)
}

fn main() -> i32 {
    let text = "x";
    let mut ok = true;
    // Safety: an unknown call number changes nothing.
    let (status, _) = unsafe { sys::raw(0xdead, [0; 7]) };
    ok &= check("unknown call", Error::from_code(status).map_or(Ok(()), Err), Error::NoSuchCall);
    ok &= check("unmapped buffer", write_raw(0x1000, 8), Error::BadAddress);
    ok &= check("kernel buffer", write_raw(0xffff_ffff_8010_0000, 8), Error::BadAddress);
    ok &= check("non-canonical", write_raw(0x8000_0000_0000_0000, 8), Error::BadAddress);
    ok &= check("wrapping", write_raw(u64::MAX - 2, 8), Error::BadAddress);
    ok &= check("too long", write_raw(text.as_ptr() as u64, DEBUG_WRITE_MAX as u64 + 1), Error::InvalidArgument);
    ok &= check("not UTF-8", write_raw(b"\xff\xfe".as_ptr() as u64, 2), Error::InvalidArgument);
    // Starts on the last bytes of the stack, runs into the unmapped page above it.
    let top = 0x0000_7fff_ffff_f000u64;
    ok &= check("running off the stack", write_raw(top - 4, 64), Error::BadAddress);
    ok &= check("no such handle", sys::debug_write(0xdead_beef, "x"), Error::InvalidHandle);
    ok &= check("null handle", sys::debug_write(0, "x"), Error::InvalidHandle);
    let ep = sys::endpoint_create().expect("an endpoint");
    ok &= check("wrong object type", sys::debug_write(ep, "x"), Error::WrongType);
    let weak = sys::cap_duplicate(CONSOLE, 0, 0).expect("a copy without rights");
    ok &= check("missing rights", sys::debug_write(weak, "x"), Error::MissingRights);
    ok &= check("reply without caller", sys::reply(&sys::Message::default()), Error::NoCaller);
    ok &= check("receive would block", sys::recv(ep, 0), Error::WouldBlock);
    // Safety: an encoded call with a huge handle on a real number: rejected.
    let (status, _) = unsafe { sys::raw(encode_call(Sys::Signal, u32::MAX), [1; 7]) };
    ok &= check("signal bad handle", Error::from_code(status).map_or(Ok(()), Err), Error::InvalidHandle);
    sys::cap_close(weak).expect("close");
    ok &= check("closed handle", sys::debug_write(weak, "x"), Error::InvalidHandle);
    rt::println!("syscall_check: {}", if ok { "all ok" } else { "FAILED" });
    if ok {
        0
    } else {
        1
    }
}
