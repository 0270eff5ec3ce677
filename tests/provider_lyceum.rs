//! The Lyceum provider against the Lyceum stand-in: the conformance suite for container runs
//! (and for VMs, minus the owner-UID check VMs cannot pass), plus Lyceum's quirks.

#[path = "conformance/mod.rs"]
mod conformance;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use conformance::{Drive, Fault, Harness};
use runctl::crd::cloud_resource::{LyceumMode, LyceumOptions};
use runctl::provider::lyceum::{LyceumConfig, LyceumProvider};
use runctl::provider::registry::{Credentials, ProviderKey};
use runctl::provider::{
    ErrorClass, MachineSpec, Provider, ProviderKind, ProviderRegistry, ProvidersConfig,
    ResourceKey, ResourceState, Termination, Workload, reasons,
};
use runctl_standins::lyceum::{AddressStyle, Fault as LyceumFault, LyceumStandin};
use serde_json::json;

const SECRET_ENV: &str = "hf_very_secret_token_value";

fn config(url: &str) -> LyceumConfig {
    LyceumConfig {
        base_url: url.to_string(),
        request_timeout_seconds: 5,
        request_attempts: 2,
        retry_backoff_ms: 10,
        ..LyceumConfig::default()
    }
}

fn provider_for(s: &LyceumStandin, installation: &str) -> Arc<LyceumProvider> {
    Arc::new(LyceumProvider::new(&config(&s.url()), installation, s.api_key()).expect("provider"))
}

fn run_spec() -> MachineSpec {
    MachineSpec {
        gpu_type: Some("a100".into()),
        gpu_count: 1,
        workload: Some(Workload {
            image: "ghcr.io/acme/train:1.4".into(),
            command: vec!["python".into()],
            args: vec!["train.py".into(), "--epochs=3".into()],
            env: BTreeMap::from([("HF_TOKEN".into(), SECRET_ENV.into())]),
            reporting: None,
        }),
        ..MachineSpec::default()
    }
}

/// A VM spec; VMs need `maxLifetimeSeconds` (`requireVmMaxLifetime`, on by default).
fn vm_spec() -> MachineSpec {
    MachineSpec {
        gpu_type: Some("h100".into()),
        gpu_count: 2,
        spot: true,
        max_lifetime_seconds: Some(3_600),
        lyceum: LyceumOptions {
            user_public_key: Some("ssh-ed25519 AAAAC3 test".into()),
            ..LyceumOptions::default()
        },
        ..MachineSpec::default()
    }
}

/// A fresh key of installation `prod` (the installation of most providers below).
fn key(name: &str, attempt: u32) -> ResourceKey {
    ResourceKey {
        installation: "prod".into(),
        ..conformance::key(name, attempt)
    }
}

fn raw(id: &str) -> &str {
    id.split_once(':').map_or(id, |(_, r)| r)
}

/// Drives either kind of Lyceum compute through the stand-in.
struct LyceumHarness {
    standin: LyceumStandin,
    provider: Arc<LyceumProvider>,
    vm: bool,
}

impl LyceumHarness {
    async fn new(vm: bool) -> Self {
        let standin = LyceumStandin::start().await;
        let provider = provider_for(&standin, "conformance");
        Self {
            standin,
            provider,
            vm,
        }
    }
}

#[async_trait]
impl Harness for LyceumHarness {
    fn provider(&self) -> Arc<dyn Provider> {
        self.provider.clone()
    }

    fn spec(&self) -> MachineSpec {
        if self.vm { vm_spec() } else { run_spec() }
    }

    async fn live_machines(&self, uid: &str) -> usize {
        let short: String = uid
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        let runs = self
            .standin
            .runs()
            .into_iter()
            .filter(|r| r.is_live() && r.metadata["runctl.dev/owner-uid"] == json!(uid))
            .count();
        let vms = self
            .standin
            .vms()
            .into_iter()
            .filter(|v| v.is_live() && v.display_name.contains(&short))
            .count();
        runs + vms
    }

    async fn inject(&self, fault: Fault) -> bool {
        self.standin.push_fault(match fault {
            Fault::Capacity => LyceumFault::Capacity,
            Fault::RateLimit => LyceumFault::RateLimit,
            Fault::ServerError => LyceumFault::ServerError,
            Fault::Unauthorized => LyceumFault::Unauthorized,
            Fault::LoseCreateResponse => LyceumFault::DropAfterCreate,
        });
        true
    }

    async fn drive(&self, id: &str, event: Drive) -> bool {
        let (s, id) = (&self.standin, raw(id));
        match (self.vm, event) {
            (false, Drive::Running) => s.set_run_status(id, "running", None),
            (false, Drive::ExitSuccess) => s.finish_run(id, 0),
            (false, Drive::ExitFailure(code)) => s.finish_run(id, i64::from(code)),
            (false, Drive::ProviderFailure) => s.set_run_status(id, "system_failure", None),
            (true, Drive::Running) => s.set_vm_status(id, "ready"),
            (true, Drive::Stopped) => s.set_vm_status(id, "stopped"),
            (true, Drive::Interrupted) => s.set_vm_status(id, "terminated"),
            (true, Drive::ProviderFailure) => s.set_vm_status(id, "error"),
            (_, Drive::Vanish) => s.remove(id),
            _ => false,
        }
    }

    fn expected(&self, event: Drive) -> Option<(ResourceState, &'static str)> {
        match (self.vm, event) {
            (_, Drive::Running) => Some((ResourceState::Running, reasons::RUNNING)),
            (false, Drive::ExitSuccess) => Some((ResourceState::Terminated, reasons::COMPLETED)),
            (false, Drive::ExitFailure(_)) => {
                Some((ResourceState::Error, reasons::WORKLOAD_FAILED))
            }
            (_, Drive::ProviderFailure) => Some((ResourceState::Error, reasons::PROVIDER_FAILURE)),
            (true, Drive::Stopped) => Some((ResourceState::Stopped, reasons::STOPPED)),
            (true, Drive::Interrupted) => Some((ResourceState::Error, reasons::SPOT_INTERRUPTED)),
            (_, Drive::Vanish) => Some((ResourceState::Error, reasons::DISAPPEARED)),
            _ => None,
        }
    }
}

#[tokio::test]
async fn conformance_runs() {
    let h = LyceumHarness::new(false).await;
    conformance::run_all(&h).await;
}

/// VMs carry no tags and their names only the first 8 characters of the owner UID, so `list`
/// cannot name the full owner: every check but `list_is_batched` applies.
#[tokio::test]
async fn conformance_vms() {
    let h = LyceumHarness::new(true).await;
    conformance::create_is_idempotent(&h).await;
    conformance::lost_create_response_does_not_duplicate(&h).await;
    conformance::lost_id_is_adopted(&h).await;
    conformance::attempts_are_distinct(&h).await;
    conformance::states_are_normalized(&h).await;
    conformance::errors_are_classified(&h).await;
    conformance::terminate_is_idempotent(&h).await;
    conformance::prices_are_quoted(&h).await;
}

/// Issue 17, item 6: every request names runctl and its version as the User-Agent.
#[tokio::test]
async fn requests_carry_runctls_user_agent() {
    let s = LyceumStandin::start().await;
    let p = provider_for(&s, "ua");
    p.list().await.expect("list");
    assert_eq!(s.user_agents(), vec![runctl::USER_AGENT.to_string()]);
}

#[tokio::test]
async fn run_request_carries_command_env_markers_and_timeout() {
    let s = LyceumStandin::start().await;
    let p = provider_for(&s, "prod");
    let k = key("train", 1);
    let mut spec = run_spec();
    spec.max_lifetime_seconds = Some(7200);
    let m = p.create(&k, &spec).await.expect("create");
    assert!(m.id.starts_with("run:"), "{}", m.id);
    assert_eq!(
        (m.state, m.reason),
        (ResourceState::Starting, reasons::PROVISIONING)
    );
    assert_eq!(
        (m.owner_uid.as_deref(), m.attempt),
        (Some(k.uid.as_str()), Some(1))
    );
    let run = &s.runs()[0];
    assert_eq!(run.run_name.as_deref(), Some(k.machine_name().as_str()));
    assert_eq!(run.cmd, vec!["python", "train.py", "--epochs=3"]);
    assert_eq!(run.execution_type, "gpu.a100");
    assert_eq!(
        run.timeout_seconds, 7200,
        "maxLifetimeSeconds when lyceum.timeoutSeconds is unset"
    );
    assert!(run.env.contains(&format!("RUNCTL_OWNER={}", k.uid)));
    assert!(run.env.contains("RUNCTL_INSTALLATION=prod"));
    assert!(run.env.contains(&format!("HF_TOKEN={SECRET_ENV}")));
    assert_eq!(run.metadata["runctl.dev/installation"], "prod");

    let k2 = key("train-default-timeout", 1);
    p.create(&k2, &run_spec()).await.expect("create");
    let run = s
        .runs()
        .into_iter()
        .find(|r| r.run_name == Some(k2.machine_name()))
        .expect("run");
    assert_eq!(
        run.timeout_seconds, 86_400,
        "the operator default, never Lyceum's 60 s"
    );
    let k3 = key("train-explicit-timeout", 1);
    let mut spec = run_spec();
    spec.lyceum.timeout_seconds = Some(900);
    spec.max_lifetime_seconds = Some(7200);
    p.create(&k3, &spec).await.expect("create");
    let run = s
        .runs()
        .into_iter()
        .find(|r| r.run_name == Some(k3.machine_name()))
        .expect("run");
    assert_eq!(run.timeout_seconds, 900);
}

#[tokio::test]
async fn capacity_500_is_capacity_and_not_retried() {
    let s = LyceumStandin::start().await;
    let p = provider_for(&s, "prod");
    s.push_fault(LyceumFault::Capacity);
    let err = p
        .create(&key("cap", 1), &vm_spec())
        .await
        .expect_err("capacity");
    assert_eq!(
        (err.class(), err.reason()),
        (ErrorClass::Capacity, "InsufficientCapacity")
    );
    assert!(err.message().contains("could not be provisioned"), "{err}");
    assert_eq!(s.calls("POST /vms/create"), 1);
    assert!(s.vms().is_empty());
}

#[tokio::test]
async fn http_errors_are_classified() {
    let s = LyceumStandin::start().await;
    let p = provider_for(&s, "prod");
    s.push_fault(LyceumFault::OutOfCredits);
    let err = p
        .create(&key("credits", 1), &run_spec())
        .await
        .expect_err("402");
    assert_eq!(
        (err.class(), err.reason()),
        (ErrorClass::Account, "InsufficientFunds")
    );
    assert!(err.message().contains("out of credits"), "{err}");
    s.push_fault(LyceumFault::Forbidden);
    let err = p
        .create(&key("forbidden", 1), &run_spec())
        .await
        .expect_err("403");
    assert_eq!(err.reason(), "AuthenticationFailed");
    s.push_fault(LyceumFault::RateLimit);
    let err = p
        .create(&key("throttled", 1), &run_spec())
        .await
        .expect_err("429");
    assert_eq!(
        (err.reason(), err.retry_after()),
        ("RateLimited", Some(Duration::from_secs(1)))
    );
    let mut unknown = vm_spec();
    unknown.gpu_type = Some("b200".into());
    let err = p.create(&key("b200", 1), &unknown).await.expect_err("422");
    assert_eq!(err.reason(), "InvalidSpec");
    assert!(err.message().contains("hardware_profile"), "{err}");
    let err = p.price(&unknown).await.expect_err("no price");
    assert!(err.is_terminal(), "{err}");

    let wrong =
        LyceumProvider::new(&config(&s.url()), "prod", "lk_wrong_key_123").expect("provider");
    let err = wrong.list().await.expect_err("401");
    assert_eq!(err.reason(), "AuthenticationFailed");
    assert!(!err.to_string().contains("lk_wrong_key_123"), "{err}");
    assert!(!format!("{wrong:?}").contains("lk_wrong_key_123"));
}

#[tokio::test]
async fn invalid_gpu_counts_are_refused_before_calling() {
    let s = LyceumStandin::start().await;
    let p = provider_for(&s, "prod");
    for count in [0, 3, 16] {
        let spec = MachineSpec {
            gpu_count: count,
            ..vm_spec()
        };
        let err = p
            .create(&key("gpus", 1), &spec)
            .await
            .expect_err("gpu count");
        assert!(
            err.is_terminal() && err.message().contains("1, 2, 4 or 8"),
            "{err}"
        );
    }
    let mut vm_with_workload = run_spec();
    vm_with_workload.lyceum.mode = Some(LyceumMode::Vm);
    assert!(
        p.create(&key("vm-workload", 1), &vm_with_workload)
            .await
            .expect_err("vm + workload")
            .is_terminal()
    );
    assert_eq!(
        s.calls("POST /vms/create") + s.calls("POST /execution/image/start"),
        0
    );
    assert_eq!(s.calls("GET /vms/list") + s.calls("GET /workloads/list"), 0);
}

#[tokio::test]
async fn ambiguous_failures_list_again_and_adopt() {
    let s = LyceumStandin::start().await;
    let p = provider_for(&s, "prod");
    s.push_fault(LyceumFault::DropAfterCreate);
    let k = key("dropped", 1);
    let m = p
        .create(&k, &run_spec())
        .await
        .expect("adopted after a dropped response");
    assert_eq!(s.runs().len(), 1);
    assert_eq!(m.id, format!("run:{}", s.runs()[0].id));
    assert_eq!(
        s.calls("POST /execution/image/start"),
        1,
        "never a second POST for one key"
    );

    s.push_fault(LyceumFault::ServerErrorAfterCreate);
    let k = key("bad-gateway", 1);
    let m = p.create(&k, &vm_spec()).await.expect("adopted after a 502");
    assert_eq!(m.owner_uid.as_deref(), Some(k.uid.as_str()));
    assert_eq!(s.vms().len(), 1);

    s.push_fault(LyceumFault::ServerError);
    let err = p
        .create(&key("plain-500", 1), &vm_spec())
        .await
        .expect_err("nothing to adopt");
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert_eq!(s.vms().len(), 1);
}

#[tokio::test]
async fn a_timed_out_create_is_adopted() {
    let s = LyceumStandin::start().await;
    let cfg = LyceumConfig {
        request_timeout_seconds: 1,
        ..config(&s.url())
    };
    let p = LyceumProvider::new(&cfg, "prod", s.api_key()).expect("provider");
    s.push_fault(LyceumFault::Delay(Duration::from_secs(3)));
    let k = key("slow", 1);
    let m = p
        .create(&k, &vm_spec())
        .await
        .expect("adopted after a timeout");
    assert_eq!(s.vms().len(), 1);
    assert_eq!(m.id, format!("vm:{}", s.vms()[0].id));
}

#[tokio::test]
async fn names_outlive_termination_and_are_never_reused() {
    let s = LyceumStandin::start().await;
    let p = provider_for(&s, "prod");
    let k = key("done", 1);
    let first = p.create(&k, &run_spec()).await.expect("create");
    assert!(s.finish_run(raw(&first.id), 0));
    let again = p.create(&k, &run_spec()).await.expect("same attempt");
    assert_eq!(
        again.id, first.id,
        "the finished run of this attempt is returned, not a new one"
    );
    assert_eq!(
        (again.state, again.reason),
        (ResourceState::Terminated, reasons::COMPLETED)
    );
    let next = p
        .create(
            &ResourceKey {
                attempt: 2,
                ..k.clone()
            },
            &run_spec(),
        )
        .await
        .expect("attempt 2");
    assert_ne!(next.id, first.id);
    assert_eq!(s.runs().len(), 2);
}

#[tokio::test]
async fn duplicates_are_aborted_and_the_oldest_adopted() {
    let s = LyceumStandin::start().await;
    let p = provider_for(&s, "prod");
    let k = key("dup", 1);
    let first = p.create(&k, &run_spec()).await.expect("create");
    // A second run with the same name, as an earlier lost create could leave behind.
    let body = json!({
        "docker_image_ref": "img", "docker_run_cmd": [], "execution_type": "gpu.a100", "timeout": 600,
        "run_name": k.machine_name(), "metadata": {"runctl.dev/owner-uid": k.uid, "runctl.dev/installation": "prod"},
    });
    let resp = reqwest::Client::new()
        .post(format!("{}/execution/image/start", s.url()))
        .bearer_auth(s.api_key())
        .json(&body)
        .send()
        .await
        .expect("second run");
    assert!(resp.status().is_success());
    let adopted = p.create(&k, &run_spec()).await.expect("adopt");
    assert_eq!(adopted.id, first.id);
    let live: Vec<_> = s.runs().into_iter().filter(|r| r.is_live()).collect();
    assert_eq!(live.len(), 1, "the duplicate was aborted");
    assert_eq!(format!("run:{}", live[0].id), first.id);
}

#[tokio::test]
async fn list_is_batched_and_only_this_installations() {
    let s = LyceumStandin::start().await;
    let ours = provider_for(&s, "prod");
    let theirs = provider_for(&s, "staging");
    let run = ours
        .create(&key("mine", 1), &run_spec())
        .await
        .expect("run");
    let vm = ours
        .create(&key("mine-vm", 3), &vm_spec())
        .await
        .expect("vm");
    let other = ResourceKey {
        installation: "staging".into(),
        ..key("other", 1)
    };
    theirs
        .create(&other, &run_spec())
        .await
        .expect("other installation");
    reqwest::Client::new()
        .post(format!("{}/execution/image/start", s.url()))
        .bearer_auth(s.api_key())
        .json(&json!({"docker_image_ref": "img", "docker_run_cmd": [], "execution_type": "cpu", "run_name": "notebook"}))
        .send()
        .await
        .expect("foreign run");
    let before = (s.calls("GET /workloads/list"), s.calls("GET /vms/list"));
    let all = ours.list().await.expect("list");
    assert_eq!(
        (s.calls("GET /workloads/list"), s.calls("GET /vms/list")),
        (before.0 + 1, before.1 + 1)
    );
    let ids: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&run.id.as_str()) && ids.contains(&vm.id.as_str()));
    let listed_vm = all.iter().find(|m| m.id == vm.id).expect("vm");
    assert_eq!(
        (listed_vm.attempt, listed_vm.owner_uid.as_deref()),
        (Some(3), None)
    );
    assert_eq!(listed_vm.name, vm.name);
}

#[tokio::test]
async fn vm_addresses_and_states() {
    let s = LyceumStandin::start().await;
    s.set_step(Duration::from_secs(3600));
    let p = provider_for(&s, "prod");
    let k = key("vm", 1);
    let m = p.create(&k, &vm_spec()).await.expect("create");
    assert!(m.id.starts_with("vm:"));
    assert_eq!(
        (m.state, m.public_address.clone()),
        (ResourceState::Starting, None)
    );
    assert_eq!(s.vms()[0].instance_type, "spot");
    assert_eq!(s.vms()[0].gpu_count, 2);
    s.set_address_style(AddressStyle::Null);
    s.set_vm_status(raw(&m.id), "ready");
    let seen = p
        .observe(&k, Some(&m.id))
        .await
        .expect("observe")
        .expect("vm");
    assert_eq!(
        (seen.state, seen.reason),
        (ResourceState::Starting, reasons::BOOTING),
        "ready without an address"
    );
    s.set_address_style(AddressStyle::HostPort);
    let seen = p
        .observe(&k, Some(&m.id))
        .await
        .expect("observe")
        .expect("vm");
    assert_eq!(seen.state, ResourceState::Running);
    assert!(
        seen.public_address
            .as_deref()
            .is_some_and(|a| a.ends_with(":22022"))
    );
    assert!(seen.billed.is_some() && seen.price_per_hour.is_some_and(|p| p > 0.0));
    assert!(seen.spot);
}

#[tokio::test]
async fn terminate_routes_by_kind_and_is_idempotent() {
    let s = LyceumStandin::start().await;
    s.set_delete_lag(Duration::from_secs(3600));
    let p = provider_for(&s, "prod");
    let k = key("bye", 1);
    let vm = p.create(&k, &vm_spec()).await.expect("vm");
    assert_eq!(
        p.terminate(&vm.id).await.expect("terminate"),
        Termination::InProgress
    );
    assert_eq!(s.calls("DELETE /vms/{vm_id}"), 1);
    let seen = p
        .observe(&k, Some(&vm.id))
        .await
        .expect("observe")
        .expect("vm");
    assert_eq!(
        (seen.state, seen.reason),
        (ResourceState::Terminating, reasons::TERMINATING)
    );
    s.set_delete_lag(Duration::ZERO);
    assert_eq!(p.terminate(&vm.id).await.expect("again"), Termination::Gone);
    let seen = p
        .observe(&k, Some(&vm.id))
        .await
        .expect("observe")
        .expect("vm");
    assert_eq!(
        (seen.state, seen.reason),
        (ResourceState::Terminated, reasons::TERMINATED),
        "ours, not preempted"
    );

    let rk = key("bye-run", 1);
    let run = p.create(&rk, &run_spec()).await.expect("run");
    assert_eq!(
        p.terminate(&run.id).await.expect("abort"),
        Termination::InProgress
    );
    assert_eq!(s.calls("POST /workloads/abort/{id}"), 1);
    assert_eq!(
        p.terminate(&run.id).await.expect("again"),
        Termination::Gone
    );
    assert_eq!(
        s.calls("POST /workloads/abort/{id}"),
        1,
        "an aborted run is not aborted again"
    );

    assert_eq!(
        p.terminate("vm:unknown").await.expect("unknown vm"),
        Termination::Gone
    );
    assert_eq!(
        p.terminate("run:unknown").await.expect("unknown run"),
        Termination::Gone
    );
    assert!(
        p.terminate("i-0123")
            .await
            .expect_err("not a lyceum id")
            .is_terminal()
    );
}

#[tokio::test]
async fn run_outcomes_timeouts_and_logs() {
    let s = LyceumStandin::start().await;
    let p = provider_for(&s, "prod");
    let k = key("outcomes", 1);
    let m = p.create(&k, &run_spec()).await.expect("create");
    assert!(s.time_out_run(raw(&m.id)));
    let seen = p
        .observe(&k, None)
        .await
        .expect("observe")
        .expect("by name");
    assert_eq!(
        (seen.id.as_str(), seen.state, seen.reason),
        (m.id.as_str(), ResourceState::Error, reasons::TIMED_OUT)
    );
    assert!(seen.billed.is_some());
    let k2 = key("user-fail", 1);
    let m2 = p.create(&k2, &run_spec()).await.expect("create");
    s.set_run_status(raw(&m2.id), "failed_user", Some(2));
    let seen = p
        .observe(&k2, Some(&m2.id))
        .await
        .expect("observe")
        .expect("run");
    assert_eq!(
        (seen.state, seen.reason, seen.exit_code),
        (ResourceState::Error, reasons::WORKLOAD_FAILED, Some(2))
    );
    let logs = p.run_logs(&m2.id, 100, 24).await.expect("logs");
    assert!(!logs.is_empty());
    assert!(p.run_logs("vm:x", 10, 1).await.is_err());
}

#[tokio::test]
async fn secrets_stay_out_of_errors_and_debug() {
    let s = LyceumStandin::start().await;
    let p = provider_for(&s, "prod");
    let mut spec = run_spec();
    if let Some(w) = spec.workload.as_mut() {
        w.env
            .insert("PEM".into(), format!("{SECRET_ENV}\nsecond line"));
    }
    let err = p
        .create(&key("pem", 1), &spec)
        .await
        .expect_err("line break");
    assert!(err.is_terminal());
    assert!(!err.to_string().contains(SECRET_ENV), "{err}");
    assert!(!format!("{spec:?}").contains(SECRET_ENV));
    assert!(!format!("{p:?}").contains(s.api_key()));
}

#[tokio::test]
async fn registry_builds_from_credentials() {
    let s = LyceumStandin::start().await;
    let config = ProvidersConfig {
        lyceum: config(&s.url()),
        ..ProvidersConfig::default()
    };
    let registry = ProviderRegistry::new("prod", config);
    let pk = ProviderKey {
        kind: ProviderKind::Lyceum,
        region: None,
        credentials: Some("ml/lyceum@1".into()),
    };
    let creds = Credentials::new(BTreeMap::from([(
        "apiKey".to_string(),
        s.api_key().to_string(),
    )]));
    let provider = registry.get(&pk, Some(&creds)).await.expect("built");
    assert_eq!(provider.kind(), ProviderKind::Lyceum);
    assert!(!provider.capabilities().stop_resume);
    let q = provider.price(&run_spec()).await.expect("price");
    assert!(q.per_hour > 0.0 && q.estimate);
    let vm_quote = provider.price(&vm_spec()).await.expect("vm price");
    assert!(!vm_quote.estimate, "VM prices come from /pricing");
    assert_eq!(s.calls("GET /pricing"), 1, "prices are cached");
    let none = registry
        .get(
            &ProviderKey {
                credentials: None,
                ..pk.clone()
            },
            None,
        )
        .await;
    assert_eq!(none.err().map(|e| e.reason()), Some("AuthenticationFailed"));
    let empty = Credentials::new(BTreeMap::new());
    let missing = registry
        .get(
            &ProviderKey {
                credentials: Some("ml/empty@1".into()),
                ..pk
            },
            Some(&empty),
        )
        .await;
    assert_eq!(
        missing.err().map(|e| e.reason()),
        Some("AuthenticationFailed")
    );
}

#[tokio::test]
async fn unnamed_runs_make_a_lost_create_loud() {
    let s = LyceumStandin::start().await;
    let p = provider_for(&s, "prod");
    reqwest::Client::new()
        .post(format!("{}/execution/image/start", s.url()))
        .bearer_auth(s.api_key())
        .json(&json!({"docker_image_ref": "img", "docker_run_cmd": [], "execution_type": "cpu", "timeout": 600}))
        .send()
        .await
        .expect("unnamed run");
    s.push_fault(LyceumFault::ServerError);
    let err = p
        .create(&key("loud", 1), &run_spec())
        .await
        .expect_err("ambiguous 500");
    assert!(err.is_retryable(), "{err}");
    assert!(err.message().contains("without a run_name"), "{err}");
}

#[tokio::test]
async fn unreachable_api_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/api/v2/external",
        listener.local_addr().expect("addr")
    );
    drop(listener);
    let p = LyceumProvider::new(&config(&url), "prod", "lk_unused_key_0000").expect("provider");
    let err = p.list().await.expect_err("nothing listens");
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
    assert!(err.message().contains("could not connect"), "{err}");
    let err = p
        .create(&key("offline", 1), &run_spec())
        .await
        .expect_err("offline create");
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
}

#[tokio::test]
async fn spot_price_ceiling_is_checked_before_creating() {
    let s = LyceumStandin::start().await;
    let p = provider_for(&s, "prod");
    let cheap = MachineSpec {
        max_price_per_hour: Some(0.5),
        ..vm_spec()
    };
    let err = p
        .create(&key("ceiling", 1), &cheap)
        .await
        .expect_err("above the ceiling");
    assert_eq!(err.class(), ErrorClass::Capacity, "{err}");
    assert!(s.vms().is_empty());
    let generous = MachineSpec {
        max_price_per_hour: Some(100.0),
        ..vm_spec()
    };
    p.create(&key("ceiling-ok", 1), &generous)
        .await
        .expect("below the ceiling");
    assert_eq!(s.vms().len(), 1);
}
