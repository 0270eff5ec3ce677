//! Lyceum AI provider (placeholder until the Lyceum issue lands).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::registry::{BuildContext, NamespacedSecretRef};
use super::{Provider, ProviderError};

/// Operator-level Lyceum settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LyceumConfig {
    /// API base URL.
    pub base_url: String,
    /// Per-request timeout in seconds (VM creation is slow: at least 150 s).
    pub request_timeout_seconds: u64,
    /// Run timeout sent when a CloudResource sets none (Lyceum's own default is 60 s).
    pub default_run_timeout_seconds: u32,
    /// Default credentials Secret (key `apiKey`).
    pub credentials_secret: Option<NamespacedSecretRef>,
}

impl Default for LyceumConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.lyceum.technology/api/v2/external".into(),
            request_timeout_seconds: 180,
            default_run_timeout_seconds: 86_400,
            credentials_secret: None,
        }
    }
}

/// Builds a Lyceum provider.
pub fn build(_ctx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, ProviderError> {
    Err(ProviderError::InvalidSpec { message: "the lyceum provider is not built yet".into() })
}
