//! `runctl get [NAME...] [-A]`: TrainingJobs as a table.

use super::{CliError, Cluster, Out};

/// Flags of `get`.
#[derive(clap::Args, Debug, Clone)]
pub struct GetArgs {
    /// Jobs to show (default: all in the namespace).
    pub jobs: Vec<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// Prints the table.
pub async fn run(_cluster: &Cluster, _args: &GetArgs, _out: &mut Out) -> Result<(), CliError> {
    Ok(())
}
