//! Kernel time: counts timer interrupts (periodic at `HZ` during bring-up, for `on_ready=exit`;
//! one-shot once tasks run, see `system::program_timer`).

use core::sync::atomic::{AtomicU64, Ordering};

/// Timer interrupts per second while the timer is periodic (bring-up).
pub const HZ: u64 = 100;

static TICKS: AtomicU64 = AtomicU64::new(0);

/// Called from the timer interrupt.
pub fn tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// Timer interrupts since the timer started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}
