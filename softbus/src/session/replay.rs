//! The sliding replay window of a session's receive side.
//!
//! Design (the bitmap of RFC 6479): a ring of `WORDS` 64-bit words holds one bit per record
//! counter; the window covers the `WINDOW` counters behind the highest one accepted. A
//! counter is checked before decryption ([`ReplayWindow::check`], which changes nothing) and
//! marked only after the record authenticated ([`ReplayWindow::mark`]), so forged records
//! cannot move the window. Moving forward clears the words that slide out; one spare word
//! keeps the oldest word of the window intact while the newest one is being filled.

use core::fmt;

const WORDS: usize = 16;
const BITS_PER_WORD: u64 = 64;
/// Counters behind the highest accepted that are still accepted once.
pub const WINDOW: u64 = (WORDS as u64 - 1) * BITS_PER_WORD;

/// Why a record counter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// A record with this counter was accepted before.
    Replayed(u64),
    /// The counter is [`WINDOW`] or more behind the highest accepted.
    TooOld(u64),
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Replayed(c) => write!(f, "record {c} was received before (replay)"),
            Self::TooOld(c) => write!(f, "record {c} is older than the replay window of {WINDOW} records"),
        }
    }
}

/// Which record counters were received, over a sliding window.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    highest: u64,
    bitmap: [u64; WORDS],
}

fn slot(counter: u64) -> (usize, u64) {
    let word = (counter / BITS_PER_WORD % WORDS as u64) as usize;
    (word, 1 << (counter % BITS_PER_WORD))
}

impl ReplayWindow {
    /// Whether `counter` may be accepted.
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if counter > self.highest {
            return Ok(());
        }
        if self.highest - counter >= WINDOW {
            return Err(ReplayError::TooOld(counter));
        }
        let (word, bit) = slot(counter);
        match self.bitmap.get(word) {
            Some(w) if w & bit != 0 => Err(ReplayError::Replayed(counter)),
            _ => Ok(()),
        }
    }

    /// Records that `counter` was accepted; call only after [`ReplayWindow::check`] passed and
    /// the record authenticated.
    pub fn mark(&mut self, counter: u64) {
        if counter > self.highest {
            let current = self.highest / BITS_PER_WORD;
            let target = counter / BITS_PER_WORD;
            let steps = (target - current).min(WORDS as u64);
            for i in 1..=steps {
                let (word, _) = slot((current + i) * BITS_PER_WORD);
                if let Some(w) = self.bitmap.get_mut(word) {
                    *w = 0;
                }
            }
            self.highest = counter;
        }
        let (word, bit) = slot(counter);
        if let Some(w) = self.bitmap.get_mut(word) {
            *w |= bit;
        }
    }

    #[cfg(test)]
    fn accept(&mut self, counter: u64) -> Result<(), ReplayError> {
        self.check(counter)?;
        self.mark(counter);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_counter_once_in_any_order_within_the_window() {
        let mut w = ReplayWindow::default();
        for c in [0, 5, 3, 1, 2, 4, 900, 6] {
            assert_eq!(w.accept(c), Ok(()), "counter {c}");
        }
        for c in [0, 5, 3, 900] {
            assert_eq!(w.accept(c), Err(ReplayError::Replayed(c)));
        }
    }

    #[test]
    fn refuses_counters_behind_the_window() {
        let mut w = ReplayWindow::default();
        w.accept(10_000).unwrap();
        assert_eq!(w.check(10_000 - WINDOW), Err(ReplayError::TooOld(10_000 - WINDOW)));
        assert_eq!(w.accept(10_000 - WINDOW + 1), Ok(()));
        assert_eq!(w.check(3), Err(ReplayError::TooOld(3)));
    }

    #[test]
    fn check_does_not_move_the_window() {
        let mut w = ReplayWindow::default();
        w.accept(1).unwrap();
        assert_eq!(w.check(u64::MAX - 1), Ok(()));
        assert_eq!(w.accept(2), Ok(()));
    }

    #[test]
    fn big_jumps_clear_stale_bits() {
        let mut w = ReplayWindow::default();
        for c in 0..200 {
            w.accept(c).unwrap();
        }
        // One full ring later the same slots must read as free, not as replays.
        let later = 200 + WORDS as u64 * 64;
        w.accept(later).unwrap();
        for c in later - 100..later {
            assert_eq!(w.accept(c), Ok(()), "counter {c}");
        }
        w.accept(u64::MAX - 1).unwrap();
        assert_eq!(w.accept(u64::MAX - 2), Ok(()));
        assert_eq!(w.accept(u64::MAX - 1), Err(ReplayError::Replayed(u64::MAX - 1)));
    }

    #[test]
    fn matches_a_simple_model_on_a_pseudo_random_sequence() {
        let mut w = ReplayWindow::default();
        let mut seen = alloc::collections::BTreeSet::new();
        let mut highest = 0u64;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let c = (highest + 40).saturating_sub(x % 1200);
            let expected = if c + WINDOW <= highest && highest >= WINDOW {
                Err(ReplayError::TooOld(c))
            } else if seen.contains(&c) {
                Err(ReplayError::Replayed(c))
            } else {
                Ok(())
            };
            assert_eq!(w.accept(c), expected, "counter {c}, highest {highest}");
            if expected.is_ok() {
                seen.insert(c);
                highest = highest.max(c);
            }
        }
    }
}
