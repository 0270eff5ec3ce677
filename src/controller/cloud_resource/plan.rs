//! Pure decisions of the CloudResource controller: given what the object says and what the
//! provider reports, what to do next. No I/O here, so every branch is unit-tested.

use std::time::Duration;

use jiff::Timestamp;

use crate::controller::retry::{self, AccountRetry, CreateGate};
use crate::crd::DeletionPolicy;
use crate::crd::cloud_resource::{CloudResourceStatus, ResourceState};
use crate::provider::Machine;

/// Reason: the machine outlived `maxLifetimeSeconds`.
pub const MAX_LIFETIME_EXCEEDED: &str = "MaxLifetimeExceeded";

/// Whether the apply path needs to look at the provider at all.
pub fn needs_observation(status: &CloudResourceStatus) -> bool {
    match (&status.provider_id, status.state) {
        // A machine that has ended stays ended: nothing left to observe.
        (Some(_), Some(s)) if s.is_final() => false,
        (Some(_), _) => true,
        // Intent recorded but no id: the create may have happened; look by owner.
        (None, _) => status.pending_create.is_some(),
    }
}

/// Next step of the apply path.
#[derive(Clone, Debug, PartialEq)]
pub enum ApplyPlan {
    /// The last create failed less than the object's backoff ago: create after `left`.
    BackOff {
        /// What is left of the backoff.
        left: Duration,
    },
    /// Record a create intent (token, attempt, name) in status; create afterwards.
    RecordIntent {
        /// Attempt of the new intent.
        attempt: u32,
    },
    /// Intent recorded and no machine exists: call create.
    Create,
    /// A machine exists: record what it reports.
    Track,
    /// The machine must go (lifetime exceeded).
    Terminate {
        /// Why.
        reason: &'static str,
    },
    /// The last create failed in a way retries cannot fix (a rejected spec or account): look
    /// again after `recheck` (an account failure: the credentials Secret may change), or only
    /// on a spec change when `None`.
    Wait {
        /// When to look again.
        recheck: Option<std::time::Duration>,
    },
    /// The machine has ended; nothing more to do.
    Done,
    /// The provider no longer knows a machine runctl recorded.
    Lost,
}

/// Inputs of [`plan_apply`].
#[derive(Clone, Copy, Debug)]
pub struct ApplyInput<'a> {
    /// `metadata.generation`.
    pub generation: i64,
    /// Current status.
    pub status: &'a CloudResourceStatus,
    /// The observation, when [`needs_observation`] asked for one.
    pub machine: Option<&'a Machine>,
    /// Lifetime limit.
    pub max_lifetime_seconds: Option<i64>,
    /// Version of the credentials Secret now (`namespace/name@resourceVersion`).
    pub credentials: Option<&'a str>,
    /// When an account failure is tried again.
    pub account_retry: AccountRetry,
    /// The object's per-object backoff after its last failure: a retryable or capacity failure
    /// younger than this is not followed by a create yet.
    pub backoff: Duration,
    /// Now.
    pub now: Timestamp,
}

/// Decides the apply path's next step.
pub fn plan_apply(input: ApplyInput<'_>) -> ApplyPlan {
    let status = input.status;
    if status.provider_id.is_some() && status.state.is_some_and(ResourceState::is_final) {
        return ApplyPlan::Done;
    }
    if let Some(m) = input.machine {
        if m.is_billable() && lifetime_exceeded(m, input.max_lifetime_seconds, input.now) {
            return ApplyPlan::Terminate {
                reason: MAX_LIFETIME_EXCEEDED,
            };
        }
        return ApplyPlan::Track;
    }
    if status.provider_id.is_some() {
        return ApplyPlan::Lost;
    }
    let Some(intent) = &status.pending_create else {
        return ApplyPlan::RecordIntent { attempt: 1 };
    };
    match retry::create_gate(
        status.failure.as_ref(),
        input.generation,
        input.credentials,
        input.now,
        input.account_retry,
        input.backoff,
    ) {
        CreateGate::Go => ApplyPlan::Create,
        CreateGate::BackOff { left } => ApplyPlan::BackOff { left },
        // A new attempt gets a new token (EC2 rejects a reused token with other parameters).
        CreateGate::NewAttempt => ApplyPlan::RecordIntent {
            attempt: intent.attempt + 1,
        },
        CreateGate::Wait { recheck } => ApplyPlan::Wait { recheck },
    }
}

fn lifetime_exceeded(m: &Machine, max: Option<i64>, now: Timestamp) -> bool {
    match (max, m.launch_time) {
        (Some(max), Some(launch)) => now.duration_since(launch).as_secs() >= max,
        _ => false,
    }
}

/// When to look at an object again after an apply step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revisit {
    /// Not before something changes (final states).
    OnChange,
    /// After this long.
    After(std::time::Duration),
}

/// The intervals [`revisit`] chooses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevisitIntervals {
    /// Machines in transition (starting, stopping, terminating).
    pub transition: std::time::Duration,
    /// Steady machines: the fleet's change detection wakes them on any change, so this is only
    /// a safety net and the accrued-cost refresh.
    pub resync: std::time::Duration,
}

/// When to look at an object in `status` again. A running machine with a lifetime limit is
/// looked at when the limit is reached, if that comes before the resync.
pub fn revisit(
    status: &CloudResourceStatus,
    max_lifetime_seconds: Option<i64>,
    intervals: RevisitIntervals,
    now: Timestamp,
) -> Revisit {
    match status.state {
        Some(s) if s.is_final() => Revisit::OnChange,
        Some(ResourceState::Running | ResourceState::Stopped | ResourceState::Unknown) => {
            let until_limit = match (max_lifetime_seconds, status.launch_time.as_ref()) {
                (Some(max), Some(launch)) => {
                    let at = launch.0 + jiff::SignedDuration::from_secs(max);
                    Some(
                        std::time::Duration::try_from(at.duration_since(now))
                            .unwrap_or_default()
                            .max(std::time::Duration::from_secs(1)),
                    )
                }
                _ => None,
            };
            Revisit::After(until_limit.map_or(intervals.resync, |d| d.min(intervals.resync)))
        }
        _ => Revisit::After(intervals.transition),
    }
}

/// Next step of the delete path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CleanupPlan {
    /// Remove the finalizer now.
    Release(Released),
    /// Terminate the machine with this id.
    Terminate {
        /// Provider id.
        id: String,
    },
    /// A create intent without an id: the create may have happened, find the machine by owner.
    FindByOwner,
}

/// Why a deleted object lets go without terminating anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// `deletionPolicy: Orphan`: the machine is left running.
    Orphaned,
    /// The machine was already seen terminated (and announced then).
    AlreadyTerminated,
    /// No machine was ever created.
    NothingToDelete,
}

impl Released {
    /// The event reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Orphaned => "Orphaned",
            Self::AlreadyTerminated => "AlreadyTerminated",
            Self::NothingToDelete => "NothingToDelete",
        }
    }
}

/// Decides the delete path's next step. `ended_stays`: the provider keeps an ended machine as an
/// object until it is deleted (a finished Pod and its env Secret), so even a terminated one is
/// deleted.
pub fn plan_cleanup(
    policy: DeletionPolicy,
    status: &CloudResourceStatus,
    ended_stays: bool,
) -> CleanupPlan {
    if policy == DeletionPolicy::Orphan {
        return CleanupPlan::Release(Released::Orphaned);
    }
    match (&status.provider_id, &status.pending_create) {
        // Observed terminated: a terminated machine never comes back, nothing is left to do
        // (unless it stays as an object).
        (Some(_), _) if status.state == Some(ResourceState::Terminated) && !ended_stays => {
            CleanupPlan::Release(Released::AlreadyTerminated)
        }
        (Some(id), _) => CleanupPlan::Terminate { id: id.clone() },
        (None, Some(_)) => CleanupPlan::FindByOwner,
        (None, None) => CleanupPlan::Release(Released::NothingToDelete),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::cloud_resource::PendingCreate;
    use crate::provider::{ProviderError, reasons};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn now() -> Timestamp {
        "2026-11-23T12:00:00Z".parse().unwrap()
    }

    fn intent(attempt: u32) -> PendingCreate {
        PendingCreate {
            token: "rc-x".into(),
            attempt,
            machine_name: "runctl-x".into(),
            since: Time(now()),
            generation: 1,
            credentials: None,
        }
    }

    fn machine(state: ResourceState) -> Machine {
        let mut m = Machine::new("i-1", state, reasons::RUNNING);
        m.launch_time = Some(now() - jiff::SignedDuration::from_hours(2));
        m
    }

    fn input<'a>(status: &'a CloudResourceStatus, m: Option<&'a Machine>) -> ApplyInput<'a> {
        ApplyInput {
            generation: 1,
            status,
            machine: m,
            max_lifetime_seconds: None,
            credentials: Some("ns/creds@1"),
            account_retry: AccountRetry::default(),
            backoff: Duration::ZERO,
            now: now(),
        }
    }

    fn with_failure(status: &mut CloudResourceStatus, err: ProviderError, generation: i64) {
        *status =
            super::super::status::failed(status, &err, true, Some("ns/creds@1"), generation, now());
    }

    #[test]
    fn a_capacity_failure_is_not_followed_by_a_create_within_the_backoff() {
        let mut s = CloudResourceStatus {
            pending_create: Some(intent(1)),
            ..Default::default()
        };
        with_failure(
            &mut s,
            ProviderError::Capacity {
                message: "none".into(),
            },
            1,
        );
        let mut i = input(&s, None);
        i.backoff = Duration::from_secs(30);
        i.now = now() + jiff::SignedDuration::from_secs(10);
        assert_eq!(
            plan_apply(i),
            ApplyPlan::BackOff {
                left: Duration::from_secs(20)
            }
        );
        i.now = now() + jiff::SignedDuration::from_secs(30);
        assert_eq!(plan_apply(i), ApplyPlan::Create);
    }

    #[test]
    fn a_new_object_records_intent_before_anything_else() {
        let s = CloudResourceStatus::default();
        assert!(!needs_observation(&s));
        assert_eq!(
            plan_apply(input(&s, None)),
            ApplyPlan::RecordIntent { attempt: 1 }
        );
    }

    #[test]
    fn an_intent_without_a_machine_creates() {
        let s = CloudResourceStatus {
            pending_create: Some(intent(1)),
            ..Default::default()
        };
        assert!(
            needs_observation(&s),
            "the create may have happened: look first"
        );
        assert_eq!(plan_apply(input(&s, None)), ApplyPlan::Create);
    }

    #[test]
    fn an_intent_with_a_found_machine_adopts_it() {
        let s = CloudResourceStatus {
            pending_create: Some(intent(1)),
            ..Default::default()
        };
        let m = machine(ResourceState::Starting);
        assert_eq!(plan_apply(input(&s, Some(&m))), ApplyPlan::Track);
    }

    #[test]
    fn terminal_failure_waits_for_a_spec_change_then_starts_a_new_attempt() {
        let mut s = CloudResourceStatus {
            pending_create: Some(intent(1)),
            ..Default::default()
        };
        with_failure(
            &mut s,
            ProviderError::InvalidSpec {
                message: "x".into(),
            },
            1,
        );
        assert_eq!(
            plan_apply(input(&s, None)),
            ApplyPlan::Wait { recheck: None }
        );
        let mut i = input(&s, None);
        i.generation = 2;
        assert_eq!(plan_apply(i), ApplyPlan::RecordIntent { attempt: 2 });
    }

    #[test]
    fn an_account_failure_is_tried_again_when_the_credentials_change() {
        let mut s = CloudResourceStatus {
            pending_create: Some(intent(1)),
            ..Default::default()
        };
        with_failure(
            &mut s,
            ProviderError::Authentication {
                message: "x".into(),
            },
            1,
        );
        assert_eq!(
            plan_apply(input(&s, None)),
            ApplyPlan::Wait {
                recheck: Some(AccountRetry::default().recheck)
            }
        );
        let mut i = input(&s, None);
        i.credentials = Some("ns/creds@2");
        assert_eq!(plan_apply(i), ApplyPlan::Create, "same attempt, same token");
    }

    #[test]
    fn retryable_failures_keep_creating() {
        let mut s = CloudResourceStatus {
            pending_create: Some(intent(1)),
            ..Default::default()
        };
        with_failure(
            &mut s,
            ProviderError::Capacity {
                message: "x".into(),
            },
            1,
        );
        assert_eq!(plan_apply(input(&s, None)), ApplyPlan::Create);
    }

    #[test]
    fn a_known_machine_that_vanished_is_lost_and_a_final_one_is_done() {
        let mut s = CloudResourceStatus {
            pending_create: Some(intent(1)),
            provider_id: Some("i-1".into()),
            state: Some(ResourceState::Running),
            ..Default::default()
        };
        assert_eq!(plan_apply(input(&s, None)), ApplyPlan::Lost);
        s.state = Some(ResourceState::Terminated);
        assert!(!needs_observation(&s));
        assert_eq!(plan_apply(input(&s, None)), ApplyPlan::Done);
    }

    #[test]
    fn steady_machines_wait_for_the_resync_or_their_lifetime_limit() {
        use std::time::Duration;
        let iv = RevisitIntervals {
            transition: Duration::from_secs(5),
            resync: Duration::from_secs(60),
        };
        let mut s = CloudResourceStatus {
            state: Some(ResourceState::Starting),
            ..Default::default()
        };
        assert_eq!(revisit(&s, None, iv, now()), Revisit::After(iv.transition));
        s.state = Some(ResourceState::Running);
        assert_eq!(revisit(&s, None, iv, now()), Revisit::After(iv.resync));
        s.launch_time = Some(Time(now() - jiff::SignedDuration::from_secs(3590)));
        assert_eq!(
            revisit(&s, Some(3600), iv, now()),
            Revisit::After(Duration::from_secs(10)),
            "the lifetime limit comes first"
        );
        assert_eq!(
            revisit(&s, Some(7200), iv, now()),
            Revisit::After(iv.resync)
        );
        assert_eq!(
            revisit(&s, Some(60), iv, now()),
            Revisit::After(Duration::from_secs(1)),
            "overdue: at once (but not in a loop)"
        );
        s.state = Some(ResourceState::Terminated);
        assert_eq!(revisit(&s, None, iv, now()), Revisit::OnChange);
    }

    #[test]
    fn cleanup_terminates_live_machines_and_releases_terminated_ones() {
        let mut s = CloudResourceStatus {
            pending_create: Some(intent(1)),
            provider_id: Some("i-1".into()),
            state: Some(ResourceState::Running),
            ..Default::default()
        };
        let plan = |s: &CloudResourceStatus| plan_cleanup(DeletionPolicy::Delete, s, false);
        assert_eq!(plan(&s), CleanupPlan::Terminate { id: "i-1".into() });
        // An Error machine may still bill: terminate it.
        s.state = Some(ResourceState::Error);
        assert_eq!(plan(&s), CleanupPlan::Terminate { id: "i-1".into() });
        s.state = Some(ResourceState::Terminated);
        assert_eq!(plan(&s), CleanupPlan::Release(Released::AlreadyTerminated));
        // A finished Pod stays an object (with its env Secret) until deleted.
        assert_eq!(
            plan_cleanup(DeletionPolicy::Delete, &s, true),
            CleanupPlan::Terminate { id: "i-1".into() }
        );
        s.provider_id = None;
        s.state = None;
        assert_eq!(plan(&s), CleanupPlan::FindByOwner);
    }

    #[test]
    fn lifetime_is_enforced_on_live_machines_only() {
        let s = CloudResourceStatus {
            provider_id: Some("i-1".into()),
            ..Default::default()
        };
        let m = machine(ResourceState::Running);
        let mut i = input(&s, Some(&m));
        i.max_lifetime_seconds = Some(3600);
        assert_eq!(
            plan_apply(i),
            ApplyPlan::Terminate {
                reason: MAX_LIFETIME_EXCEEDED
            }
        );
        i.max_lifetime_seconds = Some(3 * 3600);
        assert_eq!(plan_apply(i), ApplyPlan::Track);
        let ended = machine(ResourceState::Terminated);
        let mut j = input(&s, Some(&ended));
        j.max_lifetime_seconds = Some(60);
        assert_eq!(plan_apply(j), ApplyPlan::Track);
    }

    #[test]
    fn cleanup_paths() {
        let none = CloudResourceStatus::default();
        assert_eq!(
            plan_cleanup(DeletionPolicy::Delete, &none, false),
            CleanupPlan::Release(Released::NothingToDelete)
        );
        let pending = CloudResourceStatus {
            pending_create: Some(intent(1)),
            ..Default::default()
        };
        assert_eq!(
            plan_cleanup(DeletionPolicy::Delete, &pending, false),
            CleanupPlan::FindByOwner
        );
        let known = CloudResourceStatus {
            provider_id: Some("i-9".into()),
            ..pending.clone()
        };
        assert_eq!(
            plan_cleanup(DeletionPolicy::Delete, &known, false),
            CleanupPlan::Terminate { id: "i-9".into() }
        );
        assert_eq!(
            plan_cleanup(DeletionPolicy::Orphan, &known, false),
            CleanupPlan::Release(Released::Orphaned)
        );
    }
}
