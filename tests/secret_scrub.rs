//! Secrets never leak: end-to-end runs (sim and the RunPod stand-in, happy paths, failing
//! credentials, provider faults, and seeded fault-harness runs) execute while every log line is
//! captured at debug level; afterwards every log line, event, object (status included),
//! ConfigMap (creation records, reaper status) and metric is searched for each secret value used.

mod fault;
mod support;

use std::io::Write;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use parking_lot::Mutex;
use runctl::crd::CloudResource;
use runctl::crd::cloud_resource::ResourceState;
use runctl::provider::ProvidersConfig;
use runctl_standins::runpod::{self as rp, RunPodStandin};
use support::builders::CloudResourceBuilder;
use support::{TestEnv, eventually, fast_sim, test_controller_config};

const WANDB: &str = "wandb-SECRET-7f3a9c1e55d2";
const HF: &str = "hf_SECRETTOKEN0123456789abcdef";
const WRONG_KEY: &str = "rpa_WRONGKEY_SECRET_99999999999999";

/// Log output of the whole test binary.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Capture {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per test binary");
    capture
}

/// Everything the cluster holds that a user or another tool can read (Secrets excepted).
async fn cluster_text(env: &TestEnv) -> String {
    let mut out = String::new();
    let crs: Api<CloudResource> = Api::all(env.client.clone());
    out += &serde_json::to_string(&crs.list(&Default::default()).await.unwrap()).unwrap();
    let ev: Api<k8s_openapi::api::events::v1::Event> = Api::all(env.client.clone());
    out += &serde_json::to_string(&ev.list(&Default::default()).await.unwrap()).unwrap();
    let core_ev: Api<k8s_openapi::api::core::v1::Event> = Api::all(env.client.clone());
    out += &serde_json::to_string(&core_ev.list(&Default::default()).await.unwrap()).unwrap();
    let cms: Api<ConfigMap> = Api::all(env.client.clone());
    out += &serde_json::to_string(&cms.list(&Default::default()).await.unwrap()).unwrap();
    out
}

fn cr(value: serde_json::Value) -> CloudResource {
    serde_json::from_value(value).expect("valid CloudResource")
}

async fn wait_state(api: &Api<CloudResource>, name: &str, want: impl Fn(&CloudResource) -> bool) {
    eventually(30, name, || async {
        let o = api.get_opt(name).await.ok().flatten()?;
        want(&o).then_some(())
    })
    .await;
}

async fn sim_run() -> String {
    let env = TestEnv::start(fast_sim()).await;
    env.secret("wandb", &[("key", WANDB)]).await;
    let op = env.start_controller(test_controller_config("scrub-sim"));
    let api: Api<CloudResource> = Api::namespaced(env.client.clone(), &env.ns);
    api.create(
        &PostParams::default(),
        &CloudResourceBuilder::sim("with-secret")
            .env_from_secret("WANDB_API_KEY", "wandb", "key")
            .build(),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &CloudResourceBuilder::sim("missing-key")
            .env_from_secret("WANDB_API_KEY", "wandb", "nope")
            .build(),
    )
    .await
    .unwrap();
    wait_state(&api, "with-secret", |o| {
        o.status.as_ref().and_then(|s| s.state) == Some(ResourceState::Running)
    })
    .await;
    wait_state(&api, "missing-key", |o| {
        o.status.as_ref().is_some_and(|s| !s.conditions.is_empty())
    })
    .await;
    let id = api
        .get("with-secret")
        .await
        .unwrap()
        .status
        .unwrap()
        .provider_id
        .unwrap();
    let workload = env.sim.workload(&id).expect("the machine got its workload");
    assert_eq!(
        workload.env.get("WANDB_API_KEY").map(String::as_str),
        Some(WANDB),
        "the value reached the machine"
    );
    let mut text = cluster_text(&env).await;
    text += &op.ctx.metrics.encode();
    for n in ["with-secret", "missing-key"] {
        api.delete(n, &DeleteParams::default()).await.unwrap();
    }
    eventually(30, "objects gone", || async {
        api.list(&Default::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    op.stop().await;
    text
}

async fn runpod_run() -> String {
    let standin = RunPodStandin::start().await;
    let mut providers = ProvidersConfig::default();
    providers.runpod.base_url = standin.url();
    providers.runpod.list_cache_millis = 100;
    providers.runpod.retry_base_millis = 10;
    providers.runpod.request_timeout_millis = Some(500);
    let env = TestEnv::start_with(providers).await;
    env.secret("runpod", &[("apiKey", &standin.api_key())])
        .await;
    env.secret("bad-runpod", &[("apiKey", WRONG_KEY)]).await;
    env.secret("hf", &[("token", HF)]).await;
    standin.push_fault(rp::Op::Create, rp::Fault::DropAfterCreate);
    standin.push_fault(rp::Op::List, rp::Fault::Status(500));
    let op = env.start_controller(test_controller_config("scrub-runpod"));
    let api: Api<CloudResource> = Api::namespaced(env.client.clone(), &env.ns);
    let manifest = |name: &str, secret: &str| {
        cr(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource", "metadata": {"name": name},
            "spec": {"provider": "runpod", "gpuType": "NVIDIA L40S", "credentialsSecretRef": {"name": secret},
                     "workload": {"image": "ghcr.io/acme/train:1",
                                  "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]}}
        }))
    };
    api.create(&PostParams::default(), &manifest("good", "runpod"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &manifest("bad-key", "bad-runpod"))
        .await
        .unwrap();
    wait_state(&api, "good", |o| {
        o.status.as_ref().and_then(|s| s.state) == Some(ResourceState::Running)
    })
    .await;
    wait_state(&api, "bad-key", |o| {
        o.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("AuthenticationFailed")
            || o.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.reason == "AuthenticationFailed")
            })
    })
    .await;
    assert_eq!(
        standin.live_pods_with_env("HF_TOKEN", HF),
        1,
        "the token reached the pod"
    );
    let mut text = cluster_text(&env).await;
    text += &op.ctx.metrics.encode();
    for n in ["good", "bad-key"] {
        api.delete(n, &DeleteParams::default()).await.unwrap();
    }
    // With rejected credentials runctl cannot prove that no machine exists, so the object keeps
    // its finalizer until the credentials are fixed.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.client.clone(), &env.ns);
    let fix = serde_json::json!({"stringData": {"apiKey": standin.api_key()}});
    secrets
        .patch(
            "bad-runpod",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&fix),
        )
        .await
        .unwrap();
    eventually(30, "objects gone", || async {
        api.list(&Default::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    op.stop().await;
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_appears_in_logs_events_status_or_metrics() {
    let logs = capture_logs();
    let mut seen = sim_run().await;
    seen += &runpod_run().await;
    // Seeded fault-harness runs against the RunPod stand-in: its API key is a secret too.
    let summary = fault::run_many(fault::backend::BackendKind::RunPod, 77..80, 3).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    let log_text = String::from_utf8_lossy(&logs.0.lock()).into_owned();
    assert!(
        log_text.lines().count() > 100,
        "logs were captured ({} lines)",
        log_text.lines().count()
    );
    for secret in [WANDB, HF, WRONG_KEY, rp::DEFAULT_API_KEY] {
        let in_logs: Vec<&str> = log_text
            .lines()
            .filter(|l| l.contains(secret))
            .take(3)
            .collect();
        assert!(in_logs.is_empty(), "secret value in logs: {in_logs:?}");
        assert!(
            !seen.contains(secret),
            "secret value {secret:.6}… in events, status, ConfigMaps or metrics"
        );
    }
}
