//! Where the benchmark's API test server and simulated cloud run: in this process, or in a child
//! process (the benchmark binary run with [`SERVE_API_FLAG`]) so that this process's memory and
//! CPU are the operator's and the driver's only, and the server's and the sim's are measured
//! apart. Either way the operator reaches the sim by HTTP (`providers.sim.endpoint`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use kube::Client;
use runctl_apiserver::{ApiServer, ChildApiServer, RequestStats, ServerConfig};
use tokio::io::AsyncReadExt;

use runctl::provider::sim::{SimCloud, SimServer};

use super::BenchError;
use super::measure::Process;

/// The hidden argument that makes `runctl-bench` serve the API test server and the simulated
/// cloud (see [`serve_child`]).
pub const SERVE_API_FLAG: &str = "--serve-api";

/// The argument after [`SERVE_API_FLAG`] that gives the sim server's port.
const SIM_PORT_ARG: &str = "--sim-port=";

/// Spawn attempts when the sim port chosen for the child was taken in the meantime.
const SPAWN_ATTEMPTS: u32 = 3;

/// Where the API test server and the sim run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMode {
    /// In the benchmark's process: their memory and CPU count as the operator's.
    InProcess,
    /// In a child process: this program run with [`SERVE_API_FLAG`] (the `runctl-bench` binary).
    ChildProcess(PathBuf),
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
        }
    }

    pub fn client(&self) -> Client {
        match self {
            BenchServer::InProcess(s, _) => s.client(),
            BenchServer::Child(c, _) => c.remote().client(),
        }
    }

    /// `http://127.0.0.1:PORT` of the sim server.
    pub fn sim_url(&self) -> String {
        match self {
            BenchServer::InProcess(_, sim) => sim.url(),
            BenchServer::Child(_, url) => url.clone(),
        }
    }

    /// The servers' own process, if they have one.
    pub fn process(&self) -> Option<Process> {
        match self {
            BenchServer::InProcess(..) => None,
            BenchServer::Child(c, _) => c.pid().map(Process::Pid),
        }
    }

    pub async fn stats(&self) -> Result<RequestStats, BenchError> {
        match self {
            BenchServer::InProcess(s, _) => Ok(s.stats()),
            BenchServer::Child(c, _) => c
                .remote()
                .stats()
                .await
                .map_err(|e| BenchError::Kube("reading the request counts", e)),
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
        }
        Ok(())
    }

    pub async fn shutdown(self) {
        match self {
            BenchServer::InProcess(s, sim) => {
                sim.shutdown().await;
                s.shutdown().await;
            }
            BenchServer::Child(c, _) => c.shutdown().await,
        }
    }
}

/// Why the child could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The arguments after [`SERVE_API_FLAG`] are not `--sim-port=PORT`.
    #[error("expected {SIM_PORT_ARG}PORT after {SERVE_API_FLAG}")]
    Usage,
    /// The API test server did not start.
    #[error("API test server: {0}")]
    Api(#[from] runctl_apiserver::Error),
    /// The sim server could not listen.
    #[error("sim server: {0}")]
    Sim(#[from] std::io::Error),
}

/// The child's side (`runctl-bench --serve-api --sim-port=PORT`, `args` being what follows the
/// flag): starts the API test server ([`server_config`]) and the benchmark's simulated cloud
/// ([`super::sim_config`], with its reporting wrapper) served on `127.0.0.1:PORT`, prints the API
/// server's URL as one line on stdout, and serves until stdin closes.
pub async fn serve_child(args: &[String]) -> Result<(), ServeError> {
    let port = match args {
        [arg] => arg
            .strip_prefix(SIM_PORT_ARG)
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or(ServeError::Usage)?,
        _ => return Err(ServeError::Usage),
    };
    let cloud = Arc::new(SimCloud::new(super::sim_config()));
    let sim = SimServer::start(cloud, SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let server = ApiServer::start_with(server_config()).await?;
    println!("{}", server.url());
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    sim.shutdown().await;
    server.shutdown().await;
    Ok(())
}
