//! `SimProvider`: the [`Provider`] view of the simulated cloud for one installation and region.

use std::sync::Arc;

use async_trait::async_trait;

use crate::provider::{
    Capabilities, Machine, MachineSpec, PriceQuote, Provider, ProviderError, ProviderKind,
    ResourceKey, Termination,
};

use super::cloud::SimCloud;
use super::fault::SimOp;

/// Where sim prices come from.
pub const PRICE_SOURCE: &str = "sim-price-table";

/// A provider bound to one installation and region of a shared [`SimCloud`].
pub struct SimProvider {
    cloud: Arc<SimCloud>,
    installation: String,
    region: String,
}

impl SimProvider {
    /// A provider for `installation` in `region` of `cloud`.
    pub fn new(
        cloud: Arc<SimCloud>,
        installation: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            cloud,
            installation: installation.into(),
            region: region.into(),
        }
    }

    /// The cloud behind this provider.
    pub fn cloud(&self) -> &Arc<SimCloud> {
        &self.cloud
    }

    /// The region this provider serves.
    pub fn region(&self) -> &str {
        &self.region
    }
}

/// What the simulated cloud supports, with the machine types it prices.
pub fn capabilities(gpu_types: Vec<String>) -> Capabilities {
    Capabilities {
        spot: super::DESCRIPTOR.spot,
        stop_resume: true,
        workload: true,
        bare_machine: true,
        gpu_types,
        multi_node: super::DESCRIPTOR.multi_node,
    }
}

#[async_trait]
impl Provider for SimProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Sim
    }

    fn capabilities(&self) -> Capabilities {
        capabilities(self.cloud.config().prices.keys().cloned().collect())
    }

    async fn create(
        &self,
        key: &ResourceKey,
        spec: &MachineSpec,
    ) -> Result<Machine, ProviderError> {
        let machine = self
            .cloud
            .create(&self.installation, &self.region, key, spec)
            .await?;
        if spec
            .workload
            .as_ref()
            .is_some_and(|w| w.reporting.is_some())
        {
            super::wrapper::ensure_started(&self.cloud);
        }
        Ok(machine)
    }

    async fn observe(
        &self,
        key: &ResourceKey,
        known_id: Option<&str>,
    ) -> Result<Option<Machine>, ProviderError> {
        self.cloud
            .observe(&self.installation, &self.region, key, known_id)
            .await
    }

    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        self.cloud.list(&self.installation, &self.region).await
    }

    async fn terminate(&self, id: &str) -> Result<Termination, ProviderError> {
        self.cloud.terminate(&self.region, id).await
    }

    async fn price(&self, spec: &MachineSpec) -> Result<PriceQuote, ProviderError> {
        let per_hour = self.cloud.config().price(spec);
        self.cloud
            .call(SimOp::Price, |_, _, _| {
                Ok(PriceQuote {
                    per_hour,
                    estimate: false,
                    source: PRICE_SOURCE,
                })
            })
            .await
    }
}
