//! `sim`: runctl's deterministic in-process simulated cloud (interface placeholder; the
//! simulator itself is being written).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::registry::BuildContext;
use super::{Provider, ProviderError};

/// Simulator settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SimConfig {
    /// The simulated region.
    pub region: String,
    /// Milliseconds from create until the machine exists (Starting/Provisioning).
    pub provision_ms: u64,
    /// Milliseconds from create until Running.
    pub boot_ms: u64,
    /// Added latency of every API call in milliseconds.
    pub api_latency_ms: u64,
    /// Price per hour by instance type or GPU type.
    pub prices: BTreeMap<String, f64>,
    /// Price per hour of types missing from `prices`.
    pub default_price: f64,
    /// Seed of the simulator's random choices.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            region: "sim-1".into(),
            provision_ms: 200,
            boot_ms: 1000,
            api_latency_ms: 0,
            prices: BTreeMap::new(),
            default_price: 1.0,
            seed: 1,
        }
    }
}

/// The simulated cloud, shared by every sim provider instance.
pub struct SimCloud {
    _config: SimConfig,
}

impl SimCloud {
    /// A new, empty simulated cloud.
    pub fn new(config: SimConfig) -> Self {
        Self { _config: config }
    }
}

/// Builds a sim provider.
pub fn build(_ctx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, ProviderError> {
    Err(ProviderError::InvalidSpec { message: "the sim provider is not built yet".into() })
}
