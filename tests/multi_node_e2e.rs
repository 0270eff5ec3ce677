//! Multi-node TrainingJobs (`spec.nodes`) end to end, with the real controllers: one attempt
//! rents its machines together (rank 0 first, the other ranks once rank 0 runs, with its private
//! address), every node gets torchrun's variables, rank 0's exit decides, and a node that does
//! not come up releases them all before the next offer is tried. On the simulated cloud and on
//! EC2 (moto: one subnet, the class's placement group in every launch request). On both API servers
//! (`RUNCTL_TEST_BACKEND`).

mod support;

use kube::api::{Api, ListParams, PostParams};
use runctl::crd::CloudResource;
use runctl::crd::cloud_resource::ResourceState;
use runctl::crd::training_job::{JobPhase, TrainingJob};
use runctl::provider::sim::{SimFault, SimOp};
use serde_json::json;
use support::jobs::{Workload, test_job_config, wait_job};
use support::{TestEnv, eventually, fast_sim, test_controller_config};

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

/// The value of `name` in a CloudResource's workload env.
fn env_of(cr: &CloudResource, name: &str) -> Option<String> {
    cr.spec
        .workload
        .as_ref()?
        .env
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

async fn nodes_of(env: &TestEnv, job: &str) -> Vec<CloudResource> {
    let api: Api<CloudResource> = env.api();
    let mut list = api
        .list(&ListParams::default().labels(&format!("runctl.dev/job={job}")))
        .await
        .expect("list CloudResources")
        .items;
    list.sort_by_key(|c| c.metadata.name.clone());
    list
}

async fn wait_released(env: &TestEnv, job: &str) {
    eventually(30, &format!("{job}: every node released"), || async {
        nodes_of(env, job).await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_sim_run_as_one_attempt_with_ranks_0_and_1() {
    let env = TestEnv::start(fast_sim()).await;
    let op = env
        .start_training_job_controller(test_controller_config("op"), test_job_config())
        .await;
    let jobs: Api<TrainingJob> = env.api();
    let job: TrainingJob = object(json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "gang"},
        "spec": {
            "nodes": 2, "masterPort": 29600,
            "placement": {"provider": "sim", "instanceType": "sim.a100"},
            "workload": {"image": "ghcr.io/acme/train:1", "command": ["torchrun", "train.py"]}
        }
    }));
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let s = wait_job(&env, "gang", "running on both nodes", |s| {
        s.phase == Some(JobPhase::Running)
    })
    .await;
    assert_eq!(s.attempt_count, 1, "one attempt of two machines");
    assert_eq!(s.attempts[0].nodes, Some(2));
    assert_eq!(s.cost_per_hour, Some(4.0), "two sim.a100 at 2 USD/h");
    let nodes = nodes_of(&env, "gang").await;
    let names: Vec<&str> = nodes
        .iter()
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["gang-a1", "gang-a1-r1"]);
    let rank0_addr = nodes[0]
        .status
        .as_ref()
        .and_then(|s| s.private_address.clone())
        .expect("rank 0's private address");
    let vars = |cr: &CloudResource| {
        [
            "NODE_RANK",
            "NNODES",
            "WORLD_SIZE",
            "MASTER_ADDR",
            "MASTER_PORT",
        ]
        .map(|n| env_of(cr, n).unwrap_or_default())
    };
    assert_eq!(vars(&nodes[0]), ["0", "2", "2", "127.0.0.1", "29600"]);
    assert_eq!(
        vars(&nodes[1]),
        ["1", "2", "2", rank0_addr.as_str(), "29600"]
    );
    assert!(
        nodes[1].spec.workload.as_ref().unwrap().reporting.is_none(),
        "rank 0 reports for the attempt"
    );
    assert_eq!(env.sim.live_total(), 2);

    // Rank 0's exit decides; both machines go.
    assert_eq!(Workload::of(&env, "gang-a1").await.exit(0).await, 200);
    let s = wait_job(&env, "gang", "succeeded", |s| {
        s.phase == Some(JobPhase::Succeeded)
    })
    .await;
    assert!(s.attempts[0].cost.is_some());
    wait_released(&env, "gang").await;
    eventually(30, "no sim machine left billing", || async {
        (env.sim.live_total() == 0).then_some(())
    })
    .await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_fails_to_start_releases_both_and_the_next_attempt_runs() {
    let env = TestEnv::start(fast_sim()).await;
    let op = env
        .start_training_job_controller(test_controller_config("op"), test_job_config())
        .await;
    let jobs: Api<TrainingJob> = env.api();
    let job: TrainingJob = object(json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "gang"},
        "spec": {
            "nodes": 2,
            "placement": {"provider": "sim", "instanceType": "sim.a100"},
            "workload": {"image": "ghcr.io/acme/train:1"}
        }
    }));
    jobs.create(&PostParams::default(), &job).await.unwrap();
    // Rank 0 is created; the next create (rank 1's) finds no capacity.
    let crs: Api<CloudResource> = env.api();
    eventually(30, "rank 0 created", || async {
        crs.get_opt("gang-a1")
            .await
            .ok()??
            .status?
            .provider_id
            .map(|_| ())
    })
    .await;
    env.sim.fail_next(SimOp::Create, SimFault::Capacity, 1);
    let s = wait_job(&env, "gang", "attempt 2 running on both nodes", |s| {
        s.phase == Some(JobPhase::Running) && s.attempt_count == 2
    })
    .await;
    let first = &s.attempts[0];
    assert_eq!(first.reason.as_deref(), Some("InsufficientCapacity"));
    assert_eq!(s.failures.capacity, 1);
    let names: Vec<String> = nodes_of(&env, "gang")
        .await
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    eventually(30, "attempt 1's nodes released", || async {
        let left: Vec<String> = nodes_of(&env, "gang")
            .await
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        (left == ["gang-a2", "gang-a2-r1"]).then_some(())
    })
    .await;
    assert!(names.iter().all(|n| n.starts_with("gang-a")), "{names:?}");
    assert_eq!(env.sim.live_total(), 2, "only attempt 2's machines bill");
    op.stop().await;
}

/// On EC2 (moto): both instances in the class's subnet and cluster placement group, the
/// containers on the host network, rank 1 told rank 0's private IP; all terminated at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_ec2_share_a_subnet_and_a_placement_group() {
    use runctl::crd::MachineClass;
    use runctl::provider::ProvidersConfig;
    use runctl_standins::aws::{Ec2Proxy, MotoServer};
    let moto = MotoServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let proxy = Ec2Proxy::start(&moto.url()).await.expect("start proxy");
    let ec2 = support::moto::ec2_client(&moto.url());
    let ami = support::moto::first_ami(&ec2).await;
    let (subnet, _) = support::moto::first_subnet(&ec2).await;
    let mut providers = ProvidersConfig::default();
    providers.aws.endpoint_url = Some(proxy.url());
    providers.aws.max_attempts = 1;
    providers.aws.enabled = Some(true);
    providers.aws.pricing.enabled = false;
    let env = TestEnv::start_with(providers).await;
    env.secret(
        "team-aws",
        &[
            ("accessKeyId", "AKIATESTING"),
            ("secretAccessKey", "testing-secret"),
        ],
    )
    .await;
    let class_name = format!("gang-{}", env.ns);
    let class: MachineClass = object(json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "MachineClass",
        "metadata": {"name": class_name},
        "spec": {
            "provider": "aws",
            "credentialsSecretRef": {"namespace": env.ns, "name": "team-aws"},
            "aws": {
                "regionSettings": {"us-east-1": {"amiId": ami, "subnetId": subnet}},
                "placementGroup": "gang-close"
            }
        }
    }));
    let classes: Api<MachineClass> = Api::all(env.client.clone());
    classes
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
    let op = env
        .start_training_job_controller(test_controller_config("op"), test_job_config())
        .await;
    let jobs: Api<TrainingJob> = env.api();
    let job: TrainingJob = object(json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "gang"},
        "spec": {
            "nodes": 2,
            "placement": {"provider": "aws", "instanceType": "g5.xlarge", "machineClasses": [class_name]},
            "workload": {"image": "pytorch/pytorch:2.5", "command": ["torchrun", "train.py"]}
        }
    }));
    jobs.create(&PostParams::default(), &job).await.unwrap();
    wait_job(&env, "gang", "running on both nodes", |s| {
        s.phase == Some(JobPhase::Running)
    })
    .await;
    let nodes = nodes_of(&env, "gang").await;
    assert_eq!(nodes.len(), 2);
    let ids: Vec<String> = nodes
        .iter()
        .map(|c| {
            let s = c.status.as_ref().expect("status");
            assert_eq!(s.state, Some(ResourceState::Running));
            s.provider_id.clone().expect("instance id")
        })
        .collect();
    let out = ec2
        .describe_instances()
        .set_instance_ids(Some(ids.clone()))
        .send()
        .await
        .expect("describe");
    let instances: Vec<_> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .cloned()
        .collect();
    assert_eq!(instances.len(), 2);
    for i in &instances {
        assert_eq!(i.subnet_id(), Some(subnet.as_str()));
    }
    // moto keeps no placement group on its instances: the launch requests say it.
    let launches = proxy.forwarded("RunInstances");
    assert_eq!(launches.len(), 2, "one launch per node");
    for params in &launches {
        assert_eq!(
            params.get("Placement.GroupName").map(String::as_str),
            Some("gang-close"),
            "the class's placement group: {params:?}"
        );
    }
    let rank0 = instances
        .iter()
        .find(|i| i.instance_id() == Some(ids[0].as_str()))
        .expect("rank 0's instance");
    assert_eq!(
        env_of(&nodes[1], "MASTER_ADDR").as_deref(),
        rank0.private_ip_address(),
        "rank 1 reaches rank 0 at its private IP"
    );
    for n in &nodes {
        assert_eq!(
            n.spec.aws.as_ref().and_then(|a| a.host_network),
            Some(true),
            "the nodes' containers share the instances' network"
        );
    }
    assert_eq!(Workload::of(&env, "gang-a1").await.exit(0).await, 200);
    wait_job(&env, "gang", "succeeded", |s| {
        s.phase == Some(JobPhase::Succeeded)
    })
    .await;
    wait_released(&env, "gang").await;
    let after = ec2
        .describe_instances()
        .set_instance_ids(Some(ids))
        .send()
        .await
        .expect("describe");
    let states: Vec<&str> = after
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()))
        .collect();
    assert_eq!(states, ["terminated", "terminated"]);
    let _ = classes.delete(&class_name, &Default::default()).await;
    op.stop().await;
}
