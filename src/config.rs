//! The operator's configuration: a YAML file, environment variables and command-line flags,
//! merged with the precedence flags > environment > file > defaults, then validated.
//!
//! `docs/configuration.md` documents every field; `config/runctl.example.yaml` is a full
//! example that the tests parse.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::provider::ProvidersConfig;
use crate::runtime::LeaseConfig;
use crate::telemetry::LogFormat;

mod validate;

pub use validate::MAX_SHARDS;
use validate::parse_socket_addr;

/// Env: installation id.
pub const ENV_INSTALLATION_ID: &str = "RUNCTL_INSTALLATION_ID";
/// Env: metrics and probes listen address.
pub const ENV_METRICS_ADDR: &str = "RUNCTL_METRICS_ADDR";
/// Env: log format.
pub const ENV_LOG_FORMAT: &str = "RUNCTL_LOG_FORMAT";
/// Env: log level.
pub const ENV_LOG_LEVEL: &str = "RUNCTL_LOG_LEVEL";
/// Env: provider poll interval.
pub const ENV_POLL_INTERVAL_SECONDS: &str = "RUNCTL_POLL_INTERVAL_SECONDS";
/// Env: the one namespace to watch.
pub const ENV_WATCH_NAMESPACE: &str = "RUNCTL_WATCH_NAMESPACE";
/// Env: leader election on or off.
pub const ENV_LEADER_ELECTION: &str = "RUNCTL_LEADER_ELECTION";
/// Env: the operator's own namespace (set through the downward API).
pub const ENV_POD_NAMESPACE: &str = "POD_NAMESPACE";
/// Env: which shard this deployment is (`sharding.index`; the chart sets it per shard).
pub const ENV_SHARD_INDEX: &str = "RUNCTL_SHARD_INDEX";

/// Default `costRefreshSeconds`: a running machine's accrued cost is written once per 20
/// minutes, and its job's status follows: N / 600 status writes per second for N running jobs.
pub const DEFAULT_COST_REFRESH_SECONDS: u64 = 1200;

/// The operator's configuration. Every field has a default; see `docs/configuration.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct OperatorConfig {
    /// Id of this installation, written into machine tags and names so that several operators
    /// can share one cloud account. Default `default`.
    pub installation_id: String,
    /// The operator's own namespace (holds the leader Lease). Default: `POD_NAMESPACE`, else
    /// `runctl-system`.
    pub namespace: String,
    /// The one namespace whose objects are reconciled; all namespaces when absent.
    pub watch_namespace: Option<String>,
    /// Listen address (`ip:port`) of `/metrics`, `/healthz` and `/readyz`. Default
    /// `0.0.0.0:8080`; validated to parse as a socket address (see [`Self::metrics_socket_addr`]).
    pub metrics_addr: String,
    /// Logging.
    pub log: LogConfig,
    /// Seconds between provider status polls. Default 30.
    pub poll_interval_seconds: u64,
    /// Seconds between looks at a steady object (running machine or job) when nothing changed.
    /// Default 60; at least the poll interval.
    pub resync_interval_seconds: u64,
    /// Seconds between status writes of a running machine's accrued cost when nothing else
    /// changed (its job's status follows). Default 1200; at least the resync interval. Metrics
    /// carry the live figure.
    pub cost_refresh_seconds: u64,
    /// Leader election.
    pub leader_election: LeaderElectionConfig,
    /// Retry backoff of failed reconciles.
    pub backoff: BackoffConfig,
    /// Objects reconciled in parallel per controller. Default 16.
    pub reconcile_concurrency: u16,
    /// TrainingJob settings: the callback endpoint machines report to, heartbeats, retries.
    pub jobs: JobsConfig,
    /// The orphan reaper: terminates machines whose CloudResource is gone (see
    /// `docs/reliability.md`).
    pub reaper: ReaperSettings,
    /// Provider settings.
    pub providers: ProvidersConfig,
    /// Splitting the cluster's namespaces between several operator deployments (see
    /// `docs/operations.md`, "Sharding"). Default: one shard.
    pub sharding: ShardingConfig,
}

/// Sharding: `shards` deployments, each owning the namespaces whose hash falls on its `index`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ShardingConfig {
    /// How many shards the cluster's namespaces are split into. Default 1 (no sharding).
    pub shards: u32,
    /// This deployment's shard, from 0 to `shards - 1`. Default 0; `RUNCTL_SHARD_INDEX`.
    pub index: u32,
}

impl Default for ShardingConfig {
    fn default() -> Self {
        Self {
            shards: 1,
            index: 0,
        }
    }
}

/// TrainingJob settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Listen address (`ip:port`) of the job callback endpoint. Default `0.0.0.0:8443`.
    pub callback_addr: String,
    /// Base URL cloud machines use to reach the callback endpoint from outside the cluster (an
    /// Ingress routing `/callback/`, or a LoadBalancer to the listener). No default: without it,
    /// or with a cluster-internal host, jobs are not placed on cloud providers (condition
    /// `CallbackUrlMissing` / `CallbackUnreachable`); `sim` jobs need none.
    pub callback_url: Option<String>,
    /// The machines share the cluster's network (self-hosted GPU nodes that resolve cluster
    /// DNS): accept a cluster-internal `callbackUrl`. Default false.
    pub allow_cluster_internal_callback_url: bool,
    /// Serve the callback endpoint over HTTPS with this certificate and key; plain HTTP when
    /// absent (TLS terminated by an Ingress in front of it).
    pub callback_tls: Option<CallbackTlsConfig>,
    /// Seconds between the reporting wrapper's heartbeats. Default 30.
    pub heartbeat_interval_seconds: u32,
    /// Seconds without an acknowledged heartbeat after which the wrapper stops the workload and
    /// the machine powers off. Default 1800.
    pub self_terminate_after_seconds: u32,
    /// Seconds an exit report may still arrive after the machine ended before the attempt is
    /// `MachineLost`. Default 90.
    pub report_grace_seconds: u64,
    /// Seconds an attempt's machine may take to reach Running before the attempt ends
    /// `StartTimeout`; 0 turns it off. Default 1800.
    pub start_timeout_seconds: u64,
    /// Seconds without a heartbeat, once heartbeats have arrived, before a running attempt ends
    /// `HeartbeatsStopped`; 0 turns it off. Default 600.
    pub heartbeat_timeout_seconds: u64,
    /// First wait before a retried attempt, in seconds (doubles per failure). Default 10.
    pub retry_base_seconds: u64,
    /// Longest wait before a retried attempt, in seconds. Default 600.
    pub retry_max_seconds: u64,
}

/// Orphan reaper settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ReaperSettings {
    /// Run the reaper. Default true.
    pub enabled: bool,
    /// Seconds between passes. Default 300.
    pub interval_seconds: u64,
    /// Seconds a machine must look orphaned before it is terminated. Default 900.
    pub grace_seconds: u64,
    /// Report orphans (metrics, status ConfigMap) but terminate nothing. Default false.
    pub dry_run: bool,
    /// Halt (terminate nothing, raise `runctl_reaper_halted`) when more than this fraction of
    /// the billable fleet looks orphaned. Default 0.3333.
    pub max_orphan_fraction: f64,
}

impl Default for ReaperSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: 300,
            grace_seconds: 900,
            dry_run: false,
            max_orphan_fraction: 1.0 / 3.0,
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            callback_addr: "0.0.0.0:8443".into(),
            callback_url: None,
            allow_cluster_internal_callback_url: false,
            callback_tls: None,
            heartbeat_interval_seconds: 30,
            self_terminate_after_seconds: 1800,
            report_grace_seconds: 90,
            start_timeout_seconds: 1800,
            heartbeat_timeout_seconds: 600,
            retry_base_seconds: 10,
            retry_max_seconds: 600,
        }
    }
}

/// TLS of the job callback listener (`jobs.callbackTls`): PEM files, typically a mounted
/// `kubernetes.io/tls` Secret, re-read when they change (see [`crate::callback::tls`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallbackTlsConfig {
    /// The PEM certificate chain, leaf first (`tls.crt`).
    pub cert_file: PathBuf,
    /// The PEM private key of the leaf certificate (`tls.key`).
    pub key_file: PathBuf,
}

/// Logging settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
    /// A tracing filter (`info`, `runctl=debug,kube=info`). Default `info`; `RUST_LOG` wins.
    pub level: String,
}

/// Leader election settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LeaderElectionConfig {
    /// Run leader election (needed with more than one replica). Default true.
    pub enabled: bool,
    /// Name of the Lease in the operator's namespace. Default `runctl-leader`.
    pub lease_name: String,
    /// Seconds a Lease stays valid after renewal. Default 15.
    pub lease_duration_seconds: u64,
    /// Seconds between renewals by the leader. Default 5.
    pub renew_interval_seconds: u64,
    /// Seconds between acquire attempts of a standby and retries of a failed renewal. Default 2.
    pub retry_interval_seconds: u64,
}

/// Exponential backoff of failed reconciles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// First retry delay in seconds. Default 1.
    pub base_seconds: u64,
    /// Longest retry delay in seconds. Default 300.
    pub max_seconds: u64,
    /// Seconds before create is tried again after the provider rejected the account
    /// (credentials refused, no funds) while the credentials Secret stayed the same: a top-up
    /// changes nothing runctl can see. Default 600.
    pub account_retry_seconds: u64,
    /// Seconds between looks at the credentials Secret while an account failure blocks create;
    /// a changed Secret is tried at once. Default 60.
    pub credentials_recheck_seconds: u64,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            installation_id: "default".into(),
            namespace: "runctl-system".into(),
            watch_namespace: None,
            metrics_addr: "0.0.0.0:8080".into(),
            log: LogConfig::default(),
            poll_interval_seconds: 30,
            resync_interval_seconds: 60,
            cost_refresh_seconds: DEFAULT_COST_REFRESH_SECONDS,
            leader_election: LeaderElectionConfig::default(),
            backoff: BackoffConfig::default(),
            reconcile_concurrency: 16,
            jobs: JobsConfig::default(),
            reaper: ReaperSettings::default(),
            providers: ProvidersConfig::default(),
            sharding: ShardingConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            lease_name: "runctl-leader".into(),
            lease_duration_seconds: 15,
            renew_interval_seconds: 5,
            retry_interval_seconds: 2,
        }
    }
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base_seconds: 1,
            max_seconds: 300,
            account_retry_seconds: 600,
            credentials_recheck_seconds: 60,
        }
    }
}

/// Values from command-line flags; `None` leaves the lower layers' value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `installationId`.
    pub installation_id: Option<String>,
    /// `namespace`.
    pub namespace: Option<String>,
    /// `watchNamespace`.
    pub watch_namespace: Option<String>,
    /// `metricsAddr`.
    pub metrics_addr: Option<String>,
    /// `log.format`.
    pub log_format: Option<LogFormat>,
    /// `log.level`.
    pub log_level: Option<String>,
    /// `pollIntervalSeconds`.
    pub poll_interval_seconds: Option<u64>,
    /// `leaderElection.enabled`.
    pub leader_election: Option<bool>,
    /// `reconcileConcurrency`.
    pub reconcile_concurrency: Option<u16>,
    /// `sharding.index`.
    pub shard_index: Option<u32>,
}

/// Where a configuration value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag.
    Flag,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("the default"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::Flag => f.write_str("a command-line flag"),
        }
    }
}

/// Errors of loading the configuration; each names the file, variable or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read configuration file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML of the configuration's shape. The message names the field
    /// path and the line.
    #[error("invalid configuration file {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the field path and position.
        message: String,
    },
    /// An environment variable has a value of the wrong form.
    #[error("invalid value {value:?} of environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Its value (none of these variables holds a secret).
        value: String,
        /// What is wrong.
        message: String,
    },
    /// A value breaks a rule.
    #[error("invalid configuration field {field} (set by {origin}): {message}")]
    Invalid {
        /// The field path, in the file's camelCase spelling.
        field: &'static str,
        /// Where the bad value came from.
        origin: Origin,
        /// The rule it breaks.
        message: String,
    },
}

/// Which layer set each field, for error messages.
struct Origins {
    file: Option<(PathBuf, serde_yaml::Value)>,
    set: Vec<(&'static str, Origin)>,
}

impl Origins {
    fn of(&self, field: &'static str) -> Origin {
        if let Some((_, origin)) = self.set.iter().rev().find(|(f, _)| *f == field) {
            return origin.clone();
        }
        match &self.file {
            Some((path, value)) if lookup(value, field).is_some() => Origin::File(path.clone()),
            _ => Origin::Default,
        }
    }
}

fn lookup<'a>(value: &'a serde_yaml::Value, path: &str) -> Option<&'a serde_yaml::Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

impl OperatorConfig {
    /// Loads the configuration: `file` (YAML, optional), then the `RUNCTL_*` and `POD_NAMESPACE`
    /// environment variables, then `overrides`; validates the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_with_env(file, overrides, |var| std::env::var(var).ok())
    }

    /// [`load`](Self::load) with the environment given as a function (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        overrides: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut origins = Origins {
            file: None,
            set: Vec::new(),
        };
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let (config, value) = Self::parse(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?;
                origins.file = Some((path.to_owned(), value));
                config
            }
            None => Self::default(),
        };
        config.apply_env(&env, &mut origins)?;
        config.apply_overrides(overrides, &mut origins);
        config.normalize();
        config.validate_with(&origins)?;
        Ok(config)
    }

    /// Parses YAML text; an empty document yields the defaults. The error message names the field
    /// path and position.
    fn parse(text: &str) -> Result<(Self, serde_yaml::Value), String> {
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if value.is_null() {
            return Ok((Self::default(), serde_yaml::Value::Null));
        }
        let config = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        Ok((config, value))
    }

    /// Parses a YAML configuration document and validates it, without environment or flags.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let path = PathBuf::from("<inline>");
        let (mut config, value) = Self::parse(text).map_err(|message| ConfigError::Parse {
            path: path.clone(),
            message,
        })?;
        config.normalize();
        config.validate_with(&Origins {
            file: Some((path, value)),
            set: Vec::new(),
        })?;
        Ok(config)
    }

    fn apply_env(
        &mut self,
        env: &impl Fn(&str) -> Option<String>,
        origins: &mut Origins,
    ) -> Result<(), ConfigError> {
        let get = |var: &'static str| env(var).filter(|v| !v.trim().is_empty());
        let parse_err = |var: &'static str, value: &str, message: String| ConfigError::Env {
            var,
            value: value.to_owned(),
            message,
        };
        if let Some(v) = get(ENV_INSTALLATION_ID) {
            self.installation_id = v;
            origins
                .set
                .push(("installationId", Origin::Env(ENV_INSTALLATION_ID)));
        }
        if let Some(v) = get(ENV_POD_NAMESPACE) {
            self.namespace = v;
            origins
                .set
                .push(("namespace", Origin::Env(ENV_POD_NAMESPACE)));
        }
        if let Some(v) = get(ENV_WATCH_NAMESPACE) {
            self.watch_namespace = Some(v);
            origins
                .set
                .push(("watchNamespace", Origin::Env(ENV_WATCH_NAMESPACE)));
        }
        if let Some(v) = get(ENV_METRICS_ADDR) {
            self.metrics_addr = v;
            origins
                .set
                .push(("metricsAddr", Origin::Env(ENV_METRICS_ADDR)));
        }
        if let Some(v) = get(ENV_LOG_FORMAT) {
            self.log.format = v.parse().map_err(|e| parse_err(ENV_LOG_FORMAT, &v, e))?;
            origins
                .set
                .push(("log.format", Origin::Env(ENV_LOG_FORMAT)));
        }
        if let Some(v) = get(ENV_LOG_LEVEL) {
            self.log.level = v;
            origins.set.push(("log.level", Origin::Env(ENV_LOG_LEVEL)));
        }
        if let Some(v) = get(ENV_POLL_INTERVAL_SECONDS) {
            self.poll_interval_seconds = v.trim().parse().map_err(|_| {
                parse_err(
                    ENV_POLL_INTERVAL_SECONDS,
                    &v,
                    "expected a whole number of seconds".into(),
                )
            })?;
            origins.set.push((
                "pollIntervalSeconds",
                Origin::Env(ENV_POLL_INTERVAL_SECONDS),
            ));
        }
        if let Some(v) = get(ENV_LEADER_ELECTION) {
            self.leader_election.enabled = parse_bool(&v).ok_or_else(|| {
                parse_err(ENV_LEADER_ELECTION, &v, "expected true or false".into())
            })?;
            origins
                .set
                .push(("leaderElection.enabled", Origin::Env(ENV_LEADER_ELECTION)));
        }
        if let Some(v) = get(ENV_SHARD_INDEX) {
            self.sharding.index = v.trim().parse().map_err(|_| {
                parse_err(
                    ENV_SHARD_INDEX,
                    &v,
                    "expected a shard number (0, 1, ...)".into(),
                )
            })?;
            origins
                .set
                .push(("sharding.index", Origin::Env(ENV_SHARD_INDEX)));
        }
        Ok(())
    }

    fn apply_overrides(&mut self, o: &Overrides, origins: &mut Origins) {
        let mut mark = |field| origins.set.push((field, Origin::Flag));
        if let Some(v) = &o.installation_id {
            self.installation_id.clone_from(v);
            mark("installationId");
        }
        if let Some(v) = &o.namespace {
            self.namespace.clone_from(v);
            mark("namespace");
        }
        if let Some(v) = &o.watch_namespace {
            self.watch_namespace = Some(v.clone());
            mark("watchNamespace");
        }
        if let Some(v) = &o.metrics_addr {
            self.metrics_addr.clone_from(v);
            mark("metricsAddr");
        }
        if let Some(v) = o.log_format {
            self.log.format = v;
            mark("log.format");
        }
        if let Some(v) = &o.log_level {
            self.log.level.clone_from(v);
            mark("log.level");
        }
        if let Some(v) = o.poll_interval_seconds {
            self.poll_interval_seconds = v;
            mark("pollIntervalSeconds");
        }
        if let Some(v) = o.leader_election {
            self.leader_election.enabled = v;
            mark("leaderElection.enabled");
        }
        if let Some(v) = o.reconcile_concurrency {
            self.reconcile_concurrency = v;
            mark("reconcileConcurrency");
        }
        if let Some(v) = o.shard_index {
            self.sharding.index = v;
            mark("sharding.index");
        }
    }

    /// `jobs.callbackUrl` as this shard's machines use it (`{shard}` filled in).
    pub fn shard_callback_url(&self) -> Option<String> {
        let url = self.jobs.callback_url.as_deref()?;
        Some(self.shard().fill(url))
    }

    /// This deployment's shard (validated: the index is below the count).
    pub fn shard(&self) -> crate::runtime::shard::Shard {
        crate::runtime::shard::Shard::new(self.sharding.index, self.sharding.shards)
            .unwrap_or_default()
    }

    /// An empty watch namespace means all namespaces.
    fn normalize(&mut self) {
        if self
            .watch_namespace
            .as_deref()
            .is_some_and(|ns| ns.trim().is_empty())
        {
            self.watch_namespace = None;
        }
    }

    /// `metricsAddr` as a socket address.
    pub fn metrics_socket_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_socket_addr(&self.metrics_addr).map_err(|e| ConfigError::Invalid {
            field: "metricsAddr",
            origin: Origin::Default,
            message: format!("{:?} is not an ip:port address ({e})", self.metrics_addr),
        })
    }

    /// The provider poll interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_interval_seconds)
    }

    /// The first retry delay after a failed reconcile.
    pub fn backoff_base(&self) -> Duration {
        Duration::from_secs(self.backoff.base_seconds)
    }

    /// The longest retry delay after failed reconciles.
    pub fn backoff_max(&self) -> Duration {
        Duration::from_secs(self.backoff.max_seconds)
    }

    /// The job callback endpoint's listen address.
    pub fn callback_socket_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_socket_addr(&self.jobs.callback_addr).map_err(|e| ConfigError::Invalid {
            field: "jobs.callbackAddr",
            origin: Origin::Default,
            message: format!(
                "{:?} is not an ip:port address ({e})",
                self.jobs.callback_addr
            ),
        })
    }

    /// The files the job callback listener serves HTTPS with; `None`: plain HTTP.
    pub fn callback_tls_files(&self) -> Option<crate::callback::TlsFiles> {
        let tls = self.jobs.callback_tls.as_ref()?;
        Some(crate::callback::TlsFiles::new(
            &tls.cert_file,
            &tls.key_file,
        ))
    }

    /// The orphan reaper's settings; `None` when disabled.
    pub fn reaper_config(&self) -> Option<crate::controller::reaper::ReaperConfig> {
        let r = &self.reaper;
        r.enabled.then(|| crate::controller::reaper::ReaperConfig {
            interval: Duration::from_secs(r.interval_seconds.max(1)),
            grace: Duration::from_secs(r.grace_seconds),
            dry_run: r.dry_run,
            max_orphan_fraction: r.max_orphan_fraction.clamp(0.0, 1.0),
            status_namespace: Some(self.namespace.clone()),
        })
    }

    /// The TrainingJob controller's settings.
    pub fn training_job_config(&self) -> crate::controller::training_job::TrainingJobConfig {
        use crate::controller::training_job::TrainingJobConfig;
        use crate::controller::training_job::resources::ReportingSettings;
        TrainingJobConfig {
            reporting: ReportingSettings {
                callback_base_url: self
                    .shard_callback_url()
                    .unwrap_or_default()
                    .trim()
                    .trim_end_matches('/')
                    .to_string(),
                heartbeat_interval_seconds: self.jobs.heartbeat_interval_seconds,
                self_terminate_after_seconds: self.jobs.self_terminate_after_seconds,
                report_grace_seconds: u32::try_from(self.jobs.report_grace_seconds)
                    .unwrap_or(u32::MAX),
            },
            report_grace: Duration::from_secs(self.jobs.report_grace_seconds),
            start_timeout: (self.jobs.start_timeout_seconds > 0)
                .then(|| Duration::from_secs(self.jobs.start_timeout_seconds)),
            heartbeat_timeout: (self.jobs.heartbeat_timeout_seconds > 0)
                .then(|| Duration::from_secs(self.jobs.heartbeat_timeout_seconds)),
            retry: crate::controller::backoff::BackoffConfig {
                base: Duration::from_secs(self.jobs.retry_base_seconds.max(1)),
                max: Duration::from_secs(self.jobs.retry_max_seconds.max(1)),
            },
            callback_check: crate::callback::reach::ReachCheck {
                listener_port: self
                    .callback_socket_addr()
                    .map_or(crate::callback::DEFAULT_PORT, |a| a.port()),
                listener_tls: self.jobs.callback_tls.is_some(),
                allow_internal: self.jobs.allow_cluster_internal_callback_url,
            },
        }
    }

    /// The Lease settings for a replica named `identity`.
    pub fn lease_config(&self, identity: impl Into<String>) -> LeaseConfig {
        let le = &self.leader_election;
        LeaseConfig {
            namespace: self.namespace.clone(),
            name: self.shard().lease_name(&le.lease_name),
            identity: identity.into(),
            lease_duration: Duration::from_secs(le.lease_duration_seconds),
            renew_interval: Duration::from_secs(le.renew_interval_seconds),
            retry_interval: Duration::from_secs(le.retry_interval_seconds),
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
