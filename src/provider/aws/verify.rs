//! Checks a MachineClass's EC2 settings in one region without launching anything: the AMI,
//! subnet, security groups, key pair and placement group exist and the credentials may describe them. The
//! instance profile is not checked (that needs IAM's API, not EC2's); a wrong one fails the
//! first RunInstances with `InvalidParameterValue`.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

use super::AwsConfig;
use super::classify::classify_sdk;
use crate::provider::{MachineSpec, ProviderError};

/// What is missing, one line each; an `Err` for failures that are not a missing resource
/// (credentials, throttling, network).
pub async fn check(
    client: &Client,
    region: &str,
    spec: &MachineSpec,
    config: &AwsConfig,
) -> Result<Vec<String>, ProviderError> {
    let aws = &spec.aws;
    let mut missing = vec![];
    match aws.ami_id.clone().or_else(|| config.default_ami_id.clone()) {
        None => missing.push(format!(
            "no AMI for {region}: set aws.regionSettings.{region}.amiId or the operator's providers.aws.defaultAmiId"
        )),
        Some(ami) => {
            let found = client
                .describe_images()
                .image_ids(&ami)
                .send()
                .await
                .map(|o| o.images().iter().any(|i| i.image_id() == Some(ami.as_str())));
            if !exists(found, "InvalidAMIID")? {
                missing.push(format!("AMI {ami} not found in {region}"));
            }
        }
    }
    if let Some(subnet) = aws.subnet_id.clone().or_else(|| config.subnet_id.clone()) {
        let found = client
            .describe_subnets()
            .subnet_ids(&subnet)
            .send()
            .await
            .map(|o| !o.subnets().is_empty());
        if !exists(found, "InvalidSubnetID")? {
            missing.push(format!("subnet {subnet} not found in {region}"));
        }
    }
    let groups = if aws.security_group_ids.is_empty() {
        config.security_group_ids.clone()
    } else {
        aws.security_group_ids.clone()
    };
    for group in groups {
        let found = client
            .describe_security_groups()
            .group_ids(&group)
            .send()
            .await
            .map(|o| !o.security_groups().is_empty());
        if !exists(found, "InvalidGroup")? {
            missing.push(format!("security group {group} not found in {region}"));
        }
    }
    if let Some(key) = aws.key_name.clone().or_else(|| config.key_name.clone()) {
        let found = client
            .describe_key_pairs()
            .key_names(&key)
            .send()
            .await
            .map(|o| !o.key_pairs().is_empty());
        if !exists(found, "InvalidKeyPair")? {
            missing.push(format!("key pair {key} not found in {region}"));
        }
    }
    if let Some(group) = aws.placement_group.clone() {
        let found = client
            .describe_placement_groups()
            .group_names(&group)
            .send()
            .await
            .map(|o| !o.placement_groups().is_empty());
        if !exists(found, "InvalidPlacementGroup")? {
            missing.push(format!("placement group {group} not found in {region}"));
        }
    }
    Ok(missing)
}

/// Whether a describe call found its resource: its `…NotFound`/`…Malformed` error code (prefix
/// `not_found`) means no; any other error is the check's failure.
fn exists<E>(result: Result<bool, SdkError<E>>, not_found: &str) -> Result<bool, ProviderError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(found) => Ok(found),
        Err(e)
            if e.as_service_error()
                .and_then(ProvideErrorMetadata::code)
                .is_some_and(|c| c.starts_with(not_found)) =>
        {
            Ok(false)
        }
        Err(e) => Err(classify_sdk(&e).error),
    }
}
