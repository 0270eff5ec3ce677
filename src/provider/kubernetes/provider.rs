//! [`KubernetesProvider`]: the [`Provider`] over the operator's own cluster. Creates are
//! idempotent by the Pod's deterministic name (a second create finds the first Pod);
//! `observe` gets the Pod by name, `list` lists the installation's Pods by label, `terminate`
//! deletes the Pod (its env Secret goes with it).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Client};
use parking_lot::Mutex;

use super::errors::{classify, is_conflict, is_not_found};
use super::pod::{self, CONTAINER};
use super::room::{self, Ask, Room};
use super::{KubernetesConfig, state};
use crate::provider::identity::TAG_OWNER_UID;
use crate::provider::{
    Availability, Capabilities, LogLine, Machine, MachineSpec, PriceQuote, Provider, ProviderError,
    ProviderKind, ResourceKey, Termination,
};

/// How long one listing of the Nodes and active Pods answers room questions: a burst of jobs
/// placed together costs one listing, not one per job.
const ROOM_TTL: Duration = Duration::from_secs(5);

/// The Nodes and the active Pods, shared by the room questions of one [`ROOM_TTL`].
type Listed = std::sync::Arc<(Vec<Node>, Vec<Pod>)>;

/// The Nodes and active Pods as last listed, and the GPUs of the Pods this provider created
/// since (not in that listing yet, but taken).
#[derive(Default)]
struct Seen {
    listed: Option<(Instant, Listed)>,
    created_since: u64,
}

/// The cluster's own GPU nodes, for one installation.
pub struct KubernetesProvider {
    client: Client,
    installation: String,
    config: KubernetesConfig,
    seen: Mutex<Seen>,
}

impl KubernetesProvider {
    /// A provider creating Pods with `client` for `installation`.
    pub fn new(client: Client, installation: impl Into<String>, config: KubernetesConfig) -> Self {
        Self {
            client,
            installation: installation.into(),
            config,
            seen: Mutex::new(Seen::default()),
        }
    }

    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn machine(&self, pod: &Pod) -> Machine {
        state::machine(pod, &self.config, Timestamp::now())
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<Option<Pod>, ProviderError> {
        self.pods(namespace)
            .get_opt(name)
            .await
            .map_err(|e| classify("get Pod", e))
    }

    /// Creates the Pod's env Secret unless it exists (a repeated create after a crash).
    async fn ensure_env(&self, pod: &Pod, spec: &MachineSpec) -> Result<(), ProviderError> {
        let Some(secret) = pod::env_secret(pod, spec) else {
            return Ok(());
        };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(classify("create the Pod's env Secret", e)),
        }
    }

    /// Every Pod of the installation, all namespaces, page by page.
    async fn installation_pods(&self) -> Result<Vec<Pod>, ProviderError> {
        let api: Api<Pod> = Api::all(self.client.clone());
        let api = &api;
        crate::runtime::paged::collect(
            ListParams::default().labels(&pod::installation_selector(&self.installation)),
            |p| async move { api.list(&p).await },
            Some,
        )
        .await
        .map_err(|e| classify("list Pods", e))
    }

    /// The Nodes and the active Pods: listed at most once per [`ROOM_TTL`].
    async fn cluster(&self) -> Result<(Listed, u64), ProviderError> {
        {
            let seen = self.seen.lock();
            if let Some((at, listed)) = &seen.listed
                && at.elapsed() < ROOM_TTL
            {
                return Ok((listed.clone(), seen.created_since));
            }
        }
        use crate::runtime::paged::collect;
        let nodes: Api<Node> = Api::all(self.client.clone());
        let nodes = &nodes;
        let nodes = collect(
            ListParams::default(),
            |p| async move { nodes.list(&p).await },
            Some,
        )
        .await
        .map_err(|e| classify("list Nodes", e))?;
        let pods: Api<Pod> = Api::all(self.client.clone());
        let pods = &pods;
        let active = ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed");
        let pods = collect(active, |p| async move { pods.list(&p).await }, Some)
            .await
            .map_err(|e| classify("list Pods", e))?;
        let listed = std::sync::Arc::new((nodes, pods));
        let mut seen = self.seen.lock();
        seen.listed = Some((Instant::now(), listed.clone()));
        seen.created_since = 0;
        Ok((listed, 0))
    }

    /// How much room the cluster has for `spec`.
    async fn room_for(&self, spec: &MachineSpec) -> Result<Room, ProviderError> {
        let (listed, created_since) = self.cluster().await?;
        let (nodes, pods) = (&listed.0, &listed.1);
        let ours_waiting: u64 = created_since
            + pods
                .iter()
                .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_none()))
                .filter(|p| {
                    p.metadata.labels.as_ref().is_some_and(|l| {
                        l.get(crate::provider::identity::TAG_INSTALLATION)
                            == Some(&self.installation)
                    })
                })
                .map(|p| room::requested(p, &self.config.gpu_resource))
                .sum::<u64>();
        let selector = pod::node_selector(spec, &self.config);
        let tolerations: Vec<_> = spec
            .kubernetes
            .tolerations
            .iter()
            .map(pod::toleration)
            .collect();
        let ask = Ask {
            gpus: u64::from(spec.gpu_count.max(1)),
            resource: &self.config.gpu_resource,
            node_selector: &selector,
            tolerations: &tolerations,
        };
        Ok(room::room(&ask, nodes, pods, ours_waiting))
    }
}

#[async_trait]
impl Provider for KubernetesProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Kubernetes
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            spot: false,
            stop_resume: false,
            workload: true,
            bare_machine: false,
            gpu_types: self.config.prices.keys().cloned().collect(),
            multi_node: super::DESCRIPTOR.multi_node,
        }
    }

    async fn create(
        &self,
        key: &ResourceKey,
        spec: &MachineSpec,
    ) -> Result<Machine, ProviderError> {
        let wanted = pod::pod(key, spec, &self.config)?;
        let name = key.machine_name();
        let found = match self.get(&key.namespace, &name).await? {
            Some(p) => p,
            None => match self
                .pods(&key.namespace)
                .create(&PostParams::default(), &wanted)
                .await
            {
                Ok(p) => {
                    // Taken from now on, though the last listing does not show it yet.
                    self.seen.lock().created_since += u64::from(spec.gpu_count.max(1));
                    p
                }
                Err(e) if is_conflict(&e) => self
                    .get(&key.namespace, &name)
                    .await?
                    .ok_or_else(|| ProviderError::retryable("kubernetes: the Pod vanished"))?,
                Err(e) => return Err(classify("create Pod", e)),
            },
        };
        let owner = found
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(TAG_OWNER_UID));
        if owner != Some(&key.uid) {
            return Err(ProviderError::InvalidSpec {
                message: format!(
                    "kubernetes: Pod {}/{name} exists and is not this CloudResource's",
                    key.namespace
                ),
            });
        }
        // A Pod that has not started waits for its env Secret (created after the Pod, so that
        // the Pod can own it); one that started has read it.
        let started = found
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p != "Pending");
        if !started {
            self.ensure_env(&found, spec).await?;
        }
        Ok(self.machine(&found))
    }

    async fn observe(
        &self,
        key: &ResourceKey,
        known_id: Option<&str>,
    ) -> Result<Option<Machine>, ProviderError> {
        let name = key.machine_name();
        let (namespace, name) = match known_id {
            Some(id) => pod::split_id(id)?,
            None => (key.namespace.as_str(), name.as_str()),
        };
        Ok(self.get(namespace, name).await?.map(|p| self.machine(&p)))
    }

    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        Ok(self
            .installation_pods()
            .await?
            .iter()
            .map(|p| self.machine(p))
            .collect())
    }

    async fn terminate(&self, id: &str) -> Result<Termination, ProviderError> {
        let (namespace, name) = pod::split_id(id)?;
        match self
            .pods(namespace)
            .delete(name, &DeleteParams::background())
            .await
        {
            // The Pod is still there, winding down (the kubelet stops its container).
            Ok(deleted) if deleted.is_left() => Ok(Termination::InProgress),
            Ok(_) => Ok(Termination::Gone),
            Err(e) if is_not_found(&e) => Ok(Termination::Gone),
            Err(e) => Err(classify("delete Pod", e)),
        }
    }

    async fn price(&self, spec: &MachineSpec) -> Result<PriceQuote, ProviderError> {
        Ok(PriceQuote {
            per_hour: self
                .config
                .price(spec.gpu_type.as_deref(), spec.gpu_count.max(1)),
            estimate: false,
            source: super::PRICE_SOURCE,
        })
    }

    async fn availability(&self, spec: &MachineSpec) -> Result<Availability, ProviderError> {
        Ok(match self.room_for(spec).await? {
            Room::Free { .. } => Availability::Available,
            Room::Full(why) => Availability::Full(why),
        })
    }

    async fn verify(&self, spec: &MachineSpec) -> Result<Vec<String>, ProviderError> {
        self.installation_pods().await?;
        Ok(match self.room_for(spec).await? {
            Room::Full(why) if why.starts_with("no Ready, schedulable node") => vec![why],
            _ => vec![],
        })
    }

    async fn logs(&self, id: &str, limit: u32) -> Result<Option<Vec<LogLine>>, ProviderError> {
        let (namespace, name) = pod::split_id(id)?;
        let params = LogParams {
            container: Some(CONTAINER.into()),
            tail_lines: Some(i64::from(limit)),
            timestamps: true,
            ..Default::default()
        };
        match self.pods(namespace).logs(name, &params).await {
            Ok(text) => Ok(Some(text.lines().map(log_line).collect())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(classify("read the Pod's log", e)),
        }
    }
}

/// A line of `kubectl logs --timestamps` output: an RFC 3339 time, a space, the text.
fn log_line(line: &str) -> LogLine {
    match line.split_once(' ') {
        Some((time, text)) if time.parse::<Timestamp>().is_ok() => LogLine {
            time: time.parse().ok(),
            message: text.to_string(),
        },
        _ => LogLine {
            time: None,
            message: line.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_keep_their_time() {
        let l = log_line("2026-12-04T10:00:00.123456789Z epoch 1 loss 0.3");
        assert_eq!(l.message, "epoch 1 loss 0.3");
        assert!(l.time.is_some());
        assert_eq!(log_line("no time").message, "no time");
    }
}
