//! Tries to read another task's secret (see `isolation`).
#![no_std]
#![no_main]

rt::entry!(main);

fn main() -> i32 {
    rt::println!("snoop: reading {:#x}", programs::SECRET_AT);
    // Safety: none: this read must fault.
    let value = unsafe { core::ptr::read_volatile(programs::SECRET_AT as *const u64) };
    rt::println!("snoop: read {value:#x}: ISOLATION BROKEN");
    1
}
