//! Test program: a busy low-priority thread cannot delay a high-priority one. The main thread
//! (priority 63) sleeps in a loop while a priority-1 thread spins; every wake-up must come
//! within a few timer ticks of its deadline.
#![no_std]
#![no_main]

use rt::sys;

rt::entry!(main);

static SPINS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

extern "C" fn spin(_: u64) -> ! {
    loop {
        SPINS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
}

fn main() -> i32 {
    sys::thread_create(spin, rt::stack(8192).expect("a stack"), 1, 0).expect("spinner");
    const PERIOD: u64 = 20_000_000; // 20 ms
    const LIMIT: u64 = 25_000_000; // two ticks of 10 ms plus slack
    let mut worst = 0;
    for _ in 0..10 {
        let before = sys::time_now();
        sys::sleep(PERIOD);
        let late = sys::time_now() - before - PERIOD.min(sys::time_now() - before);
        worst = worst.max(late);
    }
    let spins = SPINS.load(core::sync::atomic::Ordering::Relaxed);
    rt::println!("preempt: worst lateness {} us, low-priority spins {spins}", worst / 1000);
    if worst <= LIMIT && spins > 0 {
        rt::println!("preempt: ok");
        0
    } else {
        rt::println!("preempt: FAILED");
        1
    }
}
