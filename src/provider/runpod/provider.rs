//! The RunPod [`Provider`]: one account, REST v2. Observe and list share one cached
//! `GET /v2/pods` per account; a small in-memory record of the pod ids runctl deleted tells a
//! pod we terminated (Terminated) from one that vanished (Error/Disappeared), and the
//! [`deadman::Tracker`] one that deleted itself (Terminated) and one whose self-delete failed
//! (an `EXITED` pod that stays).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::api::Pod;
use super::client::{Client, Deleted};
use super::create::{choose, cloud_of, create_body, owned_by, validate_placement};
use super::deadman::{self, Tracker};
use super::pricing::{PriceCatalog, SOURCE_CATALOG, price_of};
use super::state::{map_missing, map_status, status_message};
use crate::provider::identity::{ENV_OWNER, attempt_from_name};
use crate::provider::{
    Capabilities, Machine, MachineSpec, PriceQuote, Provider, ProviderError, ProviderKind,
    ResourceKey, Termination,
};

/// How long ids of pods runctl deleted are remembered.
const DELETED_MEMORY: Duration = Duration::from_secs(24 * 3600);
/// Most ids remembered before old ones are pruned.
const DELETED_CAP: usize = 10_000;

/// Tuning of a provider instance.
#[derive(Clone, Debug)]
pub struct ProviderSettings {
    /// How long one `GET /v2/pods` serves observe and list calls.
    pub list_cache: Duration,
    /// How long the GPU catalog is kept.
    pub catalog_cache: Duration,
}

/// Ids of pods runctl sent DELETE for.
#[derive(Debug, Default)]
struct DeletedRecord {
    ids: HashMap<String, Instant>,
}

impl DeletedRecord {
    fn insert(&mut self, id: &str) {
        if self.ids.len() >= DELETED_CAP {
            self.ids.retain(|_, at| at.elapsed() < DELETED_MEMORY);
        }
        if self.ids.len() >= DELETED_CAP
            && let Some(oldest) = self
                .ids
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(id, _)| id.clone())
        {
            self.ids.remove(&oldest);
        }
        self.ids.insert(id.to_string(), Instant::now());
    }

    fn remove(&mut self, id: &str) {
        self.ids.remove(id);
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }
}

/// A RunPod account.
pub struct RunPodProvider {
    installation: String,
    client: Client,
    settings: ProviderSettings,
    snapshot: tokio::sync::Mutex<Option<(Instant, Arc<Vec<Pod>>)>>,
    catalog: PriceCatalog,
    deleted: Mutex<DeletedRecord>,
    armed: Mutex<Tracker>,
    duplicates_terminated: AtomicU64,
}

impl fmt::Debug for RunPodProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunPodProvider")
            .field("installation", &self.installation)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl RunPodProvider {
    /// A provider for `installation` over `client`.
    pub fn new(installation: &str, client: Client, settings: ProviderSettings) -> Self {
        Self {
            installation: installation.to_string(),
            client,
            catalog: PriceCatalog::new(settings.catalog_cache),
            settings,
            snapshot: tokio::sync::Mutex::new(None),
            deleted: Mutex::new(DeletedRecord::default()),
            armed: Mutex::new(Tracker::default()),
            duplicates_terminated: AtomicU64::new(0),
        }
    }

    /// Duplicate pods (several pods for one key) terminated so far; also reported in the kept
    /// machine's `message` and as a warning log, for the controller to turn into an event.
    pub fn duplicates_terminated(&self) -> u64 {
        self.duplicates_terminated.load(Ordering::Relaxed)
    }

    /// The HTTP client (tests and diagnostics).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn was_deleted(&self, id: &str) -> bool {
        self.deleted.lock().contains(id)
    }

    /// Every pod of the account: the cached list unless `fresh` or older than the cache time.
    async fn pods(&self, fresh: bool) -> Result<Arc<Vec<Pod>>, ProviderError> {
        let mut snap = self.snapshot.lock().await;
        if !fresh
            && let Some((at, pods)) = snap.as_ref()
            && at.elapsed() < self.settings.list_cache
        {
            return Ok(pods.clone());
        }
        let pods = Arc::new(self.client.list_pods().await?);
        *snap = Some((Instant::now(), pods.clone()));
        Ok(pods)
    }

    async fn invalidate(&self) {
        *self.snapshot.lock().await = None;
    }

    /// Normalizes a pod.
    fn machine(&self, pod: &Pod) -> Machine {
        let status = pod.status.as_deref().unwrap_or("");
        let runtime = pod.runtime.is_some();
        let deleted = self.was_deleted(&pod.id);
        let (state, reason) = map_status(status, runtime, deleted);
        let mut m = Machine::new(pod.id.clone(), state, reason);
        m.name = pod.name.clone();
        m.owner_uid = pod.env_value(ENV_OWNER).map(str::to_string);
        m.attempt = pod.name.as_deref().and_then(attempt_from_name);
        m.message = Some(status_message(status, runtime));
        if deadman::is_armed(pod) {
            let verdict = self.armed.lock().saw(&pod.id, status, Instant::now());
            if verdict.warn && !deleted {
                tracing::warn!(
                    pod = %pod.id, name = ?pod.name,
                    "RunPod pod is still EXITED after its container ended: runctl's wrapper did not delete it (see the pod's log); runctl deletes it when its CloudResource is released"
                );
            }
            if let Some(message) = verdict.message.filter(|_| !deleted) {
                m.message = Some(message);
            }
        }
        m.machine_type = pod.gpu.as_ref().and_then(|g| {
            let id = g.id.as_ref()?;
            Some(match g.count.unwrap_or(1) {
                n if n > 1 => format!("{id} x{n}"),
                _ => id.clone(),
            })
        });
        m.public_address = pod.runtime.as_ref().and_then(|r| {
            let ports = r.ports.as_ref()?;
            let p = ports
                .iter()
                .find(|p| p.private == Some(22))
                .or_else(|| ports.first())?;
            Some(format!("{}:{}", p.ip.as_ref()?, p.public?))
        });
        m.launch_time = pod.created();
        m.price_per_hour = match pod.cost {
            Some(c) if c > 0.0 => Some(c),
            _ => self.catalog_estimate(pod),
        };
        m
    }

    /// The catalog price of a pod from the cached catalog (no call), for pods whose `cost` is 0.
    fn catalog_estimate(&self, pod: &Pod) -> Option<f64> {
        let catalog = self.catalog.last()?;
        let gpu = pod.gpu.as_ref()?;
        let cloud = pod.cloud.as_deref().unwrap_or("SECURE");
        price_of(&catalog, gpu.id.as_deref()?, cloud, gpu.count.unwrap_or(1)).ok()
    }

    /// A pod that no longer exists.
    fn missing(&self, id: &str, key: &ResourceKey) -> Machine {
        let deleted = self.was_deleted(id);
        let armed = self.armed.lock().armed(id);
        let (state, reason) = map_missing(deleted || armed);
        let mut m = Machine::new(id, state, reason);
        m.name = Some(key.machine_name());
        m.owner_uid = Some(key.uid.clone());
        m.attempt = Some(key.attempt);
        m.message = Some(if deleted {
            "the pod was deleted by runctl".into()
        } else if armed {
            deadman::SELF_DELETED.into()
        } else {
            "the pod no longer exists at RunPod and runctl did not delete it".into()
        });
        m
    }

    /// Adopts the pod of `key` in `pods`, terminating duplicates. `None` when there is none.
    async fn adopt(
        &self,
        pods: &[Pod],
        key: &ResourceKey,
    ) -> Result<Option<Machine>, ProviderError> {
        let Some((keep, dups)) = choose(pods, key, |id| self.was_deleted(id)) else {
            return Ok(None);
        };
        let mut machine = self.machine(keep);
        if dups.is_empty() {
            return Ok(Some(machine));
        }
        let ids: Vec<&str> = dups.iter().map(|p| p.id.as_str()).collect();
        tracing::warn!(
            owner_uid = %key.uid, attempt = key.attempt, kept = %keep.id, duplicates = ?ids,
            "several RunPod pods carry one key; keeping the oldest and terminating the rest"
        );
        for id in &ids {
            self.delete(id).await?;
            self.duplicates_terminated.fetch_add(1, Ordering::Relaxed);
        }
        self.invalidate().await;
        machine.message = Some(format!(
            "{}; kept the oldest of {} pods named {}, terminated duplicates {}",
            machine.message.unwrap_or_default(),
            ids.len() + 1,
            key.machine_name(),
            ids.join(", ")
        ));
        Ok(Some(machine))
    }

    /// DELETE, remembering the id first so a lost answer still reads as ours. A refusal that
    /// certainly left the pod alone (not a timeout or 5xx) forgets it again.
    async fn delete(&self, id: &str) -> Result<Deleted, ProviderError> {
        self.deleted.lock().insert(id);
        let outcome = self.client.delete_pod(id).await;
        if let Err(e) = &outcome
            && !matches!(e, ProviderError::Retryable { .. })
        {
            self.deleted.lock().remove(id);
        }
        outcome
    }
}

#[async_trait]
impl Provider for RunPodProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Runpod
    }

    fn capabilities(&self) -> Capabilities {
        let mut gpu_types: Vec<String> = self
            .catalog
            .last()
            .map(|c| c.iter().map(|g| g.id.clone()).collect())
            .unwrap_or_default();
        gpu_types.sort();
        Capabilities {
            spot: super::DESCRIPTOR.spot,
            stop_resume: false,
            workload: true,
            bare_machine: false,
            gpu_types,
            multi_node: super::DESCRIPTOR.multi_node,
        }
    }

    async fn create(
        &self,
        key: &ResourceKey,
        spec: &MachineSpec,
    ) -> Result<Machine, ProviderError> {
        let body = create_body(key, spec, self.client.base_url(), jiff::Timestamp::now())?;
        if let Some(m) = self.adopt(&self.pods(true).await?, key).await? {
            return Ok(m);
        }
        let secrets: Vec<&str> = spec
            .workload
            .as_ref()
            .map(|w| w.secret_values())
            .unwrap_or_default();
        let result = self.client.create_pod(&body, &secrets).await;
        self.invalidate().await;
        match result {
            Ok(pod) => {
                tracing::info!(pod = %pod.id, name = %body.name, owner_uid = %key.uid, "created RunPod pod");
                Ok(self.machine(&pod))
            }
            Err(e) if e.ambiguous => {
                tracing::warn!(name = %body.name, error = %e.error, "RunPod create answer lost; listing before retrying");
                match self.pods(true).await {
                    Ok(pods) => match self.adopt(&pods, key).await? {
                        Some(m) => Ok(m),
                        None => Err(e.error),
                    },
                    Err(_) => Err(e.error),
                }
            }
            Err(e) => Err(e.error),
        }
    }

    async fn observe(
        &self,
        key: &ResourceKey,
        known_id: Option<&str>,
    ) -> Result<Option<Machine>, ProviderError> {
        let pods = self.pods(false).await?;
        let Some(id) = known_id else {
            let found =
                choose(&pods, key, |id| self.was_deleted(id)).map(|(keep, _)| self.machine(keep));
            return Ok(found);
        };
        if let Some(p) = pods.iter().find(|p| p.id == id) {
            return Ok(Some(self.machine(p)));
        }
        // Not in the (possibly cached) list: ask for it before calling it gone.
        Ok(Some(match self.client.get_pod(id).await? {
            Some(p) => self.machine(&p),
            None => self.missing(id, key),
        }))
    }

    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        let pods = self.pods(false).await?;
        Ok(pods
            .iter()
            .filter(|p| owned_by(p, &self.installation))
            .map(|p| self.machine(p))
            .collect())
    }

    async fn terminate(&self, id: &str) -> Result<Termination, ProviderError> {
        let outcome = self.delete(id).await;
        self.invalidate().await;
        match outcome {
            // 409: a terminated pod allows no further terminate.
            Ok(Deleted::NotFound | Deleted::Conflict) => Ok(Termination::Gone),
            Ok(Deleted::Accepted) => {
                tracing::info!(pod = %id, "deleted RunPod pod");
                match self.client.get_pod(id).await {
                    Ok(None) => Ok(Termination::Gone),
                    Ok(Some(p)) if p.status.as_deref() == Some("TERMINATED") => {
                        Ok(Termination::Gone)
                    }
                    _ => Ok(Termination::InProgress),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn price(&self, spec: &MachineSpec) -> Result<PriceQuote, ProviderError> {
        validate_placement(spec)?;
        let gpu = spec.gpu_type.as_deref().unwrap_or_default();
        let catalog = self.catalog.get(&self.client).await?;
        let per_hour = price_of(&catalog, gpu, cloud_of(spec), spec.gpu_count)?;
        Ok(PriceQuote {
            per_hour,
            estimate: true,
            source: SOURCE_CATALOG,
        })
    }
}
