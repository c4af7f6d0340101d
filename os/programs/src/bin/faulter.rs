//! Touches `FAULTS` pages that are not mapped yet; its supervisor maps each on the fault.
#![no_std]
#![no_main]

rt::entry!(main);

fn main() -> i32 {
    for i in 0..programs::FAULTS + programs::WARMUP {
        // Safety: the page is not mapped; the fault goes to the supervisor, which maps it and
        // resumes this write.
        unsafe { core::ptr::write_volatile((programs::FAULT_BASE + i * 4096) as *mut u8, 1) };
    }
    0
}
