//! Scheduler queues: fixed priorities with round robin inside a priority, and the timer queue.
//!
//! [`RunQueue`] holds the ready threads: one FIFO per priority (64 levels, 63 highest) and a
//! bitmap of the non-empty levels, so finding the highest ready thread is one
//! leading-zeros instruction. A thread whose timeslice ends goes to the back of its level
//! (round robin); a thread preempted by a higher priority goes back to the front (it keeps its
//! turn). [`TimerQueue`] holds deadlines (sleeps and timeouts of blocking calls) in order.

use alloc::collections::{BTreeMap, VecDeque};

/// The number of priority levels.
pub const PRIORITIES: usize = 64;
/// The highest priority.
pub const MAX_PRIORITY: u8 = (PRIORITIES - 1) as u8;

/// Ready threads by priority.
pub struct RunQueue<T> {
    levels: [VecDeque<T>; PRIORITIES],
    nonempty: u64,
}

impl<T: Copy + PartialEq> Default for RunQueue<T> {
    fn default() -> Self {
        RunQueue { levels: core::array::from_fn(|_| VecDeque::new()), nonempty: 0 }
    }
}

impl<T: Copy + PartialEq> RunQueue<T> {
    /// Queues `thread` behind the others of its priority.
    pub fn push_back(&mut self, priority: u8, thread: T) {
        let p = priority.min(MAX_PRIORITY) as usize;
        self.levels[p].push_back(thread);
        self.nonempty |= 1 << p;
    }

    /// Queues `thread` ahead of the others of its priority.
    pub fn push_front(&mut self, priority: u8, thread: T) {
        let p = priority.min(MAX_PRIORITY) as usize;
        self.levels[p].push_front(thread);
        self.nonempty |= 1 << p;
    }

    /// The highest priority with a ready thread.
    pub fn highest(&self) -> Option<u8> {
        (self.nonempty != 0).then(|| 63 - self.nonempty.leading_zeros() as u8)
    }

    /// Takes the first thread of the highest priority.
    pub fn pop(&mut self) -> Option<(u8, T)> {
        let p = self.highest()?;
        let level = &mut self.levels[p as usize];
        let thread = level.pop_front()?;
        if level.is_empty() {
            self.nonempty &= !(1 << p);
        }
        Some((p, thread))
    }

    /// Takes `thread` out of the queue of `priority`; false if it was not there.
    pub fn remove(&mut self, priority: u8, thread: T) -> bool {
        let p = priority.min(MAX_PRIORITY) as usize;
        let level = &mut self.levels[p];
        let Some(at) = level.iter().position(|t| *t == thread) else { return false };
        level.remove(at);
        if level.is_empty() {
            self.nonempty &= !(1 << p);
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.nonempty == 0
    }

    /// Whether `thread` is queued at `priority` (for consistency checks).
    pub fn remove_would_find(&self, priority: u8, thread: T) -> bool {
        self.levels[priority.min(MAX_PRIORITY) as usize].contains(&thread)
    }

    /// The number of ready threads.
    pub fn len(&self) -> usize {
        self.levels.iter().map(VecDeque::len).sum()
    }
}

/// A key that identifies one armed timer, to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerKey {
    pub deadline: u64,
    sequence: u64,
}

/// Deadlines in time order; equal deadlines fire in the order they were armed.
pub struct TimerQueue<T> {
    timers: BTreeMap<TimerKey, T>,
    sequence: u64,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        TimerQueue { timers: BTreeMap::new(), sequence: 0 }
    }
}

impl<T> TimerQueue<T> {
    /// Arms a timer for `deadline`.
    pub fn arm(&mut self, deadline: u64, value: T) -> TimerKey {
        let key = TimerKey { deadline, sequence: self.sequence };
        self.sequence += 1;
        self.timers.insert(key, value);
        key
    }

    /// Disarms a timer; `None` if it already fired or was cancelled.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        self.timers.remove(&key)
    }

    /// Takes the earliest timer whose deadline is at or before `now`.
    pub fn expired(&mut self, now: u64) -> Option<T> {
        let (&key, _) = self.timers.first_key_value()?;
        if key.deadline > now {
            return None;
        }
        self.timers.remove(&key)
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.first_key_value().map(|(k, _)| k.deadline)
    }

    pub fn len(&self) -> usize {
        self.timers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    #[test]
    fn highest_priority_first_then_fifo() {
        let mut q = RunQueue::default();
        q.push_back(3, 'a');
        q.push_back(10, 'b');
        q.push_back(3, 'c');
        q.push_front(10, 'd');
        q.push_back(200, 'e'); // clamped to the top level
        let order: Vec<_> = core::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, [(63, 'e'), (10, 'd'), (10, 'b'), (3, 'a'), (3, 'c')]);
        assert!(q.is_empty());
    }

    #[test]
    fn remove_keeps_the_bitmap_right() {
        let mut q = RunQueue::default();
        q.push_back(5, 1);
        q.push_back(7, 2);
        assert!(q.remove(7, 2));
        assert!(!q.remove(7, 2));
        assert_eq!(q.highest(), Some(5));
        assert!(q.remove(5, 1));
        assert_eq!(q.highest(), None);
    }

    #[test]
    fn timers_fire_in_order_and_cancel() {
        let mut t = TimerQueue::default();
        let a = t.arm(30, 'a');
        t.arm(10, 'b');
        t.arm(10, 'c');
        assert_eq!(t.next_deadline(), Some(10));
        assert_eq!(t.expired(9), None);
        assert_eq!(t.expired(10), Some('b'));
        assert_eq!(t.expired(10), Some('c'));
        assert_eq!(t.cancel(a), Some('a'));
        assert_eq!(t.cancel(a), None);
        assert!(t.is_empty());
    }

    proptest! {
        #[test]
        fn pops_in_priority_order(items in proptest::collection::vec((0u8..64, any::<u16>()), 0..200)) {
            let mut q = RunQueue::default();
            for (p, v) in &items { q.push_back(*p, *v); }
            prop_assert_eq!(q.len(), items.len());
            let mut last = 64u8;
            let mut per_level: std::collections::HashMap<u8, Vec<u16>> = Default::default();
            while let Some((p, v)) = q.pop() {
                prop_assert!(p <= last);
                last = p;
                per_level.entry(p).or_default().push(v);
            }
            for (p, got) in per_level {
                let want: Vec<u16> = items.iter().filter(|(q, _)| *q == p).map(|(_, v)| *v).collect();
                prop_assert_eq!(got, want, "FIFO within a level");
            }
        }
    }
}
