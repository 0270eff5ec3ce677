//! Pure classification of how an attempt ended, from its CloudResource and the workload's
//! callback reports. An exit code is the only way to success: the workload's own report first,
//! else the one the provider reports for an ended machine (Lyceum runs have a `return_code`). A
//! machine that ends with neither is `MachineLost`, never `Completed`.

use std::time::Duration;

use jiff::Timestamp;

use super::view::MachineView;
use crate::callback::AttemptReport;
use crate::controller::retry::{self, AttemptEffect};
use crate::crd::cloud_resource::ResourceState;
use crate::crd::training_job::RetryOn;
use crate::provider::reasons;

/// Attempt reason: the workload reported exit code 0.
pub const COMPLETED: &str = "Completed";
/// Attempt reason: the workload reported a non-zero exit code.
pub const EXIT_CODE: &str = "ExitCode";
/// Attempt reason: the machine ended (or vanished) without an exit report.
pub const MACHINE_LOST: &str = "MachineLost";
/// Attempt reason: the provider had no capacity for the offer.
pub const INSUFFICIENT_CAPACITY: &str = "InsufficientCapacity";
/// Attempt reason: the provider rejected the machine spec.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Attempt reason: `activeDeadlineSeconds` was reached.
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
/// Attempt reason: `maxTotalCost` would have been crossed.
pub const BUDGET_EXCEEDED: &str = "BudgetExceeded";
/// Attempt reason: the job was suspended.
pub const SUSPENDED: &str = "Suspended";
/// Attempt reason: a user asked for a new attempt (`runctl.dev/retry`).
pub const RETRY_REQUESTED: &str = "RetryRequested";
/// Attempt reason: the machine did not reach Running within the start timeout.
pub const START_TIMEOUT: &str = "StartTimeout";
/// Attempt reason: the running workload's heartbeats stopped.
pub const HEARTBEATS_STOPPED: &str = "HeartbeatsStopped";

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Exit code 0 reported.
    Completed,
    /// Non-zero exit code reported.
    ExitCode(i32),
    /// The provider took the machine back (spot interruption, capacity lost).
    Interrupted {
        /// `SpotInterrupted` or `CapacityLost`.
        reason: String,
    },
    /// The machine ended or vanished without an exit report.
    MachineLost {
        /// What was seen.
        message: String,
    },
    /// No capacity for the offer.
    NoCapacity {
        /// Provider message.
        message: String,
    },
    /// The provider rejected the spec.
    InvalidSpec {
        /// Provider message.
        message: String,
    },
    /// The machine did not reach Running within the start timeout.
    StartTimedOut {
        /// What was seen.
        message: String,
    },
    /// The running workload's heartbeats stopped for the heartbeat timeout.
    HeartbeatsStopped {
        /// What was seen.
        message: String,
    },
}

impl Outcome {
    /// The attempt's reason.
    pub fn reason(&self) -> &str {
        match self {
            Self::Completed => COMPLETED,
            Self::ExitCode(_) => EXIT_CODE,
            Self::Interrupted { reason } => reason,
            Self::MachineLost { .. } => MACHINE_LOST,
            Self::NoCapacity { .. } => INSUFFICIENT_CAPACITY,
            Self::InvalidSpec { .. } => INVALID_SPEC,
            Self::StartTimedOut { .. } => START_TIMEOUT,
            Self::HeartbeatsStopped { .. } => HEARTBEATS_STOPPED,
        }
    }

    /// The outcome of a known exit code: 0 completes, anything else is the workload's failure.
    pub fn of_exit(code: i32) -> Self {
        if code == 0 {
            Self::Completed
        } else {
            Self::ExitCode(code)
        }
    }

    /// The retry class this outcome counts against, if any.
    pub fn class(&self) -> Option<RetryOn> {
        match self {
            Self::Completed | Self::InvalidSpec { .. } => None,
            Self::ExitCode(_) => Some(RetryOn::Failure),
            Self::Interrupted { .. }
            | Self::MachineLost { .. }
            | Self::StartTimedOut { .. }
            | Self::HeartbeatsStopped { .. } => Some(RetryOn::Interruption),
            Self::NoCapacity { .. } => Some(RetryOn::Capacity),
        }
    }

    /// Human-readable detail.
    pub fn message(&self) -> String {
        match self {
            Self::Completed => "the workload exited 0".into(),
            Self::ExitCode(c) => format!("the workload exited {c}"),
            Self::Interrupted { reason } => format!("the provider ended the machine ({reason})"),
            Self::MachineLost { message }
            | Self::NoCapacity { message }
            | Self::InvalidSpec { message }
            | Self::StartTimedOut { message }
            | Self::HeartbeatsStopped { message } => message.clone(),
        }
    }
}

/// Result of looking at an open attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    /// The attempt has ended.
    Ended(Outcome),
    /// The machine ended without a report; a report may still be in flight until `until`.
    AwaitingReport {
        /// When the attempt becomes `MachineLost`.
        until: Timestamp,
    },
    /// Still going (or blocked on something the CloudResource reports).
    Open,
}

/// The reason the provider gives for having taken the machine back (spot reclaim, capacity
/// lost), if it did.
fn reclaim_reason(view: Option<&MachineView>) -> Option<&str> {
    view.and_then(|v| v.reason.as_deref())
        .filter(|r| *r == reasons::SPOT_INTERRUPTED || *r == reasons::CAPACITY_LOST)
}

/// Classifies an open attempt from its CloudResource (`None`: it is gone) and its reports.
/// With `await_report` (an attempt whose workload reports), a machine the provider saw exit is
/// given the report `grace` for the exit report (and the output shipped before it) to arrive.
pub fn classify(
    view: Option<&MachineView>,
    report: Option<&AttemptReport>,
    grace: Duration,
    now: Timestamp,
    await_report: bool,
) -> Seen {
    if let Some(r) = report
        && let Some(code) = r.exit_code
    {
        // The wrapper stopped the workload for the reclaim notice, or the provider took the
        // machine back and the workload died of the SIGTERM/SIGKILL that came with it: an
        // interruption (retried as one), not the workload's failure.
        let reclaim = reclaim_reason(view);
        if code != 0 && (r.interrupted || (reclaim.is_some() && matches!(code, 143 | 137))) {
            return Seen::Ended(Outcome::Interrupted {
                reason: reclaim.unwrap_or(reasons::SPOT_INTERRUPTED).to_string(),
            });
        }
        return Seen::Ended(Outcome::of_exit(code));
    }
    let Some(v) = view else {
        return Seen::Ended(Outcome::MachineLost {
            message: "the attempt's CloudResource was deleted outside runctl".into(),
        });
    };
    if v.deleting {
        return Seen::Ended(Outcome::MachineLost {
            message: format!("CloudResource {} was deleted outside runctl", v.name),
        });
    }
    let reason = v.reason.as_deref().unwrap_or_default();
    // A stopped machine (a RunPod pod in `EXITED`: its container ended, its storage still bills)
    // runs no workload any more: the attempt ends like on a final state, and its release
    // terminates the machine.
    let ended = v.state.is_some_and(ResourceState::workload_ended);
    if !v.has_machine {
        // No machine yet: the CloudResource's typed failure says, through the one retry policy,
        // whether its controller keeps trying.
        return match retry::attempt_effect(v.failure.as_ref()) {
            AttemptEffect::Rejected => Seen::Ended(Outcome::InvalidSpec {
                message: v
                    .message
                    .clone()
                    .unwrap_or_else(|| "the provider rejected the machine spec".into()),
            }),
            AttemptEffect::NoCapacity => Seen::Ended(Outcome::NoCapacity {
                message: v.message.clone().unwrap_or_else(|| "no capacity".into()),
            }),
            AttemptEffect::Continue => Seen::Open,
        };
    }
    if !ended {
        return Seen::Open;
    }
    ended_machine(v, reason, grace, now, await_report)
}

/// How an attempt whose machine ended (no exit report) ended: never ran (unschedulable),
/// taken back, exited as the provider saw it, or lost once no report can still arrive.
fn ended_machine(
    v: &MachineView,
    reason: &str,
    grace: Duration,
    now: Timestamp,
    await_report: bool,
) -> Seen {
    if reason == reasons::UNSCHEDULABLE {
        // The machine never ran (the cluster's own GPUs stayed taken): placement tries the next
        // offer.
        return Seen::Ended(Outcome::NoCapacity {
            message: v
                .message
                .clone()
                .unwrap_or_else(|| "the machine could not be scheduled".into()),
        });
    }
    if let Some(reason) = reclaim_reason(Some(v)) {
        return Seen::Ended(Outcome::Interrupted {
            reason: reason.to_string(),
        });
    }
    let since = v.end_time.unwrap_or(now);
    let until = since + jiff::SignedDuration::try_from(grace).unwrap_or_default();
    // A workload that sends no reports (the provider's status is all there is) has none in
    // flight.
    let in_flight = crate::provider::descriptor::of(v.provider).reports && now < until;
    if let Some(code) = v.exit_code {
        // The provider saw the workload exit: a finished run is never trained again. Its exit
        // report, and the last output the wrapper ships before it, get the grace to arrive
        // first, so that the attempt is not released (and its output closed) before them.
        if await_report && in_flight {
            return Seen::AwaitingReport { until };
        }
        return Seen::Ended(Outcome::of_exit(code));
    }
    if in_flight {
        return Seen::AwaitingReport { until };
    }
    Seen::Ended(Outcome::MachineLost {
        message: format!(
            "the machine ended ({}{}) without the workload reporting an exit code",
            v.state.map_or("Unknown", ResourceState::as_str),
            if reason.is_empty() {
                String::new()
            } else {
                format!(", {reason}")
            }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ProviderKind;
    use crate::crd::cloud_resource::{Failure, FailureClass};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn view(state: ResourceState, reason: &str, has_machine: bool) -> MachineView {
        MachineView {
            name: "j-a1".into(),
            attempt: 1,
            rank: 0,
            created: None,
            private_address: None,
            provider: ProviderKind::Sim,
            machine_type: Some("sim.a100".into()),
            region: None,
            spot: false,
            state: Some(state),
            reason: Some(reason.into()),
            message: Some("msg".into()),
            failure: None,
            report: None,
            has_machine,
            cost_per_hour: Some(1.0),
            accrued_cost: None,
            launch_time: None,
            end_time: None,
            deleting: false,
            orphan: false,
            exit_code: None,
        }
    }

    fn exit(code: i32) -> AttemptReport {
        AttemptReport {
            exit_code: Some(code),
            ..Default::default()
        }
    }

    #[test]
    fn table() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let grace = Duration::from_secs(10);
        let mut ended_long_ago = view(ResourceState::Terminated, "Completed", true);
        ended_long_ago.end_time = Some(now - jiff::SignedDuration::from_secs(60));
        let mut ended_just_now = view(ResourceState::Error, "WorkloadFailed", true);
        ended_just_now.end_time = Some(now);
        let mut deleting = view(ResourceState::Running, "Running", true);
        deleting.deleting = true;
        let mut provider_exit_0 = view(ResourceState::Terminated, "Completed", true);
        provider_exit_0.exit_code = Some(0);
        provider_exit_0.end_time = Some(now - jiff::SignedDuration::from_secs(60));
        let mut provider_exit_3 = view(ResourceState::Error, "WorkloadFailed", true);
        provider_exit_3.exit_code = Some(3);
        provider_exit_3.end_time = Some(now);
        let mut reclaimed_with_exit = view(ResourceState::Error, "SpotInterrupted", true);
        reclaimed_with_exit.exit_code = Some(143);
        let mut exited_pod = view(ResourceState::Stopped, "Stopped", true);
        exited_pod.end_time = Some(now - jiff::SignedDuration::from_secs(60));
        let failing = |state, reason: &str, class| MachineView {
            failure: Some(Failure {
                class,
                reason: reason.into(),
                generation: 1,
                credentials: None,
                time: Time(now),
            }),
            ..view(state, reason, false)
        };
        let mut retrying_capacity = failing(
            ResourceState::Starting,
            "InsufficientCapacity",
            FailureClass::Capacity,
        );
        retrying_capacity.reason = Some("Provisioning".into());
        let cases: Vec<(&str, Option<MachineView>, Option<AttemptReport>, Seen)> = vec![
            ("exit 0 wins over anything", Some(view(ResourceState::Running, "Running", true)), Some(exit(0)), Seen::Ended(Outcome::Completed)),
            ("exit 143 after the reclaim notice is an interruption", Some(view(ResourceState::Running, "Running", true)), Some(AttemptReport { interrupted: true, ..exit(143) }), Seen::Ended(Outcome::Interrupted { reason: "SpotInterrupted".into() })),
            ("exit 143 on a reclaimed machine is an interruption", Some(view(ResourceState::Error, "SpotInterrupted", true)), Some(exit(143)), Seen::Ended(Outcome::Interrupted { reason: "SpotInterrupted".into() })),
            ("exit 143 otherwise is the workload's", Some(view(ResourceState::Running, "Running", true)), Some(exit(143)), Seen::Ended(Outcome::ExitCode(143))),
            ("exit 0 after a notice still succeeded", Some(view(ResourceState::Running, "Running", true)), Some(AttemptReport { interrupted: true, ..exit(0) }), Seen::Ended(Outcome::Completed)),
            ("exit 3 is a failure", Some(view(ResourceState::Running, "Running", true)), Some(exit(3)), Seen::Ended(Outcome::ExitCode(3))),
            ("report even after the machine is gone", None, Some(exit(0)), Seen::Ended(Outcome::Completed)),
            ("running without report", Some(view(ResourceState::Running, "Running", true)), None, Seen::Open),
            ("booting", Some(view(ResourceState::Starting, "Booting", true)), None, Seen::Open),
            ("spot interruption", Some(view(ResourceState::Error, "SpotInterrupted", true)), None, Seen::Ended(Outcome::Interrupted { reason: "SpotInterrupted".into() })),
            ("capacity on create", Some(failing(ResourceState::Starting, "InsufficientCapacity", FailureClass::Capacity)), None, Seen::Ended(Outcome::NoCapacity { message: "msg".into() })),
            ("capacity while the CloudResource retries", Some(retrying_capacity), None, Seen::Ended(Outcome::NoCapacity { message: "msg".into() })),
            ("invalid spec", Some(failing(ResourceState::Error, "InvalidSpec", FailureClass::Terminal)), None, Seen::Ended(Outcome::InvalidSpec { message: "msg".into() })),
            ("a rejected account waits: the CloudResource retries it", Some(failing(ResourceState::Error, "AuthenticationFailed", FailureClass::Account)), None, Seen::Open),
            ("a retryable create failure waits", Some(failing(ResourceState::Starting, "ProviderUnavailable", FailureClass::Retryable)), None, Seen::Open),
            ("the provider's exit 0, no report within the grace", Some(provider_exit_0), None, Seen::Ended(Outcome::Completed)),
            ("the provider's exit 3, its report (and last output) may be in flight", Some(provider_exit_3.clone()), None, Seen::AwaitingReport { until: now + jiff::SignedDuration::from_secs(10) }),
            ("the wrapper's report comes first", Some(provider_exit_3), Some(exit(0)), Seen::Ended(Outcome::Completed)),
            ("a reclaim is an interruption whatever the exit", Some(reclaimed_with_exit), None, Seen::Ended(Outcome::Interrupted { reason: "SpotInterrupted".into() })),
            ("a stopped machine (RunPod EXITED) ends the attempt", Some(exited_pod), None, Seen::Ended(Outcome::MachineLost { message: "the machine ended (Stopped, Stopped) without the workload reporting an exit code".into() })),
            ("machine ended, report may be in flight", Some(ended_just_now), None, Seen::AwaitingReport { until: now + jiff::SignedDuration::from_secs(10) }),
            ("machine ended long ago without report: never success", Some(ended_long_ago), None, Seen::Ended(Outcome::MachineLost { message: "the machine ended (Terminated, Completed) without the workload reporting an exit code".into() })),
            ("CloudResource gone", None, None, Seen::Ended(Outcome::MachineLost { message: "the attempt's CloudResource was deleted outside runctl".into() })),
            ("CloudResource deleted by someone", Some(deleting), None, Seen::Ended(Outcome::MachineLost { message: "CloudResource j-a1 was deleted outside runctl".into() })),
        ];
        for (name, v, r, want) in cases {
            assert_eq!(
                classify(v.as_ref(), r.as_ref(), grace, now, true),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn classes() {
        assert_eq!(Outcome::ExitCode(1).class(), Some(RetryOn::Failure));
        assert_eq!(
            Outcome::Interrupted {
                reason: "SpotInterrupted".into()
            }
            .class(),
            Some(RetryOn::Interruption)
        );
        assert_eq!(
            Outcome::MachineLost {
                message: String::new()
            }
            .class(),
            Some(RetryOn::Interruption)
        );
        assert_eq!(
            Outcome::NoCapacity {
                message: String::new()
            }
            .class(),
            Some(RetryOn::Capacity)
        );
        assert_eq!(Outcome::Completed.class(), None);
    }
}
