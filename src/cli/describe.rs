//! `runctl describe tj/NAME`: what `kubectl describe` would show if it knew runctl: the job's
//! outcome, its cost against its budget, each attempt with its machine, duration, exit and cost,
//! the placement decision with every rejected offer and why, conditions, and the recent events
//! of the job and of its machines.

use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;

use super::get::{phase_text, phase_tone, progress_text};
use super::output::{Table, Tone, duration, money, or_dash, per_hour};
use super::{CliError, Cluster, Out, target};
use crate::crd::TrainingJob;
use crate::crd::training_job::{Attempt, Offer, PlacementStatus, TrainingJobStatus};

/// Events shown at most (the newest).
const MAX_EVENTS: usize = 15;
/// Attempts whose machine's events are read (the newest).
const EVENT_ATTEMPTS: usize = 3;

/// Flags of `describe`.
#[derive(clap::Args, Debug, Clone)]
pub struct DescribeArgs {
    /// The job: NAME or tj/NAME.
    pub job: String,
}

/// Prints the description.
pub async fn run(cluster: &Cluster, args: &DescribeArgs, out: &mut Out) -> Result<(), CliError> {
    let job = target::fetch_job(cluster, &args.job).await?;
    let events = events(cluster, &job).await?;
    render(&job, &events, out)?;
    Ok(())
}

/// An event as shown.
#[derive(Clone, Debug, PartialEq)]
pub struct EventLine {
    /// Normal or Warning.
    pub type_: String,
    /// Reason.
    pub reason: String,
    /// Last time it happened.
    pub time: Option<Timestamp>,
    /// How often it happened.
    pub count: i32,
    /// The object it is about (`tj/x`, `cres/x-a1`).
    pub object: String,
    /// Note.
    pub note: String,
}

impl EventLine {
    fn of(e: &Event) -> Self {
        let series = e.series.as_ref();
        let time = series
            .map(|s| s.last_observed_time.0)
            .or(e.event_time.as_ref().map(|t| t.0))
            .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
            .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let regarding = e.regarding.as_ref();
        let kind = match regarding.and_then(|r| r.kind.as_deref()) {
            Some("TrainingJob") => "tj",
            Some("CloudResource") => "cres",
            Some(other) => other,
            None => "?",
        };
        Self {
            type_: e.type_.clone().unwrap_or_else(|| "Normal".into()),
            reason: e.reason.clone().unwrap_or_default(),
            time,
            count: series.map(|s| s.count).unwrap_or(1).max(1),
            object: format!(
                "{kind}/{}",
                regarding.and_then(|r| r.name.as_deref()).unwrap_or("?")
            ),
            note: e.note.clone().unwrap_or_default(),
        }
    }
}

/// The newest events of the job and of its last attempts' CloudResources, oldest first.
async fn events(cluster: &Cluster, job: &TrainingJob) -> Result<Vec<EventLine>, CliError> {
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let name = job.metadata.name.clone().unwrap_or_default();
    let mut objects = vec![("TrainingJob", name)];
    if let Some(s) = &job.status {
        for a in s.attempts.iter().rev().take(EVENT_ATTEMPTS) {
            objects.push(("CloudResource", a.cloud_resource.clone()));
        }
    }
    let mut lines = vec![];
    for (kind, name) in objects {
        let lp =
            ListParams::default().fields(&format!("regarding.kind={kind},regarding.name={name}"));
        let list = api
            .list(&lp)
            .await
            .map_err(|e| CliError::api(format!("list the events of {kind} {name}"), e))?;
        lines.extend(list.items.iter().map(EventLine::of));
    }
    lines.sort_by_key(|l| l.time);
    let skip = lines.len().saturating_sub(MAX_EVENTS);
    Ok(lines.split_off(skip))
}

/// A `key: value` line, aligned.
fn field(out: &mut Out, key: &str, value: &str) -> std::io::Result<()> {
    out.line(&format!("{:<12}{value}", format!("{key}:")))
}

/// An offer in one phrase: `aws g5.xlarge us-east-1 spot $1.01/h (class gpu-small)`.
pub fn offer_text(o: &Offer) -> String {
    let mut parts = vec![o.provider.as_str().to_string()];
    match (&o.instance_type, &o.gpu_type) {
        (Some(t), _) => parts.push(t.clone()),
        (None, Some(g)) => parts.push(format!("{}x {g}", o.gpu_count.unwrap_or(1))),
        (None, None) => {}
    }
    if let Some(r) = &o.region {
        parts.push(r.clone());
    }
    parts.push(if o.spot { "spot" } else { "on-demand" }.into());
    if o.price_per_hour.is_some() {
        parts.push(per_hour(o.price_per_hour));
    }
    if let Some(c) = &o.machine_class {
        parts.push(format!("(class {c})"));
    }
    parts.join(" ")
}

/// Renders the description.
pub fn render(job: &TrainingJob, events: &[EventLine], out: &mut Out) -> std::io::Result<()> {
    let s = job.status.clone().unwrap_or_default();
    identity(out, job, &s)?;
    cost(out, job, &s)?;
    times(out, job, &s)?;
    reports(out, job, &s)?;
    history(out, job, &s)?;
    attempts(out, &s.attempts)?;
    placement(out, s.placement.as_ref())?;
    conditions(out, &s.conditions)?;
    events_section(out, events)
}

/// Name, namespace, phase (and reason), message, suspension, image and nodes.
fn identity(out: &mut Out, job: &TrainingJob, s: &TrainingJobStatus) -> std::io::Result<()> {
    let spec = &job.spec;
    field(out, "Name", &or_dash(job.metadata.name.as_ref()))?;
    field(out, "Namespace", &or_dash(job.metadata.namespace.as_ref()))?;
    let mut phase = match phase_tone(s.phase) {
        Some(tone) => out.paint(&phase_text(job), tone),
        None => phase_text(job),
    };
    if let Some(r) = &s.reason {
        phase.push_str(&format!(" ({r})"));
    }
    field(out, "Phase", &phase)?;
    if let Some(m) = &s.message {
        field(out, "Message", m)?;
    }
    if spec.suspend {
        field(out, "Suspended", "yes (spec.suspend)")?;
    }
    field(out, "Image", &spec.workload.image)?;
    if spec.nodes() > 1 {
        field(
            out,
            "Nodes",
            &format!(
                "{} per attempt (rank 0 reports; MASTER_PORT {})",
                spec.nodes(),
                spec.master_port
                    .unwrap_or(crate::crd::training_job::DEFAULT_MASTER_PORT)
            ),
        )?;
    }
    Ok(())
}

/// The cost so far, the price of the machine that runs now and the budget.
fn cost(out: &mut Out, job: &TrainingJob, s: &TrainingJobStatus) -> std::io::Result<()> {
    let mut cost = format!("{} accrued", money(s.accrued_cost.or(Some(0.0))));
    if s.current_cloud_resource.is_some() && s.cost_per_hour.is_some() {
        cost.push_str(&format!(", {} now", per_hour(s.cost_per_hour)));
    }
    if let Some(max) = job.spec.max_total_cost {
        cost.push_str(&format!(", budget {}", money(Some(max))));
    }
    field(out, "Cost", &cost)
}

/// The deadline (and the time left), the start and the completion.
fn times(out: &mut Out, job: &TrainingJob, s: &TrainingJobStatus) -> std::io::Result<()> {
    if let Some(d) = job.spec.active_deadline_seconds {
        let mut text = duration(jiff::SignedDuration::from_secs(d));
        if let (Some(start), None) = (&s.start_time, &s.completion_time) {
            let end = start.0 + jiff::SignedDuration::from_secs(d);
            let left = end.duration_since(out.now);
            text.push_str(&if left.is_positive() {
                format!(" (ends in {})", duration(left))
            } else {
                " (passed)".to_string()
            });
        }
        field(out, "Deadline", &text)?;
    }
    field(
        out,
        "Started",
        &match &s.start_time {
            Some(t) => format!("{} ago", out.age(Some(t.0))),
            None => "-".into(),
        },
    )?;
    if let Some(t) = &s.completion_time {
        field(out, "Completed", &format!("{} ago", out.age(Some(t.0))))?;
    }
    Ok(())
}

/// The workload's progress and heartbeat as the status shows them.
fn reports(out: &mut Out, job: &TrainingJob, s: &TrainingJobStatus) -> std::io::Result<()> {
    if let Some(p) = &s.progress {
        let mut text = progress_text(job);
        if let Some(m) = &p.message {
            text.push_str(&format!(" {m:?}"));
        }
        if let Some(t) = &p.time {
            text.push_str(&format!(" ({} ago)", out.age(Some(t.0))));
        }
        field(out, "Progress", &text)?;
    }
    if let Some(t) = &s.last_heartbeat_time {
        field(out, "Heartbeat", &heartbeat_text(out, job, t.0))?;
    }
    Ok(())
}

/// The heartbeat the status shows, said to be as of the status's last write: a heartbeat alone
/// writes no status, so while the job runs a newer one reaches the status only with a write
/// made for another reason (the accrued-cost refresh every `costRefreshSeconds` at the latest;
/// 2 × on a machine without a price), docs/training-jobs.md#reports-across-replicas-and-restarts.
fn heartbeat_text(out: &Out, job: &TrainingJob, heartbeat: Timestamp) -> String {
    let mut text = format!(
        "{} ago (as of the last status write",
        out.age(Some(heartbeat))
    );
    if let Some(written) = status_written(job) {
        text.push_str(&format!(", {} ago", out.age(Some(written))));
    }
    let running = job
        .status
        .as_ref()
        .is_some_and(|s| s.completion_time.is_none() && s.current_cloud_resource.is_some());
    if running {
        text.push_str(
            "; heartbeats and progress reach the status only with other writes, \
             up to costRefreshSeconds late",
        );
    }
    text.push(')');
    text
}

/// When the operator last wrote the job's status: the time of its field manager's
/// `managedFields` entry for the status subresource, if the object carries it.
pub fn status_written(job: &TrainingJob) -> Option<Timestamp> {
    job.metadata
        .managed_fields
        .as_ref()?
        .iter()
        .filter(|m| {
            m.manager.as_deref() == Some(crate::controller::FIELD_MANAGER)
                && m.subresource.as_deref() == Some("status")
        })
        .filter_map(|m| m.time.as_ref().map(|t| t.0))
        .max()
}

/// The earlier success the job stands for, and the failure counts against `backoffLimit`.
fn history(out: &mut Out, job: &TrainingJob, s: &TrainingJobStatus) -> std::io::Result<()> {
    if let Some(prev) = &s.previous_success {
        field(
            out,
            "Stands for",
            &format!(
                "the success of an earlier job of this name (uid {}), {} ago",
                prev.uid,
                out.age(Some(prev.completion_time.0))
            ),
        )?;
    }
    field(
        out,
        "Failures",
        &format!(
            "capacity {}, interruption {}, failure {} (backoffLimit {})",
            s.failures.capacity,
            s.failures.interruption,
            s.failures.failure,
            job.spec.backoff_limit
        ),
    )
}

fn attempts(out: &mut Out, attempts: &[Attempt]) -> std::io::Result<()> {
    out.line("Attempts:")?;
    if attempts.is_empty() {
        return out.line("  <none>");
    }
    let mut t = Table::new(&[
        "#", "PROVIDER", "MACHINE", "REGION", "SPOT", "STARTED", "DURATION", "EXIT", "COST",
        "REASON",
    ])
    .indented(2);
    for a in attempts {
        let start = a.start_time.as_ref().map(|t| t.0);
        let end = a.end_time.as_ref().map(|t| t.0).unwrap_or(out.now);
        let ran = start.map(|s| duration(end.duration_since(s)));
        let reason_tone = match (a.end_time.is_some(), a.exit_code, a.retry_class) {
            (true, Some(0), _) => Some(Tone::Good),
            (true, _, Some(_)) => Some(Tone::Bad),
            _ => None,
        };
        t.toned_row(vec![
            (a.index.to_string(), None),
            (a.provider.as_str().to_string(), None),
            (
                match a.nodes {
                    Some(n) => format!("{n}x {}", or_dash(a.machine_type.as_ref())),
                    None => or_dash(a.machine_type.as_ref()),
                },
                None,
            ),
            (or_dash(a.region.as_ref()), None),
            (if a.spot { "yes" } else { "no" }.to_string(), None),
            (
                start
                    .map(|s| format!("{} ago", out.age(Some(s))))
                    .unwrap_or_else(|| "-".into()),
                None,
            ),
            (or_dash(ran), None),
            (or_dash(a.exit_code.map(|c| c.to_string())), None),
            (money(a.cost), None),
            (
                match (&a.reason, a.end_time.is_some()) {
                    (Some(r), _) => r.clone(),
                    (None, false) => "(running)".into(),
                    (None, true) => "-".into(),
                },
                reason_tone,
            ),
        ]);
    }
    out.table(&t)
}

fn placement(out: &mut Out, p: Option<&PlacementStatus>) -> std::io::Result<()> {
    out.line("Placement:")?;
    let Some(p) = p else {
        return out.line("  <not decided yet>");
    };
    out.line(&format!(
        "  Chosen:    {}",
        p.chosen
            .as_ref()
            .map(offer_text)
            .unwrap_or_else(|| "-".into())
    ))?;
    if !p.remaining.is_empty() {
        out.line("  Next, if the chosen offer has no capacity:")?;
        for o in &p.remaining {
            out.line(&format!("    {}", offer_text(o)))?;
        }
    }
    if !p.rejected.is_empty() {
        out.line("  Rejected:")?;
        let mut t = Table::new(&["OFFER", "REASON", "MESSAGE"]).indented(4);
        for r in &p.rejected {
            t.row([
                offer_text(&r.offer),
                r.reason.clone(),
                or_dash(r.message.as_ref()),
            ]);
        }
        out.table(&t)?;
    }
    Ok(())
}

fn conditions(
    out: &mut Out,
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> std::io::Result<()> {
    out.line("Conditions:")?;
    if conditions.is_empty() {
        return out.line("  <none>");
    }
    let mut t = Table::new(&["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]).indented(2);
    for c in conditions {
        t.row([
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            out.age(Some(c.last_transition_time.0)),
            c.message.clone(),
        ]);
    }
    out.table(&t)
}

fn events_section(out: &mut Out, events: &[EventLine]) -> std::io::Result<()> {
    out.line("Events:")?;
    if events.is_empty() {
        return out.line("  <none>");
    }
    let mut t = Table::new(&["TYPE", "REASON", "AGE", "OBJECT", "MESSAGE"]).indented(2);
    for e in events {
        let age = match e.count {
            1 => out.age(e.time),
            n => format!("{} (x{n})", out.age(e.time)),
        };
        let tone = (e.type_ == "Warning").then_some(Tone::Bad);
        t.toned_row(vec![
            (e.type_.clone(), tone),
            (e.reason.clone(), None),
            (age, None),
            (e.object.clone(), None),
            (e.note.clone(), None),
        ]);
    }
    out.table(&t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

    fn job(running: bool, written: Option<Timestamp>) -> TrainingJob {
        let mut job: TrainingJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "j"},
            "spec": {"placement": {"provider": "sim", "instanceType": "sim.a100"}, "workload": {"image": "x"}},
            "status": {"currentCloudResource": "j-a1"}
        }))
        .unwrap();
        if !running {
            let s = job.status.as_mut().unwrap();
            s.current_cloud_resource = None;
            s.completion_time = Some(Time(Timestamp::UNIX_EPOCH));
        }
        let entry = |manager: &str, subresource: Option<&str>, t: Timestamp| ManagedFieldsEntry {
            manager: Some(manager.into()),
            subresource: subresource.map(str::to_string),
            time: Some(Time(t)),
            ..Default::default()
        };
        job.metadata.managed_fields = written.map(|t| {
            vec![
                entry(crate::controller::FIELD_MANAGER, Some("status"), t),
                // Neither is a status write by the operator.
                entry(
                    crate::controller::FIELD_MANAGER,
                    None,
                    t + jiff::SignedDuration::from_secs(60),
                ),
                entry(
                    "kubectl-runctl",
                    Some("status"),
                    t + jiff::SignedDuration::from_secs(60),
                ),
            ]
        });
        job
    }

    #[test]
    fn the_heartbeat_is_shown_as_of_the_last_status_write() {
        let now = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(3600);
        let (out, _) = Out::buffer(now);
        let at = |ago: i64| now - jiff::SignedDuration::from_secs(ago);
        assert_eq!(
            heartbeat_text(&out, &job(true, Some(at(120))), at(180)),
            "3m ago (as of the last status write, 2m ago; heartbeats and progress reach the \
             status only with other writes, up to costRefreshSeconds late)"
        );
        assert_eq!(
            heartbeat_text(&out, &job(false, Some(at(120))), at(180)),
            "3m ago (as of the last status write, 2m ago)"
        );
        assert_eq!(
            heartbeat_text(&out, &job(false, None), at(180)),
            "3m ago (as of the last status write)"
        );
    }
}
