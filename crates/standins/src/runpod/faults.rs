//! Fault injection and rate limiting of the RunPod stand-in: one-shot faults per operation and
//! the per-user rate-limit windows with their `RateLimit` / `RateLimit-Policy` headers.

use std::time::{Duration, Instant};

/// An API operation, for targeting faults and counting calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `POST /v2/pods`.
    Create,
    /// `GET /v2/pods`.
    List,
    /// `GET /v2/pods/{id}`.
    Get,
    /// `DELETE /v2/pods/{id}`.
    Delete,
    /// `POST /v2/pods/{id}/action`.
    Action,
    /// `GET /v2/catalog/gpus[/{id}]`.
    Catalog,
    /// Any of the above (targets only).
    Any,
}

impl Op {
    /// True when a fault aimed at `self` applies to a call of `call`.
    pub fn matches(self, call: Op) -> bool {
        self == Op::Any || self == call
    }
}

/// A one-shot fault answered instead of (or around) the next matching call.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// A problem+json answer with this status and a generic detail (5xx, 400, …).
    Status(u16),
    /// 400 with RunPod's "no longer any instances available" detail.
    Capacity,
    /// 429 with `Retry-After` in seconds.
    RateLimited {
        /// Value of `Retry-After`.
        retry_after_secs: u64,
    },
    /// 401.
    Unauthorized,
    /// 403 (no access to the pool).
    Forbidden,
    /// 402 insufficient balance.
    InsufficientBalance,
    /// 422 request validation failure.
    Unprocessable,
    /// Waits this long, then handles the call normally (client timeouts).
    Delay(Duration),
    /// Create only: makes the pod, then never answers in time (the response is lost).
    HangAfterCreate,
    /// Create only: makes the pod, then breaks the connection while answering `201` (the client
    /// sees a reset before or while reading the body).
    DropAfterCreate,
    /// Create only: makes the pod, then answers this status (an ambiguous 5xx).
    ErrorAfterCreate(u16),
}

/// One rate-limit window (`"minute";q=60;w=60`).
#[derive(Clone, Debug)]
pub struct Window {
    /// Window name as in the headers.
    pub name: &'static str,
    /// Requests allowed per window.
    pub quota: u64,
    /// Window length.
    pub length: Duration,
    started: Instant,
    used: u64,
}

impl Window {
    /// A fresh window.
    pub fn new(name: &'static str, quota: u64, length: Duration) -> Self {
        Self {
            name,
            quota,
            length,
            started: Instant::now(),
            used: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        if now.duration_since(self.started) >= self.length {
            self.started = now;
            self.used = 0;
        }
    }

    fn reset_in(&self, now: Instant) -> u64 {
        let left = self.length.saturating_sub(now.duration_since(self.started));
        left.as_secs() + u64::from(left.subsec_nanos() > 0)
    }
}

/// The per-user windows of the stand-in.
#[derive(Clone, Debug)]
pub struct RateLimits {
    /// Minute, hour and day windows.
    pub windows: Vec<Window>,
}

impl Default for RateLimits {
    /// Generous quotas, so tests hit limits only when they ask for it.
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl RateLimits {
    /// Windows with `per_minute` for the minute window and generous hour and day quotas.
    pub fn new(per_minute: u64) -> Self {
        Self::with_minute_window(per_minute, Duration::from_secs(60))
    }

    /// Like [`RateLimits::new`] with a custom minute-window length.
    pub fn with_minute_window(per_minute: u64, length: Duration) -> Self {
        Self {
            windows: vec![
                Window::new("minute", per_minute, length),
                Window::new("hour", 10_000_000, Duration::from_secs(3600)),
                Window::new("day", 100_000_000, Duration::from_secs(86_400)),
            ],
        }
    }

    /// Counts one request. `Err(retry_after_secs)` when a window is exhausted.
    pub fn take(&mut self, now: Instant) -> Result<(), u64> {
        for w in &mut self.windows {
            w.roll(now);
        }
        if let Some(w) = self.windows.iter().find(|w| w.used >= w.quota) {
            return Err(w.reset_in(now).max(1));
        }
        for w in &mut self.windows {
            w.used += 1;
        }
        Ok(())
    }

    /// The `RateLimit` header value: `"minute";r=0;t=12, "hour";r=2800;t=1812, …`.
    pub fn header(&self, now: Instant) -> String {
        self.windows
            .iter()
            .map(|w| {
                format!(
                    "\"{}\";r={};t={}",
                    w.name,
                    w.quota.saturating_sub(w.used),
                    w.reset_in(now)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The `RateLimit-Policy` header value: `"minute";q=60;w=60, …`.
    pub fn policy(&self) -> String {
        self.windows
            .iter()
            .map(|w| {
                format!(
                    "\"{}\";q={};w={}",
                    w.name,
                    w.quota,
                    w.length.as_secs().max(1)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_and_refuse() {
        let now = Instant::now();
        let mut rl = RateLimits::new(2);
        assert_eq!(rl.take(now), Ok(()));
        assert_eq!(rl.take(now), Ok(()));
        let wait = rl
            .take(now)
            .expect_err("third request in the minute is refused");
        assert!((1..=60).contains(&wait));
        assert!(
            rl.header(now).starts_with("\"minute\";r=0;t="),
            "{}",
            rl.header(now)
        );
        assert_eq!(
            rl.policy(),
            "\"minute\";q=2;w=60, \"hour\";q=10000000;w=3600, \"day\";q=100000000;w=86400"
        );
    }

    #[test]
    fn ops_match() {
        assert!(Op::Any.matches(Op::Create));
        assert!(Op::Create.matches(Op::Create));
        assert!(!Op::List.matches(Op::Create));
    }
}
