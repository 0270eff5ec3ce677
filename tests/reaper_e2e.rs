//! The orphan reaper end to end: the real controller and reaper against the API test server and
//! the simulated cloud. Objects are deleted while the operator is down (finalizer removed by
//! hand), look-alike machines are planted, and the reaper must terminate exactly the orphans it
//! holds a creation record for, after the grace period, and halt when too much looks orphaned.

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use runctl::controller::Context;
use runctl::controller::cloud_resource::record::RECORD_LABEL;
use runctl::controller::reaper::{Reaper, ReaperConfig, ReaperMetrics, STATUS_CONFIGMAP};
use runctl::crd::cloud_resource::ResourceState;
use runctl::crd::{CloudResource, DeletionPolicy};
use runctl::metrics::Metrics;
use runctl::provider::sim::ForeignMachine;
use support::builders::CloudResourceBuilder;
use support::{Running, TestEnv, eventually, fast_sim, test_controller_config};

fn api(env: &TestEnv) -> Api<CloudResource> {
    Api::namespaced(env.client.clone(), &env.ns)
}

fn config(env: &TestEnv, grace_ms: u64, dry_run: bool) -> ReaperConfig {
    ReaperConfig {
        interval: Duration::from_millis(100),
        grace: Duration::from_millis(grace_ms),
        dry_run,
        max_orphan_fraction: 1.0 / 3.0,
        status_namespace: Some(env.ns.clone()),
    }
}

fn reaper(op: &Running, config: ReaperConfig) -> (Reaper, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let rm = Arc::new(ReaperMetrics::new(&metrics));
    (Reaper::new(op.ctx.clone(), config, rm), metrics)
}

/// Creates running objects; returns (name, uid, machine id) of each.
async fn running(
    env: &TestEnv,
    names: &[&str],
    policy: DeletionPolicy,
) -> Vec<(String, String, String)> {
    let crs = api(env);
    for n in names {
        crs.create(
            &PostParams::default(),
            &CloudResourceBuilder::sim(n).deletion_policy(policy).build(),
        )
        .await
        .unwrap();
    }
    let mut out = Vec::new();
    for n in names {
        let cr = eventually(20, &format!("{n} running"), || async {
            let cr = crs.get_opt(n).await.ok().flatten()?;
            (cr.status.as_ref()?.state == Some(ResourceState::Running)).then_some(cr)
        })
        .await;
        let s = cr.status.unwrap();
        out.push((
            n.to_string(),
            cr.metadata.uid.unwrap(),
            s.provider_id.unwrap(),
        ));
    }
    out
}

/// Deletes an object behind runctl's back: its finalizer is removed while no operator runs.
async fn force_delete(env: &TestEnv, name: &str) {
    let crs = api(env);
    crs.delete(name, &DeleteParams::default()).await.unwrap();
    let patch = serde_json::json!({"metadata": {"finalizers": null}});
    crs.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually(10, "object gone", || async {
        crs.get_opt(name)
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
}

fn look_alike(env: &TestEnv, installation: &str) -> String {
    env.sim.insert_foreign(ForeignMachine {
        installation: installation.into(),
        region: None,
        owner_uid: Some("0b5e55ed-0000-4000-8000-000000000001".into()),
        attempt: Some(1),
        name: Some("runctl-lookalike-0b5e55ed-a1".into()),
        machine_type: "sim.a100".into(),
        tags: Default::default(),
    })
}

fn billing(env: &TestEnv, id: &str) -> bool {
    env.sim.machine(id).is_some_and(|m| !m.state.is_final())
}

async fn records(env: &TestEnv) -> usize {
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    cms.list(&ListParams::default().labels(&format!("{RECORD_LABEL}=true")))
        .await
        .unwrap()
        .items
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_deleted_while_the_operator_was_down_is_reaped_after_the_grace_period() {
    let env = TestEnv::start(fast_sim()).await;
    let op = env.start_controller(test_controller_config("first"));
    let objs = running(
        &env,
        &["keep-a", "keep-b", "keep-c", "victim"],
        DeletionPolicy::Delete,
    )
    .await;
    assert_eq!(
        records(&env).await,
        4,
        "one creation record per create attempt"
    );
    op.kill();
    force_delete(&env, "victim").await;
    let lookalike = look_alike(&env, "test");
    let other_installation = look_alike(&env, "someone-else");
    let victim = objs[3].2.clone();

    let op = env.start_controller(test_controller_config("second"));
    let (reaper, metrics) = reaper(&op, config(&env, 400, false));
    let first = reaper.pass().await.expect("pass");
    assert_eq!(first.orphans, vec![victim.clone()]);
    assert_eq!(
        first.waiting,
        vec![victim.clone()],
        "within the grace period nothing is terminated"
    );
    assert!(first.reaped.is_empty());
    assert!(
        first.untracked.contains(&lookalike),
        "look-alike without a record is reported, not touched: {first:?}"
    );
    assert!(billing(&env, &victim));

    let report = eventually(10, "the orphan to be reaped", || async {
        let r = reaper.pass().await.ok()?;
        r.reaped.contains(&victim).then_some(r)
    })
    .await;
    assert!(!report.halted);
    eventually(10, "the orphan to stop billing", || async {
        (!billing(&env, &victim)).then_some(())
    })
    .await;
    for (name, _, id) in &objs[..3] {
        assert!(billing(&env, id), "{name}'s machine is untouched");
    }
    assert!(
        billing(&env, &lookalike),
        "a look-alike machine without a creation record is never touched"
    );
    assert!(
        billing(&env, &other_installation),
        "another installation's machine is never touched"
    );
    eventually(10, "the victim's record to be removed", || async {
        let _ = reaper.pass().await;
        (records(&env).await == 3).then_some(())
    })
    .await;
    let text = metrics.encode();
    assert!(
        text.contains("runctl_reaper_reaped_total{dry_run=\"false\",provider=\"sim\"} 1"),
        "{text}"
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_halts_when_more_than_a_third_of_the_fleet_looks_orphaned() {
    let env = TestEnv::start(fast_sim()).await;
    let op = env.start_controller(test_controller_config("first"));
    let objs = running(&env, &["a", "b", "c"], DeletionPolicy::Delete).await;
    op.kill();
    force_delete(&env, "a").await;
    force_delete(&env, "b").await;
    let op = env.start_controller(test_controller_config("second"));
    let (reaper, metrics) = reaper(&op, config(&env, 0, false));
    for _ in 0..3 {
        let r = reaper.pass().await.expect("pass");
        assert!(r.halted, "{r:?}");
        assert!(r.reaped.is_empty());
    }
    for (name, _, id) in &objs {
        assert!(billing(&env, id), "{name}: nothing is deleted while halted");
    }
    assert!(
        metrics
            .encode()
            .lines()
            .any(|l| l == "runctl_reaper_halted 1")
    );
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let status = cms.get(STATUS_CONFIGMAP).await.expect("status ConfigMap");
    let data = status.data.unwrap();
    assert_eq!(data.get("halted").map(String::as_str), Some("True"));
    assert_eq!(
        data.get("reason").map(String::as_str),
        Some("TooManyOrphans")
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_and_terminates_nothing() {
    let env = TestEnv::start(fast_sim()).await;
    let op = env.start_controller(test_controller_config("first"));
    let objs = running(&env, &["a", "b", "c", "gone"], DeletionPolicy::Delete).await;
    op.kill();
    force_delete(&env, "gone").await;
    let op = env.start_controller(test_controller_config("second"));
    let (reaper, _) = reaper(&op, config(&env, 0, true));
    let r = reaper.pass().await.expect("pass");
    assert!(r.dry_run);
    assert_eq!(
        r.reaped,
        vec![objs[3].2.clone()],
        "reported as would-be-reaped"
    );
    assert!(billing(&env, &objs[3].2), "dry run terminates nothing");
    assert_eq!(records(&env).await, 4, "dry run removes no record");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_released_with_deletion_policy_orphan_is_not_reaped() {
    let env = TestEnv::start(fast_sim()).await;
    let op = env.start_controller(test_controller_config("a"));
    let objs = running(&env, &["a", "b", "c", "released"], DeletionPolicy::Orphan).await;
    let crs = api(&env);
    crs.delete("released", &DeleteParams::default())
        .await
        .unwrap();
    eventually(20, "released object gone", || async {
        crs.get_opt("released")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        records(&env).await,
        3,
        "releasing a machine removes its creation record"
    );
    let (reaper, _) = reaper(&op, config(&env, 0, false));
    let r = reaper.pass().await.expect("pass");
    assert!(r.orphans.is_empty(), "{r:?}");
    assert!(r.untracked.contains(&objs[3].2));
    assert!(
        billing(&env, &objs[3].2),
        "a machine the user chose to keep stays"
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pass_when_the_live_set_is_unknown() {
    let env = TestEnv::start(fast_sim()).await;
    let op = env.start_controller(test_controller_config("a"));
    let objs = running(&env, &["a"], DeletionPolicy::Delete).await;
    op.kill();
    force_delete(&env, "a").await;
    // A client that reaches no API server: neither records nor objects can be listed.
    let dead =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let ctx = Arc::new(Context::new(
        dead,
        env.registry(),
        Arc::new(Metrics::new()),
        test_controller_config("dead"),
    ));
    let metrics = Arc::new(Metrics::new());
    let reaper = Reaper::new(
        ctx,
        config(&env, 0, false),
        Arc::new(ReaperMetrics::new(&metrics)),
    );
    for _ in 0..3 {
        assert!(reaper.pass().await.is_err(), "the pass refuses to act");
    }
    assert!(billing(&env, &objs[0].2));
    assert!(
        metrics
            .encode()
            .contains("runctl_reaper_passes_total{outcome=\"records_unknown\"} 3")
    );
}

/// Success records (`recreatePolicy: SkipIfSucceeded`) of jobs that are never re-created do not
/// pile up: the reaper removes those past their retention and keeps the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_records_past_their_retention_are_removed() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use runctl::controller::training_job::success_record::{RETENTION, SuccessRecord};
    let env = TestEnv::start(fast_sim()).await;
    let op = env.start_controller(test_controller_config("records"));
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let record = |job: &str, age: jiff::SignedDuration| SuccessRecord {
        job: job.into(),
        uid: format!("{job}-uid"),
        spec_digest: "d".into(),
        completion_time: jiff::Timestamp::now() - age,
        attempt_count: 1,
        accrued_cost: None,
    };
    for r in [
        record("old", RETENTION + jiff::SignedDuration::from_hours(1)),
        record("recent", jiff::SignedDuration::from_hours(1)),
    ] {
        cms.create(&PostParams::default(), &r.to_configmap(&env.ns))
            .await
            .expect("record");
    }
    let (reaper, _) = reaper(&op, config(&env, 0, false));
    let r = reaper.pass().await.expect("pass");
    assert_eq!(r.success_records_expired, 1);
    assert!(cms.get_opt("runctl-succeeded-old").await.unwrap().is_none());
    assert!(
        cms.get_opt("runctl-succeeded-recent")
            .await
            .unwrap()
            .is_some()
    );
    op.stop().await;
}
