//! Where the benchmark's API test server runs: in this process, or in a child process (the
//! benchmark binary run with [`SERVE_API_FLAG`]) so that this process's memory and CPU are the
//! operator's, the sim's and the driver's only, and the server's are measured apart.

use std::path::PathBuf;

use kube::Client;
use runctl_apiserver::{ApiServer, ChildApiServer, RequestStats};

use super::BenchError;
use super::measure::Process;

/// The hidden argument that makes `runctl-bench` serve the API test server (see
/// [`runctl_apiserver::serve_until_stdin_closes`]).
pub const SERVE_API_FLAG: &str = "--serve-api";

/// Where the API test server runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMode {
    /// In the benchmark's process: its memory and CPU count as the operator's.
    InProcess,
    /// In a child process: this program run with [`SERVE_API_FLAG`] (the `runctl-bench` binary).
    ChildProcess(PathBuf),
}

/// The running server.
pub(crate) enum BenchServer {
    InProcess(ApiServer),
    Child(Box<ChildApiServer>),
}

impl BenchServer {
    pub async fn start(mode: &ServerMode) -> Result<Self, BenchError> {
        let api = |e: runctl_apiserver::Error| BenchError::ApiServer(e.to_string());
        Ok(match mode {
            ServerMode::InProcess => BenchServer::InProcess(ApiServer::start().await.map_err(api)?),
            ServerMode::ChildProcess(program) => BenchServer::Child(Box::new(
                ChildApiServer::spawn(program, [SERVE_API_FLAG])
                    .await
                    .map_err(api)?,
            )),
        })
    }

    pub fn client(&self) -> Client {
        match self {
            BenchServer::InProcess(s) => s.client(),
            BenchServer::Child(c) => c.remote().client(),
        }
    }

    /// The server's own process, if it has one.
    pub fn process(&self) -> Option<Process> {
        match self {
            BenchServer::InProcess(_) => None,
            BenchServer::Child(c) => c.pid().map(Process::Pid),
        }
    }

    pub async fn stats(&self) -> Result<RequestStats, BenchError> {
        match self {
            BenchServer::InProcess(s) => Ok(s.stats()),
            BenchServer::Child(c) => c
                .remote()
                .stats()
                .await
                .map_err(|e| BenchError::Kube("reading the request counts", e)),
        }
    }

    pub async fn reset_stats(&self) -> Result<(), BenchError> {
        match self {
            BenchServer::InProcess(s) => s.reset_stats(),
            BenchServer::Child(c) => {
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
            BenchServer::InProcess(s) => s.shutdown().await,
            BenchServer::Child(c) => c.shutdown().await,
        }
    }
}
