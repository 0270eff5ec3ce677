//! On-demand price lookups, cached with a time to live and single-flight per key: a burst of
//! lookups of one instance type makes one Price List API call, and the others wait for its
//! answer. A failed lookup is kept for a shorter time, so an outage costs one call per key per
//! retry interval rather than one per reconcile.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What the Price List API said about one instance type in one region.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    /// The on-demand USD price per hour.
    Listed(f64),
    /// The API answered, and lists no on-demand Linux price for it.
    NotListed,
    /// The API could not be read.
    Failed(Failure),
}

/// Why the API could not be read, for the status message and the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// `ProviderError::reason()` of the failed call (`AuthenticationFailed`, `RateLimited`, …),
    /// or `UnreadableAnswer`.
    pub reason: &'static str,
    /// The error as text (AWS's code and message; never a credential).
    pub message: String,
}

struct Slot {
    at: Instant,
    lookup: Lookup,
}

/// Lookups by key (instance type), with when they were made.
pub struct PriceCache {
    ttl: Duration,
    failure_ttl: Duration,
    slots: Mutex<HashMap<String, Slot>>,
    /// One lock per key, held while its lookup is in flight.
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl PriceCache {
    /// A cache keeping answers for `ttl` and failures for `failure_ttl`.
    pub fn new(ttl: Duration, failure_ttl: Duration) -> Self {
        Self {
            ttl,
            failure_ttl,
            slots: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// The last lookup of `key`, however old; `None` before the first. No call.
    pub fn peek(&self, key: &str) -> Option<Lookup> {
        self.slots.lock().get(key).map(|s| s.lookup.clone())
    }

    /// The lookup of `key` while it is fresh.
    fn fresh(&self, key: &str) -> Option<Lookup> {
        let slots = self.slots.lock();
        let slot = slots.get(key)?;
        let ttl = match slot.lookup {
            Lookup::Failed(_) => self.failure_ttl,
            _ => self.ttl,
        };
        (slot.at.elapsed() < ttl).then(|| slot.lookup.clone())
    }

    /// The lookup of `key`: the cached one while fresh, else the answer of `fetch`, which runs
    /// once for all the callers that ask for `key` while it is in flight.
    pub async fn get<F, Fut>(&self, key: &str, fetch: F) -> Lookup
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Lookup>,
    {
        if let Some(l) = self.fresh(key) {
            return l;
        }
        let flight = self
            .flights
            .lock()
            .entry(key.to_string())
            .or_default()
            .clone();
        let _in_flight = flight.lock().await;
        // A lookup that finished while this caller waited serves it.
        if let Some(l) = self.fresh(key) {
            return l;
        }
        let lookup = fetch().await;
        self.slots.lock().insert(
            key.to_string(),
            Slot {
                at: Instant::now(),
                lookup: lookup.clone(),
            },
        );
        lookup
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn failed() -> Lookup {
        Lookup::Failed(Failure {
            reason: "ProviderUnavailable",
            message: "down".into(),
        })
    }

    #[tokio::test]
    async fn a_burst_of_lookups_makes_one_fetch() {
        let cache = Arc::new(PriceCache::new(DAY, DAY));
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = vec![];
        for _ in 0..20 {
            let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get("g5.xlarge", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        // Held open until every caller has had the chance to ask.
                        gate.notified().await;
                        Lookup::Listed(1.006)
                    })
                    .await
            }));
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for t in tasks {
            assert_eq!(t.await.expect("task"), Lookup::Listed(1.006));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.peek("g5.xlarge"), Some(Lookup::Listed(1.006)));
        assert_eq!(cache.peek("g5.2xlarge"), None);
    }

    #[tokio::test]
    async fn keys_are_looked_up_apart_and_kept_while_fresh() {
        let cache = PriceCache::new(DAY, DAY);
        let calls = AtomicUsize::new(0);
        for key in ["g5.xlarge", "p5.48xlarge", "g5.xlarge", "p5.48xlarge"] {
            cache
                .get(key, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Lookup::NotListed
                })
                .await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn stale_answers_are_fetched_again() {
        let cache = PriceCache::new(Duration::ZERO, DAY);
        let calls = AtomicUsize::new(0);
        for _ in 0..3 {
            cache
                .get("g5.xlarge", || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Lookup::Listed(1.0)
                })
                .await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn failures_are_kept_for_their_own_time() {
        // Kept: an outage costs one call per retry interval.
        let cache = PriceCache::new(Duration::ZERO, DAY);
        let calls = AtomicUsize::new(0);
        for _ in 0..3 {
            let l = cache
                .get("g5.xlarge", || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    failed()
                })
                .await;
            assert_eq!(l, failed());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Retried at once when the retry interval is over; the answer replaces the failure.
        let cache = PriceCache::new(DAY, Duration::ZERO);
        cache.get("g5.xlarge", || async { failed() }).await;
        let l = cache
            .get("g5.xlarge", || async { Lookup::Listed(1.006) })
            .await;
        assert_eq!(l, Lookup::Listed(1.006));
        assert_eq!(cache.peek("g5.xlarge"), Some(Lookup::Listed(1.006)));
    }
}
