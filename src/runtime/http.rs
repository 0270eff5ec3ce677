//! The operator's HTTP endpoint: `/metrics` (Prometheus text), `/healthz` (liveness) and
//! `/readyz` (readiness). Other routers, such as the job callback endpoint, are merged into
//! [`router`]'s result before it is served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::RuntimeError;
use crate::metrics::{self, Metrics};

/// Whether the operator is ready (CRDs found, caches synced). Set by the caller; clones share it.
#[derive(Clone, Debug, Default)]
pub struct ReadinessFlag(Arc<AtomicBool>);

impl ReadinessFlag {
    /// A flag that starts not ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the operator ready or not ready.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the operator is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl From<Arc<AtomicBool>> for ReadinessFlag {
    fn from(flag: Arc<AtomicBool>) -> Self {
        Self(flag)
    }
}

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// The metrics served on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Readiness served on `/readyz`.
    pub ready: ReadinessFlag,
}

impl HttpState {
    /// State over shared metrics and a readiness flag (a [`ReadinessFlag`] or an
    /// `Arc<AtomicBool>` that the caller sets).
    pub fn new(metrics: Arc<Metrics>, ready: impl Into<ReadinessFlag>) -> Self {
        Self {
            metrics,
            ready: ready.into(),
        }
    }
}

/// The routes `/metrics`, `/healthz` and `/readyz`.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics_handler(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.ready.is_ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Binds `addr` and serves `router` in a background task until `shutdown` is cancelled, then
/// finishes the requests in flight. Returns the bound address (so port 0 works).
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> Result<SocketAddr, RuntimeError> {
    spawn(addr, router, shutdown)
        .await
        .map(|(bound, _task)| bound)
}

/// Like [`serve`], also returning the server task, which ends after a graceful shutdown.
pub async fn spawn(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), RuntimeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| RuntimeError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| RuntimeError::LocalAddr { addr, source })?;
    let task = tokio::spawn(async move {
        // axum's serve loop does not fail (accept errors are retried); the result is `Ok` once the
        // shutdown signal fired and the open connections finished.
        if let Err(error) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::error!(%error, addr = %bound, "HTTP server stopped");
        }
        tracing::debug!(addr = %bound, "HTTP server stopped");
    });
    tracing::info!(addr = %bound, "HTTP server listening");
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn start() -> (SocketAddr, JoinHandle<()>, HttpState, CancellationToken) {
        let state = HttpState::new(Arc::new(Metrics::new()), ReadinessFlag::new());
        let shutdown = CancellationToken::new();
        let extra = Router::new().route("/extra", get(|| async { "merged" }));
        let app = router(state.clone()).merge(extra);
        let (addr, task) = spawn(
            "127.0.0.1:0".parse().expect("valid addr"),
            app,
            shutdown.clone(),
        )
        .await
        .expect("binds");
        (addr, task, state, shutdown)
    }

    async fn get_text(addr: SocketAddr, path: &str) -> (u16, Option<String>, String) {
        let res = reqwest::get(format!("http://{addr}{path}"))
            .await
            .expect("request succeeds");
        let status = res.status().as_u16();
        let ctype = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (status, ctype, res.text().await.expect("body"))
    }

    #[tokio::test]
    async fn routes_answer() {
        let (addr, _task, state, shutdown) = start().await;
        assert_ne!(addr.port(), 0);

        assert_eq!(get_text(addr, "/healthz").await.0, 200);
        let (status, _, body) = get_text(addr, "/readyz").await;
        assert_eq!((status, body.as_str()), (503, "not ready\n"));
        state.ready.set(true);
        assert_eq!(get_text(addr, "/readyz").await.0, 200);
        state.ready.set(false);
        assert_eq!(get_text(addr, "/readyz").await.0, 503);

        state.metrics.event_published("Created");
        let (status, ctype, body) = get_text(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(ctype.as_deref(), Some(metrics::CONTENT_TYPE));
        assert!(
            body.contains(r#"runctl_events_total{reason="Created"} 1"#),
            "{body}"
        );

        assert_eq!(get_text(addr, "/extra").await.2, "merged");
        assert_eq!(get_text(addr, "/nope").await.0, 404);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn readiness_from_a_shared_atomic() {
        let flag = Arc::new(AtomicBool::new(false));
        let state = HttpState::new(Arc::new(Metrics::new()), flag.clone());
        let shutdown = CancellationToken::new();
        let addr = serve(
            "127.0.0.1:0".parse().expect("valid addr"),
            router(state),
            shutdown.clone(),
        )
        .await
        .expect("binds");
        assert_eq!(get_text(addr, "/readyz").await.0, 503);
        flag.store(true, Ordering::SeqCst);
        assert_eq!(get_text(addr, "/readyz").await.0, 200);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn stops_on_cancel() {
        let (addr, task, _state, shutdown) = start().await;
        assert_eq!(get_text(addr, "/healthz").await.0, 200);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("server stops")
            .expect("no panic");
        assert!(
            reqwest::get(format!("http://{addr}/healthz"))
                .await
                .is_err(),
            "listener closed"
        );
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let (addr, _task, _state, shutdown) = start().await;
        let err = serve(addr, Router::new(), CancellationToken::new())
            .await
            .expect_err("port taken");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        shutdown.cancel();
    }
}
