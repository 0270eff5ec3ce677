//! AWS EC2 provider: one instance per region and account. Machines are EC2 instances launched
//! with RunInstances under a deterministic ClientToken and runctl's ownership tags, found again
//! by those tags, listed in one paginated DescribeInstances per region, and terminated with
//! TerminateInstances. See `docs/providers/aws.md`.
//!
//! Files: [`client`] (SDK clients), [`launch`] (RunInstances parameters), [`userdata`] (the
//! workload script), [`instance`] and [`state`] (reading instances), [`classify`] (errors),
//! [`pricing`] (price sources: the embedded on-demand table, spot prices, which one a price
//! comes from), [`price_list`] (the AWS Price List API's documents, pure), [`price_api`] (its
//! GetProducts calls), [`price_cache`] (cached, single-flight lookups), [`provider`] (the
//! [`Provider`] impl).

//!
//! Everything that uses the AWS SDK is behind the `aws` cargo feature (on by default); without
//! it, the configuration still parses and building an EC2 provider fails with a clear error.

#[cfg(feature = "aws")]
pub mod classify;
#[cfg(feature = "aws")]
pub mod client;
/// EC2's GPU instance types in the GPU vocabulary.
pub mod gpus;
#[cfg(feature = "aws")]
pub mod instance;
#[cfg(feature = "aws")]
pub mod launch;
pub mod options;
#[cfg(feature = "aws")]
pub mod price_api;
#[cfg(feature = "aws")]
pub mod price_cache;
#[cfg(feature = "aws")]
pub mod price_list;
#[cfg(feature = "aws")]
pub mod pricing;
#[cfg(feature = "aws")]
pub mod provider;
#[cfg(feature = "aws")]
pub mod state;
pub mod userdata;
/// MachineClass checks (DescribeImages, DescribeSubnets, …).
#[cfg(feature = "aws")]
pub mod verify;

crate::provider::descriptor::glue!(aws, async);

/// What runctl knows of Aws without building it (see [`crate::provider::descriptor`]).
pub const DESCRIPTOR: crate::provider::descriptor::Descriptor =
    crate::provider::descriptor::Descriptor {
        kind: crate::crd::ProviderKind::Aws,
        regions: true,
        sizing: crate::provider::descriptor::Sizing::InstanceType,
        spot: true,
        multi_node: true,
        reports_from_outside: true,
        reports: true,
        ended_machines_stay: false,
        in_cluster: false,
        gpu_shapes: gpus::SHAPES,
        machine_example: "g5.xlarge",
        options: true,
        cel: crate::provider::descriptor::Cel::NONE,
        section,
        section_mut,
        build: build_boxed,
    };

use std::sync::Arc;

use serde::{Deserialize, Serialize};

#[cfg(feature = "aws")]
pub use provider::AwsProvider;

use super::registry::{BuildContext, NamespacedSecretRef};
use super::{Provider, ProviderError};

/// Operator-level EC2 settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AwsConfig {
    /// Offer EC2 to TrainingJobs. Absent: enabled when this section is in the configuration
    /// file ([`ProvidersConfig::enabled`](crate::provider::ProvidersConfig::enabled)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Endpoint override (tests, EC2-compatible endpoints).
    pub endpoint_url: Option<String>,
    /// Region used when a CloudResource names none.
    pub default_region: String,
    /// Default AMI.
    pub default_ami_id: Option<String>,
    /// Default subnet.
    pub subnet_id: Option<String>,
    /// Default security groups.
    pub security_group_ids: Vec<String>,
    /// Default key pair.
    pub key_name: Option<String>,
    /// Default instance profile.
    pub iam_instance_profile: Option<String>,
    /// Default root volume size (GiB).
    pub root_volume_size_gb: u32,
    /// Default root volume type.
    pub root_volume_type: String,
    /// Default credentials Secret; the default AWS chain (IRSA, instance profile) when absent.
    pub credentials_secret: Option<NamespacedSecretRef>,
    /// Attempts per SDK call including the first (SDK retries of throttling, 5xx and network
    /// errors); 1 turns SDK retries off and leaves retrying to the controller.
    pub max_attempts: u32,
    /// Connect timeout per attempt, seconds.
    pub connect_timeout_seconds: u64,
    /// Timeout of one attempt of a call, seconds.
    pub attempt_timeout_seconds: u64,
    /// For this long after runctl launched an instance, `InvalidInstanceID.NotFound` for it is
    /// EC2's eventual consistency (retryable) rather than "gone", seconds.
    pub not_found_grace_seconds: u64,
    /// DescribeInstances page size (5 to 1000).
    pub describe_page_size: i32,
    /// How long a spot price read from DescribeSpotPriceHistory is reused, seconds.
    pub spot_price_ttl_seconds: u64,
    /// Default IMDSv2 PUT response hop limit of the instances (1 to 64). 1 keeps the instance
    /// metadata service (the instance role's credentials, the UserData) out of reach of the
    /// workload container on Docker's bridge network; 2 lets bridged containers reach it.
    pub metadata_hop_limit: u32,
    /// Run the workload container in the host's network namespace (`docker run --network
    /// host`) by default. It then reaches the metadata service whatever the hop limit.
    pub host_network: bool,
    /// Where on-demand prices come from: the AWS Price List API.
    pub pricing: AwsPricingConfig,
}

/// The AWS Price List API (`GetProducts`), the source of on-demand prices. It is served only in
/// a few regions (`us-east-1`, `eu-central-1`, `ap-south-1`) and answers for every region, so
/// its client has a region of its own, not the machine's. Whatever it cannot answer is priced
/// from runctl's embedded table, labelled as an estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct AwsPricingConfig {
    /// Read on-demand prices from the Price List API; `false` prices every on-demand machine from
    /// the embedded table (an estimate).
    pub enabled: bool,
    /// Region of the Price List API endpoint (`us-east-1`, `eu-central-1` or `ap-south-1`).
    pub region: String,
    /// Endpoint override (tests, a VPC endpoint); AWS's endpoint of `region` when unset.
    pub endpoint_url: Option<String>,
    /// How long a price read from the API is reused, seconds (prices change rarely).
    pub cache_ttl_seconds: u64,
    /// After a failed read, how long the embedded table's figure is used before the API is asked
    /// again, seconds.
    pub error_retry_seconds: u64,
}

impl Default for AwsPricingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            region: "us-east-1".into(),
            endpoint_url: None,
            cache_ttl_seconds: 86_400,
            error_retry_seconds: 300,
        }
    }
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            endpoint_url: None,
            default_region: "us-east-1".into(),
            default_ami_id: None,
            subnet_id: None,
            security_group_ids: vec![],
            key_name: None,
            iam_instance_profile: None,
            root_volume_size_gb: 100,
            root_volume_type: "gp3".into(),
            credentials_secret: None,
            max_attempts: 3,
            connect_timeout_seconds: 5,
            attempt_timeout_seconds: 30,
            not_found_grace_seconds: 300,
            describe_page_size: 500,
            spot_price_ttl_seconds: 600,
            metadata_hop_limit: 1,
            host_network: false,
            pricing: AwsPricingConfig::default(),
        }
    }
}

/// Builds an EC2 provider for the context's region (else the configured default region) with
/// the context's credentials (else AWS's default chain).
#[cfg(feature = "aws")]
pub async fn build(ctx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, ProviderError> {
    let config = ctx.config.aws.clone();
    let region = ctx
        .region
        .map(str::to_string)
        .unwrap_or_else(|| config.default_region.clone());
    let base = client::base(&region, ctx.credentials).await?;
    let ec2 = client::ec2(&config, &region, &base);
    let price_list = config
        .pricing
        .enabled
        .then(|| price_api::PriceList::new(client::pricing(&config, &base), &config.pricing));
    Ok(Arc::new(
        AwsProvider::new(ec2, ctx.installation, region, config).with_price_list(price_list),
    ))
}

/// Without the `aws` feature there is no EC2 client: every AWS object is refused as invalid.
#[cfg(not(feature = "aws"))]
pub async fn build(_ctx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, ProviderError> {
    Err(ProviderError::InvalidSpec {
        message: "this runctl binary was built without the `aws` feature; AWS EC2 is not available"
            .into(),
    })
}

/// Its section of the operator's configuration (`providers.aws`).
impl crate::provider::registry::Section for AwsConfig {
    fn switch(&mut self) -> &mut Option<bool> {
        &mut self.enabled
    }

    fn enabled(&self) -> Option<bool> {
        self.enabled
    }

    fn credentials(&self) -> Option<&NamespacedSecretRef> {
        self.credentials_secret.as_ref()
    }

    fn default_region(&self) -> Option<String> {
        Some(self.default_region.clone())
    }
}
