//! The one retry policy for failed provider calls, read by both controllers from the typed
//! failure a CloudResource's status keeps (`status.failure`, made by `ProviderError::class()`):
//! whether the CloudResource controller may call create again, and what the failure means for the
//! TrainingJob attempt that owns the CloudResource. Pure: no I/O, every branch unit-tested.

use std::time::Duration;

use jiff::Timestamp;

use crate::crd::cloud_resource::{Failure, FailureClass};

/// When create is tried again after the provider rejected the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountRetry {
    /// Create is tried again after this long even with unchanged credentials (a top-up or a
    /// permission fixed on the provider's side is invisible to runctl).
    pub interval: Duration,
    /// How often the credentials Secret is looked at meanwhile; a changed Secret is tried at once.
    pub recheck: Duration,
}

impl Default for AccountRetry {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(600),
            recheck: Duration::from_secs(60),
        }
    }
}

/// Whether the CloudResource controller may call create, given the last failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateGate {
    /// Create.
    Go,
    /// A retryable or capacity failure is younger than the object's backoff: create when it
    /// has passed (`left`). Kept as a failure of the reconcile, so that the backoff keeps growing
    /// (any other wake-up of the object, a watch event, would otherwise create at once).
    BackOff {
        /// What is left of the backoff.
        left: Duration,
    },
    /// Create with a new attempt (a new idempotency token): the spec changed after a failure that
    /// only a change could fix, and EC2 refuses a reused token with different parameters.
    NewAttempt,
    /// Do not create yet: look again after `recheck`, or only on a spec change when `None`.
    Wait {
        /// When to look again.
        recheck: Option<Duration>,
    },
}

/// The create gate for a CloudResource at `generation` whose credentials Secret is now at
/// `credentials` (`namespace/name@resourceVersion`; `None` for ambient credentials), whose
/// per-object backoff after its last failure is `backoff`.
pub fn create_gate(
    failure: Option<&Failure>,
    generation: i64,
    credentials: Option<&str>,
    now: Timestamp,
    account: AccountRetry,
    backoff: Duration,
) -> CreateGate {
    let Some(f) = failure else {
        return CreateGate::Go;
    };
    match f.class {
        FailureClass::Retryable | FailureClass::Capacity => {
            let waited = Duration::try_from(now.duration_since(f.time.0)).unwrap_or_default();
            match backoff.checked_sub(waited) {
                Some(left) if !left.is_zero() => CreateGate::BackOff { left },
                _ => CreateGate::Go,
            }
        }
        FailureClass::Terminal if generation > f.generation => CreateGate::NewAttempt,
        FailureClass::Terminal => CreateGate::Wait { recheck: None },
        FailureClass::Account if generation > f.generation => CreateGate::NewAttempt,
        FailureClass::Account => {
            if f.credentials.as_deref() != credentials {
                return CreateGate::Go;
            }
            let waited = now.duration_since(f.time.0);
            let waited = Duration::try_from(waited).unwrap_or_default();
            match account.interval.checked_sub(waited) {
                Some(left) if !left.is_zero() => CreateGate::Wait {
                    recheck: Some(left.min(account.recheck)),
                },
                _ => CreateGate::Go,
            }
        }
    }
}

/// What a CloudResource's failure means for the TrainingJob attempt that owns it, while no
/// machine exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptEffect {
    /// The CloudResource controller keeps trying (retryable, or an account it retries): the
    /// attempt stays open, bounded by the job's own timeouts.
    Continue,
    /// No capacity for the offer: the attempt ends and placement tries the next offer.
    NoCapacity,
    /// The provider rejected the machine spec: the attempt and the job fail.
    Rejected,
}

/// The effect of `failure` on the attempt.
pub fn attempt_effect(failure: Option<&Failure>) -> AttemptEffect {
    match failure.map(|f| f.class) {
        Some(FailureClass::Capacity) => AttemptEffect::NoCapacity,
        Some(FailureClass::Terminal) => AttemptEffect::Rejected,
        Some(FailureClass::Retryable | FailureClass::Account) | None => AttemptEffect::Continue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn failure(class: FailureClass, generation: i64, credentials: Option<&str>) -> Failure {
        Failure {
            class,
            reason: "R".into(),
            generation,
            credentials: credentials.map(str::to_string),
            time: Time(Timestamp::from_second(1_000).unwrap()),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_000 + secs).unwrap()
    }

    #[test]
    fn retryable_and_capacity_failures_wait_out_the_backoff() {
        let acct = AccountRetry::default();
        for class in [FailureClass::Retryable, FailureClass::Capacity] {
            let f = failure(class, 1, None);
            let backoff = Duration::from_secs(30);
            assert_eq!(
                create_gate(Some(&f), 1, None, at(10), acct, backoff),
                CreateGate::BackOff {
                    left: Duration::from_secs(20)
                },
                "{class:?}"
            );
            assert_eq!(
                create_gate(Some(&f), 1, None, at(30), acct, backoff),
                CreateGate::Go
            );
            assert_eq!(
                create_gate(Some(&f), 1, None, at(0), acct, Duration::ZERO),
                CreateGate::Go
            );
        }
    }

    #[test]
    fn create_gates() {
        let acct = AccountRetry {
            interval: Duration::from_secs(600),
            recheck: Duration::from_secs(60),
        };
        let creds = Some("ns/aws@7");
        // (what, failure, generation now, credentials now, seconds since the failure, gate)
        type Case<'a> = (
            &'a str,
            Option<Failure>,
            i64,
            Option<&'a str>,
            i64,
            CreateGate,
        );
        let cases: Vec<Case> = vec![
            ("no failure", None, 1, creds, 0, CreateGate::Go),
            (
                "retryable",
                Some(failure(FailureClass::Retryable, 1, creds)),
                1,
                creds,
                0,
                CreateGate::Go,
            ),
            (
                "capacity",
                Some(failure(FailureClass::Capacity, 1, creds)),
                1,
                creds,
                0,
                CreateGate::Go,
            ),
            (
                "rejected spec waits for a change",
                Some(failure(FailureClass::Terminal, 2, creds)),
                2,
                creds,
                100_000,
                CreateGate::Wait { recheck: None },
            ),
            (
                "a changed spec is a new attempt",
                Some(failure(FailureClass::Terminal, 2, creds)),
                3,
                creds,
                0,
                CreateGate::NewAttempt,
            ),
            (
                "account: same Secret, rechecked",
                Some(failure(FailureClass::Account, 1, creds)),
                1,
                creds,
                10,
                CreateGate::Wait {
                    recheck: Some(Duration::from_secs(60)),
                },
            ),
            (
                "account: the last recheck ends at the interval",
                Some(failure(FailureClass::Account, 1, creds)),
                1,
                creds,
                590,
                CreateGate::Wait {
                    recheck: Some(Duration::from_secs(10)),
                },
            ),
            (
                "account: tried again after the interval",
                Some(failure(FailureClass::Account, 1, creds)),
                1,
                creds,
                600,
                CreateGate::Go,
            ),
            (
                "account: a changed Secret is tried at once",
                Some(failure(FailureClass::Account, 1, creds)),
                1,
                Some("ns/aws@8"),
                1,
                CreateGate::Go,
            ),
            (
                "account: a Secret set where ambient credentials failed",
                Some(failure(FailureClass::Account, 1, None)),
                1,
                creds,
                1,
                CreateGate::Go,
            ),
            (
                "account: a changed spec is a new attempt",
                Some(failure(FailureClass::Account, 1, creds)),
                2,
                creds,
                1,
                CreateGate::NewAttempt,
            ),
        ];
        for (what, f, generation, now_creds, secs, want) in cases {
            assert_eq!(
                create_gate(
                    f.as_ref(),
                    generation,
                    now_creds,
                    at(secs),
                    acct,
                    Duration::ZERO
                ),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn attempt_effects() {
        let cases = [
            (None, AttemptEffect::Continue),
            (Some(FailureClass::Retryable), AttemptEffect::Continue),
            (Some(FailureClass::Account), AttemptEffect::Continue),
            (Some(FailureClass::Capacity), AttemptEffect::NoCapacity),
            (Some(FailureClass::Terminal), AttemptEffect::Rejected),
        ];
        for (class, want) in cases {
            let f = class.map(|c| failure(c, 1, None));
            assert_eq!(attempt_effect(f.as_ref()), want, "{class:?}");
        }
    }
}
