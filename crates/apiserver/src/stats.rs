//! Request counters for benchmarks and tests: requests per verb and resource, requests per
//! `User-Agent`, watch streams opened, and watch streams open now. [`RequestStats`] travels as JSON (`GET /_runctl/stats`, see
//! [`crate::RemoteApiServer`]) when the server runs in another process.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The API verbs the server counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "StatsJson", from = "StatsJson")]
pub struct RequestStats {
    counts: BTreeMap<(Verb, String), u64>,
    /// Watch streams opened since the last reset.
    pub watches_opened: u64,
    /// Watch streams open when the snapshot was taken (a gauge: a reset leaves it alone).
    pub watches_open: u64,
    /// Requests per `User-Agent` header ("" for requests without one).
    pub user_agents: BTreeMap<String, u64>,
}

/// The JSON shape of [`RequestStats`]:
/// `{"requests": [{"verb": "get", "resource": "configmaps", "count": 2}], "watchesOpened": 1,
/// "watchesOpen": 1, "userAgents": {"runctl/0.1.0": 3}}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatsJson {
    requests: Vec<RequestCount>,
    watches_opened: u64,
    watches_open: u64,
    #[serde(default)]
    user_agents: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
struct RequestCount {
    verb: Verb,
    resource: String,
    count: u64,
}

impl From<RequestStats> for StatsJson {
    fn from(stats: RequestStats) -> Self {
        StatsJson {
            requests: stats
                .counts
                .into_iter()
                .map(|((verb, resource), count)| RequestCount {
                    verb,
                    resource,
                    count,
                })
                .collect(),
            watches_opened: stats.watches_opened,
            watches_open: stats.watches_open,
            user_agents: stats.user_agents,
        }
    }
}

impl From<StatsJson> for RequestStats {
    fn from(json: StatsJson) -> Self {
        let mut counts = BTreeMap::new();
        for r in json.requests {
            *counts.entry((r.verb, r.resource)).or_default() += r.count;
        }
        RequestStats {
            counts,
            watches_opened: json.watches_opened,
            watches_open: json.watches_open,
            user_agents: json.user_agents,
        }
    }
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

    /// Requests made with `User-Agent` `agent`.
    pub fn by_user_agent(&self, agent: &str) -> u64 {
        self.user_agents.get(agent).copied().unwrap_or(0)
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
    open: AtomicU64,
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

    /// Counts one request made with `User-Agent` `agent` ("" for none).
    pub fn user_agent(&self, agent: &str) {
        *self
            .inner
            .lock()
            .user_agents
            .entry(agent.to_string())
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> RequestStats {
        RequestStats {
            watches_open: self.open.load(Ordering::Relaxed),
            ..self.inner.lock().clone()
        }
    }

    /// Counts to zero; the open-watches gauge stays.
    pub fn reset(&self) {
        *self.inner.lock() = RequestStats::default();
    }

    /// Counts one watch stream as open until the guard drops.
    pub fn watch_open(self: &Arc<Self>) -> OpenWatch {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenWatch(self.clone())
    }
}

/// One open watch stream (see [`StatsRecorder::watch_open`]).
pub(crate) struct OpenWatch(Arc<StatsRecorder>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
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

    #[test]
    fn open_watches_are_a_gauge() {
        let rec = Arc::new(StatsRecorder::default());
        let a = rec.watch_open();
        let b = rec.watch_open();
        assert_eq!(rec.snapshot().watches_open, 2);
        rec.reset();
        assert_eq!(rec.snapshot().watches_open, 2, "a reset keeps the gauge");
        drop(a);
        assert_eq!(rec.snapshot().watches_open, 1);
        drop(b);
        assert_eq!(rec.snapshot().watches_open, 0);
    }

    #[test]
    fn json_round_trip() {
        let rec = StatsRecorder::default();
        rec.record(Verb::Get, "configmaps");
        rec.record(Verb::Patch, "cloudresources.runctl.dev");
        rec.record(Verb::Watch, "trainingjobs.runctl.dev");
        rec.user_agent("runctl/0.1.0");
        rec.user_agent("runctl/0.1.0");
        let stats = RequestStats {
            watches_open: 3,
            ..rec.snapshot()
        };
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["watchesOpened"], 1);
        assert_eq!(json["watchesOpen"], 3);
        assert_eq!(json["userAgents"]["runctl/0.1.0"], 2);
        assert!(
            json["requests"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!({"verb": "patch", "resource": "cloudresources.runctl.dev", "count": 1}))
        );
        let back: RequestStats = serde_json::from_value(json).unwrap();
        assert_eq!(back, stats);
    }
}
