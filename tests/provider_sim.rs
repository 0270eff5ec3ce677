//! The provider conformance suite run against the simulated cloud, plus checks of what only the
//! simulator offers (concurrency, real-clock timelines, fault knobs through the provider).

#[path = "conformance/mod.rs"]
mod conformance;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use conformance::{Drive, Fault, Harness, INSTALLATION};
use runctl::provider::sim::{
    ENV_EXIT_CODE, ENV_RUN_MS, SimCloud, SimConfig, SimFault, SimOp, SimProvider,
};
use runctl::provider::{MachineSpec, Provider, ResourceState, Workload, reasons};

/// Drives a [`SimCloud`] with a real clock and short timings.
struct SimHarness {
    cloud: Arc<SimCloud>,
    provider: Arc<dyn Provider>,
}

impl SimHarness {
    fn new(api_latency_ms: u64) -> Self {
        let cloud = Arc::new(SimCloud::new(SimConfig {
            provision_ms: 20,
            boot_ms: 60,
            terminate_ms: 50,
            api_latency_ms,
            jitter_ms: 10,
            ..SimConfig::default()
        }));
        let provider: Arc<dyn Provider> =
            Arc::new(SimProvider::new(cloud.clone(), INSTALLATION, "sim-1"));
        Self { cloud, provider }
    }
}

#[async_trait]
impl Harness for SimHarness {
    fn provider(&self) -> Arc<dyn Provider> {
        self.provider.clone()
    }

    fn spec(&self) -> MachineSpec {
        MachineSpec {
            instance_type: Some("sim.gpu-small".into()),
            gpu_count: 1,
            spot: true,
            max_price_per_hour: Some(1.0),
            workload: Some(Workload {
                image: "ghcr.io/runctl/train:1".into(),
                command: vec!["python".into(), "train.py".into()],
                ..Workload::default()
            }),
            ..MachineSpec::default()
        }
    }

    async fn live_machines(&self, uid: &str) -> usize {
        self.cloud.live_count(uid)
    }

    async fn inject(&self, fault: Fault) -> bool {
        let fault = match fault {
            Fault::Capacity => SimFault::Capacity,
            Fault::RateLimit => SimFault::RateLimited {
                retry_after: Some(Duration::from_millis(10)),
            },
            Fault::ServerError => SimFault::ServerError,
            Fault::Unauthorized => SimFault::Unauthorized,
            Fault::LoseCreateResponse => SimFault::LoseResponse,
        };
        self.cloud.fail_next(SimOp::Create, fault, 1);
        true
    }

    async fn drive(&self, id: &str, event: Drive) -> bool {
        let c = &self.cloud;
        match event {
            Drive::Running => c.boot(id),
            Drive::Stopped => c.stop(id),
            Drive::Interrupted => c.interrupt(id),
            Drive::ExitSuccess => c.exit(id, 0),
            Drive::ExitFailure(code) => c.exit(id, code),
            Drive::ProviderFailure => c.fail(id),
            Drive::Vanish => c.vanish(id),
        }
        .is_ok()
    }

    fn expected(&self, event: Drive) -> Option<(ResourceState, &'static str)> {
        Some(match event {
            Drive::Running => (ResourceState::Running, reasons::RUNNING),
            Drive::Stopped => (ResourceState::Stopped, reasons::STOPPED),
            Drive::Interrupted => (ResourceState::Error, reasons::SPOT_INTERRUPTED),
            Drive::ExitSuccess => (ResourceState::Terminated, reasons::COMPLETED),
            Drive::ExitFailure(_) => (ResourceState::Error, reasons::WORKLOAD_FAILED),
            Drive::ProviderFailure => (ResourceState::Error, reasons::PROVIDER_FAILURE),
            Drive::Vanish => (ResourceState::Error, reasons::DISAPPEARED),
        })
    }
}

#[tokio::test]
async fn conformance_suite_passes() {
    let h = SimHarness::new(0);
    conformance::run_all(&h).await;
    let stats = h.cloud.stats();
    assert!(stats.duplicates_prevented >= 2, "{stats:?}");
    assert!(stats.faults_injected >= 5, "{stats:?}");
}

#[tokio::test]
async fn conformance_suite_passes_with_api_latency() {
    conformance::run_all(&SimHarness::new(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_for_one_key_make_one_machine() {
    let h = SimHarness::new(1);
    let k = conformance::key("concurrent", 1);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (p, k, spec) = (h.provider(), k.clone(), h.spec());
        tasks.push(tokio::spawn(async move {
            p.create(&k, &spec).await.expect("create").id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("task"));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every create returned the same machine");
    assert_eq!(h.cloud.live_count(&k.uid), 1);
    let stats = h.cloud.stats();
    assert_eq!(
        (stats.machines_created, stats.duplicates_prevented),
        (1, 15)
    );
}

#[tokio::test]
async fn repeated_lost_responses_never_duplicate() {
    let h = SimHarness::new(0);
    let k = conformance::key("lost-thrice", 1);
    h.cloud.fail_next(SimOp::Create, SimFault::LoseResponse, 3);
    let m = conformance::create_with_retries(&h, &k).await;
    assert_eq!(h.cloud.live_count(&k.uid), 1);
    assert_eq!(h.cloud.stats().calls(SimOp::Create), 4);
    assert_eq!(m.owner_uid.as_deref(), Some(k.uid.as_str()));
}

#[tokio::test]
async fn a_timed_workload_runs_to_completion_on_the_real_clock() {
    let h = SimHarness::new(0);
    let p = h.provider();
    let run = |code: &str| {
        let env = BTreeMap::from([
            (ENV_RUN_MS.to_string(), "50".to_string()),
            (ENV_EXIT_CODE.to_string(), code.to_string()),
        ]);
        MachineSpec {
            workload: Some(Workload {
                image: "img".into(),
                env,
                ..Workload::default()
            }),
            ..h.spec()
        }
    };
    let (ok, bad) = (conformance::key("done", 1), conformance::key("broken", 1));
    let m_ok = p.create(&ok, &run("0")).await.expect("create");
    let m_bad = p.create(&bad, &run("2")).await.expect("create");
    let seen = conformance::observe_until(&h, &ok, &m_ok.id, |o| {
        o.as_ref().is_some_and(|m| m.state.is_final())
    })
    .await;
    let seen = seen.expect("observed");
    assert_eq!(
        (seen.state, seen.reason, seen.exit_code),
        (ResourceState::Terminated, reasons::COMPLETED, Some(0))
    );
    let seen = conformance::observe_until(&h, &bad, &m_bad.id, |o| {
        o.as_ref().is_some_and(|m| m.state.is_final())
    })
    .await;
    let seen = seen.expect("observed");
    assert_eq!(
        (seen.state, seen.reason, seen.exit_code),
        (ResourceState::Error, reasons::WORKLOAD_FAILED, Some(2))
    );
    let timeline: Vec<&str> = h
        .cloud
        .machine(&m_ok.id)
        .expect("known")
        .timeline
        .iter()
        .map(|s| s.reason)
        .collect();
    assert_eq!(
        timeline,
        vec![
            reasons::PROVISIONING,
            reasons::BOOTING,
            reasons::RUNNING,
            reasons::COMPLETED
        ]
    );
}

#[tokio::test]
async fn list_reflects_every_state_in_one_call() {
    let h = SimHarness::new(0);
    let p = h.provider();
    let keys: Vec<_> = (0..4)
        .map(|i| conformance::key(&format!("mix-{i}"), 1))
        .collect();
    let mut ids = Vec::new();
    for k in &keys {
        ids.push(conformance::create_with_retries(&h, k).await.id);
    }
    for id in &ids[1..] {
        h.cloud.boot(id).expect("boot");
    }
    h.cloud.stop(&ids[1]).expect("stop");
    h.cloud.interrupt(&ids[2]).expect("interrupt");
    p.terminate(&ids[3]).await.expect("terminate");
    let calls_before = h.cloud.stats().calls(SimOp::List);
    let listed = p.list().await.expect("list");
    assert_eq!(h.cloud.stats().calls(SimOp::List), calls_before + 1);
    let state_of = |id: &str| {
        listed
            .iter()
            .find(|m| m.id == id)
            .map(|m| (m.state, m.reason))
    };
    assert_eq!(
        state_of(&ids[1]),
        Some((ResourceState::Stopped, reasons::STOPPED))
    );
    assert_eq!(
        state_of(&ids[2]),
        Some((ResourceState::Error, reasons::SPOT_INTERRUPTED))
    );
    // Terminating lasts 50 ms of real time, which a loaded machine may let pass.
    assert!(matches!(
        state_of(&ids[3]),
        Some(
            (ResourceState::Terminating, reasons::TERMINATING)
                | (ResourceState::Terminated, reasons::TERMINATED)
        )
    ));
    assert!(matches!(
        state_of(&ids[0]),
        Some((ResourceState::Starting | ResourceState::Running, _))
    ));
}
