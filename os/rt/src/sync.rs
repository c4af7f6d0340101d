//! A lock for data shared between the threads of one task.
//!
//! The kernel preempts threads and schedules strictly by priority, so a pure spinlock could
//! spin forever: a high-priority thread spinning on a lock held by a lower-priority thread of
//! the same task never lets the holder run. [`SpinLock`] therefore backs off: it spins briefly,
//! then yields (which helps a holder of the same priority), then sleeps, from 50 us doubling up
//! to 1 ms (which lets a holder of any priority run and release the lock; the kernel's timer is
//! one-shot, so a sleep lasts what it asks, and a too-short one would let the holder run for only
//! a moment). Uncontended, locking is one
//! atomic compare-and-swap and unlocking one store.

use crate::sys;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// Spins before the lock starts yielding.
const SPINS: u32 = 64;
/// Yields before the lock starts sleeping.
const YIELDS: u32 = 64;
/// The first and the longest sleep, in nanoseconds.
const SLEEP_FIRST_NS: u64 = 50_000;
const SLEEP_MAX_NS: u64 = 1_000_000;

/// Mutual exclusion for a `T` shared by the threads of a task.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// Safety: the lock hands out access to the value to one thread at a time, so sharing the lock
// is sound whenever the value may move between threads.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new, unlocked lock around `value`.
    pub const fn new(value: T) -> SpinLock<T> {
        SpinLock { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    /// Waits until the lock is free and takes it; it is released when the guard drops.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        let mut tries = 0u32;
        let mut nap = SLEEP_FIRST_NS;
        while self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            tries = tries.saturating_add(1);
            if tries < SPINS {
                core::hint::spin_loop();
            } else if tries < SPINS + YIELDS {
                sys::yield_now();
            } else {
                sys::sleep(nap);
                nap = (nap * 2).min(SLEEP_MAX_NS);
            }
        }
        SpinGuard { lock: self }
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| SpinGuard { lock: self })
    }
}

/// Access to the value of a locked [`SpinLock`].
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Safety: the guard exists only while this thread holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // Safety: the guard exists only while this thread holds the lock, and `&mut self`
        // makes this the only reference through it.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}
