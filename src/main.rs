//! The `runctl` binary: `run` (the operator), `demo` (the operator against an embedded API
//! server and the simulated cloud), `crd` (print or write the CRDs), and the user commands of
//! [`runctl::cli`] (`get`, `describe`, `logs`, `suspend`, `resume`, `retry`, `plan`, `cost`,
//! `doctor`), which the same binary also answers as the kubectl plugin `kubectl-runctl`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use runctl::cli;
use runctl::config::{OperatorConfig, Overrides};
use runctl::telemetry::LogFormat;

// jemalloc with runctl's settings: lower fragmentation than glibc malloc with a fleet of small,
// long-lived objects in the caches (measured in `docs/benchmarks.md`).
runctl::use_jemalloc!();

#[derive(Parser)]
#[command(
    name = "runctl",
    version,
    about = "Kubernetes operator that rents GPU machines for training jobs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    cluster: cli::ClusterArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
    Run(RunArgs),
    /// Run the operator end to end with no cluster and no cloud: an embedded API test server,
    /// the simulated cloud, and the example manifests in examples/sim/.
    Demo {
        /// Speed-up of the simulated cloud's timings (1 = boot in a few seconds).
        #[arg(long, default_value_t = 1)]
        speed: u64,
    },
    /// Print both CRDs as YAML, or write them to a directory (`crds/`).
    Crd {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Print which shard owns each namespace when the cluster is split into --shards (no
    /// cluster needed).
    Shard(cli::shard::ShardArgs),
    /// List TrainingJobs: phase, provider, machine, attempts, price and cost.
    Get(cli::get::GetArgs),
    /// Show a TrainingJob: attempts, placement (with rejected offers), cost, conditions, events.
    Describe(cli::describe::DescribeArgs),
    /// Print (or follow) a job's workload output.
    Logs(cli::logs::LogsArgs),
    /// Suspend a job: its machine is released, its attempts and cost are kept.
    Suspend(cli::control::ControlArgs),
    /// Resume a suspended job.
    Resume(cli::control::ControlArgs),
    /// Start a new attempt now (ends the current one; a failed job runs again).
    Retry(cli::control::ControlArgs),
    /// Show where a job would run and what it would cost, without creating anything.
    Plan(cli::plan::PlanArgs),
    /// Spend by namespace, provider and job over a period, from the jobs' status.
    Cost(cli::cost::CostArgs),
    /// Check the installation: operator, CRDs, callback endpoint, provider credentials.
    Doctor(cli::doctor::DoctorArgs),
}

/// Flags of `runctl run`; each overrides the configuration file and environment.
#[derive(Args)]
struct RunArgs {
    /// Configuration file (YAML); see docs/configuration.md.
    #[arg(long, env = "RUNCTL_CONFIG")]
    config: Option<PathBuf>,
    /// This installation's id, put on every machine's ownership tags.
    #[arg(long)]
    installation_id: Option<String>,
    /// Namespace of the leader-election Lease (default: POD_NAMESPACE, else runctl-system).
    #[arg(long)]
    namespace: Option<String>,
    /// Only watch this namespace.
    #[arg(long)]
    watch_namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<LogFormat>,
    /// Log level (RUST_LOG wins when set).
    #[arg(long)]
    log_level: Option<String>,
    /// Seconds between provider polls.
    #[arg(long)]
    poll_interval_seconds: Option<u64>,
    /// Enable or disable leader election.
    #[arg(long)]
    leader_election: Option<bool>,
    /// Reconciles running at once.
    #[arg(long)]
    reconcile_concurrency: Option<u16>,
    /// This deployment's shard (sharding.index), from 0 to sharding.shards - 1.
    #[arg(long)]
    shard_index: Option<u32>,
}

impl RunArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            installation_id: self.installation_id.clone(),
            namespace: self.namespace.clone(),
            watch_namespace: self.watch_namespace.clone(),
            metrics_addr: self.metrics_addr.clone(),
            log_format: self.log_format,
            log_level: self.log_level.clone(),
            poll_interval_seconds: self.poll_interval_seconds,
            leader_election: self.leader_election,
            reconcile_concurrency: self.reconcile_concurrency,
            shard_index: self.shard_index,
        }
    }
}

async fn run(args: RunArgs) -> Result<(), String> {
    let config = OperatorConfig::load(args.config.as_deref(), &args.overrides())
        .map_err(|e| e.to_string())?;
    runctl::telemetry::init(config.log.format, &config.log.level).map_err(|e| e.to_string())?;
    let client = runctl::runtime::client::infer().await?;
    let identity = runctl::runtime::leader::default_identity();
    let registry = std::sync::Arc::new(
        runctl::provider::ProviderRegistry::new(
            config.installation_id.clone(),
            config.providers.clone(),
        )
        .with_client(client.clone()),
    );
    let operator = runctl::operator::Operator::from_config(client, &config, registry, &identity)
        .map_err(|e| e.to_string())?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _signals =
        runctl::runtime::shutdown::cancel_on_signal(shutdown.clone()).map_err(|e| e.to_string())?;
    operator.run(shutdown).await.map_err(|e| e.to_string())
}

async fn demo(speed: u64) -> Result<(), String> {
    // Keep the table readable: only warnings and errors are logged.
    let _ = runctl::telemetry::init(LogFormat::Text, "warn");
    runctl::demo::run(speed).await.map_err(|e| e.to_string())
}

fn write_crds(dir: Option<PathBuf>) -> std::io::Result<()> {
    let crds = runctl::crd::all();
    match dir {
        None => {
            for crd in &crds {
                print!("{}", runctl::crd::to_yaml(crd));
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for crd in &crds {
                let path = dir.join(runctl::crd::file_name(crd));
                std::fs::write(&path, runctl::crd::to_yaml(crd))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

/// Runs a user command against the kubeconfig's cluster.
async fn user_command(command: Command, args: cli::ClusterArgs) -> Result<(), cli::CliError> {
    let cluster = cli::Cluster::connect(&args).await?;
    let out = &mut cli::Out::stdout();
    match command {
        Command::Get(a) => cli::get::run(&cluster, &a, out).await,
        Command::Describe(a) => cli::describe::run(&cluster, &a, out).await,
        Command::Logs(a) => cli::logs::run(&cluster, &a, out).await,
        Command::Suspend(a) => cli::control::suspend(&cluster, &a, out).await,
        Command::Resume(a) => cli::control::resume(&cluster, &a, out).await,
        Command::Retry(a) => cli::control::retry(&cluster, &a, out).await,
        Command::Plan(a) => cli::plan::run(&cluster, &a, out).await,
        Command::Cost(a) => cli::cost::run(&cluster, &a, out).await,
        Command::Doctor(a) => cli::doctor::run(&cluster, &a, out).await,
        Command::Run(_) | Command::Demo { .. } | Command::Crd { .. } | Command::Shard(_) => Ok(()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args).await,
        Command::Demo { speed } => demo(speed).await,
        Command::Crd { write } => write_crds(write).map_err(|e| e.to_string()),
        Command::Shard(a) => cli::shard::render(&a).map(|text| print!("{text}")),
        command => user_command(command, cli.cluster)
            .await
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runctl: {e}");
            ExitCode::FAILURE
        }
    }
}
