//! `runctl doctor`: whether runctl is installed and working.

use super::{CliError, Cluster, Out};

/// Flags of `doctor`.
#[derive(clap::Args, Debug, Clone)]
pub struct DoctorArgs {
    /// The operator's namespace.
    #[arg(long, default_value = "runctl-system")]
    pub operator_namespace: String,
}

/// Prints the checks.
pub async fn run(_cluster: &Cluster, _args: &DoctorArgs, _out: &mut Out) -> Result<(), CliError> {
    Ok(())
}
