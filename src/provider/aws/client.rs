//! The EC2 SDK client of one provider instance: region, credentials (the Secret's access key,
//! or AWS's default chain: env, IRSA / pod identity, instance profile), endpoint override,
//! retries and timeouts.

use std::time::Duration;

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

/// Builds the client for `region`.
pub async fn build(
    config: &AwsConfig,
    region: &str,
    credentials: Option<&Credentials>,
) -> Result<Client, ProviderError> {
    let retry = RetryConfig::standard().with_max_attempts(config.max_attempts.max(1));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(config.connect_timeout_seconds.max(1)))
        .operation_attempt_timeout(Duration::from_secs(config.attempt_timeout_seconds.max(1)))
        .build();
    let mut builder = match credentials {
        Some(creds) => {
            let key_id = creds.require(KEY_ACCESS_KEY_ID)?;
            let secret = creds.require(KEY_SECRET_ACCESS_KEY)?;
            let token = creds
                .get(KEY_SESSION_TOKEN)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            aws_sdk_ec2::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .credentials_provider(AwsCredentials::new(
                    key_id,
                    secret,
                    token,
                    None,
                    "runctl-credentials-secret",
                ))
        }
        None => {
            let shared = aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new(region.to_string()))
                .load()
                .await;
            aws_sdk_ec2::config::Builder::from(&shared)
        }
    };
    builder = builder
        .region(Region::new(region.to_string()))
        .retry_config(retry)
        .timeout_config(timeouts)
        .app_name(app_name());
    if let Some(url) = config.endpoint_url.as_deref().filter(|u| !u.is_empty()) {
        builder = builder.endpoint_url(url);
    }
    Ok(Client::from_conf(builder.build()))
}
