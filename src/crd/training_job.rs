//! `TrainingJob`: what ML engineers write. The TrainingJob controller turns each attempt into a
//! CloudResource (`<job>-a<N>`), follows the workload to a truthful outcome through the callback
//! endpoint, and cleans up. See `docs/training-jobs.md` for the lifecycle.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{DeletionPolicy, EnvVar, ProviderKind, SecretRef};

/// The annotation that asks for a new attempt now (`runctl retry tj/NAME`): its value is an
/// opaque request token (the CLI writes the current RFC 3339 time), and the controller handles
/// each distinct value once, recording it in `status.observedRetryRequest`. A running attempt
/// ends `RetryRequested` (no failure: no backoff, nothing counted against `backoffLimit`) and the
/// next one starts at once; a failed job runs again; a succeeded job is not retried; a suspended
/// job starts nothing until it resumes. See `docs/training-jobs.md`.
pub const RETRY_ANNOTATION: &str = "runctl.dev/retry";

/// The JSON merge patch (`Patch::Merge`, content type `application/merge-patch+json`) that asks
/// for a retry with request token `token`: it sets [`RETRY_ANNOTATION`] and touches nothing else.
pub fn retry_patch(token: &str) -> serde_json::Value {
    serde_json::json!({"metadata": {"annotations": {RETRY_ANNOTATION: token}}})
}

/// An earlier job's success, as its record kept it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviousSuccess {
    /// UID of the job that trained.
    pub uid: String,
    /// When it finished.
    pub completion_time: Time,
    /// Its attempts.
    pub attempt_count: u32,
    /// What it cost (USD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accrued_cost: Option<f64>,
}

pub use crate::provider::descriptor::PlacementProvider;

/// Capacity type of the machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CapacityType {
    /// On-demand only.
    #[default]
    OnDemand,
    /// Spot only.
    Spot,
    /// Spot first, on-demand when spot has no capacity.
    SpotWithFallback,
}

/// Failure classes that start a new attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RetryOn {
    /// No capacity for the requested machine.
    Capacity,
    /// Spot interruption, or the machine ended without a report (MachineLost).
    Interruption,
    /// The workload exited non-zero.
    Failure,
}

/// What a re-created job does after an earlier job of the same name and spec succeeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RecreatePolicy {
    /// Train again.
    #[default]
    Train,
    /// Keep a record of the success (a ConfigMap `runctl-succeeded-<name>`, 30 days) and finish
    /// a re-created job with the same spec at once, without renting a machine.
    SkipIfSucceeded,
}

/// The machine the job needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.provider != 'auto' || has(self.instanceType) || has(self.gpuType) || has(self.gpu)").message("placement.provider auto needs placement.gpu (or gpuType / instanceType) to compare offers"))]
#[x_kube(validation = Rule::new("!has(self.gpu) || !(has(self.instanceType) || has(self.gpuType) || has(self.gpuCount))").message("placement.gpu replaces instanceType, gpuType and gpuCount: use one or the other").field_path(".gpu"))]
#[x_kube(validation = Rule::new("self.provider == 'auto' || !has(self.machineClasses) || size(self.machineClasses) == 1").message("a fixed placement.provider takes one machine class; list several only with provider auto").field_path(".machineClasses"))]
#[x_kube(validation = Rule::new("!has(self.allowedProviders) || self.provider == 'auto'").message("placement.allowedProviders is only used with provider auto").field_path(".allowedProviders"))]
pub struct Placement {
    /// One provider of those listed (docs/providers/; kubernetes is the cluster's own GPU
    /// nodes), or auto (free in-cluster GPUs first, else the cheapest allowed offer). Only a provider the
    /// operator's configuration enables can run the job (sim only where enabled explicitly).
    pub provider: PlacementProvider,
    /// Instance type (EC2 `g5.xlarge`; a priced machine type for sim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.size() > 0 && self.size() <= 64").message("instanceType must be 1 to 64 characters"))]
    pub instance_type: Option<String>,
    /// GPU type (RunPod GPU id or Lyceum profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.size() > 0 && self.size() <= 64").message("gpuType must be 1 to 64 characters"))]
    pub gpu_type: Option<String>,
    /// Number of GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub gpu_count: Option<u32>,
    /// The GPUs in runctl's provider-neutral vocabulary (`A100-80GB`, `H100-80GB`, `L40S`…, a
    /// count and optional vCPU and memory floors), instead of instanceType / gpuType / gpuCount:
    /// each provider offers its equivalent machines, so `auto` compares like with like
    /// (`docs/providers/gpus.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<crate::crd::GpuNeed>,
    /// Allowed regions, in order of preference (providers with regions only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 32)))]
    #[x_kube(validation = Rule::new("self.all(r, r.matches('^[a-z0-9-]{1,32}$'))").message("regions must be lower-case letters, digits and dashes, e.g. us-east-1"))]
    pub regions: Vec<String>,
    /// onDemand (default), spot, or spotWithFallback.
    #[serde(default)]
    pub capacity_type: CapacityType,
    /// Highest acceptable price per hour in USD; dearer offers are rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_hourly_price: Option<f64>,
    /// Providers that `auto` may choose from; every provider the operator enables when absent
    /// (a provider the operator does not enable is never used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8), extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("allowedProviders must name at least one provider"))]
    pub allowed_providers: Option<Vec<ProviderKind>>,
    /// MachineClasses the job may run with (see `docs/machine-classes.md`): each brings its
    /// provider, regions, machine settings and credentials. With a fixed provider, one class of
    /// that provider; with `auto`, the offers of every class listed (and of no other provider).
    /// The operator's configuration of each provider when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8), inner(length(max = 253)), extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("machineClasses must name at least one MachineClass"))]
    pub machine_classes: Option<Vec<String>>,
}

/// The training container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingWorkload {
    /// Container image.
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.size() > 0 && !self.contains(' ')").message("image must be a non-empty image reference without spaces"))]
    pub image: String,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub command: Vec<String>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 512), inner(length(max = 16384)))]
    pub args: Vec<String>,
    /// Environment (literal values or Secret keys). The names runctl sets itself (job context,
    /// reporting wrapper, ownership markers) are reserved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.all(e, !(e.name in ['RUNCTL_JOB_NAME', 'RUNCTL_JOB_NAMESPACE', 'RUNCTL_ATTEMPT', 'RUNCTL_CHECKPOINT_DIR', 'RUNCTL_DATA_SOURCE', 'RUNCTL_OUTPUT_DEST', 'RUNCTL_REPORT_URL', 'RUNCTL_REPORT_TOKEN', 'RUNCTL_HEARTBEAT_INTERVAL', 'RUNCTL_SELF_TERMINATE_AFTER', 'RUNCTL_OWNER', 'RUNCTL_INSTALLATION']))").message("env names set by runctl (RUNCTL_JOB_NAME, RUNCTL_ATTEMPT, RUNCTL_CHECKPOINT_DIR, RUNCTL_REPORT_TOKEN…) are reserved"))]
    pub env: Vec<EnvVar>,
    /// Training data, passed as RUNCTL_DATA_SOURCE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source: Option<DataSource>,
    /// Where outputs go, passed as RUNCTL_OUTPUT_DEST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub output_dest: Option<String>,
    /// Checkpoint directory, passed as RUNCTL_CHECKPOINT_DIR; every attempt gets the same one, so
    /// a retried or resumed job continues from its last checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub checkpoint_dir: Option<String>,
}

/// Training data location.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    /// URI such as `s3://bucket/prefix`.
    #[schemars(length(max = 2048))]
    pub uri: String,
    /// Secret with credentials for the data source; each key whose name is a C identifier is
    /// passed to the workload as an env variable of that name (values resolved at create time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// A training job: a container run to completion on a rented GPU machine.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "runctl.dev",
    version = "v1alpha1",
    kind = "TrainingJob",
    plural = "trainingjobs",
    shortname = "tj",
    category = "runctl",
    namespaced,
    status = "TrainingJobStatus",
    doc = "A training container run to completion on a rented GPU machine",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Provider", type_ = "string", json_path = ".status.provider"),
    printcolumn(name = "GPU", type_ = "string", json_path = ".status.machineType"),
    printcolumn(
        name = "Attempts",
        type_ = "integer",
        json_path = ".status.attemptCount"
    ),
    printcolumn(name = "$/h", type_ = "number", json_path = ".status.costPerHour"),
    printcolumn(name = "Cost", type_ = "number", json_path = ".status.accruedCost"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.reason",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TrainingJobSpec {
    /// Machine placement. Changes apply to the next attempt.
    pub placement: Placement,
    /// The container to run. Changes apply to the next attempt.
    pub workload: TrainingWorkload,
    /// Machines per attempt, all of one offer (default 1). Above 1 the job is a multi-node job:
    /// every attempt rents this many machines together, in the same provider, region and
    /// network (aws or sim), each running the workload with `NODE_RANK`, `NNODES`,
    /// `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT` set for torchrun. Rank 0's exit decides the
    /// attempt; any node lost ends it; a node that does not come up releases them all.
    #[serde(default = "default_nodes", skip_serializing_if = "is_one")]
    #[schemars(range(min = 1, max = 16))]
    pub nodes: u32,
    /// Rank 0's rendezvous port (`MASTER_PORT`) in a multi-node job (default 29500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 65535))]
    pub master_port: Option<u16>,
    /// New attempts allowed per failure class in retryOn (default 3). Capacity errors,
    /// interruptions and workload failures are counted separately.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub backoff_limit: u32,
    /// Failure classes that start a new attempt (default capacity and interruption).
    #[serde(default = "default_retry_on")]
    #[schemars(length(max = 3), extend("x-kubernetes-list-type" = "set"))]
    pub retry_on: Vec<RetryOn>,
    /// Wall-clock limit in seconds, counted from the start of the first attempt (reset on resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// Delete the job and its machines this long after it finished (from completionTime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
    /// Suspend: terminate the machine and keep status; resuming starts a new attempt.
    #[serde(default)]
    pub suspend: bool,
    /// What a job re-created with this name and spec does after an earlier one succeeded (a
    /// GitOps tool re-creating it once ttlSecondsAfterFinished deleted it): Train (default)
    /// trains again; SkipIfSucceeded finishes at once, Succeeded with reason AlreadySucceeded,
    /// and is not deleted by its TTL again (`docs/gitops.md`).
    #[serde(default)]
    pub recreate_policy: RecreatePolicy,
    /// Spend ceiling in USD over all attempts; the machine is stopped before it is crossed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_total_cost: Option<f64>,
    /// What deleting the job does to the machine of its running attempt: Delete (default)
    /// terminates it, Orphan leaves it running and forgets it. Machines of attempts the job ends
    /// itself (outcome, retry, suspend, activeDeadlineSeconds, maxTotalCost) are always
    /// terminated.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_backoff_limit() -> u32 {
    3
}
fn default_nodes() -> u32 {
    1
}
fn is_one(n: &u32) -> bool {
    *n == 1
}

/// The rendezvous port of a multi-node job when `spec.masterPort` is not set.
pub const DEFAULT_MASTER_PORT: u16 = 29500;

impl TrainingJobSpec {
    /// Machines per attempt (at least 1).
    pub fn nodes(&self) -> u32 {
        self.nodes.max(1)
    }
}
fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::Capacity, RetryOn::Interruption]
}

/// Job phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum JobPhase {
    /// Accepted; no machine requested yet, or waiting (backoff) before the next attempt.
    Pending,
    /// A machine is being rented or is booting.
    Provisioning,
    /// The machine runs the workload.
    Running,
    /// The workload reported exit code 0. Final.
    Succeeded,
    /// The job ended without success; `reason` says why. Final.
    Failed,
    /// `spec.suspend` is true: no machine; status is kept; resuming starts a new attempt.
    Suspended,
}

impl JobPhase {
    /// True for Succeeded and Failed: the outcome never changes afterwards.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }

    /// The phase's name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Provisioning => "Provisioning",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Suspended => "Suspended",
        }
    }
}

/// One machine used by the job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// Attempt number from 1.
    pub index: u32,
    /// Provider used.
    pub provider: ProviderKind,
    /// Instance or GPU type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    /// Region, for providers with regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// True for a spot machine.
    #[serde(default)]
    pub spot: bool,
    /// Name of the CloudResource.
    pub cloud_resource: String,
    /// When the attempt started (CloudResource requested).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the attempt ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
    /// Exit code the workload reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why the attempt ended (Completed, ExitCode, SpotInterrupted, InsufficientCapacity,
    /// MachineLost, StartTimeout, HeartbeatsStopped, DeadlineExceeded, BudgetExceeded,
    /// Suspended, RetryRequested, InvalidSpec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The `retryOn` class this end counts against (Failure, Interruption, Capacity); absent
    /// for a success and for ends the job itself caused (deadline, budget, suspend) or a user
    /// asked for (`runctl.dev/retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_class: Option<RetryOn>,
    /// Cost of this attempt in USD (all its machines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Machines of the attempt, when more than one (a multi-node job); their CloudResources
    /// are `cloudResource` (rank 0) and `cloudResource-r<rank>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u32>,
}

/// A machine offer considered for placement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Offer {
    /// Provider.
    pub provider: ProviderKind,
    /// Instance type, where the provider sizes by instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// GPU type, where the provider sizes by GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_type: Option<String>,
    /// GPU count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_count: Option<u32>,
    /// Region, for providers with regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Spot machine.
    #[serde(default)]
    pub spot: bool,
    /// Price per hour in USD, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_hour: Option<f64>,
    /// The MachineClass the offer is made with; the operator's configuration when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_class: Option<String>,
}

/// An offer that was not (or no longer) chosen, with the reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RejectedOffer {
    /// The offer.
    pub offer: Offer,
    /// Machine-readable reason (AboveMaxHourlyPrice, NoSpot, NoMachineType, ProviderUnavailable,
    /// PriceUnavailable, InsufficientCapacity).
    pub reason: String,
    /// Detail for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The placement decision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementStatus {
    /// The offer of the current or last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<Offer>,
    /// Offers still to try, cheapest first (used when the chosen one has no capacity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remaining: Vec<Offer>,
    /// Offers rejected, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedOffer>,
}

/// Progress reported by the workload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Fraction done in percent (0 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Training step or epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
    /// Free-form message (at most 256 characters are kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

/// Failures counted per class, each limited by `backoffLimit`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureCounts {
    /// Attempts ended by a capacity error.
    #[serde(default)]
    pub capacity: u32,
    /// Attempts ended by spot interruption or a lost machine.
    #[serde(default)]
    pub interruption: u32,
    /// Attempts whose workload exited non-zero.
    #[serde(default)]
    pub failure: u32,
}

/// Observed job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingJobStatus {
    /// Pending, Provisioning, Running, Succeeded, Failed or Suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,
    /// Machine-readable outcome reason (Completed, ExitCode, BackoffLimitExceeded,
    /// DeadlineExceeded, BudgetExceeded, NoCapacity, InvalidSpec, MachineLost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Provider of the current (or last) machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderKind>,
    /// Machine type of the current (or last) machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    /// CloudResource of the running attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_cloud_resource: Option<String>,
    /// Number of attempts so far.
    #[serde(default)]
    pub attempt_count: u32,
    /// One entry per machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// Failures per class.
    #[serde(default)]
    pub failures: FailureCounts,
    /// Cost per hour of the current machine in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_hour: Option<f64>,
    /// Accrued cost over all attempts in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accrued_cost: Option<f64>,
    /// Exit code the workload reported last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// When the job (or, after a resume, its current run) started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job reached Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Last heartbeat from the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<Time>,
    /// Last progress report from the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Offer chosen and offers rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementStatus>,
    /// The earlier job of this name and spec whose success this one stands for
    /// (`recreatePolicy: SkipIfSucceeded`): it trained nothing itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_success: Option<PreviousSuccess>,
    /// The value of the `runctl.dev/retry` annotation the controller last handled (`runctl
    /// retry` writes the current time there): each distinct value asks once for a new attempt
    /// now. A client that set the annotation waits for this field to equal its value, then reads
    /// the outcome from `phase` and `attempts` (a succeeded job is not retried; a suspended one
    /// starts nothing until it resumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_retry_request: Option<String>,
    /// Generation of the spec last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Complete, Failed, Suspended, MachinesReleased and Synced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
