//! `runctl plan -f job.yaml`: where `auto` would place a job and what it would cost.

use super::{CliError, Cluster, Out};

/// Flags of `plan`.
#[derive(clap::Args, Debug, Clone)]
pub struct PlanArgs {
    /// The TrainingJob manifest (`-` for standard input).
    #[arg(short, long)]
    pub filename: std::path::PathBuf,
}

/// Prints the plan.
pub async fn run(_cluster: &Cluster, _args: &PlanArgs, _out: &mut Out) -> Result<(), CliError> {
    Ok(())
}
