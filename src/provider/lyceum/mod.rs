//! Lyceum AI provider: two kinds of Lyceum compute behind the one [`Provider`] trait.
//!
//! - A CloudResource with a workload becomes a **container run** (`/execution/image/start`):
//!   Lyceum pulls the image, runs the command and ends with it; the machine id is
//!   `run:<execution_id>`.
//! - A CloudResource without a workload becomes a **VM** (`/vms/create`), a bare machine reached
//!   over SSH; the machine id is `vm:<vm_id>`. VMs take no start-up script, so a workload never
//!   goes to a VM.
//!
//! `spec.lyceum.mode` overrides the default (Run with a workload, Vm without). Lyceum has no
//! idempotency key: the run or VM gets runctl's deterministic name, and `create` lists before
//! creating and again after an ambiguous failure, adopting what it finds. See
//! `docs/providers/lyceum.md`.
//!
//! Files: [`api`] wire types, [`client`] transport, [`errors`] classification, [`ids`] machine
//! ids and ownership, `create` creation with adoption, [`state`] status mapping, [`machine`]
//! records to machines, [`request`] spec to requests, [`pricing`] prices, [`provider`] the trait
//! implementation.

pub mod api;
pub mod client;
mod create;
pub mod errors;
/// GPU vocabulary table.
pub mod gpus;
pub mod ids;
pub mod machine;
pub mod options;
pub mod pricing;
pub mod provider;
pub mod request;
pub mod state;

crate::provider::descriptor::glue!(lyceum, sync);

/// Lyceum's admission rules: its machine sizes, and no start-up script on a VM.
const CEL: crate::provider::descriptor::Cel = {
    use crate::provider::descriptor::{Cel, Constraint};
    const GPU_COUNT: Constraint = Constraint {
        rule: "!has(self.gpuCount) || self.gpuCount in [1, 2, 4, 8]",
        message: "Lyceum machines take 1, 2, 4 or 8 GPUs",
        field: Some(".gpuCount"),
    };
    Cel {
        cloud_resource: &[
            GPU_COUNT,
            Constraint {
                rule: "!(has(self.lyceum) && has(self.lyceum.mode) && self.lyceum.mode == 'Vm' && has(self.workload))",
                message: "Lyceum VMs take no start-up script: a CloudResource with a workload runs as a Lyceum container run (lyceum.mode: Run)",
                field: Some(".lyceum.mode"),
            },
        ],
        placement: &[GPU_COUNT],
    }
};

/// What runctl knows of Lyceum without building it (see [`crate::provider::descriptor`]).
pub const DESCRIPTOR: crate::provider::descriptor::Descriptor =
    crate::provider::descriptor::Descriptor {
        kind: crate::crd::ProviderKind::Lyceum,
        regions: false,
        sizing: crate::provider::descriptor::Sizing::GpuType,
        spot: true,
        multi_node: false,
        reports_from_outside: true,
        reports: true,
        ended_machines_stay: false,
        in_cluster: false,
        gpu_shapes: gpus::SHAPES,
        machine_example: "a100",
        options: true,
        cel: CEL,
        section,
        section_mut,
        build: build_boxed,
    };

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use provider::LyceumProvider;

use super::registry::{BuildContext, NamespacedSecretRef};
use super::{Provider, ProviderError};

/// Operator-level Lyceum settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LyceumConfig {
    /// Offer Lyceum to TrainingJobs. Absent: enabled when this section is in the configuration
    /// file ([`ProvidersConfig::enabled`](crate::provider::ProvidersConfig::enabled)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// API base URL.
    pub base_url: String,
    /// Per-request timeout in seconds (VM creation is slow: at least 150 s).
    pub request_timeout_seconds: u64,
    /// Run timeout sent when a CloudResource sets neither `lyceum.timeoutSeconds` nor
    /// `maxLifetimeSeconds` (Lyceum's own default is 60 s). It is also what bounds such a run's
    /// spend when no operator is left.
    pub default_run_timeout_seconds: u32,
    /// Refuse VMs without `maxLifetimeSeconds`: Lyceum has no stop, timeout or start-up script
    /// for VMs, so only runctl's lifetime limit can end one.
    pub require_vm_max_lifetime: bool,
    /// Default credentials Secret (key `apiKey`).
    pub credentials_secret: Option<NamespacedSecretRef>,
    /// Attempts of a call that is safe to repeat (lists, status, abort, delete); creates are
    /// never repeated blindly.
    pub request_attempts: u32,
    /// First backoff delay between attempts in milliseconds (doubles per attempt, at most 10 s;
    /// a `Retry-After` wins).
    pub retry_backoff_ms: u64,
    /// How long fetched prices are reused, in seconds.
    pub price_cache_seconds: u64,
}

impl Default for LyceumConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            base_url: "https://api.lyceum.technology/api/v2/external".into(),
            request_timeout_seconds: 180,
            default_run_timeout_seconds: 86_400,
            require_vm_max_lifetime: true,
            credentials_secret: None,
            request_attempts: 3,
            retry_backoff_ms: 500,
            price_cache_seconds: 600,
        }
    }
}

/// Builds a Lyceum provider from the credentials Secret (key `apiKey`) and the configuration.
pub fn build(ctx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, ProviderError> {
    let credentials = ctx.credentials.ok_or_else(|| ProviderError::Authentication {
        message: "provider lyceum needs a credentials Secret with key \"apiKey\" (a Lyceum API key, lk_…)".into(),
    })?;
    let api_key = credentials.require("apiKey")?;
    Ok(Arc::new(LyceumProvider::new(
        &ctx.config.lyceum,
        ctx.installation,
        api_key,
    )?))
}

/// Its section of the operator's configuration (`providers.lyceum`).
impl crate::provider::registry::Section for LyceumConfig {
    fn switch(&mut self) -> &mut Option<bool> {
        &mut self.enabled
    }

    fn enabled(&self) -> Option<bool> {
        self.enabled
    }

    fn credentials(&self) -> Option<&NamespacedSecretRef> {
        self.credentials_secret.as_ref()
    }
}
