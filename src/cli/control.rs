//! `runctl suspend|resume|retry tj/NAME`: the job's lifecycle switches. `suspend` and `resume`
//! set `spec.suspend` (a spec change, as Kubernetes Jobs do it); `retry` asks the controller for
//! a new attempt now through the `runctl.dev/retry` annotation, whose value (the request's time)
//! the controller acts on once.

use kube::Api;
use kube::api::{Patch, PatchParams};

use super::{CliError, Cluster, Out, target};
use crate::crd::TrainingJob;
use crate::crd::training_job::{JobPhase, retry_patch};

/// Field manager of the commands' writes (`kubectl get --show-managed-fields` names it).
pub const FIELD_MANAGER: &str = "kubectl-runctl";

/// Flags of `suspend`, `resume` and `retry`.
#[derive(clap::Args, Debug, Clone)]
pub struct ControlArgs {
    /// The job: NAME or tj/NAME.
    pub job: String,
}

/// What a switch does to a job in its current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// Set `spec.suspend: true`.
    Suspend,
    /// Set `spec.suspend: false`.
    Resume,
    /// Set the retry annotation.
    Retry,
}

/// Whether `switch` applies to a job in `phase` with `suspended`; the refusal says why not.
pub fn check(switch: Switch, phase: Option<JobPhase>, suspended: bool) -> Result<(), String> {
    let finished = phase.filter(|p| p.is_terminal());
    match (switch, finished) {
        (Switch::Suspend | Switch::Resume, Some(p)) => Err(format!(
            "the job has finished ({}); there is nothing to {}",
            p.as_str(),
            if switch == Switch::Suspend { "suspend" } else { "resume" }
        )),
        (Switch::Suspend, None) if suspended => Err("the job is suspended already".into()),
        (Switch::Resume, None) if !suspended => Err("the job is not suspended".into()),
        (Switch::Retry, Some(JobPhase::Succeeded)) => Err(
            "the job succeeded; a succeeded job is not retried (delete it and apply it again to train again)"
                .into(),
        ),
        (Switch::Retry, _) if suspended => {
            Err("the job is suspended; resume it to start a new attempt".into())
        }
        _ => Ok(()),
    }
}

/// The merge patch of a switch (`token`: the retry request's value).
pub fn patch(switch: Switch, token: &str) -> serde_json::Value {
    match switch {
        Switch::Suspend => serde_json::json!({"spec": {"suspend": true}}),
        Switch::Resume => serde_json::json!({"spec": {"suspend": false}}),
        Switch::Retry => retry_patch(token),
    }
}

async fn apply(
    cluster: &Cluster,
    args: &ControlArgs,
    out: &mut Out,
    switch: Switch,
) -> Result<(), CliError> {
    let job = target::fetch_job(cluster, &args.job).await?;
    let name = job.metadata.name.clone().unwrap_or_default();
    let phase = job.status.as_ref().and_then(|s| s.phase);
    check(switch, phase, job.spec.suspend)
        .map_err(|why| CliError::Refused(format!("trainingjob/{name}: {why}")))?;
    let api: Api<TrainingJob> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let token = out.now.to_string();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Merge(patch(switch, &token)),
    )
    .await
    .map_err(|e| CliError::api(format!("patch TrainingJob {name}"), e))?;
    let done = match switch {
        Switch::Suspend => "suspended (its machine is released; attempts and cost are kept)",
        Switch::Resume => "resumed",
        Switch::Retry => "retry requested (a new attempt starts now)",
    };
    out.line(&format!("trainingjob.runctl.dev/{name} {done}"))?;
    Ok(())
}

/// Suspends the job.
pub async fn suspend(cluster: &Cluster, args: &ControlArgs, out: &mut Out) -> Result<(), CliError> {
    apply(cluster, args, out, Switch::Suspend).await
}

/// Resumes the job.
pub async fn resume(cluster: &Cluster, args: &ControlArgs, out: &mut Out) -> Result<(), CliError> {
    apply(cluster, args, out, Switch::Resume).await
}

/// Starts a new attempt.
pub async fn retry(cluster: &Cluster, args: &ControlArgs, out: &mut Out) -> Result<(), CliError> {
    apply(cluster, args, out, Switch::Retry).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_refuse_what_cannot_apply() {
        use JobPhase::*;
        assert!(check(Switch::Suspend, Some(Running), false).is_ok());
        assert!(check(Switch::Suspend, None, false).is_ok());
        assert!(check(Switch::Suspend, Some(Suspended), true).is_err());
        assert!(check(Switch::Suspend, Some(Succeeded), false).is_err());
        assert!(check(Switch::Resume, Some(Suspended), true).is_ok());
        assert!(check(Switch::Resume, Some(Running), false).is_err());
        assert!(check(Switch::Retry, Some(Failed), false).is_ok());
        assert!(check(Switch::Retry, Some(Running), false).is_ok());
        let why = check(Switch::Retry, Some(Succeeded), false).unwrap_err();
        assert!(why.contains("not retried"), "{why}");
        assert!(check(Switch::Retry, Some(Suspended), true).is_err());
    }

    #[test]
    fn patches_touch_one_field() {
        assert_eq!(
            patch(Switch::Retry, "t"),
            serde_json::json!({"metadata": {"annotations": {"runctl.dev/retry": "t"}}})
        );
        assert_eq!(
            patch(Switch::Suspend, ""),
            serde_json::json!({"spec": {"suspend": true}})
        );
    }
}
