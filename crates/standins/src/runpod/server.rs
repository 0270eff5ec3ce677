//! HTTP surface of the RunPod stand-in: REST v2 routes, Bearer auth (the account's key, or a
//! pod's own pod-scoped key for that pod only), problem+json errors, rate-limit headers and the
//! one-shot faults around each call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::faults::{Fault, Op};
use super::state::{AccountState, Caller, Refusal};

/// State shared by the handlers and the test-facing API.
pub type Shared = Arc<Mutex<AccountState>>;

/// How long a "lost" create response is held back (far beyond any client timeout in tests).
const HANG: Duration = Duration::from_secs(120);

/// The REST v2 router.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/v2/pods", get(list_pods).post(create_pod))
        .route("/v2/pods/{id}", get(get_pod).delete(delete_pod))
        .route("/v2/pods/{id}/action", post(pod_action))
        .route("/v2/catalog/gpus", get(list_gpus))
        .route("/v2/catalog/gpus/{id}", get(get_gpu))
        .with_state(state)
}

/// A problem+json response.
pub fn problem(status: u16, detail: &str, errors: Option<&[String]>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = json!({
        "title": code.canonical_reason().unwrap_or("Error"),
        "status": code.as_u16(),
        "detail": detail,
    });
    if let Some(errors) = errors {
        body["errors"] = json!(errors);
    }
    let mut resp = (code, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

fn refusal(r: &Refusal) -> Response {
    problem(r.status, &r.detail, r.errors.as_deref())
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Outcome of admitting a call: go ahead (with a fault that acts later), or answer now.
enum Admission {
    Proceed(Option<Fault>, Caller),
    Answer(Response),
}

/// Auth, rate limit, counting and fault selection, in RunPod's order. `pod` is the pod the call
/// is about, if any (a pod-scoped key may act on its own pod only).
fn admit(state: &Shared, op: Op, pod: Option<&str>, headers: &HeaderMap) -> Admission {
    let mut st = state.lock();
    st.user_agents.insert(
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    );
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(caller) = st.caller(bearer) else {
        return Admission::Answer(problem(401, "invalid or missing API key", None));
    };
    if let Caller::Pod(owner) = &caller
        && !st.pod_key_allows(owner, op, pod)
    {
        return Admission::Answer(problem(
            403,
            &format!("this API key is limited to pod {owner} and may not make this call"),
            None,
        ));
    }
    let now = Instant::now();
    if let Err(wait) = st.limits.take(now) {
        let mut resp = problem(429, "rate limit exceeded for the minute window", None);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return Admission::Answer(with_limits(&st, resp));
    }
    *st.calls.entry(op).or_insert(0) += 1;
    st.advance(now);
    match st.take_fault(op) {
        Some(Fault::RateLimited { retry_after_secs }) => {
            let mut resp = problem(429, "rate limit exceeded for the minute window", None);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Admission::Answer(with_limits(&st, resp))
        }
        Some(
            f @ (Fault::Delay(_)
            | Fault::HangAfterCreate
            | Fault::DropAfterCreate
            | Fault::ErrorAfterCreate(_)),
        ) => Admission::Proceed(Some(f), caller),
        Some(f) => match Refusal::from_fault(&f) {
            Some(r) => Admission::Answer(with_limits(&st, refusal(&r))),
            None => Admission::Proceed(None, caller),
        },
        None => Admission::Proceed(None, caller),
    }
}

/// Adds the `RateLimit` and `RateLimit-Policy` headers every authenticated response carries.
fn with_limits(st: &AccountState, mut resp: Response) -> Response {
    let now = Instant::now();
    if let Ok(v) = HeaderValue::from_str(&st.limits.header(now)) {
        resp.headers_mut().insert("ratelimit", v);
    }
    if let Ok(v) = HeaderValue::from_str(&st.limits.policy()) {
        resp.headers_mut().insert("ratelimit-policy", v);
    }
    resp
}

/// Runs `f` on the account after the admission and any delay fault.
async fn run(
    state: &Shared,
    op: Op,
    pod: Option<&str>,
    headers: &HeaderMap,
    f: impl FnOnce(&mut AccountState, &Caller) -> Response,
) -> (Response, Option<Fault>) {
    let (fault, caller) = match admit(state, op, pod, headers) {
        Admission::Answer(resp) => return (resp, None),
        Admission::Proceed(fault, caller) => (fault, caller),
    };
    if let Some(Fault::Delay(d)) = fault {
        tokio::time::sleep(d).await;
    }
    let mut st = state.lock();
    st.advance(Instant::now());
    let resp = f(&mut st, &caller);
    (with_limits(&st, resp), fault)
}

async fn create_pod(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let (resp, fault) = run(&state, Op::Create, None, &headers, |st, _| {
        match st.create(&body, None) {
            Ok(pod) => json_response(StatusCode::CREATED, &pod.to_json()),
            Err(r) => refusal(&r),
        }
    })
    .await;
    if resp.status() != StatusCode::CREATED {
        return resp;
    }
    match fault {
        Some(Fault::DropAfterCreate) => broken_body(resp),
        Some(Fault::HangAfterCreate) => {
            tokio::time::sleep(HANG).await;
            resp
        }
        Some(f @ Fault::ErrorAfterCreate(_)) => match Refusal::from_fault(&f) {
            Some(r) => with_limits(&state.lock(), refusal(&r)),
            None => resp,
        },
        _ => resp,
    }
}

/// Keeps the status and headers of `resp` and replaces its body with a stream that fails, so
/// the server aborts the connection after the client has seen `201`.
fn broken_body(resp: Response) -> Response {
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let chunks = futures::stream::iter([
        Ok(Bytes::from_static(b"{\"id\":")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "dropped by the stand-in",
        )),
    ]);
    Response::from_parts(parts, axum::body::Body::from_stream(chunks))
}

async fn list_pods(State(state): State<Shared>, headers: HeaderMap) -> Response {
    run(&state, Op::List, None, &headers, |st, _| {
        let pods: Vec<Value> = st.pods.values().map(|p| p.to_json()).collect();
        json_response(StatusCode::OK, &json!({ "pods": pods }))
    })
    .await
    .0
}

async fn get_pod(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    run(&state, Op::Get, Some(&id), &headers, |st, _| {
        match st.pods.get(&id) {
            Some(p) => json_response(StatusCode::OK, &p.to_json()),
            None => problem(404, &format!("pod {id} not found"), None),
        }
    })
    .await
    .0
}

async fn delete_pod(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    run(&state, Op::Delete, Some(&id), &headers, |st, caller| {
        if st.remove(&id) {
            if matches!(caller, Caller::Pod(_)) {
                st.self_deleted.insert(id.clone());
            }
            StatusCode::NO_CONTENT.into_response()
        } else {
            problem(404, &format!("pod {id} not found"), None)
        }
    })
    .await
    .0
}

async fn pod_action(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    run(&state, Op::Action, Some(&id), &headers, |st, _| {
        match st.action(&id, &body) {
            Ok(Some(pod)) => json_response(StatusCode::OK, &pod.to_json()),
            Ok(None) => StatusCode::NO_CONTENT.into_response(),
            Err(r) => refusal(&r),
        }
    })
    .await
    .0
}

async fn list_gpus(State(state): State<Shared>, headers: HeaderMap) -> Response {
    run(&state, Op::Catalog, None, &headers, |st, _| {
        let gpus: Vec<Value> = st
            .catalog
            .iter()
            .map(|g| g.to_json(st.capacity.get(&g.id).copied()))
            .collect();
        json_response(StatusCode::OK, &json!({ "gpus": gpus }))
    })
    .await
    .0
}

async fn get_gpu(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    run(&state, Op::Catalog, None, &headers, |st, _| {
        match st.catalog.iter().find(|g| g.id == id) {
            Some(g) => json_response(StatusCode::OK, &g.to_json(st.capacity.get(&g.id).copied())),
            None => problem(404, &format!("GPU type {id} not found"), None),
        }
    })
    .await
    .0
}
