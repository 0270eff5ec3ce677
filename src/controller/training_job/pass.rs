//! One reconcile pass of a TrainingJob, as a pipeline: read the job as last written
//! ([`Pass::begin`]), observe its machines, reports and success record ([`Pass::observe`]),
//! plan (pure, [`plan::plan`], with offers collected when the plan asks for them), act in small
//! steps ([`Pass::act`]), write status once from the plan ([`Pass::record`]), then release ended
//! attempts ([`Pass::release`]) and publish the plan's events ([`Pass::tell`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::{debug, info, warn};

use super::machines::JobKey;
use super::plan::{self, Act, Input, Plan};
use super::view::MachineView;
use super::{
    Error, JobContext, api_error_code, conditions, delete_ignoring_missing, machines_of, offers,
    plan_settings, release, start, start_nodes, success_record, write_status,
};
use crate::callback::{AttemptId, AttemptReport};
use crate::crd::training_job::{
    JobPhase, RETRY_ANNOTATION, RecreatePolicy, TrainingJob, TrainingJobStatus,
};

/// The job a pass works on, read as this controller last wrote it.
pub(super) struct Pass {
    job: Arc<TrainingJob>,
    ns: String,
    name: String,
    key: JobKey,
    api: Api<TrainingJob>,
    /// The status as read.
    status: TrainingJobStatus,
    generation: i64,
    now: Timestamp,
}

/// What a pass observed besides the job.
pub(super) struct Observed {
    machines: Vec<MachineView>,
    reports: BTreeMap<u32, AttemptReport>,
    prior_success: Option<success_record::SuccessRecord>,
}

/// Runs one pass.
pub(super) async fn apply(cached: Arc<TrainingJob>, jc: &JobContext) -> Result<Action, Error> {
    let Some(pass) = Pass::begin(cached, jc).await? else {
        return Ok(Action::await_change());
    };
    if pass.job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::requeue(jc.ctx.config.transition_poll_interval));
    }
    let seen = pass.observe(jc).await?;
    let mut p = pass.decide(jc, &seen).await;
    pass.act(jc, &mut p).await?;
    let next = pass.record(jc, &p).await?;
    pass.release(jc, &p, &seen, &next).await?;
    pass.tell(jc, &p).await;
    Ok(match p.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

impl Pass {
    /// The job to plan from. The cache may not hold this controller's last status write yet (a
    /// reconcile triggered by a CloudResource event can run first); planning from a stale
    /// status could undo a final outcome or start a needless machine. A cached job of the
    /// version we last wrote or read holds every earlier write (reconciles of one object never
    /// overlap); any other version is read fresh. `None`: the job is gone.
    async fn begin(cached: Arc<TrainingJob>, jc: &JobContext) -> Result<Option<Self>, Error> {
        let ns = cached.namespace().ok_or(Error::MissingMetadata)?;
        let name = cached.name_any();
        let api: Api<TrainingJob> = Api::namespaced(jc.ctx.client.clone(), &ns);
        let key = JobKey::new(ns.clone(), name.clone());
        let known = jc.known_versions.lock().get(&key).cloned();
        let job = if known.is_some() && known == cached.metadata.resource_version {
            cached
        } else {
            let Some(job) = api.get_opt(&name).await.map_err(Error::Get)? else {
                jc.remember_version(&key, None);
                return Ok(None);
            };
            jc.remember_version(&key, job.metadata.resource_version.as_ref());
            Arc::new(job)
        };
        Ok(Some(Self {
            status: job.status.clone().unwrap_or_default(),
            generation: job.metadata.generation.unwrap_or(0),
            job,
            ns,
            name,
            key,
            api,
            now: Timestamp::now(),
        }))
    }

    fn attempt_id(&self, attempt: u32) -> AttemptId {
        AttemptId {
            namespace: self.ns.clone(),
            job: self.name.clone(),
            attempt,
        }
    }

    /// The job's machines, what its workloads reported (this replica's, merged with what any
    /// replica persisted in rank 0's CloudResource), and, for a new job that may stand for an
    /// earlier success, its success record.
    async fn observe(&self, jc: &JobContext) -> Result<Observed, Error> {
        let machines = machines_of(jc, &self.key).await?;
        let mut reports = BTreeMap::new();
        let attempts = self.status.attempts.iter().map(|a| a.index);
        for attempt in attempts.chain(machines.iter().map(|v| v.attempt)) {
            let local = jc.reports.get(&self.attempt_id(attempt));
            let stored = machines
                .iter()
                .find(|v| v.attempt == attempt && v.rank == 0)
                .and_then(|v| v.report.clone());
            if let Some(r) = AttemptReport::merged(local, stored) {
                reports.insert(attempt, r);
            }
        }
        let prior_success = if self.status.phase.is_none()
            && self.job.spec.recreate_policy == RecreatePolicy::SkipIfSucceeded
        {
            success_record::read(&jc.ctx.client, &self.ns, &self.name)
                .await
                .map_err(Error::ReadSuccessRecord)?
        } else {
            None
        };
        Ok(Observed {
            machines,
            reports,
            prior_success,
        })
    }

    /// The plan; when it asks for offers, they are collected and it plans again with them.
    async fn decide(&self, jc: &JobContext, seen: &Observed) -> Plan {
        let settings = plan::Settings {
            leader_since: Some(jc.leader_since),
            ..plan_settings(&jc.ctx, &jc.config)
        };
        let input = Input {
            job: &self.name,
            spec: &self.job.spec,
            status: &self.status,
            generation: self.generation,
            machines: &seen.machines,
            prior_success: seen.prior_success.as_ref(),
            reports: &seen.reports,
            offers: None,
            retry_request: self
                .job
                .annotations()
                .get(RETRY_ANNOTATION)
                .map(String::as_str),
            settings: &settings,
            now: self.now,
        };
        let mut p = plan::plan(input);
        if p.acts.contains(&Act::CollectOffers) {
            let spec = &self.job.spec;
            let offers = offers::collect(&jc.ctx, &spec.placement, spec.nodes(), &self.ns).await;
            p = plan::plan(Input {
                offers: Some(&offers),
                ..input
            });
        }
        let (job, ns) = (&self.name, &self.ns);
        debug!(%job, namespace = %ns, acts = ?p.acts, phase = ?p.status.phase, "planned");
        if let Some(retry) = &p.retry {
            info!(%job, namespace = %ns, ?retry, "retry request handled");
        }
        p
    }

    /// The plan's actions before the status write (releases come after it).
    async fn act(&self, jc: &JobContext, p: &mut Plan) -> Result<(), Error> {
        for act in p.acts.clone() {
            match act {
                Act::Start {
                    attempt,
                    offer,
                    max_lifetime_seconds,
                } => {
                    let started = start(
                        &self.job,
                        jc,
                        &self.ns,
                        attempt,
                        &offer,
                        max_lifetime_seconds,
                    )
                    .await;
                    self.started(jc, p, attempt, started).await?;
                }
                Act::StartPeers {
                    attempt,
                    ranks,
                    master_addr,
                } => start_nodes(&self.job, jc, &self.ns, attempt, &ranks, &master_addr).await?,
                Act::RecordSuccess => self.record_success(jc, p).await?,
                Act::DeleteJob => self.delete_job(jc).await?,
                Act::CollectOffers | Act::Release { .. } => {}
            }
        }
        Ok(())
    }

    /// After an attempt's start: the API server's refusal of its CloudResource (422) ends it
    /// `InvalidSpec`; any other failure keeps the previous status with the step reported.
    async fn started(
        &self,
        jc: &JobContext,
        p: &mut Plan,
        attempt: u32,
        result: Result<(), Error>,
    ) -> Result<(), Error> {
        match result {
            Ok(()) => Ok(()),
            Err(Error::Apply { source, .. }) if api_error_code(&source) == Some(422) => {
                plan::rejected_start(p, attempt, source.to_string(), self.now);
                Ok(())
            }
            Err(e) => {
                let mut prev = self.status.clone();
                let step = Some((e.reason(), e.to_string()));
                conditions::set_synced(&mut prev, self.generation, self.now, step);
                if self.job.status.as_ref() != Some(&prev) {
                    write_status(jc, &self.api, &self.key, &prev).await?;
                }
                Err(e)
            }
        }
    }

    async fn record_success(&self, jc: &JobContext, p: &Plan) -> Result<(), Error> {
        let record = success_record::SuccessRecord {
            job: self.name.clone(),
            uid: self.job.metadata.uid.clone().unwrap_or_default(),
            spec_digest: success_record::spec_digest(&self.job.spec),
            completion_time: p.status.completion_time.as_ref().map_or(self.now, |t| t.0),
            attempt_count: p.status.attempt_count,
            accrued_cost: p.status.accrued_cost,
        };
        success_record::write(&jc.ctx.client, &self.ns, &record)
            .await
            .map_err(Error::WriteSuccessRecord)
    }

    async fn delete_job(&self, jc: &JobContext) -> Result<(), Error> {
        // No event: it would be about an object that is going away (the log says it).
        info!(job = %self.name, namespace = %self.ns, "ttlSecondsAfterFinished passed; deleting the job and its machines");
        delete_ignoring_missing(&self.api, &self.name)
            .await
            .map_err(|source| Error::Delete {
                what: format!("TrainingJob {}", self.name),
                source,
            })?;
        // The cached job does not show the delete yet: the next pass reads the job (and finds
        // it being deleted) rather than planning the delete again from the cache.
        jc.remember_version(&self.key, None);
        Ok(())
    }

    /// Writes the plan's status (with its conditions) when it differs from the stored one, and
    /// returns it. Before any release: if this write fails, nothing was released, and the next
    /// pass finds the same CloudResource and comes to the same end (released first, a failed
    /// write would leave an open attempt whose CloudResource is gone: `MachineLost`, and the
    /// capacity retry lost).
    async fn record(&self, jc: &JobContext, p: &Plan) -> Result<TrainingJobStatus, Error> {
        let mut next = p.status.clone();
        // A release that failed before stays reported until a release succeeds (no flapping).
        let earlier_cleanup_error = (p.releasing > 0)
            .then(|| conditions::cleanup_error(&self.status))
            .flatten();
        let (generation, now) = (self.generation, self.now);
        conditions::set_all(
            &mut next,
            generation,
            now,
            p.releasing,
            earlier_cleanup_error,
        );
        conditions::set_synced(&mut next, generation, now, None);
        // Compared as stored: a sub-second difference (e.g. a heartbeat time) writes nothing;
        // nor does a cost alone while the machine is being made (`costs_only`).
        let refresh = jc.ctx.config.cost_refresh_interval;
        let unchanged = self.job.status.as_ref().is_some_and(|s| {
            crate::controller::stored::same_when_stored(s, &next)
                || costs_only(s, &next, now, refresh)
        });
        if !unchanged {
            // Written anyway: with the latest heartbeat and progress of its last attempt.
            if let Some((attempt, r)) = &p.latest_report
                && next.attempts.last().is_some_and(|a| a.index == *attempt)
            {
                plan::show_latest_reports(&mut next, r);
            }
            write_status(jc, &self.api, &self.key, &next).await?;
        }
        Ok(next)
    }

    /// Releases the ended attempts' CloudResources. A failure shows in `MachinesReleased` (and a
    /// Warning event); the outcome already written stays as it is.
    async fn release(
        &self,
        jc: &JobContext,
        p: &Plan,
        seen: &Observed,
        next: &TrainingJobStatus,
    ) -> Result<(), Error> {
        let mut cleanup_error = None;
        for act in &p.acts {
            let Act::Release { name: cr, attempt } = act else {
                continue;
            };
            let orphan = seen.machines.iter().any(|v| &v.name == cr && v.orphan);
            match release(&jc.ctx, &self.ns, &self.name, cr, *attempt, orphan).await {
                Ok(()) => {
                    jc.machines.released(&self.key, cr);
                    jc.reports.forget(&self.attempt_id(*attempt));
                }
                Err(e) => {
                    warn!(job = %self.name, namespace = %self.ns, error = %e, "cleanup failed");
                    jc.ctx
                        .publish(
                            self.job.as_ref(),
                            EventType::Warning,
                            "CleanupFailed",
                            "Release",
                            e.to_string(),
                        )
                        .await;
                    cleanup_error = Some(e.to_string());
                }
            }
        }
        let Some(error) = cleanup_error else {
            return Ok(());
        };
        let mut failed = next.clone();
        let (generation, now) = (self.generation, self.now);
        conditions::set_all(&mut failed, generation, now, p.releasing, Some(error));
        conditions::set_synced(&mut failed, generation, now, None);
        if !crate::controller::stored::same_when_stored(next, &failed) {
            write_status(jc, &self.api, &self.key, &failed).await?;
        }
        Ok(())
    }

    /// Publishes the plan's events.
    async fn tell(&self, jc: &JobContext, p: &Plan) {
        for n in &p.notes {
            let type_ = if n.warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            let message = n.message.clone();
            jc.ctx
                .publish(self.job.as_ref(), type_, n.reason, "Reconcile", message)
                .await;
        }
    }
}

/// True when `next` differs from `stored` only in its costs (`costPerHour`, `accruedCost`)
/// while the job stays `Provisioning`, within `refresh` (`costRefreshSeconds`) of its attempt's
/// start: the costs of a machine being made follow its CloudResource's steps (its create answer's
/// price, a boot step), and are written with the job's next status, `Running` at the latest.
/// Each would otherwise cost a job status write. The plan still counts them (budget); a machine
/// that takes longer to start has its cost written as a running one's is (at most once per
/// `costRefreshSeconds`, which the CloudResource's own refresh keeps).
fn costs_only(
    stored: &TrainingJobStatus,
    next: &TrainingJobStatus,
    now: Timestamp,
    refresh: std::time::Duration,
) -> bool {
    let provisioning = |s: &TrainingJobStatus| s.phase == Some(JobPhase::Provisioning);
    if !provisioning(stored) || !provisioning(next) {
        return false;
    }
    let young = next
        .attempts
        .last()
        .and_then(|a| a.start_time.as_ref())
        .is_some_and(|t| now.duration_since(t.0).as_secs_f64() < refresh.as_secs_f64());
    if !young {
        return false;
    }
    let mut without = next.clone();
    without.cost_per_hour = stored.cost_per_hour;
    without.accrued_cost = stored.accrued_cost;
    crate::controller::stored::same_when_stored(stored, &without)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn provisioning(start: Timestamp, accrued: f64) -> TrainingJobStatus {
        TrainingJobStatus {
            phase: Some(JobPhase::Provisioning),
            accrued_cost: Some(accrued),
            attempts: vec![
                serde_json::from_value(serde_json::json!({
                    "index": 1, "provider": "sim", "spot": false, "cloudResource": "j-a1",
                    "startTime": start.to_string()
                }))
                .unwrap(),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_cost_alone_waits_while_a_young_attempt_provisions() {
        let start: Timestamp = "2026-12-05T00:00:00Z".parse().unwrap();
        let refresh = Duration::from_secs(1200);
        let soon = start + jiff::SignedDuration::from_secs(60);
        let stored = provisioning(start, 0.0);
        let mut next = provisioning(start, 0.01);
        next.cost_per_hour = Some(2.0);
        assert!(costs_only(&stored, &next, soon, refresh));
        // Once the attempt is older than the refresh interval, costs are written again.
        let late = start + jiff::SignedDuration::from_secs(1200);
        assert!(!costs_only(&stored, &next, late, refresh));
        // Anything else, or another phase, is written.
        next.message = Some("x".into());
        assert!(!costs_only(&stored, &next, soon, refresh));
        let mut running = provisioning(start, 0.01);
        running.phase = Some(JobPhase::Running);
        assert!(!costs_only(&stored, &running, soon, refresh));
    }
}
