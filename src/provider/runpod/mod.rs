//! RunPod provider over REST API v2 (`/v2/pods`, `/v2/pods/{id}`, `/v2/catalog/gpus`).
//!
//! REST v1 was retired on 2026-11-15 and GraphQL is deprecated (retired early 2027), so only v2
//! is used. See `docs/providers/runpod.md` for ids, quirks and the reasons users see.
//!
//! Files: [`api`] wire types, [`client`] transport, [`ratelimit`] client-side limiter,
//! [`errors`] classification, [`state`] state mapping, [`create`] create/adopt rules,
//! [`deadman`] how a pod ends itself when no operator is left, [`pricing`] catalog prices,
//! [`provider`] the [`Provider`] implementation.

pub mod api;
pub mod client;
pub mod create;
pub mod deadman;
pub mod errors;
/// GPU vocabulary table.
pub mod gpus;
pub mod options;
pub mod pricing;
pub mod provider;
pub mod ratelimit;
pub mod state;

crate::provider::descriptor::glue!(runpod, sync);

/// What runctl knows of Runpod without building it (see [`crate::provider::descriptor`]).
pub const DESCRIPTOR: crate::provider::descriptor::Descriptor =
    crate::provider::descriptor::Descriptor {
        kind: crate::crd::ProviderKind::Runpod,
        regions: false,
        sizing: crate::provider::descriptor::Sizing::GpuType,
        spot: false,
        multi_node: false,
        reports_from_outside: true,
        reports: true,
        ended_machines_stay: false,
        in_cluster: false,
        gpu_shapes: gpus::SHAPES,
        machine_example: "NVIDIA H100 80GB HBM3",
        options: true,
        cel: crate::provider::descriptor::Cel::NONE,
        section,
        section_mut,
        build: build_boxed,
    };

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::registry::{BuildContext, NamespacedSecretRef};
use super::{Provider, ProviderError};

pub use client::{Client, ClientSettings};
pub use provider::{ProviderSettings, RunPodProvider};

/// Key of the API key in the credentials Secret.
pub const CREDENTIALS_API_KEY: &str = "apiKey";

/// Operator-level RunPod settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunPodConfig {
    /// Offer RunPod to TrainingJobs. Absent: enabled when this section is in the configuration
    /// file ([`ProvidersConfig::enabled`](crate::provider::ProvidersConfig::enabled)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// REST v2 base URL.
    pub base_url: String,
    /// Per-request timeout in seconds.
    pub request_timeout_seconds: u64,
    /// Per-request timeout in milliseconds; overrides `requestTimeoutSeconds` when set (tests).
    pub request_timeout_millis: Option<u64>,
    /// Connect timeout in seconds.
    pub connect_timeout_seconds: u64,
    /// Extra attempts of idempotent calls (list, get, delete, catalog) after a 5xx or network
    /// error. Creates are never repeated blindly.
    pub max_retries: u32,
    /// First retry backoff in milliseconds (doubles per attempt, with jitter).
    pub retry_base_millis: u64,
    /// Longest rate-limit hold (`Retry-After`, exhausted `RateLimit` window) a call sleeps
    /// through; longer holds fail fast with `RateLimited`.
    pub max_rate_limit_wait_millis: u64,
    /// How long one `GET /v2/pods` serves observe and list calls, in milliseconds.
    pub list_cache_millis: u64,
    /// How long the GPU price catalog is kept, in seconds.
    pub catalog_cache_seconds: u64,
    /// Default credentials Secret (key `apiKey`).
    pub credentials_secret: Option<NamespacedSecretRef>,
}

impl Default for RunPodConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            base_url: "https://api.runpod.io/v2".into(),
            request_timeout_seconds: 30,
            request_timeout_millis: None,
            connect_timeout_seconds: 10,
            max_retries: 2,
            retry_base_millis: 250,
            max_rate_limit_wait_millis: 2_000,
            list_cache_millis: 2_000,
            catalog_cache_seconds: 600,
            credentials_secret: None,
        }
    }
}

impl RunPodConfig {
    /// Transport settings.
    pub fn client_settings(&self) -> ClientSettings {
        let timeout = match self.request_timeout_millis {
            Some(ms) => Duration::from_millis(ms),
            None => Duration::from_secs(self.request_timeout_seconds),
        };
        ClientSettings {
            base_url: self.base_url.clone(),
            timeout,
            connect_timeout: Duration::from_secs(self.connect_timeout_seconds).min(timeout),
            max_retries: self.max_retries,
            retry_base: Duration::from_millis(self.retry_base_millis),
            max_rate_limit_wait: Duration::from_millis(self.max_rate_limit_wait_millis),
        }
    }

    /// Provider settings.
    pub fn provider_settings(&self) -> ProviderSettings {
        ProviderSettings {
            list_cache: Duration::from_millis(self.list_cache_millis),
            catalog_cache: Duration::from_secs(self.catalog_cache_seconds),
        }
    }
}

/// Builds a RunPod provider for one account from the credentials Secret (`apiKey`).
pub fn build(ctx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(Arc::new(build_provider(ctx)?))
}

/// Like [`build`], returning the concrete type (tests read its counters).
pub fn build_provider(ctx: &BuildContext<'_>) -> Result<RunPodProvider, ProviderError> {
    let creds = ctx.credentials.ok_or_else(|| ProviderError::Authentication {
        message: "RunPod needs a credentials Secret with key apiKey (spec.credentialsSecretRef or the operator default)"
            .into(),
    })?;
    let api_key = creds.require(CREDENTIALS_API_KEY)?;
    let config = &ctx.config.runpod;
    let client = Client::new(config.client_settings(), api_key)?;
    Ok(RunPodProvider::new(
        ctx.installation,
        client,
        config.provider_settings(),
    ))
}

/// Its section of the operator's configuration (`providers.runpod`).
impl crate::provider::registry::Section for RunPodConfig {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::provider::registry::{Credentials, ProvidersConfig};
    use crate::provider::sim::{SimCloud, SimConfig};

    #[test]
    fn config_defaults_and_overrides() {
        let c: RunPodConfig =
            serde_json::from_value(serde_json::json!({"requestTimeoutMillis": 250}))
                .expect("config");
        assert_eq!(c.base_url, "https://api.runpod.io/v2");
        let s = c.client_settings();
        assert_eq!(s.timeout, Duration::from_millis(250));
        assert_eq!(s.connect_timeout, Duration::from_millis(250));
        assert_eq!(
            RunPodConfig::default().client_settings().timeout,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn build_needs_an_api_key_and_never_prints_it() {
        let config = ProvidersConfig::default();
        let sim = Arc::new(SimCloud::new(SimConfig::default()));
        let ctx = |credentials| BuildContext {
            installation: "i",
            region: None,
            credentials,
            config: &config,
            sim: &sim,
            client: None,
        };
        let err = build_provider(&ctx(None)).expect_err("no Secret");
        assert_eq!(err.reason(), "AuthenticationFailed");
        let empty = Credentials::new(BTreeMap::new());
        assert!(
            build_provider(&ctx(Some(&empty)))
                .expect_err("no key")
                .message()
                .contains("apiKey")
        );
        let creds = Credentials::new(BTreeMap::from([("apiKey".into(), "rpa_TOPSECRET".into())]));
        let p = build_provider(&ctx(Some(&creds))).expect("built");
        assert!(!format!("{p:?}").contains("rpa_TOPSECRET"));
    }
}
