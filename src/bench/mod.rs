//! The scale benchmark (`runctl-bench`, `docs/benchmarks.md`): starts the API test server and
//! the operator (sim provider, simulated reporting wrapper) in this process and drives N
//! TrainingJobs through their whole life: apply burst, provisioning, running, completion, TTL
//! deletion. It measures memory, CPU, latencies and request counts of that one run; see
//! [`Report`]. `tests/bench_small.rs` runs N = 100 and checks the counts only.

pub mod measure;
pub mod report;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Resource};
use runctl_apiserver::ApiServer;
use tokio_util::sync::CancellationToken;

use crate::config::OperatorConfig;
use crate::crd::CloudResource;
use crate::crd::training_job::TrainingJob;
use crate::operator::Operator;
use crate::provider::identity::TAG_OWNER;
use crate::provider::sim::{SimCloud, SimConfig, SimOp, SimProvider};
use crate::provider::{Provider, ProviderRegistry, ResourceKey, ResourceState};

pub use report::Report;

/// Namespace the jobs live in.
const NAMESPACE: &str = "default";

/// Settings of one benchmark size.
#[derive(Clone, Debug)]
pub struct Options {
    /// Jobs.
    pub n: usize,
    /// The operator's provider poll interval in seconds.
    pub poll_interval_seconds: u64,
    /// Poll intervals in the steady window (all running, nothing changes).
    pub steady_intervals: u32,
    /// Requests the benchmark's client keeps in flight when it applies.
    pub concurrency: usize,
    /// Longest wait for any phase.
    pub deadline: Duration,
}

impl Options {
    /// Defaults for `n` jobs.
    pub fn new(n: usize) -> Self {
        Self {
            n,
            poll_interval_seconds: 1,
            steady_intervals: 3,
            concurrency: 32,
            deadline: Duration::from_secs(300),
        }
    }
}

/// Why a benchmark run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The API test server did not start.
    #[error("API test server: {0}")]
    ApiServer(String),
    /// A Kubernetes request failed.
    #[error("{0}: {1}")]
    Kube(&'static str, kube::Error),
    /// The operator could not be built.
    #[error("operator: {0}")]
    Operator(String),
    /// A phase did not finish before the deadline.
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

fn kube_err(what: &'static str) -> impl Fn(kube::Error) -> BenchError {
    move |e| BenchError::Kube(what, e)
}

/// The simulator settings of the benchmark: EC2-like shape, scaled down in time.
pub fn sim_config() -> SimConfig {
    SimConfig {
        provision_ms: 200,
        boot_ms: 1000,
        jitter_ms: 500,
        terminate_ms: 200,
        retain_ms: 120_000,
        ..SimConfig::default()
    }
}

/// Runs one size and returns what it measured.
pub async fn run(opts: &Options) -> Result<Report, BenchError> {
    let n = opts.n;
    let server = ApiServer::start()
        .await
        .map_err(|e| BenchError::ApiServer(e.to_string()))?;
    let client = server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crate::crd::all() {
        crds.create(&PostParams::default(), &crd)
            .await
            .map_err(kube_err("installing the CRDs"))?;
    }
    let raw_writes_per_second = raw_write_throughput(&client, n, opts.concurrency).await?;

    let port = free_port().map_err(|e| BenchError::Operator(e.to_string()))?;
    let sim = sim_config();
    let mut config = OperatorConfig {
        installation_id: "bench".into(),
        namespace: NAMESPACE.into(),
        metrics_addr: "127.0.0.1:0".into(),
        poll_interval_seconds: opts.poll_interval_seconds,
        ..OperatorConfig::default()
    };
    config.leader_election.enabled = false;
    config.providers.sim = sim.clone();
    config.jobs.callback_addr = format!("127.0.0.1:{port}");
    config.jobs.callback_url = format!("http://127.0.0.1:{port}");
    let cloud = Arc::new(SimCloud::new(sim));
    let registry = Arc::new(ProviderRegistry::with_sim(
        "bench",
        config.providers.clone(),
        cloud.clone(),
    ));
    let operator = Operator::from_config(client.clone(), &config, registry, "runctl-bench-0")
        .map_err(|e| BenchError::Operator(e.to_string()))?;
    let shutdown = CancellationToken::new();
    let op_task = tokio::spawn(operator.run(shutdown.clone()));
    let seen = watch::Seen::start(client.clone(), NAMESPACE, shutdown.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    measure::reset_peak_rss();
    let (base_rss_kib, _) = measure::rss_kib();
    let cpu0 = measure::cpu_seconds();
    server.reset_stats();
    let started = Instant::now();

    // Apply burst.
    let jobs: Api<TrainingJob> = Api::namespaced(client.clone(), NAMESPACE);
    let applied: HashMap<String, Timestamp> = futures::stream::iter(0..n)
        .map(|i| {
            let jobs = jobs.clone();
            async move {
                let name = format!("bench-{i}");
                jobs.create(&PostParams::default(), &job(&name))
                    .await
                    .map(|_| (name, Timestamp::now()))
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(kube_err("applying the jobs"))?;

    // Every machine running, and every status showing it.
    let running = || {
        cloud
            .machines()
            .iter()
            .filter(|m| m.state == ResourceState::Running)
            .count()
    };
    wait(opts.deadline, "every machine to run", || running() == n)
        .await
        .map_err(|_| {
            BenchError::Timeout(format!(
                "every machine to run ({} of {n} running, {} made)",
                running(),
                cloud.stats().machines_created
            ))
        })?;
    let creates_done = started.elapsed();
    wait(opts.deadline, "every status to show Running", || {
        seen.count(ResourceState::Running) == n
    })
    .await
    .map_err(|_| {
        BenchError::Timeout(format!(
            "every status to show Running ({} of {n})",
            seen.count(ResourceState::Running)
        ))
    })?;

    // Steady window: nothing changes, so nothing may be written. The first heartbeat of each
    // machine (sent when it started running) is picked up within one poll first.
    let poll = Duration::from_secs(opts.poll_interval_seconds.max(1));
    tokio::time::sleep(poll + Duration::from_millis(500)).await;
    let writes0 = server.stats();
    let sim0 = cloud.stats();
    let window = Instant::now();
    tokio::time::sleep(poll * opts.steady_intervals.max(1)).await;
    let intervals = window.elapsed().as_secs_f64() / poll.as_secs_f64();
    let writes1 = server.stats();
    let sim1 = cloud.stats();
    let (steady_rss_kib, _) = measure::rss_kib();
    let noop_writes = writes1.writes().saturating_sub(writes0.writes());
    let calls = |op| (sim1.calls(op).saturating_sub(sim0.calls(op))) as f64 / intervals;
    let list_calls_per_interval = calls(SimOp::List);
    let observe_calls_per_interval = calls(SimOp::Observe);

    let observe_vs_list = batched_vs_single(&cloud).await;

    // Completion: every workload exits 0; the wrapper reports it; TTL deletes the jobs.
    for m in cloud.machines() {
        let _ = cloud.exit(&m.id, 0);
    }
    let crs: Api<CloudResource> = Api::namespaced(client.clone(), NAMESPACE);
    wait_async(
        opts.deadline,
        "every job to be deleted after its TTL",
        || {
            let (jobs, crs) = (jobs.clone(), crs.clone());
            async move {
                let lp = ListParams::default().limit(1);
                let j = jobs.list_metadata(&lp).await.map(|l| l.items.is_empty());
                let c = crs.list_metadata(&lp).await.map(|l| l.items.is_empty());
                matches!((j, c), (Ok(true), Ok(true)))
            }
        },
    )
    .await?;
    let wall_seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = measure::cpu_seconds() - cpu0;
    let (_, peak_rss_kib) = measure::rss_kib();
    let stats = server.stats();
    let machines = cloud.machines();

    // Latencies.
    let mut apply_to_create = Vec::new();
    let mut status_lag = Vec::new();
    for m in &machines {
        let Some(cr) = m
            .tags
            .get(TAG_OWNER)
            .and_then(|o| o.strip_prefix(&format!("{NAMESPACE}/")))
        else {
            continue;
        };
        let job = cr.strip_suffix("-a1").unwrap_or(cr);
        if let Some(at) = applied.get(job) {
            apply_to_create.push(ms_between(*at, m.created_at));
        }
        for s in &m.timeline {
            if matches!(s.state, ResourceState::Running | ResourceState::Terminated)
                && let Some(observed) = seen.first(cr, s.state)
            {
                status_lag.push(ms_between(cloud.timestamp(s.since), observed));
            }
        }
    }
    let mut reads = 0;
    let mut writes = 0;
    let mut watches = 0;
    for (verb, _, count) in stats.iter() {
        use runctl_apiserver::Verb;
        match verb {
            Verb::Get | Verb::List => reads += count,
            Verb::Watch => watches += count,
            _ => writes += count,
        }
    }
    let report = Report {
        n,
        succeeded: seen.succeeded(),
        machines_created: cloud.stats().machines_created,
        machines_leaked: cloud.live_total(),
        objects_left: 0,
        peak_rss_kib,
        steady_rss_kib,
        base_rss_kib,
        cpu_seconds,
        wall_seconds,
        apply_to_create_ms: (
            measure::quantile(&mut apply_to_create, 0.5),
            measure::quantile(&mut apply_to_create, 0.99),
        ),
        status_lag_ms: (
            measure::quantile(&mut status_lag, 0.5),
            measure::quantile(&mut status_lag, 0.99),
        ),
        // The benchmark's own job creates are not the operator's.
        reads_per_job: reads as f64 / n.max(1) as f64,
        writes_per_job: writes.saturating_sub(n as u64) as f64 / n.max(1) as f64,
        watches,
        list_calls_per_interval,
        observe_calls_per_interval,
        noop_writes,
        create_throughput_ratio: 0.0,
        raw_writes_per_second,
        creates_per_second: n as f64 / creates_done.as_secs_f64().max(1e-3),
        observe_vs_list,
        noop_writes_by_resource: writes_by_resource(&writes0, &writes1),
    };
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), op_task).await;
    server.shutdown().await;
    Ok(Report {
        create_throughput_ratio: report.creates_per_second / report.raw_writes_per_second.max(1e-9),
        ..report
    })
}

/// Writes per resource between two snapshots (to name what a no-op reconcile wrote).
fn writes_by_resource(
    a: &runctl_apiserver::RequestStats,
    b: &runctl_apiserver::RequestStats,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (verb, resource, count) in b.iter() {
        let before = a.count(verb, resource);
        if verb.is_write() && count > before {
            *out.entry(format!("{verb:?} {resource}")).or_default() += count - before;
        }
    }
    out
}

/// A TrainingJob whose workload runs until the benchmark ends it; deleted 1 s after it ends.
fn job(name: &str) -> TrainingJob {
    let value = serde_json::json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "placement": {"provider": "sim", "instanceType": "sim.a100"},
            "workload": {"image": "bench"},
            "retryOn": [],
            "ttlSecondsAfterFinished": 1
        }
    });
    // The literal above is a valid TrainingJob; a failure here is a bug of this file.
    serde_json::from_value(value).expect("the benchmark's TrainingJob is valid")
}

/// Creates `n` ConfigMaps as fast as the client can and returns writes per second: the API
/// test server's raw write throughput on this machine, now.
async fn raw_write_throughput(
    client: &Client,
    n: usize,
    concurrency: usize,
) -> Result<f64, BenchError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let start = Instant::now();
    let results: Vec<Result<ConfigMap, kube::Error>> = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let mut cm = ConfigMap::default();
                cm.meta_mut().name = Some(format!("raw-{i}"));
                cm.data = Some(BTreeMap::from([("k".to_string(), "v".to_string())]));
                api.create(&PostParams::default(), &cm).await
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let secs = start.elapsed().as_secs_f64().max(1e-3);
    for r in results {
        r.map_err(kube_err("raw write throughput"))?;
    }
    Ok(n as f64 / secs)
}

/// Time of one observe call per machine over the time of one list call, same machines.
async fn batched_vs_single(cloud: &Arc<SimCloud>) -> f64 {
    let region = cloud.config().region.clone();
    let provider = SimProvider::new(cloud.clone(), "bench", region);
    let machines = cloud.machines();
    let t = Instant::now();
    let _ = provider.list().await;
    let list = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for m in &machines {
        let key = ResourceKey {
            installation: "bench".into(),
            namespace: NAMESPACE.into(),
            name: m.name.clone(),
            uid: m.owner_uid.clone().unwrap_or_default(),
            attempt: m.attempt.unwrap_or(1),
        };
        let _ = provider.observe(&key, Some(&m.id)).await;
    }
    t.elapsed().as_secs_f64() / list.max(1e-9)
}

fn ms_between(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64() * 1000.0
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait(
    deadline: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> Result<(), BenchError> {
    wait_async(deadline, what, || std::future::ready(done())).await
}

async fn wait_async<F, Fut>(deadline: Duration, what: &str, mut done: F) -> Result<(), BenchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < deadline {
        if done().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BenchError::Timeout(what.to_string()))
}
