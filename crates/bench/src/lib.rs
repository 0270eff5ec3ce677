//! runctl's scale benchmark (`runctl-bench`, `docs/benchmarks.md`), a crate of its own: the
//! operator ships none of it. It starts the API test server and the simulated cloud with its
//! reporting wrapper, served over HTTP (`runctl::provider::sim::SimServer`; in a child process,
//! or in this one: [`ServerMode`]), and the operator in this process, configured with the served
//! sim's endpoint (`providers.sim.endpoint`: its sim provider is a [`RemoteSim`]), and drives N
//! TrainingJobs through their whole life: apply burst, provisioning, running, completion, TTL
//! deletion. It measures memory and CPU of this process (operator and driver) and of the
//! child's, latencies, outcomes and request counts of that one run (see [`Report`]), and prints
//! progress lines per phase on stderr. `tests/bench_small.rs` runs N = 100 and checks the counts
//! only. With [`Options::shards`] above 1 the operator runs as that many shards ([`shards`]).

mod child;
pub mod count;
pub mod measure;
pub mod report;
pub mod rss;
mod server;
pub mod shards;
mod tally;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Resource};
use tokio_util::sync::CancellationToken;

use runctl::config::OperatorConfig;
use runctl::crd::CloudResource;
use runctl::crd::training_job::{JobPhase, TrainingJob};
use runctl::operator::Operator;
use runctl::provider::sim::{RemoteSim, SimConfig, SimOp};
use runctl::provider::{Provider, ProviderRegistry, ResourceKey, ResourceState};

use measure::Process;
use report::ProcessFigures;
use rss::{Phase, Sampler};
use server::BenchServer;

pub use report::Report;
pub use server::{
    SERVE_API_FLAG, SERVE_SIM_FLAG, ServeError, ServerMode, serve_child, serve_sim_child,
};
pub use shards::{SERVE_SHARD_FLAG, serve_shard_child};

/// Namespace the jobs live in.
const NAMESPACE: &str = "default";
/// How long the watches may see no deletion before the benchmark lists what is left.
const STALL_BEFORE_LIST: Duration = Duration::from_secs(20);

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
    /// Reconciles at once per controller (`None`: the operator's default).
    pub reconcile_concurrency: Option<u16>,
    /// Longest wait for any phase.
    pub deadline: Duration,
    /// Where the API test server runs.
    pub server: ServerMode,
    /// Shards the operator runs as (1: unsharded; more: the real control plane only).
    pub shards: u32,
}

impl Options {
    /// Defaults for `n` jobs, with the API test server in this process; the deadline of each
    /// phase grows with `n` (120 s plus 30 ms per job).
    pub fn new(n: usize) -> Self {
        Self {
            n,
            poll_interval_seconds: 1,
            steady_intervals: 3,
            concurrency: 32,
            reconcile_concurrency: None,
            deadline: Duration::from_secs(120)
                + Duration::from_millis(30).saturating_mul(u32::try_from(n).unwrap_or(u32::MAX)),
            server: ServerMode::InProcess,
            shards: 1,
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

/// The simulator settings of the benchmark: EC2-like shape, scaled down in time. Ended machines
/// are kept for an hour (not the two minutes of a scaled-down EC2), so that the driver still
/// finds every machine's timeline when it computes the latencies at the end of a long run.
pub fn sim_config() -> SimConfig {
    SimConfig {
        provision_ms: 200,
        boot_ms: 1000,
        jitter_ms: 500,
        terminate_ms: 200,
        retain_ms: 3_600_000,
        ..SimConfig::default()
    }
}

/// The benchmark's TrainingJobs' placement: what their CloudResources' specs say (no region:
/// the sim's configured one).
const PLACEMENT: &str = r#"{"provider": "sim", "instanceType": "sim.a100"}"#;

/// Progress lines on stderr, so that a long run shows where it is.
struct Progress {
    n: usize,
    started: Instant,
}

impl Progress {
    fn line(&self, phase: &str, detail: &str) {
        eprintln!(
            "[runctl-bench N={}] {:>7.1} s  {phase}: {detail}",
            self.n,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Runs one size and returns what it measured.
pub async fn run(opts: &Options) -> Result<Report, BenchError> {
    let server = BenchServer::start(&opts.server).await?;
    let result = run_with(opts, &server).await;
    server.shutdown().await;
    result
}

async fn run_with(opts: &Options, server: &BenchServer) -> Result<Report, BenchError> {
    let n = opts.n;
    let progress = Progress {
        n,
        started: Instant::now(),
    };
    let pids: Vec<String> = server
        .processes()
        .iter()
        .map(|(name, p)| match p {
            Process::Pid(pid) => format!("{name} {pid}"),
            Process::This => name.clone(),
        })
        .collect();
    progress.line(
        server.describe(),
        &if pids.is_empty() {
            "in this process".to_string()
        } else {
            format!("processes: {}", pids.join(", "))
        },
    );
    let client = server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in runctl::crd::all() {
        crds.create(&PostParams::default(), &crd)
            .await
            .map_err(kube_err("installing the CRDs"))?;
    }
    if server.is_real() {
        wait_established(&crds, &progress).await?;
    }
    let raw_writes_per_second = raw_write_throughput(&client, n, opts.concurrency).await?;
    progress.line(
        "raw API write throughput",
        &format!("{raw_writes_per_second:.0} writes/s"),
    );

    // The benchmark's own two watches open before the counts start, so that the counts are the
    // operator's (and that of the driver's requests, subtracted below).
    let shutdown = CancellationToken::new();
    let namespaces = shards::namespaces(opts.shards);
    create_namespaces(&client, &namespaces).await?;
    let seen = watch::Seen::start(client.clone(), shutdown.clone());
    let mut ours = Vec::new();
    for _ in 0..100 {
        ours.push(server.stats().await?.watches_opened);
        if ours.last().is_some_and(|w| *w >= 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.reset_stats().await?;

    let port = free_port().map_err(|e| BenchError::Operator(e.to_string()))?;
    let mut config = OperatorConfig {
        installation_id: "bench".into(),
        namespace: NAMESPACE.into(),
        metrics_addr: "127.0.0.1:0".into(),
        poll_interval_seconds: opts.poll_interval_seconds,
        // Periodic accrued-cost refreshes (one status write per object and interval) would land
        // in the steady window; at 600 s they do not, so the window counts no-op writes only.
        resync_interval_seconds: 600,
        ..OperatorConfig::default()
    };
    if let Some(c) = opts.reconcile_concurrency {
        config.reconcile_concurrency = c;
    }
    config.leader_election.enabled = false;
    config.providers.sim = sim_config();
    // The simulated cloud is off unless a configuration enables it: the benchmark's jobs run
    // on nothing else.
    config.providers.sim.enabled = Some(true);
    // The operator's sim provider is a client of the served one.
    config.providers.sim.endpoint = Some(server.sim_url());
    config.jobs.callback_addr = format!("127.0.0.1:{port}");
    config.jobs.callback_url = Some(format!("http://127.0.0.1:{port}"));
    // The simulated machines run on this host.
    config.jobs.allow_cluster_internal_callback_url = true;
    let children = match (&opts.server, server.kubeconfig()) {
        (_, _) if opts.shards <= 1 => shards::ShardChildren::default(),
        (ServerMode::Real(program), Some(kubeconfig)) => {
            shards::ShardChildren::spawn(program, kubeconfig, &config, opts.shards, port).await?
        }
        _ => {
            return Err(BenchError::Operator(
                "a sharded run needs the real control plane (--server real)".into(),
            ));
        }
    };
    if opts.shards > 1 {
        shards::configure(&mut config, 0, opts.shards, port);
    }
    let sim = sim_client(server, &config)?;
    // The registry's own in-process sim stays empty: its sim provider is the served one.
    let registry = Arc::new(ProviderRegistry::new(
        config.installation_id.clone(),
        config.providers.clone(),
    ));
    let operator = Operator::from_config(client.clone(), &config, registry, "runctl-bench-0")
        .map_err(|e| BenchError::Operator(e.to_string()))?;
    let op_task = tokio::spawn(operator.run(shutdown.clone()));
    let outcome = drive(
        opts,
        server,
        &client,
        &Setup {
            config: &config,
            namespaces: &namespaces,
            children: &children,
        },
        &sim,
        &seen,
        &progress,
    )
    .await;
    shutdown.cancel();
    children.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), op_task).await;
    let mut report = outcome?;
    report.raw_writes_per_second = raw_writes_per_second;
    report.create_throughput_ratio = report.creates_per_second / raw_writes_per_second.max(1e-9);
    Ok(report)
}

/// The driver's own client of the served sim, in the installation and region of the jobs. Its
/// connections are not the operator's: a client that listed every machine holds that answer's
/// read buffer while it lives, so the list it times has a client of its own, dropped after.
fn sim_client(server: &BenchServer, config: &OperatorConfig) -> Result<RemoteSim, BenchError> {
    RemoteSim::new(
        &server.sim_url(),
        &config.installation_id,
        &config.providers.sim.region,
        &config.providers.sim,
    )
    .map_err(|e| BenchError::Operator(format!("sim client: {e}")))
}

fn sim_err(what: &'static str) -> impl Fn(runctl::provider::ProviderError) -> BenchError {
    move |e| BenchError::Operator(format!("{what}: {e}"))
}

/// Waits until every CRD is established (the real API server serves a CRD's resources only
/// then).
async fn wait_established(
    crds: &Api<CustomResourceDefinition>,
    progress: &Progress,
) -> Result<(), BenchError> {
    let names: Vec<String> = runctl::crd::all()
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    wait(
        Duration::from_secs(60),
        progress,
        "CRDs established",
        || async {
            let mut established = 0;
            for name in &names {
                if let Ok(crd) = crds.get(name).await
                    && crd
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                {
                    established += 1;
                }
            }
            (
                established == names.len(),
                format!("{established} of {}", names.len()),
            )
        },
    )
    .await
}

/// Memory and CPU of the benchmark process and of the servers' processes, if any.
struct Meter {
    servers: Vec<(String, Process)>,
    cpu0: (f64, Vec<f64>),
    base: (u64, Vec<u64>),
}

impl Meter {
    /// Resets every peak and takes the base figures.
    fn start(servers: Vec<(String, Process)>) -> Self {
        measure::reset_peak_rss(Process::This);
        for (_, p) in &servers {
            measure::reset_peak_rss(*p);
        }
        let server_cpu = servers
            .iter()
            .map(|(_, p)| measure::cpu_seconds(*p))
            .collect();
        let server_rss = servers
            .iter()
            .map(|(_, p)| measure::rss_kib(*p).0)
            .collect();
        Meter {
            servers,
            cpu0: (measure::cpu_seconds(Process::This), server_cpu),
            base: (measure::rss_kib(Process::This).0, server_rss),
        }
    }

    /// RSS of this process and of each server process now.
    fn rss(&self) -> (u64, Vec<u64>) {
        (
            measure::rss_kib(Process::This).0,
            self.servers
                .iter()
                .map(|(_, p)| measure::rss_kib(*p).0)
                .collect(),
        )
    }

    /// This process's figures from the start to now, and each server process's.
    fn finish(&self, steady: &(u64, Vec<u64>)) -> (ProcessFigures, Vec<(String, ProcessFigures)>) {
        let this = ProcessFigures {
            peak_rss_kib: measure::rss_kib(Process::This).1,
            steady_rss_kib: steady.0,
            base_rss_kib: self.base.0,
            cpu_seconds: measure::cpu_seconds(Process::This) - self.cpu0.0,
        };
        let servers = self
            .servers
            .iter()
            .enumerate()
            .map(|(i, (name, p))| {
                (
                    name.clone(),
                    ProcessFigures {
                        peak_rss_kib: measure::rss_kib(*p).1,
                        steady_rss_kib: steady.1.get(i).copied().unwrap_or(0),
                        base_rss_kib: self.base.1.get(i).copied().unwrap_or(0),
                        cpu_seconds: measure::cpu_seconds(*p)
                            - self.cpu0.1.get(i).copied().unwrap_or(0.0),
                    },
                )
            })
            .collect();
        (this, servers)
    }
}

/// What a run was set up with: the operator's configuration (shard 0's in a sharded run), the
/// jobs' namespaces and the other shards' processes.
struct Setup<'a> {
    config: &'a OperatorConfig,
    namespaces: &'a [String],
    children: &'a shards::ShardChildren,
}

/// The measured part of a run: the operator runs; the jobs go through their whole life.
async fn drive(
    opts: &Options,
    server: &BenchServer,
    client: &Client,
    setup: &Setup<'_>,
    sim: &RemoteSim,
    seen: &watch::Seen,
    progress: &Progress,
) -> Result<Report, BenchError> {
    let n = opts.n;
    // Start-up: the operator lists and opens its watches; wait until no new watch opened for
    // half a second (at most 10 s).
    let mut watches_startup = 0;
    let mut quiet = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let opened = server.stats().await?.watches_opened;
        quiet = if opened == watches_startup {
            quiet + 1
        } else {
            0
        };
        watches_startup = opened;
        if watches_startup > 0 && quiet >= 2 {
            break;
        }
    }
    progress.line(
        "operator started",
        &format!("{watches_startup} watch streams opened"),
    );

    server.reset_stats().await?;
    let server_requests0 = server.server_requests().await?;
    let mut processes = server.processes();
    processes.extend(setup.children.processes());
    let meter = Meter::start(processes);
    let lists0 = seen.lists();
    let sampler = Sampler::start(Duration::from_secs(1));
    let started = Instant::now();

    // Apply burst.
    let applied: HashMap<String, Timestamp> = futures::stream::iter(0..n)
        .map(|i| {
            let namespace = &setup.namespaces[i % setup.namespaces.len()];
            let jobs: Api<TrainingJob> = Api::namespaced(client.clone(), namespace);
            async move {
                let name = format!("bench-{i}");
                jobs.create(&PostParams::default(), &job(&name, namespace))
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
    progress.line("applied", &format!("{n} jobs"));
    sampler.enter(Phase::Provisioning);

    // Every machine running, and every status showing it.
    wait(opts.deadline, progress, "every machine to run", || async {
        match sim.summary().await {
            Ok(s) => {
                let running = s.in_state(ResourceState::Running);
                (
                    running == n,
                    format!("{running} of {n} running, {} made", s.machines_created),
                )
            }
            Err(e) => (false, format!("sim summary: {e}")),
        }
    })
    .await?;
    let creates_done = started.elapsed();
    wait(
        opts.deadline,
        progress,
        "every status to show Running",
        || async {
            let running = seen.count(ResourceState::Running);
            (running == n, format!("{running} of {n}"))
        },
    )
    .await?;
    sampler.enter(Phase::Steady);

    // Steady window: nothing changes, so nothing may be written. The first heartbeat of each
    // machine (sent when it started running) is picked up within one poll first.
    let poll = Duration::from_secs(opts.poll_interval_seconds.max(1));
    tokio::time::sleep(poll + Duration::from_millis(500)).await;
    let writes0 = server.stats().await?;
    let sim0 = sim.summary().await.map_err(sim_err("sim summary"))?;
    let window = Instant::now();
    tokio::time::sleep(poll * opts.steady_intervals.max(1)).await;
    let intervals = window.elapsed().as_secs_f64() / poll.as_secs_f64();
    let writes1 = server.stats().await?;
    let sim1 = sim.summary().await.map_err(sim_err("sim summary"))?;
    let steady_rss = meter.rss();
    let noop_writes = writes1.writes().saturating_sub(writes0.writes());
    let calls = |op| (sim1.calls(op).saturating_sub(sim0.calls(op))) as f64 / intervals;
    let list_calls_per_interval = calls(SimOp::List);
    let observe_calls_per_interval = calls(SimOp::Observe);
    progress.line(
        "steady window",
        &format!("{intervals:.1} intervals, {noop_writes} writes"),
    );

    let observe_vs_list = batched_vs_single(&sim_client(server, setup.config)?).await?;

    // Completion: every workload exits 0; the wrapper reports it; TTL deletes the jobs. The
    // benchmark's watches see the deletions; a list confirms them (and its reads are not the
    // operator's). The list runs only when the watches say everything is gone or have seen no
    // deletion for a while: a list of 10,000 objects costs the benchmark process (whose RSS is
    // the operator's figure) a few hundred MiB while it is decoded.
    sampler.enter(Phase::Completion);
    let exited = sim
        .exit_all(0)
        .await
        .map_err(sim_err("exiting the workloads"))?;
    progress.line("completion", &format!("{exited} workloads exited"));
    let jobs: Api<TrainingJob> = Api::all(client.clone());
    let crs: Api<CloudResource> = Api::all(client.clone());
    let mut driver_lists = 0u64;
    let mut left = (n, n);
    let mut last_list = Instant::now();
    let mut last_line = Instant::now();
    let mut deleting = false;
    let completion = Instant::now();
    let mut gone_before = (0, 0);
    let mut last_change = Instant::now();
    loop {
        if !deleting && seen.finished() >= n {
            sampler.enter(Phase::Deletion);
            deleting = true;
        }
        let (jobs_gone, crs_gone) = seen.deleted();
        if (jobs_gone, crs_gone) != gone_before {
            gone_before = (jobs_gone, crs_gone);
            last_change = Instant::now();
        }
        let stalled =
            last_change.elapsed() >= STALL_BEFORE_LIST && last_list.elapsed() >= STALL_BEFORE_LIST;
        if (jobs_gone >= n && crs_gone >= n) || stalled {
            let lp = ListParams::default();
            let j = jobs.list_metadata(&lp).await;
            let c = crs.list_metadata(&lp).await;
            driver_lists += 1;
            last_list = Instant::now();
            if let (Ok(j), Ok(c)) = (j, c) {
                left = (j.items.len(), c.items.len());
                if left == (0, 0) {
                    break;
                }
            }
        }
        if completion.elapsed() >= opts.deadline {
            return Err(BenchError::Timeout(format!(
                "every job to be deleted after its TTL ({} jobs, {} CloudResources left; jobs by last phase: {:?})",
                left.0,
                left.1,
                seen.phases()
            )));
        }
        if last_line.elapsed() >= Duration::from_secs(10) {
            progress.line(
                "waiting for TTL deletion",
                &format!(
                    "{} jobs ended, {jobs_gone} jobs, {crs_gone} CloudResources deleted",
                    seen.finished()
                ),
            );
            last_line = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    progress.line("deleted", &format!("{n} jobs and CloudResources"));
    let rss_by_phase = sampler.finish();
    let (this, measured) = meter.finish(&steady_rss);
    let shard_names: Vec<String> = setup
        .children
        .processes()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let (shard_processes, server_processes): (Vec<_>, Vec<_>) = measured
        .into_iter()
        .partition(|(name, _)| shard_names.contains(name));
    let stats = server.stats().await?;
    let server_requests = match (server.server_requests().await?, server_requests0) {
        (Some(end), Some(start)) => Some(end.since(&start)),
        _ => None,
    };
    let (server_writes, server_failed_writes) = server_requests
        .as_ref()
        .map(count::ServerRequests::writes)
        .unwrap_or_default();
    let lists1 = seen.lists();
    let summary = sim.summary().await.map_err(sim_err("sim summary"))?;
    let machines = sim.machines().await.map_err(sim_err("sim machines"))?;

    let (apply_to_create, status_lag) =
        tally::latencies(&machines, setup.namespaces, &applied, |cr, state| {
            seen.first(cr, state)
        });
    // Outcomes, from what the jobs' statuses said last.
    let outcomes = seen.outcomes();
    let failed = tally::not_succeeded(applied.keys(), &outcomes);
    // Requests: the driver's own (job creates, deletion-check lists, its watches' relists) are
    // not the operator's.
    let driver_relists = (lists1.0 - lists0.0, lists1.1 - lists0.1);
    let driver = BTreeMap::from([
        (
            format!("{}.{}", TrainingJob::plural(&()), TrainingJob::group(&())),
            driver_lists + driver_relists.0,
        ),
        (
            format!(
                "{}.{}",
                CloudResource::plural(&()),
                CloudResource::group(&())
            ),
            driver_lists + driver_relists.1,
        ),
    ]);
    let requests = tally::operator_requests(&stats, &driver);
    Ok(Report {
        n,
        succeeded: outcomes
            .values()
            .filter(|o| o.phase == JobPhase::Succeeded)
            .count(),
        phases: seen.phases(),
        failed,
        exit_reports_given_up: summary.exit_reports_given_up,
        machines_created: summary.machines_created,
        machines_leaked: summary.live_total,
        objects_left: left.0 + left.1,
        server_in_process: server_processes.is_empty(),
        server_kind: server.describe().to_string(),
        peak_rss_kib: this.peak_rss_kib,
        steady_rss_kib: this.steady_rss_kib,
        base_rss_kib: this.base_rss_kib,
        cpu_seconds: this.cpu_seconds,
        rss_by_phase,
        server: (!server_processes.is_empty()).then(|| ProcessFigures::sum(&server_processes)),
        server_processes,
        shards: opts.shards,
        shard_processes,
        wall_seconds,
        apply_to_create,
        status_lag,
        reads_per_job: requests.reads as f64 / n.max(1) as f64,
        writes_per_job: requests.writes.saturating_sub(n as u64) as f64 / n.max(1) as f64,
        watches_startup,
        watches: stats.watches_opened,
        watches_open: writes1.watches_open,
        operator_lists: requests.lists,
        driver_relists: driver_relists.0 + driver_relists.1,
        list_calls_per_interval,
        observe_calls_per_interval,
        noop_writes,
        create_throughput_ratio: 0.0,
        raw_writes_per_second: 0.0,
        creates_per_second: n as f64 / creates_done.as_secs_f64().max(1e-3),
        observe_vs_list,
        noop_writes_by_resource: writes_by_resource(&writes0, &writes1),
        writes_per_job_by_resource: writes_by_resource(&Default::default(), &stats)
            .into_iter()
            .map(|(k, v)| (k, v as f64 / n.max(1) as f64))
            .collect(),
        server_writes_per_job_by_resource: server_writes
            .into_iter()
            .map(|(k, v)| (k, v as f64 / n.max(1) as f64))
            .collect(),
        server_failed_writes,
    })
}

/// Writes per resource between two snapshots (to name what a no-op reconcile wrote).
fn writes_by_resource(a: &count::Counts, b: &count::Counts) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (verb, resource, count) in b.iter() {
        let before = a.count(verb, resource);
        if verb.is_write() && count > before {
            *out.entry(format!("{verb:?} {resource}")).or_default() += count - before;
        }
    }
    out
}

/// A TrainingJob in `namespace` whose workload runs until the benchmark ends it; deleted 1 s
/// after it ends.
fn job(name: &str, namespace: &str) -> TrainingJob {
    let placement: serde_json::Value =
        serde_json::from_str(PLACEMENT).unwrap_or(serde_json::Value::Null);
    let value = serde_json::json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "placement": placement,
            "workload": {"image": "bench"},
            "retryOn": [],
            "ttlSecondsAfterFinished": 1
        }
    });
    // The literal above is a valid TrainingJob; a failure here is a bug of this file.
    serde_json::from_value(value).expect("the benchmark's TrainingJob is valid")
}

/// Creates the namespaces of a sharded run (`default` exists already).
async fn create_namespaces(client: &Client, namespaces: &[String]) -> Result<(), BenchError> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for name in namespaces.iter().filter(|n| n.as_str() != NAMESPACE) {
        let mut ns = k8s_openapi::api::core::v1::Namespace::default();
        ns.meta_mut().name = Some(name.clone());
        api.create(&PostParams::default(), &ns)
            .await
            .map_err(kube_err("creating the jobs' namespaces"))?;
    }
    Ok(())
}

/// Creates `n` ConfigMaps as fast as the client can and returns writes per second: the API
/// server's raw write throughput on this machine, now (the same server the operator then uses,
/// in the same run).
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

/// Time of one observe call per machine over the time of one list call, same machines (both
/// through one client of the served sim, as the operator calls it; the machines are those of
/// the timed list, so the driver holds no more of them than the operator's own poll does).
async fn batched_vs_single(sim: &RemoteSim) -> Result<f64, BenchError> {
    let t = Instant::now();
    let machines = sim.list().await.map_err(sim_err("sim list"))?;
    let list = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for m in &machines {
        let key = ResourceKey {
            installation: "bench".into(),
            namespace: NAMESPACE.into(),
            name: m.name.clone().unwrap_or_default(),
            uid: m.owner_uid.clone().unwrap_or_default(),
            attempt: m.attempt.unwrap_or(1),
        };
        let _ = sim.observe(&key, Some(&m.id)).await;
    }
    Ok(t.elapsed().as_secs_f64() / list.max(1e-9))
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Polls `poll` (done, status line) every 250 ms until it is done, printing the status every
/// 10 s; times out after `deadline`.
async fn wait<F, Fut>(
    deadline: Duration,
    progress: &Progress,
    what: &str,
    mut poll: F,
) -> Result<(), BenchError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = (bool, String)>,
{
    let start = Instant::now();
    let mut last_line = Instant::now();
    loop {
        let (done, status) = poll().await;
        if done {
            progress.line(what, &format!("done ({status})"));
            return Ok(());
        }
        if start.elapsed() >= deadline {
            return Err(BenchError::Timeout(format!("{what} ({status})")));
        }
        if last_line.elapsed() >= Duration::from_secs(10) {
            progress.line(what, &status);
            last_line = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
