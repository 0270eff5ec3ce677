//! Leader election against a small in-process Lease API (get, create, replace with
//! resourceVersion conflicts), served on 127.0.0.1 and reached through a real `kube::Client`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Json, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use parking_lot::Mutex;
use runctl::metrics::Metrics;
use runctl::runtime::{LeaderElector, LeaderError, LeaseConfig};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const NS: &str = "runctl-system";
const NAME: &str = "runctl-leader";
const WAIT: Duration = Duration::from_secs(15);

#[derive(Default)]
struct Store {
    lease: Option<Lease>,
    resource_version: u64,
    failing: bool,
    get_delay: Option<Duration>,
    requests: u64,
}

#[derive(Clone, Default)]
struct FakeApi(Arc<Mutex<Store>>);

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

impl FakeApi {
    /// Counts the request; `Some` error response while failing.
    fn enter(&self) -> Option<Response> {
        let mut s = self.0.lock();
        s.requests += 1;
        s.failing.then(|| {
            status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "injected failure",
            )
        })
    }

    fn lease(&self) -> Option<Lease> {
        self.0.lock().lease.clone()
    }

    fn spec(&self) -> LeaseSpec {
        self.lease().and_then(|l| l.spec).expect("lease exists")
    }

    fn requests(&self) -> u64 {
        self.0.lock().requests
    }

    fn set_failing(&self, failing: bool) {
        self.0.lock().failing = failing;
    }

    fn seed(&self, spec: LeaseSpec) {
        let mut s = self.0.lock();
        s.resource_version += 1;
        s.lease = Some(Lease {
            metadata: ObjectMeta {
                name: Some(NAME.into()),
                namespace: Some(NS.into()),
                resource_version: Some(s.resource_version.to_string()),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        });
    }
}

async fn get_lease(
    State(api): State<FakeApi>,
    Path((_ns, name)): Path<(String, String)>,
) -> Response {
    if let Some(err) = api.enter() {
        return err;
    }
    let delay = api.0.lock().get_delay;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    match api
        .lease()
        .filter(|l| l.metadata.name.as_deref() == Some(name.as_str()))
    {
        Some(lease) => Json(lease).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "leases.coordination.k8s.io not found",
        ),
    }
}

async fn create_lease(State(api): State<FakeApi>, Json(mut lease): Json<Lease>) -> Response {
    if let Some(err) = api.enter() {
        return err;
    }
    let mut s = api.0.lock();
    if s.lease.is_some() {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            "leases.coordination.k8s.io already exists",
        );
    }
    s.resource_version += 1;
    lease.metadata.resource_version = Some(s.resource_version.to_string());
    s.lease = Some(lease.clone());
    (StatusCode::CREATED, Json(lease)).into_response()
}

async fn replace_lease(
    State(api): State<FakeApi>,
    Path((_ns, _name)): Path<(String, String)>,
    Json(mut lease): Json<Lease>,
) -> Response {
    if let Some(err) = api.enter() {
        return err;
    }
    let mut s = api.0.lock();
    let Some(current) = &s.lease else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "leases.coordination.k8s.io not found",
        );
    };
    if lease.metadata.resource_version != current.metadata.resource_version {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            "the object has been modified",
        );
    }
    s.resource_version += 1;
    lease.metadata.resource_version = Some(s.resource_version.to_string());
    s.lease = Some(lease.clone());
    Json(lease).into_response()
}

async fn start_api() -> (FakeApi, kube::Client, CancellationToken) {
    let api = FakeApi::default();
    let app = Router::new()
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
            get(get_lease).put(replace_lease),
        )
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
            post(create_lease),
        )
        .with_state(api.clone());
    let stop = CancellationToken::new();
    let addr: SocketAddr =
        runctl::runtime::serve("127.0.0.1:0".parse().expect("addr"), app, stop.clone())
            .await
            .expect("fake API binds");
    let config = kube::Config::new(format!("http://{addr}").parse().expect("url"));
    let client = kube::Client::try_from(config).expect("client");
    (api, client, stop)
}

fn lease_config(identity: &str, lease_secs: u64, renew_ms: u64, retry_ms: u64) -> LeaseConfig {
    LeaseConfig {
        namespace: NS.into(),
        name: NAME.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(lease_secs),
        renew_interval: Duration::from_millis(renew_ms),
        retry_interval: Duration::from_millis(retry_ms),
    }
}

struct Running {
    leader: watch::Receiver<bool>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

fn run(elector: LeaderElector) -> Running {
    let (tx, leader) = watch::channel(false);
    let stop = CancellationToken::new();
    let task = tokio::spawn(elector.run(tx, stop.clone()));
    Running { leader, stop, task }
}

async fn wait_for(rx: &mut watch::Receiver<bool>, want: bool) {
    tokio::time::timeout(WAIT, rx.wait_for(|v| *v == want))
        .await
        .unwrap_or_else(|_| panic!("leadership did not become {want}"))
        .expect("elector alive");
}

fn expired_spec(holder: &str, transitions: i32) -> LeaseSpec {
    let long_ago = Timestamp::now() - SignedDuration::from_secs(600);
    LeaseSpec {
        holder_identity: Some(holder.into()),
        lease_duration_seconds: Some(15),
        acquire_time: Some(MicroTime(long_ago)),
        renew_time: Some(MicroTime(long_ago)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

#[tokio::test]
async fn creates_the_lease_and_renews_it() {
    let (api, client, stop) = start_api().await;
    let a = LeaderElector::new(client, lease_config("a", 15, 100, 50));
    assert!(a.try_acquire_or_renew().await.expect("creates"));
    let first = api.spec();
    assert_eq!(first.holder_identity.as_deref(), Some("a"));
    assert_eq!(first.lease_transitions, Some(0));
    assert_eq!(first.lease_duration_seconds, Some(15));
    let rv = api.lease().and_then(|l| l.metadata.resource_version);

    assert!(a.try_acquire_or_renew().await.expect("renews"));
    let renewed = api.spec();
    assert_ne!(api.lease().and_then(|l| l.metadata.resource_version), rv);
    assert_eq!(
        renewed.acquire_time, first.acquire_time,
        "renewal keeps acquireTime"
    );
    assert!(renewed.renew_time >= first.renew_time);
    assert_eq!(renewed.lease_transitions, Some(0));
    stop.cancel();
}

#[tokio::test]
async fn takes_over_an_expired_lease_but_not_a_valid_one() {
    let (api, client, stop) = start_api().await;
    api.seed(expired_spec("ghost", 3));
    let a = LeaderElector::new(client.clone(), lease_config("a", 15, 100, 50));
    assert!(a.try_acquire_or_renew().await.expect("takes over"));
    let spec = api.spec();
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(
        spec.lease_transitions,
        Some(4),
        "takeover bumps leaseTransitions"
    );

    let b = LeaderElector::new(client, lease_config("b", 15, 100, 50));
    assert!(
        !b.try_acquire_or_renew().await.expect("reads"),
        "a valid lease is not taken"
    );
    assert_eq!(api.spec().holder_identity.as_deref(), Some("a"));
    stop.cancel();
}

#[tokio::test]
async fn concurrent_takeovers_have_one_winner() {
    let (api, client, stop) = start_api().await;
    let a = LeaderElector::new(client.clone(), lease_config("a", 15, 100, 50));
    let b = LeaderElector::new(client, lease_config("b", 15, 100, 50));
    // Both read the same resourceVersion before either writes: the second replace gets 409.
    api.0.lock().get_delay = Some(Duration::from_millis(200));
    for round in 0..3 {
        api.seed(expired_spec("ghost", round));
        let (ra, rb) = tokio::join!(a.try_acquire_or_renew(), b.try_acquire_or_renew());
        let (ra, rb) = (ra.expect("a answers"), rb.expect("b answers"));
        assert!(
            ra ^ rb,
            "round {round}: exactly one winner, got a={ra} b={rb}"
        );
        let spec = api.spec();
        let winner = if ra { "a" } else { "b" };
        assert_eq!(spec.holder_identity.as_deref(), Some(winner));
        assert_eq!(spec.lease_transitions, Some(round + 1));
    }
    stop.cancel();
}

#[tokio::test]
async fn api_failures_are_errors_naming_the_lease() {
    let (api, client, stop) = start_api().await;
    api.set_failing(true);
    let a = LeaderElector::new(client, lease_config("a", 15, 100, 50));
    let err = a.try_acquire_or_renew().await.expect_err("server fails");
    assert!(
        matches!(
            err,
            LeaderError::Api {
                operation: "get",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&format!("{NS}/{NAME}")), "{err}");
    stop.cancel();
}

#[tokio::test]
async fn one_leader_and_release_hands_over_at_once() {
    let (api, client, stop) = start_api().await;
    let metrics = Arc::new(Metrics::new());
    // A 60 s lease: within the test, b can only lead if a releases the lease.
    let mut a = run(
        LeaderElector::new(client.clone(), lease_config("a", 60, 100, 50))
            .with_metrics(metrics.clone()),
    );
    wait_for(&mut a.leader, true).await;
    assert!(metrics.encode().lines().any(|l| l == "runctl_leader 1"));

    let mut b = run(LeaderElector::new(client, lease_config("b", 60, 100, 50)));
    let seen = api.requests();
    for _ in 0..400 {
        if api.requests() >= seen + 20 {
            break;
        }
        assert!(!(*a.leader.borrow() && *b.leader.borrow()), "two leaders");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(api.requests() >= seen + 20, "electors keep polling");
    assert!(*a.leader.borrow(), "a keeps leading while it renews");
    assert!(!*b.leader.borrow(), "b stays a standby");

    a.stop.cancel();
    tokio::time::timeout(WAIT, a.task)
        .await
        .expect("a stops")
        .expect("no panic");
    assert!(!*a.leader.borrow(), "a stepped down on shutdown");
    assert!(metrics.encode().lines().any(|l| l == "runctl_leader 0"));
    wait_for(&mut b.leader, true).await;
    let spec = api.spec();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));

    b.stop.cancel();
    tokio::time::timeout(WAIT, b.task)
        .await
        .expect("b stops")
        .expect("no panic");
    assert_eq!(api.spec().holder_identity, None, "b released the lease");
    stop.cancel();
}

#[tokio::test]
async fn leader_steps_down_before_its_lease_expires_when_renewals_fail() {
    let (api, client, stop) = start_api().await;
    // 4 s lease renewed every second: a leader that cannot renew steps down after 3 s.
    let mut a = run(LeaderElector::new(client, lease_config("a", 4, 1000, 100)));
    wait_for(&mut a.leader, true).await;

    api.set_failing(true);
    wait_for(&mut a.leader, false).await;
    let stepped_down = Timestamp::now();
    let spec = api.spec();
    assert_eq!(
        spec.holder_identity.as_deref(),
        Some("a"),
        "the lease still names a"
    );
    let renewed = spec.renew_time.expect("renewTime").0;
    let expires = renewed
        + SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.expect("duration")));
    assert!(
        stepped_down < expires,
        "stepped down at {stepped_down}, after the lease expired for others at {expires}"
    );

    api.set_failing(false);
    wait_for(&mut a.leader, true).await;
    assert_eq!(api.spec().holder_identity.as_deref(), Some("a"));
    a.stop.cancel();
    tokio::time::timeout(WAIT, a.task)
        .await
        .expect("a stops")
        .expect("no panic");
    stop.cancel();
}
