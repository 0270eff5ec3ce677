//! AWS EC2 provider (placeholder until the AWS issue lands).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::registry::{BuildContext, NamespacedSecretRef};
use super::{Provider, ProviderError};

/// Operator-level EC2 settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AwsConfig {
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
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
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
        }
    }
}

/// Builds an EC2 provider.
pub async fn build(_ctx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, ProviderError> {
    Err(ProviderError::InvalidSpec { message: "the aws provider is not built yet".into() })
}
