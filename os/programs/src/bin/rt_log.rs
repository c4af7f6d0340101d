//! Test program (init): the runtime's `log` backend. Level `Info` from startup, a prefix set
//! by the program, a changed level, and a line longer than one console write.
#![no_std]
#![no_main]

extern crate alloc;

use rt::log::{debug, error, info, warn, LevelFilter};

rt::entry!(main);

fn main() -> i32 {
    info!("no prefix yet");
    debug!("HIDDEN: debug is below the startup level");
    rt::log::set_prefix("rt_log");
    info!("the answer is {}", 42);
    warn!("a warning");
    error!("an error");
    rt::log::init(LevelFilter::Debug);
    debug!("debug shown after init(Debug)");
    rt::log::init(LevelFilter::Warn);
    info!("HIDDEN: info is below Warn");
    warn!("only warnings and errors now");
    rt::log::init(LevelFilter::Info);
    let long = "x".repeat(1000);
    info!("long {long} end");
    rt::println!("rt_log: ok");
    0
}
