//! Time as the caller tells it: the soft bus reads no clock.
//!
//! Design: an [`Instant`] is a count of microseconds since an epoch the caller chooses (boot,
//! process start, the start of a simulation); only differences matter. Durations are
//! `core::time::Duration`. Arithmetic saturates instead of overflowing, so a hostile or
//! buggy time source cannot make a state machine panic.

use core::time::Duration;

/// A point in time, in microseconds since the caller's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The caller's epoch.
    pub const ZERO: Self = Self(0);

    /// The instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// The instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)))
    }

    /// How long after `earlier` this is; zero if it is not after.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_millis(2);
        assert_eq!(t.as_micros(), 2000);
        assert_eq!(t.saturating_add(Duration::from_micros(5)).as_micros(), 2005);
        assert_eq!(Instant::from_micros(u64::MAX).saturating_add(Duration::MAX), Instant::from_micros(u64::MAX));
        assert_eq!(Instant::ZERO.saturating_duration_since(t), Duration::ZERO);
        assert_eq!(t.saturating_duration_since(Instant::ZERO), Duration::from_millis(2));
    }
}
