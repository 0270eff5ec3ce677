//! `runctl plan -f job.yaml`: where a job would run and what it would cost, without creating
//! anything. The manifest is validated by the API server (a dry-run create: schema and CEL rules,
//! exactly as `kubectl apply` would), then priced with the TrainingJob controller's own offer
//! collection ([`offers::collect`]) under the operator's configuration (its ConfigMap in the
//! cluster, or `--config`), the cluster's MachineClasses and the providers' credentials Secrets.
//! The choice printed is the one the controller makes for the job's first attempt.

use std::path::PathBuf;
use std::sync::Arc;

use kube::Api;
use kube::api::PostParams;

use super::describe::offer_text;
use super::output::{Table, Tone, duration, money, per_hour};
use super::{CliError, Cluster, OperatorArgs, Out};
use crate::config::OperatorConfig;
use crate::controller::Context;
use std::collections::BTreeMap;

use crate::controller::training_job::{self, offers};
use crate::crd::TrainingJob;
use crate::crd::training_job::{JobPhase, PlacementStatus, TrainingJobStatus};
use crate::metrics::Metrics;
use crate::provider::ProviderRegistry;

/// Flags of `plan`.
#[derive(clap::Args, Debug, Clone)]
pub struct PlanArgs {
    /// The TrainingJob manifest (`-` for standard input).
    #[arg(short, long)]
    pub filename: PathBuf,
    /// Where the operator's configuration is.
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// What `plan` found.
#[derive(Clone, Debug)]
pub struct Planned {
    /// The job as read from the manifest, its namespace filled in.
    pub job: TrainingJob,
    /// Whether a job of that name exists already (the plan is for a new one).
    pub exists: bool,
    /// The offers, as the controller writes them into `status.placement` on its first pass:
    /// `chosen` is the first attempt's offer.
    pub placement: PlacementStatus,
    /// The job's phase after that pass (`Provisioning` when an attempt starts; `Failed` or
    /// `Pending` when it cannot, with the reason and message the job would show).
    pub phase: Option<JobPhase>,
    /// The reason the job would show.
    pub reason: Option<String>,
    /// The message the job would show.
    pub message: Option<String>,
}

/// Prints the plan.
pub async fn run(cluster: &Cluster, args: &PlanArgs, out: &mut Out) -> Result<(), CliError> {
    let job = read_manifest(&args.filename)?;
    let config = args.operator.load(cluster).await?;
    out.progress("validating the job and pricing its offers…");
    let planned = plan(cluster, job, &config).await;
    out.progress_done();
    let planned = planned?;
    render(&planned, out)?;
    if planned.placement.chosen.is_none() {
        return Err(CliError::Refused(
            "the job would start no attempt (see above)".into(),
        ));
    }
    Ok(())
}

/// The TrainingJob in a manifest file (the first of a multi-document file).
pub fn read_manifest(path: &std::path::Path) -> Result<TrainingJob, CliError> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
    parse_manifest(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

/// The first TrainingJob of a YAML (or JSON) text.
pub fn parse_manifest(text: &str) -> Result<TrainingJob, String> {
    use serde::Deserialize;
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_json::Value::deserialize(doc).map_err(|e| e.to_string())?;
        if value.get("kind").and_then(|k| k.as_str()) == Some("TrainingJob") {
            return serde_json::from_value(value)
                .map_err(|e| format!("not a valid TrainingJob: {e}"));
        }
    }
    Err("holds no TrainingJob".into())
}

/// Validates `job` with a dry-run create and collects its offers under `config`.
pub async fn plan(
    cluster: &Cluster,
    mut job: TrainingJob,
    config: &OperatorConfig,
) -> Result<Planned, CliError> {
    let ns = job
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| cluster.namespace.clone());
    job.metadata.namespace = Some(ns.clone());
    let exists = dry_run(cluster, &job, &ns).await?;
    let registry = Arc::new(
        ProviderRegistry::new(config.installation_id.clone(), config.providers.clone())
            .with_client(cluster.client.clone()),
    );
    let mut settings = crate::operator::controller_config(config, "runctl-plan");
    // Classes are read only when the job names some (reading them needs a cluster-wide list).
    settings.machine_classes = job.spec.placement.machine_classes.is_some();
    let ctx = Context::new(
        cluster.client.clone(),
        registry,
        Arc::new(Metrics::new()),
        settings,
    );
    let offers = offers::collect(&ctx, &job.spec.placement, job.spec.nodes(), &ns).await;
    // The controller's own first pass over a new job with these offers.
    let job_config = config.training_job_config();
    let settings = training_job::plan_settings(&ctx, &job_config);
    let name = job.metadata.name.clone().unwrap_or_default();
    let status = TrainingJobStatus::default();
    let reports = BTreeMap::new();
    let first = training_job::plan::plan(training_job::plan::Input {
        job: &name,
        spec: &job.spec,
        status: &status,
        generation: 1,
        machines: &[],
        reports: &reports,
        prior_success: None,
        offers: Some(&offers),
        retry_request: None,
        settings: &settings,
        now: jiff::Timestamp::now(),
    });
    let decided = first.status;
    Ok(Planned {
        job,
        exists,
        placement: decided.placement.unwrap_or_default(),
        phase: decided.phase,
        reason: decided.reason,
        message: decided.message,
    })
}

/// A dry-run create: the API server checks the schema and CEL rules and stores nothing.
/// `Ok(true)` when a job of that name exists already.
async fn dry_run(cluster: &Cluster, job: &TrainingJob, ns: &str) -> Result<bool, CliError> {
    let api: Api<TrainingJob> = Api::namespaced(cluster.client.clone(), ns);
    let pp = PostParams {
        dry_run: true,
        field_manager: Some(super::control::FIELD_MANAGER.into()),
    };
    match api.create(&pp, job).await {
        Ok(_) => Ok(false),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => Err(CliError::Usage(
            format!("the API server refuses the job: {}", s.message),
        )),
        Err(e) => Err(CliError::api("validate the job (dry-run create)", e)),
    }
}

/// Renders the plan.
pub fn render(p: &Planned, out: &mut Out) -> std::io::Result<()> {
    let name = p.job.metadata.name.as_deref().unwrap_or("?");
    let ns = p.job.metadata.namespace.as_deref().unwrap_or("?");
    out.line(&format!(
        "Plan for trainingjob/{name} in namespace {ns} (nothing was created)"
    ))?;
    if p.exists {
        out.line(&format!(
            "Note: trainingjob/{name} exists already; this is the plan of its first attempt, as if it were new."
        ))?;
    }
    out.line("")?;
    match &p.placement.chosen {
        Some(o) => {
            let nodes = p.job.spec.nodes();
            let mut chosen = out.paint(&offer_text(o), Tone::Good);
            if nodes > 1 {
                chosen.push_str(&format!(", {nodes} nodes"));
            }
            out.line(&format!("Would run on:  {chosen}"))?;
            let price = o.price_per_hour.map(|per_node| per_node * f64::from(nodes));
            out.line(&format!("Expected cost: {}", expected_cost(p, price)))?;
        }
        None => {
            let why = match (&p.phase, &p.reason) {
                (Some(phase), Some(reason)) => {
                    format!("nothing: the job would be {} ({reason})", phase.as_str())
                }
                _ => "nothing".to_string(),
            };
            out.line(&format!("Would run on:  {}", out.paint(&why, Tone::Bad)))?;
            if let Some(m) = &p.message {
                out.line(&format!("               {m}"))?;
            }
        }
    }
    if !p.placement.remaining.is_empty() {
        out.line("If it has no capacity, next:")?;
        for (i, o) in p.placement.remaining.iter().enumerate() {
            out.line(&format!("  {}. {}", i + 1, offer_text(o)))?;
        }
    }
    if !p.placement.rejected.is_empty() {
        out.line("Rejected:")?;
        let mut t = Table::new(&["OFFER", "REASON", "MESSAGE"]).indented(2);
        for r in &p.placement.rejected {
            t.toned_row(vec![
                (offer_text(&r.offer), None),
                (r.reason.clone(), Some(Tone::Wait)),
                (r.message.clone().unwrap_or_else(|| "-".into()), None),
            ]);
        }
        out.table(&t)?;
    }
    Ok(())
}

/// `$1.10 per hour; $2.20 at the deadline (2h); the budget of $10.00 lasts 9h5m` (`price`: of
/// every node together).
fn expected_cost(p: &Planned, price: Option<f64>) -> String {
    let Some(price) = price else {
        return "unknown (the provider gave no price)".into();
    };
    let mut parts = vec![format!(
        "{} per hour",
        per_hour(Some(price)).trim_end_matches("/h")
    )];
    let spec = &p.job.spec;
    match spec.active_deadline_seconds {
        Some(d) => parts.push(format!(
            "{} at the deadline ({})",
            money(Some(price * d as f64 / 3600.0)),
            duration(jiff::SignedDuration::from_secs(d))
        )),
        None => parts.push("no deadline (activeDeadlineSeconds) bounds it".into()),
    }
    if let Some(max) = spec.max_total_cost
        && price > 0.0
    {
        let secs = (max / price * 3600.0) as i64;
        parts.push(format!(
            "the budget of {} lasts {}",
            money(Some(max)),
            duration(jiff::SignedDuration::from_secs(secs))
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_training_job_of_a_manifest_is_read() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\napiVersion: runctl.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: train}\nspec:\n  placement: {provider: sim}\n  workload: {image: busybox}\n";
        let job = parse_manifest(text).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("train"));
        assert!(
            parse_manifest("kind: ConfigMap\n")
                .unwrap_err()
                .contains("no TrainingJob")
        );
        assert!(
            parse_manifest("kind: TrainingJob\nspec: 3\n")
                .unwrap_err()
                .contains("not a valid")
        );
    }
}
