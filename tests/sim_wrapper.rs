//! The simulated reporting wrapper against the real callback endpoint: a sim machine whose
//! workload asks for reporting sends heartbeats while it runs and its exit code before it ends,
//! so TrainingJobs finish on `sim` with nobody playing the workload's side; with the wrapper
//! switched off the same job is lost.

mod support;

use kube::api::{Api, PostParams};
use runctl::crd::training_job::{JobPhase, TrainingJob, TrainingJobStatus};
use runctl::provider::sim::SimConfig;
use serde_json::json;
use support::jobs::test_job_config;
use support::{TestEnv, eventually, fast_sim, test_controller_config};

fn reporting_sim() -> SimConfig {
    SimConfig {
        reporting: true,
        heartbeat_ms_per_second: 20,
        report_tick_ms: 20,
        ..fast_sim()
    }
}

fn job(name: &str, run_ms: u64, exit_code: i32) -> TrainingJob {
    serde_json::from_value(json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "placement": {"provider": "sim", "instanceType": "sim.a100"},
            "workload": {"image": "x", "env": [
                {"name": "RUNCTL_SIM_RUN_MS", "value": run_ms.to_string()},
                {"name": "RUNCTL_SIM_EXIT_CODE", "value": exit_code.to_string()}
            ]},
            "retryOn": []
        }
    }))
    .expect("valid job")
}

async fn final_status(env: &TestEnv, name: &str) -> TrainingJobStatus {
    let api: Api<TrainingJob> = Api::namespaced(env.client.clone(), &env.ns);
    eventually(30, &format!("{name} ends"), || {
        let api = api.clone();
        async move {
            let s = api.get_opt(name).await.ok().flatten()?.status?;
            matches!(s.phase, Some(JobPhase::Succeeded | JobPhase::Failed)).then_some(s)
        }
    })
    .await
}

async fn run_one(sim: SimConfig, name: &str, run_ms: u64, exit_code: i32) -> TrainingJobStatus {
    let env = TestEnv::start(sim).await;
    let op = env
        .start_training_job_controller(test_controller_config("op"), test_job_config())
        .await;
    let api: Api<TrainingJob> = Api::namespaced(env.client.clone(), &env.ns);
    api.create(&PostParams::default(), &job(name, run_ms, exit_code))
        .await
        .expect("create job");
    let s = final_status(&env, name).await;
    op.stop().await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sim_wrapper_reports_heartbeats_and_success() {
    // Heartbeat interval 5 s × 20 ms: a heartbeat every 100 ms during a 1.5 s run.
    let s = run_one(reporting_sim(), "reported", 1500, 0).await;
    assert_eq!(s.phase, Some(JobPhase::Succeeded), "{s:?}");
    assert_eq!(s.exit_code, Some(0));
    assert!(
        s.last_heartbeat_time.is_some(),
        "heartbeats reached the job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sim_wrapper_reports_a_failing_exit_code() {
    let s = run_one(reporting_sim(), "crashes", 600, 3).await;
    assert_eq!(s.phase, Some(JobPhase::Failed), "{s:?}");
    assert_eq!(s.exit_code, Some(3));
    assert_eq!(s.attempts[0].exit_code, Some(3));
}

/// With the wrapper off (an image that cannot report), the exit code the provider itself reports
/// decides: the sim, like Lyceum, reports its workload's exit code, so a finished run succeeds
/// once and is not trained again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_wrapper_off_the_providers_exit_code_decides() {
    let sim = SimConfig {
        reporting: false,
        ..reporting_sim()
    };
    let s = run_one(sim, "silent", 300, 0).await;
    assert_eq!(s.phase, Some(JobPhase::Succeeded));
    assert_eq!(s.reason.as_deref(), Some("Completed"));
    assert_eq!(s.exit_code, Some(0));
    assert_eq!(s.attempts.len(), 1);
}
