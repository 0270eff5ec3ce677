//! The operator process end to end: leader election between two replicas, two shards splitting
//! the namespaces (each with its own Lease and callback listener), preflight errors of
//! the `runctl run` binary, and `runctl demo`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, PostParams};
use runctl::config::OperatorConfig;
use runctl::crd::CloudResource;
use runctl::crd::cloud_resource::ResourceState;
use runctl::operator::Operator;
use runctl::provider::ProviderRegistry;
use support::builders::CloudResourceBuilder;
use support::{TestEnv, eventually, fast_sim};
use tokio_util::sync::CancellationToken;

/// The replicas' configuration: the test's providers, a 1 s poll, fast Lease renewals.
fn base_config(env: &TestEnv) -> OperatorConfig {
    let mut config = OperatorConfig {
        installation_id: "test".into(),
        namespace: env.ns.clone(),
        poll_interval_seconds: 1,
        ..OperatorConfig::default()
    };
    config.leader_election.renew_interval_seconds = 1;
    config.providers = env.providers.clone();
    config
}

/// The operator of `config` named `identity`, on the test's simulated cloud, without metrics
/// endpoint.
fn operator(env: &TestEnv, config: &OperatorConfig, identity: &str) -> Operator {
    let registry = Arc::new(ProviderRegistry::with_sim(
        "test",
        env.providers.clone(),
        env.sim.clone(),
    ));
    let mut op =
        Operator::from_config(env.client.clone(), config, registry, identity).expect("operator");
    op.http_addr = None;
    op.controllers.transition_poll_interval = Duration::from_millis(200);
    op
}

fn replica(env: &TestEnv, identity: &str) -> Operator {
    let mut config = base_config(env);
    config.watch_namespace = env.is_real().then(|| env.ns.clone());
    config.leader_election.lease_duration_seconds = 15;
    let mut op = operator(env, &config, identity);
    op.callback_addr = None;
    op
}

/// Whether the replica's `runctl_leader` gauge reads 1 (its HELP text also contains
/// "runctl_leader 1", so match the sample line exactly).
fn leads(metrics: &runctl::metrics::Metrics) -> bool {
    metrics.encode().lines().any(|l| l == "runctl_leader 1")
}

fn reconciles(metrics: &runctl::metrics::Metrics) -> f64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("runctl_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn running(api: &Api<CloudResource>, name: &str) {
    eventually(30, &format!("{name} running"), || async {
        let cr = api.get_opt(name).await.ok().flatten()?;
        (cr.status?.state == Some(ResourceState::Running)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts_and_a_standby_takes_over() {
    let env = TestEnv::start(fast_sim()).await;
    let a = replica(&env, "replica-a");
    let b = replica(&env, "replica-b");
    let (ma, mb) = (a.metrics.clone(), b.metrics.clone());
    let (sa, sb) = (CancellationToken::new(), CancellationToken::new());
    let ta = tokio::spawn(a.run(sa.clone()));
    // Let replica a take the Lease first.
    eventually(10, "replica a to lead", || async {
        leads(&ma).then_some(())
    })
    .await;
    let tb = tokio::spawn(b.run(sb.clone()));

    let api: Api<CloudResource> = Api::namespaced(env.client.clone(), &env.ns);
    for i in 0..3 {
        api.create(
            &PostParams::default(),
            &CloudResourceBuilder::sim(&format!("ha-{i}")).build(),
        )
        .await
        .unwrap();
    }
    for i in 0..3 {
        running(&api, &format!("ha-{i}")).await;
    }
    assert!(reconciles(&ma) > 0.0, "the leader reconciles");
    assert_eq!(
        reconciles(&mb),
        0.0,
        "the standby does nothing while it does not lead"
    );
    assert_eq!(env.sim.live_total(), 3, "one machine per object");

    // The leader shuts down and releases the Lease; the standby takes over.
    sa.cancel();
    let _ = ta.await;
    eventually(20, "replica b to lead", || async {
        leads(&mb).then_some(())
    })
    .await;
    api.create(
        &PostParams::default(),
        &CloudResourceBuilder::sim("after-failover").build(),
    )
    .await
    .unwrap();
    running(&api, "after-failover").await;
    assert!(reconciles(&mb) > 0.0);
    assert_eq!(env.sim.live_total(), 4);
    sb.cancel();
    let _ = tb.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exits_with_a_clear_message_when_the_crds_are_missing() {
    let server = runctl_apiserver::ApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig_yaml()).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_runctl"))
        .args(["run", "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", "default")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("CRDs are not installed") && stderr.contains("kubectl apply -f crds/"),
        "{stderr}"
    );
    // Issue 17, item 6: the operator's requests carried no User-Agent.
    let stats = server.stats();
    assert!(
        stats.by_user_agent(runctl::USER_AGENT) > 0,
        "the API server saw runctl's User-Agent: {:?}",
        stats.user_agents
    );
    assert_eq!(
        stats.user_agents.len(),
        1,
        "every request of `runctl run` names runctl: {:?}",
        stats.user_agents
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exits_with_a_clear_message_when_the_cluster_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_runctl"))
        .args(["run", "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot reach the Kubernetes API server"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_to_the_end_with_no_machine_left() {
    runctl::demo::run(20).await.expect("demo");
}

/// A replica of shard `index` of 2 whose callback endpoint listens on `127.0.0.1<index>` (the
/// shared callback URL `http://127.0.0.1{shard}:<port>` reaches each shard's own listener).
fn shard_replica(env: &TestEnv, index: u32, identity: &str, port: u16) -> Operator {
    let mut config = base_config(env);
    config.sharding.shards = 2;
    config.sharding.index = index;
    config.jobs.callback_addr = format!("127.0.0.1{index}:{port}");
    config.jobs.callback_url = Some(format!("http://127.0.0.1{{shard}}:{port}"));
    config.jobs.allow_cluster_internal_callback_url = true;
    config.jobs.report_grace_seconds = 3;
    operator(env, &config, identity)
}

/// The objects of `kind` in the replica's cache (its `runctl_objects` gauge).
fn cached(metrics: &runctl::metrics::Metrics, kind: &str) -> f64 {
    let prefix = format!("runctl_objects{{kind=\"{kind}\"");
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_split_the_namespaces_each_with_its_own_lease() {
    use k8s_openapi::api::coordination::v1::Lease;
    use runctl::crd::training_job::{JobPhase, TrainingJob};
    use runctl::runtime::shard::Shard;
    // Sharding splits a cluster-wide operator: the in-process server, where this test's
    // objects are the only ones.
    let env = TestEnv::start_on(
        support::Backend::InProcess,
        runctl::provider::ProvidersConfig {
            sim: runctl::provider::sim::SimConfig {
                reporting: true,
                heartbeat_ms_per_second: 20,
                report_tick_ms: 20,
                ..fast_sim()
            },
            ..Default::default()
        },
    )
    .await;
    let port = std::net::TcpListener::bind("127.0.0.10:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // Shard 0 runs two replicas (one leads), shard 1 one: both shards lead at once.
    let replicas = [
        shard_replica(&env, 0, "shard0-a", port),
        shard_replica(&env, 0, "shard0-b", port + 1),
        shard_replica(&env, 1, "shard1-a", port),
    ];
    let metrics: Vec<_> = replicas.iter().map(|r| r.metrics.clone()).collect();
    let stop = CancellationToken::new();
    let tasks: Vec<_> = replicas
        .into_iter()
        .map(|r| tokio::spawn(r.run(stop.clone())))
        .collect();

    let namespaces: Vec<String> = (0..6).map(|i| format!("team-{i}")).collect();
    let owner = |ns: &str| Shard::of(ns, 2);
    assert!(
        (0..2).all(|s| namespaces.iter().any(|n| owner(n) == s)),
        "both shards own some of the namespaces"
    );
    let all_namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.client.clone());
    for ns in &namespaces {
        let namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}));
        all_namespaces
            .create(&PostParams::default(), &namespace.unwrap())
            .await
            .unwrap();
        let job: TrainingJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "train", "namespace": ns},
            "spec": {
                "placement": {"provider": "sim", "instanceType": "sim.a100"},
                "workload": {"image": "train:1", "env": [
                    {"name": "RUNCTL_SIM_RUN_MS", "value": "300"}
                ]}
            }
        }))
        .unwrap();
        Api::<TrainingJob>::namespaced(env.client.clone(), ns)
            .create(&PostParams::default(), &job)
            .await
            .unwrap();
    }
    for ns in &namespaces {
        let api = Api::<TrainingJob>::namespaced(env.client.clone(), ns);
        eventually(60, &format!("{ns}/train succeeded"), || async {
            let s = api.get_opt("train").await.ok().flatten()?.status?;
            (s.phase == Some(JobPhase::Succeeded)).then_some(())
        })
        .await;
    }
    assert_eq!(env.sim.machines().len(), 6, "one machine per job");

    // Each shard's leader cached its own namespaces' jobs only; the standby none.
    let mine = |s: u32| namespaces.iter().filter(|n| owner(n) == s).count() as f64;
    let leader0 = if leads(&metrics[0]) { 0 } else { 1 };
    eventually(10, "each shard's cache counts its jobs", || async {
        (cached(&metrics[leader0], "TrainingJob") == mine(0)
            && cached(&metrics[2], "TrainingJob") == mine(1))
        .then_some(())
    })
    .await;
    assert!(leads(&metrics[2]), "shard 1 leads beside shard 0");

    // A machine whose namespace is shard 1's reports to shard 0 (started before its namespace
    // moved): shard 0 persists its heartbeat, as a standby would, for shard 1 to read.
    let moved = namespaces.iter().find(|n| owner(n) == 1).unwrap();
    let crs: Api<runctl::crd::CloudResource> = Api::namespaced(env.client.clone(), moved);
    let job: TrainingJob = serde_json::from_value(serde_json::json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": "long", "namespace": moved},
        "spec": {"placement": {"provider": "sim", "instanceType": "sim.a100"},
                 "workload": {"image": "train:1"}}
    }))
    .unwrap();
    Api::<TrainingJob>::namespaced(env.client.clone(), moved)
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let id = runctl::callback::AttemptId {
        namespace: moved.clone(),
        job: "long".into(),
        attempt: 1,
    };
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.client.clone(), moved);
    let token = eventually(30, "the attempt's token", || async {
        let s = secrets
            .get_opt(&id.token_secret_name())
            .await
            .ok()
            .flatten()?;
        runctl::callback::token::from_secret(&s)
    })
    .await;
    eventually(30, "long's machine running", || async {
        let cr = crs.get_opt("long-a1").await.ok().flatten()?;
        (cr.status?.state == Some(ResourceState::Running)).then_some(())
    })
    .await;
    // To shard 0's leader (its standby would persist it anyway).
    let leader_port = port + u16::from(leader0 == 1);
    let answer = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.10:{leader_port}/callback/{moved}/long/1/heartbeat"
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({"kind": "heartbeat"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(answer, 200);
    eventually(10, "the heartbeat persisted by shard 0", || async {
        let report = crs
            .get_opt("long-a1")
            .await
            .ok()
            .flatten()?
            .status?
            .report?;
        report.last_heartbeat_time.map(|_| ())
    })
    .await;
    assert_eq!(reconciles(&metrics[1 - leader0]), 0.0, "shard 0's standby");
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    let holder = |name: &'static str| {
        let leases = leases.clone();
        async move {
            leases
                .get(name)
                .await
                .unwrap()
                .spec
                .and_then(|s| s.holder_identity)
        }
    };
    let shard0 = holder("runctl-leader-shard-0").await.unwrap_or_default();
    assert!(shard0.starts_with("shard0-"), "{shard0}");
    assert_eq!(
        holder("runctl-leader-shard-1").await.as_deref(),
        Some("shard1-a")
    );
    stop.cancel();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
}
