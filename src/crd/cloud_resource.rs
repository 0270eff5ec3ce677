//! `CloudResource`: one rented machine, as the cluster sees and pays for it.
//!
//! A CloudResource is created by the TrainingJob controller (one per attempt) or by hand. Its
//! controller is the only part of runctl that talks to clouds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{DeletionPolicy, ProviderKind, SecretRef, Tags, WorkloadSpec};
pub use crate::provider::aws::options::AwsOptions;
pub use crate::provider::kubernetes::options::{
    KubernetesOptions, KubernetesToleration, TaintEffect, TolerationOperator,
};
pub use crate::provider::lyceum::options::{LyceumMode, LyceumOptions};
pub use crate::provider::runpod::options::{RunPodCloud, RunPodOptions};

/// Desired machine. Provider and placement fields are immutable once created: change them by
/// creating a new CloudResource.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "runctl.dev",
    version = "v1alpha1",
    kind = "CloudResource",
    plural = "cloudresources",
    shortname = "cres",
    category = "runctl",
    namespaced,
    status = "CloudResourceStatus",
    doc = "A GPU machine rented from a cloud provider and managed by runctl",
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(name = "Type", type_ = "string", json_path = ".status.machineType"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "$/h", type_ = "number", json_path = ".status.costPerHour"),
    printcolumn(name = "Accrued", type_ = "number", json_path = ".status.accruedCost"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Provider-ID",
        type_ = "string",
        json_path = ".status.providerId",
        priority = 1
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.reason",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.maxPricePerHour) || self.spot").message("maxPricePerHour is the spot bid ceiling and needs spot: true").field_path(".maxPricePerHour"))]
#[x_kube(validation = Rule::new("has(self.instanceType) == has(oldSelf.instanceType) && has(self.gpuType) == has(oldSelf.gpuType) && has(self.gpuCount) == has(oldSelf.gpuCount) && has(self.region) == has(oldSelf.region) && has(self.workload) == has(oldSelf.workload)").message("placement and workload fields cannot be added or removed after creation"))]
pub struct CloudResourceSpec {
    /// Provider, one of the names listed (each is described in docs/providers/; kubernetes is
    /// a Pod on the cluster's own GPU nodes). Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("provider is immutable"))]
    pub provider: ProviderKind,

    /// Provider instance type (EC2 `g5.xlarge`, `p5.48xlarge`). Required for aws; for sim it
    /// selects a priced machine type. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("instanceType is immutable"))]
    #[x_kube(validation = Rule::new("self.size() > 0 && self.size() <= 64").message("instanceType must be 1 to 64 characters"))]
    pub instance_type: Option<String>,

    /// GPU type: a RunPod GPU id (`NVIDIA H100 80GB HBM3`) or a Lyceum hardware profile (`a100`,
    /// `h100`). Required for runpod and lyceum. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("gpuType is immutable"))]
    #[x_kube(validation = Rule::new("self.size() > 0 && self.size() <= 64").message("gpuType must be 1 to 64 characters"))]
    pub gpu_type: Option<String>,

    /// Number of GPUs (1 to 16; Lyceum accepts 1, 2, 4 or 8). Defaults to 1 where the provider
    /// sizes by GPU. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("gpuCount is immutable"))]
    pub gpu_count: Option<u32>,

    /// Region (EC2 region such as `us-east-1`); defaults to the operator's configured region.
    /// Ignored by providers without regions. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("region is immutable"))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9-]{1,32}$')").message("region must be lower-case letters, digits and dashes, e.g. us-east-1"))]
    pub region: Option<String>,

    /// Rent a spot / interruptible machine (cheaper, may be reclaimed). Not offered by RunPod.
    /// Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spot is immutable"))]
    pub spot: bool,

    /// Highest price per hour (USD) to pay for a spot machine. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 10000.0))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("maxPricePerHour is immutable"))]
    pub max_price_per_hour: Option<f64>,

    /// The container the machine runs. Without it the machine is a bare machine (not available
    /// for RunPod, whose pods always run an image). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("workload is immutable; create a new CloudResource to run something else"))]
    pub workload: Option<WorkloadSpec>,

    /// Extra tags (EC2 tags, or labels where the provider has them) on the machine.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    #[schemars(extend("maxProperties" = 40, "additionalProperties" = {"type": "string", "maxLength": 256}))]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('runctl.dev/'))").message("tags under runctl.dev/ are reserved for runctl's ownership tags"))]
    pub tags: Tags,

    /// MachineClass whose settings, regions and credentials the machine uses (see
    /// `docs/machine-classes.md`); the operator's configuration of the provider when absent.
    /// The class must be of this provider and allow this namespace. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("machineClass is immutable"))]
    pub machine_class: Option<String>,

    /// Secret with provider credentials in this namespace; the class's credentials, else the
    /// operator's default credentials for the provider when absent. Keys: aws `accessKeyId`, `secretAccessKey`, optional
    /// `sessionToken`; runpod `apiKey`; lyceum `apiKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("credentialsSecretRef is immutable"))]
    pub credentials_secret_ref: Option<SecretRef>,

    /// Delete (default) terminates the machine when this object is deleted; Orphan leaves it
    /// running.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Longest the machine may live, in seconds from launch; runctl terminates it afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 31_536_000))]
    pub max_lifetime_seconds: Option<i64>,

    /// EC2 options (provider aws only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("aws placement options are immutable"))]
    pub aws: Option<AwsOptions>,

    /// RunPod options (provider runpod only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("runpod placement options are immutable"))]
    pub runpod: Option<RunPodOptions>,

    /// Lyceum options (provider lyceum only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("lyceum placement options are immutable"))]
    pub lyceum: Option<LyceumOptions>,

    /// Pod options (provider kubernetes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("kubernetes placement options are immutable"))]
    pub kubernetes: Option<KubernetesOptions>,
}

/// How a failed provider call is treated: the one classification both controllers read
/// (`ProviderError::class()` makes it; `status.failure.class` keeps it).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum FailureClass {
    /// Transient (network, 5xx, throttling, quota): tried again with backoff.
    Retryable,
    /// The provider has no machine of that kind now: placement may try the next offer.
    Capacity,
    /// The account cannot be used (credentials rejected, no funds): the fix is outside the spec,
    /// so create is tried again when the credentials Secret changes, and after a slow interval
    /// (a top-up changes nothing runctl can see).
    Account,
    /// The provider rejected the machine spec: nothing but a spec change helps.
    Terminal,
}

impl FailureClass {
    /// The name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "Retryable",
            Self::Capacity => "Capacity",
            Self::Account => "Account",
            Self::Terminal => "Terminal",
        }
    }
}

/// The last failed step of the CloudResource controller, typed: what the retry policy reads.
/// Cleared when a later step succeeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// How the failure is retried.
    pub class: FailureClass,
    /// Machine-readable reason (AuthenticationFailed, InsufficientCapacity, InvalidSpec…).
    #[schemars(length(max = 128))]
    pub reason: String,
    /// `metadata.generation` the failure happened at.
    pub generation: i64,
    /// Version of the credentials Secret in use (`namespace/name@resourceVersion`), so that an
    /// account failure is retried once the Secret changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub credentials: Option<String>,
    /// When it happened.
    pub time: Time,
}

/// What the workload on the machine reported through the job callback endpoint, persisted by
/// whichever operator replica received it (field manager `runctl-callback`, merge patches that
/// never remove a field), so that no report lives only in one process's memory: the leader's
/// TrainingJob controller reads it from here, also after a restart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadReport {
    /// A heartbeat persisted by a standby replica (its first, then at most once per
    /// `costRefreshSeconds`); the leader keeps heartbeats in memory and writes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<Time>,
    /// The latest progress persisted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::crd::training_job::Progress>,
    /// The workload's exit code, as the reporting wrapper sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The wrapper stopped the workload for the provider's reclaim notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<bool>,
    /// When the exit report arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_time: Option<Time>,
}

/// Normalized machine state, the same for every provider.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum ResourceState {
    /// Requested, provisioning or booting.
    Starting,
    /// Up and running its workload.
    Running,
    /// Being stopped.
    Stopping,
    /// Stopped (not billing for compute, may bill for storage).
    Stopped,
    /// Being terminated.
    Terminating,
    /// Gone; no longer billing.
    Terminated,
    /// Failed; see the reason (spot preemption, capacity, container error…).
    Error,
    /// The provider reported something runctl does not recognise.
    Unknown,
}

impl ResourceState {
    /// The state's name as written in status and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "Starting",
            Self::Running => "Running",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
            Self::Terminating => "Terminating",
            Self::Terminated => "Terminated",
            Self::Error => "Error",
            Self::Unknown => "Unknown",
        }
    }

    /// True when the provider no longer bills compute for this machine.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Terminated | Self::Error)
    }

    /// True when the machine runs no workload any more: a final state, or `Stopped` (a RunPod
    /// pod in `EXITED`, a stopped EC2 instance: no compute billed, storage still is).
    pub fn workload_ended(self) -> bool {
        self.is_final() || self == Self::Stopped
    }
}

/// A create call that runctl is about to make or has made: recorded before the call so that a
/// crash between the call and recording the machine id leads to adoption, never a duplicate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingCreate {
    /// Idempotency token (EC2 ClientToken) derived from the object's UID and attempt.
    pub token: String,
    /// Create attempt; changes only when the spec changes after a terminal failure.
    pub attempt: u32,
    /// Deterministic machine name used where the provider has no token (RunPod, Lyceum).
    pub machine_name: String,
    /// When the intent was recorded.
    pub since: Time,
    /// Generation of the spec the intent was recorded for.
    pub generation: i64,
    /// The credentials Secret (`namespace/name`) the machine is created with; the machine is
    /// looked up and deleted with the same account even if its class later names another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
}

/// Observed machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudResourceStatus {
    /// Normalized machine state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ResourceState>,
    /// Machine-readable reason for the state (Provisioning, Booting, SpotInterrupted…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail, e.g. the provider's own status or error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Provider's id of the machine (EC2 instance id, RunPod pod id, Lyceum execution or VM id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// Machine type as rented, e.g. `g5.xlarge` or `NVIDIA H100 80GB HBM3 x2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    /// Public address (IP or host:port) when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_address: Option<String>,
    /// Address on the provider's private network, when it has one (the address the other
    /// machines of a multi-node job reach this one at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_address: Option<String>,
    /// When the provider launched the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_time: Option<Time>,
    /// When the machine was seen ended (billing stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
    /// Cost per hour in USD (an estimate unless the provider reported it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_hour: Option<f64>,
    /// Where `costPerHour` comes from (e.g. `ec2-on-demand-table`, `runpod-pod-cost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_source: Option<String>,
    /// Accrued cost in USD since launch: the provider's billed figure when it has one, else price
    /// times uptime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accrued_cost: Option<f64>,
    /// Exit code of the workload when the provider reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Recorded create intent (see PendingCreate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_create: Option<PendingCreate>,
    /// Generation of the spec last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Last time the machine was observed at the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_observed_time: Option<Time>,
    /// What the workload reported through the callback endpoint (not written by the
    /// CloudResource controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<WorkloadReport>,
    /// The last failed step, typed for the retry policy; absent after a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// `Ready` (the machine is running) and `Synced` (the last reconcile succeeded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
