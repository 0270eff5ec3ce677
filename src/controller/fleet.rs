//! Batched observation of machines: one `list` call per provider account and region per poll
//! interval serves the status of every object, instead of one observe call per object.
//!
//! A snapshot is refreshed at most once per `max_age` (single-flight: concurrent reconciles wait
//! for the one refresh in progress). Lookups fall back to a direct `observe` only when the
//! snapshot cannot know the answer: the machine was created after the snapshot was taken, or
//! an adopted machine must be found by owner.
//!
//! A create marks the snapshot stale instead of dropping it ([`Fleet::mark_stale`]): the new
//! machine is observed directly until the next lookup refreshes the snapshot, which happens once
//! it is at least [`MIN_REFRESH`] old. A burst of creates therefore costs at most one list call
//! per provider instance per [`MIN_REFRESH`], not one per create. A terminate drops the snapshot
//! ([`Fleet::invalidate`]): the snapshot still shows the machine running, and planning on that
//! would undo the Terminating status just written.
//!
//! Change detection: objects register the provider instance that serves them ([`Fleet::track`]).
//! [`Fleet::refresh_tracked`], called once per poll interval by the CloudResource controller,
//! refreshes every tracked instance's snapshot (the one `list` call per interval) and returns the
//! objects whose machine changed (appeared, vanished, or a different state, reason, address,
//! price or exit code). Only those are reconciled; a steady object waits for its long resync
//! instead of a timer per poll interval, so the cost of a poll does not grow with the fleet.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use parking_lot::Mutex;

use kube::runtime::reflector::ObjectRef;

use crate::crd::cloud_resource::CloudResource;
use crate::metrics::Metrics;
use crate::provider::registry::ProviderKey;
use crate::provider::{Machine, Provider, ProviderError, ResourceKey};

/// The youngest a stale snapshot may be refreshed at.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// One provider's machines at one moment.
#[derive(Debug)]
pub struct Snapshot {
    /// Monotonic time of the list call.
    pub taken: Instant,
    /// Wall-clock time the list call started.
    pub taken_at: Timestamp,
    by_id: HashMap<String, Machine>,
    by_owner: HashMap<(String, u32), String>,
    /// A create or terminate happened after the list call.
    stale: AtomicBool,
}

impl Snapshot {
    fn new(machines: Vec<Machine>, taken: Instant, taken_at: Timestamp) -> Self {
        let mut by_owner = HashMap::new();
        let mut by_id = HashMap::with_capacity(machines.len());
        for m in machines {
            if let (Some(uid), Some(attempt)) = (&m.owner_uid, m.attempt) {
                // Prefer a live machine over a finished one of the same owner and attempt.
                let replace = match by_owner
                    .get(&(uid.clone(), attempt))
                    .and_then(|id: &String| by_id.get(id))
                {
                    Some(existing) => {
                        let existing: &Machine = existing;
                        !existing.is_billable() && m.is_billable()
                    }
                    None => true,
                };
                if replace {
                    by_owner.insert((uid.clone(), attempt), m.id.clone());
                }
            }
            by_id.insert(m.id.clone(), m);
        }
        Self {
            taken,
            taken_at,
            by_id,
            by_owner,
            stale: AtomicBool::new(false),
        }
    }

    /// A machine by id.
    pub fn get(&self, id: &str) -> Option<&Machine> {
        self.by_id.get(id)
    }

    /// The machine of an owner's attempt.
    pub fn find_owner(&self, uid: &str, attempt: u32) -> Option<&Machine> {
        self.by_owner
            .get(&(uid.to_string(), attempt))
            .and_then(|id| self.by_id.get(id))
    }

    /// Every machine in the snapshot.
    pub fn machines(&self) -> impl Iterator<Item = &Machine> {
        self.by_id.values()
    }

    /// Number of machines.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Objects served by one provider instance, and the instance.
struct Tracked {
    provider: Arc<dyn Provider>,
    /// Object UID → object.
    objects: HashMap<String, ObjectRef<CloudResource>>,
}

/// Whether an object must look at its machine again: anything its status shows changed. The
/// provider's running bill (`billed`) is left out: it moves on every list, and the object's
/// resync picks it up.
pub fn changed(before: &Machine, after: &Machine) -> bool {
    before.state != after.state
        || before.reason != after.reason
        || before.message != after.message
        || before.public_address != after.public_address
        || before.private_address != after.private_address
        || before.price_per_hour != after.price_per_hour
        || before.price_source != after.price_source
        || before.exit_code != after.exit_code
        || before.machine_type != after.machine_type
        || before.launch_time != after.launch_time
}

/// Owner UIDs of the machines that differ between two snapshots.
pub fn changed_owners(before: Option<&Snapshot>, after: &Snapshot) -> Vec<String> {
    let mut owners = Vec::new();
    for m in after.machines() {
        let differs = before
            .and_then(|b| b.get(&m.id))
            .is_none_or(|old| changed(old, m));
        if differs && let Some(uid) = &m.owner_uid {
            owners.push(uid.clone());
        }
    }
    if let Some(b) = before {
        for m in b.machines() {
            if after.get(&m.id).is_none()
                && let Some(uid) = &m.owner_uid
            {
                owners.push(uid.clone());
            }
        }
    }
    owners.sort();
    owners.dedup();
    owners
}

/// Snapshots per provider instance.
pub struct Fleet {
    max_age: Duration,
    min_refresh: Duration,
    metrics: Arc<Metrics>,
    snapshots: Mutex<HashMap<ProviderKey, Arc<Snapshot>>>,
    refreshing: Mutex<HashMap<ProviderKey, Arc<tokio::sync::Mutex<()>>>>,
    tracked: Mutex<HashMap<ProviderKey, Tracked>>,
    /// The snapshot [`Fleet::refresh_tracked`] compared last, per instance.
    diffed: Mutex<HashMap<ProviderKey, Arc<Snapshot>>>,
}

impl Fleet {
    /// A fleet cache whose snapshots live for `max_age` (the poll interval).
    pub fn new(max_age: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            max_age,
            min_refresh: MIN_REFRESH.min(max_age),
            metrics,
            snapshots: Mutex::new(HashMap::new()),
            refreshing: Mutex::new(HashMap::new()),
            tracked: Mutex::new(HashMap::new()),
            diffed: Mutex::new(HashMap::new()),
        }
    }

    /// Sets how young a stale snapshot may be refreshed at (default [`MIN_REFRESH`]).
    pub fn with_min_refresh(mut self, min_refresh: Duration) -> Self {
        self.min_refresh = min_refresh.min(self.max_age);
        self
    }

    fn fresh(&self, key: &ProviderKey, max_age: Duration) -> Option<Arc<Snapshot>> {
        let min = self.min_refresh;
        self.snapshots
            .lock()
            .get(key)
            .filter(|s| {
                let age = s.taken.elapsed();
                age < max_age && !(s.stale.load(Ordering::Relaxed) && age >= min)
            })
            .cloned()
    }

    /// The provider's snapshot, refreshed with one `list` call when older than the poll interval.
    pub async fn snapshot(
        &self,
        key: &ProviderKey,
        provider: &dyn Provider,
    ) -> Result<Arc<Snapshot>, ProviderError> {
        self.snapshot_younger_than(key, provider, self.max_age)
            .await
    }

    async fn snapshot_younger_than(
        &self,
        key: &ProviderKey,
        provider: &dyn Provider,
        max_age: Duration,
    ) -> Result<Arc<Snapshot>, ProviderError> {
        if let Some(s) = self.fresh(key, max_age) {
            return Ok(s);
        }
        let lock = self
            .refreshing
            .lock()
            .entry(key.clone())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        if let Some(s) = self.fresh(key, max_age) {
            return Ok(s);
        }
        let taken = Instant::now();
        let taken_at = Timestamp::now();
        let machines = metered(&self.metrics, provider, "list", provider.list()).await?;
        let snap = Arc::new(Snapshot::new(machines, taken, taken_at));
        self.snapshots.lock().insert(key.clone(), snap.clone());
        Ok(snap)
    }

    /// Observes the machine of `rkey`: from the snapshot when it lists it, else by a direct call
    /// (a machine created after the snapshot, or one to find by owner).
    pub async fn observe(
        &self,
        key: &ProviderKey,
        provider: &dyn Provider,
        rkey: &ResourceKey,
        known_id: Option<&str>,
    ) -> Result<Option<Machine>, ProviderError> {
        let snap = self.snapshot(key, provider).await?;
        let hit = match known_id {
            Some(id) => snap.get(id),
            None => snap.find_owner(&rkey.uid, rkey.attempt),
        };
        if let Some(m) = hit {
            return Ok(Some(m.clone()));
        }
        metered(
            &self.metrics,
            provider,
            "observe",
            provider.observe(rkey, known_id),
        )
        .await
    }

    /// Marks a provider's snapshot stale (after a create): the next lookup after
    /// [`MIN_REFRESH`] lists again.
    pub fn mark_stale(&self, key: &ProviderKey) {
        if let Some(s) = self.snapshots.lock().get(key) {
            s.stale.store(true, Ordering::Relaxed);
        }
    }

    /// Drops a provider's snapshot (after a terminate, so the next lookup lists again).
    pub fn invalidate(&self, key: &ProviderKey) {
        self.snapshots.lock().remove(key);
    }

    /// Registers `object` (UID `uid`) as served by the provider instance `key`.
    pub fn track(
        &self,
        key: &ProviderKey,
        provider: &Arc<dyn Provider>,
        uid: &str,
        object: ObjectRef<CloudResource>,
    ) {
        let mut tracked = self.tracked.lock();
        let entry = tracked.entry(key.clone()).or_insert_with(|| Tracked {
            provider: provider.clone(),
            objects: HashMap::new(),
        });
        entry.provider = provider.clone();
        if !entry.objects.contains_key(uid) {
            entry.objects.insert(uid.to_string(), object);
        }
    }

    /// Forgets an object (its machine ended or it is gone); an instance serving no object any
    /// more is no longer listed.
    pub fn untrack(&self, uid: &str) {
        let mut gone = Vec::new();
        self.tracked.lock().retain(|k, t| {
            t.objects.remove(uid);
            let keep = !t.objects.is_empty();
            if !keep {
                gone.push(k.clone());
            }
            keep
        });
        let mut diffed = self.diffed.lock();
        for k in gone {
            diffed.remove(&k);
        }
    }

    /// Objects tracked (for tests and metrics).
    pub fn tracked_objects(&self) -> usize {
        self.tracked.lock().values().map(|t| t.objects.len()).sum()
    }

    /// Refreshes the snapshot of every tracked provider instance that is due (one `list` each)
    /// and returns the tracked objects whose machine changed since the previous snapshot. A
    /// failed list is logged and retried at the next call.
    pub async fn refresh_tracked(&self) -> Vec<ObjectRef<CloudResource>> {
        let instances: Vec<(ProviderKey, Arc<dyn Provider>)> = self
            .tracked
            .lock()
            .iter()
            .map(|(k, t)| (k.clone(), t.provider.clone()))
            .collect();
        let mut out = Vec::new();
        for (key, provider) in instances {
            // A little under the poll interval, so that a tick never finds the snapshot a hair
            // too young and skips a whole interval.
            let due = self.max_age.mul_f64(0.9);
            let after = match self
                .snapshot_younger_than(&key, provider.as_ref(), due)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(provider = %key.kind, error = %e, "fleet list failed");
                    continue;
                }
            };
            // The baseline is the snapshot this function compared last, whoever refreshed
            // the current one (a reconcile may have).
            let before = self.diffed.lock().insert(key.clone(), after.clone());
            if before.as_ref().is_some_and(|b| Arc::ptr_eq(b, &after)) {
                continue;
            }
            let owners = changed_owners(before.as_deref(), &after);
            let tracked = self.tracked.lock();
            if let Some(t) = tracked.get(&key) {
                out.extend(owners.iter().filter_map(|uid| t.objects.get(uid).cloned()));
            }
        }
        out
    }

    /// Every snapshot currently held (for the objects-by-state metrics and garbage collection).
    pub fn snapshots(&self) -> Vec<(ProviderKey, Arc<Snapshot>)> {
        self.snapshots
            .lock()
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }
}

/// Runs a provider call, recording its outcome and latency.
pub async fn metered<T>(
    metrics: &Metrics,
    provider: &dyn Provider,
    operation: &'static str,
    call: impl std::future::Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    let started = Instant::now();
    let result = call.await;
    let outcome = match &result {
        Ok(_) => "success",
        Err(e) => e.reason(),
    };
    metrics.provider_call(
        provider.kind().as_str(),
        operation,
        outcome,
        started.elapsed().as_secs_f64(),
    );
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{ResourceState, reasons};

    fn m(id: &str, uid: &str, attempt: u32, state: ResourceState) -> Machine {
        let mut m = Machine::new(id, state, reasons::RUNNING);
        m.owner_uid = Some(uid.into());
        m.attempt = Some(attempt);
        m
    }

    async fn lists_after_create(min_refresh: Duration) -> u64 {
        use crate::provider::sim::{SimCloud, SimConfig, SimOp, SimProvider};
        let cloud = Arc::new(SimCloud::new(SimConfig::default()));
        let provider = SimProvider::new(cloud.clone(), "t", cloud.config().region.clone());
        let fleet = Fleet::new(Duration::from_secs(3600), Arc::new(Metrics::new()))
            .with_min_refresh(min_refresh);
        let key = ProviderKey {
            kind: crate::crd::ProviderKind::Sim,
            region: None,
            credentials: None,
        };
        fleet.snapshot(&key, &provider).await.unwrap();
        fleet.snapshot(&key, &provider).await.unwrap();
        assert_eq!(
            cloud.stats().calls(SimOp::List),
            1,
            "fresh snapshots are reused"
        );
        fleet.mark_stale(&key);
        fleet.snapshot(&key, &provider).await.unwrap();
        fleet.snapshot(&key, &provider).await.unwrap();
        cloud.stats().calls(SimOp::List)
    }

    #[tokio::test]
    async fn a_stale_snapshot_is_listed_again_once_old_enough() {
        assert_eq!(lists_after_create(Duration::ZERO).await, 2);
        assert_eq!(
            lists_after_create(Duration::from_secs(3600)).await,
            1,
            "too young to refresh: a create burst does not list per create"
        );
    }

    #[test]
    fn changed_owners_are_new_changed_and_vanished_machines() {
        let snap = |ms: Vec<Machine>| Snapshot::new(ms, Instant::now(), Timestamp::now());
        let mut billed = m("b", "u2", 1, ResourceState::Running);
        billed.billed = Some(1.0);
        let before = snap(vec![
            m("a", "u1", 1, ResourceState::Running),
            m("b", "u2", 1, ResourceState::Running),
            m("c", "u3", 1, ResourceState::Running),
        ]);
        let mut billed_more = billed.clone();
        billed_more.billed = Some(2.0);
        let after = snap(vec![
            m("a", "u1", 1, ResourceState::Stopping),
            billed_more,
            m("d", "u4", 1, ResourceState::Starting),
        ]);
        assert_eq!(
            changed_owners(Some(&before), &after),
            vec!["u1", "u3", "u4"],
            "a's state changed, c vanished, d is new; b's running bill alone is no change"
        );
        assert_eq!(changed_owners(None, &after).len(), 3, "no baseline: all");
        assert!(changed_owners(Some(&after), &after).is_empty());
    }

    #[test]
    fn snapshot_indexes_by_owner_preferring_live_machines() {
        let s = Snapshot::new(
            vec![
                m("a", "u1", 1, ResourceState::Terminated),
                m("b", "u1", 1, ResourceState::Running),
                m("c", "u2", 1, ResourceState::Running),
            ],
            Instant::now(),
            Timestamp::now(),
        );
        assert_eq!(s.find_owner("u1", 1).map(|m| m.id.as_str()), Some("b"));
        assert_eq!(s.find_owner("u2", 1).map(|m| m.id.as_str()), Some("c"));
        assert!(s.find_owner("u2", 2).is_none());
        assert_eq!(s.get("a").map(|m| m.state), Some(ResourceState::Terminated));
        assert_eq!(s.len(), 3);
    }
}
