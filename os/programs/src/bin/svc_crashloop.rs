//! Test service: panics as soon as it starts, every time. init must back it off and report it
//! while the other services keep serving.
#![no_std]
#![no_main]

rt::entry!(main);

fn main() -> i32 {
    panic!("crashloop: failing at startup on purpose");
}
