//! Pure decisions of the TrainingJob controller: from the job, its CloudResources and the
//! workload's reports to the next status and the actions that bring the world there. No I/O, so
//! every branch is table-tested.
//!
//! Rules:
//! - An open attempt ends when the workload reports its exit code, when the provider takes the
//!   machine back, when the machine ends without a report (after a grace for an in-flight
//!   report: `MachineLost`), on a capacity or spec error, or when a policy stops it (deadline,
//!   budget, suspend).
//! - A new attempt follows a failure of a class listed in `retryOn`, while that class has failed
//!   at most `backoffLimit` times, after an exponential backoff; a capacity error moves at once
//!   to the next offer while one remains.
//! - Succeeded and Failed are final: afterwards only cleanup and the TTL act, and a user's retry
//!   request (`runctl.dev/retry`, `retry_request.rs`) reopens a failed job.
//! - A user's retry request ends the open attempt `RetryRequested`, not counted as a failure, and
//!   the next attempt starts without a backoff.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::gang::{self, Gang};
use super::offers::{PROVIDER_NOT_ENABLED, enabled_list, reject_not_enabled};
use super::outcome::{self, Outcome, Seen, classify};
use super::resources::cloud_resource_name;
use super::retry_request::{self, RetryDecision};
use super::success_record::SuccessRecord;
use super::view::MachineView;
use crate::callback::AttemptReport;
use crate::callback::reach::Unreachable;
use crate::controller::backoff::BackoffConfig;
use crate::controller::machine_class::ClassRefusal;
use crate::crd::ProviderKind;
use crate::crd::cloud_resource::ResourceState;
use crate::crd::condition::{self, NewCondition};
use crate::crd::training_job::RecreatePolicy;
use crate::crd::training_job::{
    Attempt, JobPhase, Offer, PlacementStatus, RejectedOffer, RetryOn, TrainingJobSpec,
    TrainingJobStatus,
};
use crate::provider::pricing;

/// Job reason: the workload exited 0.
pub const REASON_COMPLETED: &str = "Completed";
/// Job reason: the workload exited non-zero and failures are not retried.
pub const REASON_EXIT_CODE: &str = "ExitCode";
/// Job reason: a retried class failed more than `backoffLimit` times.
pub const REASON_BACKOFF_LIMIT: &str = "BackoffLimitExceeded";
/// Job reason: `activeDeadlineSeconds` passed.
pub const REASON_DEADLINE: &str = "DeadlineExceeded";
/// Job reason: `maxTotalCost` would have been crossed.
pub const REASON_BUDGET: &str = "BudgetExceeded";
/// Job reason: no offer had capacity.
pub const REASON_NO_CAPACITY: &str = "NoCapacity";
/// Job reason: the provider rejected the machine spec.
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
/// Job reason: the machine was lost (interruption or no report) and that is not retried.
pub const REASON_MACHINE_LOST: &str = "MachineLost";
/// Job reason: an earlier job of this name and spec succeeded (`recreatePolicy:
/// SkipIfSucceeded`); nothing was trained.
pub const REASON_ALREADY_SUCCEEDED: &str = "AlreadySucceeded";
/// Job reason: no provider the placement may use is enabled in the operator's configuration;
/// nothing was rented.
pub const REASON_PROVIDER_NOT_ENABLED: &str = "ProviderNotEnabled";

/// Controller settings the plan uses.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The provider poll interval: the budget's look-ahead, and how often a job whose old
    /// CloudResources are being released is looked at.
    pub poll_interval: Duration,
    /// How often an open attempt is looked at when nothing changed (CloudResource changes and
    /// exit reports wake the job at once; deadline and budget set their own wake-ups).
    pub resync: Duration,
    /// How long after a machine ended an exit report may still arrive.
    pub report_grace: Duration,
    /// How long a machine may take to reach Running.
    pub start_timeout: Option<Duration>,
    /// How long a running attempt may go without a heartbeat once heartbeats have arrived.
    pub heartbeat_timeout: Option<Duration>,
    /// Wait before a retried attempt (doubling per failure of the class).
    pub retry: BackoffConfig,
    /// Whether machines outside the cluster can reach the callback endpoint.
    pub callback: Result<(), Unreachable>,
    /// The providers the operator's configuration enables (`providers.<name>.enabled`): no
    /// attempt starts anywhere else.
    pub enabled_providers: Vec<ProviderKind>,
}

/// Everything the plan looks at.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The job's name (attempts' CloudResources are `<job>-a<N>`).
    pub job: &'a str,
    /// The job's spec.
    pub spec: &'a TrainingJobSpec,
    /// The job's current status.
    pub status: &'a TrainingJobStatus,
    /// `metadata.generation`.
    pub generation: i64,
    /// The job's CloudResources.
    pub machines: &'a [MachineView],
    /// Callback reports by attempt.
    pub reports: &'a BTreeMap<u32, AttemptReport>,
    /// The success record of an earlier job of this name (`recreatePolicy: SkipIfSucceeded`),
    /// read for a job that has no status yet.
    pub prior_success: Option<&'a SuccessRecord>,
    /// Freshly collected offers, when the previous plan asked for them; the refusal of a
    /// machine class the job may not use instead.
    pub offers: Option<&'a Result<PlacementStatus, ClassRefusal>>,
    /// The job's `runctl.dev/retry` annotation: a user's request for a new attempt now.
    pub retry_request: Option<&'a str>,
    /// Settings.
    pub settings: &'a Settings,
    /// Now.
    pub now: Timestamp,
}

/// Something to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Act {
    /// Collect offers (prices, capabilities) and plan again with them.
    CollectOffers,
    /// Create the attempt's token Secret and apply its CloudResource.
    Start {
        /// Attempt number.
        attempt: u32,
        /// Where.
        offer: Offer,
        /// The machine's own lifetime limit (the CloudResource's `maxLifetimeSeconds`): what is
        /// left of `activeDeadlineSeconds` plus a margin, so that the provider's dead-man path
        /// ends the machine even when no operator is left to enforce the deadline.
        max_lifetime_seconds: Option<i64>,
    },
    /// Create the other nodes of a multi-node attempt, once its rank 0 runs: copies of rank 0's
    /// CloudResource with their rank and rank 0's private address.
    StartPeers {
        /// Attempt number.
        attempt: u32,
        /// The ranks to create.
        ranks: Vec<u32>,
        /// Rank 0's private address (`MASTER_ADDR`).
        master_addr: String,
    },
    /// Delete an ended attempt's CloudResource (the machine is terminated) and token Secret.
    Release {
        /// CloudResource name.
        name: String,
        /// Attempt number.
        attempt: u32,
    },
    /// The TTL after completion passed: delete the job.
    DeleteJob,
    /// The job succeeded with `recreatePolicy: SkipIfSucceeded`: write its success record.
    RecordSuccess,
}

/// An event to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    /// Warning instead of Normal.
    pub warning: bool,
    /// Event reason.
    pub reason: &'static str,
    /// Event note.
    pub message: String,
}

/// The plan: next status, actions, events, and when to look again.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Next status (conditions are set by the caller after acting).
    pub status: TrainingJobStatus,
    /// Actions, in order.
    pub acts: Vec<Act>,
    /// Events.
    pub notes: Vec<Note>,
    /// Look again after this long.
    pub requeue: Option<Duration>,
    /// CloudResources of ended attempts that still exist.
    pub releasing: usize,
    /// What a new retry request (`runctl.dev/retry`) did, when there was one and it was handled
    /// (it is recorded in `status.observedRetryRequest`).
    pub retry: Option<RetryDecision>,
}

impl Plan {
    fn wake_in(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    fn wake_at(&mut self, at: Timestamp, now: Timestamp) {
        let d = at.duration_since(now);
        self.wake_in(
            Duration::try_from(d)
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_millis(50)),
        );
    }

    fn note(&mut self, warning: bool, reason: &'static str, message: String) {
        self.notes.push(Note {
            warning,
            reason,
            message,
        });
    }
}

fn delay_for(retry: BackoffConfig, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    retry.base.saturating_mul(1u32 << exp).min(retry.max)
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// Live cost of a machine: price times uptime, else what its CloudResource last reported.
fn machine_cost(v: &MachineView, now: Timestamp) -> Option<f64> {
    pricing::accrued_cost(None, v.cost_per_hour, v.launch_time, v.end_time, now).or(v.accrued_cost)
}

fn ended_cost(s: &TrainingJobStatus) -> f64 {
    s.attempts
        .iter()
        .filter(|a| a.end_time.is_some())
        .filter_map(|a| a.cost)
        .sum()
}

/// How long past the job's deadline a machine may live on its own: the operator stops it at the
/// deadline; the machine's lifetime limit is the backstop when no operator is left.
pub const LIFETIME_MARGIN_SECONDS: i64 = 300;

/// The lifetime limit of a machine started at `now`: what is left of the job's deadline, plus
/// [`LIFETIME_MARGIN_SECONDS`]; none without a deadline.
pub fn attempt_lifetime(
    spec: &TrainingJobSpec,
    s: &TrainingJobStatus,
    now: Timestamp,
) -> Option<i64> {
    let left = deadline(spec, s)?.duration_since(now).as_secs();
    Some(left.max(0) + LIFETIME_MARGIN_SECONDS)
}

fn deadline(spec: &TrainingJobSpec, s: &TrainingJobStatus) -> Option<Timestamp> {
    let start = s.start_time.as_ref()?.0;
    Some(start + SignedDuration::from_secs(spec.active_deadline_seconds?))
}

fn count_failure(s: &mut TrainingJobStatus, class: RetryOn) -> u32 {
    let c = match class {
        RetryOn::Capacity => &mut s.failures.capacity,
        RetryOn::Interruption => &mut s.failures.interruption,
        RetryOn::Failure => &mut s.failures.failure,
    };
    *c += 1;
    *c
}

fn class_count(s: &TrainingJobStatus, class: RetryOn) -> u32 {
    match class {
        RetryOn::Capacity => s.failures.capacity,
        RetryOn::Interruption => s.failures.interruption,
        RetryOn::Failure => s.failures.failure,
    }
}

fn finish(
    s: &mut TrainingJobStatus,
    p: &mut Plan,
    phase: JobPhase,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    s.phase = Some(phase);
    s.reason = Some(reason.to_string());
    s.message = Some(message.clone());
    s.completion_time = Some(Time(now));
    s.current_cloud_resource = None;
    s.cost_per_hour = None;
    let warning = phase == JobPhase::Failed;
    p.note(
        warning,
        if warning { "JobFailed" } else { "JobSucceeded" },
        format!("{reason}: {message}"),
    );
}

/// How an attempt ends.
struct Ending<'a> {
    reason: &'a str,
    /// The retry class the end counts against, kept typed in the attempt record.
    class: Option<RetryOn>,
    exit: Option<i32>,
    message: &'a str,
}

/// Ends the open attempt `k`.
fn end_attempt(
    s: &mut TrainingJobStatus,
    p: &mut Plan,
    k: usize,
    nodes: &[&MachineView],
    end: Ending<'_>,
    now: Timestamp,
) {
    let Ending {
        reason,
        class,
        exit,
        message,
    } = end;
    let a = &mut s.attempts[k];
    a.end_time = Some(Time(now));
    a.reason = Some(reason.to_string());
    a.retry_class = class;
    if exit.is_some() {
        a.exit_code = exit;
    }
    if !nodes.is_empty() {
        a.cost = nodes
            .iter()
            .filter_map(|v| machine_cost(v, now))
            .fold(None, |sum, c| Some(sum.unwrap_or(0.0) + c));
    }
    if let Some(t) = nodes
        .iter()
        .find(|v| v.rank == 0)
        .and_then(|v| v.machine_type.clone())
    {
        a.machine_type = Some(t);
    }
    let index = a.index;
    if exit.is_some() {
        s.exit_code = exit;
    }
    s.current_cloud_resource = None;
    s.cost_per_hour = None;
    let warning = reason != outcome::COMPLETED && reason != outcome::RETRY_REQUESTED;
    p.note(
        warning,
        "AttemptEnded",
        format!("attempt {index} ended: {reason}: {message}"),
    );
}

/// After an outcome that ended the open attempt: the job's next phase, or a retry.
fn after(
    spec: &TrainingJobSpec,
    s: &mut TrainingJobStatus,
    p: &mut Plan,
    o: &Outcome,
    now: Timestamp,
) {
    match o {
        Outcome::Completed => {
            return finish(
                s,
                p,
                JobPhase::Succeeded,
                REASON_COMPLETED,
                o.message(),
                now,
            );
        }
        Outcome::InvalidSpec { message } => {
            return finish(
                s,
                p,
                JobPhase::Failed,
                REASON_INVALID_SPEC,
                message.clone(),
                now,
            );
        }
        _ => {}
    }
    let Some(class) = o.class() else { return };
    let n = count_failure(s, class);
    if class == RetryOn::Capacity {
        let placement = s.placement.get_or_insert_with(Default::default);
        if let Some(chosen) = placement.chosen.take() {
            placement.rejected.push(RejectedOffer {
                offer: chosen,
                reason: outcome::INSUFFICIENT_CAPACITY.into(),
                message: Some(o.message()),
            });
        }
        if !placement.remaining.is_empty() {
            return;
        }
    }
    let retried = spec.retry_on.contains(&class);
    if retried && n <= spec.backoff_limit {
        return;
    }
    let reason = match o {
        Outcome::NoCapacity { .. } => REASON_NO_CAPACITY,
        _ if retried => REASON_BACKOFF_LIMIT,
        Outcome::ExitCode(_) => REASON_EXIT_CODE,
        _ => REASON_MACHINE_LOST,
    };
    let message = format!(
        "{} (failures of this class: {n}, backoffLimit {})",
        o.message(),
        spec.backoff_limit
    );
    finish(s, p, JobPhase::Failed, reason, message, now);
}

/// When the next attempt may start, from the last ended attempt.
fn next_start(s: &TrainingJobStatus, settings: &Settings) -> Option<Timestamp> {
    let last = s.attempts.last()?;
    let end = last.end_time.as_ref()?.0;
    let class = last.retry_class?;
    if class == RetryOn::Capacity
        && s.placement
            .as_ref()
            .is_some_and(|pl| !pl.remaining.is_empty())
    {
        return None;
    }
    Some(end + signed(delay_for(settings.retry, class_count(s, class))))
}

/// The CloudResource of attempt `attempt` could not be applied because the API server rejected
/// it (422): the attempt ends `InvalidSpec` and so does the job.
pub fn rejected_start(plan: &mut Plan, attempt: u32, message: String, now: Timestamp) {
    let mut s = std::mem::take(&mut plan.status);
    if let Some(k) = s.attempts.iter().position(|a| a.index == attempt) {
        end_attempt(
            &mut s,
            plan,
            k,
            &[],
            Ending {
                reason: outcome::INVALID_SPEC,
                class: None,
                exit: None,
                message: &message,
            },
            now,
        );
    }
    finish(
        &mut s,
        plan,
        JobPhase::Failed,
        REASON_INVALID_SPEC,
        message,
        now,
    );
    plan.status = s;
    plan.acts.retain(|a| !matches!(a, Act::Start { .. }));
}

/// Decides the next status and actions.
pub fn plan(i: Input<'_>) -> Plan {
    let now = i.now;
    let mut s = i.status.clone();
    let mut p = Plan {
        status: TrainingJobStatus::default(),
        acts: vec![],
        notes: vec![],
        requeue: None,
        releasing: 0,
        retry: None,
    };
    s.observed_generation = Some(i.generation);
    // A user's retry request is recorded as handled; a job that has not run yet has nothing to
    // retry. A failed job runs again.
    let request = retry_request::pending(i.retry_request, &s);
    if let Some(token) = request {
        s.observed_retry_request = Some(token.to_string());
    }
    let request = request.filter(|_| s.phase.is_some());
    let mut retry = None;
    if request.is_some() && s.phase == Some(JobPhase::Failed) {
        retry = Some(retry_request::reopen(&mut s, i.spec.suspend));
    }
    let terminal = s.phase.is_some_and(JobPhase::is_terminal);
    // A re-created job whose training already succeeded (GitOps after a TTL): done at once.
    if s.phase.is_none()
        && i.spec.recreate_policy == RecreatePolicy::SkipIfSucceeded
        && let Some(r) = i.prior_success.filter(|r| r.stands_for(i.spec, now))
    {
        s.previous_success = Some(r.previous());
        let msg = format!(
            "a job {} with this spec (uid {}) succeeded at {}; recreatePolicy SkipIfSucceeded: nothing was trained again",
            i.job, r.uid, r.completion_time
        );
        finish(
            &mut s,
            &mut p,
            JobPhase::Succeeded,
            REASON_ALREADY_SUCCEEDED,
            msg,
            now,
        );
        p.status = s;
        return p;
    }
    if s.phase.is_none() {
        s.phase = Some(if i.spec.suspend {
            JobPhase::Suspended
        } else {
            JobPhase::Pending
        });
    }

    // A CloudResource applied for an attempt whose status write was lost is adopted.
    let recorded = s.attempts.iter().map(|a| a.index).max().unwrap_or(0);
    let mut strays: Vec<&MachineView> = i
        .machines
        .iter()
        .filter(|v| v.attempt > recorded && v.rank == 0 && !v.deleting)
        .collect();
    strays.sort_by_key(|v| v.attempt);
    if !terminal {
        for v in strays {
            if let Some(open) = s.attempts.iter_mut().find(|a| a.end_time.is_none()) {
                open.end_time = Some(Time(now));
                if open.reason.is_none() {
                    open.reason = Some(outcome::MACHINE_LOST.to_string());
                    open.retry_class = Some(RetryOn::Interruption);
                }
            }
            s.attempts.push(Attempt {
                index: v.attempt,
                provider: v.provider,
                machine_type: v.machine_type.clone(),
                region: v.region.clone(),
                spot: v.spot,
                cloud_resource: v.name.clone(),
                start_time: Some(Time(now)),
                end_time: None,
                exit_code: None,
                reason: None,
                retry_class: None,
                cost: None,
                nodes: multi_node(i.spec),
            });
            s.start_time.get_or_insert(Time(now));
        }
    }

    let open = s.attempts.iter().position(|a| a.end_time.is_none());
    if let Some(k) = open
        && let Some(r) = i.reports.get(&s.attempts[k].index)
    {
        if let Some(hb) = r.last_heartbeat {
            s.last_heartbeat_time = Some(Time(hb));
        }
        if r.progress.is_some() {
            s.progress = r.progress.clone();
        }
    }

    let mut waiting = false;
    if !terminal {
        if let Some(k) = open {
            let restart = request.is_some() && !i.spec.suspend;
            if follow_open(&i, &mut s, &mut p, k, restart) {
                let ended = s.attempts[k].index;
                retry = Some(RetryDecision::Restarted { ended });
            }
            waiting = restart && retry.is_none() && s.attempts[k].end_time.is_none();
        }
        // A job that failed in this very pass while a retry was asked for runs again at once.
        if request.is_some() && retry.is_none() && s.phase == Some(JobPhase::Failed) {
            retry = Some(retry_request::reopen(&mut s, i.spec.suspend));
        }
        let still_open = s.attempts.iter().any(|a| a.end_time.is_none());
        if !still_open && !s.phase.is_some_and(JobPhase::is_terminal) {
            between_attempts(&i, &mut s, &mut p, request.is_some());
            if p.acts.contains(&Act::CollectOffers) {
                return Plan {
                    status: i.status.clone(),
                    acts: vec![Act::CollectOffers],
                    notes: vec![],
                    requeue: None,
                    releasing: 0,
                    retry: None,
                };
            }
        }
    }

    p.retry = request.and_then(|_| settle_retry(&i, &mut s, retry, waiting));
    if let Some(d) = &p.retry {
        p.note(d.warning(), d.event_reason(), d.message());
    }

    // Costs.
    let open_index = s
        .attempts
        .iter()
        .find(|a| a.end_time.is_none())
        .map(|a| a.index);
    let live: f64 = open_index
        .map(|n| {
            i.machines
                .iter()
                .filter(|v| v.attempt == n)
                .filter_map(|v| v.accrued_cost)
                .sum()
        })
        .unwrap_or(0.0);
    if !s.attempts.is_empty() {
        s.accrued_cost = Some(pricing::round_cents(ended_cost(&s) + live));
    }
    s.attempt_count = s.attempts.len() as u32;

    // Release every CloudResource that is not the open attempt's.
    for v in i.machines {
        if Some(v.attempt) == open_index {
            continue;
        }
        p.releasing += 1;
        if !v.deleting {
            p.acts.push(Act::Release {
                name: v.name.clone(),
                attempt: v.attempt,
            });
        }
    }
    if p.releasing > 0 {
        p.wake_in(i.settings.poll_interval);
    }

    // TTL after a final outcome; not for a job that stands for an earlier success (deleting it
    // would have a GitOps tool re-create it, again and again).
    if s.phase.is_some_and(JobPhase::is_terminal)
        && s.previous_success.is_none()
        && let (Some(ttl), Some(done)) = (
            i.spec.ttl_seconds_after_finished,
            s.completion_time.as_ref(),
        )
    {
        let at = done.0 + SignedDuration::from_secs(ttl);
        if now >= at {
            p.acts.push(Act::DeleteJob);
        } else {
            p.wake_at(at, now);
        }
    }
    if !terminal
        && s.phase == Some(JobPhase::Succeeded)
        && i.spec.recreate_policy == RecreatePolicy::SkipIfSucceeded
        && s.previous_success.is_none()
    {
        // Before the status write: a failed write of the record is tried again.
        p.acts.insert(0, Act::RecordSuccess);
    }
    // A job that ends with this attempt says so once: the job's event carries the reason.
    if p.notes
        .iter()
        .any(|n| matches!(n.reason, "JobSucceeded" | "JobFailed"))
    {
        p.notes.retain(|n| n.reason != "AttemptEnded");
    }
    p.status = s;
    p
}

/// What this pass did with a new retry request: `acted` when it restarted or reopened the job,
/// else what the job's state makes of it. A request that meets an attempt whose outcome is still
/// being decided (`waiting`) stays unrecorded and is handled once that outcome is known.
fn settle_retry(
    i: &Input<'_>,
    s: &mut TrainingJobStatus,
    acted: Option<RetryDecision>,
    waiting: bool,
) -> Option<RetryDecision> {
    if waiting {
        s.observed_retry_request = i.status.observed_retry_request.clone();
        return None;
    }
    Some(acted.unwrap_or(match s.phase {
        Some(JobPhase::Succeeded) => RetryDecision::Refused,
        _ if i.spec.suspend => RetryDecision::Deferred,
        _ => RetryDecision::NoWait,
    }))
}

/// The open attempt: follow it, end it when it is over, a policy stops it, or `restart` (a user's
/// retry request) asks for a new one. True when it ended for `restart`: not before the machine's
/// own outcome, a suspend, the deadline or the budget, nor while the exit report of a machine
/// that ended may still arrive.
fn follow_open(
    i: &Input<'_>,
    s: &mut TrainingJobStatus,
    p: &mut Plan,
    k: usize,
    restart: bool,
) -> bool {
    let now = i.now;
    let a = s.attempts[k].clone();
    let view = i
        .machines
        .iter()
        .find(|v| v.attempt == a.index && v.rank == 0);
    let peers: Vec<&MachineView> = i
        .machines
        .iter()
        .filter(|v| v.attempt == a.index && v.rank > 0)
        .collect();
    let nodes: Vec<&MachineView> = view.into_iter().chain(peers.iter().copied()).collect();
    let report = i.reports.get(&a.index);
    s.current_cloud_resource = Some(a.cloud_resource.clone());
    s.provider = Some(a.provider);
    s.machine_type = view
        .and_then(|v| v.machine_type.clone())
        .or(a.machine_type.clone());
    s.cost_per_hour = gang::price_per_hour(&nodes);

    let seen = classify(view, report, i.settings.report_grace, now);
    if let Seen::Ended(o) = &seen {
        let exit = match o {
            Outcome::Completed => Some(0),
            Outcome::ExitCode(c) => Some(*c),
            _ => None,
        };
        end_attempt(
            s,
            p,
            k,
            &nodes,
            Ending {
                reason: o.reason(),
                class: o.class(),
                exit,
                message: &o.message(),
            },
            now,
        );
        after(i.spec, s, p, o, now);
        return false;
    }

    // Policies that stop a running attempt.
    if i.spec.suspend {
        end_attempt(
            s,
            p,
            k,
            &nodes,
            Ending {
                reason: outcome::SUSPENDED,
                class: None,
                exit: None,
                message: "spec.suspend is true",
            },
            now,
        );
        // `between_attempts` marks the job Suspended.
        return false;
    }
    if let Some(at) = deadline(i.spec, s) {
        if now >= at {
            let msg = format!(
                "activeDeadlineSeconds {} passed",
                i.spec.active_deadline_seconds.unwrap_or_default()
            );
            end_attempt(
                s,
                p,
                k,
                &nodes,
                Ending {
                    reason: outcome::DEADLINE_EXCEEDED,
                    class: None,
                    exit: None,
                    message: &msg,
                },
                now,
            );
            finish(s, p, JobPhase::Failed, REASON_DEADLINE, msg, now);
            return false;
        }
        p.wake_at(at, now);
    }
    if let Some(max) = i.spec.max_total_cost
        && view.is_some()
    {
        let running: f64 = nodes.iter().filter_map(|v| machine_cost(v, now)).sum();
        let price = gang::price_per_hour(&nodes);
        let ahead = price.map_or(0.0, |c| {
            crate::provider::cost_for(c, i.settings.poll_interval.as_secs_f64())
        });
        let projected = ended_cost(s) + running + ahead;
        // Not over yet: look again when it would be, one look-ahead early.
        if let Some(per_hour) = price.filter(|c| *c > 0.0)
            && projected <= max
        {
            let hours_left = (max - projected) / per_hour;
            p.wake_in(Duration::from_secs_f64(
                (hours_left * 3600.0).clamp(0.05, 86_400.0),
            ));
        }
        if projected > max {
            let msg = format!(
                "spend would reach {projected:.4} USD by the next check; maxTotalCost is {max}"
            );
            end_attempt(
                s,
                p,
                k,
                &nodes,
                Ending {
                    reason: outcome::BUDGET_EXCEEDED,
                    class: None,
                    exit: None,
                    message: &msg,
                },
                now,
            );
            finish(s, p, JobPhase::Failed, REASON_BUDGET, msg, now);
            return false;
        }
    }

    if restart && !matches!(seen, Seen::AwaitingReport { .. }) {
        end_attempt(
            s,
            p,
            k,
            &nodes,
            Ending {
                reason: outcome::RETRY_REQUESTED,
                class: None,
                exit: None,
                message: "a new attempt was requested (runctl.dev/retry)",
            },
            now,
        );
        return true;
    }
    // The other nodes of a multi-node attempt: created once rank 0 runs; one that fails ends
    // the attempt.
    let limits = gang::Limits {
        report_grace: i.settings.report_grace,
        start_timeout: i.settings.start_timeout,
    };
    let (gang, wake) = gang::assess(a.nodes.unwrap_or(1), view, &peers, limits, now);
    if let Some(at) = wake {
        p.wake_at(at, now);
    }
    match &gang {
        Gang::Broken(o) => {
            end_attempt(
                s,
                p,
                k,
                &nodes,
                Ending {
                    reason: o.reason(),
                    class: o.class(),
                    exit: None,
                    message: &o.message(),
                },
                now,
            );
            after(i.spec, s, p, o, now);
            return false;
        }
        Gang::StartPeers { ranks, master_addr } => p.acts.push(Act::StartPeers {
            attempt: a.index,
            ranks: ranks.clone(),
            master_addr: master_addr.clone(),
        }),
        _ => {}
    }
    if let Some(o) = stuck(i, s, &a, view, report, p) {
        end_attempt(
            s,
            p,
            k,
            &nodes,
            Ending {
                reason: o.reason(),
                class: o.class(),
                exit: None,
                message: &o.message(),
            },
            now,
        );
        after(i.spec, s, p, &o, now);
        return false;
    }

    match seen {
        Seen::AwaitingReport { until } => {
            s.message =
                Some("the machine ended; waiting briefly for the workload's exit report".into());
            p.wake_at(until, now);
        }
        _ => {
            let rank0_running = view.is_some_and(|v| v.state == Some(ResourceState::Running));
            let running = rank0_running && gang == Gang::Complete;
            s.phase = Some(if running {
                JobPhase::Running
            } else {
                JobPhase::Provisioning
            });
            s.reason = None;
            s.message = Some(match view {
                Some(v) if running => format!(
                    "attempt {} runs on {} ({}){}",
                    a.index,
                    v.provider,
                    v.machine_type.as_deref().unwrap_or("-"),
                    a.nodes
                        .map(|n| format!(" on {n} nodes"))
                        .unwrap_or_default()
                ),
                Some(_) if rank0_running => match &gang {
                    Gang::Starting { running } => format!(
                        "attempt {}: {running} of {} nodes running",
                        a.index,
                        a.nodes.unwrap_or(1)
                    ),
                    _ => format!(
                        "attempt {}: rank 0 runs; starting the other {} nodes",
                        a.index,
                        a.nodes.unwrap_or(1).saturating_sub(1)
                    ),
                },
                Some(v) => format!(
                    "attempt {}: machine {}{}",
                    a.index,
                    v.state.map_or("requested", ResourceState::as_str),
                    v.message
                        .as_deref()
                        .or(v.failure.as_ref().map(|f| f.reason.as_str()))
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
                None => format!("attempt {}: requesting a machine", a.index),
            });
            if rank0_running {
                reporting(i, s, &a, view, report, p);
            }
            p.wake_in(i.settings.resync);
        }
    }
    false
}

/// Condition type: whether the running attempt's workload reports through the callback.
pub const REPORTING: &str = "Reporting";
/// Reporting reason: nothing arrived within the heartbeat timeout of the machine running.
pub const REASON_NO_REPORTS: &str = "NoReports";

/// Sets the `Reporting` condition of a running attempt: True once it reported, False
/// (`NoReports`, with a Warning event once) when nothing arrived within the heartbeat timeout of
/// its machine running — an image without curl, wget or python3, or a callback URL the machine
/// cannot reach. Such an attempt is not ended for it: it is judged by what the provider reports.
fn reporting(
    i: &Input<'_>,
    s: &mut TrainingJobStatus,
    a: &Attempt,
    view: Option<&MachineView>,
    report: Option<&AttemptReport>,
    p: &mut Plan,
) {
    let started = a.start_time.as_ref().map(|t| t.0);
    let reported = report.is_some_and(|r| r.last_heartbeat.is_some())
        || s.last_heartbeat_time
            .as_ref()
            .is_some_and(|t| started.is_some_and(|st| t.0 >= st));
    let since = view.and_then(|v| v.launch_time).or(started);
    let (status, reason, message) = match (reported, i.settings.heartbeat_timeout, since) {
        (true, _, _) => (
            condition::TRUE,
            "Reporting",
            format!("attempt {} reports through the callback endpoint", a.index),
        ),
        (false, Some(timeout), Some(since)) if i.now >= since + signed(timeout) => (
            condition::FALSE,
            REASON_NO_REPORTS,
            format!(
                "attempt {}'s machine has run for over {} s without a single report: the image \
                 may lack curl, wget and python3, or the machine cannot reach jobs.callbackUrl \
                 (see docs/training-jobs.md, \"What an image needs\"); the attempt is judged by \
                 what the provider reports",
                a.index,
                timeout.as_secs()
            ),
        ),
        (false, timeout, since) => {
            if let (Some(t), Some(since)) = (timeout, since) {
                p.wake_at(since + signed(t), i.now);
            }
            (
                condition::UNKNOWN,
                "AwaitingFirstReport",
                format!("attempt {} has not reported yet", a.index),
            )
        }
    };
    let was_silent = condition::get(&s.conditions, REPORTING)
        .is_some_and(|c| c.status == condition::FALSE && c.reason == REASON_NO_REPORTS);
    if reason == REASON_NO_REPORTS && !was_silent {
        p.note(true, REASON_NO_REPORTS, message.clone());
    }
    condition::set(
        &mut s.conditions,
        NewCondition {
            type_: REPORTING,
            status,
            reason,
            message,
        },
        Some(i.generation),
        i.now,
    );
}

/// An open attempt that stopped moving: its machine did not reach Running within the start
/// timeout, or its heartbeats, once they came, stopped for the heartbeat timeout. Otherwise
/// wakes the job when the next of those would be due.
fn stuck(
    i: &Input<'_>,
    s: &TrainingJobStatus,
    a: &Attempt,
    view: Option<&MachineView>,
    report: Option<&AttemptReport>,
    p: &mut Plan,
) -> Option<Outcome> {
    let now = i.now;
    let after = |from: Timestamp, d: Duration| from + signed(d);
    let state = view.and_then(|v| v.state);
    let started = a.start_time.as_ref().map(|t| t.0);
    if state == Some(ResourceState::Running) {
        let timeout = i.settings.heartbeat_timeout?;
        // The last heartbeat of this attempt: in memory, or in status when it is this attempt's.
        let last = report.and_then(|r| r.last_heartbeat).or_else(|| {
            s.last_heartbeat_time
                .as_ref()
                .map(|t| t.0)
                .filter(|t| started.is_some_and(|st| *t >= st))
        })?;
        let due = after(last, timeout);
        if now >= due {
            return Some(Outcome::HeartbeatsStopped {
                message: format!(
                    "no heartbeat for {} s (jobs.heartbeatTimeoutSeconds)",
                    timeout.as_secs()
                ),
            });
        }
        p.wake_at(due, now);
        return None;
    }
    if state.is_some_and(ResourceState::workload_ended) {
        return None;
    }
    let (timeout, started) = (i.settings.start_timeout?, started?);
    let due = after(started, timeout);
    if now >= due {
        return Some(Outcome::StartTimedOut {
            message: format!(
                "the machine did not reach Running within {} s (jobs.startTimeoutSeconds); it was {}",
                timeout.as_secs(),
                state.map_or("not created", ResourceState::as_str)
            ),
        });
    }
    p.wake_at(due, now);
    None
}

/// Why a placement with no offer left cannot run here, when the reason is the operator's
/// configuration: no provider enabled at all, or every provider the placement names rejected
/// `ProviderNotEnabled`. `None` when offers failed for other reasons (prices, capacity).
fn not_enabled_message(
    spec: &TrainingJobSpec,
    enabled: &[ProviderKind],
    placement: &PlacementStatus,
) -> Option<String> {
    let rejected = &placement.rejected;
    if !enabled.is_empty()
        && (rejected.is_empty() || rejected.iter().any(|r| r.reason != PROVIDER_NOT_ENABLED))
    {
        return None;
    }
    let mut named: Vec<&str> = vec![];
    for r in rejected {
        if !named.contains(&r.offer.provider.as_str()) {
            named.push(r.offer.provider.as_str());
        }
    }
    let enabled = enabled_list(enabled);
    Some(match spec.placement.provider.fixed() {
        Some(kind) => format!(
            "placement.provider {kind} is not enabled in this operator's configuration \
             (providers.{kind}.enabled; enabled: {enabled}): no machine was rented"
        ),
        None if named.is_empty() => format!(
            "no provider is enabled in this operator's configuration (providers.<name>.enabled; \
             enabled: {enabled}): no machine was rented"
        ),
        None => format!(
            "none of the providers placement auto may use ({}) is enabled in this operator's \
             configuration (providers.<name>.enabled; enabled: {enabled}): no machine was rented",
            named.join(", ")
        ),
    })
}

/// A machine class the job may not use: it waits, Pending, saying why (a Warning event when the
/// reason is new), and looks again after `resync` (a fixed class, or a new spec, lets it run).
fn refused_class(
    s: &mut TrainingJobStatus,
    p: &mut Plan,
    refusal: &ClassRefusal,
    resync: Duration,
) {
    if s.reason.as_deref() != Some(refusal.reason()) {
        p.note(true, refusal.reason(), refusal.to_string());
    }
    s.phase = Some(JobPhase::Pending);
    s.reason = Some(refusal.reason().to_string());
    s.message = Some(format!("{refusal}: no machine was rented"));
    s.current_cloud_resource = None;
    s.cost_per_hour = None;
    p.wake_in(resync);
}

/// No attempt is open: suspend, stop on policy, wait for backoff (unless a user's retry request
/// asks for the next attempt now: `no_wait`), or start the next attempt.
fn between_attempts(i: &Input<'_>, s: &mut TrainingJobStatus, p: &mut Plan, no_wait: bool) {
    let now = i.now;
    if i.spec.suspend {
        if s.phase != Some(JobPhase::Suspended) {
            p.note(false, "Suspended", "job suspended".into());
        }
        s.phase = Some(JobPhase::Suspended);
        s.reason = None;
        s.message = Some("suspended: no machine; resuming starts a new attempt".into());
        s.current_cloud_resource = None;
        s.cost_per_hour = None;
        return;
    }
    // Offers kept from an earlier ranking on a provider the configuration no longer enables
    // (the operator restarted with another configuration) are not tried.
    if let Some(pl) = s.placement.as_mut()
        && pl
            .remaining
            .iter()
            .any(|o| !i.settings.enabled_providers.contains(&o.provider))
    {
        let (keep, drop): (Vec<Offer>, Vec<Offer>) = std::mem::take(&mut pl.remaining)
            .into_iter()
            .partition(|o| i.settings.enabled_providers.contains(&o.provider));
        pl.remaining = keep;
        pl.rejected.extend(
            drop.into_iter()
                .map(|o| reject_not_enabled(o, &i.settings.enabled_providers)),
        );
    }
    let resuming = s.phase == Some(JobPhase::Suspended);
    if resuming {
        // Like a Kubernetes Job, the deadline counts again from the resume.
        s.start_time = None;
    }
    if let Some(at) = deadline(i.spec, s) {
        if now >= at {
            let msg = format!(
                "activeDeadlineSeconds {} passed",
                i.spec.active_deadline_seconds.unwrap_or_default()
            );
            return finish(s, p, JobPhase::Failed, REASON_DEADLINE, msg, now);
        }
        p.wake_at(at, now);
    }
    if let Some(max) = i.spec.max_total_cost {
        let spent = ended_cost(s);
        if spent >= max {
            return finish(
                s,
                p,
                JobPhase::Failed,
                REASON_BUDGET,
                format!("{spent:.4} USD spent; maxTotalCost is {max}"),
                now,
            );
        }
    }
    if !resuming
        && !no_wait
        && let Some(at) = next_start(s, i.settings)
        && now < at
    {
        s.phase = Some(JobPhase::Pending);
        s.reason = None;
        s.message = Some(format!(
            "retrying after attempt {} ended ({})",
            s.attempts.len(),
            s.attempts
                .last()
                .and_then(|a| a.reason.clone())
                .unwrap_or_default()
        ));
        p.wake_at(at, now);
        return;
    }
    // The offer: the next one after a capacity error, else a fresh ranking.
    let fallback = s
        .attempts
        .last()
        .is_some_and(|a| a.retry_class == Some(RetryOn::Capacity))
        && s.placement
            .as_ref()
            .is_some_and(|pl| !pl.remaining.is_empty());
    if !fallback {
        match i.offers {
            None => {
                p.acts.push(Act::CollectOffers);
                return;
            }
            Some(Err(refusal)) => return refused_class(s, p, refusal, i.settings.resync),
            Some(Ok(fresh)) => s.placement = Some(fresh.clone()),
        }
    }
    let spent = ended_cost(s);
    let placement = s.placement.get_or_insert_with(Default::default);
    if placement.remaining.is_empty()
        && let Some(msg) = not_enabled_message(i.spec, &i.settings.enabled_providers, placement)
    {
        return finish(
            s,
            p,
            JobPhase::Failed,
            REASON_PROVIDER_NOT_ENABLED,
            msg,
            now,
        );
    }
    if placement.remaining.is_empty() {
        let why: Vec<String> = placement
            .rejected
            .iter()
            .map(|r| {
                format!(
                    "{} {}: {}",
                    r.offer.provider,
                    r.offer
                        .instance_type
                        .as_deref()
                        .or(r.offer.gpu_type.as_deref())
                        .unwrap_or("-"),
                    r.reason
                )
            })
            .collect();
        let msg = format!(
            "no offer fits the placement ({})",
            if why.is_empty() {
                "no candidates".into()
            } else {
                why.join("; ")
            }
        );
        return finish(s, p, JobPhase::Failed, REASON_NO_CAPACITY, msg, now);
    }
    // A cloud machine that cannot report would train blind and end MachineLost however the run
    // went: no machine is rented until the callback URL can work.
    if let Err(why) = &i.settings.callback
        && placement.remaining[0].provider.reports_from_outside()
    {
        if s.reason.as_deref() != Some(why.reason()) {
            p.note(true, why.reason(), why.message());
        }
        s.phase = Some(JobPhase::Pending);
        s.reason = Some(why.reason().to_string());
        s.message = Some(why.message());
        p.wake_in(i.settings.resync);
        return;
    }
    // A machine the budget cannot pay for one look-ahead would be stopped at its first look: it
    // is not rented (a job retried after BudgetExceeded fails again at once).
    if let (Some(max), Some(price)) = (i.spec.max_total_cost, placement.remaining[0].price_per_hour)
    {
        // Every node of a multi-node attempt bills.
        let price = price * f64::from(i.spec.nodes());
        let ahead = crate::provider::cost_for(price, i.settings.poll_interval.as_secs_f64());
        if spent + ahead > max {
            let msg = format!(
                "{spent:.4} USD spent, and the next attempt's first {} s would cost {ahead:.4}; \
                 maxTotalCost is {max}",
                i.settings.poll_interval.as_secs()
            );
            return finish(s, p, JobPhase::Failed, REASON_BUDGET, msg, now);
        }
    }
    let offer = placement.remaining.remove(0);
    placement.chosen = Some(offer.clone());
    let index = s.attempts.iter().map(|a| a.index).max().unwrap_or(0) + 1;
    s.attempts.push(Attempt {
        index,
        provider: offer.provider,
        machine_type: offer.instance_type.clone().or(offer.gpu_type.clone()),
        region: offer.region.clone(),
        spot: offer.spot,
        cloud_resource: cloud_resource_name(i.job, index),
        start_time: Some(Time(now)),
        end_time: None,
        exit_code: None,
        reason: None,
        retry_class: None,
        cost: None,
        nodes: multi_node(i.spec),
    });
    s.start_time.get_or_insert(Time(now));
    s.phase = Some(JobPhase::Provisioning);
    s.reason = None;
    s.message = Some(format!(
        "attempt {index}: requesting {} {}{}",
        offer.provider,
        offer
            .instance_type
            .as_deref()
            .or(offer.gpu_type.as_deref())
            .unwrap_or("-"),
        if offer.spot { " (spot)" } else { "" }
    ));
    s.provider = Some(offer.provider);
    s.machine_type = offer.instance_type.clone().or(offer.gpu_type.clone());
    s.cost_per_hour = None;
    s.last_heartbeat_time = None;
    p.note(
        false,
        "AttemptStarted",
        format!(
            "attempt {index} on {} {}{} at {} USD/h",
            offer.provider,
            offer
                .instance_type
                .as_deref()
                .or(offer.gpu_type.as_deref())
                .unwrap_or("-"),
            if offer.spot { " (spot)" } else { "" },
            offer
                .price_per_hour
                .map_or("unknown".into(), |p| format!("{p:.4}"))
        ),
    );
    let max_lifetime_seconds = attempt_lifetime(i.spec, s, now);
    p.acts.push(Act::Start {
        attempt: index,
        offer,
        max_lifetime_seconds,
    });
    p.wake_in(i.settings.poll_interval);
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

/// `spec.nodes` as an attempt records it: absent for one machine.
fn multi_node(spec: &TrainingJobSpec) -> Option<u32> {
    (spec.nodes() > 1).then(|| spec.nodes())
}
