//! The user commands (`runctl get|describe|logs|suspend|resume|retry|plan|cost|doctor`, also
//! `kubectl runctl ...`) against a test control plane with the real controllers running: each
//! command's whole output is compared with a snapshot in tests/snapshots/cli/ (ages, accrued
//! amounts and the test's namespace normalized, so one snapshot holds on both API servers), and
//! `plan` is shown to choose what the controller then chooses. On the real control plane the
//! built binary also answers as a kubectl plugin (`kubectl runctl get`).

mod support;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use runctl::cli::control::ControlArgs;
use runctl::cli::{self, CliError, Cluster, OperatorArgs, Out};
use runctl::config::OperatorConfig;
use runctl::crd::training_job::{JobPhase, TrainingJob};
use serde_json::json;
use support::jobs::{JobOperator, Workload, runpod_env, test_job_config, wait_job};
use support::snapshot::{assert_snapshot, normalize};
use support::{TestEnv, eventually, test_controller_config};

const MANIFEST: &str = r#"apiVersion: runctl.dev/v1alpha1
kind: TrainingJob
metadata:
  name: train
spec:
  placement:
    provider: auto
    gpu: {model: A100-80GB, count: 2}
    maxHourlyPrice: 3.5
  activeDeadlineSeconds: 7200
  maxTotalCost: 50
  workload:
    image: ghcr.io/acme/train:1
    command: [python, train.py]
"#;

fn sim_job(name: &str, extra: serde_json::Value) -> TrainingJob {
    let mut spec = json!({
        "placement": {"provider": "sim", "instanceType": "sim.a100"},
        "workload": {"image": "ghcr.io/acme/train:1"}
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    serde_json::from_value(json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

/// Runs a command into a buffer; its normalized output (and its error, if any).
async fn output<F, Fut>(env: &TestEnv, f: F) -> (String, Option<CliError>)
where
    F: FnOnce(Out) -> Fut,
    Fut: std::future::Future<Output = (Out, Result<(), CliError>)>,
{
    let (out, buf) = Out::buffer(Timestamp::now());
    let (_, result) = f(out).await;
    (normalize(&buf.text(), &env.ns), result.err())
}

/// The operator's configuration as the chart ships it: a ConfigMap in the operator's namespace
/// (here the test's), naming the providers the test bed enabled and the callback endpoint.
async fn operator_config(env: &TestEnv, op: &JobOperator) -> (OperatorConfig, OperatorArgs) {
    let mut config = OperatorConfig {
        installation_id: "test".into(),
        providers: env.providers.clone(),
        ..OperatorConfig::default()
    };
    config.jobs.callback_url = Some(op.callback_base.clone());
    config.jobs.allow_cluster_internal_callback_url = true;
    let yaml = serde_yaml::to_string(&config).unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "runctl-config"},
        "data": {cli::CONFIG_KEY: yaml}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(env.client.clone(), &env.ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let args = OperatorArgs {
        operator_namespace: env.ns.clone(),
        config_map: "runctl-config".into(),
        config: None,
    };
    (config, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_against_a_control_plane() {
    let (_standin, env) = runpod_env(true).await;
    let op = env
        .start_training_job_controller(test_controller_config("op"), test_job_config())
        .await;
    let cluster = Cluster::new(env.client.clone(), env.ns.clone());
    let (config, operator) = operator_config(&env, &op).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("train.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();

    // plan: nothing is created, and the choice is the controller's.
    let args = cli::plan::PlanArgs {
        filename: manifest.clone(),
        operator: operator.clone(),
    };
    let (text, err) = output(&env, |mut out| async {
        let r = cli::plan::run(&cluster, &args, &mut out).await;
        (out, r)
    })
    .await;
    assert!(err.is_none(), "{err:?}\n{text}");
    assert_snapshot("cli/plan", &text);
    let jobs: Api<TrainingJob> = env.api();
    assert!(
        jobs.get_opt("train").await.unwrap().is_none(),
        "plan created nothing"
    );
    let planned = cli::plan::plan(
        &cluster,
        cli::plan::parse_manifest(MANIFEST).unwrap(),
        &config,
    )
    .await
    .unwrap();
    jobs.create(
        &PostParams::default(),
        &cli::plan::parse_manifest(MANIFEST).unwrap(),
    )
    .await
    .unwrap();
    let s = wait_job(&env, "train", "placed", |s| !s.attempts.is_empty()).await;
    assert_eq!(
        s.placement.as_ref().and_then(|p| p.chosen.clone()),
        planned.placement.chosen,
        "plan chose what the controller chose"
    );
    assert_eq!(
        s.placement.as_ref().map(|p| p.remaining.clone()),
        Some(planned.placement.remaining.clone())
    );

    // The job runs, reports progress and succeeds.
    wait_job(&env, "train", "running", |s| {
        s.phase == Some(JobPhase::Running)
    })
    .await;
    let w = Workload::of(&env, "train-a1").await;
    assert_eq!(
        w.post(
            "progress",
            json!({"percent": 40, "step": 400, "message": "epoch 2"})
        )
        .await,
        200
    );
    wait_job(&env, "train", "progress", |s| s.progress.is_some()).await;

    // get, while it runs.
    let (text, err) = output(&env, |mut out| async {
        let a = cli::get::GetArgs {
            jobs: vec![],
            all_namespaces: false,
        };
        let r = cli::get::run(&cluster, &a, &mut out).await;
        (out, r)
    })
    .await;
    assert!(err.is_none(), "{err:?}");
    assert_snapshot("cli/get-running", &text);

    // The workload's output, as the wrapper ships it (written into the API at the attempt's end).
    let shipped = w
        .http
        .post(format!("{}/logs?offset=0", w.url))
        .bearer_auth(&w.token)
        .body("epoch 1 loss 0.91\nepoch 2 loss 0.47\nsaved s3://ckpt/train/2\n")
        .send()
        .await
        .expect("ship output");
    assert!(shipped.status().is_success(), "{}", shipped.status());
    assert_eq!(w.exit(0).await, 200);
    wait_job(&env, "train", "succeeded, its machine released", |s| {
        s.phase == Some(JobPhase::Succeeded)
            && s.conditions
                .iter()
                .any(|c| c.type_ == "MachinesReleased" && c.status == "True")
    })
    .await;

    // describe, once it succeeded and the last event (the job's end) is written.
    let text = eventually(30, "describe shows the job's end", || async {
        let (text, err) = output(&env, |mut out| async {
            let a = cli::describe::DescribeArgs {
                job: "tj/train".into(),
            };
            let r = cli::describe::run(&cluster, &a, &mut out).await;
            (out, r)
        })
        .await;
        assert!(err.is_none(), "{err:?}");
        text.contains("JobSucceeded").then_some(text)
    })
    .await;
    assert_snapshot("cli/describe-succeeded", &pod_ids(&text));

    // logs, once the attempt ended.
    let text = eventually(30, "the attempt's output is written", || async {
        let (text, err) = output(&env, |mut out| async {
            let a = cli::logs::LogsArgs {
                job: "train".into(),
                follow: false,
                attempt: None,
                since: None,
                tail: None,
            };
            let r = cli::logs::run(&cluster, &a, &mut out).await;
            (out, r)
        })
        .await;
        assert!(err.is_none(), "{err:?}");
        text.contains("saved").then_some(text)
    })
    .await;
    assert_snapshot("cli/logs", &text);

    // suspend and resume; a switch that does not apply is refused with the reason.
    jobs.create(
        &PostParams::default(),
        &sim_job(
            "paused",
            json!({"placement": {"provider": "sim", "instanceType": "sim.cpu"}}),
        ),
    )
    .await
    .unwrap();
    wait_job(&env, "paused", "running", |s| {
        s.phase == Some(JobPhase::Running)
    })
    .await;
    let switch = |name: &'static str, which: &'static str| {
        let cluster = cluster.clone();
        async move {
            let (mut out, buf) = Out::buffer(Timestamp::now());
            let a = ControlArgs { job: name.into() };
            let r = match which {
                "suspend" => cli::control::suspend(&cluster, &a, &mut out).await,
                "resume" => cli::control::resume(&cluster, &a, &mut out).await,
                _ => cli::control::retry(&cluster, &a, &mut out).await,
            };
            (buf.text(), r.err().map(|e| e.to_string()))
        }
    };
    let mut transcript = String::new();
    for (name, which) in [("paused", "resume"), ("paused", "suspend")] {
        let (text, err) = switch(name, which).await;
        transcript.push_str(&format!(
            "$ runctl {which} {name}\n{text}{}",
            err.map(|e| format!("runctl: {e}\n")).unwrap_or_default()
        ));
    }
    wait_job(&env, "paused", "suspended", |s| {
        s.phase == Some(JobPhase::Suspended) && s.current_cloud_resource.is_none()
    })
    .await;
    for (name, which) in [
        ("paused", "resume"),
        ("train", "retry"),
        ("train", "suspend"),
    ] {
        let (text, err) = switch(name, which).await;
        transcript.push_str(&format!(
            "$ runctl {which} {name}\n{text}{}",
            err.map(|e| format!("runctl: {e}\n")).unwrap_or_default()
        ));
    }
    assert_snapshot("cli/switches", &transcript);
    wait_job(&env, "paused", "running again", |s| {
        s.phase == Some(JobPhase::Running) && s.attempt_count == 2
    })
    .await;

    // get -A and cost over the last day: the succeeded job's spend and the paused one's.
    let (text, err) = output(&env, |mut out| async {
        let a = cli::cost::CostArgs {
            all_namespaces: false,
            since: cli::cost::parse_period("1d").unwrap(),
        };
        let r = cli::cost::run(&cluster, &a, &mut out).await;
        (out, r)
    })
    .await;
    assert!(err.is_none(), "{err:?}");
    let text = match text.split_once(" (since ") {
        Some((head, tail)) => format!(
            "{head} (since <time>){}",
            &tail[tail.find(')').unwrap() + 1..]
        ),
        None => text,
    };
    assert_snapshot("cli/cost", &text);

    // doctor: a fresh leader Lease stands for a running operator.
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "runctl-leader"},
        "spec": {"holderIdentity": "runctl-0", "leaseDurationSeconds": 15,
                 "renewTime": Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}
    }))
    .unwrap();
    Api::<Lease>::namespaced(env.client.clone(), &env.ns)
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();
    let (text, err) = output(&env, |mut out| async {
        let a = cli::doctor::DoctorArgs {
            operator: operator.clone(),
        };
        let r = cli::doctor::run(&cluster, &a, &mut out).await;
        (out, r)
    })
    .await;
    assert!(err.is_none(), "{err:?}\n{text}");
    let text = text.replace(&op.callback_base, "<callback>");
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("API server") {
                "API server  ok  Kubernetes <version>".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_snapshot("cli/doctor", &(text + "\n"));

    // doctor, sharded: each shard's Lease and callback URL (`{shard}` filled in); shard 1 has
    // never led here.
    let mut sharded = config.clone();
    sharded.sharding.shards = 2;
    sharded.jobs.callback_url = Some(format!("{}/shard-{{shard}}", op.callback_base));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_yaml::to_string(&sharded).unwrap()).unwrap();
    let mut shard0 = lease.clone();
    shard0.metadata.name = Some("runctl-leader-shard-0".into());
    shard0.metadata.resource_version = None;
    Api::<Lease>::namespaced(env.client.clone(), &env.ns)
        .create(&PostParams::default(), &shard0)
        .await
        .unwrap();
    let (text, err) = output(&env, |mut out| async {
        let a = cli::doctor::DoctorArgs {
            operator: OperatorArgs {
                config: Some(file.path().to_owned()),
                ..operator.clone()
            },
        };
        let r = cli::doctor::run(&cluster, &a, &mut out).await;
        (out, r)
    })
    .await;
    assert!(err.is_some(), "shard 1 has no leader\n{text}");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in\n{text}"))
            .to_string()
    };
    assert!(
        line("operator (shard 0)").contains("runctl-0 leads"),
        "{text}"
    );
    assert!(
        line("operator (shard 1)").contains("no Lease") && text.contains("runctl-leader-shard-1"),
        "{text}"
    );
    for s in ["0", "1"] {
        let cb = line(&format!("callback URL (shard {s})"));
        assert!(cb.contains(&format!("/shard-{s} ")), "{cb}");
    }

    if env.is_real() {
        plugin_get(&env);
    }

    // retry: a failed job runs again, its failure kept in the record.
    jobs.create(
        &PostParams::default(),
        &sim_job(
            "flaky",
            json!({"backoffLimit": 0, "placement": {"provider": "sim", "instanceType": "sim.cpu"}}),
        ),
    )
    .await
    .unwrap();
    wait_job(&env, "flaky", "running", |s| {
        s.phase == Some(JobPhase::Running)
    })
    .await;
    assert_eq!(Workload::of(&env, "flaky-a1").await.exit(1).await, 200);
    wait_job(&env, "flaky", "failed", |s| {
        s.phase == Some(JobPhase::Failed)
    })
    .await;
    let (text, err) = switch("flaky", "retry").await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        text,
        "trainingjob.runctl.dev/flaky retry requested (a new attempt starts now)\n"
    );
    let s = wait_job(&env, "flaky", "attempt 2 running", |s| {
        s.phase == Some(JobPhase::Running) && s.attempt_count == 2
    })
    .await;
    assert_eq!(s.attempts[0].exit_code, Some(1));
    assert_eq!(s.failures.failure, 1, "the failure stays counted");
    op.stop().await;
}

/// The text with the RunPod stand-in's pod ids (`rp` and 12 hex digits) replaced by `<pod>`.
fn pod_ids(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            let hex = w
                .strip_prefix("rp")
                .filter(|h| h.len() == 12 && h.chars().all(|c| c.is_ascii_hexdigit()));
            if hex.is_some() { "<pod>" } else { w }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `kubectl runctl get`: kubectl finds the binary as `kubectl-runctl` on PATH.
fn plugin_get(env: &TestEnv) {
    let plane = env.plane.expect("real control plane");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_runctl"),
        dir.path().join("kubectl-runctl"),
    )
    .unwrap();
    let kubectl = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/kubectl");
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new(kubectl)
        .args(["runctl", "get", "-n", &env.ns])
        .env("KUBECONFIG", plane.kubeconfig())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .output()
        .expect("run kubectl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl runctl get failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_snapshot("cli/plugin-get", &normalize(&stdout, &env.ns));
}

/// The snapshot filter keeps prices and replaces what a run cannot repeat.
#[test]
fn normalizing_keeps_prices_and_replaces_ages_and_amounts() {
    assert_eq!(
        normalize(
            "a    5s  $1.20/h  $3.40  2h5m (x3)\n  in ns-1, <$0.01;",
            "ns-1"
        ),
        "a  <age>  $1.20/h  $<n>  <age> (x3)\n  in <ns>, $<n>;\n"
    );
}

/// The krew scripts: the built binary packed as an archive, and a manifest whose fields are what
/// krew validates (name, `v` version, per-platform selector, URI, sha256 of the archive, `bin`).
#[test]
fn the_krew_manifest_names_the_archives_with_their_sums() {
    use sha2::Digest;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let run = |script: &str, args: &[&str]| {
        let out = std::process::Command::new("bash")
            .arg(root.join("plugins/krew").join(script))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let out_dir = dir.path().to_str().unwrap();
    let archive = run(
        "package.sh",
        &[env!("CARGO_BIN_EXE_runctl"), "linux", "amd64", out_dir],
    );
    let archive = archive.trim();
    let yaml = run(
        "manifest.sh",
        &["v0.1.0", "https://example.com/releases/v0.1.0/", archive],
    );
    let m: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(m["kind"], "Plugin");
    assert_eq!(m["metadata"]["name"], "runctl");
    assert_eq!(m["spec"]["version"], "v0.1.0");
    let platforms = m["spec"]["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 1);
    let p = &platforms[0];
    assert_eq!(
        p["selector"]["matchLabels"],
        json!({"os": "linux", "arch": "amd64"})
    );
    assert_eq!(
        p["uri"],
        "https://example.com/releases/v0.1.0/runctl-linux-amd64.tar.gz"
    );
    let sum = hex::encode(sha2::Sha256::digest(std::fs::read(archive).unwrap()));
    assert_eq!(p["sha256"], sum.as_str());
    assert_eq!(p["bin"], "runctl");
    assert_eq!(p["files"], json!([{"from": "runctl", "to": "."}]));
    // A misnamed archive is refused.
    let bad = std::process::Command::new("bash")
        .arg(root.join("plugins/krew/manifest.sh"))
        .args(["v0.1.0", "https://x", "/tmp/other.tar.gz"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
