//! `runctl cost [--since D] [--by namespace|provider|job] [-A]`: spend from the jobs' status.

use super::{CliError, Cluster, Out};

/// Flags of `cost`.
#[derive(clap::Args, Debug, Clone)]
pub struct CostArgs {
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// Prints the spend.
pub async fn run(_cluster: &Cluster, _args: &CostArgs, _out: &mut Out) -> Result<(), CliError> {
    Ok(())
}
