//! The job's conditions, from its phase: `Ready` (the workload runs or has succeeded),
//! `Complete`, `Failed`, `Suspended` (what `kubectl wait --for=condition=…`, Argo CD and Flux
//! read), `MachinesReleased` (every machine of an ended attempt is gone; cleanup problems
//! after a final outcome show here, never in the phase) and `Synced` (the last reconcile
//! succeeded, as on CloudResources).

use jiff::Timestamp;

use crate::crd::condition::{self, NewCondition};
use crate::crd::training_job::{JobPhase, TrainingJobStatus};

/// Condition type: the job has succeeded.
pub const COMPLETE: &str = "Complete";
/// Condition type: the job has failed.
pub const FAILED: &str = "Failed";
/// Condition type: the job is suspended.
pub const SUSPENDED: &str = "Suspended";
/// Condition type: no machine of an ended attempt remains.
pub const MACHINES_RELEASED: &str = "MachinesReleased";
/// `MachinesReleased` reason: deleting a CloudResource of an ended attempt failed.
const CLEANUP_FAILED: &str = "CleanupFailed";

fn flag(yes: bool) -> &'static str {
    if yes {
        condition::TRUE
    } else {
        condition::FALSE
    }
}

/// A condition as [`set_all`] decides it: its type, whether it holds, why.
#[derive(Clone, Debug, PartialEq)]
struct Verdict {
    type_: &'static str,
    holds: bool,
    reason: String,
    message: String,
}

impl Verdict {
    fn new(
        type_: &'static str,
        holds: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            holds,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// `type_` holding for the phase's `reason` and `message`, else not for `no_reason`.
    fn of(
        type_: &'static str,
        holds: bool,
        (reason, message): (&str, &str),
        (no_reason, no_message): (&str, &str),
    ) -> Self {
        if holds {
            Self::new(type_, true, reason, message)
        } else {
            Self::new(type_, false, no_reason, no_message)
        }
    }
}

/// Sets every condition from the status; `releasing` is how many CloudResources of ended
/// attempts still exist, `cleanup_error` a failed delete to report.
pub fn set_all(
    s: &mut TrainingJobStatus,
    generation: i64,
    now: Timestamp,
    releasing: usize,
    cleanup_error: Option<String>,
) {
    let phase = s.phase.unwrap_or(JobPhase::Pending);
    let reason = s
        .reason
        .clone()
        .unwrap_or_else(|| phase.as_str().to_string());
    let message = s
        .message
        .clone()
        .unwrap_or_else(|| format!("job is {}", phase.as_str()));
    let mut verdicts = of_phase(phase, &reason, &message);
    verdicts.push(released(releasing, cleanup_error));
    for v in verdicts {
        condition::set(
            &mut s.conditions,
            NewCondition {
                type_: v.type_,
                status: flag(v.holds),
                reason: &v.reason,
                message: v.message,
            },
            Some(generation),
            now,
        );
    }
}

/// `Ready`, `Complete`, `Failed` and `Suspended` of a job in `phase`, whose status gives
/// `reason` and `message` (or the phase's own).
fn of_phase(phase: JobPhase, reason: &str, message: &str) -> Vec<Verdict> {
    let phase_says = (reason, message);
    vec![
        // The phase's own reason when it has one (e.g. a Pending job's CallbackUnreachable).
        Verdict::new(
            condition::READY,
            matches!(phase, JobPhase::Running | JobPhase::Succeeded),
            reason,
            message,
        ),
        Verdict::of(
            COMPLETE,
            phase == JobPhase::Succeeded,
            phase_says,
            ("NotComplete", "the job has not succeeded"),
        ),
        Verdict::of(
            FAILED,
            phase == JobPhase::Failed,
            phase_says,
            ("NotFailed", "the job has not failed"),
        ),
        Verdict::of(
            SUSPENDED,
            phase == JobPhase::Suspended,
            ("Suspended", "spec.suspend is true"),
            ("NotSuspended", "the job is not suspended"),
        ),
    ]
}

/// `MachinesReleased`: `releasing` CloudResources of ended attempts remain, `cleanup_error` is
/// a failed delete.
fn released(releasing: usize, cleanup_error: Option<String>) -> Verdict {
    match (cleanup_error, releasing) {
        (Some(e), _) => Verdict::new(MACHINES_RELEASED, false, CLEANUP_FAILED, e),
        (None, 0) => Verdict::new(
            MACHINES_RELEASED,
            true,
            "Released",
            "no machine of an ended attempt remains",
        ),
        (None, n) => Verdict::new(
            MACHINES_RELEASED,
            false,
            "Releasing",
            format!("{n} CloudResource(s) of ended attempts are being deleted"),
        ),
    }
}

/// The message of a failed release that `MachinesReleased` reports, if it does.
pub fn cleanup_error(s: &TrainingJobStatus) -> Option<String> {
    condition::get(&s.conditions, MACHINES_RELEASED)
        .filter(|c| c.status == condition::FALSE && c.reason == CLEANUP_FAILED)
        .map(|c| c.message.clone())
}

/// Sets `Synced`: True after a successful reconcile, else False with the failed step's reason.
pub fn set_synced(
    s: &mut TrainingJobStatus,
    generation: i64,
    now: Timestamp,
    failure: Option<(&str, String)>,
) {
    let (status, reason, message) = match failure {
        None => (
            condition::TRUE,
            "ReconcileSuccess",
            "the job's objects are in sync".to_string(),
        ),
        Some((reason, message)) => (condition::FALSE, reason, message),
    };
    condition::set(
        &mut s.conditions,
        NewCondition {
            type_: condition::SYNCED,
            status,
            reason,
            message,
        },
        Some(generation),
        now,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase_conditions(phase: JobPhase, reason: Option<&str>) -> Vec<(String, String, String)> {
        let mut s = TrainingJobStatus {
            phase: Some(phase),
            reason: reason.map(str::to_string),
            ..Default::default()
        };
        set_all(&mut s, 3, Timestamp::now(), 0, None);
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
        s.conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect()
    }

    #[test]
    fn per_phase() {
        let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            phase_conditions(JobPhase::Running, None),
            [
                t("Ready", "True", "Running"),
                t("Complete", "False", "NotComplete"),
                t("Failed", "False", "NotFailed"),
                t("Suspended", "False", "NotSuspended"),
                t("MachinesReleased", "True", "Released")
            ]
        );
        let done = phase_conditions(JobPhase::Succeeded, Some("Completed"));
        assert_eq!(
            (done[0].1.as_str(), done[1].1.as_str(), done[1].2.as_str()),
            ("True", "True", "Completed")
        );
        let failed = phase_conditions(JobPhase::Failed, Some("DeadlineExceeded"));
        assert_eq!(
            (
                failed[0].1.as_str(),
                failed[0].2.as_str(),
                failed[2].1.as_str()
            ),
            ("False", "DeadlineExceeded", "True")
        );
        let susp = phase_conditions(JobPhase::Suspended, None);
        assert_eq!(
            (susp[0].2.as_str(), susp[3].1.as_str()),
            ("Suspended", "True")
        );
        let prov = phase_conditions(JobPhase::Provisioning, None);
        assert_eq!(
            (prov[0].1.as_str(), prov[0].2.as_str()),
            ("False", "Provisioning")
        );
    }

    #[test]
    fn synced_reports_the_failed_step() {
        let mut s = TrainingJobStatus::default();
        set_synced(
            &mut s,
            1,
            Timestamp::now(),
            Some(("SecretNotFound", "m".into())),
        );
        let c = condition::get(&s.conditions, condition::SYNCED).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "SecretNotFound")
        );
        set_synced(&mut s, 1, Timestamp::now(), None);
        assert!(condition::is_true(&s.conditions, condition::SYNCED));
    }

    #[test]
    fn cleanup_problems_show_in_machines_released_only() {
        let mut s = TrainingJobStatus {
            phase: Some(JobPhase::Succeeded),
            reason: Some("Completed".into()),
            ..Default::default()
        };
        set_all(&mut s, 1, Timestamp::now(), 1, Some("delete failed".into()));
        let released = condition::get(&s.conditions, MACHINES_RELEASED).unwrap();
        assert_eq!(
            (released.status.as_str(), released.reason.as_str()),
            ("False", "CleanupFailed")
        );
        assert!(condition::is_true(&s.conditions, COMPLETE));
    }
}
