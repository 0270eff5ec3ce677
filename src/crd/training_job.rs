//! `TrainingJob`: what ML engineers write. A first sketch of the API; its controller is built
//! separately and turns each attempt into a CloudResource.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{DeletionPolicy, EnvVar, SecretRef};

/// Where a job may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlacementProvider {
    /// Amazon EC2.
    Aws,
    /// RunPod.
    Runpod,
    /// Lyceum AI.
    Lyceum,
    /// The simulated cloud.
    Sim,
    /// The cheapest offer among the allowed providers.
    Auto,
}

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
    /// Spot interruption or machine lost.
    Interruption,
    /// The workload exited non-zero.
    Failure,
}

/// The machine the job needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.provider != 'aws' || has(self.instanceType)").message("placement.provider aws needs placement.instanceType"))]
#[x_kube(validation = Rule::new("!has(self.allowedProviders) || self.provider == 'auto'").message("allowedProviders is only used with provider auto"))]
pub struct Placement {
    /// aws, runpod, lyceum, sim, or auto (cheapest allowed offer).
    pub provider: PlacementProvider,
    /// EC2 instance type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// GPU type (RunPod id or Lyceum profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_type: Option<String>,
    /// Number of GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub gpu_count: Option<u32>,
    /// Allowed regions, in order of preference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// onDemand (default), spot, or spotWithFallback.
    #[serde(default)]
    pub capacity_type: CapacityType,
    /// Highest acceptable price per hour in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_hourly_price: Option<f64>,
    /// Providers that `auto` may choose from; all configured providers when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_providers: Option<Vec<String>>,
}

/// The training container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingWorkload {
    /// Container image.
    pub image: String,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment (literal values or Secret keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Training data URI, passed as RUNCTL_DATA_SOURCE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source: Option<DataSource>,
    /// Where outputs go, passed as RUNCTL_OUTPUT_DEST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_dest: Option<String>,
    /// Checkpoint directory, passed as RUNCTL_CHECKPOINT_DIR; retries resume from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_dir: Option<String>,
}

/// Training data location.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    /// URI such as `s3://bucket/prefix`.
    pub uri: String,
    /// Secret with credentials for the data source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// A training job: a container run to completion on a rented GPU machine.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    printcolumn(name = "Attempts", type_ = "integer", json_path = ".status.attemptCount"),
    printcolumn(name = "$/h", type_ = "number", json_path = ".status.costPerHour"),
    printcolumn(name = "Cost", type_ = "number", json_path = ".status.accruedCost"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct TrainingJobSpec {
    /// Machine placement.
    pub placement: Placement,
    /// The container to run.
    pub workload: TrainingWorkload,
    /// New attempts allowed after failures of the classes in retryOn (default 3).
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub backoff_limit: u32,
    /// Failure classes that start a new attempt.
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<RetryOn>,
    /// Wall-clock limit of the job in seconds from its first attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// Delete the job and its machines this long after it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
    /// Suspend: terminate the machine and keep status; resuming starts a new attempt.
    #[serde(default)]
    pub suspend: bool,
    /// Spend ceiling in USD over all attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_total_cost: Option<f64>,
    /// What happens to a machine when its CloudResource is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_backoff_limit() -> u32 {
    3
}
fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::Capacity, RetryOn::Interruption]
}

/// Job phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum JobPhase {
    /// Accepted, no machine requested yet.
    Pending,
    /// A machine is being rented or is booting.
    Provisioning,
    /// The workload runs.
    Running,
    /// The workload exited 0.
    Succeeded,
    /// The job ended without success (see reason).
    Failed,
    /// Suspended by the user.
    Suspended,
}

/// One machine used by the job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// Attempt number from 1.
    pub index: u32,
    /// Provider used.
    pub provider: String,
    /// Instance or GPU type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    /// Name of the CloudResource.
    pub cloud_resource: String,
    /// Start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// End time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
    /// Exit code of the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why the attempt ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Cost of this attempt in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

/// Observed job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingJobStatus {
    /// Phase of the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,
    /// Machine-readable reason (Completed, ExitCode, BackoffLimitExceeded…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Provider of the current machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Machine type of the current machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    /// Number of attempts so far.
    #[serde(default)]
    pub attempt_count: u32,
    /// One entry per machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// Cost per hour of the current machine in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_hour: Option<f64>,
    /// Accrued cost over all attempts in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accrued_cost: Option<f64>,
    /// When the first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Generation of the spec last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Complete, Failed, Suspended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
