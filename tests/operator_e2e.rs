//! The operator process end to end: leader election between two replicas, preflight errors of
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

fn replica(env: &TestEnv, identity: &str) -> Operator {
    let mut config = OperatorConfig {
        installation_id: "test".into(),
        namespace: env.ns.clone(),
        watch_namespace: env.is_real().then(|| env.ns.clone()),
        poll_interval_seconds: 1,
        ..OperatorConfig::default()
    };
    config.leader_election.lease_duration_seconds = 15;
    config.leader_election.renew_interval_seconds = 1;
    config.providers = env.providers.clone();
    let registry = Arc::new(ProviderRegistry::with_sim(
        "test",
        env.providers.clone(),
        env.sim.clone(),
    ));
    let mut op =
        Operator::from_config(env.client.clone(), &config, registry, identity).expect("operator");
    op.http_addr = None;
    op.callback_addr = None;
    op.controllers.transition_poll_interval = Duration::from_millis(200);
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
