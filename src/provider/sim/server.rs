//! The simulated cloud served over HTTP (JSON, [`super::wire`]), so that operators in other
//! processes use it (`providers.sim.endpoint`, [`super::remote::RemoteSim`]): the [`Provider`]
//! operations of any installation and region (through [`SimProvider`], which also starts the
//! simulated reporting wrapper in this process) and what the cloud shows (machines with their
//! timelines, counters) and does (every workload exits).
//!
//! Routes: `POST /provider/{create,observe,list,terminate,price}`, `GET /sim/machines`,
//! `GET /sim/summary`, `POST /sim/exit-all`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{SimCloud, SimOp, SimProvider};
use crate::provider::{Provider, ProviderError, ResourceKey};

use super::wire::{
    Answer, CreateRequest, ExitAll, ObserveRequest, PriceRequest, Scope, Summary, TerminateRequest,
    WireError, WireMachine, WireQuote, WireSimMachine, WireTermination,
};

type Shared = Arc<SimCloud>;

/// The routes over `cloud`.
pub fn router(cloud: Arc<SimCloud>) -> Router {
    Router::new()
        .route("/provider/create", post(create))
        .route("/provider/observe", post(observe))
        .route("/provider/list", post(list))
        .route("/provider/terminate", post(terminate))
        .route("/provider/price", post(price))
        .route("/sim/machines", get(machines))
        .route("/sim/summary", get(summary))
        .route("/sim/exit-all", post(exit_all))
        .with_state(cloud)
}

/// A sim server listening until it is shut down.
pub struct SimServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl SimServer {
    /// Serves `cloud` on `addr` (`127.0.0.1:0` for any free port).
    pub async fn start(cloud: Arc<SimCloud>, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router(cloud))
                .with_graceful_shutdown(async move { until.cancelled().await });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "sim server stopped");
            }
        });
        Ok(SimServer { addr, stop, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving (waits up to 5 s for open requests).
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
}

fn provider(cloud: &Shared, scope: Scope) -> SimProvider {
    SimProvider::new(cloud.clone(), scope.installation, scope.region)
}

fn answer<T, W>(result: Result<T, ProviderError>, wire: impl FnOnce(T) -> W) -> Json<Answer<W>> {
    Json(match result {
        Ok(v) => Answer::Ok(wire(v)),
        Err(e) => Answer::Err(WireError::from(&e)),
    })
}

async fn create(
    State(cloud): State<Shared>,
    Json(r): Json<CreateRequest>,
) -> Json<Answer<WireMachine>> {
    let key = ResourceKey::from(r.key);
    let result = provider(&cloud, r.scope).create(&key, &r.spec.into()).await;
    answer(result, |m| WireMachine::from(&m))
}

async fn observe(
    State(cloud): State<Shared>,
    Json(r): Json<ObserveRequest>,
) -> Json<Answer<Option<WireMachine>>> {
    let key = ResourceKey::from(r.key);
    let result = provider(&cloud, r.scope)
        .observe(&key, r.known_id.as_deref())
        .await;
    answer(result, |m| m.as_ref().map(WireMachine::from))
}

async fn list(
    State(cloud): State<Shared>,
    Json(scope): Json<Scope>,
) -> Json<Answer<Vec<WireMachine>>> {
    let result = provider(&cloud, scope).list().await;
    answer(result, |ms| ms.iter().map(WireMachine::from).collect())
}

async fn terminate(
    State(cloud): State<Shared>,
    Json(r): Json<TerminateRequest>,
) -> Json<Answer<WireTermination>> {
    let result = provider(&cloud, r.scope).terminate(&r.id).await;
    answer(result, WireTermination::from)
}

async fn price(
    State(cloud): State<Shared>,
    Json(r): Json<PriceRequest>,
) -> Json<Answer<WireQuote>> {
    let result = provider(&cloud, r.scope).price(&r.spec.into()).await;
    answer(result, |q| WireQuote::from(&q))
}

async fn machines(State(cloud): State<Shared>) -> Json<Vec<WireSimMachine>> {
    let machines = cloud.machines();
    Json(
        machines
            .iter()
            .map(|m| WireSimMachine::of(m, |at| cloud.timestamp(at)))
            .collect(),
    )
}

/// Counters and machines by state, for polling.
pub fn summary_of(cloud: &SimCloud) -> Summary {
    let stats = cloud.stats();
    let mut by_state = BTreeMap::new();
    for m in cloud.machines() {
        *by_state.entry(m.state).or_default() += 1;
    }
    Summary {
        calls: SimOp::ALL
            .iter()
            .map(|op| (format!("{op:?}"), stats.calls(*op)))
            .collect(),
        machines_created: stats.machines_created,
        live_total: cloud.live_total(),
        by_state,
        exit_reports_given_up: stats.exit_reports_given_up,
    }
}

async fn summary(State(cloud): State<Shared>) -> Json<Summary> {
    Json(summary_of(&cloud))
}

async fn exit_all(State(cloud): State<Shared>, Json(r): Json<ExitAll>) -> Json<usize> {
    let exited = cloud
        .machines()
        .iter()
        .filter(|m| cloud.exit(&m.id, r.code).is_ok())
        .count();
    Json(exited)
}
