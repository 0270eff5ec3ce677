//! RunInstances: the launch plan (pure: every parameter resolved from the CloudResource spec,
//! the operator's `AwsConfig` defaults and the ownership key) and its translation into an SDK
//! request. The plan is deterministic, so a retry with the same ClientToken sends the same
//! parameters and EC2 answers with the original reservation.

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, IamInstanceProfileSpecification,
    InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceType, MarketType, Placement, ResourceType,
    ShutdownBehavior, SpotInstanceType, SpotMarketOptions, Tag, TagSpecification, VolumeType,
};
use base64::Engine;

use super::AwsConfig;
use super::userdata;
use crate::provider::{MachineSpec, ProviderError, ResourceKey};

/// Everything RunInstances needs, resolved. `Debug` leaves out the UserData (it holds env
/// values).
#[derive(Clone, PartialEq)]
pub struct LaunchPlan {
    /// Idempotency token (`key.token()`).
    pub client_token: String,
    /// Instance type.
    pub instance_type: String,
    /// AMI.
    pub ami_id: String,
    /// Subnet; EC2's default subnet when absent.
    pub subnet_id: Option<String>,
    /// Security groups; the VPC's default group when empty.
    pub security_group_ids: Vec<String>,
    /// Key pair.
    pub key_name: Option<String>,
    /// Instance profile name or ARN.
    pub iam_instance_profile: Option<String>,
    /// Root volume size in GiB.
    pub root_volume_size_gb: u32,
    /// Root volume type.
    pub root_volume_type: String,
    /// Spot request, if spot.
    pub spot: Option<SpotPlan>,
    /// Tags on the instance and its volumes: user tags, then `Name` and ownership tags.
    pub tags: BTreeMap<String, String>,
    /// UserData script (plain text; encoded when sent). Holds env values: never logged.
    pub user_data: Option<String>,
    /// IMDSv2 (`HttpTokens=required`) PUT response hop limit, 1 to 64: 1 keeps the metadata
    /// service out of reach of containers on a bridge network.
    pub metadata_hop_limit: u32,
    /// The workload container shares the host's network (and so reaches the metadata service).
    pub host_network: bool,
    /// Placement group to launch into.
    pub placement_group: Option<String>,
}

/// Highest `HttpPutResponseHopLimit` EC2 accepts.
pub const MAX_METADATA_HOP_LIMIT: u32 = 64;

impl std::fmt::Debug for LaunchPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchPlan")
            .field("client_token", &self.client_token)
            .field("instance_type", &self.instance_type)
            .field("ami_id", &self.ami_id)
            .field("subnet_id", &self.subnet_id)
            .field("security_group_ids", &self.security_group_ids)
            .field("key_name", &self.key_name)
            .field("iam_instance_profile", &self.iam_instance_profile)
            .field("root_volume_size_gb", &self.root_volume_size_gb)
            .field("root_volume_type", &self.root_volume_type)
            .field("spot", &self.spot)
            .field("tags", &self.tags)
            .field("metadata_hop_limit", &self.metadata_hop_limit)
            .field("host_network", &self.host_network)
            .field("placement_group", &self.placement_group)
            .field(
                "user_data",
                &self
                    .user_data
                    .as_ref()
                    .map(|u| format!("<{} bytes redacted>", u.len())),
            )
            .finish()
    }
}

/// One-time spot with terminate on interruption.
#[derive(Clone, Debug, PartialEq)]
pub struct SpotPlan {
    /// Price ceiling in USD/h as EC2 takes it (a decimal string); on-demand price when absent.
    pub max_price: Option<String>,
}

/// Resolves the launch plan. Pure.
pub fn plan(
    key: &ResourceKey,
    spec: &MachineSpec,
    config: &AwsConfig,
) -> Result<LaunchPlan, ProviderError> {
    let instance_type = spec
        .instance_type
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("provider aws needs spec.instanceType, e.g. g5.xlarge"))?;
    let aws = &spec.aws;
    let ami_id = aws
        .ami_id
        .clone()
        .or_else(|| config.default_ami_id.clone())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            invalid("no AMI: set spec.aws.amiId or the operator's providers.aws.defaultAmiId (an AMI with Docker and, for GPU types, the NVIDIA driver and container toolkit)")
        })?;
    let security_group_ids = if aws.security_group_ids.is_empty() {
        config.security_group_ids.clone()
    } else {
        aws.security_group_ids.clone()
    };
    let mut tags = spec.tags.clone();
    tags.insert("Name".into(), key.machine_name());
    tags.extend(key.tags());
    let host_network = aws.host_network.unwrap_or(config.host_network);
    let user_data = userdata::render(
        spec.workload.as_ref(),
        &instance_type,
        spec.max_lifetime_seconds,
        spec.spot,
        host_network,
    )?;
    let spot = spec.spot.then(|| SpotPlan {
        max_price: spec.max_price_per_hour.map(|p| format!("{p}")),
    });
    Ok(LaunchPlan {
        client_token: key.token(),
        instance_type,
        ami_id,
        subnet_id: aws.subnet_id.clone().or_else(|| config.subnet_id.clone()),
        security_group_ids,
        key_name: aws.key_name.clone().or_else(|| config.key_name.clone()),
        iam_instance_profile: aws
            .iam_instance_profile
            .clone()
            .or_else(|| config.iam_instance_profile.clone()),
        root_volume_size_gb: aws
            .root_volume_size_gb
            .unwrap_or(config.root_volume_size_gb),
        root_volume_type: aws
            .root_volume_type
            .clone()
            .unwrap_or_else(|| config.root_volume_type.clone()),
        spot,
        tags,
        user_data,
        metadata_hop_limit: aws
            .metadata_hop_limit
            .unwrap_or(config.metadata_hop_limit)
            .clamp(1, MAX_METADATA_HOP_LIMIT),
        host_network,
        placement_group: aws.placement_group.clone(),
    })
}

fn invalid(message: &str) -> ProviderError {
    ProviderError::InvalidSpec {
        message: message.to_string(),
    }
}

/// The RunInstances request of a plan; `root_device_name` is the AMI's root device (read from
/// DescribeImages), whose size and type the plan sets.
pub fn request(
    client: &Client,
    plan: &LaunchPlan,
    root_device_name: &str,
) -> RunInstancesFluentBuilder {
    let tags: Vec<Tag> = plan
        .tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let tag_spec = |rt: ResourceType| {
        TagSpecification::builder()
            .resource_type(rt)
            .set_tags(Some(tags.clone()))
            .build()
    };
    let root = BlockDeviceMapping::builder()
        .device_name(root_device_name)
        .ebs(
            EbsBlockDevice::builder()
                .volume_size(i32::try_from(plan.root_volume_size_gb).unwrap_or(i32::MAX))
                .volume_type(VolumeType::from(plan.root_volume_type.as_str()))
                .delete_on_termination(true)
                .build(),
        )
        .build();
    let mut req = client
        .run_instances()
        .client_token(&plan.client_token)
        .image_id(&plan.ami_id)
        .instance_type(InstanceType::from(plan.instance_type.as_str()))
        .min_count(1)
        .max_count(1)
        .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
        .block_device_mappings(root)
        .tag_specifications(tag_spec(ResourceType::Instance))
        .tag_specifications(tag_spec(ResourceType::Volume))
        .set_subnet_id(plan.subnet_id.clone())
        .set_key_name(plan.key_name.clone())
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                .http_tokens(HttpTokensState::Required)
                .http_put_response_hop_limit(i32::try_from(plan.metadata_hop_limit).unwrap_or(1))
                .build(),
        );
    for sg in &plan.security_group_ids {
        req = req.security_group_ids(sg);
    }
    if let Some(group) = &plan.placement_group {
        req = req.placement(Placement::builder().group_name(group).build());
    }
    if let Some(profile) = &plan.iam_instance_profile {
        let spec = if profile.starts_with("arn:") {
            IamInstanceProfileSpecification::builder()
                .arn(profile)
                .build()
        } else {
            IamInstanceProfileSpecification::builder()
                .name(profile)
                .build()
        };
        req = req.iam_instance_profile(spec);
    }
    if let Some(spot) = &plan.spot {
        req = req.instance_market_options(
            InstanceMarketOptionsRequest::builder()
                .market_type(MarketType::Spot)
                .spot_options(
                    SpotMarketOptions::builder()
                        .spot_instance_type(SpotInstanceType::OneTime)
                        .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                        .set_max_price(spot.max_price.clone())
                        .build(),
                )
                .build(),
        );
    }
    if let Some(ud) = &plan.user_data {
        req = req.user_data(base64::engine::general_purpose::STANDARD.encode(ud));
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::cloud_resource::AwsOptions;
    use crate::provider::Workload;
    use crate::provider::identity::{TAG_INSTALLATION, TAG_OWNER_UID};

    fn key() -> ResourceKey {
        ResourceKey {
            installation: "prod".into(),
            namespace: "ml".into(),
            name: "llama".into(),
            uid: "6f1c2a9e-1111-2222-3333-444455556666".into(),
            attempt: 2,
        }
    }

    fn spec() -> MachineSpec {
        MachineSpec {
            instance_type: Some("g5.xlarge".into()),
            gpu_count: 1,
            tags: BTreeMap::from([
                ("team".into(), "nlp".into()),
                ("Name".into(), "mine".into()),
            ]),
            workload: Some(Workload {
                image: "img".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn config() -> AwsConfig {
        AwsConfig {
            default_ami_id: Some("ami-default".into()),
            subnet_id: Some("subnet-default".into()),
            security_group_ids: vec!["sg-default".into()],
            ..Default::default()
        }
    }

    #[test]
    fn defaults_come_from_the_operator_config() {
        let p = plan(&key(), &spec(), &config()).expect("plan");
        assert_eq!(p.client_token, key().token());
        assert_eq!(p.ami_id, "ami-default");
        assert_eq!(p.subnet_id.as_deref(), Some("subnet-default"));
        assert_eq!(p.security_group_ids, vec!["sg-default"]);
        assert_eq!(
            (p.root_volume_size_gb, p.root_volume_type.as_str()),
            (100, "gp3")
        );
        assert_eq!(p.spot, None);
        assert!(
            p.user_data
                .as_deref()
                .is_some_and(|u| u.contains("docker run"))
        );
    }

    #[test]
    fn spec_options_win_over_defaults() {
        let mut s = spec();
        s.aws = AwsOptions {
            ami_id: Some("ami-spec".into()),
            subnet_id: Some("subnet-spec".into()),
            security_group_ids: vec!["sg-a".into(), "sg-b".into()],
            key_name: Some("kp".into()),
            iam_instance_profile: Some("arn:aws:iam::1:instance-profile/x".into()),
            root_volume_size_gb: Some(500),
            root_volume_type: Some("io2".into()),
            host_network: Some(true),
            metadata_hop_limit: Some(2),
            placement_group: Some("nodes-close".into()),
        };
        s.spot = true;
        s.max_price_per_hour = Some(0.5);
        let p = plan(&key(), &s, &config()).expect("plan");
        assert_eq!(p.ami_id, "ami-spec");
        assert_eq!(p.placement_group.as_deref(), Some("nodes-close"));
        assert_eq!(p.subnet_id.as_deref(), Some("subnet-spec"));
        assert_eq!(p.security_group_ids, vec!["sg-a", "sg-b"]);
        assert_eq!(p.key_name.as_deref(), Some("kp"));
        assert_eq!(
            (p.root_volume_size_gb, p.root_volume_type.as_str()),
            (500, "io2")
        );
        assert_eq!(
            p.spot,
            Some(SpotPlan {
                max_price: Some("0.5".into())
            })
        );
        assert_eq!((p.metadata_hop_limit, p.host_network), (2, true));
        assert!(
            p.user_data
                .as_deref()
                .is_some_and(|u| u.contains("--network host")),
            "{:?}",
            p.user_data
        );
    }

    /// Issue 17, item 7: instances were launched with IMDSv1 allowed and the workload on the
    /// host network, so the workload could read the instance role's credentials and the
    /// UserData (report token, env values).
    #[test]
    fn instances_require_imdsv2_with_hop_limit_1_and_a_bridged_container() {
        let p = plan(&key(), &spec(), &config()).expect("plan");
        assert_eq!((p.metadata_hop_limit, p.host_network), (1, false));
        assert!(
            p.user_data
                .as_deref()
                .is_some_and(|u| u.contains("docker run") && !u.contains("--network")),
            "{:?}",
            p.user_data
        );
        let client = Client::from_conf(
            aws_sdk_ec2::Config::builder()
                .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
                .region(aws_sdk_ec2::config::Region::new("us-east-1"))
                .build(),
        );
        let options = |p: &LaunchPlan| {
            request(&client, p, "/dev/sda1")
                .as_input()
                .get_metadata_options()
                .clone()
                .expect("metadata options")
        };
        let o = options(&p);
        assert_eq!(o.http_tokens(), Some(&HttpTokensState::Required));
        assert_eq!(
            o.http_endpoint(),
            Some(&InstanceMetadataEndpointState::Enabled)
        );
        assert_eq!(o.http_put_response_hop_limit(), Some(1));
        // The operator's default, then the object's own option; always within EC2's 1 to 64.
        let mut c = config();
        c.metadata_hop_limit = 2;
        c.host_network = true;
        let p = plan(&key(), &spec(), &c).expect("plan");
        assert_eq!((p.metadata_hop_limit, p.host_network), (2, true));
        assert_eq!(options(&p).http_put_response_hop_limit(), Some(2));
        let mut s = spec();
        s.aws.metadata_hop_limit = Some(3);
        s.aws.host_network = Some(false);
        let p = plan(&key(), &s, &c).expect("plan");
        assert_eq!((p.metadata_hop_limit, p.host_network), (3, false));
        c.metadata_hop_limit = 0;
        let p = plan(&key(), &spec(), &c).expect("plan");
        assert_eq!(p.metadata_hop_limit, 1);
        c.metadata_hop_limit = 1000;
        let p = plan(&key(), &spec(), &c).expect("plan");
        assert_eq!(p.metadata_hop_limit, MAX_METADATA_HOP_LIMIT);
    }

    #[test]
    fn ownership_and_name_tags_win_over_user_tags() {
        let p = plan(&key(), &spec(), &config()).expect("plan");
        assert_eq!(p.tags["Name"], key().machine_name());
        assert_eq!(p.tags["team"], "nlp");
        assert_eq!(p.tags[TAG_INSTALLATION], "prod");
        assert_eq!(p.tags[TAG_OWNER_UID], key().uid);
    }

    #[test]
    fn missing_ami_or_type_is_an_invalid_spec() {
        let err = plan(&key(), &spec(), &AwsConfig::default()).expect_err("no ami");
        assert_eq!(err.reason(), "InvalidSpec");
        let mut s = spec();
        s.instance_type = None;
        assert!(
            plan(&key(), &s, &config())
                .expect_err("no type")
                .is_terminal()
        );
    }

    #[test]
    fn debug_never_prints_the_user_data() {
        let mut s = spec();
        if let Some(w) = s.workload.as_mut() {
            w.env.insert("TOKEN".into(), "s3cr3t-value".into());
        }
        let p = plan(&key(), &s, &config()).expect("plan");
        assert!(
            p.user_data
                .as_deref()
                .is_some_and(|u| u.contains("s3cr3t-value"))
        );
        let dbg = format!("{p:?}");
        assert!(
            !dbg.contains("s3cr3t-value") && dbg.contains("redacted"),
            "{dbg}"
        );
    }

    #[test]
    fn plan_is_deterministic() {
        assert_eq!(
            plan(&key(), &spec(), &config()).ok(),
            plan(&key(), &spec(), &config()).ok()
        );
    }
}
