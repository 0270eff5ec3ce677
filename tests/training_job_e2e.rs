//! TrainingJob end to end: the real CloudResource and TrainingJob controllers and the callback
//! endpoint against the in-process API test server over HTTP, with the simulated cloud; the
//! tests play the workload's side of the callback with reqwest. Also the TrainingJob CRD's CEL
//! rules.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use runctl::crd::training_job::{JobPhase, TrainingJob, TrainingJobStatus};
use runctl::crd::{CloudResource, condition};
use runctl::provider::sim::{SimConfig, SimFault, SimOp};
use runctl_apiserver::Verb;
use serde_json::{Value, json};
use support::jobs::{JobOperator, Workload, runpod_env, test_job_config, wait_job};
use support::{TestEnv, eventually, fast_sim, test_controller_config};

fn jobs(env: &TestEnv) -> Api<TrainingJob> {
    Api::namespaced(env.client.clone(), &env.ns)
}

fn crs(env: &TestEnv) -> Api<CloudResource> {
    Api::namespaced(env.client.clone(), &env.ns)
}

/// A TrainingJob from a JSON spec (placement defaults to sim, sim.a100).
fn job(name: &str, extra: Value) -> TrainingJob {
    let mut spec = json!({
        "placement": {"provider": "sim", "instanceType": "sim.a100"},
        "workload": {"image": "ghcr.io/acme/train:1", "command": ["python", "train.py"], "checkpointDir": "s3://ckpt/run-1"}
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    serde_json::from_value(json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("valid job")
}

async fn start(env: &TestEnv) -> JobOperator {
    env.start_training_job_controller(test_controller_config("op"), test_job_config())
        .await
}

async fn wait_phase(env: &TestEnv, name: &str, phase: JobPhase) -> TrainingJobStatus {
    wait_job(env, name, &format!("phase {phase:?}"), |s| {
        s.phase == Some(phase)
    })
    .await
}

/// Waits until attempt `n` runs and returns its workload.
async fn running_attempt(env: &TestEnv, name: &str, n: u32) -> Workload {
    wait_job(env, name, &format!("attempt {n} running"), |s| {
        s.phase == Some(JobPhase::Running) && s.attempts.last().is_some_and(|a| a.index == n)
    })
    .await;
    Workload::of(env, &format!("{name}-a{n}")).await
}

async fn wait_no_machines(env: &TestEnv, name: &str) {
    let api = crs(env);
    eventually(
        30,
        &format!("{name}: every CloudResource gone and no machine billing"),
        || {
            let api = api.clone();
            async move {
                let left = api
                    .list(&ListParams::default().labels(&format!("runctl.dev/job={name}")))
                    .await
                    .ok()?;
                (left.items.is_empty() && env.sim.live_total() == 0).then_some(())
            }
        },
    )
    .await;
}

/// A simulated cloud with `sim.pricey` at 3600 USD/h: one dollar a second.
fn pricey_sim() -> SimConfig {
    let mut sim: SimConfig = fast_sim();
    sim.prices.insert("sim.pricey".into(), 3600.0);
    sim
}

async fn patch_spec(env: &TestEnv, name: &str, spec: Value) {
    jobs(env)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": spec})),
        )
        .await
        .expect("patch job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_reports_and_succeeds() {
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env).await;
    jobs(&env)
        .create(&PostParams::default(), &job("ok", json!({})))
        .await
        .unwrap();
    let w = running_attempt(&env, "ok", 1).await;
    assert_eq!(w.heartbeat().await, 200);
    assert_eq!(
        w.post(
            "progress",
            json!({"percent": 50, "step": 100, "message": "epoch 1"})
        )
        .await,
        200
    );
    let s = wait_job(&env, "ok", "progress in status", |s| {
        s.progress.as_ref().and_then(|p| p.step) == Some(100)
    })
    .await;
    assert!(s.last_heartbeat_time.is_some());
    assert!(s.cost_per_hour.unwrap_or(0.0) > 0.0, "{s:?}");
    assert_eq!(s.provider.map(|p| p.to_string()).as_deref(), Some("sim"));
    assert_eq!(s.current_cloud_resource.as_deref(), Some("ok-a1"));
    assert!(condition::is_true(&s.conditions, condition::READY));

    assert_eq!(w.exit(0).await, 200);
    let s = wait_phase(&env, "ok", JobPhase::Succeeded).await;
    assert_eq!(
        (s.reason.as_deref(), s.exit_code),
        (Some("Completed"), Some(0))
    );
    assert!(s.completion_time.is_some());
    assert_eq!(s.attempts.len(), 1);
    assert_eq!(s.attempts[0].reason.as_deref(), Some("Completed"));
    assert!(condition::is_true(&s.conditions, "Complete"));
    assert!(!condition::is_true(&s.conditions, "Failed"));
    let job = jobs(&env).get("ok").await.unwrap();
    for c in &s.conditions {
        assert_eq!(c.observed_generation, job.metadata.generation, "{c:?}");
    }
    assert_eq!(s.observed_generation, job.metadata.generation);
    wait_no_machines(&env, "ok").await;
    // The spend counter keeps the machine's cost after its CloudResource is gone (the accrued
    // gauge drops it).
    let spent = op
        .ctx
        .metrics
        .encode()
        .lines()
        .find(|l| {
            l.starts_with("runctl_cost_usd_total{")
                && l.contains(&format!(r#"namespace="{}""#, env.ns))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(spent > 0.0, "spend counted after release: {spent}");
    // The token never appears in the job, its CloudResources or events.
    let everything = format!(
        "{}{}",
        serde_json::to_string(&jobs(&env).get("ok").await.unwrap()).unwrap(),
        serde_json::to_string(
            &Api::<k8s_openapi::api::events::v1::Event>::namespaced(env.client.clone(), &env.ns)
                .list(&Default::default())
                .await
                .unwrap()
        )
        .unwrap()
    );
    assert!(!everything.contains(&w.token), "the callback token leaked");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_with_a_wrong_or_missing_token_are_rejected() {
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env).await;
    jobs(&env)
        .create(&PostParams::default(), &job("guarded", json!({})))
        .await
        .unwrap();
    let w = running_attempt(&env, "guarded", 1).await;
    let exit = json!({"kind": "exit", "exitCode": 0});
    assert_eq!(
        w.post_with("exit", exit.clone(), Some("not-the-token"))
            .await,
        401
    );
    assert_eq!(w.post_with("exit", exit.clone(), None).await, 401);
    // Another attempt's URL with this token.
    let other = Workload {
        url: w.url.replace("/guarded/1", "/guarded/2"),
        ..Workload::of(&env, "guarded-a1").await
    };
    assert_eq!(other.post("exit", exit).await, 401);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let s = jobs(&env).get("guarded").await.unwrap().status.unwrap();
    assert_eq!(
        s.phase,
        Some(JobPhase::Running),
        "rejected reports change nothing"
    );
    assert_eq!(w.post("reboot", json!({})).await, 404);
    assert_eq!(w.post("exit", json!({"no": "code"})).await, 400);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_failures_are_retried_up_to_the_backoff_limit() {
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env).await;
    jobs(&env)
        .create(
            &PostParams::default(),
            &job("flaky", json!({"backoffLimit": 1, "retryOn": ["failure"]})),
        )
        .await
        .unwrap();
    let w = running_attempt(&env, "flaky", 1).await;
    assert_eq!(w.exit(3).await, 200);
    let w = running_attempt(&env, "flaky", 2).await;
    let s = jobs(&env).get("flaky").await.unwrap().status.unwrap();
    assert_eq!(
        (s.attempts[0].reason.as_deref(), s.attempts[0].exit_code),
        (Some("ExitCode"), Some(3))
    );
    assert_eq!(s.failures.failure, 1);
    assert_eq!(w.exit(3).await, 200);
    let s = wait_phase(&env, "flaky", JobPhase::Failed).await;
    assert_eq!(s.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        (s.attempt_count, s.failures.failure, s.exit_code),
        (2, 2, Some(3))
    );
    assert!(condition::is_true(&s.conditions, "Failed"));
    wait_no_machines(&env, "flaky").await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_interruption_resumes_as_a_new_attempt_with_the_same_checkpoint_dir() {
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env).await;
    let spec = json!({"placement": {"provider": "sim", "instanceType": "sim.a100", "capacityType": "spot"}, "backoffLimit": 1, "retryOn": ["interruption"]});
    jobs(&env)
        .create(&PostParams::default(), &job("spotty", spec))
        .await
        .unwrap();
    running_attempt(&env, "spotty", 1).await;
    let id = crs(&env)
        .get("spotty-a1")
        .await
        .unwrap()
        .status
        .unwrap()
        .provider_id
        .unwrap();
    assert!(env.sim.machine(&id).unwrap().spot);
    env.sim.interrupt(&id).unwrap();
    let w = running_attempt(&env, "spotty", 2).await;
    let s = jobs(&env).get("spotty").await.unwrap().status.unwrap();
    assert_eq!(s.attempts[0].reason.as_deref(), Some("SpotInterrupted"));
    assert_eq!((s.failures.interruption, s.failures.failure), (1, 0));
    let checkpoint = |cr: CloudResource| {
        cr.spec
            .workload
            .unwrap()
            .env
            .into_iter()
            .find(|e| e.name == "RUNCTL_CHECKPOINT_DIR")
            .and_then(|e| e.value)
    };
    assert_eq!(
        checkpoint(crs(&env).get("spotty-a2").await.unwrap()).as_deref(),
        Some("s3://ckpt/run-1")
    );
    assert_eq!(w.exit(0).await, 200);
    wait_phase(&env, "spotty", JobPhase::Succeeded).await;
    wait_no_machines(&env, "spotty").await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_placement_moves_to_the_next_offer_on_a_capacity_error() {
    let env = TestEnv::start(fast_sim()).await;
    // Slow CloudResource retries, so the job sees the capacity error before a retry succeeds.
    // The create gate holds the retry for the whole backoff even when a watch event wakes the
    // object at once (before, such an event re-created the machine a few ms after the
    // failure). The ended attempt's CloudResource is released, so its retry never comes.
    let mut cfg = test_controller_config("op");
    cfg.backoff.base = Duration::from_secs(30);
    cfg.backoff.max = Duration::from_secs(30);
    let op = env
        .start_training_job_controller(cfg, test_job_config())
        .await;
    env.sim.fail_next(SimOp::Create, SimFault::Capacity, 1);
    let spec = json!({"placement": {"provider": "auto", "instanceType": "sim.a100", "capacityType": "spotWithFallback", "allowedProviders": ["sim"]}});
    jobs(&env)
        .create(&PostParams::default(), &job("auto", spec))
        .await
        .unwrap();
    let w = running_attempt(&env, "auto", 2).await;
    let s = jobs(&env).get("auto").await.unwrap().status.unwrap();
    assert_eq!(
        s.attempts[0].reason.as_deref(),
        Some("InsufficientCapacity")
    );
    assert!(s.attempts[0].spot, "the cheapest offer (spot) came first");
    assert!(!s.attempts[1].spot, "then the on-demand offer");
    let placement = s.placement.unwrap();
    assert_eq!(placement.chosen.as_ref().map(|o| o.spot), Some(false));
    assert!(
        placement
            .rejected
            .iter()
            .any(|r| r.reason == "InsufficientCapacity" && r.offer.spot),
        "{placement:?}"
    );
    assert_eq!(w.exit(0).await, 200);
    wait_phase(&env, "auto", JobPhase::Succeeded).await;
    wait_no_machines(&env, "auto").await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_stops_the_machine_and_fails_the_job() {
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env).await;
    jobs(&env)
        .create(
            &PostParams::default(),
            &job("late", json!({"activeDeadlineSeconds": 2})),
        )
        .await
        .unwrap();
    // The machine's own lifetime limit: what is left of the deadline plus a margin, so the
    // provider's dead-man path ends it even when no operator is left.
    let lifetime = eventually(30, "late-a1 applied", || async {
        crs(&env).get_opt("late-a1").await.ok().flatten()
    })
    .await
    .spec
    .max_lifetime_seconds;
    assert!(
        lifetime.is_some_and(|l| l > 300 && l <= 302),
        "maxLifetimeSeconds {lifetime:?}"
    );
    running_attempt(&env, "late", 1).await;
    let s = wait_phase(&env, "late", JobPhase::Failed).await;
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(s.attempts[0].reason.as_deref(), Some("DeadlineExceeded"));
    wait_no_machines(&env, "late").await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_stops_the_machine_before_it_is_crossed() {
    let env = TestEnv::start(pricey_sim()).await;
    let op = start(&env).await;
    let spec = json!({"placement": {"provider": "sim", "instanceType": "sim.pricey"}, "maxTotalCost": 2.0});
    jobs(&env)
        .create(&PostParams::default(), &job("pricey", spec))
        .await
        .unwrap();
    let s = wait_phase(&env, "pricey", JobPhase::Failed).await;
    assert_eq!(s.reason.as_deref(), Some("BudgetExceeded"));
    let spent = s.attempts[0].cost.unwrap_or(0.0);
    assert!(spent <= 2.0, "stopped before the ceiling, at {spent}");
    wait_no_machines(&env, "pricey").await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_releases_the_machine_and_resume_starts_a_new_attempt() {
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env).await;
    jobs(&env)
        .create(&PostParams::default(), &job("pause", json!({})))
        .await
        .unwrap();
    running_attempt(&env, "pause", 1).await;
    patch_spec(&env, "pause", json!({"suspend": true})).await;
    let s = wait_phase(&env, "pause", JobPhase::Suspended).await;
    assert!(condition::is_true(&s.conditions, "Suspended"));
    assert_eq!(s.attempts[0].reason.as_deref(), Some("Suspended"));
    wait_no_machines(&env, "pause").await;
    patch_spec(&env, "pause", json!({"suspend": false})).await;
    let w = running_attempt(&env, "pause", 2).await;
    let s = jobs(&env).get("pause").await.unwrap().status.unwrap();
    assert_eq!(s.failures, Default::default(), "suspension is no failure");
    assert!(!condition::is_true(&s.conditions, "Suspended"));
    assert_eq!(w.exit(0).await, 200);
    wait_phase(&env, "pause", JobPhase::Succeeded).await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_is_deleted_with_its_machines_after_its_ttl() {
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env).await;
    jobs(&env)
        .create(
            &PostParams::default(),
            &job("brief", json!({"ttlSecondsAfterFinished": 1})),
        )
        .await
        .unwrap();
    let w = running_attempt(&env, "brief", 1).await;
    assert_eq!(w.exit(0).await, 200);
    wait_phase(&env, "brief", JobPhase::Succeeded).await;
    let api = jobs(&env);
    eventually(30, "the job to be deleted after its TTL", || {
        let api = api.clone();
        async move {
            api.get_opt("brief")
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        }
    })
    .await;
    wait_no_machines(&env, "brief").await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let left = secrets
        .list(&ListParams::default().labels("runctl.dev/job=brief"))
        .await
        .unwrap();
    assert!(
        left.items.is_empty(),
        "token Secrets are deleted with the job"
    );
    op.stop().await;
}

async fn delete_and_expect_nothing_left(env: &TestEnv, name: &str) {
    jobs(env)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    let api = jobs(env);
    eventually(30, "the job to be gone", || {
        let api = api.clone();
        async move {
            api.get_opt(name)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        env.sim.live_total(),
        0,
        "the finalizer waits until no machine is left"
    );
    wait_no_machines(env, name).await;
    // The attempt's token Secret goes with its CloudResource, once: not again on every pass the
    // finalizer waits for the machine.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let left = secrets
        .list(&ListParams::default().labels(&format!("runctl.dev/job={name}")))
        .await
        .unwrap();
    assert!(
        left.items.is_empty(),
        "token Secrets are deleted with the job"
    );
    // Request counts are the in-process server's; the real control plane shows the outcome above.
    if let Some(server) = &env.server {
        assert_eq!(
            server.stats().count(Verb::Delete, "secrets"),
            1,
            "one Secret delete for the one attempt"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_job_while_provisioning_leaves_no_machine() {
    let env = TestEnv::start(SimConfig {
        provision_ms: 200,
        boot_ms: 60_000,
        ..fast_sim()
    })
    .await;
    let op = start(&env).await;
    jobs(&env)
        .create(&PostParams::default(), &job("early", json!({})))
        .await
        .unwrap();
    wait_job(&env, "early", "a machine being provisioned", |s| {
        s.phase == Some(JobPhase::Provisioning)
    })
    .await;
    eventually(30, "the machine to exist", || async {
        (env.sim.live_total() == 1).then_some(())
    })
    .await;
    delete_and_expect_nothing_left(&env, "early").await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_job_leaves_no_machine() {
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env).await;
    jobs(&env)
        .create(&PostParams::default(), &job("busy", json!({})))
        .await
        .unwrap();
    running_attempt(&env, "busy", 1).await;
    delete_and_expect_nothing_left(&env, "busy").await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_that_ends_without_a_report_is_lost_not_successful() {
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env).await;
    let spec = json!({"retryOn": []});
    jobs(&env)
        .create(&PostParams::default(), &job("silent", spec))
        .await
        .unwrap();
    running_attempt(&env, "silent", 1).await;
    // The provider ends the machine, reporting no exit code, and nothing else reports one.
    let crs: Api<CloudResource> = env.api();
    let id = crs
        .get("silent-a1")
        .await
        .unwrap()
        .status
        .and_then(|s| s.provider_id)
        .expect("a machine");
    env.sim.fail(&id).expect("the sim fails the machine");
    let s = wait_phase(&env, "silent", JobPhase::Failed).await;
    assert_eq!(s.reason.as_deref(), Some("MachineLost"));
    assert_eq!(s.attempts[0].reason.as_deref(), Some("MachineLost"));
    assert_eq!(s.exit_code, None, "no exit code is made up");
    wait_no_machines(&env, "silent").await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_jobs_are_rejected_by_the_api_server() {
    let env = TestEnv::start(fast_sim()).await;
    let bad = job(
        "bad",
        json!({"placement": {"provider": "aws", "gpuType": "a100"}}),
    );
    let err = jobs(&env)
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("aws needs instanceType");
    assert!(
        err.to_string()
            .contains("placement.provider aws needs placement.instanceType"),
        "{err}"
    );
}

// CEL rules of the TrainingJob CRD, evaluated with kube's validator.

fn cel_errors(spec: Value) -> Vec<String> {
    let crd = serde_json::to_value(runctl::crd::of_kind("TrainingJob")).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let obj = json!({"apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "x"}, "spec": spec});
    match kube::core::cel::Validator::new().validate(schema, &obj, None) {
        Ok(()) => vec![],
        Err(e) => e.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

#[test]
fn cel_rules_accept_valid_jobs_and_explain_invalid_ones() {
    let w = json!({"image": "train:1"});
    let valid = [
        json!({"placement": {"provider": "sim", "instanceType": "sim.a100"}, "workload": w}),
        json!({"placement": {"provider": "auto", "gpuType": "a100", "gpuCount": 2, "allowedProviders": ["runpod", "lyceum"], "capacityType": "spotWithFallback", "maxHourlyPrice": 4.0}, "workload": w}),
        json!({"placement": {"provider": "aws", "instanceType": "g5.xlarge", "regions": ["us-east-1"], "capacityType": "spot"}, "workload": {"image": "x", "env": [{"name": "RUNCTL_SIM_RUN_MS", "value": "1"}]}, "retryOn": ["failure", "interruption"]}),
        json!({"placement": {"provider": "auto", "gpu": {"model": "A100-80GB", "count": 8, "minVcpus": 64}, "machineClasses": ["team-aws", "team-runpod"]}, "workload": w}),
        json!({"placement": {"provider": "aws", "gpu": {"model": "L40S"}}, "workload": w}),
    ];
    for spec in valid {
        assert_eq!(cel_errors(spec.clone()), Vec::<String>::new(), "{spec}");
    }
    let invalid = [
        (
            json!({"placement": {"provider": "aws", "gpuType": "a100"}, "workload": w}),
            "placement.provider aws needs placement.instanceType",
        ),
        (
            json!({"placement": {"provider": "runpod"}, "workload": w}),
            "placement.provider runpod needs placement.gpuType",
        ),
        (
            json!({"placement": {"provider": "auto"}, "workload": w}),
            "placement.provider auto needs placement.gpu (or gpuType / instanceType)",
        ),
        (
            json!({"placement": {"provider": "auto", "gpu": {"model": "H100-80GB"}, "gpuType": "h100"}, "workload": w}),
            "placement.gpu replaces instanceType, gpuType and gpuCount",
        ),
        (
            json!({"placement": {"provider": "aws", "instanceType": "g5.xlarge", "machineClasses": ["a", "b"]}, "workload": w}),
            "a fixed placement.provider takes one machine class",
        ),
        (
            json!({"placement": {"provider": "sim", "instanceType": "t", "allowedProviders": ["sim"]}, "workload": w}),
            "allowedProviders is only used with provider auto",
        ),
        (
            json!({"placement": {"provider": "runpod", "gpuType": "g", "capacityType": "spot"}, "workload": w}),
            "placement.provider runpod has no spot machines",
        ),
        (
            json!({"placement": {"provider": "lyceum", "gpuType": "a100", "gpuCount": 3}, "workload": w}),
            "Lyceum machines take 1, 2, 4 or 8 GPUs",
        ),
        (
            json!({"placement": {"provider": "sim", "instanceType": "t"}, "workload": {"image": "a b"}}),
            "image must be a non-empty image reference",
        ),
        (
            json!({"placement": {"provider": "sim", "instanceType": "t"}, "workload": {"image": "x", "env": [{"name": "RUNCTL_REPORT_TOKEN", "value": "x"}]}}),
            "are reserved",
        ),
        (
            json!({"placement": {"provider": "sim", "instanceType": "t", "regions": ["US East"]}, "workload": w}),
            "regions must be lower-case",
        ),
    ];
    // A class listed twice in retryOn is refused by the schema (`x-kubernetes-list-type: set`),
    // not by a CEL rule: tests/corpus/invalid/081-tj-retry-on-duplicate.yaml.
    for (spec, want) in invalid {
        let errs = cel_errors(spec.clone());
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{spec}: want {want:?}, got {errs:?}"
        );
    }
}

#[test]
fn every_example_job_parses_and_passes_the_cel_rules() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for provider in ["aws", "runpod", "lyceum", "sim"] {
        for entry in std::fs::read_dir(root.join(provider)).expect("examples dir") {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            if !file.starts_with("trainingjob") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let job: TrainingJob =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            let spec = serde_json::to_value(&job.spec).unwrap();
            assert_eq!(cel_errors(spec), Vec::<String>::new(), "{provider}/{file}");
            seen += 1;
        }
    }
    assert!(seen >= 4, "one example per provider at least");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_keeps_following_the_job() {
    let env = TestEnv::start(fast_sim()).await;
    let first = start(&env).await;
    jobs(&env)
        .create(&PostParams::default(), &job("durable", json!({})))
        .await
        .unwrap();
    let w = running_attempt(&env, "durable", 1).await;
    let old_base = first.callback_base.clone();
    first.stop().await;

    // A new operator (empty report store and token cache) on another port.
    let second = start(&env).await;
    let w = Workload {
        url: w.url.replace(&old_base, &second.callback_base),
        ..w
    };
    assert_eq!(
        w.heartbeat().await,
        200,
        "the token is verified from its Secret"
    );
    assert_eq!(w.exit(0).await, 200);
    let s = wait_phase(&env, "durable", JobPhase::Succeeded).await;
    assert_eq!(s.attempt_count, 1, "no second machine after the restart");
    wait_no_machines(&env, "durable").await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_source_credentials_are_passed_as_secret_references() {
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env).await;
    let spec = json!({"workload": {
        "image": "x",
        "dataSource": {"uri": "s3://data/set", "credentialsSecretRef": {"name": "s3-creds"}}
    }});
    jobs(&env)
        .create(&PostParams::default(), &job("data", spec))
        .await
        .unwrap();
    let s = wait_job(&env, "data", "the missing Secret reported in Synced", |s| {
        condition::get(&s.conditions, condition::SYNCED)
            .is_some_and(|c| c.status == "False" && c.reason == "SecretNotFound")
    })
    .await;
    assert!(s.attempts.is_empty(), "no attempt without its Secret");
    let value = "AKIA-very-secret-value";
    env.secret(
        "s3-creds",
        &[("AWS_ACCESS_KEY_ID", value), ("not-an-env-name", "x")],
    )
    .await;
    running_attempt(&env, "data", 1).await;
    let cr = crs(&env).get("data-a1").await.unwrap();
    let envs = cr.spec.workload.clone().unwrap().env;
    let key = envs.iter().find(|e| e.name == "AWS_ACCESS_KEY_ID").unwrap();
    assert!(key.value.is_none());
    assert_eq!(
        key.value_from.as_ref().unwrap().secret_key_ref.name,
        "s3-creds"
    );
    let source = envs
        .iter()
        .find(|e| e.name == "RUNCTL_DATA_SOURCE")
        .unwrap();
    assert_eq!(source.value.as_deref(), Some("s3://data/set"));
    assert!(!serde_json::to_string(&cr).unwrap().contains(value));
    let s = jobs(&env).get("data").await.unwrap().status.unwrap();
    assert!(condition::is_true(&s.conditions, condition::SYNCED));
    op.stop().await;
}

/// With the operator gone and the finalizers removed by hand (what `kubectl patch` does when
/// someone forces a job away), the attempt's CloudResource and token Secret are still collected:
/// both carry an ownerReference to the job, and the garbage collector (kube-controller-manager on
/// the real control plane) deletes them with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_job_deletion_collects_its_secret_and_cloud_resource_by_owner_reference() {
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env).await;
    jobs(&env)
        .create(&PostParams::default(), &job("forced", json!({})))
        .await
        .unwrap();
    running_attempt(&env, "forced", 1).await;
    let uid = jobs(&env).get("forced").await.unwrap().metadata.uid;
    let secrets: Api<Secret> = env.api();
    let by_job = ListParams::default().labels("runctl.dev/job=forced");
    let secret = secrets.list(&by_job).await.unwrap().items;
    assert_eq!(secret.len(), 1, "one token Secret for the attempt");
    let crs: Api<CloudResource> = env.api();
    let cr = crs.get("forced-a1").await.unwrap();
    for (what, owners) in [
        ("token Secret", secret[0].metadata.owner_references.clone()),
        ("CloudResource", cr.metadata.owner_references.clone()),
    ] {
        assert!(
            owners.iter().flatten().any(|o| Some(&o.uid) == uid.as_ref()
                && o.kind == "TrainingJob"
                && o.controller == Some(true)),
            "the {what} is owned by the job: {owners:?}"
        );
    }
    op.stop().await;

    let no_finalizers = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    crs.patch("forced-a1", &PatchParams::default(), &no_finalizers)
        .await
        .unwrap();
    jobs(&env)
        .patch("forced", &PatchParams::default(), &no_finalizers)
        .await
        .unwrap();
    jobs(&env)
        .delete("forced", &DeleteParams::background())
        .await
        .unwrap();
    eventually(
        60,
        "the garbage collector to delete the dependents",
        || async {
            let secrets_left = secrets.list(&by_job).await.ok()?.items.len();
            let cr_left = crs.get_opt("forced-a1").await.ok()?.is_some();
            (secrets_left == 0 && !cr_left).then_some(())
        },
    )
    .await;
    // The machine itself is left running: that is what removing finalizers by hand means, and
    // what the orphan reaper (tests/reaper_e2e.rs) exists for.
    assert_eq!(env.sim.live_total(), 1);
}

/// Issue "Truthful outcomes", item 8: the controller used to release an attempt's CloudResource
/// before writing the attempt's end; when that write failed, the next pass found the
/// CloudResource gone, ended the attempt `MachineLost` and lost the capacity retry. Now the end
/// is written first: while the job's status writes fail, nothing is released, and the capacity
/// error still leads to a second attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_status_write_after_a_capacity_error_still_retries_on_capacity() {
    use runctl_apiserver::WriteFault;
    let env = TestEnv::start_on(
        support::Backend::InProcess,
        runctl::provider::ProvidersConfig {
            // Each provider call takes a second: the test sees attempt 1's CloudResource and
            // breaks the status writes before the capacity error comes back.
            sim: SimConfig {
                api_latency_ms: 1_000,
                ..fast_sim()
            },
            ..Default::default()
        },
    )
    .await;
    // No capacity at all (the CloudResource controller retries creates on its own, and a later
    // success would hide the error from the job).
    env.sim.fail_next(SimOp::Create, SimFault::Capacity, 10_000);
    let op = start(&env).await;
    jobs(&env)
        .create(
            &PostParams::default(),
            &job("cap", json!({"retryOn": ["capacity"], "backoffLimit": 2})),
        )
        .await
        .unwrap();
    let crs: Api<CloudResource> = env.api();
    eventually(30, "attempt 1's CloudResource", || async {
        crs.get_opt("cap-a1").await.ok().flatten()
    })
    .await;
    // From now on every status write of the job fails, until the capacity error is seen and
    // the controller has had time to act on it.
    env.server().faults().fail_writes(
        WriteFault::server_error(10_000)
            .on_resource("trainingjobs")
            .on_verb(Verb::Patch),
    );
    eventually(30, "the capacity error on attempt 1", || async {
        let cr = crs.get("cap-a1").await.ok()?;
        let s = cr.status?;
        (s.reason.as_deref() == Some("InsufficientCapacity")
            || condition::get(&s.conditions, condition::SYNCED)
                .is_some_and(|c| c.reason == "InsufficientCapacity"))
        .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        crs.get_opt("cap-a1").await.unwrap().is_some(),
        "nothing is released before the attempt's end is recorded"
    );
    env.server().faults().clear();
    let s = wait_job(&env, "cap", "attempt 2", |s| s.attempts.len() >= 2).await;
    assert_eq!(
        s.attempts[0].reason.as_deref(),
        Some("InsufficientCapacity"),
        "the capacity error is recorded, not a lost machine: {s:?}"
    );
    op.stop().await;
}

/// Issue "Truthful outcomes", item 5: a machine that never reaches Running, and a running attempt
/// whose heartbeats stop, end their attempts with a clear reason after the configured times,
/// instead of waiting for the deadline or the dead-man switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_that_never_starts_and_heartbeats_that_stop_end_their_attempts() {
    // Machines take an hour to boot: nothing reaches Running by itself.
    let env = TestEnv::start(SimConfig {
        boot_ms: 3_600_000,
        ..fast_sim()
    })
    .await;
    let mut config = test_job_config();
    config.start_timeout = Some(Duration::from_secs(1));
    let op = env
        .start_training_job_controller(test_controller_config("op"), config)
        .await;
    jobs(&env)
        .create(
            &PostParams::default(),
            &job("stuck", json!({"retryOn": []})),
        )
        .await
        .unwrap();
    let s = wait_phase(&env, "stuck", JobPhase::Failed).await;
    assert_eq!(
        s.attempts[0].reason.as_deref(),
        Some("StartTimeout"),
        "{s:?}"
    );
    assert!(
        s.message
            .as_deref()
            .unwrap_or("")
            .contains("did not reach Running"),
        "{s:?}"
    );
    wait_no_machines(&env, "stuck").await;
    op.stop().await;

    let env = TestEnv::start(fast_sim()).await;
    let mut config = test_job_config();
    config.heartbeat_timeout = Some(Duration::from_secs(1));
    let op = env
        .start_training_job_controller(test_controller_config("op"), config)
        .await;
    jobs(&env)
        .create(
            &PostParams::default(),
            &job("silent-later", json!({"retryOn": []})),
        )
        .await
        .unwrap();
    let w = running_attempt(&env, "silent-later", 1).await;
    assert_eq!(w.heartbeat().await, 200);
    // ... and then nothing more.
    let s = wait_phase(&env, "silent-later", JobPhase::Failed).await;
    assert_eq!(
        s.attempts[0].reason.as_deref(),
        Some("HeartbeatsStopped"),
        "{s:?}"
    );
    wait_no_machines(&env, "silent-later").await;
    op.stop().await;
}

/// Issue "Truthful outcomes", item 6: a workload stopped by SIGTERM for a spot reclaim (exit
/// 143, reported by the wrapper as interrupted) is an interruption, retried by the default
/// `retryOn`, not the workload's failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_for_a_spot_reclaim_retries_as_an_interruption() {
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env).await;
    let spec = json!({"placement": {"provider": "sim", "instanceType": "sim.a100", "capacityType": "spot"}});
    jobs(&env)
        .create(&PostParams::default(), &job("reclaimed", spec))
        .await
        .unwrap();
    let w = running_attempt(&env, "reclaimed", 1).await;
    assert_eq!(
        w.post(
            "exit",
            json!({"kind": "exit", "exitCode": 143, "interrupted": true})
        )
        .await,
        200
    );
    let s = wait_job(&env, "reclaimed", "attempt 2", |s| s.attempts.len() == 2).await;
    assert_eq!(
        s.attempts[0].reason.as_deref(),
        Some("SpotInterrupted"),
        "{s:?}"
    );
    assert_eq!(s.failures.interruption, 1);
    assert_eq!(s.failures.failure, 0);
    let w = running_attempt(&env, "reclaimed", 2).await;
    assert_eq!(w.exit(0).await, 200);
    wait_phase(&env, "reclaimed", JobPhase::Succeeded).await;
    op.stop().await;
}

/// A callback endpoint alone, as a standby replica (or a replica that is about to die) serves it:
/// its own report store, no controller reading it, not leading (so it persists heartbeats and
/// progress as well as exits). Returns its base URL and the token stopping it.
async fn callback_only(env: &TestEnv) -> (String, tokio_util::sync::CancellationToken) {
    use runctl::callback::{self, CallbackState, Reports};
    let stop = tokio_util::sync::CancellationToken::new();
    let logs = runctl::logs::sink::LogSink::new(
        env.client.clone(),
        std::sync::Arc::new(runctl::metrics::Metrics::new()),
        runctl::logs::sink::FOLLOWED_WRITE_INTERVAL,
    );
    logs.set_leading(false);
    let router = callback::router(CallbackState::with_sink(
        env.client.clone(),
        std::sync::Arc::new(Reports::new()),
        logs,
    ));
    let addr = callback::serve("127.0.0.1:0".parse().unwrap(), router, stop.clone())
        .await
        .expect("bind");
    (format!("http://{addr}"), stop)
}

/// Issue "Truthful outcomes", item 3: reports lived in the leader's memory, so a standby
/// answered 503 and used up the wrapper's retries. Now any replica verifies the token and
/// persists the report in the attempt's CloudResource before it answers: an exit reported to a
/// standby ends the job through the leader, and heartbeats and progress reach its status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_to_a_standby_replica_reach_the_leader() {
    let env = TestEnv::start(fast_sim()).await;
    let leader = start(&env).await;
    jobs(&env)
        .create(&PostParams::default(), &job("twice", json!({})))
        .await
        .unwrap();
    let w = running_attempt(&env, "twice", 1).await;
    let (standby, stop_standby) = callback_only(&env).await;
    let w = Workload {
        url: w.url.replace(&leader.callback_base, &standby),
        ..w
    };
    assert_eq!(
        w.post("progress", json!({"step": 42, "message": "epoch 3"}))
            .await,
        200
    );
    let s = wait_job(&env, "twice", "a standby's progress in status", |s| {
        s.progress.as_ref().and_then(|p| p.step) == Some(42)
    })
    .await;
    assert!(s.last_heartbeat_time.is_some(), "{s:?}");
    let cr = crs(&env).get("twice-a1").await.unwrap();
    let stored = cr
        .status
        .unwrap()
        .report
        .expect("the report in the CloudResource");
    assert_eq!(stored.progress.and_then(|p| p.step), Some(42));

    assert_eq!(w.exit(0).await, 200, "a standby accepts the exit");
    let s = wait_phase(&env, "twice", JobPhase::Succeeded).await;
    assert_eq!(
        (s.reason.as_deref(), s.exit_code, s.attempts.len()),
        (Some("Completed"), Some(0), 1)
    );
    wait_no_machines(&env, "twice").await;
    let late = w.exit(0).await;
    assert!(
        late == 401 || late == 410,
        "a released attempt answers 410 (or 401 once its token is gone): the wrapper stops; got {late}"
    );
    stop_standby.cancel();
    leader.stop().await;
}

/// Issue 20: the leader persists no heartbeats (its controller reads them from memory), so a
/// replica that takes over knows only the heartbeat the job's status shows, older than the
/// heartbeat timeout here. It grants the running attempt a full timeout from when it took over
/// instead of ending it `HeartbeatsStopped` at once; heartbeats that then stop still end it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_does_not_take_an_old_heartbeat_for_a_lost_machine() {
    let env = TestEnv::start(fast_sim()).await;
    let mut config = test_job_config();
    config.heartbeat_timeout = Some(Duration::from_secs(3));
    let first = env
        .start_training_job_controller(test_controller_config("op"), config.clone())
        .await;
    jobs(&env)
        .create(
            &PostParams::default(),
            &job("taken-over", json!({"retryOn": []})),
        )
        .await
        .unwrap();
    let w = running_attempt(&env, "taken-over", 1).await;
    assert_eq!(w.heartbeat().await, 200);
    wait_job(&env, "taken-over", "the heartbeat in status", |s| {
        s.last_heartbeat_time.is_some()
    })
    .await;
    let old_base = first.callback_base.clone();
    first.stop().await;
    let cr = crs(&env).get("taken-over-a1").await.unwrap();
    assert!(
        cr.status.and_then(|s| s.report).is_none(),
        "the leader persisted no heartbeat"
    );
    // Longer than the heartbeat timeout without a leader.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let second = env
        .start_training_job_controller(test_controller_config("op"), config)
        .await;
    let w = Workload {
        url: w.url.replace(&old_base, &second.callback_base),
        ..w
    };
    assert_eq!(w.heartbeat().await, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = jobs(&env).get("taken-over").await.unwrap().status.unwrap();
    assert!(
        s.phase == Some(JobPhase::Running) && s.attempts[0].end_time.is_none(),
        "{s:?}"
    );
    // ... and then nothing more.
    let s = wait_phase(&env, "taken-over", JobPhase::Failed).await;
    assert_eq!(
        s.attempts[0].reason.as_deref(),
        Some("HeartbeatsStopped"),
        "{s:?}"
    );
    wait_no_machines(&env, "taken-over").await;
    second.stop().await;
}

/// Issue "Truthful outcomes", item 3: an operator that received the exit report and stopped
/// before writing the job's status lost the report (and the run was judged `MachineLost` and
/// trained again). Now the exit is in the API before the wrapper gets 200, and the next
/// operator, with an empty memory, ends the job `Succeeded` after one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_report_survives_an_operator_restart_before_the_status_write() {
    let env = TestEnv::start(fast_sim()).await;
    let first = start(&env).await;
    jobs(&env)
        .create(&PostParams::default(), &job("survives", json!({})))
        .await
        .unwrap();
    let w = running_attempt(&env, "survives", 1).await;
    let old_base = first.callback_base.clone();
    // The controllers stop; only the dying process's callback endpoint takes the exit report.
    first.stop().await;
    let (dying, stop_dying) = callback_only(&env).await;
    let reported = Workload {
        url: w.url.replace(&old_base, &dying),
        ..w
    };
    assert_eq!(reported.exit(0).await, 200);
    stop_dying.cancel();
    let s = jobs(&env).get("survives").await.unwrap().status.unwrap();
    assert_eq!(s.phase, Some(JobPhase::Running), "no status write yet");

    let second = start(&env).await;
    let s = wait_phase(&env, "survives", JobPhase::Succeeded).await;
    assert_eq!(
        (s.reason.as_deref(), s.exit_code, s.attempt_count),
        (Some("Completed"), Some(0), 1),
        "{s:?}"
    );
    wait_no_machines(&env, "survives").await;
    second.stop().await;
}

/// The Warning events about `regarding` in the test's namespace, as `reason: note`.
async fn warnings(env: &TestEnv, regarding: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = env.api();
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding)
        })
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default()
            )
        })
        .collect()
}

/// Issue 17, item 1: `auto` without `allowedProviders` compared every provider, the simulated
/// one included (1 USD/h for this GPU, the cheapest), and providers the operator had no
/// configuration for: a production job could "succeed" on machines that do no work. Now only the
/// providers the operator's configuration enables are candidates, here RunPod (a stand-in); sim,
/// AWS and Lyceum are not enabled. A job that names one of those fails `ProviderNotEnabled` with
/// a Warning event and rents nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_places_jobs_only_on_the_providers_the_operator_enables() {
    use runctl::crd::ProviderKind;

    let (standin, env) = runpod_env(false).await;
    let op = start(&env).await;
    let gpu = "NVIDIA H100 80GB HBM3";

    // `auto` with no allowedProviders: RunPod, the one enabled provider, and nothing else.
    jobs(&env)
        .create(
            &PostParams::default(),
            &job(
                "cheapest",
                json!({"placement": {"provider": "auto", "gpuType": gpu}}),
            ),
        )
        .await
        .unwrap();
    let s = wait_job(&env, "cheapest", "attempt 1", |s| !s.attempts.is_empty()).await;
    assert_eq!(s.attempts[0].provider, ProviderKind::Runpod, "{s:?}");
    let placement = s.placement.expect("placement");
    let considered: Vec<ProviderKind> = placement
        .chosen
        .iter()
        .chain(&placement.remaining)
        .map(|o| o.provider)
        .chain(placement.rejected.iter().map(|r| r.offer.provider))
        .collect();
    assert_eq!(considered, [ProviderKind::Runpod], "{placement:?}");
    eventually(60, "the RunPod pod", || async {
        (standin.live_pods_with_env("RUNCTL_JOB_NAME", "cheapest") == 1).then_some(())
    })
    .await;

    // A job on the simulator, and `auto` allowed only the simulator: both fail, nothing rented.
    jobs(&env)
        .create(&PostParams::default(), &job("on-sim", json!({})))
        .await
        .unwrap();
    jobs(&env)
        .create(
            &PostParams::default(),
            &job(
                "auto-sim",
                json!({"placement": {"provider": "auto", "instanceType": "sim.a100", "allowedProviders": ["sim"]}}),
            ),
        )
        .await
        .unwrap();
    for (name, says) in [
        (
            "on-sim",
            "placement.provider sim is not enabled in this operator's configuration (providers.sim.enabled; enabled: runpod): no machine was rented",
        ),
        (
            "auto-sim",
            "none of the providers placement auto may use (sim) is enabled",
        ),
    ] {
        let s = wait_phase(&env, name, JobPhase::Failed).await;
        assert_eq!(s.reason.as_deref(), Some("ProviderNotEnabled"), "{s:?}");
        let message = s.message.clone().unwrap_or_default();
        assert!(message.contains(says), "{message}");
        assert!(s.attempts.is_empty(), "no attempt: {s:?}");
        assert!(condition::is_true(&s.conditions, "Failed"));
        let rejected = &s.placement.as_ref().expect("placement").rejected;
        assert_eq!(
            rejected
                .iter()
                .map(|r| (r.offer.provider, r.reason.as_str()))
                .collect::<Vec<_>>(),
            [(ProviderKind::Sim, "ProviderNotEnabled")]
        );
        let warned = eventually(30, &format!("{name}: the Warning event"), || async {
            let w = warnings(&env, name).await;
            w.iter()
                .any(|w| w.starts_with("JobFailed: ProviderNotEnabled: "))
                .then_some(w)
        })
        .await;
        assert!(warned.iter().any(|w| w.contains(says)), "{warned:?}");
        let left = crs(&env)
            .list(&ListParams::default().labels(&format!("runctl.dev/job={name}")))
            .await
            .unwrap();
        assert!(left.items.is_empty(), "no CloudResource for {name}");
    }
    assert_eq!(env.sim.live_total(), 0, "no simulated machine");
    assert!(env.sim.machines().is_empty(), "none was ever created");

    jobs(&env)
        .delete("cheapest", &DeleteParams::default())
        .await
        .unwrap();
    eventually(60, "the RunPod pod to be terminated", || async {
        (standin.live_pods_with_env("RUNCTL_JOB_NAME", "cheapest") == 0).then_some(())
    })
    .await;
    op.stop().await;
}

/// Issue 17, item 9: with `deletionPolicy: Orphan`, a job that ended at its `maxTotalCost` or
/// `activeDeadlineSeconds` released its attempt's CloudResource, which orphaned the machine: it
/// kept billing past the limit that had just stopped it. Machines of attempts the job ends itself
/// are now terminated whatever the policy; `Orphan` keeps only the machine of the attempt still
/// running when the job itself is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_jobs_stop_their_machines_at_the_budget_and_the_deadline() {
    let env = TestEnv::start(pricey_sim()).await;
    let op = start(&env).await;
    jobs(&env)
        .create(
            &PostParams::default(),
            &job(
                "orphan-pricey",
                json!({"placement": {"provider": "sim", "instanceType": "sim.pricey"}, "maxTotalCost": 2.0, "deletionPolicy": "Orphan"}),
            ),
        )
        .await
        .unwrap();
    let s = wait_phase(&env, "orphan-pricey", JobPhase::Failed).await;
    assert_eq!(s.reason.as_deref(), Some("BudgetExceeded"));
    wait_no_machines(&env, "orphan-pricey").await;

    jobs(&env)
        .create(
            &PostParams::default(),
            &job(
                "orphan-late",
                json!({"activeDeadlineSeconds": 2, "deletionPolicy": "Orphan"}),
            ),
        )
        .await
        .unwrap();
    running_attempt(&env, "orphan-late", 1).await;
    let s = wait_phase(&env, "orphan-late", JobPhase::Failed).await;
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    wait_no_machines(&env, "orphan-late").await;
    let terminated = env
        .sim
        .machines()
        .iter()
        .filter(|m| m.state == runctl::provider::ResourceState::Terminated)
        .count();
    assert_eq!(terminated, 2, "both machines terminated, none orphaned");

    // Deleting the job itself: Orphan keeps the running attempt's machine, as documented.
    jobs(&env)
        .create(
            &PostParams::default(),
            &job("orphan-kept", json!({"deletionPolicy": "Orphan"})),
        )
        .await
        .unwrap();
    running_attempt(&env, "orphan-kept", 1).await;
    jobs(&env)
        .delete("orphan-kept", &DeleteParams::default())
        .await
        .unwrap();
    let api = jobs(&env);
    eventually(30, "the job to be gone", || async {
        api.get_opt("orphan-kept")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        env.sim.live_total(),
        1,
        "the orphaned machine keeps running"
    );
    op.stop().await;
}

/// Issue "Providers the way platform teams run them", item 3: `placement.gpu` names the GPU in
/// runctl's vocabulary, each enabled provider offers its own equivalent machines, and `auto`
/// ranks them against the same need (RunPod's two A100-80GB ids and the simulator's `a100`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_ranks_equivalent_gpus_of_every_provider() {
    use runctl::crd::ProviderKind;

    let (_standin, env) = runpod_env(true).await;
    let op = start(&env).await;
    jobs(&env)
        .create(
            &PostParams::default(),
            &job(
                "same-gpu",
                json!({"placement": {"provider": "auto", "gpu": {"model": "A100-80GB", "count": 2}}}),
            ),
        )
        .await
        .unwrap();
    let s = wait_job(&env, "same-gpu", "attempt 1", |s| !s.attempts.is_empty()).await;
    let placement = s.placement.expect("placement");
    let chosen = placement.chosen.clone().expect("chosen");
    let ranked: Vec<(ProviderKind, String, Option<u32>, f64)> = std::iter::once(&chosen)
        .chain(&placement.remaining)
        .map(|o| {
            (
                o.provider,
                o.gpu_type.clone().unwrap_or_default(),
                o.gpu_count,
                o.price_per_hour.expect("priced"),
            )
        })
        .collect();
    let mut names: Vec<(ProviderKind, &str)> = ranked.iter().map(|r| (r.0, r.1.as_str())).collect();
    names.sort();
    assert_eq!(
        names,
        [
            (ProviderKind::Runpod, "NVIDIA A100 80GB PCIe"),
            (ProviderKind::Runpod, "NVIDIA A100-SXM4-80GB"),
            (ProviderKind::Sim, "a100"),
        ],
        "{placement:?}"
    );
    assert!(ranked.iter().all(|r| r.2 == Some(2)), "{ranked:?}");
    assert!(
        ranked.windows(2).all(|w| w[0].3 <= w[1].3),
        "cheapest first: {ranked:?}"
    );
    // The attempt runs on the cheapest, in that provider's own names.
    let crs: Api<runctl::crd::CloudResource> = env.api();
    let cr = crs.get("same-gpu-a1").await.expect("attempt 1");
    assert_eq!(
        (
            cr.spec.provider,
            cr.spec.gpu_type.clone(),
            cr.spec.gpu_count
        ),
        (chosen.provider, chosen.gpu_type.clone(), Some(2))
    );
    op.stop().await;
}

/// Issue "What ML engineers reach for every day", item 5: a GitOps tool re-creates a job that
/// `ttlSecondsAfterFinished` deleted. With `recreatePolicy: SkipIfSucceeded` the re-created job
/// finishes at once from the success record and rents nothing; its TTL does not delete it
/// again; a changed spec trains again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitops_recreate_of_a_succeeded_job_does_not_train_again() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env).await;
    let manifest = || {
        job(
            "nightly",
            json!({"ttlSecondsAfterFinished": 1, "recreatePolicy": "SkipIfSucceeded"}),
        )
    };
    jobs(&env)
        .create(&PostParams::default(), &manifest())
        .await
        .unwrap();
    let w = running_attempt(&env, "nightly", 1).await;
    assert_eq!(w.exit(0).await, 200);
    wait_phase(&env, "nightly", JobPhase::Succeeded).await;
    let first_uid = jobs(&env)
        .get("nightly")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let api = jobs(&env);
    eventually(30, "the TTL to delete the job", || {
        let api = api.clone();
        async move { api.get_opt("nightly").await.ok()?.is_none().then_some(()) }
    })
    .await;
    let records: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let record = records
        .get("runctl-succeeded-nightly")
        .await
        .expect("the success record outlives the job");
    assert_eq!(record.data.unwrap()["uid"], first_uid);

    // Argo CD / Flux put it back.
    jobs(&env)
        .create(&PostParams::default(), &manifest())
        .await
        .unwrap();
    let s = wait_job(&env, "nightly", "AlreadySucceeded", |s| {
        s.reason.as_deref() == Some("AlreadySucceeded")
    })
    .await;
    assert_eq!(s.phase, Some(JobPhase::Succeeded));
    assert!(s.attempts.is_empty(), "nothing trained: {s:?}");
    assert_eq!(s.previous_success.expect("previous").uid, first_uid);
    assert!(condition::is_true(&s.conditions, "Complete"));
    // Its TTL passes and it stays (deleting it would only start the re-create loop).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(jobs(&env).get_opt("nightly").await.unwrap().is_some());
    let crs: Api<runctl::crd::CloudResource> = env.api();
    assert!(
        crs.get_opt("nightly-a1").await.unwrap().is_none(),
        "no machine"
    );

    // A changed spec is new training.
    jobs(&env)
        .delete("nightly", &DeleteParams::default())
        .await
        .unwrap();
    eventually(30, "the re-created job gone", || {
        let api = api.clone();
        async move { api.get_opt("nightly").await.ok()?.is_none().then_some(()) }
    })
    .await;
    let mut changed = manifest();
    changed.spec.workload.image = "ghcr.io/acme/train:2".into();
    jobs(&env)
        .create(&PostParams::default(), &changed)
        .await
        .unwrap();
    running_attempt(&env, "nightly", 1).await;
    op.stop().await;
}
