//! Request limits of the callback endpoint: a token bucket per attempt and one for the whole
//! endpoint, so a misbehaving workload or a flood of forged reports (each of which may cost a
//! Secret read) cannot overload the operator. Over the limit: 429 (the wrapper retries later).

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
/// The whole endpoint.
pub const GLOBAL: Rate = Rate {
    per_second: 2_000.0,
    burst: 4_000.0,
};
/// Buckets kept at most; idle (full) buckets are dropped first when the map is full.
pub const MAX_KEYS: usize = 50_000;
/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

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

/// Token buckets per key plus a global one.
#[derive(Debug)]
pub struct Limiter {
    per_key: Rate,
    global: Rate,
    max_keys: usize,
    state: Mutex<(Bucket, HashMap<String, Bucket>)>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new(PER_ATTEMPT, GLOBAL, MAX_KEYS)
    }
}

impl Limiter {
    /// A limiter with the given rates.
    pub fn new(per_key: Rate, global: Rate, max_keys: usize) -> Self {
        Self {
            per_key,
            global,
            max_keys,
            state: Mutex::new((Bucket::full(global, Instant::now()), HashMap::new())),
        }
    }

    /// Takes one request for `key` at `now`; false when over either limit.
    pub fn allow_at(&self, key: &str, now: Instant) -> bool {
        let mut guard = self.state.lock();
        let (global, buckets) = &mut *guard;
        if !global.take(self.global, now) {
            return false;
        }
        if !buckets.contains_key(key) && buckets.len() >= self.max_keys {
            let rate = self.per_key;
            buckets.retain(|_, b| {
                let refilled =
                    b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate.per_second;
                refilled < rate.burst
            });
            if buckets.len() >= self.max_keys {
                return false;
            }
        }
        buckets
            .entry(key.to_string())
            .or_insert_with(|| Bucket::full(self.per_key, now))
            .take(self.per_key, now)
    }

    /// Takes one request for `key` now.
    pub fn allow(&self, key: &str) -> bool {
        self.allow_at(key, Instant::now())
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

    #[test]
    fn a_key_gets_its_burst_then_its_rate() {
        let l = Limiter::new(SLOW, WIDE, 10);
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.allow_at("a", t0)));
        assert!(!l.allow_at("a", t0), "burst spent");
        assert!(l.allow_at("b", t0), "other keys are independent");
        assert!(
            l.allow_at("a", t0 + Duration::from_secs(1)),
            "refills at the rate"
        );
        assert!(!l.allow_at("a", t0 + Duration::from_secs(1)));
    }

    #[test]
    fn the_global_bucket_caps_everything() {
        let l = Limiter::new(WIDE, SLOW, 10);
        let t0 = Instant::now();
        assert!(l.allow_at("a", t0) && l.allow_at("b", t0) && l.allow_at("c", t0));
        assert!(!l.allow_at("d", t0));
    }

    #[test]
    fn the_key_map_is_bounded_and_idle_keys_make_room() {
        let l = Limiter::new(SLOW, WIDE, 2);
        let t0 = Instant::now();
        assert!(l.allow_at("a", t0) && l.allow_at("b", t0));
        assert!(!l.allow_at("c", t0), "no room while a and b are busy");
        assert!(
            l.allow_at("c", t0 + Duration::from_secs(10)),
            "idle buckets are dropped"
        );
    }
}
