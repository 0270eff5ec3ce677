//! Where the benchmark's API server and simulated cloud run:
//! - the real control plane (the default): etcd, kube-apiserver and kube-controller-manager
//!   (`runctl_envtest`, each a child process of this one that dies with it), and the simulated
//!   cloud in a child process of its own (this program run with [`SERVE_SIM_FLAG`]);
//! - runctl's API test server (`crates/apiserver`) and the sim together in a child process (this
//!   program run with [`SERVE_API_FLAG`]);
//! - both in this process (for tests).
//!
//! In the first two, this process's memory and CPU are the operator's and the driver's only, and
//! the servers' are measured apart. Either way the operator reaches the sim by HTTP
//! (`providers.sim.endpoint`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use runctl_apiserver::{ApiServer, ChildApiServer, ServerConfig};
use runctl_envtest::ControlPlane;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use runctl::provider::sim::{SimCloud, SimServer};

use super::BenchError;
use super::child::Piped;
use super::count::{CountLayer, Counts, Recorder, ServerRequests};
use super::measure::{self, Process};

/// The hidden argument that makes `runctl-bench` serve the API test server and the simulated
/// cloud (see [`serve_child`]).
pub const SERVE_API_FLAG: &str = "--serve-api";

/// The hidden argument that makes `runctl-bench` serve the simulated cloud only (see
/// [`serve_sim_child`]), beside the real control plane.
pub const SERVE_SIM_FLAG: &str = "--serve-sim";

/// The argument after [`SERVE_API_FLAG`] or [`SERVE_SIM_FLAG`] that gives the sim server's port.
const SIM_PORT_ARG: &str = "--sim-port=";

/// Spawn attempts when the sim port chosen for the child was taken in the meantime.
const SPAWN_ATTEMPTS: u32 = 3;

/// How long the sim's child process may take to start.
const SIM_STARTUP: Duration = Duration::from_secs(30);

/// Where the API server and the sim run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMode {
    /// The API test server and the sim in the benchmark's process: their memory and CPU count as
    /// the operator's.
    InProcess,
    /// The API test server and the sim in a child process: this program run with
    /// [`SERVE_API_FLAG`] (the `runctl-bench` binary). `runctl-bench --server inprocess`.
    ChildProcess(PathBuf),
    /// The real control plane (etcd, kube-apiserver, kube-controller-manager from
    /// `scripts/setup-control-plane.sh`), and the sim in a child process: this program run with
    /// [`SERVE_SIM_FLAG`]. `runctl-bench --server real`, the default.
    Real(PathBuf),
}

/// The API test server's settings in the benchmark: a watch cache as large as a real API
/// server's at this scale, so that the operator's watches are not expired by the test server's
/// small default history (10,000 events) or buffer (16,384 events per watch).
pub fn server_config() -> ServerConfig {
    ServerConfig {
        watch_history: 200_000,
        watch_buffer: 100_000,
        ..ServerConfig::default()
    }
}

/// The running servers.
pub(crate) enum BenchServer {
    InProcess(ApiServer, SimServer),
    Child(Box<ChildApiServer>, String),
    Real(Box<RealServer>),
}

/// The real control plane, the benchmark's counting client of it, and the sim's child process.
pub(crate) struct RealServer {
    plane: ControlPlane,
    client: Client,
    counts: Arc<Recorder>,
    sim: SimChild,
}

impl BenchServer {
    pub async fn start(mode: &ServerMode) -> Result<Self, BenchError> {
        let api = |e: runctl_apiserver::Error| BenchError::ApiServer(e.to_string());
        match mode {
            ServerMode::InProcess => {
                let server = ApiServer::start_with(server_config()).await.map_err(api)?;
                let cloud = Arc::new(SimCloud::new(super::sim_config()));
                let sim = SimServer::start(cloud, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                    .await
                    .map_err(|e| BenchError::ApiServer(format!("sim server: {e}")))?;
                Ok(BenchServer::InProcess(server, sim))
            }
            ServerMode::ChildProcess(program) => {
                let mut last = None;
                for _ in 0..SPAWN_ATTEMPTS {
                    let port =
                        super::free_port().map_err(|e| BenchError::ApiServer(e.to_string()))?;
                    let arg = format!("{SIM_PORT_ARG}{port}");
                    match ChildApiServer::spawn(program, [SERVE_API_FLAG, arg.as_str()]).await {
                        Ok(child) => {
                            return Ok(BenchServer::Child(
                                Box::new(child),
                                format!("http://127.0.0.1:{port}"),
                            ));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.map_or_else(|| BenchError::ApiServer("not started".into()), api))
            }
            ServerMode::Real(program) => {
                let sim = SimChild::spawn(program).await?;
                let plane = ControlPlane::start(runctl_envtest::Options::default())
                    .await
                    .map_err(|e| BenchError::ApiServer(format!("control plane: {e}")))?;
                let counts = Arc::new(Recorder::default());
                let client = counting_client(&plane, &counts).await?;
                // The API server makes namespace `default` shortly after it is ready.
                let namespaces: Api<Namespace> = Api::all(client.clone());
                let mut tries = 0;
                while namespaces
                    .get_opt(super::NAMESPACE)
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                {
                    tries += 1;
                    if tries > 150 {
                        return Err(BenchError::ApiServer(format!(
                            "namespace {} did not appear",
                            super::NAMESPACE
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(BenchServer::Real(Box::new(RealServer {
                    plane,
                    client,
                    counts,
                    sim,
                })))
            }
        }
    }

    /// What the servers are, for the progress lines and the table.
    pub fn describe(&self) -> &'static str {
        match self {
            BenchServer::InProcess(..) => "API test server + sim in this process",
            BenchServer::Child(..) => "API test server + sim in a child process",
            BenchServer::Real(..) => {
                "real control plane (etcd, kube-apiserver, kube-controller-manager) + sim in a child process"
            }
        }
    }

    /// Whether this is the real control plane.
    pub fn is_real(&self) -> bool {
        matches!(self, BenchServer::Real(_))
    }

    pub fn client(&self) -> Client {
        match self {
            BenchServer::InProcess(s, _) => s.client(),
            BenchServer::Child(c, _) => c.remote().client(),
            BenchServer::Real(r) => r.client.clone(),
        }
    }

    /// The kubeconfig of the real control plane (for the processes of a sharded run's other
    /// shards); `None` for the API test server.
    pub fn kubeconfig(&self) -> Option<&std::path::Path> {
        match self {
            BenchServer::Real(r) => Some(r.plane.kubeconfig()),
            _ => None,
        }
    }

    /// `http://127.0.0.1:PORT` of the sim server.
    pub fn sim_url(&self) -> String {
        match self {
            BenchServer::InProcess(_, sim) => sim.url(),
            BenchServer::Child(_, url) => url.clone(),
            BenchServer::Real(r) => r.sim.url.clone(),
        }
    }

    /// The servers' own processes, by name (none when they run in this process).
    pub fn processes(&self) -> Vec<(String, Process)> {
        match self {
            BenchServer::InProcess(..) => Vec::new(),
            BenchServer::Child(c, _) => c
                .pid()
                .map(|pid| ("API test server + sim".to_string(), Process::Pid(pid)))
                .into_iter()
                .collect(),
            BenchServer::Real(r) => {
                // The control plane's processes are this process's children (envtest forks
                // them), named after their binaries (`comm` holds 15 characters).
                let mut out: Vec<(String, Process)> = measure::children()
                    .into_iter()
                    .filter_map(|(comm, pid)| {
                        let name = match comm.as_str() {
                            "etcd" => "etcd",
                            "kube-apiserver" => "kube-apiserver",
                            c if c.starts_with("kube-controller") => "kube-controller-manager",
                            _ => return None,
                        };
                        Some((name.to_string(), Process::Pid(pid)))
                    })
                    .collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                if let Some(pid) = r.sim.process.child.id() {
                    out.push(("sim".to_string(), Process::Pid(pid)));
                }
                out
            }
        }
    }

    /// The requests counted since the last reset: by the API test server (every client's), or
    /// on the real control plane by the benchmark's client (the operator's and the driver's).
    pub async fn stats(&self) -> Result<Counts, BenchError> {
        match self {
            BenchServer::InProcess(s, _) => Ok(s.stats().into()),
            BenchServer::Child(c, _) => c
                .remote()
                .stats()
                .await
                .map(Counts::from)
                .map_err(|e| BenchError::Kube("reading the request counts", e)),
            BenchServer::Real(r) => Ok(r.counts.snapshot()),
        }
    }

    pub async fn reset_stats(&self) -> Result<(), BenchError> {
        match self {
            BenchServer::InProcess(s, _) => s.reset_stats(),
            BenchServer::Child(c, _) => {
                c.remote()
                    .reset_stats()
                    .await
                    .map_err(|e| BenchError::Kube("resetting the request counts", e))?;
            }
            BenchServer::Real(r) => r.counts.reset(),
        }
        Ok(())
    }

    /// What the real kube-apiserver counted from every client so far (`/metrics`); `None` for
    /// the API test server.
    pub async fn server_requests(&self) -> Result<Option<ServerRequests>, BenchError> {
        let BenchServer::Real(r) = self else {
            return Ok(None);
        };
        let request = http::Request::get("/metrics")
            .body(Vec::new())
            .map_err(|e| BenchError::ApiServer(e.to_string()))?;
        let text = r
            .client
            .request_text(request)
            .await
            .map_err(|e| BenchError::Kube("reading kube-apiserver's /metrics", e))?;
        Ok(Some(ServerRequests::parse(&text)))
    }

    pub async fn shutdown(self) {
        match self {
            BenchServer::InProcess(s, sim) => {
                sim.shutdown().await;
                s.shutdown().await;
            }
            BenchServer::Child(c, _) => c.shutdown().await,
            BenchServer::Real(r) => {
                let RealServer { plane, sim, .. } = *r;
                sim.shutdown().await;
                // Dropping the control plane kills its processes and removes its directory.
                drop(plane);
            }
        }
    }
}

/// An admin client of the control plane whose requests are counted in `counts`.
async fn counting_client(
    plane: &ControlPlane,
    counts: &Arc<Recorder>,
) -> Result<Client, BenchError> {
    let err = |e: kube::config::KubeconfigError| BenchError::ApiServer(format!("kubeconfig: {e}"));
    let kubeconfig = Kubeconfig::read_from(plane.kubeconfig()).map_err(err)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(err)?;
    let builder = ClientBuilder::try_from(config)
        .map_err(|e| BenchError::Kube("building the benchmark's client", e))?;
    Ok(builder.with_layer(&CountLayer(counts.clone())).build())
}

/// The sim served by a child process (this program with [`SERVE_SIM_FLAG`]); killed when
/// dropped, and it exits by itself when its stdin closes (this process ended).
struct SimChild {
    process: Piped,
    url: String,
}

impl SimChild {
    async fn spawn(program: &PathBuf) -> Result<Self, BenchError> {
        let fail = |what: String| BenchError::ApiServer(format!("sim child process: {what}"));
        let mut last = String::new();
        for _ in 0..SPAWN_ATTEMPTS {
            let port = super::free_port().map_err(|e| fail(e.to_string()))?;
            let mut command = Command::new(program);
            command.args([SERVE_SIM_FLAG, &format!("{SIM_PORT_ARG}{port}")]);
            match Piped::spawn(command, SIM_STARTUP).await {
                Ok((process, line)) if line.starts_with("http://") => {
                    return Ok(SimChild { process, url: line });
                }
                Ok((_, line)) => last = format!("printed {line:?} instead of its URL"),
                Err(e) => last = e,
            }
        }
        Err(fail(last))
    }

    async fn shutdown(self) {
        self.process.shutdown(Duration::from_secs(10)).await;
    }
}

/// Why the child could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The arguments after [`SERVE_API_FLAG`] or [`SERVE_SIM_FLAG`] are not `--sim-port=PORT`.
    #[error("expected {SIM_PORT_ARG}PORT after {SERVE_API_FLAG} or {SERVE_SIM_FLAG}")]
    Usage,
    /// The API test server did not start.
    #[error("API test server: {0}")]
    Api(#[from] runctl_apiserver::Error),
    /// The sim server could not listen.
    #[error("sim server: {0}")]
    Sim(#[from] std::io::Error),
}

/// The sim's child process (`runctl-bench --serve-sim --sim-port=PORT`, `args` being what follows
/// the flag): serves the benchmark's simulated cloud ([`super::sim_config`], with its reporting
/// wrapper) on `127.0.0.1:PORT`, prints its URL as one line on stdout, and serves until stdin
/// closes.
pub async fn serve_sim_child(args: &[String]) -> Result<(), ServeError> {
    let port = sim_port(args)?;
    let cloud = Arc::new(SimCloud::new(super::sim_config()));
    let sim = SimServer::start(cloud, SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    println!("{}", sim.url());
    wait_for_stdin_to_close().await;
    sim.shutdown().await;
    Ok(())
}

fn sim_port(args: &[String]) -> Result<u16, ServeError> {
    match args {
        [arg] => arg
            .strip_prefix(SIM_PORT_ARG)
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or(ServeError::Usage),
        _ => Err(ServeError::Usage),
    }
}

async fn wait_for_stdin_to_close() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// The child's side (`runctl-bench --serve-api --sim-port=PORT`, `args` being what follows the
/// flag): starts the API test server ([`server_config`]) and the benchmark's simulated cloud
/// ([`super::sim_config`], with its reporting wrapper) served on `127.0.0.1:PORT`, prints the API
/// server's URL as one line on stdout, and serves until stdin closes.
pub async fn serve_child(args: &[String]) -> Result<(), ServeError> {
    let port = sim_port(args)?;
    let cloud = Arc::new(SimCloud::new(super::sim_config()));
    let sim = SimServer::start(cloud, SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let server = ApiServer::start_with(server_config()).await?;
    println!("{}", server.url());
    wait_for_stdin_to_close().await;
    sim.shutdown().await;
    server.shutdown().await;
    Ok(())
}
