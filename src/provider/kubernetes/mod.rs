//! `kubernetes`: the cluster's own GPU nodes as a provider. A machine is a Pod in the
//! CloudResource's namespace that requests the GPUs (`nvidia.com/gpu` by default) and runs the
//! workload directly (no reporting wrapper, no callback): its state comes from the Pod's phase
//! and conditions, its exit code from the container status, its output from the Pod log API,
//! its price from a configured price per GPU-hour.
//!
//! With placement `auto`, in-cluster offers come first while a node has the GPUs free
//! ([`room`]), and an attempt whose Pod is not scheduled within `scheduleTimeoutSeconds` ends
//! for lack of capacity, so the job bursts to the cheapest rented offer.
//!
//! Files: [`pod`] the Pod and its env Secret (pure), [`state`] Pod to machine (pure), [`room`]
//! free GPUs per node (pure), [`errors`] API errors classified, [`provider`] the
//! [`Provider`](super::Provider) implementation, [`gpus`] the GPU vocabulary table.
//! `docs/providers/kubernetes.md` describes it for users.

pub mod errors;
/// GPU vocabulary table.
pub mod gpus;
pub mod options;
pub mod pod;
pub mod provider;
pub mod room;
pub mod state;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::registry::BuildContext;
use super::{Provider, ProviderError};

pub use provider::KubernetesProvider;

crate::provider::descriptor::glue!(kubernetes, sync);

/// The cluster's admission rules: a machine here is a Pod, which needs a container to run.
const CEL: crate::provider::descriptor::Cel = crate::provider::descriptor::Cel {
    cloud_resource: &[crate::provider::descriptor::Constraint {
        rule: "has(self.workload)",
        message: "a kubernetes machine is a Pod and needs spec.workload",
        field: Some(".workload"),
    }],
    placement: &[],
};

/// What runctl knows of the cluster's own GPUs without building the provider (see
/// [`crate::provider::descriptor`]).
pub const DESCRIPTOR: crate::provider::descriptor::Descriptor =
    crate::provider::descriptor::Descriptor {
        kind: crate::crd::ProviderKind::Kubernetes,
        regions: false,
        sizing: crate::provider::descriptor::Sizing::GpuCount,
        spot: false,
        multi_node: true,
        reports_from_outside: false,
        reports: false,
        ended_machines_stay: true,
        in_cluster: true,
        gpu_shapes: gpus::SHAPES,
        machine_example: "NVIDIA-A100-SXM4-80GB",
        options: true,
        cel: CEL,
        section,
        section_mut,
        build: build_boxed,
    };

/// Where prices of the cluster's own GPUs come from.
pub const PRICE_SOURCE: &str = "kubernetes-configured-price";

/// Operator-level settings of the cluster's own GPUs (`providers.kubernetes`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KubernetesConfig {
    /// Offer the cluster's GPU nodes to TrainingJobs. Absent: enabled when this section is in
    /// the configuration file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The extended resource a GPU is requested as.
    pub gpu_resource: String,
    /// The node label whose value `gpuType` selects (NVIDIA GPU feature discovery's).
    pub gpu_product_label: String,
    /// What one GPU-hour costs, in USD (amortized hardware, power; 0 when not charged back).
    pub price_per_gpu_hour: f64,
    /// Price per GPU-hour by `gpuType` (the product label value), overriding
    /// `pricePerGpuHour`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, f64>,
    /// A Pod not scheduled onto a node within this many seconds ends its attempt for lack of
    /// capacity (with `auto`, the job bursts to the next offer).
    pub schedule_timeout_seconds: u64,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            gpu_resource: "nvidia.com/gpu".into(),
            gpu_product_label: "nvidia.com/gpu.product".into(),
            price_per_gpu_hour: 0.0,
            prices: BTreeMap::new(),
            schedule_timeout_seconds: 300,
        }
    }
}

impl KubernetesConfig {
    /// USD per hour of `count` GPUs of `gpu_type`.
    pub fn price(&self, gpu_type: Option<&str>, count: u32) -> f64 {
        let per_gpu = gpu_type
            .and_then(|t| self.prices.get(t))
            .copied()
            .unwrap_or(self.price_per_gpu_hour);
        per_gpu * f64::from(count)
    }
}

/// Builds the provider over the operator's own cluster client.
pub fn build(ctx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, ProviderError> {
    let Some(client) = ctx.client else {
        return Err(ProviderError::InvalidSpec {
            message: "kubernetes: this process has no cluster client to create Pods with".into(),
        });
    };
    Ok(Arc::new(KubernetesProvider::new(
        client.clone(),
        ctx.installation,
        ctx.config.kubernetes.clone(),
    )))
}

/// Its section of the operator's configuration (`providers.kubernetes`).
impl crate::provider::registry::Section for KubernetesConfig {
    fn switch(&mut self) -> &mut Option<bool> {
        &mut self.enabled
    }

    fn enabled(&self) -> Option<bool> {
        self.enabled
    }
}
