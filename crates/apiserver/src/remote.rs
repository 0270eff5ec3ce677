//! The API test server in another process: [`serve_until_stdin_closes`] is the child's side (it
//! prints the server's URL as one line on stdout and serves until stdin closes), [`ChildApiServer`]
//! the parent's (spawns such a child, killed when dropped), and [`RemoteApiServer`] a client for a
//! server at a URL, with the request counts over the test-only endpoints `GET /_runctl/stats` and
//! `POST /_runctl/stats/reset`. Benchmarks use it to measure the operator's process alone.

use std::ffi::OsStr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::stats::RequestStats;
use crate::{ApiServer, Error};

/// How long [`ChildApiServer::spawn`] waits for the child's URL line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A client for an API test server at a URL (in this process or another).
#[derive(Clone)]
pub struct RemoteApiServer {
    url: String,
    client: kube::Client,
}

impl std::fmt::Debug for RemoteApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteApiServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RemoteApiServer {
    /// A client for the server at `url` (`http://127.0.0.1:PORT`).
    pub fn connect(url: &str) -> Result<Self, Error> {
        Ok(RemoteApiServer {
            url: url.to_string(),
            client: client_for(url)?,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kube client for this server with default namespace `default`.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A kubeconfig pointing at this server (no credentials), for `kubectl --kubeconfig`.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_for(&self.url)
    }

    /// Request counts so far (`GET /_runctl/stats`; not counted itself).
    pub async fn stats(&self) -> Result<RequestStats, kube::Error> {
        let request = http::Request::get("/_runctl/stats")
            .body(Vec::new())
            .map_err(kube::Error::HttpError)?;
        self.client.request(request).await
    }

    /// Resets the request counts to zero (`POST /_runctl/stats/reset`) and returns the counts
    /// after the reset (zero, with the open watch streams).
    pub async fn reset_stats(&self) -> Result<RequestStats, kube::Error> {
        let request = http::Request::post("/_runctl/stats/reset")
            .body(Vec::new())
            .map_err(kube::Error::HttpError)?;
        self.client.request(request).await
    }
}

/// An API test server in a child process; the child is killed when this is dropped, and exits
/// by itself when this process dies (its stdin closes).
#[derive(Debug)]
pub struct ChildApiServer {
    remote: RemoteApiServer,
    child: Child,
    stdin: Option<ChildStdin>,
    _stdout: BufReader<ChildStdout>,
}

impl ChildApiServer {
    /// Runs `program args` (which must call [`serve_until_stdin_closes`]) and connects to the
    /// URL it prints.
    pub async fn spawn<I, S>(program: impl AsRef<OsStr>, args: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::Spawn)?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Child("no stdout pipe".into()))?;
        let mut line = String::new();
        // Kept open: a later line of the child must not fail on a closed pipe.
        let mut stdout = BufReader::new(stdout);
        let read = stdout.read_line(&mut line);
        match tokio::time::timeout(STARTUP_TIMEOUT, read).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) => return Err(Error::Child("exited before printing its URL".into())),
            Ok(Err(e)) => return Err(Error::Spawn(e)),
            Err(_) => return Err(Error::Child("printed no URL within 30 s".into())),
        }
        let url = line.trim();
        if !url.starts_with("http://") {
            return Err(Error::Child(format!("printed {url:?} instead of a URL")));
        }
        Ok(ChildApiServer {
            remote: RemoteApiServer::connect(url)?,
            child,
            stdin,
            _stdout: stdout,
        })
    }

    /// The client side.
    pub fn remote(&self) -> &RemoteApiServer {
        &self.remote
    }

    /// The child's process id (for `/proc/<pid>`), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Closes the child's stdin, waits up to 10 s for it to exit, then kills it.
    pub async fn shutdown(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The child's side: starts an [`ApiServer`], prints its URL as one line on stdout, and serves
/// until stdin closes (EOF or error), then shuts the server down.
pub async fn serve_until_stdin_closes() -> Result<(), Error> {
    let server = ApiServer::start().await?;
    println!("{}", server.url());
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    server.shutdown().await;
    Ok(())
}

/// A kube client for the server at `url`, default namespace `default`.
pub(crate) fn client_for(url: &str) -> Result<kube::Client, Error> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| Error::Client(kube::Error::Service(e.into())))?;
    kube::Client::try_from(kube::Config::new(uri)).map_err(Error::Client)
}

/// A kubeconfig for the server at `url` (no credentials).
pub(crate) fn kubeconfig_for(url: &str) -> String {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "runctl-test", "cluster": {"server": url}}],
        "users": [{"name": "runctl-test", "user": {}}],
        "contexts": [{"name": "runctl-test", "context": {"cluster": "runctl-test", "user": "runctl-test", "namespace": "default"}}],
        "current-context": "runctl-test",
        "preferences": {},
    });
    serde_yaml::to_string(&config).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verb;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams, PostParams, WatchParams};

    #[tokio::test]
    async fn stats_over_http_match_the_in_process_counts() {
        let server = ApiServer::start().await.unwrap();
        let remote = RemoteApiServer::connect(&server.url()).unwrap();
        let api: Api<ConfigMap> = Api::namespaced(remote.client(), "default");
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("a".into());
        api.create(&PostParams::default(), &cm).await.unwrap();
        api.list(&ListParams::default()).await.unwrap();
        let watch = api.watch(&WatchParams::default(), "0").await.unwrap();

        let stats = remote.stats().await.unwrap();
        assert_eq!(stats, server.stats(), "same counts both ways");
        assert_eq!(stats.count(Verb::Create, "configmaps"), 1);
        assert_eq!(stats.count(Verb::List, "configmaps"), 1);
        assert_eq!(stats.watches_opened, 1);
        assert_eq!(stats.watches_open, 1);

        let after = remote.reset_stats().await.unwrap();
        assert_eq!(after.writes(), 0);
        assert_eq!(after.watches_opened, 0);
        assert_eq!(after.watches_open, 1, "the open watch is still open");
        assert_eq!(
            remote.stats().await.unwrap(),
            after,
            "reading is not counted"
        );

        drop(watch);
        let mut open = 1;
        for _ in 0..100 {
            open = remote.stats().await.unwrap().watches_open;
            if open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(open, 0, "a closed watch is no longer open");

        let post = http::Request::get("/_runctl/stats/reset")
            .body(Vec::new())
            .unwrap();
        assert!(
            remote.client().request_text(post).await.is_err(),
            "reset needs POST"
        );
        server.shutdown().await;
    }
}
