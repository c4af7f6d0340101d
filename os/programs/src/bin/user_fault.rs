//! Test program: reads unmapped memory. The kernel must kill this task, not crash.
#![no_std]
#![no_main]

rt::entry!(main);

fn main() -> i32 {
    rt::println!("user_fault: reading unmapped memory");
    // Safety: none; this read faults on purpose.
    let value = unsafe { core::ptr::read_volatile(0x1000 as *const u64) };
    rt::println!("user_fault: survived with {value}");
    0
}
