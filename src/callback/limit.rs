//! Request limits of the callback endpoint, applied after authentication so that nobody without
//! an attempt's token can use up that attempt's budget:
//! - a token bucket per attempt and one for all authenticated reports, so a misbehaving workload
//!   cannot overload the operator;
//! - one bucket for everything unauthenticated (a missing or wrong token) and for the Secret
//!   reads that verifying an attempt whose token digest is not cached yet costs, so a flood of
//!   forged reports gets cheap 401s, then 429s, and never more than a bounded number of API
//!   reads, while the real wrapper's reports go through.
//!
//! Over a limit: 429 (the wrapper retries later).

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

/// Requests per second and burst of one token bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once.
    pub burst: f64,
}

/// Per-attempt reports: a wrapper sends about one heartbeat every few seconds.
pub const PER_ATTEMPT: Rate = Rate {
    per_second: 5.0,
    burst: 20.0,
};
/// All authenticated reports together.
pub const AUTHENTICATED: Rate = Rate {
    per_second: 2_000.0,
    burst: 4_000.0,
};
/// All unauthenticated requests and token Secret reads together.
pub const UNAUTHENTICATED: Rate = Rate {
    per_second: 50.0,
    burst: 100.0,
};
/// Buckets kept at most; idle (full) buckets are dropped first when the map is full.
pub const MAX_KEYS: usize = 50_000;
/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The endpoint's limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Each attempt's authenticated reports.
    pub per_attempt: Rate,
    /// All authenticated reports.
    pub authenticated: Rate,
    /// Missing or wrong tokens, and token Secret reads.
    pub unauthenticated: Rate,
    /// Per-attempt buckets kept at most.
    pub max_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_attempt: PER_ATTEMPT,
            authenticated: AUTHENTICATED,
            unauthenticated: UNAUTHENTICATED,
            max_keys: MAX_KEYS,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, at: Instant) -> Self {
        Self {
            tokens: rate.burst,
            at,
        }
    }

    fn take(&mut self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The endpoint's token buckets.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    authenticated: Bucket,
    unauthenticated: Bucket,
    per_attempt: HashMap<String, Bucket>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Limiter {
    /// A limiter with the given limits.
    pub fn new(limits: Limits) -> Self {
        let now = Instant::now();
        Self {
            limits,
            state: Mutex::new(State {
                authenticated: Bucket::full(limits.authenticated, now),
                unauthenticated: Bucket::full(limits.unauthenticated, now),
                per_attempt: HashMap::new(),
            }),
        }
    }

    /// Takes one authenticated report of attempt `key` at `now`; false when over its own or the
    /// authenticated limit.
    pub fn allow_attempt_at(&self, key: &str, now: Instant) -> bool {
        let mut state = self.state.lock();
        if !state.authenticated.take(self.limits.authenticated, now) {
            return false;
        }
        let rate = self.limits.per_attempt;
        let buckets = &mut state.per_attempt;
        if !buckets.contains_key(key) && buckets.len() >= self.limits.max_keys {
            buckets.retain(|_, b| {
                let refilled =
                    b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate.per_second;
                refilled < rate.burst
            });
            if buckets.len() >= self.limits.max_keys {
                return false;
            }
        }
        buckets
            .entry(key.to_string())
            .or_insert_with(|| Bucket::full(rate, now))
            .take(rate, now)
    }

    /// Takes one authenticated report of attempt `key` now.
    pub fn allow_attempt(&self, key: &str) -> bool {
        self.allow_attempt_at(key, Instant::now())
    }

    /// Takes one unauthenticated request (or token Secret read) at `now`.
    pub fn allow_unauthenticated_at(&self, now: Instant) -> bool {
        self.state
            .lock()
            .unauthenticated
            .take(self.limits.unauthenticated, now)
    }

    /// Takes one unauthenticated request (or token Secret read) now.
    pub fn allow_unauthenticated(&self) -> bool {
        self.allow_unauthenticated_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SLOW: Rate = Rate {
        per_second: 1.0,
        burst: 3.0,
    };
    const WIDE: Rate = Rate {
        per_second: 1000.0,
        burst: 1000.0,
    };

    fn limits(per_attempt: Rate, authenticated: Rate, max_keys: usize) -> Limits {
        Limits {
            per_attempt,
            authenticated,
            unauthenticated: SLOW,
            max_keys,
        }
    }

    #[test]
    fn a_key_gets_its_burst_then_its_rate() {
        let l = Limiter::new(limits(SLOW, WIDE, 10));
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.allow_attempt_at("a", t0)));
        assert!(!l.allow_attempt_at("a", t0), "burst spent");
        assert!(l.allow_attempt_at("b", t0), "other keys are independent");
        assert!(
            l.allow_attempt_at("a", t0 + Duration::from_secs(1)),
            "refills at the rate"
        );
        assert!(!l.allow_attempt_at("a", t0 + Duration::from_secs(1)));
    }

    #[test]
    fn the_authenticated_bucket_caps_every_attempt() {
        let l = Limiter::new(limits(WIDE, SLOW, 10));
        let t0 = Instant::now();
        assert!(
            l.allow_attempt_at("a", t0)
                && l.allow_attempt_at("b", t0)
                && l.allow_attempt_at("c", t0)
        );
        assert!(!l.allow_attempt_at("d", t0));
    }

    #[test]
    fn unauthenticated_requests_spend_their_own_bucket_only() {
        let l = Limiter::new(limits(SLOW, SLOW, 10));
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.allow_unauthenticated_at(t0)));
        assert!(!l.allow_unauthenticated_at(t0), "burst spent");
        assert!(
            (0..3).all(|_| l.allow_attempt_at("a", t0)),
            "authenticated reports keep their whole budget"
        );
    }

    #[test]
    fn the_key_map_is_bounded_and_idle_keys_make_room() {
        let l = Limiter::new(limits(SLOW, WIDE, 2));
        let t0 = Instant::now();
        assert!(l.allow_attempt_at("a", t0) && l.allow_attempt_at("b", t0));
        assert!(
            !l.allow_attempt_at("c", t0),
            "no room while a and b are busy"
        );
        assert!(
            l.allow_attempt_at("c", t0 + Duration::from_secs(10)),
            "idle buckets are dropped"
        );
    }
}
