//! The `kubernetes` provider end to end: the cluster's own GPU nodes first, bursting to a
//! cloud (the simulator) when none is free or the Pod is not scheduled in time. The real
//! CloudResource and TrainingJob controllers run against the in-process API test server and
//! (`RUNCTL_TEST_BACKEND=real`) a real kube-apiserver, which has no scheduler and no kubelet:
//! the test plays both, creating Nodes and patching Pod status.
//!
//! One test function runs the scenarios in turn: Nodes are cluster-scoped, and scenarios run
//! side by side would count each other's GPUs.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use runctl::crd::ProviderKind;
use runctl::crd::training_job::{JobPhase, TrainingJob};
use runctl::provider::ProvidersConfig;
use runctl::provider::kubernetes::KubernetesConfig;
use serde_json::json;
use support::jobs::{run_job, wait_job};
use support::{TestEnv, eventually, fast_sim};

/// The GPU product every test node carries and every test job asks for.
const PRODUCT: &str = "a100";

fn providers(schedule_timeout_seconds: u64) -> ProvidersConfig {
    ProvidersConfig {
        sim: fast_sim(),
        kubernetes: KubernetesConfig {
            enabled: Some(true),
            price_per_gpu_hour: 0.5,
            schedule_timeout_seconds,
            ..KubernetesConfig::default()
        },
        ..ProvidersConfig::default()
    }
}

/// An `auto` job that may run on the cluster's GPUs or the simulated cloud.
fn job(name: &str) -> TrainingJob {
    serde_json::from_value(json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "placement": {"provider": "auto", "allowedProviders": ["kubernetes", "sim"],
                          "gpuType": PRODUCT, "gpuCount": 1},
            "workload": {"image": "ghcr.io/acme/train:1", "command": ["python", "train.py"],
                         "env": [{"name": "WANDB_API_KEY", "value": "wandb-secret-value"}]}
        }
    }))
    .expect("valid job")
}

/// A Ready GPU node with `gpus` allocatable, as a kubelet would register it.
async fn node(env: &TestEnv, name: &str, gpus: u32) {
    let nodes: Api<Node> = Api::all(env.client.clone());
    let _ = nodes.delete(name, &DeleteParams::default()).await;
    eventually(30, "the old node gone", || async {
        nodes.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": PRODUCT}}
    }))
    .unwrap();
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    // Heartbeats of now: the node lifecycle controller of the real control plane marks a node
    // whose kubelet was last heard of long ago unreachable (and taints it).
    let now = jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "allocatable": {"nvidia.com/gpu": gpus.to_string(), "cpu": "16", "memory": "64Gi"},
        "capacity": {"nvidia.com/gpu": gpus.to_string(), "cpu": "16", "memory": "64Gi"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}]
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node status");
    // The real API server taints a new node `node.kubernetes.io/not-ready` (admission) until a
    // controller sees it Ready; the test plays that part too.
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": null}})),
        )
        .await
        .expect("untaint node");
}

async fn delete_node(env: &TestEnv, name: &str) {
    let nodes: Api<Node> = Api::all(env.client.clone());
    let _ = nodes.delete(name, &DeleteParams::default()).await;
}

/// The one Pod runctl made for the job's attempt `attempt` (its rank 0).
async fn attempt_pod(env: &TestEnv, job: &str, attempt: u32) -> Pod {
    rank_pod(env, job, attempt, 0).await
}

/// The Pod of node `rank` of the job's attempt `attempt`: the CloudResource's name
/// (`<job>-a<N>`, `-r<R>` for the other ranks) starts its deterministic machine name.
async fn rank_pod(env: &TestEnv, job: &str, attempt: u32, rank: u32) -> Pod {
    let pods: Api<Pod> = env.api();
    let cr = match rank {
        0 => format!("{job}-a{attempt}"),
        r => format!("{job}-a{attempt}-r{r}"),
    };
    let prefix = format!("runctl-{cr}-");
    // The uid that follows is hex: another rank's `r` never continues rank 0's prefix.
    let other_rank = format!("{prefix}r");
    let crs: Api<runctl::crd::CloudResource> = env.api();
    eventually(30, &format!("{cr}'s Pod"), || async {
        if let Ok(Some(cr)) = crs.get_opt(&cr).await
            && cr.spec.provider != ProviderKind::Kubernetes
        {
            let jobs: Api<TrainingJob> = env.api();
            let placement = jobs.get(job).await.ok()?.status?.placement;
            panic!("{job} went to {}: {placement:?}", cr.spec.provider);
        }
        let list = pods
            .list(&ListParams::default().labels("runctl.dev/installation=test"))
            .await
            .ok()?;
        list.items.into_iter().find(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&prefix) && !n.starts_with(&other_rank))
        })
    })
    .await
}

/// Plays the scheduler and the kubelet: the Pod on a node, running, then exited with `code`.
async fn run_pod(env: &TestEnv, pod: &str, code: i32) {
    start_pod(env, pod, "10.244.0.7").await;
    exit_pod(env, pod, code).await;
}

/// The Pod on a node, running at `ip`.
async fn start_pod(env: &TestEnv, pod: &str, ip: &str) {
    let running = json!({"status": {
        "phase": "Running", "podIP": ip, "startTime": "2026-12-04T00:00:00Z",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{"name": "workload", "image": "ghcr.io/acme/train:1",
            "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-12-04T00:00:01Z"}}}]
    }});
    let pods: Api<Pod> = env.api();
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&running))
        .await
        .expect("Pod running");
}

/// The Pod's container exited with `code`.
async fn exit_pod(env: &TestEnv, pod: &str, code: i32) {
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    let exited = json!({"status": {
        "phase": phase,
        "containerStatuses": [{"name": "workload", "image": "ghcr.io/acme/train:1",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": "Completed",
                "startedAt": "2026-12-04T00:00:01Z", "finishedAt": "2026-12-04T00:10:00Z"}}}]
    }});
    let pods: Api<Pod> = env.api();
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&exited))
        .await
        .expect("Pod exited");
}

async fn pod_gone(env: &TestEnv, name: &str) {
    let pods: Api<Pod> = env.api();
    eventually(60, &format!("Pod {name} deleted"), || async {
        let p = pods.get_opt(name).await.ok()?;
        p.is_none_or(|p| p.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;
}

/// A cluster with one GPU node of `gpus`, the provider's Pods unscheduled for at most
/// `schedule_timeout_seconds`.
async fn cluster(schedule_timeout_seconds: u64, node_name: &str, gpus: u32) -> TestEnv {
    let env = TestEnv::start_with(providers(schedule_timeout_seconds)).await;
    node(&env, node_name, gpus).await;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_cluster_gpus_first_and_bursting_to_the_cloud() {
    free_gpus_run_the_job_as_a_pod().await;
    a_full_cluster_sends_the_job_to_the_cloud().await;
    an_unscheduled_pod_bursts_after_the_schedule_timeout().await;
    a_two_node_job_runs_as_two_pods_that_find_rank_0().await;
}

/// A node with free GPUs: the job runs as a Pod there, its exit code read from the container
/// status, its env kept out of the Pod spec, the Pod released when the job ends.
async fn free_gpus_run_the_job_as_a_pod() {
    let env = cluster(300, "gpu-node-1", 4).await;
    let op = run_job(&env, &job("local")).await;

    let pod = attempt_pod(&env, "local", 1).await;
    let name = pod.metadata.name.clone().unwrap();
    let spec = pod.spec.as_ref().unwrap();
    let c = &spec.containers[0];
    assert_eq!(
        c.resources.as_ref().unwrap().limits.as_ref().unwrap()["nvidia.com/gpu"].0,
        "1"
    );
    assert_eq!(
        spec.node_selector.as_ref().unwrap()["nvidia.com/gpu.product"],
        PRODUCT
    );
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    let pod_json = serde_json::to_string(&pod).unwrap();
    assert!(
        !pod_json.contains("wandb-secret-value"),
        "env values stay out of the Pod spec: {pod_json}"
    );
    let secrets: Api<Secret> = env.api();
    let env_secret = eventually(30, "the Pod's env Secret", || async {
        secrets.get_opt(&format!("{name}-env")).await.ok()?
    })
    .await;
    assert_eq!(
        env_secret.data.as_ref().unwrap()["WANDB_API_KEY"].0,
        b"wandb-secret-value"
    );
    assert_eq!(
        env_secret.metadata.owner_references.as_ref().unwrap()[0].kind,
        "Pod"
    );
    assert!(
        secrets
            .get_opt("local-a1-callback")
            .await
            .unwrap()
            .is_none(),
        "a Pod sends no reports: no callback token"
    );
    let placed = wait_job(&env, "local", "placed on the cluster", |s| {
        s.attempts
            .first()
            .is_some_and(|a| a.provider == ProviderKind::Kubernetes)
    })
    .await;
    assert_eq!(
        placed.placement.as_ref().unwrap().remaining[0].provider,
        ProviderKind::Sim,
        "the cloud stays the fallback"
    );

    run_pod(&env, &name, 0).await;
    let done = wait_job(&env, "local", "succeeded", |s| {
        s.phase == Some(JobPhase::Succeeded)
    })
    .await;
    assert_eq!(done.attempts.len(), 1);
    assert_eq!(done.attempts[0].exit_code, Some(0));
    assert!(
        env.sim.stats().machines_created == 0,
        "no cloud machine was rented: {:?}",
        env.sim.stats()
    );
    pod_gone(&env, &name).await;
    op.stop().await;
    delete_node(&env, "gpu-node-1").await;
}

/// Every GPU taken: `auto` rejects the in-cluster offer (`NoFreeCapacity`) and rents the cloud
/// machine.
async fn a_full_cluster_sends_the_job_to_the_cloud() {
    let env = cluster(300, "gpu-node-2", 1).await;
    let pods: Api<Pod> = env.api();
    let busy: Pod = serde_json::from_value(json!({
        "metadata": {"name": "someone-elses-training"},
        "spec": {"nodeName": "gpu-node-2", "containers": [{"name": "c", "image": "x",
            "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &busy)
        .await
        .expect("a Pod holding the node's GPU");
    let op = run_job(&env, &job("burst")).await;
    let placed = wait_job(&env, "burst", "placed on the cloud", |s| {
        s.attempts
            .first()
            .is_some_and(|a| a.provider == ProviderKind::Sim)
    })
    .await;
    let rejected = &placed.placement.as_ref().unwrap().rejected;
    let local = rejected
        .iter()
        .find(|r| r.offer.provider == ProviderKind::Kubernetes)
        .expect("the in-cluster offer is rejected");
    assert_eq!(local.reason, "NoFreeCapacity");
    assert!(
        local
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("gpu-node-2"),
        "{local:?}"
    );
    op.stop().await;
    let _ = pods
        .delete("someone-elses-training", &DeleteParams::default())
        .await;
    delete_node(&env, "gpu-node-2").await;
}

/// Free GPUs on paper, but the Pod never lands on a node: after `scheduleTimeoutSeconds` the
/// attempt ends for lack of capacity, its Pod is deleted, and the next attempt runs on the cloud.
async fn an_unscheduled_pod_bursts_after_the_schedule_timeout() {
    let env = cluster(2, "gpu-node-3", 8).await;
    let op = run_job(&env, &job("stuck")).await;
    let pod = attempt_pod(&env, "stuck", 1).await;
    let s = wait_job(&env, "stuck", "the second attempt on the cloud", |s| {
        s.attempts.len() == 2 && s.attempts[1].provider == ProviderKind::Sim
    })
    .await;
    let first = &s.attempts[0];
    assert_eq!(first.provider, ProviderKind::Kubernetes);
    assert_eq!(
        first.reason.as_deref(),
        Some("InsufficientCapacity"),
        "{first:?}"
    );
    let rejected: BTreeMap<_, _> = s
        .placement
        .as_ref()
        .unwrap()
        .rejected
        .iter()
        .map(|r| (r.offer.provider, r.reason.clone()))
        .collect();
    assert_eq!(
        rejected.get(&ProviderKind::Kubernetes).map(String::as_str),
        Some("InsufficientCapacity")
    );
    pod_gone(&env, pod.metadata.name.as_deref().unwrap()).await;
    op.stop().await;
    delete_node(&env, "gpu-node-3").await;
}

/// `nodes: 2` on the cluster: rank 0's Pod first, then rank 1's with rank 0's Pod IP as
/// `MASTER_ADDR`; rank 0's exit decides the attempt and both Pods are released.
async fn a_two_node_job_runs_as_two_pods_that_find_rank_0() {
    let env = cluster(300, "gpu-node-4", 8).await;
    let mut two = job("gang");
    two.spec.nodes = 2;
    let op = run_job(&env, &two).await;
    let rank0 = attempt_pod(&env, "gang", 1).await.metadata.name.unwrap();
    start_pod(&env, &rank0, "10.244.3.21").await;
    let rank1 = rank_pod(&env, "gang", 1, 1).await.metadata.name.unwrap();
    let env1 = pod_env(&env, &rank1).await;
    assert_eq!(env1["MASTER_ADDR"], "10.244.3.21");
    assert_eq!(
        (env1["NODE_RANK"].as_str(), env1["NNODES"].as_str()),
        ("1", "2")
    );
    assert_eq!(pod_env(&env, &rank0).await["NODE_RANK"], "0");
    start_pod(&env, &rank1, "10.244.3.22").await;
    exit_pod(&env, &rank0, 0).await;
    let done = wait_job(&env, "gang", "succeeded", |s| {
        s.phase == Some(JobPhase::Succeeded)
    })
    .await;
    assert_eq!(done.attempts.len(), 1);
    pod_gone(&env, &rank0).await;
    pod_gone(&env, &rank1).await;
    op.stop().await;
    delete_node(&env, "gpu-node-4").await;
}

/// The environment a Pod gets (its env Secret).
async fn pod_env(env: &TestEnv, pod: &str) -> BTreeMap<String, String> {
    let secrets: Api<Secret> = env.api();
    let s = eventually(30, &format!("{pod}'s env Secret"), || async {
        secrets.get_opt(&format!("{pod}-env")).await.ok()?
    })
    .await;
    s.data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).expect("UTF-8 env")))
        .collect()
}
