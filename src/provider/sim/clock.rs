//! The simulator's clock: milliseconds since the cloud was made, from real time or advanced by
//! hand for deterministic tests and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

/// Simulated time in milliseconds since the cloud was made.
pub type SimMillis = u64;

/// A real or manual clock with a wall-clock origin for timestamps.
#[derive(Debug)]
pub struct SimClock {
    origin: Timestamp,
    source: Source,
}

#[derive(Debug)]
enum Source {
    Real(Instant),
    Manual(AtomicU64),
}

impl SimClock {
    /// A clock that follows real time.
    pub fn real() -> Self {
        Self {
            origin: Timestamp::now(),
            source: Source::Real(Instant::now()),
        }
    }

    /// A clock that stands still until [`SimClock::advance`] moves it.
    pub fn manual() -> Self {
        Self {
            origin: Timestamp::now(),
            source: Source::Manual(AtomicU64::new(0)),
        }
    }

    /// True for a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(self.source, Source::Manual(_))
    }

    /// Current simulated time.
    pub fn now(&self) -> SimMillis {
        match &self.source {
            Source::Real(start) => u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            Source::Manual(ms) => ms.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward; returns false (and does nothing) for a real clock.
    pub fn advance(&self, by: Duration) -> bool {
        match &self.source {
            Source::Real(_) => false,
            Source::Manual(ms) => {
                let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
                ms.fetch_add(by, Ordering::SeqCst);
                true
            }
        }
    }

    /// The wall-clock time of simulated instant `at`.
    pub fn timestamp(&self, at: SimMillis) -> Timestamp {
        let offset = SignedDuration::from_millis(i64::try_from(at).unwrap_or(i64::MAX));
        self.origin.checked_add(offset).unwrap_or(self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = SimClock::manual();
        assert_eq!(c.now(), 0);
        assert!(c.advance(Duration::from_millis(1500)));
        assert_eq!(c.now(), 1500);
        assert_eq!(
            c.timestamp(1500).duration_since(c.timestamp(0)),
            SignedDuration::from_millis(1500)
        );
    }

    #[test]
    fn real_clock_cannot_be_advanced() {
        let c = SimClock::real();
        assert!(!c.is_manual());
        assert!(!c.advance(Duration::from_secs(1)));
    }
}
