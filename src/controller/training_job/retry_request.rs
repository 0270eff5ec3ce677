//! A user's request for a new attempt now (`runctl retry tj/NAME`): the annotation
//! [`RETRY_ANNOTATION`] holds an opaque token, and each distinct value is handled once; the
//! handled value is kept in `status.observedRetryRequest`. Pure: the plan asks [`pending`]
//! whether the annotation holds a new request, and says what it did with it as a
//! [`RetryDecision`], which also names the job's event.
//!
//! - An open attempt ends `RetryRequested` (no retry class: no backoff, nothing counted against
//!   `backoffLimit`), its machine is released like any ended attempt's, and the next attempt
//!   starts at once. An attempt whose outcome is still being decided (its machine ended, its
//!   exit report may be in flight) is left to that outcome first: the request waits, unrecorded.
//! - With no attempt open (a backoff wait), the next attempt starts without the wait.
//! - A failed job leaves `Failed` and runs again; `activeDeadlineSeconds` counts from the retry,
//!   `maxTotalCost` still counts every attempt's spend, and the failure counters stay as they are.
//! - A succeeded job is not retried; a suspended job starts nothing until it resumes.
//!
//! [`RETRY_ANNOTATION`]: crate::crd::training_job::RETRY_ANNOTATION

use crate::crd::training_job::{JobPhase, TrainingJobStatus};

/// Event reason of a retry request acted on.
pub const RETRY_REQUESTED: &str = "RetryRequested";
/// Event reason of a retry request on a suspended job.
pub const RETRY_DEFERRED: &str = "RetryDeferred";
/// Event reason of a retry request on a succeeded job.
pub const RETRY_REFUSED: &str = "RetryRefused";

/// What a new retry request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// The open attempt ended `RetryRequested` and the next one starts at once.
    Restarted {
        /// The attempt that ended.
        ended: u32,
    },
    /// The failed job left `Failed` to run again.
    Reopened {
        /// The reason it had failed with.
        failed: Option<String>,
        /// `spec.suspend` is set: it runs once it resumes.
        suspended: bool,
    },
    /// No attempt was open: the next one starts without waiting out a backoff.
    NoWait,
    /// The job is suspended: nothing starts until it resumes.
    Deferred,
    /// The job succeeded: it is not retried.
    Refused,
}

impl RetryDecision {
    /// The event's reason.
    pub fn event_reason(&self) -> &'static str {
        match self {
            Self::Restarted { .. } | Self::Reopened { .. } | Self::NoWait => RETRY_REQUESTED,
            Self::Deferred => RETRY_DEFERRED,
            Self::Refused => RETRY_REFUSED,
        }
    }

    /// Whether the event is a Warning (the request was not carried out).
    pub fn warning(&self) -> bool {
        *self == Self::Refused
    }

    /// The event's note.
    pub fn message(&self) -> String {
        let head = "retry requested (runctl.dev/retry)";
        match self {
            Self::Restarted { ended } => format!(
                "{head}: attempt {ended} ended RetryRequested (not counted as a failure) and its \
                 machine is released; the next attempt starts at once"
            ),
            Self::Reopened { failed, suspended } => format!(
                "{head}: the job had failed ({}) and runs again; activeDeadlineSeconds counts \
                 from now, maxTotalCost counts the spend of every attempt{}",
                failed.as_deref().unwrap_or("no reason"),
                if *suspended {
                    "; it is suspended, so its next attempt starts when it resumes"
                } else {
                    ""
                }
            ),
            Self::NoWait => {
                format!("{head}: no attempt was open; the next one starts without waiting")
            }
            Self::Deferred => format!(
                "{head}: the job is suspended, so nothing starts now; resuming it \
                 (spec.suspend false) starts a new attempt"
            ),
            Self::Refused => format!(
                "{head}: a succeeded job is not retried; delete and re-apply it to train again"
            ),
        }
    }
}

/// The token of a request not handled yet: the annotation's value when it differs from the one
/// `status.observedRetryRequest` recorded.
pub fn pending<'a>(annotation: Option<&'a str>, s: &TrainingJobStatus) -> Option<&'a str> {
    annotation.filter(|token| s.observed_retry_request.as_deref() != Some(*token))
}

/// A failed job asked to run again: it leaves `Failed` for `Pending` with no completion time, and
/// its deadline counts again from the next attempt's start (like a resume). Attempts, costs and
/// failure counters stay.
pub fn reopen(s: &mut TrainingJobStatus, suspended: bool) -> RetryDecision {
    let failed = s.reason.take();
    s.phase = Some(JobPhase::Pending);
    s.message = None;
    s.completion_time = None;
    s.start_time = None;
    RetryDecision::Reopened { failed, suspended }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_pending_until_recorded() {
        let mut s = TrainingJobStatus::default();
        assert_eq!(pending(None, &s), None);
        assert_eq!(pending(Some("t1"), &s), Some("t1"));
        s.observed_retry_request = Some("t1".into());
        assert_eq!(pending(Some("t1"), &s), None);
        assert_eq!(pending(Some("t2"), &s), Some("t2"));
        assert_eq!(pending(None, &s), None, "a removed annotation asks nothing");
    }

    #[test]
    fn only_a_refusal_is_a_warning() {
        for d in [
            RetryDecision::Restarted { ended: 1 },
            RetryDecision::Reopened {
                failed: None,
                suspended: false,
            },
            RetryDecision::NoWait,
            RetryDecision::Deferred,
        ] {
            assert!(!d.warning(), "{d:?}");
        }
        assert!(RetryDecision::Refused.warning());
        assert_eq!(RetryDecision::Refused.event_reason(), RETRY_REFUSED);
    }
}
