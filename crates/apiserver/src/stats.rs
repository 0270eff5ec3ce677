//! Request counters for benchmarks: requests per verb and resource, and watch streams opened.

use std::collections::BTreeMap;
use std::fmt;

use parking_lot::Mutex;

/// The API verbs the server counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
}

impl Verb {
    /// Whether the verb writes.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Verb::Create | Verb::Update | Verb::Patch | Verb::Delete
        )
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        };
        f.write_str(name)
    }
}

/// A snapshot of request counts. Resources are named `plural` (core) or `plural.group`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestStats {
    counts: BTreeMap<(Verb, String), u64>,
    /// Watch streams opened since the last reset.
    pub watches_opened: u64,
}

impl RequestStats {
    /// Requests of `verb` on `resource` (`cloudresources.runctl.dev`, `leases.coordination.k8s.io`,
    /// `configmaps`).
    pub fn count(&self, verb: Verb, resource: &str) -> u64 {
        self.counts
            .get(&(verb, resource.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Requests of `verb` on any resource.
    pub fn total(&self, verb: Verb) -> u64 {
        self.counts
            .iter()
            .filter(|((v, _), _)| *v == verb)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every write (create, update, patch, delete).
    pub fn writes(&self) -> u64 {
        self.counts
            .iter()
            .filter(|((v, _), _)| v.is_write())
            .map(|(_, n)| n)
            .sum()
    }

    /// All (verb, resource, count) triples.
    pub fn iter(&self) -> impl Iterator<Item = (Verb, &str, u64)> {
        self.counts.iter().map(|((v, r), n)| (*v, r.as_str(), *n))
    }
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct StatsRecorder {
    inner: Mutex<RequestStats>,
}

impl StatsRecorder {
    pub fn record(&self, verb: Verb, resource: &str) {
        let mut stats = self.inner.lock();
        *stats
            .counts
            .entry((verb, resource.to_string()))
            .or_default() += 1;
        if verb == Verb::Watch {
            stats.watches_opened += 1;
        }
    }

    pub fn snapshot(&self) -> RequestStats {
        self.inner.lock().clone()
    }

    pub fn reset(&self) {
        *self.inner.lock() = RequestStats::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_resets() {
        let rec = StatsRecorder::default();
        rec.record(Verb::Get, "configmaps");
        rec.record(Verb::Get, "configmaps");
        rec.record(Verb::Patch, "leases.coordination.k8s.io");
        rec.record(Verb::Watch, "configmaps");
        let s = rec.snapshot();
        assert_eq!(s.count(Verb::Get, "configmaps"), 2);
        assert_eq!(s.total(Verb::Patch), 1);
        assert_eq!(s.writes(), 1);
        assert_eq!(s.watches_opened, 1);
        rec.reset();
        assert_eq!(rec.snapshot(), RequestStats::default());
    }
}
