//! init: the first task. For now it greets and exits; it will start the system services.
#![no_std]
#![no_main]

rt::entry!(main);

fn main() -> i32 {
    rt::println!("init: hello from user space");
    0
}
