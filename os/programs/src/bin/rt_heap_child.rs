//! The heap under a small quota (see `rt_heap`): a fallible allocation beyond the quota
//! returns an error and the heap works on; an infallible one ends the task through the
//! allocation error handler and the panic handler (status 101).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use rt::sys::{self, Error, Message, FOREVER_NS};

rt::entry!(main);

fn main() -> i32 {
    let report = rt::startup_arg() as sys::Handle;
    let mut small: Vec<u32> = (0..25_000).collect();
    let mut too_big: Vec<u8> = Vec::new();
    let result = too_big.try_reserve(64 << 20);
    let stats = rt::heap::stats();
    rt::println!("rt_heap_child: 64 MiB: {:?}, last error {:?}", result.is_err(), stats.last_error);
    // The heap still works after the failure.
    small.extend(0..1000);
    let ok = result.is_err()
        && stats.last_error == Some(Error::QuotaExceeded)
        && small.len() == 26_000
        && small[25_999] == 999;
    sys::call(report, &Message::new(ok as u32, [0; 4]), FOREVER_NS).expect("report");
    rt::println!("rt_heap_child: now an infallible allocation over the quota");
    // (black_box: the compiler may otherwise drop an allocation it sees unused.)
    let doomed: Vec<u8> = core::hint::black_box(Vec::with_capacity(64 << 20));
    rt::println!("rt_heap_child: UNREACHABLE {:p}", doomed.as_ptr());
    0
}
