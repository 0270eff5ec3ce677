//! `runctl describe tj/NAME`: a job's attempts, placement, cost, conditions and events.

use super::{CliError, Cluster, Out};

/// Flags of `describe`.
#[derive(clap::Args, Debug, Clone)]
pub struct DescribeArgs {
    /// The job: NAME or tj/NAME.
    pub job: String,
}

/// Prints the description.
pub async fn run(_cluster: &Cluster, _args: &DescribeArgs, _out: &mut Out) -> Result<(), CliError> {
    Ok(())
}
