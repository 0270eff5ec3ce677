//! Table tests of the TrainingJob plan.

use super::*;
use crate::crd::ProviderKind;
use crate::crd::cloud_resource::Failure;
use crate::provider::ProviderError;

fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn at(secs: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(secs)
}

fn settings() -> Settings {
    Settings {
        poll_interval: Duration::from_secs(10),
        resync: Duration::from_secs(60),
        report_grace: Duration::from_secs(30),
        start_timeout: Some(Duration::from_secs(600)),
        heartbeat_timeout: Some(Duration::from_secs(120)),
        retry: BackoffConfig {
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
        },
        callback: Ok(()),
        enabled_providers: ProviderKind::ALL.to_vec(),
        report_refresh: Duration::from_secs(1200),
        leader_since: None,
    }
}

fn spec(extra: serde_json::Value) -> TrainingJobSpec {
    let mut v = serde_json::json!({
        "placement": {"provider": "sim", "instanceType": "sim.a100"},
        "workload": {"image": "train:1", "checkpointDir": "s3://ckpt"}
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            o.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(v).unwrap()
}

fn offer(spot: bool, price: f64) -> Offer {
    Offer {
        provider: ProviderKind::Sim,
        instance_type: Some("sim.a100".into()),
        gpu_type: None,
        gpu_count: None,
        region: None,
        spot,
        price_per_hour: Some(price),
        machine_class: None,
    }
}

fn offers(list: Vec<Offer>) -> PlacementStatus {
    PlacementStatus {
        chosen: None,
        remaining: list,
        rejected: vec![],
    }
}

/// The typed failure a CloudResource records for a provider error of `reason`.
fn failure(reason: &str) -> Failure {
    let e = ProviderError::from_reason(reason, "x".into(), None);
    Failure {
        class: e.class(),
        reason: reason.into(),
        generation: 1,
        credentials: None,
        time: Time(t0()),
    }
}

fn machine(attempt: u32, state: ResourceState, reason: &str) -> MachineView {
    let has_machine = state != ResourceState::Starting || reason == "Booting";
    MachineView {
        name: format!("job-a{attempt}"),
        attempt,
        rank: 0,
        created: None,
        private_address: None,
        provider: ProviderKind::Sim,
        machine_type: Some("sim.a100".into()),
        region: None,
        spot: false,
        state: Some(state),
        reason: Some(reason.into()),
        message: None,
        has_machine,
        cost_per_hour: Some(3.6),
        accrued_cost: Some(0.01),
        launch_time: Some(t0()),
        end_time: if state.is_final() { Some(t0()) } else { None },
        deleting: false,
        orphan: false,
        exit_code: None,
        // Without a machine, the CloudResource's failure is the one its reason names.
        failure: (!has_machine).then(|| failure(reason)),
        report: None,
    }
}

struct Case {
    spec: TrainingJobSpec,
    status: TrainingJobStatus,
    machines: Vec<MachineView>,
    reports: BTreeMap<u32, AttemptReport>,
    offers: Option<Result<PlacementStatus, ClassRefusal>>,
    prior_success: Option<crate::controller::training_job::success_record::SuccessRecord>,
    callback: Result<(), Unreachable>,
    enabled: Vec<ProviderKind>,
    /// The job's `runctl.dev/retry` annotation.
    retry_request: Option<String>,
    /// When the planning process became the leader.
    leader_since: Option<Timestamp>,
    now: Timestamp,
}

impl Case {
    fn new(spec: TrainingJobSpec) -> Self {
        Self {
            spec,
            status: TrainingJobStatus::default(),
            machines: vec![],
            reports: BTreeMap::new(),
            offers: None,
            prior_success: None,
            callback: Ok(()),
            enabled: ProviderKind::ALL.to_vec(),
            retry_request: None,
            leader_since: None,
            now: t0(),
        }
    }

    fn run(&self) -> Plan {
        let s = Settings {
            callback: self.callback.clone(),
            enabled_providers: self.enabled.clone(),
            leader_since: self.leader_since,
            ..settings()
        };
        plan(Input {
            job: "job",
            spec: &self.spec,
            status: &self.status,
            generation: 1,
            machines: &self.machines,
            reports: &self.reports,
            offers: self.offers.as_ref(),
            retry_request: self.retry_request.as_deref(),
            prior_success: self.prior_success.as_ref(),
            settings: &s,
            now: self.now,
        })
    }

    /// Runs the plan and takes its status as the next status (as the controller would).
    fn step(&mut self) -> Plan {
        let p = self.run();
        self.status = p.status.clone();
        p
    }
}

fn exit(code: i32) -> AttemptReport {
    AttemptReport {
        exit_code: Some(code),
        last_heartbeat: Some(t0()),
        progress: None,
        interrupted: false,
        ..Default::default()
    }
}

/// A job whose attempt 1 is running on a machine.
fn running(spec: TrainingJobSpec) -> Case {
    let mut c = Case::new(spec);
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    c.step();
    c.offers = None;
    c.machines = vec![machine(1, ResourceState::Running, "Running")];
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Running));
    c
}

#[test]
fn a_new_job_collects_offers_then_starts_attempt_one() {
    let mut c = Case::new(spec(serde_json::json!({})));
    let p = c.run();
    assert_eq!(p.acts, vec![Act::CollectOffers]);
    assert_eq!(
        p.status,
        TrainingJobStatus::default(),
        "nothing is written before offers are known"
    );
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    let p = c.step();
    assert_eq!(
        p.acts,
        vec![Act::Start {
            attempt: 1,
            offer: offer(false, 3.6),
            max_lifetime_seconds: None,
        }]
    );
    let s = &p.status;
    assert_eq!(s.phase, Some(JobPhase::Provisioning));
    assert_eq!(s.attempts[0].cloud_resource, "job-a1");
    assert_eq!(s.attempt_count, 1);
    assert_eq!(s.start_time, Some(Time(t0())));
    assert_eq!(
        s.placement.as_ref().unwrap().chosen,
        Some(offer(false, 3.6))
    );
    assert_eq!(p.requeue, Some(Duration::from_secs(10)));
}

#[test]
fn phases_follow_the_machine() {
    let mut c = Case::new(spec(serde_json::json!({})));
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    c.step();
    let cases = [
        (
            ResourceState::Starting,
            "Provisioning",
            JobPhase::Provisioning,
        ),
        (ResourceState::Starting, "Booting", JobPhase::Provisioning),
        (ResourceState::Running, "Running", JobPhase::Running),
    ];
    for (state, reason, want) in cases {
        c.machines = vec![machine(1, state, reason)];
        let p = c.run();
        assert_eq!(p.status.phase, Some(want), "{reason}");
        assert!(p.acts.is_empty(), "{reason}: {:?}", p.acts);
        assert_eq!(p.status.current_cloud_resource.as_deref(), Some("job-a1"));
    }
}

#[test]
fn exit_zero_succeeds_and_releases_the_machine() {
    let mut c = running(spec(serde_json::json!({"ttlSecondsAfterFinished": 60})));
    c.reports.insert(1, exit(0));
    c.now = at(100);
    let p = c.step();
    let s = &p.status;
    assert_eq!(
        (s.phase, s.reason.as_deref(), s.exit_code),
        (Some(JobPhase::Succeeded), Some("Completed"), Some(0))
    );
    assert_eq!(s.completion_time, Some(Time(at(100))));
    assert_eq!(s.attempts[0].reason.as_deref(), Some("Completed"));
    assert_eq!(s.attempts[0].cost, Some(0.1), "3.6 USD/h for 100 s");
    assert_eq!(
        p.acts,
        vec![Act::Release {
            name: "job-a1".into(),
            attempt: 1
        }]
    );
    assert_eq!(p.releasing, 1);

    // Final: a later machine state never changes the outcome; the TTL deletes the job.
    c.machines[0] = machine(1, ResourceState::Error, "SpotInterrupted");
    c.machines[0].deleting = true;
    c.reports.clear();
    c.now = at(120);
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Succeeded));
    assert!(p.acts.is_empty());
    assert_eq!(
        p.requeue,
        Some(Duration::from_secs(10)),
        "waits for the machine, and for the TTL"
    );
    c.machines.clear();
    c.now = at(160);
    assert_eq!(c.run().acts, vec![Act::DeleteJob]);
}

#[test]
fn workload_failures_retry_up_to_the_backoff_limit() {
    let mut c = running(spec(
        serde_json::json!({"backoffLimit": 1, "retryOn": ["failure"]}),
    ));
    c.reports.insert(1, exit(2));
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Pending));
    assert_eq!(p.status.failures.failure, 1);
    assert_eq!(p.status.attempts[0].exit_code, Some(2));
    assert_eq!(
        p.acts,
        vec![Act::Release {
            name: "job-a1".into(),
            attempt: 1
        }]
    );
    assert_eq!(p.requeue, Some(Duration::from_secs(10)), "backoff");
    // During backoff nothing starts.
    c.machines.clear();
    c.now = at(5);
    assert!(c.run().acts.is_empty());
    // After it, offers are collected again and attempt 2 starts.
    c.now = at(11);
    assert_eq!(c.run().acts, vec![Act::CollectOffers]);
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    let p = c.step();
    assert_eq!(
        p.acts,
        vec![Act::Start {
            attempt: 2,
            offer: offer(false, 3.6),
            max_lifetime_seconds: None,
        }]
    );
    assert_eq!(p.status.attempts[1].cloud_resource, "job-a2");
    c.machines = vec![machine(2, ResourceState::Running, "Running")];
    c.reports.insert(2, exit(2));
    let p = c.step();
    let s = &p.status;
    assert_eq!(
        (s.phase, s.reason.as_deref()),
        (Some(JobPhase::Failed), Some("BackoffLimitExceeded"))
    );
    assert_eq!(s.attempt_count, 2);
}

#[test]
fn failures_not_in_retry_on_fail_the_job_with_their_reason() {
    let cases: Vec<(&str, Option<AttemptReport>, MachineView, &str)> = vec![
        (
            "exit code",
            Some(exit(1)),
            machine(1, ResourceState::Running, "Running"),
            "ExitCode",
        ),
        (
            "interruption",
            None,
            machine(1, ResourceState::Error, "SpotInterrupted"),
            "MachineLost",
        ),
    ];
    for (name, report, m, want) in cases {
        let mut c = running(spec(serde_json::json!({"retryOn": []})));
        if let Some(r) = report {
            c.reports.insert(1, r);
        }
        c.machines = vec![m];
        let p = c.step();
        assert_eq!(
            (p.status.phase, p.status.reason.as_deref()),
            (Some(JobPhase::Failed), Some(want)),
            "{name}"
        );
    }
}

#[test]
fn spot_interruption_is_a_new_attempt_counted_apart_from_failures() {
    let mut c = running(spec(
        serde_json::json!({"retryOn": ["interruption", "failure"], "backoffLimit": 1}),
    ));
    c.status.failures.failure = 1;
    c.machines = vec![machine(1, ResourceState::Error, "SpotInterrupted")];
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Pending));
    assert_eq!(
        (p.status.failures.interruption, p.status.failures.failure),
        (1, 1)
    );
    assert_eq!(
        p.status.attempts[0].reason.as_deref(),
        Some("SpotInterrupted")
    );
}

#[test]
fn a_machine_that_ends_without_a_report_is_lost_not_successful() {
    let mut c = running(spec(
        serde_json::json!({"retryOn": ["interruption"], "backoffLimit": 0}),
    ));
    c.machines = vec![machine(1, ResourceState::Terminated, "Completed")];
    c.now = at(10);
    let p = c.step();
    assert_ne!(p.status.phase, Some(JobPhase::Succeeded));
    assert!(
        p.status.attempts[0].end_time.is_none(),
        "a report may still be in flight"
    );
    assert_eq!(
        p.requeue,
        Some(Duration::from_secs(20)),
        "until the grace ends"
    );
    c.now = at(31);
    let p = c.step();
    assert_eq!(
        (p.status.phase, p.status.reason.as_deref()),
        (Some(JobPhase::Failed), Some("BackoffLimitExceeded"))
    );
    assert_eq!(p.status.attempts[0].reason.as_deref(), Some("MachineLost"));
}

#[test]
fn capacity_errors_move_to_the_next_offer_at_once() {
    let mut c = Case::new(spec(
        serde_json::json!({"placement": {"provider": "auto", "instanceType": "sim.a100", "capacityType": "spotWithFallback"}}),
    ));
    c.offers = Some(Ok(offers(vec![offer(true, 1.0), offer(false, 3.0)])));
    let p = c.step();
    assert_eq!(
        p.acts,
        vec![Act::Start {
            attempt: 1,
            offer: offer(true, 1.0),
            max_lifetime_seconds: None,
        }]
    );
    let mut m = machine(1, ResourceState::Starting, "InsufficientCapacity");
    m.has_machine = false;
    c.machines = vec![m];
    c.offers = None;
    let p = c.step();
    assert_eq!(
        p.acts,
        vec![
            Act::Start {
                attempt: 2,
                offer: offer(false, 3.0),
                max_lifetime_seconds: None,
            },
            Act::Release {
                name: "job-a1".into(),
                attempt: 1
            }
        ]
    );
    let pl = p.status.placement.clone().unwrap();
    assert_eq!(pl.chosen, Some(offer(false, 3.0)));
    assert_eq!(pl.rejected.len(), 1);
    assert_eq!(pl.rejected[0].reason, "InsufficientCapacity");
    assert_eq!(
        p.status.attempts[0].reason.as_deref(),
        Some("InsufficientCapacity")
    );
    // The last offer has no capacity either, and capacity is retried once after a backoff.
    let mut m2 = machine(2, ResourceState::Starting, "InsufficientCapacity");
    m2.has_machine = false;
    c.machines = vec![m2];
    c.spec.backoff_limit = 0;
    let p = c.step();
    assert_eq!(
        (p.status.phase, p.status.reason.as_deref()),
        (Some(JobPhase::Failed), Some("NoCapacity"))
    );
}

#[test]
fn a_machine_class_the_job_may_not_use_keeps_it_pending_and_rents_nothing() {
    let mut c = Case::new(spec(serde_json::json!({})));
    assert_eq!(c.step().acts, vec![Act::CollectOffers]);
    c.offers = Some(Err(ClassRefusal::NamespaceNotAllowed {
        class: "team-b-aws".into(),
        namespace: "team-a".into(),
    }));
    let p = c.step();
    assert_eq!(
        (p.status.phase, p.status.reason.as_deref()),
        (Some(JobPhase::Pending), Some("MachineClassNotAllowed"))
    );
    assert_eq!(
        p.status.message.as_deref(),
        Some(
            "MachineClass \"team-b-aws\" may not be used in namespace \"team-a\" (its spec.allowedNamespaces does not list it): no machine was rented"
        )
    );
    assert!(p.acts.is_empty(), "{:?}", p.acts);
    assert!(p.status.attempts.is_empty());
    assert!(
        p.notes
            .iter()
            .any(|n| n.warning && n.reason == "MachineClassNotAllowed")
    );
    // Looked at again later: a fixed class lets it run.
    assert!(p.requeue.is_some());
}

#[test]
fn no_offer_within_the_price_fails_with_no_capacity() {
    let mut c = Case::new(spec(serde_json::json!({})));
    c.offers = Some(Ok(PlacementStatus {
        chosen: None,
        remaining: vec![],
        rejected: vec![RejectedOffer {
            offer: offer(false, 9.0),
            reason: "AboveMaxHourlyPrice".into(),
            message: None,
        }],
    }));
    let p = c.step();
    assert_eq!(
        (p.status.phase, p.status.reason.as_deref()),
        (Some(JobPhase::Failed), Some("NoCapacity"))
    );
    assert!(p.status.message.unwrap().contains("AboveMaxHourlyPrice"));
}

/// The offers `collect` would rank for the case's placement on its enabled providers, all
/// priced (no provider is asked).
fn candidates_of(c: &Case) -> PlacementStatus {
    let (offers, rejected) =
        crate::controller::training_job::offers::candidates(&c.spec.placement, &c.enabled, None);
    let priced = offers
        .into_iter()
        .map(|o| Offer {
            price_per_hour: Some(1.0),
            ..o
        })
        .collect();
    crate::controller::training_job::offers::rank(priced, rejected, None, false)
}

#[test]
fn a_job_on_a_provider_that_is_not_enabled_fails_and_rents_nothing() {
    let mut c = Case::new(spec(serde_json::json!({})));
    c.enabled = vec![ProviderKind::Aws, ProviderKind::Runpod];
    assert_eq!(c.step().acts, vec![Act::CollectOffers]);
    c.offers = Some(Ok(candidates_of(&c)));
    let p = c.step();
    assert!(p.acts.is_empty(), "nothing is rented: {:?}", p.acts);
    assert!(p.status.attempts.is_empty());
    assert_eq!(
        (p.status.phase, p.status.reason.as_deref()),
        (Some(JobPhase::Failed), Some(REASON_PROVIDER_NOT_ENABLED))
    );
    let msg = p.status.message.clone().unwrap();
    assert!(
        msg.contains("placement.provider sim is not enabled")
            && msg.contains("providers.sim.enabled")
            && msg.contains("enabled: aws, runpod"),
        "{msg}"
    );
    let rejected = &p.status.placement.as_ref().unwrap().rejected;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].reason, "ProviderNotEnabled");
    assert_eq!(
        p.notes,
        vec![Note {
            warning: true,
            reason: "JobFailed",
            message: format!("ProviderNotEnabled: {msg}"),
            attempt_end: false,
        }]
    );
}

#[test]
fn auto_with_no_enabled_provider_fails_and_says_so() {
    let auto = |allowed: serde_json::Value| {
        let mut placement = serde_json::json!({"provider": "auto", "instanceType": "sim.a100"});
        if !allowed.is_null() {
            placement["allowedProviders"] = allowed;
        }
        spec(serde_json::json!({ "placement": placement }))
    };
    // Nothing enabled at all.
    let mut c = Case::new(auto(serde_json::Value::Null));
    c.enabled = vec![];
    c.offers = Some(Ok(candidates_of(&c)));
    let p = c.step();
    assert!(p.acts.is_empty());
    assert_eq!(
        p.status.reason.as_deref(),
        Some(REASON_PROVIDER_NOT_ENABLED)
    );
    let msg = p.status.message.unwrap();
    assert!(
        msg.starts_with("no provider is enabled") && msg.contains("enabled: none"),
        "{msg}"
    );
    // Only providers the job does not allow are enabled.
    let mut c = Case::new(auto(serde_json::json!(["sim", "lyceum"])));
    c.enabled = vec![ProviderKind::Aws];
    c.offers = Some(Ok(candidates_of(&c)));
    let p = c.step();
    assert_eq!(
        p.status.reason.as_deref(),
        Some(REASON_PROVIDER_NOT_ENABLED)
    );
    let msg = p.status.message.unwrap();
    assert!(
        msg.contains("none of the providers placement auto may use (sim, lyceum)")
            && msg.contains("enabled: aws"),
        "{msg}"
    );
}

#[test]
fn a_disabled_provider_among_other_rejections_is_listed_as_no_capacity() {
    let mut c = Case::new(spec(
        serde_json::json!({"placement": {"provider": "auto", "instanceType": "sim.a100", "allowedProviders": ["aws", "sim"]}}),
    ));
    c.enabled = vec![ProviderKind::Aws];
    let (offers, rejected) =
        crate::controller::training_job::offers::candidates(&c.spec.placement, &c.enabled, None);
    assert_eq!(offers.len(), 1);
    // AWS is dearer than the job allows.
    let priced = offers
        .into_iter()
        .map(|o| Offer {
            price_per_hour: Some(9.0),
            ..o
        })
        .collect();
    c.offers = Some(Ok(crate::controller::training_job::offers::rank(
        priced,
        rejected,
        Some(5.0),
        false,
    )));
    let p = c.step();
    assert_eq!(p.status.reason.as_deref(), Some(REASON_NO_CAPACITY));
    let msg = p.status.message.unwrap();
    assert!(
        msg.contains("aws sim.a100: AboveMaxHourlyPrice")
            && msg.contains("sim sim.a100: ProviderNotEnabled"),
        "{msg}"
    );
}

#[test]
fn offers_kept_for_a_provider_no_longer_enabled_are_not_tried() {
    let mut c = Case::new(spec(
        serde_json::json!({"placement": {"provider": "auto", "instanceType": "sim.a100", "capacityType": "spotWithFallback"}}),
    ));
    c.offers = Some(Ok(offers(vec![offer(true, 1.0), offer(false, 3.0)])));
    c.step();
    c.offers = None;
    // The operator restarts with no provider enabled; attempt 1 ends for want of capacity.
    c.enabled = vec![];
    let mut m = machine(1, ResourceState::Starting, "InsufficientCapacity");
    m.has_machine = false;
    c.machines = vec![m];
    let p = c.step();
    assert!(
        !p.acts.iter().any(|a| matches!(a, Act::Start { .. })),
        "the kept sim offer is not started: {:?}",
        p.acts
    );
    let pl = p.status.placement.clone().unwrap();
    assert!(pl.remaining.is_empty());
    assert_eq!(
        pl.rejected
            .iter()
            .map(|r| r.reason.as_str())
            .collect::<Vec<_>>(),
        ["InsufficientCapacity", "ProviderNotEnabled"]
    );
    // After the capacity backoff, fresh offers come from the enabled providers only.
    c.machines = vec![];
    c.now = at(60);
    assert_eq!(c.step().acts, vec![Act::CollectOffers]);
    c.offers = Some(Ok(candidates_of(&c)));
    let p = c.step();
    assert_eq!(
        p.status.reason.as_deref(),
        Some(REASON_PROVIDER_NOT_ENABLED)
    );
}

#[test]
fn the_deadline_stops_the_machine_and_fails_the_job() {
    let mut c = running(spec(serde_json::json!({"activeDeadlineSeconds": 60})));
    c.now = at(30);
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Running));
    assert_eq!(
        p.requeue,
        Some(Duration::from_secs(30)),
        "wakes at the deadline, before the resync"
    );
    c.now = at(60);
    let p = c.step();
    assert_eq!(
        (p.status.phase, p.status.reason.as_deref()),
        (Some(JobPhase::Failed), Some("DeadlineExceeded"))
    );
    assert_eq!(
        p.acts,
        vec![Act::Release {
            name: "job-a1".into(),
            attempt: 1
        }]
    );
}

#[test]
fn the_budget_stops_the_machine_before_it_is_crossed() {
    // 3.6 USD/h = 0.001 USD/s; a 10 s poll adds 0.01.
    let mut c = running(spec(serde_json::json!({"maxTotalCost": 0.1})));
    c.now = at(40);
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Running));
    assert_eq!(
        p.requeue,
        Some(Duration::from_secs(50)),
        "0.04 spent + 0.01 ahead: the next look is when 0.1 is one look-ahead away"
    );
    c.now = at(80);
    assert_eq!(
        c.step().status.phase,
        Some(JobPhase::Running),
        "0.08 + 0.01 is within 0.1"
    );
    c.now = at(95);
    let p = c.step();
    assert_eq!(
        (p.status.phase, p.status.reason.as_deref()),
        (Some(JobPhase::Failed), Some("BudgetExceeded"))
    );
    assert_eq!(p.status.attempts[0].cost, Some(0.095));
}

#[test]
fn suspend_releases_the_machine_and_resume_starts_a_new_attempt() {
    let mut c = running(spec(serde_json::json!({"activeDeadlineSeconds": 100})));
    c.spec.suspend = true;
    c.now = at(50);
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Suspended));
    assert_eq!(p.status.attempts[0].reason.as_deref(), Some("Suspended"));
    assert_eq!(
        p.acts,
        vec![Act::Release {
            name: "job-a1".into(),
            attempt: 1
        }]
    );
    assert_eq!(
        p.status.failures,
        Default::default(),
        "suspension is no failure"
    );
    c.machines.clear();
    c.now = at(500);
    assert_eq!(
        c.step().status.phase,
        Some(JobPhase::Suspended),
        "no deadline while suspended"
    );
    c.spec.suspend = false;
    assert_eq!(c.run().acts, vec![Act::CollectOffers]);
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    let p = c.step();
    assert_eq!(
        p.acts,
        vec![Act::Start {
            attempt: 2,
            offer: offer(false, 3.6),
            // The deadline counts again from the resume.
            max_lifetime_seconds: Some(100 + LIFETIME_MARGIN_SECONDS),
        }]
    );
    assert_eq!(
        p.status.start_time,
        Some(Time(at(500))),
        "the deadline counts from the resume"
    );
}

#[test]
fn a_cloud_resource_applied_before_a_lost_status_write_is_adopted() {
    let mut c = Case::new(spec(serde_json::json!({})));
    c.machines = vec![machine(1, ResourceState::Running, "Running")];
    let p = c.step();
    assert!(p.acts.is_empty(), "{:?}", p.acts);
    assert_eq!(p.status.attempts.len(), 1);
    assert_eq!(p.status.phase, Some(JobPhase::Running));
}

#[test]
fn cloud_resources_of_ended_attempts_are_released_once() {
    let mut c = running(spec(serde_json::json!({})));
    c.reports.insert(1, exit(0));
    c.step();
    let mut m = machine(1, ResourceState::Terminating, "Deleting");
    m.deleting = true;
    c.machines = vec![m];
    let p = c.run();
    assert!(p.acts.is_empty(), "already deleting");
    assert_eq!(p.releasing, 1);
}

#[test]
fn invalid_spec_from_the_provider_fails_the_job() {
    let mut c = running(spec(serde_json::json!({})));
    let mut m = machine(1, ResourceState::Error, "InvalidSpec");
    m.has_machine = false;
    m.failure = Some(failure("InvalidSpec"));
    c.machines = vec![m];
    let p = c.step();
    assert_eq!(
        (p.status.phase, p.status.reason.as_deref()),
        (Some(JobPhase::Failed), Some("InvalidSpec"))
    );
}

#[test]
fn reports_reach_status() {
    let mut c = running(spec(serde_json::json!({})));
    let progress = crate::crd::training_job::Progress {
        percent: Some(40.0),
        step: Some(4),
        message: None,
        time: Some(Time(at(5))),
    };
    c.reports.insert(
        1,
        AttemptReport {
            last_heartbeat: Some(at(5)),
            progress: Some(progress.clone()),
            exit_code: None,
            interrupted: false,
            ..Default::default()
        },
    );
    let p = c.step();
    assert_eq!(p.status.last_heartbeat_time, Some(Time(at(5))));
    assert_eq!(p.status.progress, Some(progress));
    assert_eq!(p.status.accrued_cost, Some(0.01));
    assert_eq!(p.status.cost_per_hour, Some(3.6));
}

#[test]
fn a_rejected_cloud_resource_fails_the_job_as_invalid_spec() {
    let mut c = Case::new(spec(serde_json::json!({})));
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    let mut p = c.run();
    rejected_start(&mut p, 1, "denied".into(), t0());
    assert_eq!(
        (p.status.phase, p.status.reason.as_deref()),
        (Some(JobPhase::Failed), Some("InvalidSpec"))
    );
    assert!(p.acts.is_empty());
}

#[test]
fn a_machine_that_never_reaches_running_ends_its_attempt_at_the_start_timeout() {
    let mut c = Case::new(spec(serde_json::json!({})));
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    c.step();
    c.offers = None;
    c.machines = vec![machine(1, ResourceState::Starting, "Booting")];
    c.now = at(599);
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Provisioning));
    assert_eq!(
        p.requeue,
        Some(Duration::from_secs(1)),
        "wakes at the timeout"
    );
    c.now = at(600);
    let p = c.step();
    let a = &p.status.attempts[0];
    assert_eq!(a.reason.as_deref(), Some("StartTimeout"));
    assert_eq!(
        p.status.failures.interruption, 1,
        "counted as an interruption"
    );
    assert_eq!(
        p.acts,
        vec![Act::Release {
            name: "job-a1".into(),
            attempt: 1
        }]
    );
}

#[test]
fn heartbeats_that_stop_end_a_running_attempt_and_none_at_all_are_left_alone() {
    // No heartbeat ever (an image that cannot report): the heartbeat timeout does not apply.
    let mut c = running(spec(serde_json::json!({})));
    c.now = at(10_000);
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Running), "{p:?}");

    // Heartbeats came, then stopped.
    let mut c = running(spec(serde_json::json!({})));
    c.reports.insert(
        1,
        AttemptReport {
            last_heartbeat: Some(at(50)),
            ..Default::default()
        },
    );
    c.now = at(150);
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Running));
    assert_eq!(
        p.requeue,
        Some(Duration::from_secs(20)),
        "wakes at the timeout"
    );
    c.now = at(170);
    let p = c.step();
    assert_eq!(
        p.status.attempts[0].reason.as_deref(),
        Some("HeartbeatsStopped")
    );
    assert_eq!(p.status.failures.interruption, 1);
}

#[test]
fn a_new_leader_grants_heartbeats_a_full_timeout_from_when_it_took_over() {
    // The earlier leader showed a heartbeat at 50 s; this process leads from 1,000 s, with
    // nothing in memory: that old heartbeat is no lost machine.
    let mut c = running(spec(serde_json::json!({})));
    c.reports.insert(
        1,
        AttemptReport {
            last_heartbeat: Some(at(50)),
            ..Default::default()
        },
    );
    c.now = at(60);
    assert_eq!(c.step().status.last_heartbeat_time, Some(Time(at(50))));
    c.reports.clear();
    c.leader_since = Some(at(1000));
    c.now = at(1000);
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Running), "{:?}", p.status);
    c.now = at(1119);
    assert_eq!(c.step().status.phase, Some(JobPhase::Running));
    // No heartbeat reached the new leader within the timeout (120 s) of taking over.
    c.now = at(1120);
    let p = c.step();
    assert_eq!(
        p.status.attempts[0].reason.as_deref(),
        Some("HeartbeatsStopped")
    );
}

#[test]
fn a_heartbeat_a_standby_persisted_counts_for_the_refresh_interval_more() {
    // A standby wrote a heartbeat at 50 s; it writes again within `report_refresh` (1,200 s)
    // while heartbeats reach it, so the attempt lives until 50 + 1,200 + 120 s.
    let mut c = running(spec(serde_json::json!({})));
    c.reports.insert(
        1,
        AttemptReport {
            last_heartbeat: Some(at(50)),
            stored_heartbeat: Some(at(50)),
            ..Default::default()
        },
    );
    c.now = at(1369);
    assert_eq!(c.step().status.phase, Some(JobPhase::Running));
    c.now = at(1370);
    assert_eq!(
        c.step().status.attempts[0].reason.as_deref(),
        Some("HeartbeatsStopped")
    );
}

#[test]
fn a_heartbeat_alone_changes_no_status_until_twice_the_refresh_interval() {
    let mut c = running(spec(serde_json::json!({})));
    let hb = |s: i64| AttemptReport {
        last_heartbeat: Some(at(s)),
        ..Default::default()
    };
    c.reports.insert(1, hb(5));
    c.now = at(5);
    let p = c.step();
    assert_eq!(
        p.status.last_heartbeat_time,
        Some(Time(at(5))),
        "the first heartbeat is shown at once"
    );
    let shown = p.status.clone();
    for s in [35, 65, 1200, 2404] {
        c.reports.insert(1, hb(s));
        c.now = at(s);
        let p = c.step();
        assert_eq!(
            p.status, shown,
            "a heartbeat at {s} s alone changes nothing"
        );
        assert_eq!(
            p.latest_report.map(|(a, r)| (a, r.last_heartbeat)),
            Some((1, Some(at(s)))),
            "the latest, shown when the status is written anyway"
        );
    }
    c.reports.insert(1, hb(2405));
    c.now = at(2405);
    assert_eq!(
        c.step().status.last_heartbeat_time,
        Some(Time(at(2405))),
        "twice the refresh interval (1,200 s) after the shown one"
    );
}

#[test]
fn when_the_status_shows_the_latest_heartbeat_and_progress() {
    let started = at(100);
    let progress = |s: i64| crate::crd::training_job::Progress {
        step: Some(s),
        time: Some(Time(at(s))),
        ..Default::default()
    };
    let status = |hb: Option<i64>, p: Option<i64>| TrainingJobStatus {
        last_heartbeat_time: hb.map(|s| Time(at(s))),
        progress: p.map(progress),
        ..Default::default()
    };
    let report = |hb: i64, p: Option<i64>| AttemptReport {
        last_heartbeat: Some(at(hb)),
        progress: p.map(progress),
        ..Default::default()
    };
    let refresh = Duration::from_secs(1200);
    // (status shows, latest report, now, shown now, why)
    #[rustfmt::skip]
    let cases = [
        (status(None, None), report(110, None), 110, true, "the first heartbeat"),
        (status(Some(50), None), report(110, None), 110, true, "the first of this attempt"),
        (status(Some(110), None), report(140, None), 140, false, "a later heartbeat"),
        (status(Some(110), None), report(140, Some(130)), 140, true, "the first progress"),
        (status(Some(110), Some(50)), report(140, Some(130)), 140, true, "the first progress of this attempt"),
        (status(Some(110), Some(120)), report(140, Some(130)), 140, false, "later progress"),
        (status(Some(110), Some(120)), report(2500, Some(2490)), 2509, false, "not yet twice the refresh"),
        (status(Some(110), Some(120)), report(2500, Some(2490)), 2510, true, "twice the refresh"),
        (status(Some(110), None), report(110, None), 9000, false, "nothing newer to show"),
    ];
    for (s, r, now, want, why) in cases {
        assert_eq!(
            reports_shown_now(&s, &r, Some(started), at(now), refresh),
            want,
            "{why}"
        );
    }
}

#[test]
fn no_cloud_machine_is_rented_while_the_callback_url_cannot_work() {
    let on = |provider: ProviderKind| Offer {
        provider,
        gpu_type: Some("a100".into()),
        instance_type: None,
        ..offer(false, 2.0)
    };
    let mut c = Case::new(spec(
        serde_json::json!({"placement": {"provider": "lyceum", "gpuType": "a100"}}),
    ));
    c.callback = Err(Unreachable::Internal {
        host: "runctl.runctl-system.svc".into(),
    });
    c.offers = Some(Ok(offers(vec![on(ProviderKind::Lyceum)])));
    let p = c.step();
    assert!(p.acts.is_empty(), "{:?}", p.acts);
    assert_eq!(
        (p.status.phase, p.status.reason.as_deref()),
        (Some(JobPhase::Pending), Some("CallbackUnreachable"))
    );
    assert!(
        p.status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("runctl.runctl-system.svc") && m.contains("callbackUrl")),
        "{:?}",
        p.status.message
    );
    let mut with_conditions = p.status.clone();
    super::super::conditions::set_all(&mut with_conditions, 1, t0(), 0, None);
    let ready = crate::crd::condition::get(&with_conditions.conditions, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "CallbackUnreachable")
    );
    assert_eq!(p.notes.len(), 1, "one Warning event");
    assert_eq!(p.notes[0].reason, "CallbackUnreachable");
    c.offers = Some(Ok(offers(vec![on(ProviderKind::Lyceum)])));
    assert!(c.step().notes.is_empty(), "not announced again");

    // Fixed (the operator restarted with a URL): the machine is requested.
    c.callback = Ok(());
    c.offers = Some(Ok(offers(vec![on(ProviderKind::Lyceum)])));
    let p = c.step();
    assert!(
        matches!(p.acts[..], [Act::Start { attempt: 1, .. }]),
        "{:?}",
        p.acts
    );

    // The simulator needs no callback.
    let mut sim = Case::new(spec(serde_json::json!({})));
    sim.callback = Err(Unreachable::Missing);
    sim.offers = Some(Ok(offers(vec![offer(false, 1.0)])));
    assert!(matches!(sim.step().acts[..], [Act::Start { .. }]));
}

#[test]
fn a_running_attempt_that_never_reports_is_flagged_and_left_to_the_provider() {
    let reporting = |p: &Plan| {
        let c = crate::crd::condition::get(&p.status.conditions, REPORTING).expect("Reporting");
        (c.status.clone(), c.reason.clone())
    };
    let warned = |p: &Plan| p.notes.iter().any(|n| n.reason == REASON_NO_REPORTS);
    let mut c = running(spec(serde_json::json!({})));
    let p = c.step();
    assert_eq!(
        reporting(&p),
        ("Unknown".into(), "AwaitingFirstReport".into())
    );
    // The heartbeat timeout (120 s) after the machine launched, nothing has arrived.
    c.now = at(121);
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Running), "not ended for it");
    assert!(p.acts.is_empty(), "{:?}", p.acts);
    assert_eq!(reporting(&p), ("False".into(), REASON_NO_REPORTS.into()));
    assert!(warned(&p), "a Warning event says so");
    c.now = at(200);
    assert!(!warned(&c.step()), "once");
    // The provider reports the end: judged by it (a Lyceum return code).
    let mut m = machine(1, ResourceState::Terminated, "Completed");
    m.exit_code = Some(0);
    c.machines = vec![m];
    let p = c.step();
    assert_eq!(
        (p.status.phase, p.status.reason.as_deref()),
        (Some(JobPhase::Succeeded), Some("Completed"))
    );

    let mut c = running(spec(serde_json::json!({})));
    c.reports.insert(
        1,
        AttemptReport {
            last_heartbeat: Some(at(5)),
            ..Default::default()
        },
    );
    c.now = at(60);
    let p = c.step();
    assert_eq!(reporting(&p), ("True".into(), "Reporting".into()));
    assert!(!warned(&p));
}

#[test]
fn a_machine_lives_no_longer_than_what_is_left_of_the_deadline_plus_a_margin() {
    let mut c = Case::new(spec(serde_json::json!({"activeDeadlineSeconds": 3600})));
    c.offers = Some(Ok(offers(vec![offer(false, 1.0)])));
    let p = c.step();
    assert!(
        matches!(
            p.acts[..],
            [Act::Start {
                max_lifetime_seconds: Some(3900),
                ..
            }]
        ),
        "{:?}",
        p.acts
    );
    // A later attempt, 1100 s after the job started, gets what is left.
    assert_eq!(
        attempt_lifetime(&c.spec, &p.status, at(1100)),
        Some(3600 - 1100 + LIFETIME_MARGIN_SECONDS)
    );
    assert_eq!(
        attempt_lifetime(&c.spec, &p.status, at(5000)),
        Some(LIFETIME_MARGIN_SECONDS),
        "past the deadline: the margin"
    );
    let no_deadline = Case::new(spec(serde_json::json!({})));
    assert_eq!(
        attempt_lifetime(&no_deadline.spec, &TrainingJobStatus::default(), t0()),
        None
    );
}

fn skip_if_succeeded() -> TrainingJobSpec {
    spec(serde_json::json!({"recreatePolicy": "SkipIfSucceeded", "ttlSecondsAfterFinished": 60}))
}

#[test]
fn a_success_with_skip_if_succeeded_is_recorded_before_its_status() {
    let mut c = running(skip_if_succeeded());
    c.reports.insert(1, exit(0));
    c.now = at(100);
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Succeeded));
    assert_eq!(p.acts[0], Act::RecordSuccess, "{:?}", p.acts);
    // Once: the next pass of the finished job records nothing.
    let p = c.step();
    assert!(!p.acts.contains(&Act::RecordSuccess), "{:?}", p.acts);
    // Without the policy nothing is recorded.
    let mut plain = running(spec(serde_json::json!({})));
    plain.reports.insert(1, exit(0));
    assert!(!plain.step().acts.contains(&Act::RecordSuccess));
}

#[test]
fn a_recreated_job_stands_for_the_earlier_success_and_trains_nothing() {
    use crate::controller::training_job::success_record::{SuccessRecord, spec_digest};
    let record = |spec: &TrainingJobSpec| SuccessRecord {
        job: "job".into(),
        uid: "first-uid".into(),
        spec_digest: spec_digest(spec),
        completion_time: t0(),
        attempt_count: 1,
        accrued_cost: Some(0.1),
    };
    let mut c = Case::new(skip_if_succeeded());
    c.prior_success = Some(record(&c.spec));
    c.now = at(3600);
    let p = c.step();
    let s = &p.status;
    assert_eq!(
        (s.phase, s.reason.as_deref()),
        (Some(JobPhase::Succeeded), Some(REASON_ALREADY_SUCCEEDED))
    );
    assert!(p.acts.is_empty(), "no offer, no machine: {:?}", p.acts);
    assert!(s.attempts.is_empty());
    let prev = s.previous_success.as_ref().expect("previous success");
    assert_eq!(
        (prev.uid.as_str(), prev.accrued_cost),
        ("first-uid", Some(0.1))
    );
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .contains("nothing was trained again")
    );
    // Its TTL does not delete it: a GitOps tool would only re-create it.
    c.now = at(100_000);
    assert!(!c.step().acts.contains(&Act::DeleteJob));

    // Another spec is another training.
    let mut changed = Case::new(skip_if_succeeded());
    let mut old = changed.spec.clone();
    old.workload.image = "train:0".into();
    changed.prior_success = Some(record(&old));
    assert_eq!(changed.step().acts, vec![Act::CollectOffers]);
    // Train (the default) trains again whatever the record says.
    let mut train = Case::new(spec(serde_json::json!({})));
    train.prior_success = Some(record(&train.spec));
    assert_eq!(train.step().acts, vec![Act::CollectOffers]);
}

/// The notes of a plan as (warning, reason).
fn note_reasons(p: &Plan) -> Vec<(bool, &'static str)> {
    p.notes.iter().map(|n| (n.warning, n.reason)).collect()
}

#[test]
fn a_retry_request_ends_the_running_attempt_and_starts_the_next_at_once() {
    let mut c = running(spec(serde_json::json!({"backoffLimit": 0})));
    c.now = at(100);
    c.retry_request = Some("2026-01-01T00:01:40Z".into());
    let p = c.run();
    assert_eq!(p.acts, vec![Act::CollectOffers], "a fresh ranking, no wait");
    assert_eq!(
        p.status, c.status,
        "nothing is written before offers are known"
    );
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    let p = c.step();
    assert_eq!(p.retry, Some(RetryDecision::Restarted { ended: 1 }));
    let s = &p.status;
    let first = &s.attempts[0];
    assert_eq!(
        (
            first.reason.as_deref(),
            first.retry_class,
            first.end_time.clone()
        ),
        (Some("RetryRequested"), None, Some(Time(at(100))))
    );
    assert_eq!(first.cost, Some(0.1), "the ended attempt keeps its cost");
    assert_eq!(s.failures, Default::default(), "a retry is no failure");
    assert_eq!(
        (s.attempt_count, s.phase),
        (2, Some(JobPhase::Provisioning))
    );
    assert_eq!(s.observed_retry_request, c.retry_request);
    assert_eq!(
        p.acts,
        vec![
            Act::Start {
                attempt: 2,
                offer: offer(false, 3.6),
                max_lifetime_seconds: None,
            },
            Act::Release {
                name: "job-a1".into(),
                attempt: 1
            }
        ]
    );
    assert_eq!(
        note_reasons(&p),
        vec![
            (false, "AttemptEnded"),
            (false, "AttemptStarted"),
            (false, "RetryRequested")
        ]
    );
    // Handled once: the same token asks nothing again.
    c.offers = None;
    c.machines = vec![machine(2, ResourceState::Running, "Running")];
    c.now = at(110);
    let p = c.step();
    assert_eq!((p.retry.clone(), p.acts.clone()), (None, vec![]));
    assert_eq!(
        (p.status.phase, p.status.attempt_count),
        (Some(JobPhase::Running), 2)
    );
    assert!(
        p.status.accrued_cost.unwrap_or(0.0) >= 0.1,
        "spend counts every attempt: {:?}",
        p.status.accrued_cost
    );
    // A new token retries again, still without counting a failure.
    c.retry_request = Some("2026-01-01T00:02:00Z".into());
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    let p = c.step();
    assert_eq!(p.retry, Some(RetryDecision::Restarted { ended: 2 }));
    assert_eq!(
        (p.status.attempt_count, p.status.failures.clone()),
        (3, Default::default())
    );
}

#[test]
fn a_retry_request_skips_the_backoff_wait() {
    let mut c = running(spec(
        serde_json::json!({"retryOn": ["failure"], "backoffLimit": 2}),
    ));
    c.reports.insert(1, exit(2));
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Pending));
    assert_eq!(p.requeue, Some(Duration::from_secs(10)), "backoff");
    c.machines.clear();
    c.now = at(1);
    c.retry_request = Some("now".into());
    assert_eq!(c.run().acts, vec![Act::CollectOffers], "no backoff wait");
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    let p = c.step();
    assert_eq!(p.retry, Some(RetryDecision::NoWait));
    assert!(matches!(p.acts[0], Act::Start { attempt: 2, .. }));
    assert_eq!(
        p.status.failures.failure, 1,
        "the failure stays counted once"
    );
}

#[test]
fn a_failed_job_retried_runs_again_with_its_history_and_a_new_deadline() {
    let mut c = running(spec(
        serde_json::json!({"activeDeadlineSeconds": 1000, "maxTotalCost": 10.0}),
    ));
    c.reports.insert(1, exit(3));
    c.now = at(100);
    let p = c.step();
    assert_eq!(
        (p.status.phase, p.status.reason.as_deref()),
        (Some(JobPhase::Failed), Some("ExitCode"))
    );
    c.machines.clear();
    c.reports.clear();
    // Past the first run's deadline: the retried run gets its own.
    c.now = at(2000);
    c.retry_request = Some("t1".into());
    assert_eq!(c.run().acts, vec![Act::CollectOffers]);
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    let p = c.step();
    assert_eq!(
        p.retry,
        Some(RetryDecision::Reopened {
            failed: Some("ExitCode".into()),
            suspended: false
        })
    );
    let s = &p.status;
    assert_eq!(
        (s.phase, s.reason.as_deref(), s.completion_time.clone()),
        (Some(JobPhase::Provisioning), None, None)
    );
    assert_eq!(
        s.start_time,
        Some(Time(at(2000))),
        "the deadline counts from the retry"
    );
    assert_eq!(s.failures.failure, 1, "history stays");
    assert_eq!(s.attempts[0].reason.as_deref(), Some("ExitCode"));
    assert_eq!(
        p.acts,
        vec![Act::Start {
            attempt: 2,
            offer: offer(false, 3.6),
            max_lifetime_seconds: Some(1000 + LIFETIME_MARGIN_SECONDS),
        }]
    );
    assert!(note_reasons(&p).contains(&(false, "RetryRequested")));
    assert!(
        !condition::is_true(&s.conditions, "Failed"),
        "conditions follow the phase"
    );
    // It can succeed.
    c.offers = None;
    c.machines = vec![machine(2, ResourceState::Running, "Running")];
    c.reports.insert(2, exit(0));
    c.now = at(2100);
    let p = c.step();
    assert_eq!(
        (p.status.phase, p.status.reason.as_deref()),
        (Some(JobPhase::Succeeded), Some("Completed"))
    );
}

#[test]
fn a_job_over_its_budget_retried_fails_again_at_once() {
    let mut c = running(spec(serde_json::json!({"maxTotalCost": 0.1})));
    c.now = at(95);
    let p = c.step();
    assert_eq!(p.status.reason.as_deref(), Some("BudgetExceeded"));
    c.machines.clear();
    c.now = at(200);
    c.retry_request = Some("t1".into());
    assert_eq!(c.run().acts, vec![Act::CollectOffers]);
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    let p = c.step();
    assert_eq!(
        (p.status.phase, p.status.reason.as_deref()),
        (Some(JobPhase::Failed), Some("BudgetExceeded")),
        "maxTotalCost counts the spend of every attempt"
    );
    assert!(p.acts.is_empty(), "nothing rented: {:?}", p.acts);
    assert_eq!(p.status.observed_retry_request.as_deref(), Some("t1"));
    assert!(matches!(p.retry, Some(RetryDecision::Reopened { .. })));
}

#[test]
fn a_job_that_fails_in_the_pass_of_a_retry_request_runs_again() {
    let mut c = running(spec(serde_json::json!({})));
    c.reports.insert(1, exit(3));
    c.retry_request = Some("t1".into());
    assert_eq!(c.run().acts, vec![Act::CollectOffers]);
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    let p = c.step();
    let s = &p.status;
    assert_eq!(
        (s.attempts[0].reason.as_deref(), s.failures.failure),
        (Some("ExitCode"), 1),
        "the workload's own outcome comes first"
    );
    assert_eq!(
        (s.phase, s.attempt_count),
        (Some(JobPhase::Provisioning), 2)
    );
    assert!(matches!(p.retry, Some(RetryDecision::Reopened { .. })));
}

#[test]
fn a_succeeded_job_is_not_retried() {
    let mut c = running(spec(serde_json::json!({})));
    c.reports.insert(1, exit(0));
    c.step();
    c.machines.clear();
    c.retry_request = Some("t1".into());
    let p = c.step();
    assert_eq!(p.retry, Some(RetryDecision::Refused));
    assert_eq!(
        (p.status.phase, p.status.attempt_count),
        (Some(JobPhase::Succeeded), 1)
    );
    assert!(p.acts.is_empty(), "{:?}", p.acts);
    assert_eq!(note_reasons(&p), vec![(true, "RetryRefused")]);
    assert_eq!(p.status.observed_retry_request.as_deref(), Some("t1"));
    let p = c.step();
    assert_eq!((p.retry, p.notes), (None, vec![]), "refused once");
}

#[test]
fn a_suspended_job_records_the_request_and_starts_nothing_until_resumed() {
    let mut c = running(spec(serde_json::json!({})));
    c.spec.suspend = true;
    c.retry_request = Some("t1".into());
    let p = c.step();
    assert_eq!(p.retry, Some(RetryDecision::Deferred));
    assert_eq!(
        p.status.attempts[0].reason.as_deref(),
        Some("Suspended"),
        "suspend wins over the retry"
    );
    assert_eq!(p.status.phase, Some(JobPhase::Suspended));
    assert_eq!(p.status.observed_retry_request.as_deref(), Some("t1"));
    c.machines.clear();
    c.retry_request = Some("t2".into());
    let p = c.step();
    assert_eq!(
        (p.retry, p.status.phase, p.acts),
        (
            Some(RetryDecision::Deferred),
            Some(JobPhase::Suspended),
            vec![]
        )
    );
    c.spec.suspend = false;
    assert_eq!(c.run().acts, vec![Act::CollectOffers], "resuming starts");
}

#[test]
fn a_retry_waits_for_the_outcome_of_a_machine_that_just_ended() {
    let mut c = running(spec(serde_json::json!({})));
    c.machines = vec![machine(1, ResourceState::Terminated, "Completed")];
    c.now = at(10);
    c.retry_request = Some("t1".into());
    let p = c.step();
    assert_eq!(p.retry, None);
    assert!(
        p.status.attempts[0].end_time.is_none(),
        "a report may be in flight"
    );
    assert_eq!(p.status.observed_retry_request, None, "not handled yet");
    // The exit report arrives: the job succeeded, and the request is refused.
    c.reports.insert(1, exit(0));
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Succeeded));
    assert_eq!(p.retry, Some(RetryDecision::Refused));
}

#[test]
fn a_retry_request_on_a_new_job_is_recorded_and_changes_nothing() {
    let mut c = Case::new(spec(serde_json::json!({})));
    c.retry_request = Some("t1".into());
    assert_eq!(c.run().acts, vec![Act::CollectOffers]);
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    let p = c.step();
    assert_eq!(p.retry, None);
    assert_eq!(p.status.observed_retry_request.as_deref(), Some("t1"));
    assert!(matches!(p.acts[..], [Act::Start { attempt: 1, .. }]));
}

/// Node `rank` of attempt 1 of a multi-node job.
fn node(rank: u32, state: ResourceState, reason: &str) -> MachineView {
    let mut v = machine(1, state, reason);
    if rank > 0 {
        v.name = format!("job-a1-r{rank}");
    }
    v.rank = rank;
    v.created = Some(t0());
    v.private_address = (state == ResourceState::Running).then(|| format!("10.0.0.{}", rank + 1));
    v
}

#[test]
fn a_two_node_job_starts_rank_1_once_rank_0_runs_and_runs_when_both_do() {
    let mut c = Case::new(spec(serde_json::json!({"nodes": 2})));
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    let p = c.step();
    assert!(
        matches!(&p.acts[..], [Act::Start { attempt: 1, .. }]),
        "rank 0 first: {:?}",
        p.acts
    );
    assert_eq!(p.status.attempts[0].nodes, Some(2));
    c.offers = None;
    c.machines = vec![node(0, ResourceState::Starting, "Booting")];
    let p = c.step();
    assert!(
        p.acts.is_empty(),
        "the others wait for rank 0: {:?}",
        p.acts
    );
    c.machines = vec![node(0, ResourceState::Running, "Running")];
    let p = c.step();
    assert_eq!(
        p.acts,
        vec![Act::StartPeers {
            attempt: 1,
            ranks: vec![1],
            master_addr: "10.0.0.1".into()
        }]
    );
    assert_eq!(p.status.phase, Some(JobPhase::Provisioning));
    c.machines.push(node(1, ResourceState::Starting, "Booting"));
    let p = c.step();
    assert!(p.acts.is_empty(), "{:?}", p.acts);
    assert_eq!(
        p.status.message.as_deref(),
        Some("attempt 1: 1 of 2 nodes running")
    );
    c.machines[1] = node(1, ResourceState::Running, "Running");
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Running));
    assert_eq!(p.status.cost_per_hour, Some(7.2), "both nodes bill");
    assert_eq!(p.status.attempt_count, 1, "one attempt of two machines");
    // Rank 0's exit decides, an hour later; both machines are released.
    c.now = at(3600);
    c.reports.insert(1, exit(0));
    let p = c.step();
    assert_eq!(p.status.phase, Some(JobPhase::Succeeded));
    let released: Vec<&str> = p
        .acts
        .iter()
        .filter_map(|a| match a {
            Act::Release { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(released, vec!["job-a1", "job-a1-r1"]);
    assert_eq!(
        p.status.attempts[0].cost,
        Some(7.2),
        "an hour of both nodes at 3.6 USD/h"
    );
}

#[test]
fn a_node_that_fails_to_start_ends_the_attempt_and_releases_every_node() {
    let mut c = Case::new(spec(serde_json::json!({"nodes": 2})));
    c.offers = Some(Ok(offers(vec![offer(false, 3.6), offer(false, 4.0)])));
    c.step();
    c.offers = None;
    c.machines = vec![
        node(0, ResourceState::Running, "Running"),
        node(1, ResourceState::Starting, "InsufficientCapacity"),
    ];
    let p = c.step();
    let a = &p.status.attempts[0];
    assert_eq!(a.reason.as_deref(), Some("InsufficientCapacity"));
    assert_eq!(a.retry_class, Some(RetryOn::Capacity));
    assert_eq!(p.status.failures.capacity, 1);
    let released: Vec<&str> = p
        .acts
        .iter()
        .filter_map(|a| match a {
            Act::Release { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(released, vec!["job-a1", "job-a1-r1"], "all or none");
    assert!(
        p.acts
            .iter()
            .any(|a| matches!(a, Act::Start { attempt: 2, .. })),
        "the next offer is tried: {:?}",
        p.acts
    );
}

#[test]
fn the_other_nodes_of_an_attempt_are_not_taken_for_strays() {
    let mut c = Case::new(spec(serde_json::json!({"nodes": 2})));
    c.offers = Some(Ok(offers(vec![offer(false, 3.6)])));
    c.step();
    c.offers = None;
    c.machines = vec![
        node(0, ResourceState::Running, "Running"),
        node(1, ResourceState::Running, "Running"),
    ];
    let p = c.step();
    assert_eq!(p.status.attempt_count, 1);
    assert_eq!(p.status.phase, Some(JobPhase::Running));
}
