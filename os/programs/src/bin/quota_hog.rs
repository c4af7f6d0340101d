//! Creates kernel objects until its quota runs out (see `quota`).
#![no_std]
#![no_main]

use rt::sys::{self, Error, Message, FOREVER_NS};

rt::entry!(main);

fn main() -> i32 {
    let report = rt::startup_arg() as sys::Handle;
    let mut made = 0u64;
    let error = loop {
        match sys::endpoint_create() {
            Ok(_) => made += 1,
            Err(e) => break e,
        }
    };
    rt::println!("quota_hog: {made} endpoints, then {error:?}");
    let big = sys::memory_create(0, 64 << 20);
    rt::println!("quota_hog: 64 MiB of memory: {:?}", big.err());
    let ok = error == Error::QuotaExceeded && big == Err(Error::QuotaExceeded);
    sys::call(report, &Message::new(ok as u32, [made, 0, 0, 0]), FOREVER_NS).expect("report");
    0
}
