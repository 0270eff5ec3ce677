//! The controllers and what they share: the context (client, providers, metrics, events,
//! fleet snapshots, backoff) and the run loop.
//!
//! Each reconcile reads like a pipeline: observe (fleet snapshot or provider), plan (pure, in
//! `plan.rs`), act (provider call), write status (server-side apply, one field manager).

pub mod backoff;
pub mod cloud_resource;
pub mod events;
pub mod finalizers;
pub mod fleet;
pub mod machine_class;
pub mod reaper;
pub mod retry;
pub mod secrets;
pub mod stored;
pub mod training_job;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, TryStreamExt};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource};

use crate::metrics::Metrics;
use crate::provider::ProviderRegistry;
use crate::runtime::shard::Shard;
use backoff::{Backoff, BackoffConfig};
use events::{EventSink, Pending, Reporter};
use fleet::Fleet;

/// Field manager of every write runctl makes.
pub const FIELD_MANAGER: &str = "runctl";

/// Controller settings (from the operator configuration).
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Installation id (ownership tags, names).
    pub installation: String,
    /// How often running machines are polled; also the fleet snapshot lifetime.
    pub poll_interval: Duration,
    /// How often machines in transition (Starting, Stopping, Terminating) are polled.
    pub transition_poll_interval: Duration,
    /// Accrued cost alone is written to status at most this often.
    pub cost_refresh_interval: Duration,
    /// How often a steady object (running machine, running job) is looked at when nothing
    /// changed; changes wake objects at once (fleet change detection, watches, reports).
    pub resync_interval: Duration,
    /// Per-object error backoff.
    pub backoff: BackoffConfig,
    /// When create is tried again after the provider rejected the account.
    pub account_retry: retry::AccountRetry,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Only watch this namespace (all when `None`).
    pub watch_namespace: Option<String>,
    /// Watch MachineClasses (cluster-scoped): the operator may read cluster-scoped objects.
    /// False where it is installed to watch one namespace (`rbac.scope: namespaced`).
    pub machine_classes: bool,
    /// The namespaces this deployment owns ([`crate::runtime::shard`]); the whole cluster by
    /// default.
    pub shard: crate::runtime::shard::Shard,
    /// Event reporter instance (pod name).
    pub instance: String,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            installation: "default".into(),
            poll_interval: Duration::from_secs(30),
            transition_poll_interval: Duration::from_secs(5),
            cost_refresh_interval: Duration::from_secs(60),
            resync_interval: Duration::from_secs(60),
            backoff: BackoffConfig::default(),
            account_retry: retry::AccountRetry::default(),
            concurrency: 16,
            watch_namespace: None,
            machine_classes: true,
            shard: crate::runtime::shard::Shard::WHOLE,
            instance: "runctl".into(),
        }
    }
}

/// What every reconcile gets.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Providers.
    pub registry: Arc<ProviderRegistry>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Event publisher (off the reconcile path; repeated events become series).
    pub events: EventSink,
    /// Batched machine observations.
    pub fleet: Fleet,
    /// Per-object backoff.
    pub backoff: Backoff,
    /// Credentials Secrets, read at most once per `account_retry.recheck` each.
    pub secrets: secrets::SecretCache,
    /// Creation records this process wrote or found, so a retried create does not write again.
    pub records: cloud_resource::record::Written,
    /// MachineClasses (cached; none where the operator watches one namespace).
    pub classes: machine_class::Classes,
    /// Workload output this process keeps (shared with its callback endpoint) and the jobs
    /// followed now ([`crate::logs::sink`]).
    pub logs: Arc<crate::logs::sink::LogSink>,
    /// Settings.
    pub config: ControllerConfig,
}

impl Context {
    /// Builds the context. Starts the event workers, so it must run inside a Tokio runtime.
    pub fn new(
        client: Client,
        registry: Arc<ProviderRegistry>,
        metrics: Arc<Metrics>,
        config: ControllerConfig,
    ) -> Self {
        let events = EventSink::start(
            client.clone(),
            Reporter {
                controller: "runctl".into(),
                instance: config.instance.clone(),
            },
            metrics.clone(),
        );
        Self {
            fleet: Fleet::new(config.poll_interval, metrics.clone()),
            backoff: Backoff::new(config.backoff),
            secrets: secrets::SecretCache::new(config.account_retry.recheck),
            records: cloud_resource::record::Written::default(),
            classes: machine_class::Classes::start(client.clone(), config.machine_classes),
            logs: crate::logs::sink::LogSink::new(
                client.clone(),
                metrics.clone(),
                crate::logs::sink::FOLLOWED_WRITE_INTERVAL,
            ),
            client,
            registry,
            metrics,
            events,
            config,
        }
    }

    /// The context with `logs` as the workload output sink: the one the callback endpoint of
    /// this process fills ([`crate::callback::CallbackState::with_sink`]).
    pub fn with_logs(mut self, logs: Arc<crate::logs::sink::LogSink>) -> Self {
        self.logs = logs;
        self
    }

    /// Publishes an event about `obj`: queued, written by the event workers, never fatal.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &'static str,
        action: &'static str,
        note: String,
    ) {
        self.events.publish(Pending {
            regarding: obj.object_ref(&()),
            type_,
            reason,
            action,
            note,
        });
    }
}

/// A watch of `api` with a reflector cache, for `Controller::for_stream`. Cached objects carry no
/// `managedFields` (runctl never reads them, and at 10,000 objects they are a large share of the
/// operator's memory) and no `kubectl.kubernetes.io/last-applied-configuration` annotation (a
/// second copy of the spec on objects applied with client-side `kubectl apply`). Only `shard`'s
/// objects are cached and trigger ([`in_shard`]).
///
/// The cache sees every change; the returned trigger stream only the ones a controller acts on
/// ([`wakes_controller`]): the controllers' own status writes do not reconcile the object again.
pub fn cached_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    shard: Shard,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .try_filter(move |event| futures::future::ready(in_shard(&shard, event)))
        .modify(|o: &mut K| {
            let meta = o.meta_mut();
            meta.managed_fields = None;
            if let Some(a) = meta.annotations.as_mut() {
                a.remove(LAST_APPLIED);
            }
        })
        .reflect(writer)
        .applied_objects()
        .predicate_filter(wakes_controller, PredicateConfig::default());
    (reader, stream)
}

/// Whether a watch event concerns `shard`'s objects: the other shards' objects are dropped
/// before the cache sees them (the markers of a relist pass).
pub fn in_shard<K: Resource>(shard: &Shard, event: &watcher::Event<K>) -> bool {
    match event {
        watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => {
            shard.owns_object(o)
        }
        watcher::Event::Init | watcher::Event::InitDone => true,
    }
}

/// `kubectl apply`'s client-side record of the last applied object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What of an object makes its controller look at it: the spec (`generation`), deletion,
/// finalizers, labels and annotations. Status changes are the controllers' own writes (or
/// observations they will make at their next wake-up), so they do not trigger a reconcile.
pub fn wakes_controller<K: Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut h);
    meta.deletion_timestamp.as_ref().map(|t| t.0).hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.labels.hash(&mut h);
    meta.annotations.hash(&mut h);
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn in_ns(ns: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.namespace = Some(ns.into());
        cm
    }

    #[test]
    fn a_shard_sees_only_its_namespaces_and_every_relist_marker() {
        let ns = (0..20).map(|i| format!("team-{i}")).collect::<Vec<_>>();
        let shard = Shard::new(1, 2).unwrap();
        for n in &ns {
            let mine = Shard::of(n, 2) == 1;
            for event in [
                watcher::Event::Apply(in_ns(n)),
                watcher::Event::InitApply(in_ns(n)),
                watcher::Event::Delete(in_ns(n)),
            ] {
                assert_eq!(in_shard(&shard, &event), mine, "{n}");
                assert!(in_shard(&Shard::WHOLE, &event), "{n}");
            }
        }
        assert!(in_shard(&shard, &watcher::Event::<ConfigMap>::Init));
        assert!(in_shard(&shard, &watcher::Event::<ConfigMap>::InitDone));
    }
}
