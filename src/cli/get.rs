//! `runctl get [NAME...] [-A]`: TrainingJobs as a table (more than the CRD's printer columns:
//! attempts, price, cost and progress side by side).

use kube::Api;
use kube::api::ListParams;

use super::output::{Table, Tone, money, or_dash, per_hour};
use super::{CliError, Cluster, Out, target};
use crate::crd::TrainingJob;
use crate::crd::training_job::JobPhase;

/// Flags of `get`.
#[derive(clap::Args, Debug, Clone)]
pub struct GetArgs {
    /// Jobs to show (NAME or tj/NAME; default: every job in the namespace).
    pub jobs: Vec<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// Prints the table.
pub async fn run(cluster: &Cluster, args: &GetArgs, out: &mut Out) -> Result<(), CliError> {
    let jobs = if args.jobs.is_empty() {
        let api: Api<TrainingJob> = if args.all_namespaces {
            Api::all(cluster.client.clone())
        } else {
            Api::namespaced(cluster.client.clone(), &cluster.namespace)
        };
        let mut jobs = api
            .list(&ListParams::default())
            .await
            .map_err(|e| CliError::api("list TrainingJobs", e))?
            .items;
        jobs.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        jobs
    } else {
        let mut jobs = vec![];
        for reference in &args.jobs {
            jobs.push(target::fetch_job(cluster, reference).await?);
        }
        jobs
    };
    if jobs.is_empty() {
        let scope = if args.all_namespaces {
            "any namespace".to_string()
        } else {
            format!("namespace {}", cluster.namespace)
        };
        out.line(&format!("No TrainingJobs in {scope}."))?;
        return Ok(());
    }
    out.table(&table(&jobs, args.all_namespaces, out))?;
    Ok(())
}

/// The colour of a phase.
pub fn phase_tone(phase: Option<JobPhase>) -> Option<Tone> {
    Some(match phase? {
        JobPhase::Succeeded => Tone::Good,
        JobPhase::Failed => Tone::Bad,
        JobPhase::Running => return None,
        JobPhase::Pending | JobPhase::Provisioning | JobPhase::Suspended => Tone::Wait,
    })
}

/// The job's phase as shown: `Pending` before the controller wrote any status.
pub fn phase_text(job: &TrainingJob) -> String {
    job.status
        .as_ref()
        .and_then(|s| s.phase)
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "Pending".into())
}

/// The workload's last progress, `42% step 1200`, or `-`.
pub fn progress_text(job: &TrainingJob) -> String {
    let Some(p) = job.status.as_ref().and_then(|s| s.progress.as_ref()) else {
        return "-".into();
    };
    let mut parts = vec![];
    if let Some(pc) = p.percent {
        parts.push(format!("{pc:.0}%"));
    }
    if let Some(step) = p.step {
        parts.push(format!("step {step}"));
    }
    or_dash(Some(parts.join(" ")))
}

/// The rows.
fn table(jobs: &[TrainingJob], namespaces: bool, out: &Out) -> Table {
    let mut header = vec![];
    if namespaces {
        header.push("NAMESPACE");
    }
    header.extend([
        "NAME", "PHASE", "PROVIDER", "MACHINE", "ATTEMPTS", "PRICE", "COST", "PROGRESS", "AGE",
    ]);
    let mut t = Table::new(&header);
    for job in jobs {
        let s = job.status.clone().unwrap_or_default();
        let running = s.current_cloud_resource.is_some();
        let mut row = vec![];
        if namespaces {
            row.push((or_dash(job.metadata.namespace.as_ref()), None));
        }
        row.extend([
            (or_dash(job.metadata.name.as_ref()), None),
            (phase_text(job), phase_tone(s.phase)),
            (or_dash(s.provider.map(|p| p.as_str())), None),
            (or_dash(s.machine_type.as_ref()), None),
            (s.attempt_count.to_string(), None),
            (
                if running {
                    per_hour(s.cost_per_hour)
                } else {
                    "-".into()
                },
                None,
            ),
            (money(s.accrued_cost), None),
            (progress_text(job), None),
            (
                out.age(job.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                None,
            ),
        ]);
        t.toned_row(row);
    }
    t
}
