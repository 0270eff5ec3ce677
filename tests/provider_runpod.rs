//! The RunPod provider against the REST v2 stand-in: the provider conformance suite, then the
//! quirks of RunPod's API one by one.

// The shared suite trips two style lints that are not this file's to fix.
#[allow(clippy::overly_complex_bool_expr, clippy::collapsible_if)]
#[path = "conformance/mod.rs"]
mod conformance;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use conformance::{Drive, Fault, Harness};
use runctl::crd::cloud_resource::{RunPodCloud, RunPodOptions};
use runctl::provider::registry::{BuildContext, Credentials, ProviderKey};
use runctl::provider::runpod::{RunPodConfig, RunPodProvider, build_provider};
use runctl::provider::sim::{SimCloud, SimConfig};
use runctl::provider::{
    ErrorClass, Machine, MachineSpec, Provider, ProviderKind, ProviderRegistry, ProvidersConfig,
    ResourceKey, ResourceState, Termination, Workload, reasons,
};
use runctl_standins::runpod::{self as rp, Op, Phase, Progression, RateLimits, RunPodStandin};
use serde_json::json;

const SECRET_ENV: &str = "hf_VERYSECRETTOKEN";

fn config(standin: &RunPodStandin) -> RunPodConfig {
    RunPodConfig {
        base_url: standin.url(),
        // Generous: the machine is shared; tests of lost answers shorten it themselves.
        request_timeout_millis: Some(2_000),
        retry_base_millis: 10,
        max_rate_limit_wait_millis: 1_500,
        list_cache_millis: 200,
        ..RunPodConfig::default()
    }
}

fn provider_with(installation: &str, runpod: RunPodConfig, key: &str) -> RunPodProvider {
    let config = ProvidersConfig {
        runpod,
        ..ProvidersConfig::default()
    };
    let sim = Arc::new(SimCloud::new(SimConfig::default()));
    let creds = Credentials::new(BTreeMap::from([("apiKey".to_string(), key.to_string())]));
    let ctx = BuildContext {
        installation,
        region: None,
        credentials: Some(&creds),
        config: &config,
        sim: &sim,
        client: None,
    };
    build_provider(&ctx).expect("provider builds")
}

fn provider(standin: &RunPodStandin) -> RunPodProvider {
    provider_with("conformance", config(standin), &standin.api_key())
}

fn spec() -> MachineSpec {
    MachineSpec {
        gpu_type: Some("NVIDIA L40S".into()),
        gpu_count: 1,
        workload: Some(Workload {
            image: "ghcr.io/acme/train:1".into(),
            command: vec!["python".into()],
            args: vec!["train.py".into()],
            env: BTreeMap::from([("HF_TOKEN".into(), SECRET_ENV.into())]),
            reporting: None,
        }),
        ..MachineSpec::default()
    }
}

struct RunPodHarness {
    standin: RunPodStandin,
    provider: Arc<RunPodProvider>,
}

#[async_trait]
impl Harness for RunPodHarness {
    fn provider(&self) -> Arc<dyn Provider> {
        self.provider.clone()
    }

    fn spec(&self) -> MachineSpec {
        spec()
    }

    async fn live_machines(&self, uid: &str) -> usize {
        self.standin.live_pods_with_env("RUNCTL_OWNER", uid)
    }

    async fn inject(&self, fault: Fault) -> bool {
        let f = match fault {
            Fault::Capacity => rp::Fault::Capacity,
            Fault::RateLimit => rp::Fault::RateLimited {
                retry_after_secs: 1,
            },
            Fault::ServerError => rp::Fault::Status(500),
            Fault::Unauthorized => rp::Fault::Unauthorized,
            Fault::LoseCreateResponse => rp::Fault::DropAfterCreate,
        };
        self.standin.push_fault(Op::Create, f);
        true
    }

    async fn drive(&self, id: &str, event: Drive) -> bool {
        match event {
            Drive::Running => self.standin.set_phase(id, Phase::Running),
            Drive::Stopped => self.standin.set_phase(id, Phase::Exited),
            Drive::Interrupted => false,
            Drive::ExitSuccess => self.standin.exit_container(id, 0),
            Drive::ExitFailure(code) => self.standin.exit_container(id, code),
            Drive::ProviderFailure => self.standin.set_phase(id, Phase::Error),
            Drive::Vanish => self.standin.vanish(id),
        }
    }

    fn expected(&self, event: Drive) -> Option<(ResourceState, &'static str)> {
        match event {
            Drive::Running => Some((ResourceState::Running, reasons::RUNNING)),
            // EXITED: stopped or the container ended; RunPod reports no exit code.
            Drive::Stopped | Drive::ExitSuccess | Drive::ExitFailure(_) => {
                Some((ResourceState::Stopped, reasons::STOPPED))
            }
            Drive::Interrupted => None,
            Drive::ProviderFailure => Some((ResourceState::Error, reasons::WORKLOAD_FAILED)),
            Drive::Vanish => Some((ResourceState::Error, reasons::DISAPPEARED)),
        }
    }
}

fn key(name: &str) -> ResourceKey {
    conformance::key(name, 1)
}

#[tokio::test]
async fn conformance_suite() {
    let standin = RunPodStandin::start().await;
    let provider = Arc::new(provider(&standin));
    let h = RunPodHarness { standin, provider };
    conformance::run_all(&h).await;
}

/// Issue 17, item 6: every request names runctl and its version as the User-Agent.
#[tokio::test]
async fn requests_carry_runctls_user_agent() {
    let standin = RunPodStandin::start().await;
    let provider = provider(&standin);
    provider.list().await.expect("list");
    assert_eq!(standin.user_agents(), vec![runctl::USER_AGENT.to_string()]);
}

#[tokio::test]
async fn running_before_runtime_is_starting_then_running() {
    let s = RunPodStandin::start().await;
    s.set_progression(Progression::Manual);
    let p = provider(&s);
    let k = key("lag");
    let m = p.create(&k, &spec()).await.expect("create");
    assert_eq!(
        (m.state, m.reason),
        (ResourceState::Starting, reasons::PROVISIONING)
    );
    s.set_phase(&m.id, Phase::RunningNoRuntime);
    let o = observe_until(&p, &k, &m.id, |m| m.reason == reasons::BOOTING)
        .await
        .expect("observed");
    assert_eq!(
        o.state,
        ResourceState::Starting,
        "RUNNING without runtime is not Running yet"
    );
    assert!(
        o.message
            .as_deref()
            .is_some_and(|m| m.contains("not up yet"))
    );
    s.set_phase(&m.id, Phase::Running);
    let o = observe_until(&p, &k, &m.id, |m| m.state == ResourceState::Running)
        .await
        .expect("observed");
    assert_eq!(o.public_address, None, "no public port was asked for");
    assert_eq!(
        o.price_per_hour,
        Some(0.86),
        "the pod's own cost while it runs"
    );
}

/// Observes until `pred` holds (bounded: ~5 s of 50 ms polls); returns the last observation.
async fn observe_until(
    p: &RunPodProvider,
    k: &ResourceKey,
    id: &str,
    pred: impl Fn(&Machine) -> bool,
) -> Option<Machine> {
    let mut last = None;
    for _ in 0..100 {
        last = p.observe(k, Some(id)).await.expect("observe");
        if last.as_ref().is_some_and(&pred) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test]
async fn capacity_exhaustion_per_gpu_type_is_a_capacity_error() {
    let s = RunPodStandin::start().await;
    s.set_capacity("NVIDIA L40S", Some(0));
    let p = provider(&s);
    let k = key("capacity");
    let e = p.create(&k, &spec()).await.expect_err("no L40S left");
    assert_eq!(
        (e.class(), e.reason()),
        (ErrorClass::Capacity, "InsufficientCapacity")
    );
    assert!(
        e.message().contains("no longer any instances available"),
        "{e}"
    );
    assert_eq!(s.live_pods_with_env("RUNCTL_OWNER", &k.uid), 0);
    let mut other = spec();
    other.gpu_type = Some("NVIDIA H100 80GB HBM3".into());
    p.create(&k, &other)
        .await
        .expect("another GPU type has capacity");
}

#[tokio::test]
async fn billing_access_and_validation_errors_are_terminal_and_sent_once() {
    let s = RunPodStandin::start().await;
    let p = provider(&s);
    let cases = [
        (rp::Fault::InsufficientBalance, "InsufficientFunds"),
        (rp::Fault::Forbidden, "AuthenticationFailed"),
        (rp::Fault::Unauthorized, "AuthenticationFailed"),
        (rp::Fault::Unprocessable, "InvalidSpec"),
        (rp::Fault::Status(400), "InvalidSpec"),
    ];
    for (fault, reason) in cases {
        let before = s.calls(Op::Create);
        s.push_fault(Op::Create, fault.clone());
        let e = p
            .create(&key("terminal"), &spec())
            .await
            .expect_err("refused");
        assert_eq!(
            (e.reason(), e.is_terminal()),
            (reason, true),
            "{fault:?}: {e}"
        );
        assert_eq!(
            s.calls(Op::Create),
            before + 1,
            "{fault:?} must not be retried"
        );
        assert!(!e.message().contains(SECRET_ENV) && !e.message().contains(&s.api_key()));
    }
    assert!(s.pods().is_empty());
}

#[tokio::test]
async fn a_wrong_api_key_is_an_authentication_error() {
    let s = RunPodStandin::start().await;
    let p = provider_with("conformance", config(&s), "rpa_WRONGKEY");
    let e = p.list().await.expect_err("401");
    assert_eq!(
        (e.reason(), e.is_terminal()),
        ("AuthenticationFailed", true)
    );
    assert!(
        e.message().contains("apiKey") && !e.message().contains("rpa_WRONGKEY"),
        "{e}"
    );
}

#[tokio::test]
async fn retry_after_holds_calls_back_without_sending() {
    let s = RunPodStandin::start().await;
    let p = provider(&s);
    s.push_fault(
        Op::List,
        rp::Fault::RateLimited {
            retry_after_secs: 30,
        },
    );
    let e = p.list().await.expect_err("429");
    assert_eq!(
        (e.reason(), e.retry_after()),
        ("RateLimited", Some(Duration::from_secs(30)))
    );
    let sent = s.calls(Op::Any);
    let e = p.observe(&key("held"), None).await.expect_err("held back");
    assert_eq!(e.reason(), "RateLimited");
    assert!(
        e.retry_after().is_some_and(|d| d > Duration::from_secs(20)),
        "{e:?}"
    );
    assert_eq!(s.calls(Op::Any), sent, "no request while the limiter holds");
}

#[tokio::test]
async fn an_exhausted_ratelimit_window_holds_calls_back() {
    let s = RunPodStandin::start().await;
    s.set_rate_limits(RateLimits::new(1));
    let p = provider(&s);
    p.list().await.expect("the last request of the window");
    let sent = s.calls(Op::Any);
    let e = p.price(&spec()).await.expect_err("window exhausted: r=0");
    assert_eq!(e.reason(), "RateLimited");
    assert_eq!(
        s.calls(Op::Any),
        sent,
        "RateLimit r=0 is obeyed before the server refuses"
    );
}

#[tokio::test]
async fn server_errors_on_reads_are_retried_with_backoff() {
    let s = RunPodStandin::start().await;
    let mut cfg = config(&s);
    cfg.list_cache_millis = 0;
    let p = provider_with("conformance", cfg, &s.api_key());
    s.push_fault(Op::List, rp::Fault::Status(503));
    s.push_fault(Op::List, rp::Fault::Status(502));
    p.list().await.expect("third attempt succeeds");
    assert_eq!(s.calls(Op::List), 3);
    for _ in 0..3 {
        s.push_fault(Op::List, rp::Fault::Status(500));
    }
    let e = p.list().await.expect_err("retries exhausted");
    assert_eq!(e.reason(), "ProviderUnavailable");
}

#[tokio::test]
async fn an_ambiguous_5xx_after_create_adopts_the_pod() {
    let s = RunPodStandin::start().await;
    let p = provider(&s);
    let k = key("ambiguous");
    s.push_fault(Op::Create, rp::Fault::ErrorAfterCreate(502));
    let lists = s.calls(Op::List);
    let m = p
        .create(&k, &spec())
        .await
        .expect("adopted after listing again");
    assert_eq!(s.calls(Op::Create), 1);
    assert_eq!(
        s.calls(Op::List),
        lists + 2,
        "listed before creating and again after the 5xx"
    );
    assert_eq!(s.live_pods_with_env("RUNCTL_OWNER", &k.uid), 1);
    assert_eq!(m.owner_uid.as_deref(), Some(k.uid.as_str()));
}

#[tokio::test]
async fn a_lost_create_response_leaves_one_pod() {
    let s = RunPodStandin::start().await;
    let mut cfg = config(&s);
    cfg.request_timeout_millis = Some(300);
    let p = provider_with("conformance", cfg, &s.api_key());
    for (i, fault) in [rp::Fault::HangAfterCreate, rp::Fault::DropAfterCreate]
        .into_iter()
        .enumerate()
    {
        let k = key(&format!("lost-{i}"));
        let creates = s.calls(Op::Create);
        s.push_fault(Op::Create, fault.clone());
        let m = p
            .create(&k, &spec())
            .await
            .expect("found by listing after the lost answer");
        let again = p.create(&k, &spec()).await.expect("idempotent");
        assert_eq!(m.id, again.id, "{fault:?}");
        assert_eq!(s.calls(Op::Create), creates + 1, "{fault:?}: posted once");
        assert_eq!(s.live_pods_with_env("RUNCTL_OWNER", &k.uid), 1, "{fault:?}");
    }
}

#[tokio::test]
async fn a_slow_list_times_out_and_is_retried() {
    let s = RunPodStandin::start().await;
    let mut cfg = config(&s);
    cfg.request_timeout_millis = Some(300);
    cfg.list_cache_millis = 0;
    let p = provider_with("conformance", cfg, &s.api_key());
    s.push_fault(Op::List, rp::Fault::Delay(Duration::from_secs(2)));
    p.list().await.expect("the retry answers in time");
    assert_eq!(s.calls(Op::List), 2);
}

#[tokio::test]
async fn a_refused_delete_is_not_remembered_as_ours() {
    let s = RunPodStandin::start().await;
    s.set_progression(Progression::Manual);
    let mut cfg = config(&s);
    cfg.list_cache_millis = 0;
    let p = provider_with("conformance", cfg, &s.api_key());
    let k = key("refused-delete");
    let m = p.create(&k, &spec()).await.expect("create");
    s.push_fault(Op::Delete, rp::Fault::Forbidden);
    p.terminate(&m.id).await.expect_err("403");
    let seen = p
        .observe(&k, Some(&m.id))
        .await
        .expect("observe")
        .expect("pod");
    assert_eq!(
        seen.state,
        ResourceState::Starting,
        "still the pod's own state, not Terminating"
    );
    for _ in 0..3 {
        s.push_fault(Op::Delete, rp::Fault::Status(503));
    }
    p.terminate(&m.id).await.expect_err("503s");
    let seen = p
        .observe(&k, Some(&m.id))
        .await
        .expect("observe")
        .expect("pod");
    assert_eq!(
        seen.state,
        ResourceState::Terminating,
        "an ambiguous delete may have gone through"
    );
}

#[tokio::test]
async fn a_plain_5xx_makes_no_pod_and_the_retry_creates_one() {
    let s = RunPodStandin::start().await;
    let p = provider(&s);
    let k = key("plain-5xx");
    s.push_fault(Op::Create, rp::Fault::Status(500));
    let e = p.create(&k, &spec()).await.expect_err("5xx without a pod");
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert_eq!(s.live_pods_with_env("RUNCTL_OWNER", &k.uid), 0);
    p.create(&k, &spec()).await.expect("retry");
    assert_eq!(s.live_pods_with_env("RUNCTL_OWNER", &k.uid), 1);
}

#[tokio::test]
async fn duplicates_keep_the_oldest_and_terminate_the_rest() {
    let s = RunPodStandin::start().await;
    let p = provider(&s);
    let k = key("dups");
    let body = json!({
        "name": k.machine_name(),
        "image": "ghcr.io/acme/train:1",
        "gpu": {"id": "NVIDIA L40S", "count": 1},
        "env": {"RUNCTL_OWNER": k.uid, "RUNCTL_INSTALLATION": k.installation},
    });
    let at = |s: &str| Some(s.parse::<jiff::Timestamp>().expect("timestamp"));
    let newer = s.seed_pod(&body, at("2026-11-23T10:00:05Z")).expect("seed");
    let oldest = s.seed_pod(&body, at("2026-11-23T10:00:00Z")).expect("seed");
    let newest = s.seed_pod(&body, at("2026-11-23T10:00:09Z")).expect("seed");
    let m = p.create(&k, &spec()).await.expect("adopt");
    assert_eq!(m.id, oldest);
    assert_eq!(s.calls(Op::Create), 0);
    assert_eq!(p.duplicates_terminated(), 2);
    let msg = m.message.expect("message reports the duplicates");
    assert!(msg.contains(&newer) && msg.contains(&newest), "{msg}");
    assert_eq!(s.live_pods_with_env("RUNCTL_OWNER", &k.uid), 1);
    let observed = p
        .observe(&k, Some(&newer))
        .await
        .expect("observe")
        .expect("known");
    assert_eq!(
        observed.state,
        ResourceState::Terminated,
        "a duplicate we deleted is ours, not vanished"
    );
}

#[tokio::test]
async fn vanished_pods_are_errors_and_deleted_pods_are_terminated() {
    let s = RunPodStandin::start().await;
    let p = provider(&s);
    let (ka, kb) = (key("vanish"), key("delete"));
    let a = p.create(&ka, &spec()).await.expect("a");
    let b = p.create(&kb, &spec()).await.expect("b");
    assert!(s.vanish(&a.id));
    let seen = p
        .observe(&ka, Some(&a.id))
        .await
        .expect("observe")
        .expect("reported");
    assert_eq!(
        (seen.state, seen.reason),
        (ResourceState::Error, reasons::DISAPPEARED)
    );
    assert_eq!(seen.owner_uid.as_deref(), Some(ka.uid.as_str()));
    assert_eq!(p.observe(&ka, None).await.expect("observe by key"), None);

    assert_eq!(
        p.terminate(&b.id).await.expect("terminate"),
        Termination::Gone
    );
    let seen = p
        .observe(&kb, Some(&b.id))
        .await
        .expect("observe")
        .expect("reported");
    assert_eq!(
        (seen.state, seen.reason),
        (ResourceState::Terminated, reasons::TERMINATED)
    );
    assert_eq!(p.terminate(&b.id).await.expect("again"), Termination::Gone);
    assert_eq!(s.removed().len(), 2);
}

#[tokio::test]
async fn terminate_answers_conflict_as_gone_and_errors_as_errors() {
    let s = RunPodStandin::start().await;
    let p = provider(&s);
    let m = p.create(&key("conflict"), &spec()).await.expect("create");
    s.push_fault(Op::Delete, rp::Fault::Status(409));
    assert_eq!(p.terminate(&m.id).await.expect("409"), Termination::Gone);
    s.push_fault(Op::Delete, rp::Fault::Forbidden);
    assert_eq!(
        p.terminate(&m.id).await.expect_err("403").reason(),
        "AuthenticationFailed"
    );
}

#[tokio::test]
async fn spot_specs_are_refused_before_any_call() {
    let s = RunPodStandin::start().await;
    let p = provider(&s);
    let mut sp = spec();
    sp.spot = true;
    let e = p
        .create(&key("spot"), &sp)
        .await
        .expect_err("no spot on v2");
    assert_eq!(e.reason(), "InvalidSpec");
    assert!(e.message().contains("spot"), "{e}");
    assert_eq!(
        p.price(&sp).await.expect_err("no spot price").reason(),
        "InvalidSpec"
    );
    let mut bare = spec();
    bare.workload = None;
    assert!(
        p.create(&key("bare"), &bare)
            .await
            .expect_err("bare")
            .message()
            .contains("workload")
    );
    assert_eq!(s.calls(Op::Any), 0);
    let caps = p.capabilities();
    assert!(!caps.spot && !caps.bare_machine && caps.workload && !caps.stop_resume);
}

#[tokio::test]
async fn a_container_exit_shows_as_exited_with_cost_zero() {
    let s = RunPodStandin::start().await;
    s.set_progression(Progression::Manual);
    let p = provider(&s);
    let k = key("exit");
    let quote = p.price(&spec()).await.expect("price");
    let m = p.create(&k, &spec()).await.expect("create");
    s.set_phase(&m.id, Phase::Running);
    assert!(s.exit_container(&m.id, 3));
    let o = observe_until(&p, &k, &m.id, |m| m.state == ResourceState::Stopped)
        .await
        .expect("observed");
    assert_eq!(o.reason, reasons::STOPPED);
    assert_eq!(o.exit_code, None, "RunPod does not report exit codes");
    assert!(o.message.as_deref().is_some_and(|m| m.contains("EXITED")));
    assert_eq!(s.pod(&m.id).map(|p| p.cost()), Some(0.0));
    let still = p
        .observe(&k, Some(&m.id))
        .await
        .expect("observe")
        .expect("pod");
    assert_eq!(
        still.price_per_hour,
        Some(quote.per_hour),
        "cost 0.0 falls back to the catalog price"
    );
}

#[tokio::test]
async fn observe_and_list_share_one_pod_listing() {
    let s = RunPodStandin::start().await;
    let mut cfg = config(&s);
    cfg.list_cache_millis = 60_000;
    let p = provider_with("conformance", cfg, &s.api_key());
    let keys: Vec<ResourceKey> = (0..3).map(|i| key(&format!("batch-{i}"))).collect();
    let mut ids = vec![];
    for k in &keys {
        ids.push(p.create(k, &spec()).await.expect("create").id);
    }
    let foreign = json!({
        "name": "runctl-other-12345678-a1",
        "image": "x",
        "gpu": {"id": "NVIDIA L40S"},
        "env": {"RUNCTL_OWNER": "u", "RUNCTL_INSTALLATION": "someone-else"},
    });
    s.seed_pod(&foreign, None).expect("foreign pod");
    let lists = s.calls(Op::List);
    for (k, id) in keys.iter().zip(&ids) {
        let m = p
            .observe(k, Some(id))
            .await
            .expect("observe")
            .expect("found");
        assert_eq!(m.owner_uid.as_deref(), Some(k.uid.as_str()));
        assert_eq!(
            p.observe(k, None)
                .await
                .expect("by key")
                .map(|m| m.id)
                .as_ref(),
            Some(id)
        );
    }
    let all = p.list().await.expect("list");
    assert_eq!(
        s.calls(Op::List),
        lists + 1,
        "one GET /v2/pods served every observe and the list"
    );
    assert_eq!(s.calls(Op::Get), 0);
    assert_eq!(all.len(), 3, "only this installation's pods: {all:?}");
    assert!(all.iter().all(|m| m.attempt == Some(1)));
}

#[tokio::test]
async fn the_create_body_carries_the_spec() {
    let s = RunPodStandin::start().await;
    let p = provider(&s);
    let k = key("body");
    let mut sp = spec();
    sp.gpu_type = Some("NVIDIA H100 80GB HBM3".into());
    sp.gpu_count = 2;
    sp.runpod = RunPodOptions {
        cloud: Some(RunPodCloud::Community),
        data_center_ids: vec!["EU-RO-1".into()],
        container_disk_gb: Some(80),
        ports: vec!["22/tcp".into(), "8888/http".into()],
        network_volume_id: Some("vol-team-data".into()),
        volume_mount_path: Some("/data".into()),
        ..Default::default()
    };
    let m = p.create(&k, &sp).await.expect("create");
    assert_eq!(m.machine_type.as_deref(), Some("NVIDIA H100 80GB HBM3 x2"));
    assert_eq!(m.price_per_hour, Some(4.18), "community price times two");
    let body = &s.create_bodies()[0];
    assert_eq!(body["name"], k.machine_name());
    assert_eq!(body["image"], "ghcr.io/acme/train:1");
    assert_eq!(
        body["gpu"],
        json!({"id": "NVIDIA H100 80GB HBM3", "count": 2})
    );
    assert_eq!(body["cloud"], "COMMUNITY");
    assert_eq!(body["dataCenterIds"], json!(["EU-RO-1"]));
    assert_eq!(body["disk"], 80);
    assert_eq!(body["ports"], json!(["22/tcp", "8888/http"]));
    assert_eq!(
        body["mounts"],
        json!({"network": [{"volumeId": "vol-team-data", "path": "/data"}]})
    );
    assert_eq!(body["args"], "python train.py");
    assert_eq!(body["env"]["RUNCTL_OWNER"], k.uid);
    assert_eq!(body["env"]["RUNCTL_INSTALLATION"], "conformance");
    assert_eq!(body["env"]["HF_TOKEN"], SECRET_ENV);
    assert!(!format!("{m:?} {p:?}").contains(SECRET_ENV));
}

#[tokio::test]
async fn prices_come_from_the_cached_catalog() {
    let s = RunPodStandin::start().await;
    let p = provider(&s);
    let mut sp = spec();
    sp.gpu_type = Some("NVIDIA H100 80GB HBM3".into());
    sp.gpu_count = 4;
    let q = p.price(&sp).await.expect("price");
    assert!((q.per_hour - 10.76).abs() < 1e-9, "{q:?}");
    assert!(q.estimate);
    sp.runpod.cloud = Some(RunPodCloud::Community);
    assert!((p.price(&sp).await.expect("price").per_hour - 8.36).abs() < 1e-9);
    assert_eq!(s.calls(Op::Catalog), 1, "the catalog is cached");
    assert!(
        p.capabilities()
            .gpu_types
            .contains(&"NVIDIA L40S".to_string())
    );
    sp.gpu_type = Some("H100".into());
    let e = p.price(&sp).await.expect_err("unknown id");
    assert!(e.message().contains("NVIDIA H100 80GB HBM3"), "{e}");
}

#[tokio::test]
async fn the_registry_builds_a_working_provider() {
    let s = RunPodStandin::start().await;
    let config = ProvidersConfig {
        runpod: config(&s),
        ..ProvidersConfig::default()
    };
    let registry = ProviderRegistry::new("conformance", config);
    let creds = Credentials::new(BTreeMap::from([("apiKey".to_string(), s.api_key())]));
    let pk = ProviderKey {
        kind: ProviderKind::Runpod,
        region: None,
        credentials: Some("ns/runpod@1".into()),
    };
    let p = registry.get(&pk, Some(&creds)).await.expect("built");
    assert_eq!(p.kind(), ProviderKind::Runpod);
    let k = key("registry");
    let m = p.create(&k, &spec()).await.expect("create");
    assert_eq!(
        p.list()
            .await
            .expect("list")
            .into_iter()
            .map(|m| m.id)
            .collect::<Vec<_>>(),
        vec![m.id]
    );
}
