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
    /// `costRefreshSeconds`: how often a standby persists heartbeats (a persisted heartbeat
    /// counts as alive this much longer), and the pace of the job status's `lastHeartbeatTime`
    /// and `progress` ([`take_reports`]).
    pub report_refresh: Duration,
    /// When this process became the leader: a running attempt's heartbeat timeout counts from
    /// no earlier ([`crate::callback::reports::alive_since`]). `None`: from its heartbeats only.
    pub leader_since: Option<Timestamp>,
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
    /// The note tells an attempt's end (dropped when the job's own end is told in the same
    /// pass: the job's event carries the reason).
    pub attempt_end: bool,
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
    /// The latest report of the attempt whose heartbeat and progress the status shows (its
    /// number and report), which [`take_reports`] may have held back: shown whenever the status
    /// is written anyway ([`show_latest_reports`]).
    pub latest_report: Option<(u32, AttemptReport)>,
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
            attempt_end: false,
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
    // A job that ends with its attempt says so once.
    p.notes.retain(|n| !n.attempt_end);
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
    p.notes.push(Note {
        warning,
        reason: "AttemptEnded",
        message: format!("attempt {index} ended: {reason}: {message}"),
        attempt_end: true,
    });
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
    let mut s = i.status.clone();
    let mut p = Plan {
        status: TrainingJobStatus::default(),
        acts: vec![],
        notes: vec![],
        requeue: None,
        releasing: 0,
        retry: None,
        latest_report: None,
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
    if stands_for_earlier_success(&i, &mut s, &mut p) {
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
    if !terminal {
        adopt_strays(&i, &mut s);
    }
    p.latest_report = take_reports(&i, &mut s);
    let mut waiting = false;
    if !terminal {
        let open = s.attempts.iter().position(|a| a.end_time.is_none());
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
                return collect_offers_first(&i);
            }
        }
    }
    p.retry = request.and_then(|_| settle_retry(&i, &mut s, retry, waiting));
    if let Some(d) = &p.retry {
        p.note(d.warning(), d.event_reason(), d.message());
    }
    let open_index = count_costs(&i, &mut s);
    release_others(&i, &mut p, open_index);
    after_the_outcome(&i, &mut s, &mut p, terminal);
    p.status = s;
    p
}

/// The plan that only asks for offers: nothing is written before they are known.
fn collect_offers_first(i: &Input<'_>) -> Plan {
    Plan {
        status: i.status.clone(),
        acts: vec![Act::CollectOffers],
        notes: vec![],
        requeue: None,
        releasing: 0,
        retry: None,
        latest_report: None,
    }
}

/// A re-created job whose training already succeeded (GitOps after a TTL,
/// `recreatePolicy: SkipIfSucceeded`): done at once. True when it is.
fn stands_for_earlier_success(i: &Input<'_>, s: &mut TrainingJobStatus, p: &mut Plan) -> bool {
    let Some(r) = i.prior_success.filter(|r| {
        s.phase.is_none()
            && i.spec.recreate_policy == RecreatePolicy::SkipIfSucceeded
            && r.stands_for(i.spec, i.now)
    }) else {
        return false;
    };
    s.previous_success = Some(r.previous());
    let msg = format!(
        "a job {} with this spec (uid {}) succeeded at {}; recreatePolicy SkipIfSucceeded: nothing was trained again",
        i.job, r.uid, r.completion_time
    );
    finish(
        s,
        p,
        JobPhase::Succeeded,
        REASON_ALREADY_SUCCEEDED,
        msg,
        i.now,
    );
    true
}

/// A CloudResource applied for an attempt whose status write was lost is adopted (its other
/// nodes belong to it); an attempt still open before it ended `MachineLost`.
fn adopt_strays(i: &Input<'_>, s: &mut TrainingJobStatus) {
    let now = i.now;
    let recorded = s.attempts.iter().map(|a| a.index).max().unwrap_or(0);
    let mut strays: Vec<&MachineView> = i
        .machines
        .iter()
        .filter(|v| v.attempt > recorded && v.rank == 0 && !v.deleting)
        .collect();
    strays.sort_by_key(|v| v.attempt);
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

/// The open attempt's last heartbeat and progress, into status, at the pace of the cost refresh
/// so that a heartbeat alone writes no status: shown at once when the status shows none of this
/// attempt's yet (the first report, which also turns `Reporting` True), else when what it shows
/// is at least twice `report_refresh` (`costRefreshSeconds`) old ([`reports_shown_now`]); and
/// whenever the status is written for another reason (a transition, the accrued-cost refresh:
/// [`show_latest_reports`]). Returns the attempt's number and report for the latter.
fn take_reports(i: &Input<'_>, s: &mut TrainingJobStatus) -> Option<(u32, AttemptReport)> {
    let a = s.attempts.iter().find(|a| a.end_time.is_none())?;
    let (index, started) = (a.index, a.start_time.as_ref().map(|t| t.0));
    let r = i.reports.get(&index)?;
    if reports_shown_now(s, r, started, i.now, i.settings.report_refresh) {
        show_latest_reports(s, r);
    }
    Some((index, r.clone()))
}

/// Whether the status shows the open attempt's latest heartbeat and progress (`r`) now, though
/// it is written for nothing else: when it shows no heartbeat, or no progress, of this attempt
/// (`started` then) while `r` has one, or a heartbeat at least twice `refresh` old while `r`
/// has a later one. Pure, for table tests.
pub fn reports_shown_now(
    s: &TrainingJobStatus,
    r: &AttemptReport,
    started: Option<Timestamp>,
    now: Timestamp,
    refresh: Duration,
) -> bool {
    let of_this_attempt = |t: Timestamp| started.is_none_or(|st| t >= st);
    let shown = s
        .last_heartbeat_time
        .as_ref()
        .map(|t| t.0)
        .filter(|t| of_this_attempt(*t));
    let progress_shown = s
        .progress
        .as_ref()
        .is_some_and(|p| p.time.as_ref().is_none_or(|t| of_this_attempt(t.0)));
    match (shown, r.last_heartbeat) {
        (None, Some(_)) => return true,
        (Some(shown), Some(latest)) if latest > shown => {
            let stale = shown + signed(refresh.saturating_mul(2));
            if now >= stale {
                return true;
            }
        }
        _ => {}
    }
    r.progress.is_some() && !progress_shown
}

/// Shows `r`'s heartbeat and progress in the status.
pub fn show_latest_reports(s: &mut TrainingJobStatus, r: &AttemptReport) {
    if let Some(hb) = r.last_heartbeat {
        s.last_heartbeat_time = Some(Time(hb));
    }
    if r.progress.is_some() {
        s.progress = r.progress.clone();
    }
}

/// Accrued cost (ended attempts plus every machine of the open one) and the attempt count;
/// returns the open attempt's number.
fn count_costs(i: &Input<'_>, s: &mut TrainingJobStatus) -> Option<u32> {
    let open_index = s
        .attempts
        .iter()
        .find(|a| a.end_time.is_none())
        .map(|a| a.index);
    let live: f64 = i
        .machines
        .iter()
        .filter(|v| Some(v.attempt) == open_index)
        .filter_map(|v| v.accrued_cost)
        .sum();
    if !s.attempts.is_empty() {
        s.accrued_cost = Some(pricing::round_cents(ended_cost(s) + live));
    }
    s.attempt_count = s.attempts.len() as u32;
    open_index
}

/// Releases every CloudResource that is not the open attempt's.
fn release_others(i: &Input<'_>, p: &mut Plan, open_index: Option<u32>) {
    for v in i.machines.iter().filter(|v| Some(v.attempt) != open_index) {
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
}

/// After a final outcome: the TTL and the success record.
fn after_the_outcome(i: &Input<'_>, s: &mut TrainingJobStatus, p: &mut Plan, terminal: bool) {
    // Not for a job that stands for an earlier success (deleting it would have a GitOps tool
    // re-create it, again and again).
    if s.phase.is_some_and(JobPhase::is_terminal)
        && s.previous_success.is_none()
        && let (Some(ttl), Some(done)) = (
            i.spec.ttl_seconds_after_finished,
            s.completion_time.as_ref(),
        )
    {
        let at = done.0 + SignedDuration::from_secs(ttl);
        if i.now >= at {
            p.acts.push(Act::DeleteJob);
        } else {
            p.wake_at(at, i.now);
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

/// The open attempt `k`, with its machines and report.
struct Open<'a> {
    k: usize,
    a: Attempt,
    /// Rank 0's machine (the attempt's CloudResource), if it exists.
    view: Option<&'a MachineView>,
    /// The other nodes of a multi-node attempt.
    peers: Vec<&'a MachineView>,
    /// Every machine of the attempt, rank 0 first.
    nodes: Vec<&'a MachineView>,
    report: Option<&'a AttemptReport>,
}

impl<'a> Open<'a> {
    fn of(i: &Input<'a>, s: &TrainingJobStatus, k: usize) -> Self {
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
        let nodes = view.into_iter().chain(peers.iter().copied()).collect();
        let report = i.reports.get(&a.index);
        Self {
            k,
            a,
            view,
            peers,
            nodes,
            report,
        }
    }

    /// Ends the attempt.
    fn end(&self, s: &mut TrainingJobStatus, p: &mut Plan, end: Ending<'_>, now: Timestamp) {
        end_attempt(s, p, self.k, &self.nodes, end, now);
    }

    /// Ends the attempt with `o` and decides what the job does next.
    fn end_with(&self, i: &Input<'_>, s: &mut TrainingJobStatus, p: &mut Plan, o: &Outcome) {
        let exit = match o {
            Outcome::Completed => Some(0),
            Outcome::ExitCode(c) => Some(*c),
            _ => None,
        };
        let end = Ending {
            reason: o.reason(),
            class: o.class(),
            exit,
            message: &o.message(),
        };
        self.end(s, p, end, i.now);
        after(i.spec, s, p, o, i.now);
    }

    /// Ends the attempt for a reason of the job's own (no failure class, no exit code).
    fn stop(
        &self,
        s: &mut TrainingJobStatus,
        p: &mut Plan,
        reason: &str,
        message: &str,
        now: Timestamp,
    ) {
        let end = Ending {
            reason,
            class: None,
            exit: None,
            message,
        };
        self.end(s, p, end, now);
    }
}

/// Follows the open attempt `k`: its outcome, the policies that stop it, a user's retry
/// (`restart`), its other nodes, a stuck machine, else its progress. Returns true when it was
/// ended for the retry request.
fn follow_open(
    i: &Input<'_>,
    s: &mut TrainingJobStatus,
    p: &mut Plan,
    k: usize,
    restart: bool,
) -> bool {
    let o = Open::of(i, s, k);
    s.current_cloud_resource = Some(o.a.cloud_resource.clone());
    s.provider = Some(o.a.provider);
    s.machine_type = o
        .view
        .and_then(|v| v.machine_type.clone())
        .or(o.a.machine_type.clone());
    s.cost_per_hour = gang::price_per_hour(&o.nodes);

    let seen = classify(o.view, o.report, i.settings.report_grace, i.now, true);
    if let Seen::Ended(outcome) = &seen {
        o.end_with(i, s, p, outcome);
        return false;
    }
    if stopped_by_policy(i, s, p, &o) {
        return false;
    }
    if restart && !matches!(seen, Seen::AwaitingReport { .. }) {
        let why = "a new attempt was requested (runctl.dev/retry)";
        o.stop(s, p, outcome::RETRY_REQUESTED, why, i.now);
        return true;
    }
    let Some(gang) = follow_nodes(i, s, p, &o) else {
        return false;
    };
    if let Some(outcome) = stuck(i, s, &o.a, o.view, o.report, p) {
        o.end_with(i, s, p, &outcome);
        return false;
    }
    match seen {
        Seen::AwaitingReport { until } => {
            s.message =
                Some("the machine ended; waiting briefly for the workload's exit report".into());
            p.wake_at(until, i.now);
        }
        _ => show_progress(i, s, p, &o, &gang),
    }
    false
}

/// The policies that stop a running attempt: `suspend`, `activeDeadlineSeconds` and
/// `maxTotalCost`. True when one did.
fn stopped_by_policy(i: &Input<'_>, s: &mut TrainingJobStatus, p: &mut Plan, o: &Open<'_>) -> bool {
    let now = i.now;
    if i.spec.suspend {
        // `between_attempts` marks the job Suspended.
        o.stop(s, p, outcome::SUSPENDED, "spec.suspend is true", now);
        return true;
    }
    if let Some(at) = deadline(i.spec, s) {
        if now >= at {
            let secs = i.spec.active_deadline_seconds.unwrap_or_default();
            let msg = format!("activeDeadlineSeconds {secs} passed");
            o.stop(s, p, outcome::DEADLINE_EXCEEDED, &msg, now);
            finish(s, p, JobPhase::Failed, REASON_DEADLINE, msg, now);
            return true;
        }
        p.wake_at(at, now);
    }
    let Some(max) = i.spec.max_total_cost.filter(|_| o.view.is_some()) else {
        return false;
    };
    let running: f64 = o.nodes.iter().filter_map(|v| machine_cost(v, now)).sum();
    let price = gang::price_per_hour(&o.nodes);
    let poll = i.settings.poll_interval.as_secs_f64();
    let ahead = price.map_or(0.0, |c| crate::provider::cost_for(c, poll));
    let projected = ended_cost(s) + running + ahead;
    if projected > max {
        let msg = format!(
            "spend would reach {projected:.4} USD by the next check; maxTotalCost is {max}"
        );
        o.stop(s, p, outcome::BUDGET_EXCEEDED, &msg, now);
        finish(s, p, JobPhase::Failed, REASON_BUDGET, msg, now);
        return true;
    }
    // Not over yet: look again when it would be, one look-ahead early.
    if let Some(per_hour) = price.filter(|c| *c > 0.0) {
        let hours_left = (max - projected) / per_hour;
        p.wake_in(Duration::from_secs_f64(
            (hours_left * 3600.0).clamp(0.05, 86_400.0),
        ));
    }
    false
}

/// The other nodes of a multi-node attempt: created once rank 0 runs; one that fails ends the
/// attempt (`None`).
fn follow_nodes(
    i: &Input<'_>,
    s: &mut TrainingJobStatus,
    p: &mut Plan,
    o: &Open<'_>,
) -> Option<Gang> {
    let limits = gang::Limits {
        report_grace: i.settings.report_grace,
        start_timeout: i.settings.start_timeout,
    };
    let (gang, wake) = gang::assess(o.a.nodes.unwrap_or(1), o.view, &o.peers, limits, i.now);
    if let Some(at) = wake {
        p.wake_at(at, i.now);
    }
    match &gang {
        Gang::Broken(outcome) => {
            o.end_with(i, s, p, outcome);
            return None;
        }
        Gang::StartPeers { ranks, master_addr } => p.acts.push(Act::StartPeers {
            attempt: o.a.index,
            ranks: ranks.clone(),
            master_addr: master_addr.clone(),
        }),
        _ => {}
    }
    Some(gang)
}

/// An attempt still going: Running once rank 0 (and every other node) runs, else
/// Provisioning, with a message saying where it is.
fn show_progress(
    i: &Input<'_>,
    s: &mut TrainingJobStatus,
    p: &mut Plan,
    o: &Open<'_>,
    gang: &Gang,
) {
    let a = &o.a;
    let rank0_running = o
        .view
        .is_some_and(|v| v.state == Some(ResourceState::Running));
    let running = rank0_running && *gang == Gang::Complete;
    s.phase = Some(if running {
        JobPhase::Running
    } else {
        JobPhase::Provisioning
    });
    s.reason = None;
    let nodes = a.nodes.unwrap_or(1);
    s.message = Some(match o.view {
        Some(v) if running => format!(
            "attempt {} runs on {} ({}){}",
            a.index,
            v.provider,
            v.machine_type.as_deref().unwrap_or("-"),
            a.nodes
                .map(|n| format!(" on {n} nodes"))
                .unwrap_or_default()
        ),
        Some(_) if rank0_running => match gang {
            Gang::Starting { running } => {
                format!("attempt {}: {running} of {nodes} nodes running", a.index)
            }
            _ => format!(
                "attempt {}: rank 0 runs; starting the other {} nodes",
                a.index,
                nodes.saturating_sub(1)
            ),
        },
        Some(v)
            if v.failure.is_none() && matches!(v.state, None | Some(ResourceState::Starting)) =>
        {
            requesting(a)
        }
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
        None => requesting(a),
    });
    if rank0_running {
        reporting(i, s, a, o.view, o.report, p);
    }
    p.wake_in(i.settings.resync);
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
    let observed = !crate::provider::descriptor::of(a.provider).reports;
    let (status, reason, message) = match (reported, i.settings.heartbeat_timeout, since) {
        // The provider's own status says how the workload goes (a Pod's phase and exit code).
        _ if observed => (
            condition::TRUE,
            "ObservedByProvider",
            format!(
                "attempt {} is followed through {}'s own status; its workload sends no reports",
                a.index, a.provider
            ),
        ),
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
        // The last heartbeat of this attempt: in memory, or in status when it is this attempt's;
        // one a standby persisted counts for `report_refresh` more, and a new leader grants a
        // full timeout from when it took over.
        let last = report.and_then(|r| r.last_heartbeat).or_else(|| {
            s.last_heartbeat_time
                .as_ref()
                .map(|t| t.0)
                .filter(|t| started.is_some_and(|st| *t >= st))
        });
        let last = crate::callback::reports::alive_since(
            last,
            report.and_then(|r| r.stored_heartbeat),
            i.settings.report_refresh,
            i.settings.leader_since,
        )?;
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
    if i.spec.suspend {
        return suspend(s, p);
    }
    drop_disabled_offers(i, s);
    let resuming = s.phase == Some(JobPhase::Suspended);
    if resuming {
        // Like a Kubernetes Job, the deadline counts again from the resume.
        s.start_time = None;
    }
    if out_of_limits(i, s, p) || (!resuming && !no_wait && backing_off(i, s, p)) {
        return;
    }
    if !next_offers(i, s, p) || cannot_start(i, s, p) {
        return;
    }
    start_next(i, s, p);
}

/// A suspended job: no machine, no attempt.
fn suspend(s: &mut TrainingJobStatus, p: &mut Plan) {
    if s.phase != Some(JobPhase::Suspended) {
        p.note(false, "Suspended", "job suspended".into());
    }
    s.phase = Some(JobPhase::Suspended);
    s.reason = None;
    s.message = Some("suspended: no machine; resuming starts a new attempt".into());
    s.current_cloud_resource = None;
    s.cost_per_hour = None;
}

/// Offers kept from an earlier ranking on a provider the configuration no longer enables (the
/// operator restarted with another configuration) are not tried.
fn drop_disabled_offers(i: &Input<'_>, s: &mut TrainingJobStatus) {
    let enabled = &i.settings.enabled_providers;
    let Some(pl) = s
        .placement
        .as_mut()
        .filter(|pl| pl.remaining.iter().any(|o| !enabled.contains(&o.provider)))
    else {
        return;
    };
    let (keep, drop): (Vec<Offer>, Vec<Offer>) = std::mem::take(&mut pl.remaining)
        .into_iter()
        .partition(|o| enabled.contains(&o.provider));
    pl.remaining = keep;
    pl.rejected
        .extend(drop.into_iter().map(|o| reject_not_enabled(o, enabled)));
}

/// The deadline passed or the budget is spent: the job fails. True when it did.
fn out_of_limits(i: &Input<'_>, s: &mut TrainingJobStatus, p: &mut Plan) -> bool {
    let now = i.now;
    if let Some(at) = deadline(i.spec, s) {
        if now >= at {
            let secs = i.spec.active_deadline_seconds.unwrap_or_default();
            let msg = format!("activeDeadlineSeconds {secs} passed");
            finish(s, p, JobPhase::Failed, REASON_DEADLINE, msg, now);
            return true;
        }
        p.wake_at(at, now);
    }
    let spent = ended_cost(s);
    if let Some(max) = i.spec.max_total_cost.filter(|max| spent >= *max) {
        let msg = format!("{spent:.4} USD spent; maxTotalCost is {max}");
        finish(s, p, JobPhase::Failed, REASON_BUDGET, msg, now);
        return true;
    }
    false
}

/// The retry backoff after a failed attempt has not passed: Pending until it has.
fn backing_off(i: &Input<'_>, s: &mut TrainingJobStatus, p: &mut Plan) -> bool {
    let Some(at) = next_start(s, i.settings).filter(|at| i.now < *at) else {
        return false;
    };
    s.phase = Some(JobPhase::Pending);
    s.reason = None;
    let last = s.attempts.last().and_then(|a| a.reason.clone());
    s.message = Some(format!(
        "retrying after attempt {} ended ({})",
        s.attempts.len(),
        last.unwrap_or_default()
    ));
    p.wake_at(at, i.now);
    true
}

/// The offers the next attempt picks from: the next one after a capacity error, else a fresh
/// ranking (collected first: `Act::CollectOffers`). False when there are none to pick from yet
/// (or a machine class refused the job).
fn next_offers(i: &Input<'_>, s: &mut TrainingJobStatus, p: &mut Plan) -> bool {
    let fallback = s
        .attempts
        .last()
        .is_some_and(|a| a.retry_class == Some(RetryOn::Capacity))
        && s.placement
            .as_ref()
            .is_some_and(|pl| !pl.remaining.is_empty());
    if fallback {
        return true;
    }
    match i.offers {
        None => {
            p.acts.push(Act::CollectOffers);
            false
        }
        Some(Err(refusal)) => {
            refused_class(s, p, refusal, i.settings.resync);
            false
        }
        Some(Ok(fresh)) => {
            s.placement = Some(fresh.clone());
            true
        }
    }
}

/// Why the first remaining offer cannot be started now: no offer (the job fails), a callback
/// URL machines cannot reach (Pending), a budget that cannot pay its first look (fails). True
/// when one of these holds.
fn cannot_start(i: &Input<'_>, s: &mut TrainingJobStatus, p: &mut Plan) -> bool {
    let now = i.now;
    let spent = ended_cost(s);
    let placement = s.placement.get_or_insert_with(Default::default);
    let Some(first) = placement.remaining.first().cloned() else {
        let enabled = &i.settings.enabled_providers;
        match not_enabled_message(i.spec, enabled, placement) {
            Some(msg) => finish(
                s,
                p,
                JobPhase::Failed,
                REASON_PROVIDER_NOT_ENABLED,
                msg,
                now,
            ),
            None => {
                let msg = no_offer_message(placement);
                finish(s, p, JobPhase::Failed, REASON_NO_CAPACITY, msg, now)
            }
        }
        return true;
    };
    // A cloud machine that cannot report would train blind and end MachineLost however the run
    // went: no machine is rented until the callback URL can work.
    if let Err(why) = &i.settings.callback
        && first.provider.reports_from_outside()
    {
        if s.reason.as_deref() != Some(why.reason()) {
            p.note(true, why.reason(), why.message());
        }
        s.phase = Some(JobPhase::Pending);
        s.reason = Some(why.reason().to_string());
        s.message = Some(why.message());
        p.wake_in(i.settings.resync);
        return true;
    }
    // A machine the budget cannot pay for one look-ahead would be stopped at its first look: it
    // is not rented (a job retried after BudgetExceeded fails again at once). Every node of a
    // multi-node attempt bills.
    let (Some(max), Some(price)) = (i.spec.max_total_cost, first.price_per_hour) else {
        return false;
    };
    let poll = i.settings.poll_interval;
    let ahead = crate::provider::cost_for(price * f64::from(i.spec.nodes()), poll.as_secs_f64());
    if spent + ahead <= max {
        return false;
    }
    let msg = format!(
        "{spent:.4} USD spent, and the next attempt's first {} s would cost {ahead:.4}; \
         maxTotalCost is {max}",
        poll.as_secs()
    );
    finish(s, p, JobPhase::Failed, REASON_BUDGET, msg, now);
    true
}

/// `no offer fits the placement (<provider> <machine>: <reason>; …)`.
fn no_offer_message(placement: &PlacementStatus) -> String {
    let why: Vec<String> = placement
        .rejected
        .iter()
        .map(|r| {
            let machine = r
                .offer
                .instance_type
                .as_deref()
                .or(r.offer.gpu_type.as_deref());
            format!(
                "{} {}: {}",
                r.offer.provider,
                machine.unwrap_or("-"),
                r.reason
            )
        })
        .collect();
    let why = if why.is_empty() {
        "no candidates".to_string()
    } else {
        why.join("; ")
    };
    format!("no offer fits the placement ({why})")
}

/// An offer or attempt in a few words: `sim sim.a100`, `aws g5.xlarge (spot)`.
fn offer_text(provider: ProviderKind, machine: Option<&str>, spot: bool) -> String {
    format!(
        "{provider} {}{}",
        machine.unwrap_or("-"),
        if spot { " (spot)" } else { "" }
    )
}

/// The job's message while its attempt's machine is being made (no failure yet): the same from
/// the start until the machine runs, so that its steps on the way (intent, create, boot), which
/// the CloudResource shows, write nothing to the job.
fn requesting(a: &Attempt) -> String {
    format!(
        "attempt {}: requesting {}",
        a.index,
        offer_text(a.provider, a.machine_type.as_deref(), a.spot)
    )
}

/// Starts the next attempt on the first remaining offer.
fn start_next(i: &Input<'_>, s: &mut TrainingJobStatus, p: &mut Plan) {
    let now = i.now;
    let placement = s.placement.get_or_insert_with(Default::default);
    let offer = placement.remaining.remove(0);
    placement.chosen = Some(offer.clone());
    let index = s.attempts.iter().map(|a| a.index).max().unwrap_or(0) + 1;
    let machine = offer.instance_type.clone().or(offer.gpu_type.clone());
    s.attempts.push(Attempt {
        index,
        provider: offer.provider,
        machine_type: machine.clone(),
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
    let what = offer_text(offer.provider, machine.as_deref(), offer.spot);
    s.phase = Some(JobPhase::Provisioning);
    s.reason = None;
    s.message = Some(requesting(s.attempts.last().expect("just pushed")));
    // Known now: the job's first write names it, and the passes that follow the machine's
    // start have nothing new to write.
    s.current_cloud_resource = Some(cloud_resource_name(i.job, index));
    s.provider = Some(offer.provider);
    s.machine_type = machine;
    s.cost_per_hour = None;
    s.last_heartbeat_time = None;
    let price = offer
        .price_per_hour
        .map_or("unknown".into(), |p| format!("{p:.4}"));
    // The first attempt's start is its machine's `MachineCreated` event (and the job's status);
    // a later one is a retry, which the user hears of.
    if index > 1 {
        let note = format!("attempt {index} on {what} at {price} USD/h");
        p.note(false, "AttemptStarted", note);
    }
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
