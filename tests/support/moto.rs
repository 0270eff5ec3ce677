//! moto's EC2 as a test sees it directly, not through runctl: an SDK client on moto's URL and
//! the AMI moto ships first. Included by `mod support` and, in test binaries without the rest
//! of the support module, by `#[path = "support/moto.rs"] mod moto;`.
#![allow(dead_code)]

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};

/// An EC2 client for moto at `url` (us-east-1, moto's test credentials).
pub fn ec2_client(url: &str) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .build(),
    )
}

/// The first Amazon-owned AMI moto lists.
pub async fn first_ami(client: &aws_sdk_ec2::Client) -> String {
    client
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .expect("moto images")
        .images()
        .first()
        .and_then(|i| i.image_id())
        .expect("an AMI")
        .to_string()
}

/// The first subnet moto lists, and its VPC.
pub async fn first_subnet(client: &aws_sdk_ec2::Client) -> (String, String) {
    let subnets = client
        .describe_subnets()
        .send()
        .await
        .expect("moto subnets");
    let first = &subnets.subnets()[0];
    (
        first.subnet_id().expect("a subnet").to_string(),
        first.vpc_id().expect("its VPC").to_string(),
    )
}
