//! Test program (init): the kernel's one-shot timer. Sleeps of 1, 2 and 5 ms and a receive
//! timeout of 3 ms, each repeated, measured with `TimeNow`: every one lasts at least what was
//! asked and, without a periodic tick to wait for, typically not much longer. Prints the
//! shortest, median and longest for the system test to check.
#![no_std]
#![no_main]

use rt::sys;

rt::entry!(main);

const ROUNDS: usize = 21;

fn main() -> i32 {
    let mut ok = true;
    for ms in [1u64, 2, 5] {
        let mut took = [0u64; ROUNDS];
        for t in took.iter_mut() {
            let start = sys::time_now();
            sys::sleep(ms * 1_000_000);
            *t = sys::time_now() - start;
        }
        took.sort_unstable();
        let (shortest, median, longest) = (took[0], took[ROUNDS / 2], took[ROUNDS - 1]);
        rt::println!(
            "timer_check: sleep {ms} ms took {} to {} us, median {} us",
            shortest / 1000,
            longest / 1000,
            median / 1000
        );
        ok &= shortest >= ms * 1_000_000;
    }
    let Ok(ep) = sys::endpoint_create() else { return 1 };
    let start = sys::time_now();
    let timed_out = matches!(sys::recv(ep, 3_000_000), Err(sys::Error::TimedOut));
    let took = sys::time_now() - start;
    rt::println!("timer_check: a 3 ms receive timeout ended after {} us (timed out: {timed_out})", took / 1000);
    ok &= timed_out && took >= 3_000_000;
    // Two readings in a row differ: the clock is read now, not at the last tick.
    let (a, b) = (sys::time_now(), sys::time_now());
    rt::println!("timer_check: consecutive readings advance: {}", b > a);
    rt::println!("timer_check: {}", if ok { "ok" } else { "FAILED" });
    if ok {
        0
    } else {
        1
    }
}
