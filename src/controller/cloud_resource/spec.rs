//! Turns a CloudResource spec into the provider-neutral [`MachineSpec`], resolving Secret values
//! (env `valueFrom.secretKeyRef`, the reporting token) at create time only.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::crd::CloudResourceSpec;
use crate::crd::common::SecretKeyRef;
use crate::provider::MachineSpec;
use crate::provider::workload::{Reporting, Workload};

/// Failure to read a Secret the spec refers to.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The Secret does not exist.
    #[error("Secret {namespace}/{name} not found")]
    NotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The key is missing or not UTF-8.
    #[error("Secret {namespace}/{name} has no UTF-8 key {key:?}")]
    MissingKey {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Key.
        key: String,
    },
    /// The API call failed.
    #[error("failed to read Secret {namespace}/{name}")]
    Read {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

impl SecretError {
    /// Static reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } | Self::MissingKey { .. } => "SecretNotFound",
            Self::Read { .. } => "SecretReadFailed",
        }
    }
}

/// Reads a whole Secret as UTF-8 strings, plus its resourceVersion.
pub async fn read_secret(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<(BTreeMap<String, String>, String), SecretError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(name)
        .await
        .map_err(|source| SecretError::Read {
            namespace: namespace.into(),
            name: name.into(),
            source,
        })?
        .ok_or_else(|| SecretError::NotFound {
            namespace: namespace.into(),
            name: name.into(),
        })?;
    let mut out = BTreeMap::new();
    for (k, v) in secret.data.unwrap_or_default() {
        if let Ok(s) = String::from_utf8(v.0) {
            out.insert(k, s);
        }
    }
    for (k, v) in secret.string_data.unwrap_or_default() {
        out.insert(k, v);
    }
    Ok((out, secret.metadata.resource_version.unwrap_or_default()))
}

async fn read_key(
    client: &Client,
    namespace: &str,
    r: &SecretKeyRef,
) -> Result<String, SecretError> {
    let (data, _) = read_secret(client, namespace, &r.name).await?;
    data.get(&r.key)
        .cloned()
        .ok_or_else(|| SecretError::MissingKey {
            namespace: namespace.into(),
            name: r.name.clone(),
            key: r.key.clone(),
        })
}

/// Builds the machine spec, reading the Secrets the workload refers to.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    spec: &CloudResourceSpec,
    region: Option<String>,
) -> Result<MachineSpec, SecretError> {
    let workload = match &spec.workload {
        None => None,
        Some(w) => {
            let mut env = BTreeMap::new();
            for var in &w.env {
                let value = match (&var.value, &var.value_from) {
                    (Some(v), _) => v.clone(),
                    (None, Some(from)) => read_key(client, namespace, &from.secret_key_ref).await?,
                    (None, None) => String::new(),
                };
                env.insert(var.name.clone(), value);
            }
            let reporting = match &w.reporting {
                None => None,
                Some(r) => Some(Reporting {
                    callback_url: r.callback_url.clone(),
                    token: read_key(client, namespace, &r.token_secret_ref).await?,
                    heartbeat_interval_seconds: r.heartbeat_interval_seconds,
                    self_terminate_after_seconds: r.self_terminate_after_seconds,
                    report_grace_seconds: r.report_grace_seconds,
                }),
            };
            Some(Workload {
                image: w.image.clone(),
                command: w.command.clone(),
                args: w.args.clone(),
                env,
                reporting,
            })
        }
    };
    Ok(build(spec, region, workload))
}

/// The pure part: spec plus resolved workload to machine spec.
pub fn build(
    spec: &CloudResourceSpec,
    region: Option<String>,
    workload: Option<Workload>,
) -> MachineSpec {
    MachineSpec {
        instance_type: spec.instance_type.clone(),
        gpu_type: spec.gpu_type.clone(),
        gpu_count: spec.gpu_count.unwrap_or(1),
        region,
        spot: spec.spot,
        max_price_per_hour: spec.max_price_per_hour,
        workload,
        tags: spec.tags.clone(),
        max_lifetime_seconds: spec.max_lifetime_seconds,
        aws: spec.aws.clone().unwrap_or_default(),
        runpod: spec.runpod.clone().unwrap_or_default(),
        lyceum: spec.lyceum.clone().unwrap_or_default(),
        kubernetes: spec.kubernetes.clone().unwrap_or_default(),
    }
}

/// The region a CloudResource uses: its own, else the provider's configured default.
pub(super) fn region_for(spec: &CloudResourceSpec, default: Option<String>) -> Option<String> {
    crate::provider::descriptor::of(spec.provider)
        .regions
        .then(|| spec.region.clone().or(default))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderKind;

    fn spec() -> CloudResourceSpec {
        serde_json::from_value(serde_json::json!({
            "provider": "aws", "instanceType": "g5.xlarge", "spot": true, "maxPricePerHour": 0.5,
            "tags": {"team": "ml"}, "aws": {"amiId": "ami-1"}
        }))
        .unwrap()
    }

    #[test]
    fn build_copies_placement_and_defaults_gpu_count() {
        let m = build(&spec(), Some("eu-west-1".into()), None);
        assert_eq!(m.instance_type.as_deref(), Some("g5.xlarge"));
        assert_eq!(m.gpu_count, 1);
        assert!(m.spot);
        assert_eq!(m.max_price_per_hour, Some(0.5));
        assert_eq!(m.aws.ami_id.as_deref(), Some("ami-1"));
        assert_eq!(m.region.as_deref(), Some("eu-west-1"));
        assert_eq!(m.tags["team"], "ml");
    }

    #[test]
    fn regions_only_for_providers_with_regions() {
        let mut s = spec();
        assert_eq!(
            region_for(&s, Some("us-east-1".into())).as_deref(),
            Some("us-east-1")
        );
        s.region = Some("eu-west-1".into());
        assert_eq!(
            region_for(&s, Some("us-east-1".into())).as_deref(),
            Some("eu-west-1")
        );
        s.provider = ProviderKind::Runpod;
        assert_eq!(region_for(&s, Some("x".into())), None);
    }
}
