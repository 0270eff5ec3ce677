//! `runctl logs` end to end (issue 19, item 1), on both API servers: the workload's output of a
//! sim attempt (shipped by the simulated reporting wrapper to the callback endpoint) and of a
//! Lyceum stand-in run (pulled from the provider's log API by the CloudResource controller)
//! lands in the attempt's ConfigMap, owned by the job and with Secret values masked, and
//! `runctl logs -f` follows it until the job ends. A failed attempt's last lines are in an
//! `AttemptFailed` event on the job. Without a follower a running attempt's output costs no
//! write (it is kept in the leader's memory and written once, at the attempt's end); while
//! someone follows the job it is written live.

mod support;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use runctl::cli::Cluster;
use runctl::cli::logs::{self, LiveRequest, LogsArgs};
use runctl::cli::output::Out;
use runctl::crd::training_job::{JobPhase, TrainingJob, TrainingJobStatus};
use runctl::provider::ProvidersConfig;
use runctl::provider::sim::SimConfig;
use runctl_standins::lyceum::LyceumStandin;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use support::jobs::test_job_config;
use support::{TestEnv, eventually, fast_sim, test_controller_config};

const WANDB: &str = "wandb-SECRET-logs-5a9c1e";

fn reporting_sim() -> SimConfig {
    SimConfig {
        reporting: true,
        heartbeat_ms_per_second: 20,
        report_tick_ms: 20,
        ..fast_sim()
    }
}

fn args(job: &str) -> LogsArgs {
    LogsArgs {
        job: format!("tj/{job}"),
        follow: false,
        attempt: None,
        since: None,
        tail: None,
    }
}

/// Runs `runctl logs` with `args`; returns what it printed on standard output.
async fn logs(env: &TestEnv, args: LogsArgs) -> String {
    let cluster = Cluster::new(env.client.clone(), env.ns.clone());
    let (mut out, buf) = Out::buffer(Timestamp::now());
    logs::run(&cluster, &args, &mut out)
        .await
        .expect("runctl logs");
    buf.text()
}

/// Starts `runctl logs -f tj/<job>` in the background (before the job has an attempt, which it
/// waits for).
fn follow(env: &TestEnv, job: &str) -> tokio::task::JoinHandle<String> {
    let cluster = Cluster::new(env.client.clone(), env.ns.clone());
    let args = LogsArgs {
        follow: true,
        ..args(job)
    };
    tokio::spawn(async move {
        let (mut out, buf) = Out::buffer(Timestamp::now());
        logs::run(&cluster, &args, &mut out)
            .await
            .expect("runctl logs -f");
        buf.text()
    })
}

async fn final_status(env: &TestEnv, name: &str) -> TrainingJobStatus {
    let api: Api<TrainingJob> = env.api();
    eventually(60, &format!("{name} ends"), || {
        let api = api.clone();
        async move {
            let s = api.get_opt(name).await.ok().flatten()?.status?;
            s.phase.filter(|p| p.is_terminal()).map(|_| s)
        }
    })
    .await
}

async fn failure_notes(env: &TestEnv, job: &str) -> Vec<String> {
    let events: Api<Event> = env.api();
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("AttemptFailed")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(job)
        })
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sim_attempts_output_is_followed_until_the_job_ends() {
    let env = TestEnv::start(reporting_sim()).await;
    env.secret("wandb", &[("apiKey", WANDB)]).await;
    let op = env
        .start_training_job_controller(test_controller_config("logs"), test_job_config())
        .await;
    let job: TrainingJob = serde_json::from_value(json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": "chatty"},
        "spec": {
            "placement": {"provider": "sim", "instanceType": "sim.a100"},
            "workload": {"image": "train:1", "env": [
                {"name": "RUNCTL_SIM_RUN_MS", "value": "1500"},
                {"name": "RUNCTL_SIM_EXIT_CODE", "value": "3"},
                {"name": "RUNCTL_SIM_PRINT_ENV", "value": "1"},
                {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "apiKey"}}}
            ]},
            "retryOn": []
        }
    }))
    .expect("valid job");
    let jobs: Api<TrainingJob> = env.api();
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create the job");
    let followed = follow(&env, "chatty");
    let text = tokio::time::timeout(Duration::from_secs(90), followed)
        .await
        .expect("-f ends when the attempt ends")
        .expect("-f ran");
    let status = final_status(&env, "chatty").await;
    assert_eq!(
        (status.phase, status.exit_code),
        (Some(JobPhase::Failed), Some(3)),
        "{status:?}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"[sim] train:1 started on sim.a100"),
        "{text}"
    );
    assert!(lines.contains(&"[sim] step 1"), "{text}");
    assert_eq!(lines.last(), Some(&"[sim] exiting with code 3"), "{text}");
    assert!(lines.contains(&"WANDB_API_KEY=***"), "{text}");
    assert!(lines.contains(&"RUNCTL_REPORT_TOKEN=***"), "{text}");
    assert!(!text.contains(WANDB), "the Secret value never shows");

    // The stored tail: owned by the job, labelled, the same text.
    let cms: Api<ConfigMap> = env.api();
    let cm = cms
        .get("chatty-a1-log")
        .await
        .expect("the attempt's ConfigMap");
    let owner = &cm.metadata.owner_references.as_ref().expect("an owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("TrainingJob", "chatty")
    );
    assert_eq!(
        cm.metadata.labels.as_ref().unwrap()["runctl.dev/attempt"],
        "1"
    );
    assert!(!serde_json::to_string(&cm).unwrap().contains(WANDB));

    // Not following: the whole tail, the last lines, one attempt, a window.
    assert_eq!(logs(&env, args("chatty")).await, text);
    assert_eq!(
        logs(
            &env,
            LogsArgs {
                tail: Some(2),
                ..args("chatty")
            }
        )
        .await,
        lines[lines.len() - 2..].join("\n") + "\n"
    );
    assert_eq!(
        logs(
            &env,
            LogsArgs {
                attempt: Some(1),
                since: Some("10m".into()),
                ..args("chatty")
            }
        )
        .await,
        text
    );

    // kubectl describe shows why it failed.
    eprintln!(
        "ANN {:?}",
        cms.get("chatty-a1-log").await.unwrap().metadata.annotations
    );
    let notes = eventually(30, "the AttemptFailed event", || async {
        let n = failure_notes(&env, "chatty").await;
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert!(
        notes[0].starts_with("attempt 1 exited with code 3; its last lines:\n")
            && notes[0].ends_with("[sim] exiting with code 3"),
        "{notes:?}"
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_an_attempt_has_no_logs_yet() {
    let env = TestEnv::start(fast_sim()).await;
    let jobs: Api<TrainingJob> = env.api();
    let job: TrainingJob = serde_json::from_value(json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": "idle"},
        "spec": {"placement": {"provider": "sim", "instanceType": "sim.a100"}, "workload": {"image": "x"}}
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    assert_eq!(
        logs(&env, args("idle")).await,
        "",
        "a message on stderr, no error"
    );
    let cluster = Cluster::new(env.client.clone(), env.ns.clone());
    let (mut out, _) = Out::buffer(Timestamp::now());
    let missing = logs::run(&cluster, &args("nope"), &mut out).await;
    assert!(
        matches!(missing, Err(runctl::cli::CliError::NotFound { .. })),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lyceum_runs_output_is_pulled_and_followed() {
    let standin = LyceumStandin::start().await;
    standin.set_step(Duration::from_millis(50));
    let mut providers = ProvidersConfig::default();
    providers.lyceum.base_url = standin.url();
    let mut env = TestEnv::start_with(providers).await;
    env.default_credentials(
        runctl::crd::ProviderKind::Lyceum,
        "lyceum",
        &[("apiKey", standin.api_key())],
    )
    .await;
    env.secret("wandb", &[("apiKey", WANDB)]).await;
    let op = env
        .start_training_job_controller(test_controller_config("lyceum-logs"), test_job_config())
        .await;
    let job: TrainingJob = serde_json::from_value(json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": "pulled"},
        "spec": {
            "placement": {"provider": "lyceum", "gpuType": "a100"},
            "workload": {"image": "pytorch/pytorch:2.5", "command": ["python", "train.py"], "env": [
                {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "apiKey"}}}
            ]},
            "retryOn": []
        }
    }))
    .unwrap();
    let jobs: Api<TrainingJob> = env.api();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let followed = follow(&env, "pulled");
    let run = eventually(60, "the run to start", || async {
        standin
            .runs()
            .into_iter()
            .find(|r| r.env.contains("RUNCTL_JOB_NAME=pulled"))
    })
    .await;
    assert!(
        run.env.contains("RUNCTL_SHIP_LOGS=no"),
        "the wrapper ships nothing where runctl reads the provider's log"
    );
    eventually(60, "attempt 1 running", || async {
        let s = jobs.get("pulled").await.ok()?.status?;
        (s.phase == Some(JobPhase::Running)).then_some(())
    })
    .await;
    assert!(standin.print_run(&run.id, "epoch 1 loss 0.52"));
    assert!(standin.print_run(&run.id, &format!("logged in to wandb with {WANDB}")));
    assert!(standin.fail_run(&run.id, 2));
    let text = tokio::time::timeout(Duration::from_secs(90), followed)
        .await
        .expect("-f ends when the attempt ends")
        .expect("-f ran");
    let status = final_status(&env, "pulled").await;
    assert_eq!(
        (status.phase, status.exit_code),
        (Some(JobPhase::Failed), Some(2)),
        "{status:?}"
    );
    assert_eq!(
        text,
        "pulling image pytorch/pytorch:2.5\nstarting container\nepoch 1 loss 0.52\n\
         logged in to wandb with ***\nrun failed (return code 2)\n"
    );
    let cms: Api<ConfigMap> = env.api();
    let cm = cms
        .get("pulled-a1-log")
        .await
        .expect("the attempt's ConfigMap");
    assert_eq!(
        cm.metadata.annotations.as_ref().unwrap()["runctl.dev/log-source"],
        "lyceum"
    );
    let notes = eventually(30, "the AttemptFailed event", || async {
        let n = failure_notes(&env, "pulled").await;
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert!(
        notes[0].ends_with("run failed (return code 2)"),
        "{notes:?}"
    );
    op.stop().await;
}

/// Name → the resourceVersions written.
type Writes = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

/// Every write of the log ConfigMaps in the test's namespace, as the watch shows them (each
/// create and update once).
fn count_writes(env: &TestEnv) -> (Writes, tokio::task::JoinHandle<()>) {
    use futures::StreamExt;
    let seen: Writes = Arc::default();
    let api: Api<ConfigMap> = env.api();
    let into = seen.clone();
    let task = tokio::spawn(async move {
        let stream =
            watcher(api, watcher::Config::default().labels("runctl.dev/job")).applied_objects();
        futures::pin_mut!(stream);
        while let Some(cm) = stream.next().await {
            let Ok(cm) = cm else { continue };
            let (Some(name), Some(rv)) = (cm.metadata.name, cm.metadata.resource_version) else {
                continue;
            };
            let mut seen = into.lock().unwrap();
            let versions = seen.entry(name).or_default();
            if !versions.contains(&rv) {
                versions.push(rv);
            }
        }
    });
    (seen, task)
}

fn writes_of(seen: &Mutex<BTreeMap<String, Vec<String>>>, name: &str) -> usize {
    seen.lock().unwrap().get(name).map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_written_at_the_end_or_live_while_followed() {
    let env = TestEnv::start(reporting_sim()).await;
    let op = env
        .start_training_job_controller(test_controller_config("log-writes"), test_job_config())
        .await;
    let (writes, watch) = count_writes(&env);
    let jobs: Api<TrainingJob> = env.api();
    // "quiet" runs until it is deleted, printing a step line per heartbeat; "short" prints a few
    // and succeeds. Nobody follows either.
    for (name, env_vars) in [
        ("quiet", json!([])),
        (
            "short",
            json!([{"name": "RUNCTL_SIM_RUN_MS", "value": "1500"}]),
        ),
    ] {
        let job: TrainingJob = serde_json::from_value(json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": {
                "placement": {"provider": "sim", "instanceType": "sim.a100"},
                "workload": {"image": "train:1", "env": env_vars},
                "retryOn": []
            }
        }))
        .unwrap();
        jobs.create(&PostParams::default(), &job).await.unwrap();
    }

    // The end: written once, with the exit report (or when the attempt is released if none
    // came), complete.
    let status = final_status(&env, "short").await;
    assert_eq!(status.phase, Some(JobPhase::Succeeded), "{status:?}");
    let cms: Api<ConfigMap> = env.api();
    let cm = eventually(30, "short's output written at its end", || async {
        let cm = cms.get_opt("short-a1-log").await.ok().flatten()?;
        let ann = cm.metadata.annotations.clone()?;
        let complete = cm
            .data
            .as_ref()?
            .get("log")?
            .ends_with("[sim] exiting with code 0\n");
        (ann.get("runctl.dev/log-final").map(String::as_str) == Some("true") && complete)
            .then_some(cm)
    })
    .await;
    let text = &cm.data.as_ref().unwrap()["log"];
    assert!(
        text.starts_with("[sim] train:1 started on sim.a100\n")
            && text.contains("[sim] step 1\n")
            && text.ends_with("[sim] exiting with code 0\n"),
        "{text}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let n = writes_of(&writes, "short-a1-log");
    assert!((1..=2).contains(&n), "short's ConfigMap written {n} times");

    // Running and printing, nobody following: no write over several live intervals.
    eventually(60, "quiet running", || async {
        let s = jobs.get("quiet").await.ok()?.status?;
        (s.phase == Some(JobPhase::Running)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(writes_of(&writes, "quiet-a1-log"), 0, "{:?}", writes.lock());
    assert!(cms.get_opt("quiet-a1-log").await.unwrap().is_none());
    assert_eq!(
        logs(&env, args("quiet")).await,
        "",
        "nothing written yet (a hint on stderr)"
    );

    // Followed: what the leader kept from the start is written at once, then live.
    let cluster = Cluster::new(env.client.clone(), env.ns.clone());
    assert_eq!(
        logs::request_live(&cluster, "quiet").await,
        LiveRequest::Asked
    );
    let first = eventually(30, "quiet's output written once followed", || async {
        cms.get_opt("quiet-a1-log").await.ok().flatten()
    })
    .await;
    let text = &first.data.as_ref().unwrap()["log"];
    assert!(
        text.starts_with("[sim] train:1 started on sim.a100\n[sim] step 1\n"),
        "kept in memory from the start: {text}"
    );
    eventually(30, "live writes while followed", || async {
        (writes_of(&writes, "quiet-a1-log") >= 3).then_some(())
    })
    .await;
    let live = cms.get("quiet-a1-log").await.unwrap();
    assert!(
        live.data.as_ref().unwrap()["log"].len() > text.len(),
        "the output grows while followed"
    );
    assert_ne!(
        live.metadata
            .annotations
            .as_ref()
            .unwrap()
            .get("runctl.dev/log-final"),
        Some(&"true".to_string())
    );
    watch.abort();
    op.stop().await;
}
