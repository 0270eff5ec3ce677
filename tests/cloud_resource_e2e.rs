//! CloudResource end to end: the real controller against the in-process API test server over
//! HTTP, with the simulated cloud.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use runctl::crd::cloud_resource::ResourceState;
use runctl::crd::{CloudResource, DeletionPolicy, condition};
use runctl::provider::ProvidersConfig;
use runctl::provider::sim::{SimFault, SimOp};
use runctl_apiserver::Verb;
use support::builders::CloudResourceBuilder;
use support::{Backend, TestEnv, eventually, fast_sim, test_controller_config};

fn api(env: &TestEnv) -> Api<CloudResource> {
    Api::namespaced(env.client.clone(), &env.ns)
}

async fn wait_state(api: &Api<CloudResource>, name: &str, state: ResourceState) -> CloudResource {
    eventually(20, &format!("{name} to be {state:?}"), || async {
        let cr = api.get_opt(name).await.ok().flatten()?;
        (cr.status.as_ref()?.state == Some(state)).then_some(cr)
    })
    .await
}

async fn wait_gone(api: &Api<CloudResource>, name: &str) {
    eventually(20, &format!("{name} to be deleted"), || async {
        api.get_opt(name)
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_is_created_runs_and_is_terminated_on_delete() {
    let env = TestEnv::start(fast_sim()).await;
    let op = env.start_controller(test_controller_config("a"));
    let crs = api(&env);
    crs.create(
        &PostParams::default(),
        &CloudResourceBuilder::sim("train-1")
            .image("busybox")
            .build(),
    )
    .await
    .unwrap();

    let cr = wait_state(&crs, "train-1", ResourceState::Running).await;
    let status = cr.status.clone().unwrap();
    assert!(
        cr.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "runctl.dev/machine")
    );
    assert!(
        status.cost_per_hour.unwrap_or(0.0) > 0.0,
        "cost per hour in status: {status:?}"
    );
    assert!(status.provider_id.is_some());
    assert!(status.pending_create.is_some(), "the intent stays recorded");
    assert_eq!(status.observed_generation, cr.metadata.generation);
    assert!(condition::is_true(&status.conditions, condition::READY));
    assert!(condition::is_true(&status.conditions, condition::SYNCED));
    assert_eq!(env.sim.live_total(), 1);

    crs.delete("train-1", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&crs, "train-1").await;
    assert_eq!(
        env.sim.live_total(),
        0,
        "the machine is terminated before the finalizer is released"
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_stopped_right_after_the_create_call_adopts_on_restart() {
    let env = TestEnv::start(fast_sim()).await;
    // The create takes effect but its response is lost, and the provider answers nothing else
    // (so the operator cannot learn the id); then the operator is killed.
    env.sim.fail_next(SimOp::Create, SimFault::LoseResponse, 1);
    env.sim
        .fail_next(SimOp::List, SimFault::ServerError, 10_000);
    env.sim
        .fail_next(SimOp::Observe, SimFault::ServerError, 10_000);
    let first = env.start_controller(test_controller_config("first"));
    let crs = api(&env);
    let created = crs
        .create(
            &PostParams::default(),
            &CloudResourceBuilder::sim("crash").build(),
        )
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    eventually(20, "the machine to exist", || async {
        (env.sim.live_count(&uid) == 1).then_some(())
    })
    .await;
    let cr = eventually(20, "the failed create to be reported", || async {
        let cr = crs.get("crash").await.ok()?;
        let s = cr.status.clone()?;
        (s.pending_create.is_some()
            && condition::get(&s.conditions, condition::SYNCED)?.status == "False")
            .then_some(cr)
    })
    .await;
    assert!(
        cr.status.unwrap().provider_id.is_none(),
        "the id was never recorded"
    );
    first.kill();
    env.sim.clear_faults();

    let second = env.start_controller(test_controller_config("second"));
    let cr = wait_state(&crs, "crash", ResourceState::Running).await;
    assert!(cr.status.unwrap().provider_id.is_some());
    assert_eq!(env.sim.live_count(&uid), 1, "adopted, not duplicated");
    assert_eq!(
        env.sim
            .machines()
            .iter()
            .filter(|m| m.owner_uid.as_deref() == Some(uid.as_str()))
            .count(),
        1
    );
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_cloud_resources_are_rejected_at_create_and_update() {
    let env = TestEnv::start(fast_sim()).await;
    let crs = api(&env);
    let bad: CloudResource = serde_json::from_value(serde_json::json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource",
        "metadata": {"name": "bad"},
        "spec": {"provider": "lyceum", "gpuType": "a100", "gpuCount": 3}
    }))
    .unwrap();
    let err = crs
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("gpuCount 3 on lyceum is invalid");
    let msg = err.to_string();
    assert!(
        msg.contains("Lyceum machines take 1, 2, 4 or 8 GPUs"),
        "{msg}"
    );
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422),
        "{err:?}"
    );

    crs.create(
        &PostParams::default(),
        &CloudResourceBuilder::sim("good").build(),
    )
    .await
    .unwrap();
    let patch = serde_json::json!({"spec": {"instanceType": "sim.h100"}});
    let err = crs
        .patch("good", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect_err("instanceType is immutable");
    assert!(
        err.to_string().contains("instanceType is immutable"),
        "{err}"
    );
    let patch = serde_json::json!({"spec": {"provider": "aws"}});
    let err = crs
        .patch("good", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect_err("provider is immutable");
    assert!(err.to_string().contains("provider is immutable"), "{err}");
    let ok = serde_json::json!({"spec": {"deletionPolicy": "Orphan"}});
    crs.patch("good", &PatchParams::default(), &Patch::Merge(&ok))
        .await
        .expect("deletionPolicy may change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_env_reaches_the_machine_but_never_status_or_events() {
    let env = TestEnv::start(fast_sim()).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let value = "hunter2-very-secret-value";
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("wandb".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "key".to_string(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let op = env.start_controller(test_controller_config("a"));
    let crs = api(&env);
    crs.create(
        &PostParams::default(),
        &CloudResourceBuilder::sim("with-secret")
            .env_from_secret("WANDB_API_KEY", "wandb", "key")
            .build(),
    )
    .await
    .unwrap();
    let cr = wait_state(&crs, "with-secret", ResourceState::Running).await;
    let workload = env
        .sim
        .workload(cr.status.as_ref().unwrap().provider_id.as_deref().unwrap())
        .expect("machine has a workload");
    assert_eq!(
        workload.env.get("WANDB_API_KEY").map(String::as_str),
        Some(value),
        "the machine gets the value"
    );
    let everything = serde_json::to_string(&crs.get("with-secret").await.unwrap()).unwrap();
    assert!(
        !everything.contains(value),
        "secret value leaked into the object"
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.client.clone(), &env.ns);
    let evs = serde_json::to_string(&events.list(&Default::default()).await.unwrap()).unwrap();
    assert!(!evs.contains(value), "secret value leaked into events");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_policy_releases_without_terminating() {
    let env = TestEnv::start(fast_sim()).await;
    let op = env.start_controller(test_controller_config("a"));
    let crs = api(&env);
    crs.create(
        &PostParams::default(),
        &CloudResourceBuilder::sim("keep")
            .deletion_policy(DeletionPolicy::Orphan)
            .build(),
    )
    .await
    .unwrap();
    wait_state(&crs, "keep", ResourceState::Running).await;
    crs.delete("keep", &DeleteParams::default()).await.unwrap();
    wait_gone(&crs, "keep").await;
    assert_eq!(env.sim.live_total(), 1, "Orphan leaves the machine running");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_create_error_marks_the_object_and_stops_calling_create() {
    let env = TestEnv::start(fast_sim()).await;
    env.sim.fail_next(SimOp::Create, SimFault::InvalidSpec, 1);
    let op = env.start_controller(test_controller_config("a"));
    let crs = api(&env);
    crs.create(
        &PostParams::default(),
        &CloudResourceBuilder::sim("rejected").build(),
    )
    .await
    .unwrap();
    let cr = wait_state(&crs, "rejected", ResourceState::Error).await;
    let s = cr.status.unwrap();
    assert_eq!(s.reason.as_deref(), Some("InvalidSpec"));
    let synced = condition::get(&s.conditions, condition::SYNCED).unwrap();
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("False", "InvalidSpec")
    );
    let calls = env.sim.stats().calls(SimOp::Create);
    // Several poll intervals later, no further create was attempted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.sim.stats().calls(SimOp::Create),
        calls,
        "terminal errors wait for a spec change"
    );
    assert_eq!(env.sim.live_total(), 0);
    crs.delete("rejected", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&crs, "rejected").await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_errors_are_retried_and_reported() {
    let env = TestEnv::start(fast_sim()).await;
    env.sim.fail_next(SimOp::Create, SimFault::Capacity, 2);
    let op = env.start_controller(test_controller_config("a"));
    let crs = api(&env);
    crs.create(
        &PostParams::default(),
        &CloudResourceBuilder::sim("busy").build(),
    )
    .await
    .unwrap();
    let cr = wait_state(&crs, "busy", ResourceState::Running).await;
    assert!(condition::is_true(
        &cr.status.unwrap().conditions,
        condition::SYNCED
    ));
    assert_eq!(env.sim.live_total(), 1);
    assert_eq!(env.sim.stats().calls(SimOp::Create), 3);
    // Issue 17, item 6: the creation record used to be POSTed again (a 409) before every retry.
    if let Some(server) = &env.server {
        assert_eq!(
            server.stats().count(Verb::Create, "configmaps"),
            1,
            "one creation record write for the attempt's three create calls"
        );
    }
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.client.clone(), &env.ns);
    // Events are written off the reconcile path: wait for it.
    eventually(10, "capacity shown as an event", || async {
        let evs = events.list(&Default::default()).await.ok()?;
        evs.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("InsufficientCapacity"))
            .then_some(())
    })
    .await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_object_whose_create_never_happened_does_not_hang() {
    let env = TestEnv::start(fast_sim()).await;
    let op = env.start_controller(test_controller_config("a"));
    let crs = api(&env);
    let cr: CloudResource = serde_json::from_value(serde_json::json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource", "metadata": {"name": "no-creds"},
        "spec": {"provider": "sim", "credentialsSecretRef": {"name": "missing"}}
    }))
    .unwrap();
    crs.create(&PostParams::default(), &cr).await.unwrap();
    eventually(20, "the missing Secret to be reported", || async {
        let s = crs.get("no-creds").await.ok()?.status?;
        (condition::get(&s.conditions, condition::SYNCED)?.reason == "SecretNotFound").then_some(())
    })
    .await;
    crs.delete("no-creds", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&crs, "no-creds").await;
    assert_eq!(env.sim.stats().calls(SimOp::Create), 0);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_deleted_outside_runctl_is_reported_lost() {
    let env = TestEnv::start(fast_sim()).await;
    let op = env.start_controller(test_controller_config("a"));
    let crs = api(&env);
    crs.create(
        &PostParams::default(),
        &CloudResourceBuilder::sim("vanishing").build(),
    )
    .await
    .unwrap();
    let cr = wait_state(&crs, "vanishing", ResourceState::Running).await;
    env.sim
        .vanish(cr.status.unwrap().provider_id.as_deref().unwrap())
        .unwrap();
    let cr = wait_state(&crs, "vanishing", ResourceState::Error).await;
    assert_eq!(cr.status.unwrap().reason.as_deref(), Some("Disappeared"));
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_interruption_and_workload_exit_are_reported() {
    let env = TestEnv::start(fast_sim()).await;
    let op = env.start_controller(test_controller_config("a"));
    let crs = api(&env);
    crs.create(
        &PostParams::default(),
        &CloudResourceBuilder::sim("spot").spot().build(),
    )
    .await
    .unwrap();
    crs.create(
        &PostParams::default(),
        &CloudResourceBuilder::sim("job")
            .env("RUNCTL_SIM_RUN_MS", "300")
            .env("RUNCTL_SIM_EXIT_CODE", "3")
            .build(),
    )
    .await
    .unwrap();
    let cr = wait_state(&crs, "spot", ResourceState::Running).await;
    env.sim
        .interrupt(cr.status.unwrap().provider_id.as_deref().unwrap())
        .unwrap();
    let cr = wait_state(&crs, "spot", ResourceState::Error).await;
    let s = cr.status.unwrap();
    assert_eq!(s.reason.as_deref(), Some("SpotInterrupted"));
    assert!(s.end_time.is_some());
    let job = wait_state(&crs, "job", ResourceState::Error).await;
    let s = job.status.unwrap();
    assert_eq!(
        (s.reason.as_deref(), s.exit_code),
        (Some("WorkloadFailed"), Some(3))
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_polling_uses_the_batched_list() {
    let env = TestEnv::start(fast_sim()).await;
    let op = env.start_controller(test_controller_config("a"));
    let crs = api(&env);
    for i in 0..20 {
        crs.create(
            &PostParams::default(),
            &CloudResourceBuilder::sim(&format!("m{i}")).build(),
        )
        .await
        .unwrap();
    }
    for i in 0..20 {
        wait_state(&crs, &format!("m{i}"), ResourceState::Running).await;
    }
    let before = env.sim.stats();
    // Four poll intervals of steady state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = env.sim.stats();
    let lists = after.calls(SimOp::List) - before.calls(SimOp::List);
    let observes = after.calls(SimOp::Observe) - before.calls(SimOp::Observe);
    assert!(lists >= 1, "status is polled");
    assert!(
        lists <= 6,
        "about one list per poll interval for 20 objects, got {lists}"
    );
    assert_eq!(observes, 0, "no per-object observe calls in steady state");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_machine_that_changes_is_noticed_without_its_resync() {
    let env = TestEnv::start(fast_sim()).await;
    // Steady objects are looked at once an hour: only the fleet's change detection can notice
    // the workload's exit below in time.
    let mut config = test_controller_config("a");
    config.resync_interval = Duration::from_secs(3600);
    let op = env.start_controller(config);
    let crs = api(&env);
    for name in ["steady-1", "steady-2"] {
        crs.create(
            &PostParams::default(),
            &CloudResourceBuilder::sim(name).build(),
        )
        .await
        .unwrap();
    }
    let cr = wait_state(&crs, "steady-1", ResourceState::Running).await;
    wait_state(&crs, "steady-2", ResourceState::Running).await;
    let observes = env.sim.stats().calls(SimOp::Observe);
    env.sim
        .exit(cr.status.unwrap().provider_id.as_deref().unwrap(), 0)
        .unwrap();
    let cr = wait_state(&crs, "steady-1", ResourceState::Terminated).await;
    assert_eq!(cr.status.unwrap().exit_code, Some(0));
    assert_eq!(
        env.sim.stats().calls(SimOp::Observe),
        observes,
        "seen through the batched list, not a direct observe"
    );
    let other = crs.get("steady-2").await.unwrap();
    assert_eq!(other.status.unwrap().state, Some(ResourceState::Running));
    op.stop().await;
}

fn reconciles(metrics: &runctl::metrics::Metrics) -> f64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("runctl_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Issue 17, item 6: every reconcile read the object's credentials Secret (one GET per object
/// per resync). Now a Secret is read at most once per `credentialsRecheckSeconds` for all the
/// objects that use it, and a changed Secret is still picked up within that interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credentials_secret_is_read_once_per_recheck_interval_not_per_reconcile() {
    let env = TestEnv::start_on(
        Backend::InProcess,
        ProvidersConfig {
            sim: fast_sim(),
            ..ProvidersConfig::default()
        },
    )
    .await;
    env.secret("sim-creds", &[("apiKey", "one")]).await;
    let mut config = test_controller_config("a");
    config.account_retry.recheck = Duration::from_secs(2);
    let op = env.start_controller(config);
    let crs = api(&env);
    for i in 0..5 {
        let mut cr = CloudResourceBuilder::sim(&format!("c{i}")).build();
        cr.spec.credentials_secret_ref = Some(runctl::crd::common::SecretRef {
            name: "sim-creds".into(),
        });
        crs.create(&PostParams::default(), &cr).await.unwrap();
    }
    for i in 0..5 {
        wait_state(&crs, &format!("c{i}"), ResourceState::Running).await;
    }
    let server = env.server();
    let (gets, before) = (
        server.stats().count(Verb::Get, "secrets"),
        reconciles(&op.ctx.metrics),
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let gets = server.stats().count(Verb::Get, "secrets") - gets;
    let reconciled = reconciles(&op.ctx.metrics) - before;
    assert!(
        reconciled >= 15.0,
        "five running objects with a 1 s resync: {reconciled} reconciles"
    );
    assert!(
        gets <= 3,
        "one read per 2 s recheck interval, not one per reconcile: {gets} reads for {reconciled} reconciles"
    );

    let secrets: Api<Secret> = env.api();
    let changed = secrets
        .patch(
            "sim-creds",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"apiKey": "two"}})),
        )
        .await
        .unwrap();
    let version = format!(
        "{}/sim-creds@{}",
        env.ns,
        changed.metadata.resource_version.unwrap()
    );
    eventually(10, "the changed Secret in use", || async {
        op.ctx
            .registry
            .instances()
            .iter()
            .any(|(k, _)| k.credentials.as_deref() == Some(version.as_str()))
            .then_some(())
    })
    .await;
    op.stop().await;
}

/// A reconcile that works from a cached copy older than the controller's own finalizer patch
/// (its watch event not in yet) goes on with the stored object: the guarded patch fails (422)
/// against the API server, and `ensure` reads the object instead of failing the reconcile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalizer_added_from_a_stale_copy_is_not_an_error() {
    use runctl::controller::finalizers;
    use std::sync::Arc;
    let env = TestEnv::start(fast_sim()).await;
    let api: Api<CloudResource> = env.api();
    let stale = api
        .create(
            &PostParams::default(),
            &CloudResourceBuilder::sim("stale").build(),
        )
        .await
        .unwrap();
    let fresh = finalizers::ensure(&api, Arc::new(stale.clone()), "runctl.dev/test")
        .await
        .expect("first add");
    assert!(
        fresh
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "runctl.dev/test")
    );
    // The same stale copy again: the stored object has the finalizer already.
    let again = finalizers::ensure(&api, Arc::new(stale.clone()), "runctl.dev/test")
        .await
        .expect("a stale copy is no error");
    assert_eq!(
        again
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f == "runctl.dev/test")
            .count(),
        1,
        "never twice"
    );
    // The stale copy for another finalizer: added beside the one it did not know of.
    let other = finalizers::ensure(&api, Arc::new(stale), "runctl.dev/other")
        .await
        .expect("added after reading the object");
    let stored = api
        .get("stale")
        .await
        .unwrap()
        .metadata
        .finalizers
        .unwrap_or_default();
    assert!(
        stored.contains(&"runctl.dev/test".to_string())
            && stored.contains(&"runctl.dev/other".to_string()),
        "{stored:?}"
    );
    assert_eq!(
        other.metadata.finalizers.clone().unwrap_or_default(),
        stored
    );
    api.patch(
        "stale",
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
}
