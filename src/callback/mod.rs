//! The job callback endpoint: workloads (through runctl's reporting wrapper) report heartbeats,
//! progress and their exit code to
//! `POST /callback/<namespace>/<job>/<attempt>/{heartbeat,progress,exit}`, and ship their output
//! in chunks to `.../logs?offset=<n>` (the raw bytes as the body; [`crate::logs::sink`]: kept by
//! the leader only, a standby answers 421 and the wrapper sends the chunk again), with
//! `Authorization: Bearer <token>`, where the token is the attempt's random token kept in a
//! Secret owned by the job. Served as its own axum [`Router`] on its own port (default 8443),
//! with TLS terminated by the operator's listener or an ingress.
//!
//! Tokens are compared by SHA-256 digest in constant time and never logged; a wrong or missing
//! token gets 401 whether or not the job exists.

pub mod limit;
pub mod persist;
pub mod reach;
pub mod reports;
pub mod tls;
pub mod token;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::crd::training_job::Progress;
use crate::logs::sink::{self, LogSink, Received};
use crate::metrics::Metrics;
pub use reports::{AttemptId, AttemptReport, Report, Reports};
pub use tls::{TlsFiles, serve_tls};

/// Default port of the callback endpoint.
pub const DEFAULT_PORT: u16 = 8443;
/// Longest progress message kept.
pub const MAX_PROGRESS_MESSAGE: usize = 256;

/// What the endpoint needs: a client to read token Secrets and persist reports, and the report
/// store of this process it also fills.
pub struct CallbackState {
    client: Client,
    reports: Arc<Reports>,
    limiter: limit::Limiter,
    persister: persist::Persister,
    logs: Arc<LogSink>,
}

impl CallbackState {
    /// State over `reports`, which the TrainingJob controller of this process reads (when it
    /// leads; every replica persists exit reports into the API either way, a standby also its
    /// heartbeats and progress, throttled: [`reports::persist_due`]). Leads until its log sink
    /// is told otherwise ([`LogSink::set_leading`]).
    pub fn new(client: Client, reports: Arc<Reports>) -> Arc<Self> {
        Self::with_limiter(client, reports, limit::Limiter::default())
    }

    /// Like [`new`](Self::new) with explicit request limits.
    pub fn with_limiter(
        client: Client,
        reports: Arc<Reports>,
        limiter: limit::Limiter,
    ) -> Arc<Self> {
        Self::with_options(client, reports, limiter, persist::DEFAULT_INTERVAL)
    }

    /// Like [`with_limiter`](Self::with_limiter), a standby persisting heartbeats and progress
    /// at most every `persist_interval` per attempt.
    pub fn with_options(
        client: Client,
        reports: Arc<Reports>,
        limiter: limit::Limiter,
        persist_interval: std::time::Duration,
    ) -> Arc<Self> {
        Self::with_logs(
            client,
            reports,
            limiter,
            persist_interval,
            Arc::new(Metrics::new()),
            sink::FOLLOWED_WRITE_INTERVAL,
        )
    }

    /// The operator's state: default limits, workload output kept in `logs` (the sink the
    /// controllers of this process share: [`crate::controller::Context::logs`]).
    pub fn with_sink(client: Client, reports: Arc<Reports>, logs: Arc<LogSink>) -> Arc<Self> {
        Self::with_sink_every(client, reports, logs, persist::DEFAULT_INTERVAL)
    }

    /// Like [`with_sink`](Self::with_sink), a standby persisting heartbeats and progress at most
    /// every `persist_interval` per attempt (the operator's `costRefreshSeconds`). Whether this
    /// replica leads is the sink's [`LogSink::leading`].
    pub fn with_sink_every(
        client: Client,
        reports: Arc<Reports>,
        logs: Arc<LogSink>,
        persist_interval: std::time::Duration,
    ) -> Arc<Self> {
        Self::with_parts(
            client,
            reports,
            limit::Limiter::default(),
            persist_interval,
            logs,
        )
    }

    /// Like [`with_options`](Self::with_options), writing each followed attempt's log ConfigMap
    /// at most every `log_interval` and counting log bytes in `metrics`.
    pub fn with_logs(
        client: Client,
        reports: Arc<Reports>,
        limiter: limit::Limiter,
        persist_interval: std::time::Duration,
        metrics: Arc<Metrics>,
        log_interval: std::time::Duration,
    ) -> Arc<Self> {
        let logs = LogSink::new(client.clone(), metrics, log_interval);
        Self::with_parts(client, reports, limiter, persist_interval, logs)
    }

    fn with_parts(
        client: Client,
        reports: Arc<Reports>,
        limiter: limit::Limiter,
        persist_interval: std::time::Duration,
        logs: Arc<LogSink>,
    ) -> Arc<Self> {
        let persister = persist::Persister::new(client.clone(), reports.clone(), persist_interval);
        Arc::new(Self {
            client,
            reports,
            limiter,
            persister,
            logs,
        })
    }

    /// Whether `presented` is attempt `id`'s token. An attempt whose token digest is not cached
    /// costs a Secret read, taken from the unauthenticated budget: `None` when it is spent.
    async fn verify(
        &self,
        id: &AttemptId,
        presented: &str,
    ) -> Option<Result<Verdict, kube::Error>> {
        if let Some(stored) = self.reports.token_digest(id) {
            return Some(Ok(Verdict::of(token::matches(presented, &stored))));
        }
        if !self.limiter.allow_unauthenticated() {
            return None;
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &id.namespace);
        let secret = match api.get_opt(&id.token_secret_name()).await {
            Ok(secret) => secret,
            Err(e) => return Some(Err(e)),
        };
        let Some(t) = secret.as_ref().and_then(token::from_secret) else {
            return Some(Ok(Verdict::NoToken));
        };
        let stored = token::digest(&t);
        self.reports.cache_token_digest(id.clone(), stored);
        Some(Ok(Verdict::of(token::matches(presented, &stored))))
    }

    /// The answer to a request without a valid token: 401 within the unauthenticated budget,
    /// 429 past it.
    fn unauthorized(&self, message: &'static str) -> (StatusCode, &'static str) {
        if self.limiter.allow_unauthenticated() {
            (StatusCode::UNAUTHORIZED, message)
        } else {
            too_many()
        }
    }
}

fn too_many() -> Answer {
    (
        StatusCode::TOO_MANY_REQUESTS,
        "too many reports; retry later",
    )
}

/// The callback router.
pub fn router(state: Arc<CallbackState>) -> Router {
    Router::new()
        .route("/callback/{namespace}/{job}/{attempt}/{kind}", post(report))
        .layer(axum::extract::DefaultBodyLimit::max(limit::MAX_BODY_BYTES))
        .with_state(state)
}

/// Binds `addr` and serves `router` until `shutdown` is cancelled; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    spawn_server(listener, router, shutdown);
    Ok(bound)
}

/// Serves `router` on `listener` (plain TCP or TLS) in a task until `shutdown` is cancelled.
fn spawn_server<L>(listener: L, router: Router, shutdown: CancellationToken)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(async move {
        let server = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = server.await {
            warn!(error = %e, "callback endpoint stopped");
        }
    });
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExitBody {
    exit_code: i32,
    /// Set by the wrapper when it stopped the workload for the provider's reclaim notice.
    #[serde(default)]
    interrupted: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProgressBody {
    #[serde(default)]
    percent: Option<f64>,
    #[serde(default)]
    step: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Parses a report body of the given kind.
fn parse(kind: &str, body: &[u8], now: Timestamp) -> Result<Report, (StatusCode, &'static str)> {
    match kind {
        "heartbeat" => Ok(Report::Heartbeat),
        "exit" => serde_json::from_slice::<ExitBody>(body)
            .map(|b| Report::Exit {
                code: b.exit_code,
                interrupted: b.interrupted,
            })
            .map_err(|_| {
                (
                    StatusCode::BAD_REQUEST,
                    "exit needs a JSON body with an integer exitCode",
                )
            }),
        "progress" => {
            let b: ProgressBody = serde_json::from_slice(body)
                .map_err(|_| (StatusCode::BAD_REQUEST, "progress needs a JSON body"))?;
            let message = b.message.map(|mut m| {
                if m.len() > MAX_PROGRESS_MESSAGE {
                    let mut cut = MAX_PROGRESS_MESSAGE;
                    while !m.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    m.truncate(cut);
                }
                m
            });
            let percent = b
                .percent
                .filter(|p| p.is_finite())
                .map(|p| p.clamp(0.0, 100.0));
            Ok(Report::Progress(Progress {
                percent,
                step: b.step,
                message,
                time: Some(Time(now)),
            }))
        }
        _ => Err((
            StatusCode::NOT_FOUND,
            "unknown report kind; expected heartbeat, progress, exit or logs",
        )),
    }
}

/// What a presented token is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The attempt's token.
    Valid,
    /// Not the attempt's token.
    Invalid,
    /// The attempt has no token (ended, its Secret deleted with it; or never made).
    NoToken,
}

impl Verdict {
    fn of(matches: bool) -> Self {
        if matches { Self::Valid } else { Self::Invalid }
    }
}

/// The answer to a report: a status code and a short message for the wrapper.
type Answer = (StatusCode, &'static str);

async fn report(
    State(state): State<Arc<CallbackState>>,
    Path((namespace, job, attempt, kind)): Path<(String, String, u32, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let id = AttemptId {
        namespace,
        job,
        attempt,
    };
    let presented = match authenticate(&state, &id, &headers).await {
        Ok(presented) => presented,
        Err(answer) => return answer,
    };
    if kind == "logs" {
        return receive_logs(&state, &id, &query, &body, presented).await;
    }
    let now = Timestamp::now();
    let parsed = match parse(&kind, &body, now) {
        Ok(r) => r,
        Err(e) => return e,
    };
    debug!(namespace = %id.namespace, job = %id.job, attempt, kind = %kind, "callback report");
    record(&state, &id, parsed, now).await
}

/// The request's token when it is attempt `id`'s and the attempt's budget allows the request;
/// otherwise the answer. Authentication comes first: requests without the attempt's token never
/// touch its budget.
async fn authenticate<'h>(
    state: &CallbackState,
    id: &AttemptId,
    headers: &'h HeaderMap,
) -> Result<&'h str, Answer> {
    let Some(presented) = bearer(headers) else {
        return Err(state.unauthorized("missing bearer token"));
    };
    match state.verify(id, presented).await {
        Some(Ok(Verdict::Valid)) => {}
        Some(Ok(Verdict::Invalid)) => {
            warn!(namespace = %id.namespace, job = %id.job, attempt = id.attempt, "callback with an invalid token rejected");
            return Err(state.unauthorized("invalid token"));
        }
        // The same answer (nothing tells a caller without the token whether the attempt
        // exists), but no warning: mostly a machine's last request after its attempt ended and
        // its token was deleted with it.
        Some(Ok(Verdict::NoToken)) => {
            debug!(namespace = %id.namespace, job = %id.job, attempt = id.attempt, "callback for an attempt without a token (ended, or never made) rejected");
            return Err(state.unauthorized("invalid token"));
        }
        Some(Err(e)) => {
            warn!(error = %e, "failed to read the attempt's token Secret");
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot verify the token right now",
            ));
        }
        None => return Err(too_many()),
    }
    if !state
        .limiter
        .allow_attempt(&format!("{}/{}/{}", id.namespace, id.job, id.attempt))
    {
        return Err(too_many());
    }
    Ok(presented)
}

/// A chunk of the workload's output, at the stream offset `?offset=` names.
async fn receive_logs(
    state: &CallbackState,
    id: &AttemptId,
    query: &std::collections::HashMap<String, String>,
    body: &[u8],
    presented: &str,
) -> Answer {
    let Some(offset) = query.get("offset").and_then(|o| o.parse::<u64>().ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            "logs needs ?offset=<stream offset of the body's first byte>",
        );
    };
    match state.logs.receive(id, offset, body, presented).await {
        Received::Accepted => (StatusCode::OK, "ok"),
        Received::Gone => (StatusCode::GONE, "the attempt has ended; stop reporting"),
        Received::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot record the output right now; retry",
        ),
        // Only the leader keeps output; the wrapper sends it again at once, and the Service
        // routes it to another replica.
        Received::NotLeader => (
            StatusCode::MISDIRECTED_REQUEST,
            "this replica does not keep output; send it again",
        ),
    }
}

/// Records a heartbeat, progress or exit report in memory and persists it where it must be
/// (an exit always, before it is acknowledged); an exit also ends the attempt's output.
async fn record(state: &CallbackState, id: &AttemptId, parsed: Report, now: Timestamp) -> Answer {
    let exit = match parsed {
        Report::Exit { code, interrupted } => Some((code, interrupted)),
        _ => None,
    };
    let is_exit = exit.is_some();
    state.reports.record(id.clone(), parsed, now);
    // The leader's controller reads this replica's store; a standby's store is read by nobody,
    // nor is the store of another shard's leader (a machine whose namespace moved to another
    // shard reports to its old one): those persist as a standby does.
    let leading = state.logs.reconciles(&id.namespace);
    let persisted = state.persister.persist(id, is_exit, leading, now).await;
    // Also when the attempt was released: its output (kept with the job) is still written a
    // last time.
    let ended = matches!(persisted, Ok(()) | Err(persist::PersistError::AttemptGone));
    if let Some((code, interrupted)) = exit
        && ended
    {
        state.logs.finish(id, code, interrupted).await;
    }
    persisted_answer(id, is_exit, persisted)
}

/// The answer to a report once its persisting is over.
fn persisted_answer(
    id: &AttemptId,
    is_exit: bool,
    persisted: Result<(), persist::PersistError>,
) -> Answer {
    match persisted {
        Ok(()) => (StatusCode::OK, "ok"),
        // The attempt was released: its outcome is in the job's status already.
        Err(persist::PersistError::AttemptGone) => {
            (StatusCode::GONE, "the attempt has ended; stop reporting")
        }
        // An exit must be in the API before it is acknowledged: the wrapper retries.
        Err(e) if is_exit => {
            warn!(namespace = %id.namespace, job = %id.job, attempt = id.attempt, error = %e, "exit report not persisted");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot record the report right now; retry",
            )
        }
        // A heartbeat is in this replica's memory, and the next one is written again (a
        // failed write is forgotten: `Reports::persist_failed`).
        Err(e) => {
            debug!(namespace = %id.namespace, job = %id.job, attempt = id.attempt, error = %e, "heartbeat not persisted");
            (StatusCode::OK, "ok")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let now = Timestamp::now();
        assert_eq!(parse("heartbeat", b"", now), Ok(Report::Heartbeat));
        assert_eq!(
            parse("exit", br#"{"kind":"exit","exitCode":3}"#, now),
            Ok(Report::Exit {
                code: 3,
                interrupted: false
            })
        );
        assert_eq!(
            parse("exit", b"{}", now).unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
        let Ok(Report::Progress(p)) = parse(
            "progress",
            br#"{"percent":150,"step":7,"message":"epoch 2"}"#,
            now,
        ) else {
            panic!("progress parses")
        };
        assert_eq!(
            (p.percent, p.step, p.message.as_deref()),
            (Some(100.0), Some(7), Some("epoch 2"))
        );
        assert_eq!(
            parse("reboot", b"", now).unwrap_err().0,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn bearer_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
