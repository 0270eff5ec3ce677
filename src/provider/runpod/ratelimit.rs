//! Client-side rate limiter for RunPod: parses `Retry-After` and the `RateLimit` header
//! (`"minute";r=0;t=12, "hour";r=2800;t=1812`) and holds calls back until the server's window
//! reopens. Short waits are slept through; longer ones fail fast as `RateLimited`.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// One window of a `RateLimit` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowState {
    /// Window name (`minute`, `hour`, `day`).
    pub name: String,
    /// Requests left (`r`).
    pub remaining: u64,
    /// Seconds until the window resets (`t`).
    pub reset_secs: u64,
}

/// Parses `Retry-After` as integer seconds (RunPod's form). HTTP dates are not used by RunPod.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Parses a `RateLimit` header; malformed items are skipped.
pub fn parse_ratelimit(value: &str) -> Vec<WindowState> {
    value
        .split(',')
        .filter_map(|item| {
            let mut parts = item.trim().split(';');
            let name = parts.next()?.trim().trim_matches('"').to_string();
            let (mut remaining, mut reset) = (None, None);
            for p in parts {
                match p.trim().split_once('=') {
                    Some(("r", v)) => remaining = v.trim().parse().ok(),
                    Some(("t", v)) => reset = v.trim().parse().ok(),
                    _ => {}
                }
            }
            Some(WindowState {
                name,
                remaining: remaining?,
                reset_secs: reset?,
            })
        })
        .collect()
}

/// How long to hold back after a response whose windows are as given: the longest reset of an
/// exhausted window.
pub fn exhausted_wait(windows: &[WindowState]) -> Option<Duration> {
    windows
        .iter()
        .filter(|w| w.remaining == 0)
        .map(|w| Duration::from_secs(w.reset_secs))
        .max()
}

/// Shared limiter of one account.
#[derive(Debug)]
pub struct Limiter {
    blocked_until: Mutex<Option<Instant>>,
    max_wait: Duration,
}

impl Limiter {
    /// A limiter that sleeps through waits up to `max_wait`.
    pub fn new(max_wait: Duration) -> Self {
        Self {
            blocked_until: Mutex::new(None),
            max_wait,
        }
    }

    /// Holds calls back for `d` from now (never shortens an existing hold).
    pub fn hold(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut g = self.blocked_until.lock();
        if g.is_none_or(|u| u < until) {
            *g = Some(until);
        }
    }

    /// Time left on the hold.
    pub fn remaining(&self) -> Duration {
        self.blocked_until.lock().map_or(Duration::ZERO, |u| {
            u.saturating_duration_since(Instant::now())
        })
    }

    /// Waits for the hold to end when it is short; `Err(left)` when it is longer than allowed.
    pub async fn admit(&self) -> Result<(), Duration> {
        let left = self.remaining();
        if left.is_zero() {
            return Ok(());
        }
        if left > self.max_wait {
            return Err(left);
        }
        tokio::time::sleep(left).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_integer_seconds() {
        assert_eq!(parse_retry_after("12"), Some(Duration::from_secs(12)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn ratelimit_header_parses_the_spec_example() {
        let w =
            parse_ratelimit(r#""minute";r=0;t=12, "hour";r=2800;t=1812, "day";r=49000;t=80000"#);
        assert_eq!(w.len(), 3);
        assert_eq!(
            w[0],
            WindowState {
                name: "minute".into(),
                remaining: 0,
                reset_secs: 12
            }
        );
        assert_eq!(exhausted_wait(&w), Some(Duration::from_secs(12)));
        let ok = parse_ratelimit(r#""minute";r=5;t=12"#);
        assert_eq!(exhausted_wait(&ok), None);
        assert!(parse_ratelimit("garbage").is_empty());
        assert_eq!(
            parse_ratelimit(r#""minute";r=x;t=1, "hour";r=0;t=9"#).len(),
            1
        );
    }

    #[tokio::test]
    async fn limiter_fails_fast_on_long_holds_and_sleeps_short_ones() {
        let l = Limiter::new(Duration::from_millis(50));
        assert_eq!(l.admit().await, Ok(()));
        l.hold(Duration::from_secs(30));
        assert!(l.admit().await.is_err());
        l.hold(Duration::from_millis(1));
        assert!(
            l.remaining() > Duration::from_secs(1),
            "a shorter hold never shortens a longer one"
        );
        let short = Limiter::new(Duration::from_secs(5));
        short.hold(Duration::from_millis(10));
        assert_eq!(short.admit().await, Ok(()));
        assert!(short.remaining().is_zero());
    }
}
