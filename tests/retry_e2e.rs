//! A user's retry request end to end (`runctl retry tj/NAME`): the real CloudResource and
//! TrainingJob controllers and the callback endpoint, with the simulated cloud, on the in-process
//! API test server and (`RUNCTL_TEST_BACKEND=real`) a real kube-apiserver. The tests set the
//! `runctl.dev/retry` annotation with the merge patch the CLI sends
//! ([`runctl::crd::training_job::retry_patch`]) and play the workload's side of the callback.

mod support;

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use runctl::crd::training_job::{
    JobPhase, RETRY_ANNOTATION, TrainingJob, TrainingJobStatus, retry_patch,
};
use runctl::crd::{CloudResource, condition};
use serde_json::{Value, json};
use support::jobs::{JobOperator, Workload, test_job_config, wait_job};
use support::{TestEnv, eventually, fast_sim, test_controller_config};

fn jobs(env: &TestEnv) -> Api<TrainingJob> {
    env.api()
}

/// A sim TrainingJob with `extra` merged into its spec.
fn job(name: &str, extra: Value) -> TrainingJob {
    let mut spec = json!({
        "placement": {"provider": "sim", "instanceType": "sim.a100"},
        "workload": {"image": "ghcr.io/acme/train:1", "checkpointDir": "s3://ckpt/run-1"}
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

async fn start(env: &TestEnv, name: &str, extra: Value) -> JobOperator {
    let op = env
        .start_training_job_controller(test_controller_config("op"), test_job_config())
        .await;
    jobs(env)
        .create(&PostParams::default(), &job(name, extra))
        .await
        .expect("create job");
    op
}

/// Waits until attempt `n` runs and returns its workload.
async fn running_attempt(env: &TestEnv, name: &str, n: u32) -> Workload {
    wait_job(env, name, &format!("attempt {n} running"), |s| {
        s.phase == Some(JobPhase::Running) && s.attempts.last().is_some_and(|a| a.index == n)
    })
    .await;
    Workload::of(env, &format!("{name}-a{n}")).await
}

/// Asks for a retry as `runctl retry` does: a merge patch of the annotation with a fresh token.
/// Returns the token.
async fn request_retry(env: &TestEnv, name: &str, token: &str) -> String {
    jobs(env)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(retry_patch(token)),
        )
        .await
        .expect("patch the retry annotation");
    token.to_string()
}

/// Waits until the controller has handled `token`.
async fn handled(env: &TestEnv, name: &str, token: &str) -> TrainingJobStatus {
    wait_job(env, name, &format!("retry request {token} handled"), |s| {
        s.observed_retry_request.as_deref() == Some(token)
    })
    .await
}

/// Waits for an event of `reason` about job `name`; returns (type, note).
async fn event(env: &TestEnv, name: &str, reason: &str) -> (String, String) {
    let api: Api<Event> = env.api();
    eventually(30, &format!("{name}: event {reason}"), || {
        let api = api.clone();
        async move {
            api.list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                })
                .map(|e| (e.type_.unwrap_or_default(), e.note.unwrap_or_default()))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_retried_ends_its_attempt_and_starts_the_next_at_once() {
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env, "rerun", json!({"backoffLimit": 0})).await;
    let first = running_attempt(&env, "rerun", 1).await;
    assert_eq!(first.heartbeat().await, 200);
    let token = request_retry(&env, "rerun", "2026-01-01T00:00:00Z").await;
    let w = running_attempt(&env, "rerun", 2).await;
    let s = handled(&env, "rerun", &token).await;
    let a1 = &s.attempts[0];
    assert_eq!(
        (a1.reason.as_deref(), a1.retry_class, a1.end_time.is_some()),
        (Some("RetryRequested"), None, true),
        "{s:#?}"
    );
    assert!(
        a1.cost.is_some(),
        "the ended attempt keeps its cost: {a1:?}"
    );
    assert_eq!(
        s.failures,
        Default::default(),
        "a user's retry is no failure (backoffLimit 0 would have failed the job otherwise)"
    );
    assert_eq!(s.current_cloud_resource.as_deref(), Some("rerun-a2"));
    // Attempt 1's CloudResource is released and its machine terminated; attempt 2's bills.
    let crs: Api<CloudResource> = env.api();
    eventually(30, "rerun-a1 released, one machine billing", || {
        let crs = crs.clone();
        let sim = &env.sim;
        async move {
            let gone = crs.get_opt("rerun-a1").await.ok()?.is_none();
            (gone && sim.live_total() == 1).then_some(())
        }
    })
    .await;
    let (type_, note) = event(&env, "rerun", "RetryRequested").await;
    assert_eq!(type_, "Normal", "{note}");
    assert!(note.contains("attempt 1 ended"), "{note}");
    // The ended attempt's reports are refused; the new attempt finishes the job.
    assert_ne!(first.exit(0).await, 200, "attempt 1 is over");
    assert_eq!(w.exit(0).await, 200);
    let s = wait_job(&env, "rerun", "succeeded", |s| {
        s.phase == Some(JobPhase::Succeeded)
    })
    .await;
    assert_eq!(
        (s.attempt_count, s.failures.clone()),
        (2, Default::default())
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_retried_runs_again_and_can_succeed() {
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env, "broken", json!({})).await;
    let w = running_attempt(&env, "broken", 1).await;
    assert_eq!(w.exit(3).await, 200);
    let failed = wait_job(&env, "broken", "failed", |s| {
        s.phase == Some(JobPhase::Failed)
    })
    .await;
    assert_eq!(failed.reason.as_deref(), Some("ExitCode"));
    assert!(failed.completion_time.is_some());

    let token = request_retry(&env, "broken", "2026-01-01T00:00:01Z").await;
    let w = running_attempt(&env, "broken", 2).await;
    let s = handled(&env, "broken", &token).await;
    assert_eq!(
        (s.reason.as_deref(), s.completion_time.as_ref()),
        (None, None),
        "the job left Failed: {s:#?}"
    );
    assert!(!condition::is_true(&s.conditions, "Failed"));
    assert_eq!(s.failures.failure, 1, "its history stays");
    assert_eq!(s.attempts[0].reason.as_deref(), Some("ExitCode"));
    let (type_, note) = event(&env, "broken", "RetryRequested").await;
    assert_eq!(type_, "Normal");
    assert!(note.contains("had failed (ExitCode)"), "{note}");

    assert_eq!(w.exit(0).await, 200);
    let s = wait_job(&env, "broken", "succeeded", |s| {
        s.phase == Some(JobPhase::Succeeded)
    })
    .await;
    assert_eq!(
        (s.reason.as_deref(), s.attempt_count, s.exit_code),
        (Some("Completed"), 2, Some(0))
    );
    assert!(condition::is_true(&s.conditions, "Complete"));
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_succeeded_job_is_not_retried() {
    let env = TestEnv::start(fast_sim()).await;
    let op = start(&env, "done", json!({})).await;
    let w = running_attempt(&env, "done", 1).await;
    assert_eq!(w.exit(0).await, 200);
    let before = wait_job(&env, "done", "succeeded", |s| {
        s.phase == Some(JobPhase::Succeeded)
    })
    .await;

    let token = request_retry(&env, "done", "2026-01-01T00:00:02Z").await;
    let s = handled(&env, "done", &token).await;
    assert_eq!(
        (s.phase, s.attempt_count, s.completion_time.clone()),
        (Some(JobPhase::Succeeded), 1, before.completion_time.clone()),
        "nothing changes"
    );
    let (type_, note) = event(&env, "done", "RetryRefused").await;
    assert_eq!(type_, "Warning");
    assert!(note.contains("delete and re-apply"), "{note}");
    let job = jobs(&env).get("done").await.unwrap();
    assert_eq!(
        job.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RETRY_ANNOTATION))
            .map(String::as_str),
        Some(token.as_str()),
        "the annotation is the user's; the controller leaves it"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let s = jobs(&env).get("done").await.unwrap().status.unwrap();
    assert_eq!((s.phase, s.attempt_count), (Some(JobPhase::Succeeded), 1));
    assert_eq!(env.sim.live_total(), 0, "no machine was rented");
    op.stop().await;
}
