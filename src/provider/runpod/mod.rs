//! RunPod provider (placeholder until the RunPod issue lands).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::registry::{BuildContext, NamespacedSecretRef};
use super::{Provider, ProviderError};

/// Operator-level RunPod settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunPodConfig {
    /// REST v2 base URL.
    pub base_url: String,
    /// Per-request timeout in seconds.
    pub request_timeout_seconds: u64,
    /// Default credentials Secret (key `apiKey`).
    pub credentials_secret: Option<NamespacedSecretRef>,
}

impl Default for RunPodConfig {
    fn default() -> Self {
        Self { base_url: "https://api.runpod.io/v2".into(), request_timeout_seconds: 30, credentials_secret: None }
    }
}

/// Builds a RunPod provider.
pub fn build(_ctx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, ProviderError> {
    Err(ProviderError::InvalidSpec { message: "the runpod provider is not built yet".into() })
}
