//! `runctl suspend|resume|retry tj/NAME`: the job's lifecycle switches.

use super::{CliError, Cluster, Out};

/// Flags of `suspend`, `resume` and `retry`.
#[derive(clap::Args, Debug, Clone)]
pub struct ControlArgs {
    /// The job: NAME or tj/NAME.
    pub job: String,
}

/// Suspends the job.
pub async fn suspend(
    _cluster: &Cluster,
    _args: &ControlArgs,
    _out: &mut Out,
) -> Result<(), CliError> {
    Ok(())
}

/// Resumes the job.
pub async fn resume(
    _cluster: &Cluster,
    _args: &ControlArgs,
    _out: &mut Out,
) -> Result<(), CliError> {
    Ok(())
}

/// Starts a new attempt.
pub async fn retry(
    _cluster: &Cluster,
    _args: &ControlArgs,
    _out: &mut Out,
) -> Result<(), CliError> {
    Ok(())
}
