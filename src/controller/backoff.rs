//! Per-object exponential backoff that resets when the object reconciles successfully.
//!
//! kube-runtime's `error_policy` knows nothing of successes, so the controller keeps a failure
//! count per object UID here: every failure doubles the wait (from `base` up to `max`), honouring
//! a provider's `Retry-After` when that is longer; a success forgets the object.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;

/// Backoff settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Wait after the first failure.
    pub base: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

/// Failure counts by object UID.
#[derive(Debug, Default)]
pub struct Backoff {
    config: BackoffConfig,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// A backoff with the given settings.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure and returns how long to wait before the next try.
    pub fn failure(&self, uid: &str, retry_after: Option<Duration>) -> Duration {
        let mut map = self.failures.lock();
        let n = map.entry(uid.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let delay = delay_for(self.config, *n);
        retry_after.map_or(delay, |ra| delay.max(ra.min(self.config.max)))
    }

    /// Forgets the object's failures.
    pub fn success(&self, uid: &str) {
        self.failures.lock().remove(uid);
    }

    /// Current failure count of an object.
    pub fn failures(&self, uid: &str) -> u32 {
        self.failures.lock().get(uid).copied().unwrap_or(0)
    }
}

/// Wait after the `n`-th consecutive failure (n ≥ 1): base·2^(n-1), capped at max.
pub fn delay_for(config: BackoffConfig, n: u32) -> Duration {
    let exp = n.saturating_sub(1).min(31);
    config.base.saturating_mul(1u32 << exp).min(config.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let b = Backoff::new(BackoffConfig {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
        });
        let waits: Vec<u64> = (0..6).map(|_| b.failure("u", None).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 10, 10]);
        b.success("u");
        assert_eq!(b.failures("u"), 0);
        assert_eq!(b.failure("u", None), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_extends_but_stays_capped() {
        let b = Backoff::new(BackoffConfig {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        });
        assert_eq!(
            b.failure("u", Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            b.failure("v", Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn objects_are_independent() {
        let b = Backoff::default();
        b.failure("a", None);
        b.failure("a", None);
        assert_eq!(b.failures("a"), 2);
        assert_eq!(b.failures("b"), 0);
    }
}
