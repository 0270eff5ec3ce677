//! `runctl logs tj/NAME [-f] [--attempt N] [--since D] [--tail N]`: the workload's output.

use super::{CliError, Cluster, Out};

/// Flags of `logs`.
#[derive(clap::Args, Debug, Clone)]
pub struct LogsArgs {
    /// The job: NAME or tj/NAME.
    pub job: String,
    /// Keep streaming until the attempt ends.
    #[arg(short, long)]
    pub follow: bool,
    /// The attempt (default: the latest).
    #[arg(long)]
    pub attempt: Option<u32>,
}

/// Prints the job's logs.
pub async fn run(_cluster: &Cluster, _args: &LogsArgs, _out: &mut Out) -> Result<(), CliError> {
    Err(CliError::Refused("logs: not built yet".into()))
}
