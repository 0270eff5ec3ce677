//! The stand-in's truth: pods, their lifecycle phases, the GPU catalog, and how each is rendered
//! in RunPod REST v2's JSON shapes (`Pod`, `{"gpus":[…]}`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Where a pod is in its life, as the stand-in tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `PROVISIONING`: looking for a host.
    Provisioning,
    /// `STARTING`: pulling the image.
    Starting,
    /// `RUNNING` with `runtime: null` (the lag RunPod shows right after start).
    RunningNoRuntime,
    /// `RUNNING` with `runtime` set.
    Running,
    /// `EXITED`: stopped, or the container exited.
    Exited,
    /// `ERROR`.
    Error,
    /// `TERMINATED`.
    Terminated,
}

impl Phase {
    /// The v2 `status` string.
    pub fn status(self) -> &'static str {
        match self {
            Self::Provisioning => "PROVISIONING",
            Self::Starting => "STARTING",
            Self::RunningNoRuntime | Self::Running => "RUNNING",
            Self::Exited => "EXITED",
            Self::Error => "ERROR",
            Self::Terminated => "TERMINATED",
        }
    }

    /// Actions the API allows in this phase.
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            Self::RunningNoRuntime | Self::Running => &["stop", "restart", "terminate"],
            Self::Exited | Self::Error => &["start", "terminate"],
            Self::Provisioning | Self::Starting => &["stop", "terminate"],
            Self::Terminated => &[],
        }
    }

    /// True while RunPod bills compute (`cost` > 0).
    pub fn bills(self) -> bool {
        !matches!(self, Self::Exited | Self::Terminated)
    }
}

/// Automatic progression timings, measured from create (each step after the previous one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// Time in `PROVISIONING`.
    pub provisioning: Duration,
    /// Time in `STARTING`.
    pub starting: Duration,
    /// Time in `RUNNING` before `runtime` appears.
    pub runtime_lag: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            provisioning: Duration::from_millis(50),
            starting: Duration::from_millis(50),
            runtime_lag: Duration::from_millis(50),
        }
    }
}

impl Timings {
    /// The phase a pod created `elapsed` ago has reached.
    pub fn phase_at(&self, elapsed: Duration) -> Phase {
        let starting = self.provisioning;
        let running = starting + self.starting;
        let runtime = running + self.runtime_lag;
        if elapsed < starting {
            Phase::Provisioning
        } else if elapsed < running {
            Phase::Starting
        } else if elapsed < runtime {
            Phase::RunningNoRuntime
        } else {
            Phase::Running
        }
    }
}

/// How pods move through their phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progression {
    /// By elapsed time since create.
    Auto(Timings),
    /// Only when a test drives them.
    Manual,
}

/// A GPU type of the catalog with its per-GPU-hour prices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuType {
    /// RunPod GPU id, e.g. `NVIDIA H100 80GB HBM3`.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Memory in GB.
    pub memory_in_gb: u32,
    /// USD per GPU-hour in Secure Cloud, if offered.
    pub secure_price: Option<f64>,
    /// USD per GPU-hour in Community Cloud, if offered.
    pub community_price: Option<f64>,
    /// Largest count per pod.
    pub max_count: u32,
}

impl GpuType {
    /// A catalog entry.
    pub fn new(
        id: &str,
        display: &str,
        memory: u32,
        secure: Option<f64>,
        community: Option<f64>,
    ) -> Self {
        Self {
            id: id.into(),
            display_name: display.into(),
            memory_in_gb: memory,
            secure_price: secure,
            community_price: community,
            max_count: 8,
        }
    }

    /// Per-GPU-hour price in `cloud` (`SECURE` or `COMMUNITY`).
    pub fn price(&self, cloud: &str) -> Option<f64> {
        if cloud == "COMMUNITY" {
            self.community_price
        } else {
            self.secure_price
        }
    }

    /// The v2 catalog JSON object.
    pub fn to_json(&self, available: Option<u32>) -> Value {
        json!({
            "id": self.id,
            "displayName": self.display_name,
            "memoryInGb": self.memory_in_gb,
            "price": { "secure": self.secure_price, "community": self.community_price, "serverless": Value::Null },
            "maxCount": {
                "secure": self.secure_price.map(|_| self.max_count),
                "community": self.community_price.map(|_| self.max_count),
            },
            "availability": available.map_or(json!("HIGH"), |n| if n == 0 { json!("NONE") } else { json!("LOW") }),
        })
    }
}

/// The stand-in's default catalog (prices are plausible figures, not RunPod's).
pub fn default_catalog() -> Vec<GpuType> {
    vec![
        GpuType::new(
            "NVIDIA H100 80GB HBM3",
            "H100 SXM",
            80,
            Some(2.69),
            Some(2.09),
        ),
        GpuType::new("NVIDIA H100 PCIe", "H100 PCIe", 80, Some(2.79), Some(1.99)),
        GpuType::new(
            "NVIDIA A100 80GB PCIe",
            "A100 PCIe",
            80,
            Some(1.64),
            Some(1.19),
        ),
        GpuType::new("NVIDIA A100-SXM4-80GB", "A100 SXM", 80, Some(1.89), None),
        GpuType::new("NVIDIA L40S", "L40S", 48, Some(0.86), Some(0.79)),
        GpuType::new(
            "NVIDIA GeForce RTX 4090",
            "RTX 4090",
            24,
            Some(0.69),
            Some(0.34),
        ),
    ]
}

/// One pod, as the stand-in knows it (its truth, more than the API shows).
#[derive(Clone, Debug, PartialEq)]
pub struct PodRecord {
    /// Pod id.
    pub id: String,
    /// Name (not unique).
    pub name: String,
    /// Image.
    pub image: String,
    /// `args` string as sent.
    pub args: Option<String>,
    /// Env as sent.
    pub env: BTreeMap<String, String>,
    /// GPU type id.
    pub gpu_id: String,
    /// GPU count.
    pub gpu_count: u32,
    /// `SECURE` or `COMMUNITY`.
    pub cloud: String,
    /// Allowed data centers as sent.
    pub data_center_ids: Vec<String>,
    /// Data center the pod landed in.
    pub data_center_id: String,
    /// Container disk in GB.
    pub disk: Option<u32>,
    /// `mounts` as sent (`{persistent:{size,path}}` or `{network:[{volumeId,path}]}`).
    pub mounts: serde_json::Value,
    /// Ports as sent.
    pub ports: Vec<String>,
    /// Per-GPU-hour price times count, fixed at create.
    pub price_per_hour: f64,
    /// `createdAt`.
    pub created_at: Timestamp,
    /// When the stand-in made it (drives auto progression).
    pub created_instant: Instant,
    /// Current phase.
    pub phase: Phase,
    /// Whether auto progression still moves this pod.
    pub auto: bool,
    /// Exit code of the container when a test made it exit (not exposed by the API, like RunPod).
    pub exit_code: Option<i32>,
    /// The pod-scoped API key RunPod puts into the pod's environment as `RUNPOD_API_KEY` (never
    /// shown by the API).
    pub pod_api_key: String,
}

impl PodRecord {
    /// True while the pod still holds GPUs and may bill.
    pub fn is_live(&self) -> bool {
        self.phase != Phase::Terminated
    }

    /// USD/h as the API reports it: 0.0 once `EXITED` or `TERMINATED`.
    pub fn cost(&self) -> f64 {
        if self.phase.bills() {
            self.price_per_hour
        } else {
            0.0
        }
    }

    /// The v2 `Pod` JSON object.
    pub fn to_json(&self) -> Value {
        let has_machine = !matches!(self.phase, Phase::Provisioning | Phase::Terminated);
        let runtime = (self.phase == Phase::Running).then(|| {
            let uptime = self.created_instant.elapsed().as_secs();
            json!({
                "uptime": uptime,
                "gpus": (0..self.gpu_count).map(|_| json!({"util": 0, "memoryUtil": 0})).collect::<Vec<_>>(),
                "cpu": {"util": 1},
                "memory": {"util": 2},
                "ports": self.ports.iter().filter_map(|p| port_json(p)).collect::<Vec<_>>(),
            })
        });
        let started_at = matches!(self.phase, Phase::Running | Phase::RunningNoRuntime)
            .then(|| self.created_at.to_string());
        json!({
            "id": self.id,
            "name": self.name,
            "status": self.phase.status(),
            "actions": self.phase.actions(),
            "image": self.image,
            "args": self.args,
            "disk": self.disk,
            "mounts": self.mounts,
            "ports": self.ports,
            "env": self.env,
            "registry": Value::Null,
            "cloud": self.cloud,
            "dataCenterId": self.data_center_id,
            "cudaVersion": "12.4",
            "ssh": {
                "proxy": has_machine.then(|| json!({
                    "host": "ssh.runpod.io",
                    "port": 22,
                    "username": format!("{}-64410c3a", self.id),
                    "command": format!("ssh {}-64410c3a@ssh.runpod.io", self.id),
                })),
                "direct": Value::Null,
            },
            "template": Value::Null,
            "cost": self.cost(),
            "locked": false,
            "runtime": runtime,
            "createdAt": self.created_at.to_string(),
            "startedAt": started_at,
            "globalNetworking": {"enabled": false},
            "gpu": {"id": self.gpu_id, "count": self.gpu_count},
        })
    }
}

/// A runtime port entry for a `"8888/http"`-style port spec.
fn port_json(spec: &str) -> Option<Value> {
    let (port, kind) = spec.split_once('/')?;
    let private: u16 = port.parse().ok()?;
    Some(json!({
        "private": private,
        "public": private.checked_add(10_000).unwrap_or(private),
        "type": kind,
        "ip": "203.0.113.7",
    }))
}
