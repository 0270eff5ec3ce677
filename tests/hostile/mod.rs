//! Property tests over what providers and users can throw at runctl's pure code: state
//! normalization of arbitrary provider statuses, error classification of arbitrary answers,
//! and status merging of arbitrary observations. None may panic, and each keeps its invariants.

pub mod answers;
pub mod callback;

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use runctl::controller::cloud_resource::status;
use runctl::crd::cloud_resource::{CloudResourceStatus, PendingCreate, ResourceState};
use runctl::crd::condition;
use runctl::provider::runpod::{errors, state};
use runctl::provider::{ErrorClass, Machine};

const STATES: [ResourceState; 8] = [
    ResourceState::Starting,
    ResourceState::Running,
    ResourceState::Stopping,
    ResourceState::Stopped,
    ResourceState::Terminating,
    ResourceState::Terminated,
    ResourceState::Error,
    ResourceState::Unknown,
];

fn now() -> Timestamp {
    "2026-11-23T12:00:00Z".parse().expect("valid timestamp")
}

fn machine_strategy() -> impl Strategy<Value = Machine> {
    (
        "[a-z0-9-]{1,20}",
        0..STATES.len(),
        proptest::option::of(0.0f64..1000.0),
        proptest::option::of(0.0f64..1.0e6),
        proptest::option::of(0i64..10_000_000),
        proptest::option::of(any::<i32>()),
        proptest::option::of(".{0,2000}"),
    )
        .prop_map(|(id, s, price, billed, age, exit, message)| {
            let mut m = Machine::new(id, STATES[s], "Reason");
            m.price_per_hour = price;
            m.billed = billed;
            m.launch_time = age.map(|a| now() - SignedDuration::from_secs(a));
            m.exit_code = exit;
            m.message = message;
            m
        })
}

fn prev_strategy() -> impl Strategy<Value = CloudResourceStatus> {
    (
        proptest::option::of("[a-z0-9-]{1,20}"),
        proptest::option::of(0..STATES.len()),
        any::<bool>(),
        proptest::option::of(0.0f64..100.0),
    )
        .prop_map(|(id, s, intent, cost)| CloudResourceStatus {
            provider_id: id,
            state: s.map(|i| STATES[i]),
            cost_per_hour: cost,
            pending_create: intent.then(|| PendingCreate {
                token: "rc-1".into(),
                attempt: 1,
                machine_name: "runctl-x".into(),
                since: Time(now() - SignedDuration::from_secs(60)),
                generation: 1,
                credentials: None,
            }),
            ..CloudResourceStatus::default()
        })
}

proptest! {
    #[test]
    fn runpod_status_normalization_is_total(status in ".{0,40}", runtime in any::<bool>(), deleted in any::<bool>()) {
        let (s, reason) = state::map_status(&status, runtime, deleted);
        prop_assert!(!reason.is_empty());
        if deleted && status != "TERMINATED" {
            prop_assert_eq!(s, ResourceState::Terminating);
        }
        if status == "RUNNING" && !runtime && !deleted {
            prop_assert_eq!(s, ResourceState::Starting, "RUNNING without a runtime is still booting");
        }
        let known = ["PROVISIONING", "STARTING", "RUNNING", "EXITED", "ERROR", "TERMINATED"];
        if !known.contains(&status.as_str()) && !deleted {
            prop_assert_eq!(s, ResourceState::Unknown);
        }
    }

    #[test]
    fn runpod_error_answers_are_classified_and_scrubbed(
        code in 400u16..600,
        body in proptest::collection::vec(any::<u8>(), 0..4096),
        secret in "[A-Za-z0-9_]{8,40}",
        at in 0usize..200,
        wait in proptest::option::of(0u64..3600),
    ) {
        // The secret embedded early in an arbitrary (often malformed or truncated) body.
        let mut b = body.clone();
        let at = at.min(b.len());
        b.splice(at..at, secret.bytes());
        let err = errors::classify(code, &b, wait.map(Duration::from_secs), &[secret.as_str()]);
        prop_assert!(!err.to_string().contains(&secret), "secret in {err}");
        prop_assert!(err.message().chars().count() < 600, "messages are bounded");
        match code {
            401..=403 => prop_assert_eq!(err.class(), ErrorClass::Account),
            429 => prop_assert_eq!(err.reason(), "RateLimited"),
            500..=599 => prop_assert_eq!(err.class(), ErrorClass::Retryable),
            _ => {}
        }
        if code == 429 || code >= 500 {
            prop_assert_eq!(err.retry_after(), wait.map(Duration::from_secs));
        }
    }

    #[test]
    fn tracking_an_observation_mirrors_it(prev in prev_strategy(), m in machine_strategy(), generation in 1i64..100) {
        let s = status::track(&prev, &m, None, None, generation, now());
        prop_assert_eq!(s.provider_id.as_deref(), Some(m.id.as_str()));
        prop_assert_eq!(s.state, Some(m.state));
        prop_assert_eq!(s.observed_generation, Some(generation));
        prop_assert_eq!(s.pending_create.clone(), prev.pending_create.clone(), "the intent is never dropped");
        if let Some(c) = s.accrued_cost {
            prop_assert!(c.is_finite() && c >= 0.0, "accrued {c}");
        }
        if m.state.is_final() {
            prop_assert!(s.end_time.is_some());
        }
        prop_assert_eq!(condition::is_true(&s.conditions, condition::READY), m.state == ResourceState::Running);
        prop_assert!(condition::is_true(&s.conditions, condition::SYNCED));
        let mut types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        types.dedup();
        prop_assert_eq!(types.len(), s.conditions.len(), "one condition per type");
        for c in &s.conditions {
            prop_assert!(c.message.len() <= condition::MAX_MESSAGE + '…'.len_utf8());
        }
        // Merging the same observation again changes nothing worth a write.
        let again = status::track(&s, &m, None, None, generation, now());
        prop_assert!(!status::worth_writing(&s, &again, Duration::from_secs(60), now()));
    }

    #[test]
    fn a_failed_call_never_forgets_a_known_machine(prev in prev_strategy(), code in 400u16..600, creating in any::<bool>()) {
        let err = errors::classify(code, b"{}", None, &[]);
        let s = status::failed(&prev, &err, creating, None, 3, now());
        prop_assert_eq!(&s.provider_id, &prev.provider_id);
        prop_assert_eq!(&s.pending_create, &prev.pending_create);
        if prev.provider_id.is_some() {
            prop_assert_eq!(s.state, prev.state, "a failed call does not invent a state for a known machine");
        }
        prop_assert!(!condition::is_true(&s.conditions, condition::SYNCED));
    }
}
