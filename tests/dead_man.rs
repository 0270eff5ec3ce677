//! Issue 17, item 8: every provider's dead-man path. With no operator left (nothing calls the
//! provider after the create), the machine ends by itself within its bound.
//!
//! - RunPod, the whole chain: a TrainingJob's pod reports to a running operator, the operator
//!   stops, and the pod deletes itself once its heartbeats go unacknowledged.
//! - RunPod: the stand-in runs each pod's container on this machine (`run_containers`), so
//!   runctl's wrapper really runs on the pod, with `RUNPOD_POD_ID` and a pod-scoped
//!   `RUNPOD_API_KEY` as RunPod sets them. The pod deletes itself at its lifetime deadline, when
//!   heartbeats stop being acknowledged, and after its workload; a pod whose key may not delete
//!   it stays `EXITED` and says why, in its log and in runctl's machine message.
//! - Lyceum: a run ends at the `timeout` runctl always sends (from `maxLifetimeSeconds`); a VM,
//!   which nothing on Lyceum's side can end, is refused without `maxLifetimeSeconds`.
//! - AWS powers off by itself (instance-initiated shutdown terminates); its tests are in
//!   `tests/provider_aws.rs` and `src/provider/aws/userdata.rs`.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runctl::crd::cloud_resource::LyceumOptions;
use runctl::provider::lyceum::{LyceumConfig, LyceumProvider};
use runctl::provider::registry::{BuildContext, Credentials};
use runctl::provider::runpod::{RunPodConfig, RunPodProvider, build_provider};
use runctl::provider::sim::{SimCloud, SimConfig};
use runctl::provider::workload::Reporting;
use runctl::provider::{
    MachineSpec, Provider, ProvidersConfig, ResourceKey, ResourceState, Workload, reasons,
};
use runctl_standins::lyceum::LyceumStandin;
use runctl_standins::runpod::{Op, Phase, PodKeys, RunPodStandin};

fn key(name: &str) -> ResourceKey {
    ResourceKey {
        installation: "deadman".into(),
        namespace: "ml".into(),
        name: name.into(),
        uid: format!("{name}-0000-1111-2222-333344445555"),
        attempt: 1,
    }
}

/// Waits up to `secs` for `check` to give a value.
async fn within<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < end, "not within {secs} s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn runpod(standin: &RunPodStandin) -> RunPodProvider {
    let config = ProvidersConfig {
        runpod: RunPodConfig {
            base_url: standin.url(),
            request_timeout_millis: Some(2_000),
            retry_base_millis: 10,
            list_cache_millis: 0,
            ..RunPodConfig::default()
        },
        ..ProvidersConfig::default()
    };
    let sim = Arc::new(SimCloud::new(SimConfig::default()));
    let creds = Credentials::new(BTreeMap::from([("apiKey".to_string(), standin.api_key())]));
    build_provider(&BuildContext {
        installation: "deadman",
        region: None,
        credentials: Some(&creds),
        config: &config,
        sim: &sim,
        client: None,
    })
    .expect("provider")
}

/// A RunPod spec running `command` (under `/bin/sh -c`), with an env value that must never leak.
fn pod_spec(command: &str) -> MachineSpec {
    MachineSpec {
        gpu_type: Some("NVIDIA L40S".into()),
        gpu_count: 1,
        workload: Some(Workload {
            image: "ghcr.io/acme/train:1".into(),
            command: vec!["sh".into(), "-c".into(), command.into()],
            args: vec![],
            env: BTreeMap::from([("HF_TOKEN".into(), "hf_SECRET_VALUE".into())]),
            reporting: None,
        }),
        ..MachineSpec::default()
    }
}

/// Reporting to a callback URL where nobody answers any more (the operator is gone).
async fn reporting_to_nobody(self_terminate_after: u32) -> Reporting {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    Reporting {
        callback_url: format!("http://{addr}/callback/ml/job/1"),
        token: "report-token".into(),
        heartbeat_interval_seconds: 1,
        self_terminate_after_seconds: self_terminate_after,
        report_grace_seconds: 2,
    }
}

/// Creates the pod of `spec`, then waits (calling nothing of runctl's any more) until the pod
/// deleted itself with its own pod-scoped key; returns its id, its container log and how long
/// that took.
async fn until_the_pod_deletes_itself(
    standin: &RunPodStandin,
    name: &str,
    spec: &MachineSpec,
    bound_secs: u64,
) -> (String, String, Duration) {
    let provider = runpod(standin);
    let started = Instant::now();
    let m = provider.create(&key(name), spec).await.expect("create");
    drop(provider); // no operator from here on
    let id = m.id.clone();
    within(bound_secs, "the pod deletes itself", || {
        standin.deleted_by_itself(&id).then_some(())
    })
    .await;
    let took = started.elapsed();
    let log = standin.container_log(&id);
    assert!(standin.pod(&id).is_none(), "the pod is gone");
    assert!(
        !log.contains("hf_SECRET_VALUE") && !log.contains("rpa_"),
        "no secret in the pod's log: {log}"
    );
    (id, log, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runpod_pod_deletes_itself_at_its_lifetime_deadline() {
    let standin = RunPodStandin::start().await;
    standin.run_containers(None);
    let mut spec = pod_spec("sleep 600");
    spec.max_lifetime_seconds = Some(3);
    let (_, log, took) = until_the_pod_deletes_itself(&standin, "deadline", &spec, 30).await;
    assert!(
        took >= Duration::from_secs(2),
        "not before the deadline: {took:?}"
    );
    assert!(log.contains("lifetime deadline has passed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runpod_pod_deletes_itself_when_the_operator_stops_answering() {
    let standin = RunPodStandin::start().await;
    standin.run_containers(None);
    let mut spec = pod_spec("sleep 600");
    if let Some(w) = spec.workload.as_mut() {
        w.reporting = Some(reporting_to_nobody(3).await);
    }
    let (_, log, _) = until_the_pod_deletes_itself(&standin, "orphaned", &spec, 30).await;
    assert!(log.contains("no heartbeat acknowledged for 3 s"), "{log}");
    assert!(!log.contains("report-token"), "{log}");
}

/// The workload ends (its exit report cannot be delivered: the operator is gone) and the pod,
/// instead of staying `EXITED` with its disk billing, deletes itself. An operator that saw the
/// pod before reads it as Terminated, not Disappeared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runpod_pod_deletes_itself_after_its_workload() {
    let standin = RunPodStandin::start().await;
    standin.run_containers(None);
    let provider = runpod(&standin);
    let mut spec = pod_spec("sleep 1; exit 0");
    if let Some(w) = spec.workload.as_mut() {
        w.reporting = Some(reporting_to_nobody(600).await);
    }
    let k = key("finished");
    let m = provider.create(&k, &spec).await.expect("create");
    provider.observe(&k, Some(&m.id)).await.expect("observe");
    within(30, "the pod deletes itself", || {
        standin.deleted_by_itself(&m.id).then_some(())
    })
    .await;
    let seen = provider
        .observe(&k, Some(&m.id))
        .await
        .expect("observe")
        .expect("a machine");
    assert_eq!(
        (seen.state, seen.reason),
        (ResourceState::Terminated, reasons::TERMINATED)
    );
    assert!(
        seen.message
            .as_deref()
            .is_some_and(|m| m.contains("runctl's wrapper deletes its own pod")),
        "{seen:?}"
    );
    assert_eq!(
        standin.calls(Op::Delete),
        1,
        "only the pod's own DELETE: runctl sent none"
    );
}

/// The guess that RunPod's pod-scoped key may delete its pod over REST v2 fails loudly when it
/// is wrong: the pod stays `EXITED` (GPU billing stopped, the disk still bills), its log says why,
/// and runctl's machine message says the pod did not delete itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_key_may_not_delete_it_stays_exited_and_says_so() {
    let standin = RunPodStandin::start().await;
    standin.set_pod_keys(PodKeys::ReadOnly);
    standin.run_containers(None);
    let provider = runpod(&standin);
    let mut spec = pod_spec("exit 0");
    spec.max_lifetime_seconds = Some(600);
    let k = key("refused");
    let m = provider.create(&k, &spec).await.expect("create");
    let log = within(60, "the wrapper gives up", || {
        let log = standin.container_log(&m.id);
        log.contains("could not delete pod").then_some(log)
    })
    .await;
    assert!(log.contains("answered HTTP 403"), "{log}");
    within(10, "the pod reads EXITED", || {
        standin
            .pod(&m.id)
            .is_some_and(|p| p.phase == Phase::Exited)
            .then_some(())
    })
    .await;
    let seen = provider
        .observe(&k, Some(&m.id))
        .await
        .expect("observe")
        .expect("machine");
    assert_eq!(seen.state, ResourceState::Stopped);
    assert!(
        seen.message
            .as_deref()
            .is_some_and(|m| m.contains("EXITED") && m.contains("deletes its own pod")),
        "{seen:?}"
    );
    assert_eq!(standin.pod(&m.id).map(|p| p.cost()), Some(0.0));
}

/// The tool `name` of this machine, to link into an image: `python3` is the real interpreter (on
/// a pyenv machine `python3` on `PATH` is a shim needing more than the image has).
fn host_tool(name: &str) -> PathBuf {
    if name == "python3" {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 on this machine");
        let exe = String::from_utf8(out.stdout).expect("utf-8");
        return std::fs::canonicalize(exe.trim()).expect("the real python3");
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{name} on this machine's PATH"))
}

/// An image with `sh`, `date`, `sleep` and the HTTP `client`, if any: a directory used as the
/// containers' whole `PATH`.
fn image(client: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for tool in ["sh", "date", "sleep"].into_iter().chain(client) {
        std::os::unix::fs::symlink(host_tool(tool), dir.path().join(tool)).expect("link");
    }
    dir
}

/// Each HTTP client the wrapper may find in an image deletes the pod: curl, GNU wget
/// (`--method=DELETE`) and python3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_client_deletes_the_pod() {
    let tasks: Vec<_> = ["curl", "wget", "python3"]
        .into_iter()
        .map(|client| {
            tokio::spawn(async move {
                let img = image(Some(client));
                let standin = RunPodStandin::start().await;
                standin.run_containers(Some(img.path().display().to_string()));
                let mut spec = pod_spec("sleep 600");
                spec.max_lifetime_seconds = Some(2);
                let (_, log, _) = until_the_pod_deletes_itself(&standin, client, &spec, 40).await;
                // The "deleted pod" line may be cut off: RunPod stops the container once the
                // DELETE is accepted, as the stand-in does.
                assert!(!log.contains("could not delete"), "{client}: {log}");
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client case");
    }
}

/// An image without any HTTP client cannot delete its pod, but the deadline still stops the
/// workload: the pod goes `EXITED` and its GPU stops billing, and the log says why the pod stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_http_client_the_deadline_still_stops_the_gpu() {
    let img = image(None);
    let standin = RunPodStandin::start().await;
    standin.run_containers(Some(img.path().display().to_string()));
    let provider = runpod(&standin);
    let mut spec = pod_spec("sleep 600");
    spec.max_lifetime_seconds = Some(2);
    let m = provider
        .create(&key("no-client"), &spec)
        .await
        .expect("create");
    drop(provider);
    within(40, "the pod reads EXITED", || {
        standin
            .pod(&m.id)
            .is_some_and(|p| p.phase == Phase::Exited)
            .then_some(())
    })
    .await;
    let pod = standin.pod(&m.id).expect("pod");
    assert_eq!((pod.cost(), pod.exit_code), (0.0, Some(124)));
    let log = within(10, "the log", || {
        let log = standin.container_log(&m.id);
        log.contains("could not delete").then_some(log)
    })
    .await;
    assert!(log.contains("no curl, wget or python3"), "{log}");
}

fn lyceum(standin: &LyceumStandin, require_vm_max_lifetime: bool) -> LyceumProvider {
    let config = LyceumConfig {
        base_url: standin.url(),
        request_timeout_seconds: 5,
        request_attempts: 2,
        retry_backoff_ms: 10,
        require_vm_max_lifetime,
        ..LyceumConfig::default()
    };
    LyceumProvider::new(&config, "deadman", standin.api_key()).expect("provider")
}

/// A Lyceum run ends at the `timeout` runctl sent from `maxLifetimeSeconds`, with nobody calling
/// Lyceum after the create, and bills no longer than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lyceum_run_ends_at_its_timeout_without_an_operator() {
    let standin = LyceumStandin::start().await;
    let provider = lyceum(&standin, true);
    let spec = MachineSpec {
        gpu_type: Some("a100".into()),
        gpu_count: 1,
        max_lifetime_seconds: Some(2),
        workload: Some(Workload {
            image: "ghcr.io/acme/train:1".into(),
            command: vec!["python".into(), "train.py".into()],
            ..Workload::default()
        }),
        ..MachineSpec::default()
    };
    let m = provider.create(&key("run"), &spec).await.expect("create");
    drop(provider);
    let run = within(10, "the run ends", || {
        standin
            .runs()
            .into_iter()
            .find(|r| m.id.ends_with(&r.id))
            .filter(|r| !r.is_live())
    })
    .await;
    assert_eq!(run.timeout_seconds, 2);
    assert_eq!(run.status, "timeout");
    // Billed up to the timeout only, however long after it is read.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let provider = lyceum(&standin, true);
    let seen = provider
        .observe(&key("run"), Some(&m.id))
        .await
        .expect("observe")
        .expect("machine");
    assert_eq!(
        (seen.state, seen.reason),
        (ResourceState::Error, reasons::TIMED_OUT)
    );
    let ceiling = 1.89 * 2.0 / 3600.0 + 1e-6;
    assert!(
        seen.billed.is_some_and(|b| b > 0.0 && b <= ceiling),
        "billed {:?} <= {ceiling}",
        seen.billed
    );
}

/// Nothing on Lyceum's side ends a VM (no stop, no timeout, no start-up script), so a VM
/// without `maxLifetimeSeconds` is refused before any call unless the operator allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lyceum_vm_without_a_lifetime_is_refused_before_any_call() {
    let standin = LyceumStandin::start().await;
    let mut spec = MachineSpec {
        gpu_type: Some("h100".into()),
        gpu_count: 1,
        lyceum: LyceumOptions {
            user_public_key: Some("ssh-ed25519 AAAAC3 test".into()),
            ..LyceumOptions::default()
        },
        ..MachineSpec::default()
    };
    let e = lyceum(&standin, true)
        .create(&key("vm"), &spec)
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), "InvalidSpec");
    assert!(e.message().contains("maxLifetimeSeconds"), "{e}");
    assert_eq!(
        standin.calls("POST /vms/create") + standin.calls("GET /vms/list"),
        0,
        "refused before calling Lyceum"
    );
    spec.max_lifetime_seconds = Some(3_600);
    let m = lyceum(&standin, true)
        .create(&key("vm"), &spec)
        .await
        .expect("a VM with a lifetime");
    assert!(m.id.starts_with("vm:"));
    spec.max_lifetime_seconds = None;
    lyceum(&standin, false)
        .create(&key("vm-unbounded"), &spec)
        .await
        .expect("allowed by the operator");
    assert_eq!(standin.vms().len(), 2);
}

/// The whole chain: a TrainingJob on RunPod, its pod running runctl's wrapper (the stand-in runs
/// the container) with the deadline from `activeDeadlineSeconds`, its heartbeats acknowledged by
/// the operator's callback endpoint. Then the operator stops: no heartbeat is acknowledged any
/// more, and the pod deletes itself after `selfTerminateAfterSeconds`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_jobs_pod_deletes_itself_once_the_operator_is_gone() {
    use kube::api::PostParams;
    use runctl::callback::AttemptId;
    use runctl::crd::ProviderKind;
    use runctl::crd::training_job::TrainingJob;
    use support::jobs::test_job_config;
    use support::{TestEnv, eventually, test_controller_config};

    let standin = RunPodStandin::start().await;
    standin.run_containers(None);
    let mut providers = ProvidersConfig::default();
    providers.runpod.base_url = standin.url();
    providers.runpod.list_cache_millis = 100;
    let mut env = TestEnv::start_with(providers).await;
    env.default_credentials(
        ProviderKind::Runpod,
        "runpod",
        &[("apiKey", &standin.api_key())],
    )
    .await;
    let mut jobs_config = test_job_config();
    jobs_config.reporting.heartbeat_interval_seconds = 1;
    jobs_config.reporting.self_terminate_after_seconds = 4;
    let op = env
        .start_training_job_controller(test_controller_config("deadman"), jobs_config)
        .await;
    let job: TrainingJob = serde_json::from_value(serde_json::json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": "orphaned"},
        "spec": {
            "placement": {"provider": "runpod", "gpuType": "NVIDIA L40S"},
            "workload": {"image": "pytorch/pytorch:2.5", "command": ["sleep", "600"]},
            "activeDeadlineSeconds": 3600,
            "retryOn": []
        }
    }))
    .expect("job");
    env.api::<TrainingJob>()
        .create(&PostParams::default(), &job)
        .await
        .expect("create job");
    let pod = eventually(60, "the pod to run", || async {
        standin.pods().into_iter().find(|p| {
            p.env.get("RUNCTL_JOB_NAME").map(String::as_str) == Some("orphaned") && p.is_live()
        })
    })
    .await;
    let deadline: i64 = pod.env["RUNCTL_DEADLINE"].parse().expect("a deadline");
    let expected = jiff::Timestamp::now().as_second() + 3600 + 300;
    assert!(
        (expected - 60..=expected).contains(&deadline),
        "deadline {deadline} ~ now + activeDeadlineSeconds + 300 s"
    );
    assert_eq!(pod.env["RUNCTL_RUNPOD_API_URL"], standin.url());
    let attempt = AttemptId {
        namespace: env.ns.clone(),
        job: "orphaned".into(),
        attempt: 1,
    };
    eventually(60, "a heartbeat the operator acknowledged", || async {
        op.reports.get(&attempt)?.last_heartbeat.map(|_| ())
    })
    .await;
    op.stop().await;
    let stopped = Instant::now();
    within(60, "the pod deletes itself", || {
        standin.deleted_by_itself(&pod.id).then_some(())
    })
    .await;
    assert!(
        stopped.elapsed() >= Duration::from_secs(2),
        "not before heartbeats went unacknowledged: {:?}",
        stopped.elapsed()
    );
    assert!(
        standin
            .container_log(&pod.id)
            .contains("no heartbeat acknowledged for 4 s"),
        "{}",
        standin.container_log(&pod.id)
    );
    assert!(standin.pods().is_empty(), "nothing left billing");
}
