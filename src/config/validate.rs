//! Validation of a merged [`OperatorConfig`]: the rules every field must meet, each error
//! naming the field and the layer (file, environment variable, flag, default) that set it.

use std::net::SocketAddr;

use super::{ConfigError, OperatorConfig, Origins};
use crate::telemetry;

impl OperatorConfig {
    pub(super) fn validate_with(&self, origins: &Origins) -> Result<(), ConfigError> {
        let fail = |field: &'static str, message: String| ConfigError::Invalid {
            field,
            origin: origins.of(field),
            message,
        };
        if !is_label_value(&self.installation_id) {
            return Err(fail(
                "installationId",
                format!(
                    "{:?} must be 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
                    self.installation_id
                ),
            ));
        }
        if let Err(e) = parse_socket_addr(&self.metrics_addr) {
            return Err(fail(
                "metricsAddr",
                format!("{:?} is not an ip:port address ({e})", self.metrics_addr),
            ));
        }
        if !is_dns_label(&self.namespace) {
            return Err(fail(
                "namespace",
                format!("{:?} is not a valid namespace name", self.namespace),
            ));
        }
        if let Some(ns) = self
            .watch_namespace
            .as_deref()
            .filter(|ns| !is_dns_label(ns))
        {
            return Err(fail(
                "watchNamespace",
                format!("{ns:?} is not a valid namespace name"),
            ));
        }
        if let Err(e) = telemetry::filter(&self.log.level, None) {
            let detail = std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_default();
            return Err(fail(
                "log.level",
                format!("{:?} is not a valid log filter: {detail}", self.log.level),
            ));
        }
        if self.poll_interval_seconds < 1 {
            return Err(fail("pollIntervalSeconds", "must be at least 1".into()));
        }
        if self.resync_interval_seconds < self.poll_interval_seconds {
            return Err(fail(
                "resyncIntervalSeconds",
                format!(
                    "must be at least pollIntervalSeconds ({})",
                    self.poll_interval_seconds
                ),
            ));
        }
        if self.cost_refresh_seconds < self.resync_interval_seconds {
            return Err(fail(
                "costRefreshSeconds",
                format!(
                    "must be at least resyncIntervalSeconds ({})",
                    self.resync_interval_seconds
                ),
            ));
        }
        let le = &self.leader_election;
        if !is_dns_subdomain(&le.lease_name) {
            return Err(fail(
                "leaderElection.leaseName",
                format!("{:?} is not a valid object name", le.lease_name),
            ));
        }
        if le.lease_duration_seconds < 2 || le.lease_duration_seconds > i32::MAX as u64 {
            return Err(fail(
                "leaderElection.leaseDurationSeconds",
                "must be at least 2".into(),
            ));
        }
        if le.renew_interval_seconds < 1
            || le.renew_interval_seconds * 2 > le.lease_duration_seconds
        {
            return Err(fail(
                "leaderElection.renewIntervalSeconds",
                format!(
                    "must be at least 1 and at most half of leaseDurationSeconds ({})",
                    le.lease_duration_seconds
                ),
            ));
        }
        if le.retry_interval_seconds < 1 || le.retry_interval_seconds > le.lease_duration_seconds {
            return Err(fail(
                "leaderElection.retryIntervalSeconds",
                format!(
                    "must be at least 1 and at most leaseDurationSeconds ({})",
                    le.lease_duration_seconds
                ),
            ));
        }
        if self.backoff.base_seconds < 1 {
            return Err(fail("backoff.baseSeconds", "must be at least 1".into()));
        }
        if self.backoff.credentials_recheck_seconds < 1 {
            return Err(fail(
                "backoff.credentialsRecheckSeconds",
                "must be at least 1".into(),
            ));
        }
        if self.backoff.account_retry_seconds < self.backoff.credentials_recheck_seconds {
            return Err(fail(
                "backoff.accountRetrySeconds",
                format!(
                    "must be at least backoff.credentialsRecheckSeconds ({})",
                    self.backoff.credentials_recheck_seconds
                ),
            ));
        }
        if self.backoff.max_seconds < self.backoff.base_seconds {
            return Err(fail(
                "backoff.maxSeconds",
                format!(
                    "must be at least backoff.baseSeconds ({})",
                    self.backoff.base_seconds
                ),
            ));
        }
        if self.reconcile_concurrency < 1 {
            return Err(fail("reconcileConcurrency", "must be at least 1".into()));
        }
        self.validate_sharding(origins)?;
        // A URL that cannot work is a startup error; one that is merely missing or
        // cluster-internal blocks cloud placements with a condition (sim jobs need none).
        let callback_url = self.shard_callback_url();
        if let Err(crate::callback::reach::Unreachable::Invalid(why)) =
            crate::callback::reach::judge(
                callback_url.as_deref(),
                crate::callback::reach::ReachCheck {
                    allow_internal: true,
                    ..Default::default()
                },
            )
        {
            return Err(fail(
                "jobs.callbackUrl",
                format!("must be an http:// or https:// URL with a host ({why})"),
            ));
        }
        if let Some(tls) = &self.jobs.callback_tls {
            for (field, path) in [
                ("jobs.callbackTls.certFile", &tls.cert_file),
                ("jobs.callbackTls.keyFile", &tls.key_file),
            ] {
                if path.as_os_str().is_empty() {
                    return Err(fail(field, "must name a PEM file".into()));
                }
            }
        }
        Ok(())
    }
}

impl OperatorConfig {
    /// `sharding`: an index below the count; a split cluster watches every namespace and gives
    /// each shard a callback URL of its own (a machine's reports and output must reach the
    /// replicas of the shard that owns its job).
    fn validate_sharding(&self, origins: &Origins) -> Result<(), ConfigError> {
        let fail = |field: &'static str, message: String| ConfigError::Invalid {
            field,
            origin: origins.of(field),
            message,
        };
        let s = &self.sharding;
        if !(1..=MAX_SHARDS).contains(&s.shards) {
            return Err(fail(
                "sharding.shards",
                format!("{} must be from 1 to {MAX_SHARDS}", s.shards),
            ));
        }
        if s.index >= s.shards {
            return Err(fail(
                "sharding.index",
                format!(
                    "{} must be below sharding.shards ({}): shards are numbered from 0",
                    s.index, s.shards
                ),
            ));
        }
        if s.shards > 1 && self.watch_namespace.is_some() {
            return Err(fail(
                "sharding.shards",
                "a deployment that watches one namespace (watchNamespace) cannot be split into shards: shards split the cluster's namespaces between them".into(),
            ));
        }
        let placeholder = crate::runtime::shard::SHARD_PLACEHOLDER;
        if s.shards > 1
            && self
                .jobs
                .callback_url
                .as_deref()
                .is_some_and(|u| !u.contains(placeholder))
        {
            return Err(fail(
                "jobs.callbackUrl",
                format!(
                    "with sharding.shards {} each shard needs a callback URL of its own: put {placeholder} where the shard's number goes (e.g. https://runctl-{placeholder}.example.com), so that a machine's reports reach the shard that owns its job",
                    s.shards
                ),
            ));
        }
        Ok(())
    }
}

/// Most shards a cluster may be split into.
pub const MAX_SHARDS: u32 = 64;

pub(super) fn parse_socket_addr(s: &str) -> Result<SocketAddr, std::net::AddrParseError> {
    s.trim().parse()
}

/// A Kubernetes label value (non-empty): the installation id is written into tags and labels.
fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// An RFC 1123 label (namespace names).
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(|c| *c != b'-')
        && b.last().is_some_and(|c| *c != b'-')
}

/// An RFC 1123 subdomain (most object names).
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}
