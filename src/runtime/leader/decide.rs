//! The pure half of leader election: what to do with a Lease as read ([`decide`]), and the
//! spec to write for that decision ([`desired_spec`]).

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

/// What to do with the Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// There is no Lease: create one naming us.
    Create,
    /// We hold it: renew.
    Renew,
    /// It is free (released or expired): take it over.
    TakeOver {
        /// The previous holder, if any.
        previous: Option<String>,
    },
    /// Another replica holds a valid Lease: stay a standby.
    Wait {
        /// The current holder.
        holder: String,
    },
}

/// Decides what to do with `lease` (`None`: it does not exist) at `now`, being `identity`.
///
/// A Lease without `renewTime` counts as expired; one without `leaseDurationSeconds` expires at
/// its `renewTime`.
pub fn decide(lease: Option<&Lease>, now: Timestamp, identity: &str) -> Action {
    let Some(lease) = lease else {
        return Action::Create;
    };
    let spec = lease.spec.as_ref();
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty());
    match holder {
        None => Action::TakeOver { previous: None },
        Some(h) if h == identity => Action::Renew,
        Some(h) => {
            let expires = spec.and_then(|s| {
                let renewed = s.renew_time.as_ref()?.0;
                let secs = i64::from(s.lease_duration_seconds.unwrap_or(0).max(0));
                // Overflow means "far in the future": not expired.
                Some(
                    renewed
                        .checked_add(SignedDuration::from_secs(secs))
                        .unwrap_or(Timestamp::MAX),
                )
            });
            match expires {
                Some(at) if at >= now => Action::Wait {
                    holder: h.to_owned(),
                },
                _ => Action::TakeOver {
                    previous: Some(h.to_owned()),
                },
            }
        }
    }
}

/// The Lease spec to write for `action`, or `None` when nothing is to be written.
pub fn desired_spec(
    current: Option<&LeaseSpec>,
    action: &Action,
    now: Timestamp,
    identity: &str,
    lease_duration_seconds: i32,
) -> Option<LeaseSpec> {
    let fresh = |transitions| LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(lease_duration_seconds),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..current.cloned().unwrap_or_default()
    };
    match action {
        Action::Wait { .. } => None,
        Action::Create => Some(fresh(0)),
        Action::TakeOver { .. } => {
            let previous = current.and_then(|s| s.lease_transitions).unwrap_or(0);
            Some(fresh(previous.saturating_add(1)))
        }
        Action::Renew => {
            let mut spec = current.cloned().unwrap_or_default();
            spec.holder_identity = Some(identity.to_owned());
            spec.lease_duration_seconds = Some(lease_duration_seconds);
            spec.renew_time = Some(MicroTime(now));
            if spec.acquire_time.is_none() {
                spec.acquire_time = Some(MicroTime(now));
            }
            Some(spec)
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("valid timestamp")
    }

    fn lease(
        holder: Option<&str>,
        renewed: Option<i64>,
        duration: Option<i32>,
        transitions: Option<i32>,
    ) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: renewed.map(|s| MicroTime(ts(s))),
                acquire_time: renewed.map(|s| MicroTime(ts(s))),
                lease_duration_seconds: duration,
                lease_transitions: transitions,
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn decide_table() {
        let other = |h: &str| Action::TakeOver {
            previous: Some(h.into()),
        };
        let wait = |h: &str| Action::Wait { holder: h.into() };
        let cases: Vec<(&str, Option<Lease>, i64, Action)> = vec![
            ("no lease: create", None, 0, Action::Create),
            (
                "held by us: renew",
                Some(lease(Some("me"), Some(0), Some(15), Some(1))),
                5,
                Action::Renew,
            ),
            (
                "held by us though expired: renew",
                Some(lease(Some("me"), Some(0), Some(15), None)),
                100,
                Action::Renew,
            ),
            (
                "other, valid: wait",
                Some(lease(Some("b"), Some(0), Some(15), None)),
                10,
                wait("b"),
            ),
            (
                "other, at the expiry instant: wait",
                Some(lease(Some("b"), Some(0), Some(15), None)),
                15,
                wait("b"),
            ),
            (
                "other, expired: take over",
                Some(lease(Some("b"), Some(0), Some(15), None)),
                16,
                other("b"),
            ),
            (
                "other, no renewTime: take over",
                Some(lease(Some("b"), None, Some(15), None)),
                0,
                other("b"),
            ),
            (
                "other, no duration: valid until renewTime",
                Some(lease(Some("b"), Some(0), None, None)),
                0,
                wait("b"),
            ),
            (
                "other, no duration, later: take over",
                Some(lease(Some("b"), Some(0), None, None)),
                1,
                other("b"),
            ),
            (
                "other, negative duration: take over",
                Some(lease(Some("b"), Some(0), Some(-5), None)),
                1,
                other("b"),
            ),
            (
                "released (no holder): take over",
                Some(lease(None, Some(0), Some(15), None)),
                1,
                Action::TakeOver { previous: None },
            ),
            (
                "released (empty holder): take over",
                Some(lease(Some(""), Some(0), Some(15), None)),
                1,
                Action::TakeOver { previous: None },
            ),
            (
                "no spec: take over",
                Some(Lease::default()),
                0,
                Action::TakeOver { previous: None },
            ),
        ];
        for (name, lease, now, want) in cases {
            assert_eq!(decide(lease.as_ref(), ts(now), "me"), want, "{name}");
        }
    }

    #[test]
    fn desired_spec_table() {
        let now = ts(100);
        let held = lease(Some("b"), Some(0), Some(30), Some(4)).spec;

        let created = desired_spec(None, &Action::Create, now, "me", 15).expect("writes");
        assert_eq!(created.holder_identity.as_deref(), Some("me"));
        assert_eq!(created.lease_transitions, Some(0));
        assert_eq!(created.lease_duration_seconds, Some(15));
        assert_eq!(created.acquire_time, Some(MicroTime(now)));
        assert_eq!(created.renew_time, Some(MicroTime(now)));

        let taken = desired_spec(
            held.as_ref(),
            &Action::TakeOver {
                previous: Some("b".into()),
            },
            now,
            "me",
            15,
        )
        .expect("writes");
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!(
            taken.lease_transitions,
            Some(5),
            "takeover bumps transitions"
        );
        assert_eq!(taken.acquire_time, Some(MicroTime(now)));
        assert_eq!(taken.lease_duration_seconds, Some(15));

        let ours = lease(Some("me"), Some(50), Some(15), Some(2)).spec;
        let renewed = desired_spec(ours.as_ref(), &Action::Renew, now, "me", 15).expect("writes");
        assert_eq!(
            renewed.lease_transitions,
            Some(2),
            "renewal keeps transitions"
        );
        assert_eq!(
            renewed.acquire_time,
            Some(MicroTime(ts(50))),
            "renewal keeps acquireTime"
        );
        assert_eq!(renewed.renew_time, Some(MicroTime(now)));

        assert_eq!(
            desired_spec(
                held.as_ref(),
                &Action::Wait { holder: "b".into() },
                now,
                "me",
                15
            ),
            None
        );
    }
}
