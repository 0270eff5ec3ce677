//! Starts moto's server (the EC2 stand-in behind [`super::Ec2Proxy`]) from the repository's
//! `.venv` (made by `scripts/setup-test-env.sh`) on a free loopback port, waits until it
//! answers, and kills it on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Env var that overrides the path of `moto_server`.
pub const MOTO_SERVER_ENV: &str = "RUNCTL_MOTO_SERVER";

/// Why moto could not be started.
#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    /// The venv is missing.
    #[error(
        "moto_server not found at {0}: run scripts/setup-test-env.sh at the repository root first"
    )]
    NotInstalled(PathBuf),
    /// Spawning failed.
    #[error("failed to start moto_server: {0}")]
    Spawn(#[source] std::io::Error),
    /// It exited before answering.
    #[error("moto_server exited before answering: {0}")]
    Exited(String),
    /// It did not answer in time.
    #[error("moto_server did not answer on 127.0.0.1:{0} within 30 s")]
    NotReady(u16),
}

/// A running moto server; killed on drop.
pub struct MotoServer {
    child: Child,
    port: u16,
}

impl MotoServer {
    /// Path of `moto_server`: `$RUNCTL_MOTO_SERVER`, else `<repo>/.venv/bin/moto_server`.
    pub fn binary() -> PathBuf {
        if let Some(p) = std::env::var_os(MOTO_SERVER_ENV) {
            return PathBuf::from(p);
        }
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server")
    }

    /// Starts moto on a free port of 127.0.0.1 and waits until it answers. A server that
    /// exits at once (e.g. its port was taken between choosing and binding) is started again
    /// on another port, up to three times.
    pub async fn start() -> Result<Self, MotoError> {
        let bin = Self::binary();
        if !bin.exists() {
            return Err(MotoError::NotInstalled(bin));
        }
        let mut last = MotoError::NotReady(0);
        for _ in 0..3 {
            match Self::start_once(&bin).await {
                Ok(server) => return Ok(server),
                Err(e @ MotoError::Exited(_)) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    async fn start_once(bin: &std::path::Path) -> Result<Self, MotoError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(MotoError::Spawn)?
            .port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(MotoError::Spawn)?;
        let mut server = Self { child, port };
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(MotoError::Exited(status.to_string()));
            }
            let ok = http
                .get(format!("{}/moto-api/data.json", server.url()))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(MotoError::NotReady(port))
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Forgets every resource (`POST /moto-api/reset`).
    pub async fn reset(&self) -> Result<(), reqwest::Error> {
        reqwest::Client::new()
            .post(format!("{}/moto-api/reset", self.url()))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
