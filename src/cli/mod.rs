//! The commands ML engineers run against a cluster with runctl installed, answered by the same
//! binary as `runctl <command>` and, installed as `kubectl-runctl` (see `plugins/krew/`), as the
//! kubectl plugin `kubectl runctl <command>`: `get`, `describe`, `logs`, `suspend`, `resume`,
//! `retry`, `plan`, `cost` and `doctor` (and `shard`, which needs no cluster). docs/cli.md
//! describes each.
//!
//! Every command reads and writes through the user's kubeconfig (the current context and its
//! namespace unless `--context` / `-n` say otherwise) and prints through [`output::Out`], which
//! takes the time as an input so that the tests compare whole outputs with snapshots.

pub mod control;
pub mod cost;
pub mod describe;
pub mod doctor;
pub mod get;
pub mod logs;
pub mod output;
pub mod plan;
pub mod shard;
pub mod target;

use kube::Client;

pub use output::Out;

/// Why a command failed; printed as `runctl: <message>` with exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No client could be built from the kubeconfig.
    #[error("cannot reach the cluster: {0}")]
    Connect(String),
    /// A request to the API server failed.
    #[error("{what}: {source}")]
    Api {
        /// What was asked.
        what: String,
        /// The API server's answer.
        #[source]
        source: kube::Error,
    },
    /// The named object does not exist.
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        /// Kind.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The arguments or the input file are wrong.
    #[error("{0}")]
    Usage(String),
    /// The command cannot do what was asked in the object's current state.
    #[error("{0}")]
    Refused(String),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// A check of `doctor` failed (the report says which).
    #[error("{0} check(s) failed")]
    ChecksFailed(usize),
}

impl CliError {
    /// An API error, with what was asked.
    pub fn api(what: impl Into<String>, source: kube::Error) -> Self {
        Self::Api {
            what: what.into(),
            source,
        }
    }
}

/// Options every command takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Namespace (default: the kubeconfig context's namespace).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
}

/// Where a command that needs the operator's configuration (`plan`, `doctor`) finds it.
#[derive(clap::Args, Debug, Clone)]
pub struct OperatorArgs {
    /// The operator's namespace.
    #[arg(long, default_value = "runctl-system")]
    pub operator_namespace: String,
    /// The ConfigMap holding the operator's configuration (the chart's `<release>-config`).
    #[arg(long, default_value = "runctl-config")]
    pub config_map: String,
    /// The operator's configuration file, instead of its ConfigMap.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
}

/// Key of the configuration file in the chart's ConfigMap.
pub const CONFIG_KEY: &str = "config.yaml";

impl OperatorArgs {
    /// The operator's configuration: `--config`, else its ConfigMap in the cluster.
    pub async fn load(&self, cluster: &Cluster) -> Result<crate::config::OperatorConfig, CliError> {
        use crate::config::OperatorConfig;
        if let Some(path) = &self.config {
            return OperatorConfig::load(Some(path), &Default::default())
                .map_err(|e| CliError::Usage(e.to_string()));
        }
        let (ns, name) = (&self.operator_namespace, &self.config_map);
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(cluster.client.clone(), ns);
        let cm = api.get(name).await.map_err(|e| {
            CliError::Usage(format!(
                "cannot read the operator's configuration (ConfigMap {ns}/{name}): {e}; pass --operator-namespace/--config-map, or --config FILE"
            ))
        })?;
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get(CONFIG_KEY))
            .ok_or_else(|| CliError::Usage(format!("ConfigMap {ns}/{name} has no {CONFIG_KEY}")))?;
        OperatorConfig::from_yaml(text).map_err(|e| CliError::Usage(e.to_string()))
    }
}

/// The cluster a command talks to: a client and the namespace it works in.
#[derive(Clone)]
pub struct Cluster {
    /// Client with runctl's `User-Agent`.
    pub client: Client,
    /// `-n`, else the context's namespace.
    pub namespace: String,
}

impl Cluster {
    /// Connects with the kubeconfig (`KUBECONFIG`, `~/.kube/config`, or in-cluster config).
    pub async fn connect(args: &ClusterArgs) -> Result<Self, CliError> {
        let options = kube::config::KubeConfigOptions {
            context: args.context.clone(),
            ..Default::default()
        };
        let config = match kube::Config::from_kubeconfig(&options).await {
            Ok(config) => config,
            Err(kubeconfig) if args.context.is_none() => {
                kube::Config::incluster().map_err(|_| CliError::Connect(kubeconfig.to_string()))?
            }
            Err(e) => return Err(CliError::Connect(e.to_string())),
        };
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client =
            crate::runtime::client::client(config).map_err(|e| CliError::Connect(e.to_string()))?;
        Ok(Self { client, namespace })
    }

    /// A cluster from an existing client (tests, `runctl demo`).
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
        }
    }
}
