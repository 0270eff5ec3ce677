//! `runctl demo`: the real operator (the code `runctl run` uses) against an embedded, in-process
//! instance of the API test server and the simulated cloud. It applies the example manifests in
//! `examples/sim/`, prints a live table of the machines until they settle, then deletes them all
//! and shows that no machine is left behind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;

use crate::config::OperatorConfig;
use crate::controller::FIELD_MANAGER;
use crate::crd::cloud_resource::ResourceState;
use crate::crd::training_job::JobPhase;
use crate::crd::{CloudResource, TrainingJob};
use crate::operator::Operator;
use crate::provider::ProviderRegistry;
use crate::provider::sim::{SimCloud, SimConfig};

/// The example TrainingJob the demo applies.
pub const JOB_EXAMPLE: (&str, &str) = (
    "trainingjob.yaml",
    include_str!("../examples/sim/trainingjob.yaml"),
);

/// The example CloudResources the demo applies (embedded so the demo runs from any directory).
pub const EXAMPLES: [(&str, &str); 4] = [
    (
        "train-a100.yaml",
        include_str!("../examples/sim/train-a100.yaml"),
    ),
    (
        "notebook-h100.yaml",
        include_str!("../examples/sim/notebook-h100.yaml"),
    ),
    (
        "spot-a100.yaml",
        include_str!("../examples/sim/spot-a100.yaml"),
    ),
    (
        "failing-job.yaml",
        include_str!("../examples/sim/failing-job.yaml"),
    ),
];

/// Demo failures.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The embedded API server did not start.
    #[error("failed to start the embedded API server: {0}")]
    ApiServer(String),
    /// A Kubernetes call failed.
    #[error("Kubernetes API call failed while {step}: {source}")]
    Kube {
        /// What the demo was doing.
        step: &'static str,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// An example manifest did not parse.
    #[error("example {file} does not parse: {source}")]
    Example {
        /// File name.
        file: &'static str,
        /// Cause.
        #[source]
        source: serde_yaml::Error,
    },
    /// The operator failed.
    #[error(transparent)]
    Operator(#[from] crate::operator::OperatorError),
    /// Things did not settle in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}

fn kube_err(step: &'static str) -> impl FnOnce(kube::Error) -> DemoError {
    move |source| DemoError::Kube { step, source }
}

/// Parses the embedded examples.
pub fn examples() -> Result<Vec<CloudResource>, DemoError> {
    EXAMPLES
        .iter()
        .map(|(file, text)| {
            serde_yaml::from_str::<CloudResource>(text)
                .map_err(|source| DemoError::Example { file, source })
        })
        .collect()
}

fn sim_config() -> SimConfig {
    SimConfig {
        provision_ms: 1_500,
        boot_ms: 4_000,
        ..SimConfig::default()
    }
}

fn fmt_money(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

/// The machines' table: provider, type, state, reason, price, accrued cost and provider id.
fn render(crs: &[CloudResource]) -> String {
    let mut out = format!(
        "{:<15} {:<9} {:<14} {:<12} {:<18} {:>8} {:>9}  {}\n",
        "NAME", "PROVIDER", "TYPE", "STATE", "REASON", "$/H", "ACCRUED", "PROVIDER-ID"
    );
    for cr in crs {
        let s = cr.status.clone().unwrap_or_default();
        out.push_str(&format!(
            "{:<15} {:<9} {:<14} {:<12} {:<18} {:>8} {:>9}  {}\n",
            cr.name_any(),
            cr.spec.provider.as_str(),
            s.machine_type
                .as_deref()
                .or(cr.spec.instance_type.as_deref())
                .unwrap_or("-"),
            s.state.map_or("Pending", ResourceState::as_str),
            s.reason.as_deref().unwrap_or("-"),
            fmt_money(s.cost_per_hour),
            fmt_money(s.accrued_cost),
            s.provider_id.as_deref().unwrap_or("-"),
        ));
    }
    out
}

/// The jobs' table: phase, reason, provider, attempts, price and cost.
fn render_jobs(jobs: &[TrainingJob]) -> String {
    let mut out = format!(
        "{:<15} {:<12} {:<14} {:<9} {:>8} {:>8} {:>9}\n",
        "TRAININGJOB", "PHASE", "REASON", "PROVIDER", "ATTEMPTS", "$/H", "COST"
    );
    for job in jobs {
        let s = job.status.clone().unwrap_or_default();
        out.push_str(&format!(
            "{:<15} {:<12} {:<14} {:<9} {:>8} {:>8} {:>9}\n",
            job.name_any(),
            s.phase
                .map_or_else(|| "-".to_string(), |p| format!("{p:?}")),
            s.reason.as_deref().unwrap_or("-"),
            s.provider.map_or("-", |p| p.as_str()),
            s.attempt_count,
            fmt_money(s.cost_per_hour),
            fmt_money(s.accrued_cost),
        ));
    }
    out
}

fn jobs_settled(jobs: &[TrainingJob]) -> bool {
    jobs.iter().all(|j| {
        j.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| matches!(p, JobPhase::Succeeded | JobPhase::Failed))
    })
}

/// True when every machine is where it will stay: ended, or running a workload with no end of
/// its own (no `RUNCTL_SIM_RUN_MS`).
fn settled(crs: &[CloudResource]) -> bool {
    crs.iter().all(|cr| {
        let ends = cr
            .spec
            .workload
            .as_ref()
            .is_some_and(|w| w.env.iter().any(|e| e.name == "RUNCTL_SIM_RUN_MS"));
        cr.status
            .as_ref()
            .and_then(|s| s.state)
            .is_some_and(|s| s.is_final() || (s == ResourceState::Running && !ends))
    })
}

/// Runs the demo; `speed` divides the simulator's timings (tests use a high speed).
pub async fn run(speed: u64) -> Result<(), DemoError> {
    let speed = speed.max(1);
    let server = runctl_apiserver::ApiServer::start()
        .await
        .map_err(|e| DemoError::ApiServer(e.to_string()))?;
    let client = server.client();
    println!(
        "runctl demo: embedded Kubernetes API test server at {}",
        server.url()
    );
    install_crds(&client).await?;
    let (config, sim) = demo_config(speed)?;
    let cloud = Arc::new(SimCloud::new(sim));
    let registry = Arc::new(ProviderRegistry::with_sim(
        "demo",
        config.providers.clone(),
        cloud.clone(),
    ));
    let mut operator = Operator::from_config(client.clone(), &config, registry, "runctl-demo-0")?;
    operator.controllers.transition_poll_interval = Duration::from_millis(500);
    let shutdown = CancellationToken::new();
    let op_task = tokio::spawn(operator.run(shutdown.clone()));

    let api: Api<CloudResource> = Api::namespaced(client.clone(), "default");
    let jobs: Api<TrainingJob> = Api::namespaced(client.clone(), "default");
    apply_examples(&api, &jobs).await?;
    let tick = Duration::from_millis(1000 / speed.min(10));
    watch_until_settled(&api, &jobs, &cloud, tick, 120 * speed.min(10)).await?;
    delete_all(&api, &jobs, tick, 60 * speed.min(10)).await?;

    let live = cloud.live_total();
    println!("\nall CloudResources deleted; machines still billing in the simulated cloud: {live}");
    shutdown.cancel();
    let _ = op_task.await;
    server.shutdown().await;
    if live != 0 {
        return Err(DemoError::Timeout("every machine to be terminated"));
    }
    println!("demo finished");
    Ok(())
}

/// Installs runctl's CRDs in the embedded API server.
async fn install_crds(client: &kube::Client) -> Result<(), DemoError> {
    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crate::crd::all() {
        crd_api
            .create(&PostParams::default(), &crd)
            .await
            .map_err(kube_err("installing the CRDs"))?;
    }
    println!("installed CRDs: cloudresources.runctl.dev, trainingjobs.runctl.dev");
    Ok(())
}

/// The operator's configuration for the demo (the simulated cloud only, short intervals, a
/// callback endpoint on this host) and the simulator's, its timings divided by `speed`.
fn demo_config(speed: u64) -> Result<(OperatorConfig, SimConfig), DemoError> {
    let mut sim = sim_config();
    sim.provision_ms /= speed;
    sim.boot_ms /= speed;
    let mut config = OperatorConfig {
        installation_id: "demo".into(),
        namespace: "default".into(),
        metrics_addr: "127.0.0.1:0".into(),
        poll_interval_seconds: 1,
        // The demo's minutes are short: show accrued cost as it grows.
        cost_refresh_seconds: 60,
        ..OperatorConfig::default()
    };
    config.providers.sim = sim.clone();
    // The simulated cloud is off unless a configuration enables it: the demo runs on nothing else.
    config.providers.sim.enabled = Some(true);
    // The simulated machines post their reports to this address, so it must be known up front.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| DemoError::ApiServer(e.to_string()))?
        .port();
    config.jobs.callback_addr = format!("127.0.0.1:{port}");
    config.jobs.callback_url = Some(format!("http://127.0.0.1:{port}"));
    // The simulated machines run on this host.
    config.jobs.allow_cluster_internal_callback_url = true;
    config.jobs.heartbeat_interval_seconds = 1;
    config.jobs.report_grace_seconds = 10;
    Ok((config, sim))
}

/// Applies the example CloudResources and the example TrainingJob in `default`.
async fn apply_examples(
    api: &Api<CloudResource>,
    jobs: &Api<TrainingJob>,
) -> Result<(), DemoError> {
    for cr in examples()? {
        let name = cr.name_any();
        apply_in_default(api, &name, &cr).await?;
        println!("applied examples/sim/{name}.yaml");
    }
    let (file, text) = JOB_EXAMPLE;
    let job: TrainingJob =
        serde_yaml::from_str(text).map_err(|source| DemoError::Example { file, source })?;
    let name = job.name_any();
    apply_in_default(jobs, &name, &job).await?;
    println!(
        "applied examples/sim/{file} (a TrainingJob: runctl makes its CloudResource {name}-a1)"
    );
    Ok(())
}

/// Applies `object` as `name` in the namespace `default` (server-side apply).
async fn apply_in_default<K>(api: &Api<K>, name: &str, object: &K) -> Result<(), DemoError>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut body = serde_json::to_value(object).map_err(|e| DemoError::ApiServer(e.to_string()))?;
    body["metadata"]["namespace"] = "default".into();
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Apply(&body),
    )
    .await
    .map_err(kube_err("applying the examples"))?;
    Ok(())
}

/// Prints the machines and jobs each time a state or phase changes, has the simulated cloud
/// reclaim the spot machine once it runs, and returns once everything has settled (or after
/// `ticks` looks).
async fn watch_until_settled(
    api: &Api<CloudResource>,
    jobs: &Api<TrainingJob>,
    cloud: &SimCloud,
    tick: Duration,
    ticks: u64,
) -> Result<(), DemoError> {
    let mut interrupted = false;
    let mut last = String::new();
    let mut settled_ticks = 0;
    for _ in 0..ticks {
        let crs = list(api, "listing machines").await?;
        let job_list = list(jobs, "listing jobs").await?;
        let spot_running = crs
            .iter()
            .find(|c| c.name_any() == "spot-a100")
            .and_then(|c| c.status.as_ref())
            .filter(|s| s.state == Some(ResourceState::Running))
            .and_then(|s| s.provider_id.clone());
        if let (false, Some(id)) = (interrupted, spot_running) {
            let _ = cloud.interrupt(&id);
            interrupted = true;
            println!("\n>>> the simulated cloud reclaims spot machine {id}");
        }
        let table = format!("{}\n{}", render(&crs), render_jobs(&job_list));
        let shape = shape(&crs, &job_list);
        if shape != last {
            println!("\n{table}");
            last = shape;
        }
        if settled(&crs) && jobs_settled(&job_list) && interrupted {
            settled_ticks += 1;
            if settled_ticks > 2 {
                println!("\nsettled:\n{table}");
                break;
            }
        }
        tokio::time::sleep(tick).await;
    }
    Ok(())
}

/// The machines' states and the jobs' phases: the table is printed again when they change.
fn shape(crs: &[CloudResource], jobs: &[TrainingJob]) -> String {
    let states: BTreeMap<String, Option<ResourceState>> = crs
        .iter()
        .map(|c| (c.name_any(), c.status.as_ref().and_then(|s| s.state)))
        .collect();
    let phases: BTreeMap<String, Option<JobPhase>> = jobs
        .iter()
        .map(|j| (j.name_any(), j.status.as_ref().and_then(|s| s.phase)))
        .collect();
    format!("{states:?}{phases:?}")
}

/// Deletes every TrainingJob and CloudResource and waits (at most `ticks` looks) until they are
/// gone, printing the machines as they change.
async fn delete_all(
    api: &Api<CloudResource>,
    jobs: &Api<TrainingJob>,
    tick: Duration,
    ticks: u64,
) -> Result<(), DemoError> {
    println!(
        "deleting the TrainingJob and every CloudResource: each running machine is terminated before its object goes away"
    );
    for job in list(jobs, "listing jobs").await? {
        jobs.delete(&job.name_any(), &DeleteParams::default())
            .await
            .map_err(kube_err("deleting the jobs"))?;
    }
    for cr in list(api, "listing machines").await? {
        api.delete(&cr.name_any(), &DeleteParams::default())
            .await
            .map_err(kube_err("deleting the machines"))?;
    }
    let mut last = String::new();
    for _ in 0..ticks {
        let crs = list(api, "listing machines").await?;
        let remaining_jobs = list(jobs, "listing jobs").await?;
        if crs.is_empty() && remaining_jobs.is_empty() {
            return Ok(());
        }
        let table = render(&crs);
        if table != last {
            println!("\n{table}");
            last = table;
        }
        tokio::time::sleep(tick).await;
    }
    Err(DemoError::Timeout("the objects to be deleted"))
}

/// Every object of `api`.
async fn list<K>(api: &Api<K>, step: &'static str) -> Result<Vec<K>, DemoError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(kube_err(step))?
        .items)
}
