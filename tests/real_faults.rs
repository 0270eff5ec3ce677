//! One real fault on the real control plane (crates/envtest): kube-apiserver, and separately
//! etcd, killed while a machine's create call is in flight and started again a few seconds
//! later. The operator must recover with exactly one machine per object, and delete it when the
//! object is deleted.

mod support;

use std::time::Duration;

use kube::api::{Api, DeleteParams, PostParams};
use runctl::crd::CloudResource;
use runctl::crd::cloud_resource::ResourceState;
use runctl::provider::ProvidersConfig;
use runctl_envtest::Component;
use support::builders::CloudResourceBuilder;
use support::{Backend, TestEnv, eventually, fast_sim, test_controller_config};

async fn restart_during_create(component: Component) {
    // Each provider call takes 2 s, so the create is still in flight when the component dies.
    let sim = runctl::provider::sim::SimConfig {
        api_latency_ms: 2_000,
        ..fast_sim()
    };
    let env = TestEnv::start_on(
        Backend::Real,
        ProvidersConfig {
            sim,
            ..ProvidersConfig::default()
        },
    )
    .await;
    let plane = env.plane.expect("real control plane");
    let op = env.start_controller(test_controller_config("faults"));
    let crs: Api<CloudResource> = env.api();
    let names = ["m-0", "m-1"];
    let mut uids = vec![];
    for name in names {
        let cr = crs
            .create(
                &PostParams::default(),
                &CloudResourceBuilder::sim(name).build(),
            )
            .await
            .unwrap();
        uids.push(cr.metadata.uid.unwrap());
    }
    // The intent is recorded before the create call: once it is there, the call is under way.
    eventually(30, "the create intent to be recorded", || async {
        let cr = crs.get("m-0").await.ok()?;
        cr.status?.pending_create.map(|_| ())
    })
    .await;
    plane.stop(component);
    tokio::time::sleep(Duration::from_secs(3)).await;
    plane.restart(component).await.unwrap();

    for name in names {
        eventually(120, &format!("{name} to run after the restart"), || async {
            let cr = crs.get_opt(name).await.ok().flatten()?;
            (cr.status?.state == Some(ResourceState::Running)).then_some(())
        })
        .await;
    }
    for uid in &uids {
        assert_eq!(env.sim.live_count(uid), 1, "exactly one machine for {uid}");
    }
    for name in names {
        crs.delete(name, &DeleteParams::default()).await.unwrap();
    }
    eventually(120, "the objects to be deleted", || async {
        let left = crs.list(&Default::default()).await.ok()?;
        left.items.is_empty().then_some(())
    })
    .await;
    assert_eq!(env.sim.live_total(), 0, "no machine left");
    op.stop().await;
}

// One test, so that the two restarts never overlap on the test binary's one control plane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_kube_apiserver_or_etcd_during_a_create_leaves_one_machine_per_object() {
    restart_during_create(Component::KubeApiserver).await;
    restart_during_create(Component::Etcd).await;
}
