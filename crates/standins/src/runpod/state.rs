//! The RunPod stand-in's account state and the rules of each call (validation, capacity,
//! allowed actions), kept free of HTTP so the server module only translates.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use super::faults::{Fault, Op, RateLimits};
use super::model::{GpuType, Phase, PodRecord, Progression, Timings, default_catalog};

/// The detail RunPod sends with a capacity refusal (400), recorded live.
pub const CAPACITY_DETAIL: &str = "There are no longer any instances available with the requested specifications. Please refresh and try again.";

/// The error list RunPod sends for an unknown action (422), recorded live.
pub const BAD_ACTION_ERROR: &str =
    "$.action: value must be one of 'start', 'stop', 'restart', 'terminate'";

/// A refused call: status, detail and optional validation errors.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// problem+json `detail`.
    pub detail: String,
    /// problem+json `errors`.
    pub errors: Option<Vec<String>>,
}

impl Refusal {
    fn new(status: u16, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            errors: None,
        }
    }

    fn invalid(errors: Vec<String>) -> Self {
        Self {
            status: 422,
            detail: "Request validation failed.".into(),
            errors: Some(errors),
        }
    }

    /// The refusal a one-shot fault stands for (`None` for faults that are not a plain answer).
    pub fn from_fault(fault: &Fault) -> Option<Self> {
        Some(match fault {
            Fault::Status(code) => Self::new(
                *code,
                "Something went wrong. Please try again later or contact support.",
            ),
            Fault::ErrorAfterCreate(code) => Self::new(
                *code,
                "Something went wrong. Please try again later or contact support.",
            ),
            Fault::Capacity => Self::new(400, CAPACITY_DETAIL),
            Fault::RateLimited { .. } => {
                Self::new(429, "rate limit exceeded for the minute window")
            }
            Fault::Unauthorized => Self::new(401, "invalid or missing API key"),
            Fault::Forbidden => {
                Self::new(403, "you do not have access to the requested resource pool")
            }
            Fault::InsufficientBalance => Self::new(402, "insufficient balance to deploy this pod"),
            Fault::Unprocessable => {
                Self::invalid(vec!["$.gpu.count: value must be greater than 0".into()])
            }
            Fault::Delay(_) | Fault::HangAfterCreate | Fault::DropAfterCreate => return None,
        })
    }
}

/// `POST /v2/pods` body; unknown fields are a schema violation (422).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    name: String,
    image: Option<String>,
    template_id: Option<String>,
    gpu: Option<GpuRequest>,
    cpu: Option<Value>,
    cloud: Option<Cloud>,
    data_center_ids: Option<Vec<String>>,
    args: Option<String>,
    disk: Option<u32>,
    ports: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    registry: Option<Value>,
    mounts: Option<Mounts>,
    start_ssh: Option<bool>,
    start_jupyter: Option<bool>,
    global_networking: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GpuRequest {
    id: String,
    count: Option<u32>,
    allowed_cuda_versions: Option<Vec<String>>,
    min_cuda_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum Cloud {
    Secure,
    Community,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mounts {
    persistent: Option<Value>,
    network: Option<Value>,
}

impl Mounts {
    /// As the API shows it.
    fn shown(&self) -> Value {
        let mut out = serde_json::Map::new();
        if let Some(p) = &self.persistent {
            out.insert("persistent".into(), p.clone());
        }
        if let Some(n) = &self.network {
            out.insert("network".into(), n.clone());
        }
        Value::Object(out)
    }
}

/// What a pod's own key (`RUNPOD_API_KEY` inside the pod) may do. RunPod documents the key as
/// "limited in scope to only the pod"; whether REST v2 lets it delete the pod is not documented,
/// so tests can play both answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodKeys {
    /// Read, act on and delete its own pod (the default).
    Scoped,
    /// Read its own pod only: a DELETE or action with it is a 403.
    ReadOnly,
    /// RunPod puts no key into the pod (containers get no `RUNPOD_API_KEY`).
    Absent,
}

/// Who a call's bearer key belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The account's API key.
    Account,
    /// The pod-scoped key of this pod.
    Pod(String),
}

/// The whole account.
pub struct AccountState {
    /// Accepted API key.
    pub api_key: String,
    /// Pods still known to the API (listed), by id.
    pub pods: BTreeMap<String, PodRecord>,
    /// Pods deleted (by DELETE or behind the client's back).
    pub removed: Vec<PodRecord>,
    /// GPU catalog.
    pub catalog: Vec<GpuType>,
    /// Free GPUs per type; types absent are unlimited.
    pub capacity: HashMap<String, u32>,
    /// Pending one-shot faults, in order.
    pub faults: Vec<(Op, Fault)>,
    /// Progression mode.
    pub progression: Progression,
    /// Rate-limit windows.
    pub limits: RateLimits,
    /// Calls per operation (authenticated ones).
    pub calls: BTreeMap<Op, u64>,
    /// Accepted create bodies, in order.
    pub create_bodies: Vec<Value>,
    /// Every `User-Agent` header seen ("" for none).
    pub user_agents: BTreeSet<String>,
    /// What pod-scoped keys may do.
    pub pod_keys: PodKeys,
    /// Pods deleted with their own pod-scoped key.
    pub self_deleted: BTreeSet<String>,
    /// Containers run on this machine, when on ([`super::containers`]).
    pub containers: ContainerSettings,
    /// Output (stdout and stderr) of each pod's container, by pod id; kept after the pod is gone.
    pub logs: BTreeMap<String, String>,
    /// Process (group) ids of running containers, by pod id.
    pub container_pids: BTreeMap<String, u32>,
    next_id: u64,
}

/// Whether and how the stand-in runs pods' containers on the test machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerSettings {
    /// Run each pod's `args` under `/bin/sh -c` once the pod is `RUNNING` with a runtime.
    pub enabled: bool,
    /// `PATH` of the containers (the test machine's when `None`); a directory with links to a
    /// few tools plays an image that has only those.
    pub path: Option<String>,
}

impl AccountState {
    /// A fresh account with the default catalog and auto progression.
    pub fn new(api_key: String) -> Self {
        Self {
            api_key,
            pods: BTreeMap::new(),
            removed: Vec::new(),
            catalog: default_catalog(),
            capacity: HashMap::new(),
            faults: Vec::new(),
            progression: Progression::Auto(Timings::default()),
            limits: RateLimits::default(),
            calls: BTreeMap::new(),
            create_bodies: Vec::new(),
            user_agents: BTreeSet::new(),
            pod_keys: PodKeys::Scoped,
            self_deleted: BTreeSet::new(),
            containers: ContainerSettings::default(),
            logs: BTreeMap::new(),
            container_pids: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// Who holds `bearer`: the account, the pod whose pod-scoped key it is, or nobody (`None`).
    pub fn caller(&self, bearer: Option<&str>) -> Option<Caller> {
        let key = bearer?;
        if key == self.api_key {
            return Some(Caller::Account);
        }
        if self.pod_keys == PodKeys::Absent {
            return None;
        }
        self.pods
            .values()
            .find(|p| p.pod_api_key == key)
            .map(|p| Caller::Pod(p.id.clone()))
    }

    /// Whether the pod-scoped key of `owner` may make a call of `op` on `pod`.
    pub fn pod_key_allows(&self, owner: &str, op: Op, pod: Option<&str>) -> bool {
        if pod != Some(owner) {
            return false;
        }
        match op {
            Op::Get => true,
            Op::Delete | Op::Action => self.pod_keys == PodKeys::Scoped,
            _ => false,
        }
    }

    /// Takes the first pending fault aimed at `op`.
    pub fn take_fault(&mut self, op: Op) -> Option<Fault> {
        let i = self.faults.iter().position(|(o, _)| o.matches(op))?;
        Some(self.faults.remove(i).1)
    }

    /// Moves auto-progressing pods along their timings.
    pub fn advance(&mut self, now: Instant) {
        let Progression::Auto(t) = self.progression else {
            return;
        };
        for pod in self.pods.values_mut().filter(|p| p.auto) {
            pod.phase = t.phase_at(now.duration_since(pod.created_instant));
        }
    }

    /// Creates a pod from a raw body (`POST /v2/pods`).
    pub fn create(
        &mut self,
        raw: &[u8],
        created_at: Option<Timestamp>,
    ) -> Result<PodRecord, Refusal> {
        let value: Value =
            serde_json::from_slice(raw).map_err(|e| Refusal::invalid(vec![format!("$: {e}")]))?;
        let body: CreateBody = serde_json::from_value(value.clone())
            .map_err(|e| Refusal::invalid(vec![format!("$: {e}")]))?;
        let gpu = match (&body.gpu, &body.cpu) {
            (Some(g), None) => g,
            (None, Some(_)) => {
                return Err(Refusal::new(
                    400,
                    "CPU pods are not offered by this stand-in",
                ));
            }
            _ => return Err(Refusal::new(400, "exactly one of gpu or cpu must be given")),
        };
        let _ = (
            &gpu.allowed_cuda_versions,
            &gpu.min_cuda_version,
            &body.registry,
        );
        let _ = (body.start_ssh, body.start_jupyter, body.global_networking);
        let image = match (&body.image, &body.template_id) {
            (Some(i), _) => i.clone(),
            (None, Some(t)) => format!("template:{t}"),
            (None, None) => {
                return Err(Refusal::new(
                    400,
                    "image is required unless templateId is given",
                ));
            }
        };
        if let Some(m) = &body.mounts
            && m.persistent.is_some()
            && m.network.is_some()
        {
            return Err(Refusal::new(
                400,
                "mounts take either persistent or network, not both",
            ));
        }
        let count = gpu.count.unwrap_or(1);
        if count == 0 {
            return Err(Refusal::invalid(vec![
                "$.gpu.count: value must be greater than 0".into(),
            ]));
        }
        let cloud = match body.cloud {
            Some(Cloud::Community) => "COMMUNITY",
            Some(Cloud::Secure) | None => "SECURE",
        };
        let Some(gpu_type) = self.catalog.iter().find(|g| g.id == gpu.id) else {
            return Err(Refusal::new(
                400,
                format!("GPU type '{}' does not exist", gpu.id),
            ));
        };
        if count > gpu_type.max_count {
            return Err(Refusal::new(
                400,
                format!("at most {} GPUs of this type per pod", gpu_type.max_count),
            ));
        }
        let Some(per_gpu) = gpu_type.price(cloud) else {
            return Err(Refusal::new(400, CAPACITY_DETAIL));
        };
        if let Some(free) = self.capacity.get_mut(&gpu.id) {
            if *free < count {
                return Err(Refusal::new(400, CAPACITY_DETAIL));
            }
            *free -= count;
        }
        let data_center_ids = body.data_center_ids.unwrap_or_default();
        let pod = PodRecord {
            id: self.new_id(),
            name: body.name,
            image,
            args: body.args,
            env: body.env.unwrap_or_default(),
            gpu_id: gpu.id.clone(),
            gpu_count: count,
            cloud: cloud.into(),
            data_center_id: data_center_ids
                .first()
                .cloned()
                .unwrap_or_else(|| "US-KS-2".into()),
            data_center_ids,
            disk: body.disk,
            mounts: body.mounts.as_ref().map_or(Value::Null, Mounts::shown),
            ports: body.ports.unwrap_or_default(),
            price_per_hour: round4(per_gpu * f64::from(count)),
            created_at: created_at.unwrap_or_else(Timestamp::now),
            created_instant: Instant::now(),
            phase: Phase::Provisioning,
            auto: matches!(self.progression, Progression::Auto(_)),
            exit_code: None,
            pod_api_key: format!(
                "rpa_POD{}",
                uuid::Uuid::new_v4().simple().to_string().to_uppercase()
            ),
        };
        self.create_bodies.push(value);
        self.pods.insert(pod.id.clone(), pod.clone());
        Ok(pod)
    }

    /// Runs an action (`POST /v2/pods/{id}/action`). `Ok(None)` for terminate (204).
    pub fn action(&mut self, id: &str, raw: &[u8]) -> Result<Option<PodRecord>, Refusal> {
        let action = serde_json::from_slice::<Value>(raw)
            .ok()
            .and_then(|v| v.get("action").and_then(Value::as_str).map(str::to_string));
        let action = match action.as_deref() {
            Some(a @ ("start" | "stop" | "restart" | "terminate")) => a.to_string(),
            _ => return Err(Refusal::invalid(vec![BAD_ACTION_ERROR.into()])),
        };
        let pod = self
            .pods
            .get_mut(id)
            .ok_or_else(|| Refusal::new(404, format!("pod {id} not found")))?;
        if !pod.phase.actions().contains(&action.as_str()) {
            return Err(Refusal::new(
                409,
                format!(
                    "action '{action}' is not allowed while the pod is {}",
                    pod.phase.status()
                ),
            ));
        }
        pod.auto = false;
        match action.as_str() {
            "stop" => pod.phase = Phase::Exited,
            "start" | "restart" => pod.phase = Phase::Running,
            _ => {
                pod.phase = Phase::Terminated;
                let (gpu, count) = (pod.gpu_id.clone(), pod.gpu_count);
                self.release(&gpu, count);
                return Ok(None);
            }
        }
        Ok(Some(pod.clone()))
    }

    /// Deletes a pod (`DELETE /v2/pods/{id}`, or behind the client's back).
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(mut pod) = self.pods.remove(id) else {
            return false;
        };
        if pod.phase != Phase::Terminated {
            self.release(&pod.gpu_id, pod.gpu_count);
        }
        pod.phase = Phase::Terminated;
        self.removed.push(pod);
        true
    }

    /// Sets a pod's phase by hand; it stops auto-progressing.
    pub fn set_phase(&mut self, id: &str, phase: Phase) -> bool {
        let Some(pod) = self.pods.get_mut(id) else {
            return false;
        };
        pod.phase = phase;
        pod.auto = false;
        true
    }

    fn release(&mut self, gpu: &str, count: u32) {
        if let Some(free) = self.capacity.get_mut(gpu) {
            *free += count;
        }
    }

    fn new_id(&mut self) -> String {
        let n = self.next_id;
        self.next_id += 1;
        let tail = uuid::Uuid::new_v4().simple().to_string();
        format!("rp{n:04}{}", &tail[..8])
    }
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}
