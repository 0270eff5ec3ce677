//! Unit tests of the simulated cloud through its provider, with a manual clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::provider::registry::{ProviderKey, ProviderRegistry, ProvidersConfig};
use crate::provider::{
    ErrorClass, MachineSpec, ProviderKind, ResourceKey, ResourceState, Termination, Workload,
    reasons,
};

const INSTALLATION: &str = "test";

fn config() -> SimConfig {
    SimConfig {
        manual_clock: true,
        provision_ms: 100,
        boot_ms: 300,
        terminate_ms: 50,
        retain_ms: 1000,
        ..SimConfig::default()
    }
}

fn cloud() -> Arc<SimCloud> {
    Arc::new(SimCloud::new(config()))
}

fn provider(cloud: &Arc<SimCloud>) -> SimProvider {
    SimProvider::new(cloud.clone(), INSTALLATION, "sim-1")
}

fn key(name: &str, attempt: u32) -> ResourceKey {
    ResourceKey {
        installation: INSTALLATION.into(),
        namespace: "ns".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        attempt,
    }
}

fn spec() -> MachineSpec {
    MachineSpec {
        instance_type: Some("sim.a100".into()),
        gpu_count: 1,
        ..MachineSpec::default()
    }
}

fn spot_spec(max: Option<f64>) -> MachineSpec {
    MachineSpec {
        spot: true,
        max_price_per_hour: max,
        ..spec()
    }
}

fn workload_spec(env: &[(&str, &str)]) -> MachineSpec {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    MachineSpec {
        workload: Some(Workload {
            image: "img".into(),
            env,
            ..Workload::default()
        }),
        ..spec()
    }
}

fn advance(cloud: &SimCloud, ms: u64) {
    assert!(cloud.advance(Duration::from_millis(ms)));
}

async fn state(p: &SimProvider, k: &ResourceKey, id: &str) -> (ResourceState, &'static str) {
    let m = p
        .observe(k, Some(id))
        .await
        .expect("observe")
        .expect("machine exists");
    (m.state, m.reason)
}

#[tokio::test]
async fn machines_provision_boot_and_run_on_the_clock() {
    let c = cloud();
    let p = provider(&c);
    let k = key("timeline", 1);
    let m = p.create(&k, &spec()).await.expect("create");
    assert_eq!(m.id, "sim-1");
    assert_eq!(m.name.as_deref(), Some(k.machine_name().as_str()));
    assert_eq!(
        (m.owner_uid.as_deref(), m.attempt),
        (Some(k.uid.as_str()), Some(1))
    );
    assert_eq!(
        (m.state, m.reason),
        (ResourceState::Starting, reasons::PROVISIONING)
    );
    assert_eq!(m.public_address, None);
    advance(&c, 99);
    assert_eq!(
        state(&p, &k, &m.id).await,
        (ResourceState::Starting, reasons::PROVISIONING)
    );
    advance(&c, 1);
    assert_eq!(
        state(&p, &k, &m.id).await,
        (ResourceState::Starting, reasons::BOOTING)
    );
    advance(&c, 200);
    let running = p
        .observe(&k, Some(&m.id))
        .await
        .expect("observe")
        .expect("exists");
    assert_eq!(
        (running.state, running.reason),
        (ResourceState::Running, reasons::RUNNING)
    );
    assert!(running.public_address.is_some());
    assert_eq!(running.launch_time, m.launch_time);
    assert_eq!(running.launch_time, Some(c.timestamp(0)));
    let snap = c.machine(&m.id).expect("snapshot");
    let steps: Vec<_> = snap.timeline.iter().map(|s| (s.since, s.reason)).collect();
    assert_eq!(
        steps,
        vec![
            (0, reasons::PROVISIONING),
            (100, reasons::BOOTING),
            (300, reasons::RUNNING)
        ]
    );
    assert_eq!(
        snap.tags[crate::provider::identity::TAG_OWNER],
        "ns/timeline"
    );
}

#[tokio::test]
async fn create_is_idempotent_per_key_and_new_per_attempt() {
    let c = cloud();
    let p = provider(&c);
    let a = p.create(&key("idem", 1), &spec()).await.expect("create");
    advance(&c, 500);
    let b = p.create(&key("idem", 1), &spec()).await.expect("repeat");
    assert_eq!(a.id, b.id);
    assert_eq!(
        b.state,
        ResourceState::Running,
        "the repeat returns the machine as it is now"
    );
    let other = p.create(&key("idem", 2), &spec()).await.expect("attempt 2");
    assert_ne!(a.id, other.id);
    let elsewhere = SimProvider::new(c.clone(), "other-installation", "sim-1");
    let third = elsewhere
        .create(&key("idem", 1), &spec())
        .await
        .expect("other installation");
    assert_ne!(a.id, third.id);
    assert_eq!(c.live_count("uid-idem"), 3);
    let stats = c.stats();
    assert_eq!((stats.machines_created, stats.duplicates_prevented), (3, 1));
    assert_eq!(stats.calls(SimOp::Create), 4);
    let mismatch = p
        .create(&key("idem", 1), &spot_spec(None))
        .await
        .expect_err("other parameters");
    assert_eq!(mismatch.class(), ErrorClass::Terminal);
}

#[tokio::test]
async fn a_terminated_machine_is_still_returned_for_its_key() {
    let c = cloud();
    let p = provider(&c);
    let k = key("after-end", 1);
    let a = p.create(&k, &spec()).await.expect("create");
    assert_eq!(
        p.terminate(&a.id).await.expect("terminate"),
        Termination::InProgress
    );
    advance(&c, 60);
    let again = p.create(&k, &spec()).await.expect("create again");
    assert_eq!(
        (again.id.as_str(), again.state),
        (a.id.as_str(), ResourceState::Terminated)
    );
    assert_eq!(c.live_count(&k.uid), 0);
}

#[tokio::test]
async fn observe_by_id_else_by_owner_within_region() {
    let c = cloud();
    let p = provider(&c);
    let k = key("observe", 1);
    let m = p.create(&k, &spec()).await.expect("create");
    assert_eq!(
        p.observe(&k, None).await.expect("by owner").map(|x| x.id),
        Some(m.id.clone())
    );
    assert_eq!(
        p.observe(&key("nobody", 1), None).await.expect("observe"),
        None
    );
    assert_eq!(
        p.observe(&key("observe", 2), None)
            .await
            .expect("other attempt"),
        None
    );
    assert_eq!(
        p.observe(&k, Some("sim-999")).await.expect("unknown id"),
        None
    );
    assert_eq!(
        p.observe(&k, Some("i-123"))
            .await
            .expect("foreign id format"),
        None
    );
    let west = SimProvider::new(c.clone(), INSTALLATION, "sim-2");
    assert_eq!(
        west.observe(&k, Some(&m.id)).await.expect("other region"),
        None
    );
    assert_eq!(west.observe(&k, None).await.expect("other region"), None);
    assert_eq!(
        west.terminate(&m.id).await.expect("other region"),
        Termination::Gone
    );
    assert_eq!(c.live_count(&k.uid), 1);
}

#[tokio::test]
async fn list_returns_the_installation_and_region_with_ended_machines_until_retention() {
    let c = cloud();
    let p = provider(&c);
    let mut ids = Vec::new();
    for k in [key("l1", 1), key("l2", 1)] {
        ids.push(p.create(&k, &spec()).await.expect("create").id);
    }
    SimProvider::new(c.clone(), "other", "sim-1")
        .create(&key("l3", 1), &spec())
        .await
        .expect("other installation");
    SimProvider::new(c.clone(), INSTALLATION, "sim-2")
        .create(&key("l4", 1), &spec())
        .await
        .expect("other region");
    let listed: Vec<String> = p
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(listed, ids);
    p.terminate(&ids[0]).await.expect("terminate");
    advance(&c, 50);
    let all = p.list().await.expect("list");
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].state, all[0].reason),
        (ResourceState::Terminated, reasons::TERMINATED)
    );
    advance(&c, 1000);
    let left: Vec<String> = p
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(left, ids[1..].to_vec(), "forgotten after retain_ms");
    assert_eq!(
        p.observe(&key("l1", 1), Some(&ids[0]))
            .await
            .expect("observe"),
        None
    );
    assert_eq!(
        p.terminate(&ids[0]).await.expect("terminate"),
        Termination::Gone
    );
    let fresh = p
        .create(&key("l1", 1), &spec())
        .await
        .expect("create after retention");
    assert_ne!(
        fresh.id, ids[0],
        "a token outlives nothing once the machine is forgotten"
    );
    assert_eq!(c.stats().calls(SimOp::List), 3);
}

#[tokio::test]
async fn terminate_winds_down_then_is_gone() {
    let c = cloud();
    let p = provider(&c);
    let k = key("term", 1);
    let m = p.create(&k, &spec()).await.expect("create");
    advance(&c, 400);
    assert_eq!(
        p.terminate(&m.id).await.expect("terminate"),
        Termination::InProgress
    );
    assert_eq!(
        state(&p, &k, &m.id).await,
        (ResourceState::Terminating, reasons::TERMINATING)
    );
    assert_eq!(
        p.terminate(&m.id).await.expect("again"),
        Termination::InProgress
    );
    assert_eq!(c.live_count(&k.uid), 1, "terminating machines still bill");
    advance(&c, 50);
    assert_eq!(
        state(&p, &k, &m.id).await,
        (ResourceState::Terminated, reasons::TERMINATED)
    );
    assert_eq!(p.terminate(&m.id).await.expect("again"), Termination::Gone);
    assert_eq!(c.live_count(&k.uid), 0);
    assert_eq!(
        p.terminate("sim-424242").await.expect("unknown"),
        Termination::Gone
    );
    assert_eq!(
        p.terminate("garbage").await.expect("unknown"),
        Termination::Gone
    );
}

#[tokio::test]
async fn stopped_machines_terminate_and_instant_termination_is_gone() {
    let c = Arc::new(SimCloud::new(SimConfig {
        terminate_ms: 0,
        ..config()
    }));
    let p = provider(&c);
    let k = key("stop-term", 1);
    let m = p.create(&k, &spec()).await.expect("create");
    c.stop(&m.id).expect("stop");
    assert_eq!(
        state(&p, &k, &m.id).await,
        (ResourceState::Stopped, reasons::STOPPED)
    );
    assert_eq!(
        p.terminate(&m.id).await.expect("terminate"),
        Termination::Gone
    );
    assert_eq!(
        state(&p, &k, &m.id).await,
        (ResourceState::Terminated, reasons::TERMINATED)
    );
}

#[tokio::test]
async fn timed_workloads_end_the_machine() {
    let c = cloud();
    let p = provider(&c);
    let ok = p
        .create(&key("ok", 1), &workload_spec(&[(ENV_RUN_MS, "1000")]))
        .await
        .expect("create");
    let bad = p
        .create(
            &key("bad", 1),
            &workload_spec(&[(ENV_RUN_MS, "500"), (ENV_EXIT_CODE, "3")]),
        )
        .await
        .expect("create");
    advance(&c, 799);
    assert_eq!(
        state(&p, &key("bad", 1), &bad.id).await.0,
        ResourceState::Running
    );
    advance(&c, 1);
    let b = p
        .observe(&key("bad", 1), Some(&bad.id))
        .await
        .expect("observe")
        .expect("exists");
    assert_eq!(
        (b.state, b.reason, b.exit_code),
        (ResourceState::Error, reasons::WORKLOAD_FAILED, Some(3))
    );
    advance(&c, 500);
    let o = p
        .observe(&key("ok", 1), Some(&ok.id))
        .await
        .expect("observe")
        .expect("exists");
    assert_eq!(
        (o.state, o.reason, o.exit_code),
        (ResourceState::Terminated, reasons::COMPLETED, Some(0))
    );
    assert_eq!(c.live_total(), 0);
    let err = p
        .create(&key("knob", 1), &workload_spec(&[(ENV_RUN_MS, "later")]))
        .await
        .expect_err("bad knob");
    assert_eq!(err.class(), ErrorClass::Terminal);
}

#[tokio::test]
async fn injected_faults_fail_the_next_calls_with_their_class() {
    let c = cloud();
    let p = provider(&c);
    let cases = [
        (SimFault::Capacity, ErrorClass::Capacity),
        (
            SimFault::RateLimited {
                retry_after: Some(Duration::from_secs(1)),
            },
            ErrorClass::Retryable,
        ),
        (SimFault::ServerError, ErrorClass::Retryable),
        (SimFault::Unauthorized, ErrorClass::Account),
        (SimFault::InvalidSpec, ErrorClass::Terminal),
    ];
    for (fault, class) in cases {
        for op in SimOp::ALL {
            c.fail_next(op, fault, 1);
        }
        let k = key("faults", 1);
        assert_eq!(
            p.create(&k, &spec()).await.expect_err("create").class(),
            class,
            "{fault:?}"
        );
        assert_eq!(
            p.observe(&k, None).await.expect_err("observe").class(),
            class
        );
        assert_eq!(p.list().await.expect_err("list").class(), class);
        assert_eq!(
            p.terminate("sim-1").await.expect_err("terminate").class(),
            class
        );
        assert_eq!(p.price(&spec()).await.expect_err("price").class(), class);
        assert_eq!(c.live_count(&k.uid), 0, "{fault:?} left a machine");
    }
    assert!(p.list().await.is_ok(), "faults are used up");
    c.fail_next(SimOp::List, SimFault::ServerError, 2);
    assert!(p.list().await.is_err() && p.list().await.is_err() && p.list().await.is_ok());
    let stats = c.stats();
    assert_eq!(stats.faults_injected, 27);
    assert_eq!(stats.machines_created, 0);
    assert_eq!(
        stats.capacity_rejections, 0,
        "injected capacity faults are not counted as rejections"
    );
}

#[tokio::test]
async fn a_lost_response_still_takes_effect() {
    let c = cloud();
    let p = provider(&c);
    let k = key("lost", 1);
    c.fail_next(SimOp::Create, SimFault::LoseResponse, 1);
    let err = p.create(&k, &spec()).await.expect_err("lost");
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert_eq!(c.live_count(&k.uid), 1, "the machine was made");
    let m = p.create(&k, &spec()).await.expect("retry");
    assert_eq!(c.live_count(&k.uid), 1, "the retry returns it");
    assert_eq!(c.stats().duplicates_prevented, 1);
    c.fail_next(SimOp::Terminate, SimFault::LoseResponse, 1);
    assert!(p.terminate(&m.id).await.is_err());
    assert_eq!(state(&p, &k, &m.id).await.0, ResourceState::Terminating);
}

#[tokio::test]
async fn capacity_limits_count_live_machines_of_a_type() {
    let c = cloud();
    let p = provider(&c);
    c.set_capacity("sim.a100", Some(1));
    let a = p
        .create(&key("cap-a", 1), &spec())
        .await
        .expect("first fits");
    let err = p
        .create(&key("cap-b", 1), &spec())
        .await
        .expect_err("no room");
    assert_eq!(err.class(), ErrorClass::Capacity);
    let small = MachineSpec {
        instance_type: Some("sim.gpu-small".into()),
        ..spec()
    };
    p.create(&key("cap-c", 1), &small)
        .await
        .expect("other types unaffected");
    p.terminate(&a.id).await.expect("terminate");
    assert!(
        p.create(&key("cap-b", 1), &spec()).await.is_err(),
        "terminating still holds capacity"
    );
    advance(&c, 50);
    p.create(&key("cap-b", 1), &spec())
        .await
        .expect("room again");
    c.set_capacity("sim.a100", Some(0));
    assert!(p.create(&key("cap-d", 1), &spec()).await.is_err());
    c.set_capacity("sim.a100", None);
    p.create(&key("cap-d", 1), &spec()).await.expect("no limit");
    assert_eq!(c.stats().capacity_rejections, 3);
}

#[tokio::test]
async fn spot_prices_and_ceilings() {
    let c = cloud();
    let p = provider(&c);
    let on_demand = p.price(&spec()).await.expect("price");
    assert_eq!((on_demand.per_hour, on_demand.estimate), (2.0, false));
    let spot = p.price(&spot_spec(None)).await.expect("price");
    assert!((spot.per_hour - 0.8).abs() < 1e-9);
    let m = p
        .create(&key("spot", 1), &spot_spec(Some(0.8)))
        .await
        .expect("at the ceiling");
    assert!(m.spot);
    assert!((m.price_per_hour.expect("price") - 0.8).abs() < 1e-9);
    let err = p
        .create(&key("spot-low", 1), &spot_spec(Some(0.79)))
        .await
        .expect_err("under the spot price");
    assert_eq!(err.class(), ErrorClass::Capacity);
    let gpu = MachineSpec {
        instance_type: None,
        gpu_type: Some("h100".into()),
        gpu_count: 2,
        ..spec()
    };
    let g = p.create(&key("gpu", 1), &gpu).await.expect("gpu type");
    assert_eq!(
        (g.machine_type.as_deref(), g.price_per_hour),
        (Some("h100 x2"), Some(7.0))
    );
    let bare = MachineSpec::default();
    assert_eq!(p.price(&bare).await.expect("price").per_hour, 1.0);
}

#[tokio::test]
async fn provider_events_drive_states() {
    let c = cloud();
    let p = provider(&c);
    let spot = p
        .create(&key("spot", 1), &spot_spec(None))
        .await
        .expect("create");
    let od = p.create(&key("od", 1), &spec()).await.expect("create");
    assert!(matches!(c.interrupt(&od.id), Err(SimError::NotSpot { .. })));
    c.interrupt(&spot.id).expect("interrupt");
    assert_eq!(
        state(&p, &key("spot", 1), &spot.id).await,
        (ResourceState::Error, reasons::SPOT_INTERRUPTED)
    );
    assert!(
        matches!(c.fail(&spot.id), Err(SimError::WrongState { .. })),
        "ended machines take no events"
    );
    assert!(
        matches!(c.exit(&od.id, 0), Err(SimError::WrongState { .. })),
        "not running yet"
    );
    c.boot(&od.id).expect("boot");
    assert_eq!(
        state(&p, &key("od", 1), &od.id).await.0,
        ResourceState::Running
    );
    c.stop(&od.id).expect("stop");
    assert_eq!(
        state(&p, &key("od", 1), &od.id).await.0,
        ResourceState::Stopped
    );
    c.start(&od.id).expect("start");
    assert_eq!(
        state(&p, &key("od", 1), &od.id).await,
        (ResourceState::Starting, reasons::BOOTING)
    );
    advance(&c, 200);
    assert_eq!(
        state(&p, &key("od", 1), &od.id).await.0,
        ResourceState::Running
    );
    c.exit(&od.id, 9).expect("exit");
    let m = p
        .observe(&key("od", 1), Some(&od.id))
        .await
        .expect("observe")
        .expect("exists");
    assert_eq!(
        (m.state, m.reason, m.exit_code),
        (ResourceState::Error, reasons::WORKLOAD_FAILED, Some(9))
    );
    let f = p.create(&key("fail", 1), &spec()).await.expect("create");
    c.fail(&f.id).expect("fail");
    assert_eq!(
        state(&p, &key("fail", 1), &f.id).await,
        (ResourceState::Error, reasons::PROVIDER_FAILURE)
    );
    c.vanish(&f.id).expect("vanish");
    assert_eq!(
        p.observe(&key("fail", 1), Some(&f.id))
            .await
            .expect("observe"),
        None
    );
    assert_eq!(
        p.observe(&key("fail", 1), None).await.expect("observe"),
        None
    );
    assert!(matches!(c.vanish(&f.id), Err(SimError::NotFound { .. })));
    assert!(matches!(c.stop("nope"), Err(SimError::NotFound { .. })));
}

#[tokio::test]
async fn foreign_machines_look_owned_but_have_no_creation_record() {
    let c = cloud();
    let p = provider(&c);
    let theirs = c.insert_foreign(ForeignMachine {
        installation: "someone-else".into(),
        region: None,
        owner_uid: Some("uid-x".into()),
        attempt: Some(1),
        name: None,
        machine_type: "sim.h100".into(),
        tags: BTreeMap::new(),
    });
    let orphan = c.insert_foreign(ForeignMachine {
        installation: INSTALLATION.into(),
        region: None,
        owner_uid: Some("uid-orphan".into()),
        attempt: Some(1),
        name: Some("runctl-orphan-a1".into()),
        machine_type: "sim.h100".into(),
        tags: BTreeMap::from([("team".to_string(), "ml".to_string())]),
    });
    let listed: Vec<String> = p
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(listed, vec![orphan.clone()]);
    let mut k = key("orphan", 1);
    k.uid = "uid-orphan".into();
    let found = p
        .observe(&k, None)
        .await
        .expect("observe")
        .expect("adoptable by tags");
    assert_eq!(
        (found.id, found.state),
        (orphan.clone(), ResourceState::Running)
    );
    let snaps = c.machines();
    assert!(snaps.iter().all(|m| m.foreign));
    assert_eq!(
        snaps
            .iter()
            .find(|m| m.id == theirs)
            .map(|m| m.installation.as_str()),
        Some("someone-else")
    );
    assert_eq!(c.live_total(), 2);
}

#[tokio::test]
async fn jitter_is_deterministic_per_seed_and_reset_starts_over() {
    let make = |seed| {
        Arc::new(SimCloud::new(SimConfig {
            seed,
            jitter_ms: 1000,
            ..config()
        }))
    };
    let timelines = |c: Arc<SimCloud>| async move {
        let p = provider(&c);
        for i in 0..5 {
            p.create(&key(&format!("j{i}"), 1), &spec())
                .await
                .expect("create");
        }
        c.advance(Duration::from_secs(5));
        c.machines()
            .into_iter()
            .map(|m| m.timeline)
            .collect::<Vec<_>>()
    };
    let a = timelines(make(7)).await;
    assert_eq!(a, timelines(make(7)).await);
    assert_ne!(a, timelines(make(8)).await);
    let c = make(7);
    let first = timelines(c.clone()).await;
    c.reset();
    assert_eq!((c.machines().len(), c.stats()), (0, SimStats::default()));
    let p = provider(&c);
    assert_eq!(
        p.create(&key("again", 1), &spec())
            .await
            .expect("create")
            .id,
        "sim-1"
    );
    assert_eq!(first.len(), 5);
}

#[tokio::test]
async fn secrets_stay_out_of_machines_and_errors() {
    let c = cloud();
    let p = provider(&c);
    let secret = "s3cr3t-value";
    let m = p
        .create(&key("secret", 1), &workload_spec(&[("API_KEY", secret)]))
        .await
        .expect("create");
    let snaps = c.machines();
    let err = p
        .create(
            &key("secret-bad", 1),
            &workload_spec(&[(ENV_RUN_MS, secret)]),
        )
        .await
        .expect_err("bad knob");
    for text in [
        format!("{m:?}"),
        format!("{snaps:?}"),
        err.to_string(),
        format!("{err:?}"),
    ] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[tokio::test]
async fn the_registry_builds_sim_providers_on_one_shared_cloud() {
    let registry = ProviderRegistry::new(
        "reg",
        ProvidersConfig {
            sim: config(),
            ..ProvidersConfig::default()
        },
    );
    let east = ProviderKey {
        kind: ProviderKind::Sim,
        region: None,
        credentials: None,
    };
    let west = ProviderKey {
        kind: ProviderKind::Sim,
        region: Some("sim-2".into()),
        credentials: None,
    };
    let pe = registry.get(&east, None).await.expect("build");
    let pw = registry.get(&west, None).await.expect("build");
    assert_eq!(pe.kind(), ProviderKind::Sim);
    let caps = pe.capabilities();
    assert!(caps.spot && caps.stop_resume && caps.workload && caps.bare_machine);
    assert!(caps.gpu_types.contains(&"sim.h100".to_string()));
    let mut k = key("reg", 1);
    k.installation = "reg".into();
    let m = pe.create(&k, &spec()).await.expect("create");
    assert_eq!(registry.sim().machines()[0].region, "sim-1");
    assert!(pw.list().await.expect("list").is_empty());
    assert_eq!(pe.list().await.expect("list")[0].id, m.id);
    let wrong_region = MachineSpec {
        region: Some("sim-2".into()),
        ..spec()
    };
    assert_eq!(
        pe.create(&key("r", 1), &wrong_region)
            .await
            .expect_err("region")
            .class(),
        ErrorClass::Terminal
    );
}

#[tokio::test]
async fn ten_thousand_machines_list_in_one_call() {
    let c = cloud();
    let p = provider(&c);
    for i in 0..10_000 {
        p.create(&key(&format!("bulk-{i}"), 1), &spec())
            .await
            .expect("create");
    }
    advance(&c, 300);
    let all = p.list().await.expect("list");
    assert_eq!(all.len(), 10_000);
    assert!(all.iter().all(|m| m.state == ResourceState::Running));
    assert_eq!(c.live_total(), 10_000);
    assert_eq!(c.stats().calls(SimOp::List), 1);
}
