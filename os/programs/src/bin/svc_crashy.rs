//! Test service: registers as `crashy` and answers pings (`svc::echo`), but faults (reads
//! unmapped memory) while serving its fourth ping, every time it runs. Its clients must
//! reconnect through the name service after init restarts it.
#![no_std]
#![no_main]

extern crate alloc;

use rt::ipc::Server;
use rt::sys;
use svc::echo::{Echo, Request, Response};

rt::entry!(main);

/// Pings answered before the fault.
const ANSWERED: u64 = 3;

fn main() -> i32 {
    rt::log::set_prefix("crashy");
    let Ok(endpoint) = sys::endpoint_create() else { return svc::exit(1) };
    let Ok(names) = svc::names() else { return svc::exit(1) };
    if svc::register(&names, endpoint).is_err() {
        return svc::exit(1);
    }
    let mut served = 0;
    Server::<Echo>::new(endpoint).serve(|_, Request::Ping { n }| {
        if served == ANSWERED {
            rt::println!("crashy: faulting on purpose");
            // Safety: none; the read of unmapped memory faults on purpose.
            unsafe { core::ptr::read_volatile(0x10 as *const u64) };
        }
        served += 1;
        Response::Pong { n, served }
    });
    svc::exit(1)
}
