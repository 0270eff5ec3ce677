//! `sim`: runctl's deterministic in-process simulated cloud, a real [`Provider`] used by
//! controller tests, benchmarks and `runctl demo`. It simulates an EC2-like cloud: idempotent
//! creates keyed like a ClientToken, tag-based lookup, a clock-driven state timeline, spot prices
//! and interruptions, workloads that exit, and injectable faults. It rents nothing.
//!
//! Layout: [`config`] (settings and price table), [`clock`] (real or manual time),
//! [`timeline`] (pure state machine), [`fault`] (fault injection), [`store`] (indexed machine
//! records), [`cloud`] ([`SimCloud`]: the shared cloud, test knobs, inspection), [`provider`]
//! ([`SimProvider`]), [`wrapper`] (the simulated reporting wrapper), [`server`] / [`remote`] /
//! [`wire`] (the cloud served over HTTP to operators in other processes, `endpoint`). Knobs are
//! described in `docs/providers/sim.md`.

pub mod clock;
pub mod cloud;
pub mod config;
pub mod fault;
/// GPU vocabulary table.
pub mod gpus;
pub mod output;
pub mod provider;
pub mod remote;
pub mod server;
pub mod store;
pub mod timeline;
pub mod wire;
pub mod wrapper;

/// Its section of the operator's configuration (`providers.sim`).
impl crate::provider::registry::Section for SimConfig {
    fn switch(&mut self) -> &mut Option<bool> {
        &mut self.enabled
    }

    fn enabled(&self) -> Option<bool> {
        self.enabled
    }

    fn default_region(&self) -> Option<String> {
        Some(self.region.clone())
    }
}

#[cfg(test)]
mod tests;

crate::provider::descriptor::glue!(sim, sync);

/// What runctl knows of the simulated cloud without building it (see [`crate::provider::descriptor`]).
pub const DESCRIPTOR: crate::provider::descriptor::Descriptor =
    crate::provider::descriptor::Descriptor {
        kind: crate::crd::ProviderKind::Sim,
        regions: true,
        sizing: crate::provider::descriptor::Sizing::Either,
        spot: true,
        multi_node: true,
        reports_from_outside: false,
        reports: true,
        ended_machines_stay: false,
        in_cluster: false,
        gpu_shapes: gpus::SHAPES,
        machine_example: "sim.a100",
        options: false,
        cel: crate::provider::descriptor::Cel::NONE,
        section,
        section_mut,
        build: build_boxed,
    };

use std::sync::Arc;

pub use cloud::{ForeignMachine, SimCloud, SimError, SimMachine, SimStats};
pub use config::{SPOT_FACTOR, SimConfig};
pub use fault::{SimFault, SimOp};
pub use provider::SimProvider;
pub use remote::RemoteSim;
pub use server::SimServer;
pub use timeline::{ENV_EXIT_CODE, ENV_RUN_MS};

use super::registry::BuildContext;
use super::{Provider, ProviderError};

/// Builds a sim provider bound to the installation and the region (the configured region when
/// none is given): a client of the served cloud when the configuration names one (`endpoint`),
/// else a provider over the registry's shared in-process cloud.
pub fn build(ctx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, ProviderError> {
    let region = ctx.region.unwrap_or(&ctx.sim.config().region);
    if region.is_empty() {
        return Err(ProviderError::InvalidSpec {
            message: "sim: region must not be empty".into(),
        });
    }
    if let Some(url) = &ctx.config.sim.endpoint {
        let remote = RemoteSim::new(url, ctx.installation, region, &ctx.config.sim)
            .map_err(|e| ProviderError::retryable_from("sim: HTTP client", e))?;
        return Ok(Arc::new(remote));
    }
    Ok(Arc::new(SimProvider::new(
        ctx.sim.clone(),
        ctx.installation,
        region,
    )))
}
