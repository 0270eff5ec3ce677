//! The SDK clients of one provider instance, EC2 and the AWS Price List API: region,
//! credentials (the Secret's access key, or AWS's default chain: env, IRSA / pod identity,
//! instance profile), endpoint override, retries and timeouts.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::{AppName, BehaviorVersion, Credentials as AwsCredentials, Region};

use super::AwsConfig;
use crate::provider::ProviderError;
use crate::provider::registry::Credentials;

/// Secret key: access key id.
pub const KEY_ACCESS_KEY_ID: &str = "accessKeyId";
/// Secret key: secret access key.
pub const KEY_SECRET_ACCESS_KEY: &str = "secretAccessKey";
/// Secret key: session token (optional).
pub const KEY_SESSION_TOKEN: &str = "sessionToken";

/// runctl's name and version as the SDK's app name: its `User-Agent` then ends in
/// `app/runctl-<version>` (an app name cannot hold the `/` of [`crate::USER_AGENT`]).
pub fn app_name() -> AppName {
    AppName::new(concat!("runctl-", env!("CARGO_PKG_VERSION")))
        .expect("a crate version is a valid app name")
}

/// The credentials and shared settings both clients of a provider are built from.
pub enum Base {
    /// The access key of a credentials Secret.
    Secret(AwsCredentials),
    /// AWS's default chain, loaded for the provider's region.
    Chain(Box<SdkConfig>),
}

/// Reads the credentials: the Secret's access key, else AWS's default chain for `region`.
pub async fn base(region: &str, credentials: Option<&Credentials>) -> Result<Base, ProviderError> {
    Ok(match credentials {
        Some(creds) => {
            let key_id = creds.require(KEY_ACCESS_KEY_ID)?;
            let secret = creds.require(KEY_SECRET_ACCESS_KEY)?;
            let token = creds
                .get(KEY_SESSION_TOKEN)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            Base::Secret(AwsCredentials::new(
                key_id,
                secret,
                token,
                None,
                "runctl-credentials-secret",
            ))
        }
        None => Base::Chain(Box::new(
            aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new(region.to_string()))
                .load()
                .await,
        )),
    })
}

fn retry(config: &AwsConfig) -> RetryConfig {
    RetryConfig::standard().with_max_attempts(config.max_attempts.max(1))
}

fn timeouts(config: &AwsConfig) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(config.connect_timeout_seconds.max(1)))
        .operation_attempt_timeout(Duration::from_secs(config.attempt_timeout_seconds.max(1)))
        .build()
}

/// The EC2 client for `region`.
pub fn ec2(config: &AwsConfig, region: &str, base: &Base) -> Client {
    let mut builder = match base {
        Base::Secret(c) => aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(c.clone()),
        Base::Chain(shared) => aws_sdk_ec2::config::Builder::from(shared.as_ref()),
    };
    builder = builder
        .region(Region::new(region.to_string()))
        .retry_config(retry(config))
        .timeout_config(timeouts(config))
        .app_name(app_name());
    if let Some(url) = config.endpoint_url.as_deref().filter(|u| !u.is_empty()) {
        builder = builder.endpoint_url(url);
    }
    Client::from_conf(builder.build())
}

/// The AWS Price List API client: its own region (`providers.aws.pricing.region`, an endpoint
/// of the API), not the machines', and its own endpoint override.
pub fn pricing(config: &AwsConfig, base: &Base) -> aws_sdk_pricing::Client {
    let mut builder = match base {
        Base::Secret(c) => aws_sdk_pricing::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(c.clone()),
        Base::Chain(shared) => aws_sdk_pricing::config::Builder::from(shared.as_ref()),
    };
    builder = builder
        .region(Region::new(config.pricing.region.clone()))
        .retry_config(retry(config))
        .timeout_config(timeouts(config))
        .app_name(app_name());
    if let Some(url) = config
        .pricing
        .endpoint_url
        .as_deref()
        .filter(|u| !u.is_empty())
    {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_pricing::Client::from_conf(builder.build())
}
