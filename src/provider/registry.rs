//! The provider registry: builds providers by name from the operator's configuration and a
//! credentials Secret, and caches one instance per account (credentials) and region.
//!
//! What differs per provider comes from its descriptor ([`descriptor::ALL`]): its section of
//! the configuration ([`Section`]) and how it is built.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{
    Provider, ProviderError, ProviderKind, aws, descriptor, kubernetes, lyceum, runpod, sim,
};

/// A Secret in a given namespace (operator-level default credentials).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedSecretRef {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
}

/// Provider settings of the operator (the `providers` section of its configuration file).
///
/// Which providers TrainingJobs may be placed on ([`enabled`](Self::enabled)): each section's
/// `enabled`. A cloud's section in the configuration file enables that cloud unless it says
/// `enabled: false` (the clouds that are configured); a cloud without a section is disabled. The
/// simulated cloud is enabled only by `sim.enabled: true`. Code that builds a configuration
/// sets `enabled` itself: [`Default`] enables nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProvidersConfig {
    /// AWS EC2.
    #[serde(deserialize_with = "configured")]
    pub aws: aws::AwsConfig,
    /// RunPod.
    #[serde(deserialize_with = "configured")]
    pub runpod: runpod::RunPodConfig,
    /// Lyceum AI.
    #[serde(deserialize_with = "configured")]
    pub lyceum: lyceum::LyceumConfig,
    /// The simulated cloud.
    pub sim: sim::SimConfig,
    /// The cluster's own GPU nodes.
    #[serde(deserialize_with = "configured")]
    pub kubernetes: kubernetes::KubernetesConfig,
}

/// A provider's section of the operator's configuration, as the registry reads it: each
/// provider's module implements it for its configuration type, and its descriptor points at
/// its field of [`ProvidersConfig`].
pub trait Section {
    /// `enabled` (unset: see [`ProvidersConfig::enabled`]).
    fn switch(&mut self) -> &mut Option<bool>;
    /// `enabled` as set.
    fn enabled(&self) -> Option<bool>;
    /// The operator-wide default credentials Secret, where the provider has credentials.
    fn credentials(&self) -> Option<&NamespacedSecretRef> {
        None
    }
    /// The default region, where the provider has regions.
    fn default_region(&self) -> Option<String> {
        None
    }
}

/// A cloud's section that is present in the file: enabled unless it says otherwise.
fn configured<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Section,
{
    let mut section = T::deserialize(d)?;
    section.switch().get_or_insert(true);
    Ok(section)
}

impl ProvidersConfig {
    /// Whether TrainingJobs may be placed on `kind` (see the type's documentation).
    pub fn enabled(&self, kind: ProviderKind) -> bool {
        (descriptor::of(kind).section)(self).enabled() == Some(true)
    }

    /// The enabled providers, in [`ProviderKind::ALL`] order.
    pub fn enabled_kinds(&self) -> Vec<ProviderKind> {
        ProviderKind::ALL
            .into_iter()
            .filter(|k| self.enabled(*k))
            .collect()
    }

    /// Sets `enabled` of every provider whose section leaves it unset (test beds that point
    /// every provider at a stand-in).
    pub fn enable_unset(&mut self) {
        for d in descriptor::ALL {
            (d.section_mut)(self).switch().get_or_insert(true);
        }
    }

    /// The operator-wide default credentials Secret of a provider, if configured.
    pub fn default_credentials(&self, kind: ProviderKind) -> Option<&NamespacedSecretRef> {
        (descriptor::of(kind).section)(self).credentials()
    }

    /// The default region of a provider that has regions.
    pub fn default_region(&self, kind: ProviderKind) -> Option<String> {
        (descriptor::of(kind).section)(self).default_region()
    }
}

/// Credential values read from a Secret. Debug never prints values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    values: BTreeMap<String, String>,
}

impl Credentials {
    /// Wraps Secret data (keys to UTF-8 values).
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Self { values }
    }

    /// A value by key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A required value, as a provider error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, ProviderError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ProviderError::Authentication {
                message: format!("credentials Secret has no key {key:?}"),
            })
    }

    /// All values, for secret scrubbing.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values.values().map(String::as_str)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Identifies one provider instance: one account (credentials version) and region.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderKey {
    /// Provider.
    pub kind: ProviderKind,
    /// Region, for providers with regions.
    pub region: Option<String>,
    /// `namespace/name@resourceVersion` of the credentials Secret; `None` for the ambient
    /// identity (AWS default chain) or the simulator.
    pub credentials: Option<String>,
}

/// What a provider module gets to build an instance.
pub struct BuildContext<'a> {
    /// This installation's id, used in ownership tags and names.
    pub installation: &'a str,
    /// Region (already defaulted).
    pub region: Option<&'a str>,
    /// Credentials from the Secret, if any.
    pub credentials: Option<&'a Credentials>,
    /// The operator's provider configuration.
    pub config: &'a ProvidersConfig,
    /// The shared simulated cloud.
    pub sim: &'a Arc<sim::SimCloud>,
    /// The operator's cluster client (the cluster's own GPU nodes are rented through it).
    pub client: Option<&'a kube::Client>,
}

/// Builds a provider instance with its descriptor's `build`.
async fn build(
    kind: ProviderKind,
    ctx: &BuildContext<'_>,
) -> Result<Arc<dyn Provider>, ProviderError> {
    (descriptor::of(kind).build)(ctx).await
}

/// Builds and caches providers.
pub struct ProviderRegistry {
    installation: String,
    config: ProvidersConfig,
    sim: Arc<sim::SimCloud>,
    client: Option<kube::Client>,
    cache: Mutex<HashMap<ProviderKey, Arc<dyn Provider>>>,
}

impl ProviderRegistry {
    /// A registry with its own simulated cloud built from the configuration.
    pub fn new(installation: impl Into<String>, config: ProvidersConfig) -> Self {
        let sim = Arc::new(sim::SimCloud::new(config.sim.clone()));
        Self::with_sim(installation, config, sim)
    }

    /// A registry sharing an existing simulated cloud (tests and the demo inspect it).
    pub fn with_sim(
        installation: impl Into<String>,
        config: ProvidersConfig,
        sim: Arc<sim::SimCloud>,
    ) -> Self {
        Self {
            installation: installation.into(),
            config,
            sim,
            client: None,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The registry with the cluster client providers that live in the cluster use.
    pub fn with_client(mut self, client: kube::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// This installation's id.
    pub fn installation(&self) -> &str {
        &self.installation
    }

    /// The provider configuration.
    pub fn config(&self) -> &ProvidersConfig {
        &self.config
    }

    /// The simulated cloud.
    pub fn sim(&self) -> &Arc<sim::SimCloud> {
        &self.sim
    }

    /// The provider for `key`, built on first use with `credentials`.
    pub async fn get(
        &self,
        key: &ProviderKey,
        credentials: Option<&Credentials>,
    ) -> Result<Arc<dyn Provider>, ProviderError> {
        if let Some(p) = self.cache.lock().get(key) {
            return Ok(p.clone());
        }
        let ctx = BuildContext {
            installation: &self.installation,
            region: key.region.as_deref(),
            credentials,
            config: &self.config,
            sim: &self.sim,
            client: self.client.as_ref(),
        };
        let provider = build(key.kind, &ctx).await?;
        let mut cache = self.cache.lock();
        // A rotated Secret gets a new key; drop instances of older versions of the same Secret.
        if let Some(creds) = &key.credentials {
            let base = creds.split('@').next().unwrap_or(creds);
            cache.retain(|k, _| {
                k.kind != key.kind
                    || k.region != key.region
                    || k.credentials
                        .as_deref()
                        .is_none_or(|c| c.split('@').next() != Some(base))
            });
        }
        Ok(cache.entry(key.clone()).or_insert(provider).clone())
    }

    /// Every provider instance built so far (what the poller and the garbage collector list).
    pub fn instances(&self) -> Vec<(ProviderKey, Arc<dyn Provider>)> {
        let mut v: Vec<_> = self
            .cache
            .lock()
            .iter()
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
