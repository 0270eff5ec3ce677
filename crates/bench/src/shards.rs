//! Sharded runs (`runctl-bench --shards=S`): the jobs spread over namespaces that split evenly
//! between the shards, shard 0 runs in the benchmark's process (its client is the counted one)
//! and every other shard in a child process of its own (this program run with
//! [`SERVE_SHARD_FLAG`]), so that each shard's memory and CPU are measured apart. Each shard is
//! the operator `runctl run` starts ([`Operator::from_config`]) with `sharding.index` set, its
//! callback listener on `127.0.0.1<index>` (the URL `http://127.0.0.1{shard}:PORT` reaches it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use runctl::config::{OperatorConfig, Overrides};
use runctl::operator::Operator;
use runctl::provider::ProviderRegistry;
use runctl::runtime::shard::Shard;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::BenchError;
use super::child::Piped;
use super::measure::Process;

/// The hidden argument that makes `runctl-bench` run one shard of the operator (see
/// [`serve_shard_child`]).
pub const SERVE_SHARD_FLAG: &str = "--serve-shard";

/// The argument after [`SERVE_SHARD_FLAG`] that names the shard's configuration file.
const CONFIG_ARG: &str = "--config=";

/// Namespaces per shard in a sharded run.
const NAMESPACES_PER_SHARD: usize = 8;

/// How long a shard's process may take to start.
const SHARD_STARTUP: Duration = Duration::from_secs(60);

/// The namespaces the jobs go to: `default` in an unsharded run; else `bench-<i>` names chosen
/// so that each shard owns [`NAMESPACES_PER_SHARD`] of them.
pub fn namespaces(shards: u32) -> Vec<String> {
    if shards <= 1 {
        return vec![super::NAMESPACE.to_string()];
    }
    let mut per_shard = vec![0usize; shards as usize];
    let mut out = Vec::new();
    for i in 0.. {
        if per_shard.iter().all(|n| *n == NAMESPACES_PER_SHARD) {
            break;
        }
        let name = format!("bench-{i}");
        let owner = Shard::of(&name, shards) as usize;
        if per_shard[owner] < NAMESPACES_PER_SHARD {
            per_shard[owner] += 1;
            out.push(name);
        }
    }
    out
}

/// Sets `config` up as shard `index` of `shards`, its callback listener on port `port`.
pub fn configure(config: &mut OperatorConfig, index: u32, shards: u32, port: u16) {
    config.sharding.shards = shards;
    config.sharding.index = index;
    config.jobs.callback_addr = format!("127.0.0.1{index}:{port}");
    config.jobs.callback_url = Some(format!("http://127.0.0.1{{shard}}:{port}"));
}

/// Shards 1 and up, each in a child process; killed when dropped.
#[derive(Default)]
pub(crate) struct ShardChildren {
    children: Vec<ShardChild>,
    _dir: Option<tempfile::TempDir>,
}

struct ShardChild {
    index: u32,
    process: Piped,
}

impl ShardChildren {
    /// Starts shards 1..`shards` of `config` (each with its own index) as child processes of
    /// `program`, reaching the API server through `kubeconfig`; returns once each has started.
    pub async fn spawn(
        program: &Path,
        kubeconfig: &Path,
        config: &OperatorConfig,
        shards: u32,
        port: u16,
    ) -> Result<Self, BenchError> {
        let fail = |what: String| BenchError::Operator(format!("shard process: {what}"));
        let dir = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
        let mut children = Vec::new();
        for index in 1..shards {
            let mut c = config.clone();
            configure(&mut c, index, shards, port);
            let path = dir.path().join(format!("shard-{index}.yaml"));
            let yaml = serde_yaml::to_string(&c).map_err(|e| fail(e.to_string()))?;
            std::fs::write(&path, yaml).map_err(|e| fail(e.to_string()))?;
            children.push(ShardChild::spawn(program, kubeconfig, &path, index).await?);
        }
        Ok(Self {
            children,
            _dir: Some(dir),
        })
    }

    /// The shards' processes, by name, for the meter.
    pub fn processes(&self) -> Vec<(String, Process)> {
        self.children
            .iter()
            .filter_map(|c| {
                let pid = c.process.child.id()?;
                Some((format!("operator shard {}", c.index), Process::Pid(pid)))
            })
            .collect()
    }

    /// Stops every shard (closes its stdin), killing any that does not stop in time.
    pub async fn shutdown(self) {
        for c in self.children {
            c.process.shutdown(Duration::from_secs(15)).await;
        }
    }
}

impl ShardChild {
    async fn spawn(
        program: &Path,
        kubeconfig: &Path,
        config: &Path,
        index: u32,
    ) -> Result<Self, BenchError> {
        let fail = |what: String| BenchError::Operator(format!("shard {index} process: {what}"));
        let mut command = Command::new(program);
        command
            .args([
                SERVE_SHARD_FLAG,
                &format!("{CONFIG_ARG}{}", config.display()),
            ])
            .env("KUBECONFIG", kubeconfig);
        match Piped::spawn(command, SHARD_STARTUP).await {
            Ok((process, line)) if line == READY => Ok(Self { index, process }),
            Ok((_, line)) => Err(fail(format!("printed {line:?} instead of {READY:?}"))),
            Err(e) => Err(fail(e)),
        }
    }
}

/// What a shard's process prints once its operator runs.
const READY: &str = "shard running";

/// Why a shard's process could not run.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The arguments after [`SERVE_SHARD_FLAG`] are not `--config=PATH`.
    #[error("expected {CONFIG_ARG}PATH after {SERVE_SHARD_FLAG}")]
    Usage,
    /// The configuration did not load.
    #[error("configuration: {0}")]
    Config(#[from] runctl::config::ConfigError),
    /// No client of the API server (`KUBECONFIG`).
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    /// The operator did not start or stopped with an error.
    #[error("operator: {0}")]
    Operator(#[from] runctl::operator::OperatorError),
}

/// A shard's child process (`runctl-bench --serve-shard --config=PATH`, `args` being what follows
/// the flag): runs the operator of that configuration (`KUBECONFIG` names the API server), prints
/// [`READY`] once it runs, and runs until stdin closes.
pub async fn serve_shard_child(args: &[String]) -> Result<(), ShardError> {
    let path = match args {
        [arg] => arg
            .strip_prefix(CONFIG_ARG)
            .map(PathBuf::from)
            .ok_or(ShardError::Usage)?,
        _ => return Err(ShardError::Usage),
    };
    let config = OperatorConfig::load(Some(&path), &Overrides::default())?;
    let client = Client::try_default().await?;
    let registry = Arc::new(ProviderRegistry::new(
        config.installation_id.clone(),
        config.providers.clone(),
    ));
    let identity = format!("runctl-bench-shard-{}", config.sharding.index);
    let operator = Operator::from_config(client, &config, registry, &identity)?;
    let stop = CancellationToken::new();
    let running = tokio::spawn(operator.run(stop.clone()));
    println!("{READY}");
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    stop.cancel();
    match tokio::time::timeout(Duration::from_secs(10), running).await {
        Ok(Ok(result)) => result.map_err(ShardError::from),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sharded_run_splits_its_namespaces_evenly() {
        assert_eq!(namespaces(1), ["default"]);
        let ns = namespaces(2);
        assert_eq!(ns.len(), 2 * NAMESPACES_PER_SHARD);
        for s in 0..2 {
            let owned = ns.iter().filter(|n| Shard::of(n, 2) == s).count();
            assert_eq!(owned, NAMESPACES_PER_SHARD);
        }
    }
}
