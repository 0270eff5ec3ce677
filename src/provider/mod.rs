//! The provider abstraction: one trait that every cloud implements, the machine types it
//! speaks in, and the registry that builds providers from configuration.
//!
//! The contract (after Crossplane's Observe/Create/Delete and Karpenter's typed errors):
//! - `create` is idempotent for one [`ResourceKey`]: calling it again after a lost response
//!   returns the machine made the first time, never a second one.
//! - `observe` finds a machine by its known id, else by owner tag or deterministic name, so a
//!   lost id leads to adoption.
//! - `list` returns every machine this installation owns in the provider's account and region in
//!   one batched call; the controller serves the status of many objects from it.
//! - `terminate` is idempotent: `InProgress` while the machine winds down, `Gone` once it is
//!   terminated or not found.
//! - no call blocks waiting for a machine to boot.

pub mod aws;
pub mod descriptor;
pub mod error;
pub mod gpus;
pub mod identity;
pub mod kubernetes;
pub mod lyceum;
pub mod pricing;
pub mod registry;
pub mod runpod;
pub mod sim;
pub mod workload;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use jiff::Timestamp;

pub use crate::crd::ProviderKind;
pub use crate::crd::cloud_resource::ResourceState;
pub use error::{BoxError, ErrorClass, ProviderError};
pub use identity::ResourceKey;
pub use registry::{ProviderRegistry, ProvidersConfig};
pub use workload::Workload;

use crate::crd::cloud_resource::{AwsOptions, KubernetesOptions, LyceumOptions, RunPodOptions};

/// Provider-neutral description of the machine to create, built by the controller from a
/// CloudResource spec with Secret values resolved.
#[derive(Clone, PartialEq, Default)]
pub struct MachineSpec {
    /// Provider instance type (EC2, sim).
    pub instance_type: Option<String>,
    /// GPU type (RunPod id, Lyceum profile).
    pub gpu_type: Option<String>,
    /// GPU count (≥1).
    pub gpu_count: u32,
    /// Region, already defaulted from configuration where the provider has regions.
    pub region: Option<String>,
    /// Spot / interruptible.
    pub spot: bool,
    /// Spot price ceiling in USD/h.
    pub max_price_per_hour: Option<f64>,
    /// The container to run; `None` for a bare machine.
    pub workload: Option<Workload>,
    /// User tags (runctl's ownership tags come from the [`ResourceKey`]).
    pub tags: BTreeMap<String, String>,
    /// Lifetime limit, enforced by the controller and, where possible, by the provider.
    pub max_lifetime_seconds: Option<i64>,
    /// EC2 options.
    pub aws: AwsOptions,
    /// RunPod options.
    pub runpod: RunPodOptions,
    /// Lyceum options.
    pub lyceum: LyceumOptions,
    /// Pod options of the cluster's own GPU nodes.
    pub kubernetes: KubernetesOptions,
}

impl fmt::Debug for MachineSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The workload's env may hold Secret values: Workload's Debug redacts them.
        f.debug_struct("MachineSpec")
            .field("instance_type", &self.instance_type)
            .field("gpu_type", &self.gpu_type)
            .field("gpu_count", &self.gpu_count)
            .field("region", &self.region)
            .field("spot", &self.spot)
            .field("max_price_per_hour", &self.max_price_per_hour)
            .field("workload", &self.workload)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl MachineSpec {
    /// Human-readable machine type, e.g. `g5.xlarge` or `NVIDIA H100 80GB HBM3 x2`.
    pub fn machine_type(&self) -> String {
        match (&self.instance_type, &self.gpu_type) {
            (Some(it), _) => it.clone(),
            (None, Some(g)) if self.gpu_count > 1 => format!("{g} x{}", self.gpu_count),
            (None, Some(g)) => g.clone(),
            (None, None) => "unspecified".to_string(),
        }
    }
}

/// A machine as the provider reports it, normalized.
#[derive(Clone, Debug, PartialEq)]
pub struct Machine {
    /// Provider's id.
    pub id: String,
    /// Provider-side name, if any (deterministic for RunPod and Lyceum).
    pub name: Option<String>,
    /// UID of the owning object, from tags, env marker or name.
    pub owner_uid: Option<String>,
    /// Create attempt, from tags or name.
    pub attempt: Option<u32>,
    /// Normalized state.
    pub state: ResourceState,
    /// Machine-readable reason (see [`reasons`]).
    pub reason: &'static str,
    /// Provider's raw status and detail, for humans.
    pub message: Option<String>,
    /// Machine type as rented.
    pub machine_type: Option<String>,
    /// Public IP or host:port.
    pub public_address: Option<String>,
    /// Address on the provider's private network (other machines of the job reach it there).
    pub private_address: Option<String>,
    /// Launch time.
    pub launch_time: Option<Timestamp>,
    /// Price per hour in USD as reported or estimated by the provider client.
    pub price_per_hour: Option<f64>,
    /// Where `price_per_hour` comes from (`status.priceSource`), when the provider client knows
    /// better than "the provider reported it" (e.g. `aws-price-list`, `ec2-on-demand-table`).
    pub price_source: Option<&'static str>,
    /// Accrued cost reported by the provider itself (Lyceum `billed`).
    pub billed: Option<f64>,
    /// Exit code of the workload, when the provider reports one.
    pub exit_code: Option<i32>,
    /// True for spot / interruptible machines.
    pub spot: bool,
}

impl Machine {
    /// A machine with only id and state set; providers fill the rest.
    pub fn new(id: impl Into<String>, state: ResourceState, reason: &'static str) -> Self {
        Self {
            id: id.into(),
            name: None,
            owner_uid: None,
            attempt: None,
            state,
            reason,
            message: None,
            machine_type: None,
            public_address: None,
            private_address: None,
            launch_time: None,
            price_per_hour: None,
            price_source: None,
            billed: None,
            exit_code: None,
            spot: false,
        }
    }

    /// True while the provider may still bill for compute.
    pub fn is_billable(&self) -> bool {
        !self.state.is_final()
    }
}

/// Machine-readable reasons that accompany a [`ResourceState`].
pub mod reasons {
    /// Requested; the provider is finding or preparing a machine.
    pub const PROVISIONING: &str = "Provisioning";
    /// The machine exists and is booting or pulling the image.
    pub const BOOTING: &str = "Booting";
    /// Up and running.
    pub const RUNNING: &str = "Running";
    /// Stop in progress.
    pub const STOPPING: &str = "Stopping";
    /// Stopped.
    pub const STOPPED: &str = "Stopped";
    /// Termination in progress.
    pub const TERMINATING: &str = "Terminating";
    /// Terminated on request (ours or the user's).
    pub const TERMINATED: &str = "Terminated";
    /// The workload finished and the machine ended with it.
    pub const COMPLETED: &str = "Completed";
    /// The workload failed (non-zero exit, container error).
    pub const WORKLOAD_FAILED: &str = "WorkloadFailed";
    /// Spot capacity was reclaimed by the provider.
    pub const SPOT_INTERRUPTED: &str = "SpotInterrupted";
    /// The provider ended the machine for lack of capacity.
    pub const CAPACITY_LOST: &str = "CapacityLost";
    /// The provider failed the machine (internal error, hardware).
    pub const PROVIDER_FAILURE: &str = "ProviderFailure";
    /// The machine vanished without runctl deleting it.
    pub const DISAPPEARED: &str = "Disappeared";
    /// The run hit the provider-side timeout.
    pub const TIMED_OUT: &str = "TimedOut";
    /// The provider reported a status runctl does not know.
    pub const UNRECOGNIZED: &str = "UnrecognizedStatus";
    /// The provider could not place the machine within its timeout (the cluster's own GPUs are
    /// all taken): the attempt ends for lack of capacity and `auto` tries the next offer.
    pub const UNSCHEDULABLE: &str = "Unschedulable";
}

/// Result of a terminate call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    /// The provider accepted the request; the machine is winding down.
    InProgress,
    /// The machine is terminated or does not exist.
    Gone,
}

/// What a provider can do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Spot / interruptible machines can be requested.
    pub spot: bool,
    /// Machines can be stopped and resumed.
    pub stop_resume: bool,
    /// Machines run a container workload.
    pub workload: bool,
    /// Machines can be created without a workload.
    pub bare_machine: bool,
    /// GPU types (or instance families) the provider knows prices for.
    pub gpu_types: Vec<String>,
    /// Machines of one job can reach each other on a private network, so a multi-node job
    /// (`spec.nodes > 1`) can run there (see [`ProviderKind::multi_node`](crate::crd::ProviderKind::multi_node)).
    pub multi_node: bool,
}

/// A price quote.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceQuote {
    /// USD per hour for the whole machine.
    pub per_hour: f64,
    /// True when the figure is an estimate (price table), false when the provider quoted it.
    pub estimate: bool,
    /// Where the figure comes from, e.g. `ec2-on-demand-table`.
    pub source: &'static str,
}

/// One cloud account (and region, where the provider has regions).
#[async_trait]
pub trait Provider: Send + Sync {
    /// Which provider this is.
    fn kind(&self) -> ProviderKind;

    /// What the provider supports.
    fn capabilities(&self) -> Capabilities;

    /// Creates the machine for `key`, idempotently: a repeated call for the same key (same
    /// attempt) returns the machine created before, whether or not the first response arrived.
    /// Implementations look for an existing machine of the owner before creating.
    async fn create(&self, key: &ResourceKey, spec: &MachineSpec)
    -> Result<Machine, ProviderError>;

    /// Finds the machine of `key`: by `known_id` if given, else by owner tag or deterministic
    /// name. `Ok(None)` when none exists (or it is gone from the provider's listing).
    async fn observe(
        &self,
        key: &ResourceKey,
        known_id: Option<&str>,
    ) -> Result<Option<Machine>, ProviderError>;

    /// Every machine of this installation in the account/region, terminated ones included while
    /// the provider still lists them. One batched call (paginated where needed).
    async fn list(&self) -> Result<Vec<Machine>, ProviderError>;

    /// Terminates a machine; idempotent.
    async fn terminate(&self, id: &str) -> Result<Termination, ProviderError>;

    /// Price per hour of the machine `spec` describes.
    async fn price(&self, spec: &MachineSpec) -> Result<PriceQuote, ProviderError>;

    /// Checks that machines like `spec` can be created with this account, without creating one
    /// (a MachineClass's `Ready` condition): `Ok` with what the provider does not have (an AMI
    /// or subnet that does not exist), empty when everything was found. Rejected credentials
    /// are an `Err` of the account class. By default a listing proves the credentials.
    async fn verify(&self, spec: &MachineSpec) -> Result<Vec<String>, ProviderError> {
        let _ = spec;
        self.list().await.map(|_| Vec::new())
    }

    /// Whether a machine like `spec` has room now, where the provider can tell without
    /// creating one (the cluster's own nodes); clouds answer only at create
    /// ([`Availability::Unknown`]). `auto` puts in-cluster offers first while they have room.
    async fn availability(&self, spec: &MachineSpec) -> Result<Availability, ProviderError> {
        let _ = spec;
        Ok(Availability::Unknown)
    }

    /// The last `limit` lines of machine `id`'s output from the provider's own log API, oldest
    /// first; `Ok(None)` when the provider has none for it (the reporting wrapper ships the
    /// output instead, see `crate::logs`).
    async fn logs(&self, id: &str, limit: u32) -> Result<Option<Vec<LogLine>>, ProviderError> {
        let _ = (id, limit);
        Ok(None)
    }
}

/// Whether a provider has room for a machine now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    /// The provider cannot tell before a create call.
    Unknown,
    /// It has room.
    Available,
    /// It has none; why.
    Full(String),
}

/// One line of a machine's output as a provider's log API returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When the provider recorded it, if it says.
    pub time: Option<Timestamp>,
    /// The text, without a trailing newline.
    pub message: String,
}

/// Cost of running at `per_hour` for `seconds`.
pub fn cost_for(per_hour: f64, seconds: f64) -> f64 {
    per_hour * seconds.max(0.0) / 3600.0
}

/// Sets `slot` to `value` when it is unset: how a machine's settings take its class's.
pub(crate) fn fill_unset<T: Clone>(slot: &mut Option<T>, value: Option<&T>) {
    if slot.is_none() {
        *slot = value.cloned();
    }
}
