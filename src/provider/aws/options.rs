//! EC2's launch settings: the block of a CloudResource's (and a MachineClass's) spec named
//! `aws`, re-exported by [`crate::crd::cloud_resource`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// EC2 launch options; each falls back to the operator's configuration when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsOptions {
    /// AMI id (`ami-…`). Needs a container runtime and, for GPU types, the NVIDIA driver and
    /// container toolkit (e.g. the AWS Deep Learning Base AMI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub ami_id: Option<String>,
    /// Subnet id (`subnet-…`); the default VPC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub subnet_id: Option<String>,
    /// Security group ids (`sg-…`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 128)))]
    pub security_group_ids: Vec<String>,
    /// EC2 key pair name for SSH access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub key_name: Option<String>,
    /// IAM instance profile name or ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub iam_instance_profile: Option<String>,
    /// Root volume size in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 8, max = 16384))]
    pub root_volume_size_gb: Option<u32>,
    /// Root volume type (gp3, gp2, io2…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub root_volume_type: Option<String>,
    /// Run the workload container in the instance's network namespace (`docker run --network
    /// host`) instead of Docker's bridge network. The workload then reaches the instance
    /// metadata service: the instance role's credentials and the UserData (its env values and
    /// report token). Default: the operator's `providers.aws.hostNetwork` (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    /// IMDSv2 PUT response hop limit of the instance (1 to 64). 1 keeps the metadata service out
    /// of reach of a container on the bridge network; 2 lets it reach the service (and the
    /// instance role's credentials). Default: the operator's `providers.aws.metadataHopLimit`
    /// (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub metadata_hop_limit: Option<u32>,
    /// EC2 placement group to launch into (an existing group; a `cluster` group packs the
    /// machines of a multi-node job close together for fast networking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub placement_group: Option<String>,
}

/// EC2 settings of a class; what is absent comes from the operator's `providers.aws`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsClass {
    /// Per-region settings by region name (AMIs, subnets, security groups and key pairs exist
    /// in one region each). A machine of the class in a region without an entry is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 32))]
    pub region_settings: Option<BTreeMap<String, AwsRegionSettings>>,
    /// IAM instance profile name or ARN (the machine's role, e.g. for S3 checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub iam_instance_profile: Option<String>,
    /// Root volume size in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 8, max = 16384))]
    pub root_volume_size_gb: Option<u32>,
    /// Root volume type (gp3, gp2, io2…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub root_volume_type: Option<String>,
    /// IMDSv2 PUT response hop limit (1 to 64); see CloudResource `aws.metadataHopLimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub metadata_hop_limit: Option<u32>,
    /// EC2 placement group (an existing one, e.g. of strategy `cluster`) the class's machines
    /// are launched into; see CloudResource `aws.placementGroup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub placement_group: Option<String>,
    /// Run the workload container in the instance's network namespace; see CloudResource
    /// `aws.hostNetwork`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
}

/// EC2 settings that exist per region.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsRegionSettings {
    /// AMI id (`ami-…`) in this region. Needs a container runtime and, for GPU types, the
    /// NVIDIA driver and container toolkit (e.g. the AWS Deep Learning Base AMI).
    #[schemars(length(max = 128))]
    pub ami_id: String,
    /// Subnet id (`subnet-…`); the default VPC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub subnet_id: Option<String>,
    /// Security group ids (`sg-…`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 128)))]
    pub security_group_ids: Vec<String>,
    /// EC2 key pair name for SSH access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub key_name: Option<String>,
}

impl AwsOptions {
    /// Fills what a machine's settings leave unset from its class's, the region's own settings
    /// (AMI, subnet, key, security groups) for `region`.
    pub fn fill_from_class(&mut self, class: &AwsClass, region: Option<&str>) {
        use crate::provider::fill_unset as fill;
        let here = region.and_then(|r| class.region_settings.as_ref()?.get(r));
        if let Some(r) = here {
            fill(&mut self.ami_id, Some(&r.ami_id));
            fill(&mut self.subnet_id, r.subnet_id.as_ref());
            fill(&mut self.key_name, r.key_name.as_ref());
            if self.security_group_ids.is_empty() {
                self.security_group_ids = r.security_group_ids.clone();
            }
        }
        fill(
            &mut self.iam_instance_profile,
            class.iam_instance_profile.as_ref(),
        );
        fill(
            &mut self.root_volume_size_gb,
            class.root_volume_size_gb.as_ref(),
        );
        fill(&mut self.root_volume_type, class.root_volume_type.as_ref());
        fill(
            &mut self.metadata_hop_limit,
            class.metadata_hop_limit.as_ref(),
        );
        fill(&mut self.host_network, class.host_network.as_ref());
        fill(&mut self.placement_group, class.placement_group.as_ref());
    }
}
