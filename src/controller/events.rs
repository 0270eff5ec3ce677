//! Kubernetes Events (`events.k8s.io/v1`) written off the reconcile path, with bounded memory.
//!
//! A reconcile hands an event to [`EventSink::publish`], which only enqueues it; a few worker
//! tasks write it. Repeats of the same event (same object, type, reason, action) within
//! [`SERIES_TTL`] become a series on the first Event (a patch of `series.count`) instead of new
//! objects, as kubectl and client-go expect.
//!
//! Why not `kube::runtime::events::Recorder`: it writes inside the reconcile (one API round trip
//! per event on the path from apply to create), keeps every event of the last six minutes in
//! memory, and scans that whole cache on every publish. At 10,000 jobs that is tens of
//! megabytes and a quadratic cost (see `docs/benchmarks.md`). Here the queue is bounded (a full
//! queue drops the event and counts it in `runctl_events_dropped_total{why="queue_full"}`, as
//! client-go's broadcaster does), the series cache holds at most [`MAX_SERIES`] entries and is
//! swept at most once per [`SWEEP_EVERY`].
//!
//! Events of one object always go to the same worker, so their order is kept.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Repeats within this time extend the first event's series.
pub const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);
/// Series remembered at most (across workers); beyond it a repeat makes a new Event.
pub const MAX_SERIES: usize = 4096;
/// How often a worker forgets series older than [`SERIES_TTL`].
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Events waiting to be written at most (across workers).
pub const QUEUE: usize = 4096;
/// Worker tasks.
const WORKERS: usize = 4;

/// One event to write.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The object the event is about.
    pub regarding: ObjectReference,
    /// Normal or Warning.
    pub type_: EventType,
    /// Machine-readable reason (`MachineCreated`).
    pub reason: &'static str,
    /// What runctl did (`Create`).
    pub action: &'static str,
    /// Human-readable note.
    pub note: String,
}

impl Pending {
    fn key(&self) -> SeriesKey {
        SeriesKey {
            uid: self.regarding.uid.clone().unwrap_or_default(),
            namespace: self.regarding.namespace.clone().unwrap_or_default(),
            name: self.regarding.name.clone().unwrap_or_default(),
            kind: self.regarding.kind.clone().unwrap_or_default(),
            warning: matches!(self.type_, EventType::Warning),
            reason: self.reason,
            action: self.action,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    uid: String,
    namespace: String,
    name: String,
    kind: String,
    warning: bool,
    reason: &'static str,
    action: &'static str,
}

/// What is remembered of a written event: enough to extend its series.
#[derive(Clone, Debug)]
struct Series {
    name: String,
    count: i32,
    last: Timestamp,
}

/// Who wrote the events (`reportingController`, `reportingInstance`).
#[derive(Clone, Debug)]
pub struct Reporter {
    /// Controller name (`runctl`).
    pub controller: String,
    /// Instance (the pod name).
    pub instance: String,
}

/// The handle reconciles publish through. Cloning is cheap.
#[derive(Clone)]
pub struct EventSink {
    workers: Arc<Vec<mpsc::Sender<Pending>>>,
    metrics: Arc<Metrics>,
}

impl EventSink {
    /// Starts the workers on the current Tokio runtime. They stop when every sink clone is gone,
    /// after writing what is queued.
    pub fn start(client: kube::Client, reporter: Reporter, metrics: Arc<Metrics>) -> Self {
        let per_worker_series = MAX_SERIES / WORKERS;
        let workers = (0..WORKERS)
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE / WORKERS);
                let worker = Worker {
                    client: client.clone(),
                    reporter: reporter.clone(),
                    metrics: metrics.clone(),
                    series: Cache::new(per_worker_series),
                };
                tokio::spawn(worker.run(rx));
                tx
            })
            .collect();
        Self {
            workers: Arc::new(workers),
            metrics,
        }
    }

    /// Queues an event; never waits. A full queue drops it (counted).
    pub fn publish(&self, event: Pending) {
        self.metrics.event_published(event.reason);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&event.regarding.namespace, &event.regarding.name).hash(&mut h);
        let worker = &self.workers[(h.finish() as usize) % self.workers.len()];
        if worker.try_send(event).is_err() {
            self.metrics.event_dropped("queue_full");
        }
    }
}

/// Series by key, bounded, swept by age.
struct Cache {
    max: usize,
    entries: HashMap<SeriesKey, Series>,
    swept: Option<Timestamp>,
}

impl Cache {
    fn new(max: usize) -> Self {
        Self {
            max,
            entries: HashMap::new(),
            swept: None,
        }
    }

    /// Forgets series older than [`SERIES_TTL`], at most once per [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Timestamp) {
        let every = SignedDuration::try_from(SWEEP_EVERY).unwrap_or(SignedDuration::ZERO);
        if self.swept.is_some_and(|t| t + every > now) {
            return;
        }
        self.swept = Some(now);
        self.entries.retain(|_, s| s.last + SERIES_TTL > now);
    }

    /// The live series of `key`, if any.
    fn get(&self, key: &SeriesKey, now: Timestamp) -> Option<&Series> {
        self.entries.get(key).filter(|s| s.last + SERIES_TTL > now)
    }

    fn remember(&mut self, key: SeriesKey, series: Series) {
        if self.entries.len() < self.max || self.entries.contains_key(&key) {
            self.entries.insert(key, series);
        }
    }
}

struct Worker {
    client: kube::Client,
    reporter: Reporter,
    metrics: Arc<Metrics>,
    series: Cache,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        while let Some(event) = rx.recv().await {
            if let Err(e) = self.write(event).await {
                self.metrics.event_dropped("write_failed");
                tracing::warn!(error = %e, "failed to publish event");
            }
        }
    }

    async fn write(&mut self, event: Pending) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        self.series.sweep(now);
        let key = event.key();
        let namespace = event
            .regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        if let Some(s) = self.series.get(&key, now).cloned() {
            let count = s.count + 1;
            let patch = serde_json::json!({
                "series": EventSeries { count, last_observed_time: MicroTime(now) },
                "note": event.note,
            });
            match api
                .patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.series.remember(
                        key,
                        Series {
                            count,
                            last: now,
                            ..s
                        },
                    );
                    return Ok(());
                }
                // The first event was deleted (TTL, by hand): start a new one.
                Err(kube::Error::Api(st)) if st.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let obj = new_event(&event, &self.reporter, now);
        let name = obj.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &obj).await?;
        self.series.remember(
            key,
            Series {
                name,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }
}

/// The Event object for the first occurrence of `event` at `now`.
pub fn new_event(event: &Pending, reporter: &Reporter, now: Timestamp) -> K8sEvent {
    let base = event
        .regarding
        .name
        .clone()
        .unwrap_or_else(|| reporter.controller.clone());
    K8sEvent {
        action: Some(event.action.to_string()),
        reason: Some(event.reason.to_string()),
        note: Some(event.note.clone()),
        event_time: Some(MicroTime(now)),
        regarding: Some(event.regarding.clone()),
        metadata: ObjectMeta {
            namespace: event.regarding.namespace.clone(),
            name: Some(format!("{base}.{:x}", now.as_nanosecond())),
            ..ObjectMeta::default()
        },
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_string(),
        ),
        ..K8sEvent::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(name: &str, reason: &'static str) -> Pending {
        Pending {
            regarding: ObjectReference {
                kind: Some("CloudResource".into()),
                namespace: Some("ns".into()),
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectReference::default()
            },
            type_: EventType::Normal,
            reason,
            action: "Create",
            note: "n".into(),
        }
    }

    fn series(name: &str, last: Timestamp) -> Series {
        Series {
            name: name.into(),
            count: 1,
            last,
        }
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_old_series() {
        let now = Timestamp::now();
        let mut c = Cache::new(2);
        c.remember(pending("a", "R").key(), series("a.1", now));
        c.remember(pending("b", "R").key(), series("b.1", now));
        c.remember(pending("c", "R").key(), series("c.1", now));
        assert_eq!(c.entries.len(), 2, "bounded");
        assert!(c.get(&pending("c", "R").key(), now).is_none());
        // A known key may still be updated when full.
        c.remember(pending("a", "R").key(), series("a.2", now));
        assert_eq!(c.get(&pending("a", "R").key(), now).unwrap().name, "a.2");
        // Past the TTL a series is not extended, and the sweep forgets it.
        let later = now + SERIES_TTL + SignedDuration::from_secs(1);
        assert!(c.get(&pending("a", "R").key(), later).is_none());
        c.sweep(later);
        assert!(c.entries.is_empty());
    }

    #[test]
    fn different_reasons_are_different_series() {
        assert_ne!(pending("a", "R1").key(), pending("a", "R2").key());
        assert_eq!(pending("a", "R1").key(), pending("a", "R1").key());
    }

    #[test]
    fn a_new_event_names_the_object_and_the_reporter() {
        let r = Reporter {
            controller: "runctl".into(),
            instance: "pod-0".into(),
        };
        let e = new_event(&pending("a", "MachineCreated"), &r, Timestamp::now());
        assert_eq!(e.reason.as_deref(), Some("MachineCreated"));
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.reporting_instance.as_deref(), Some("pod-0"));
        assert_eq!(e.metadata.namespace.as_deref(), Some("ns"));
        assert!(e.metadata.name.unwrap().starts_with("a."));
        assert!(e.series.is_none());
    }
}
