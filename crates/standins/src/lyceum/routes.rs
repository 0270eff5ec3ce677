//! HTTP routes of the Lyceum stand-in, under `/api/v2/external`, with Lyceum's status codes and
//! bodies: `{"detail": "..."}` errors, FastAPI `HTTPValidationError` for 422, Bearer `lk_…`
//! authentication, capacity refusals as HTTP 500 "could not be provisioned".

// Helpers return a ready error response as `Err`; its size does not matter in a test server.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};

mod runs;
mod vms;

use super::state::{Fault, Store};

/// Shared server state.
pub struct Shared {
    /// The truth.
    pub store: Mutex<Store>,
    /// The one accepted API key.
    pub api_key: String,
}

pub(super) type App = Arc<Shared>;

/// The stand-in's router (mounted under `/api/v2/external`).
pub fn router(app: App) -> Router {
    let api = Router::new()
        .route("/vms/create", post(vms::create_vm))
        .route("/vms/list", get(vms::list_vms))
        .route("/vms/availability", get(vms::availability))
        .route("/vms/{vm_id}/status", get(vms::vm_status))
        .route("/vms/{vm_id}", delete(vms::delete_vm))
        .route("/execution/image/start", post(runs::start_run))
        .route("/execution/{id}", get(runs::run_status))
        .route("/workloads/list", get(runs::list_runs))
        .route("/workloads/abort/{id}", post(runs::abort_run))
        .route("/logs/execution/{id}", get(runs::run_logs))
        .route("/pricing", get(vms::pricing));
    Router::new().nest("/api/v2/external", api).with_state(app)
}

pub(super) fn detail(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(json!({ "detail": msg }))).into_response()
}

/// FastAPI's 422 body: one entry per problem.
pub(super) fn validation(errors: Vec<(Vec<&str>, String, &str)>) -> Response {
    let detail: Vec<Value> = errors
        .into_iter()
        .map(|(loc, msg, kind)| json!({"loc": loc, "msg": msg, "type": kind}))
        .collect();
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({ "detail": detail })),
    )
        .into_response()
}

pub(super) fn authorize(app: &App, headers: &HeaderMap, route: &str) -> Result<(), Response> {
    {
        let mut store = app.store.lock();
        store
            .calls
            .entry(route.to_string())
            .and_modify(|n| *n += 1)
            .or_insert(1);
        store.user_agents.insert(
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
        );
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(t) if t.starts_with("lk_") && t == app.api_key => Ok(()),
        _ => Err(detail(
            StatusCode::UNAUTHORIZED,
            "Invalid or expired API key",
        )),
    }
}

/// What a create call does after its fault check.
pub(super) enum Outcome {
    Answer,
    Delay(std::time::Duration),
    ServerErrorAfter,
    Drop,
}

/// Applies the next one-shot fault (and the out-of-credits knob) to a create call.
pub(super) fn create_fault(app: &App) -> Result<Outcome, Response> {
    let mut store = app.store.lock();
    if store.knobs.out_of_credits {
        return Err(out_of_credits());
    }
    let fault = store.faults.pop_front();
    let delay = store.knobs.create_delay;
    match fault {
        None => Ok(if delay.is_zero() {
            Outcome::Answer
        } else {
            Outcome::Delay(delay)
        }),
        Some(Fault::ServerError) => Err(detail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
        )),
        Some(Fault::Capacity) => Err(detail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed to create VM: instance could not be provisioned: no capacity available for the requested hardware profile",
        )),
        Some(Fault::RateLimit) => Err((
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            axum::Json(json!({"detail": "Too many requests"})),
        )
            .into_response()),
        Some(Fault::Unauthorized) => Err(detail(
            StatusCode::UNAUTHORIZED,
            "Invalid or expired API key",
        )),
        Some(Fault::Forbidden) => Err(detail(
            StatusCode::FORBIDDEN,
            "Not permitted for this organization",
        )),
        Some(Fault::OutOfCredits) => Err(out_of_credits()),
        Some(Fault::ServerErrorAfterCreate) => Ok(Outcome::ServerErrorAfter),
        Some(Fault::DropAfterCreate) => Ok(Outcome::Drop),
        Some(Fault::Delay(d)) => Ok(Outcome::Delay(d)),
    }
}

fn out_of_credits() -> Response {
    detail(
        StatusCode::PAYMENT_REQUIRED,
        "Insufficient credits. Please add credits to your account to continue.",
    )
}

/// Answers a create call according to its outcome; the machine already exists.
pub(super) async fn finish_create(outcome: Outcome, body: Value) -> Response {
    match outcome {
        Outcome::Answer => (StatusCode::OK, axum::Json(body)).into_response(),
        Outcome::Delay(d) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Outcome::ServerErrorAfter => detail(StatusCode::BAD_GATEWAY, "Bad Gateway"),
        // Unwinding the connection task closes the socket without an answer; `resume_unwind`
        // skips the panic hook, so nothing is printed.
        Outcome::Drop => std::panic::resume_unwind(Box::new("lyceum stand-in: dropped response")),
    }
}

pub(super) fn parse_body(body: &Bytes) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(validation(vec![(
            vec!["body"],
            "Input should be a valid dictionary or object to extract fields from".into(),
            "model_attributes_type",
        )])),
        Err(e) => Err(validation(vec![(
            vec!["body", "0"],
            format!("JSON decode error: {e}"),
            "json_invalid",
        )])),
    }
}

pub(super) fn str_field<'a>(
    m: &'a Map<String, Value>,
    field: &'static str,
    required: bool,
    errors: &mut Vec<(Vec<&'static str>, String, &'static str)>,
) -> Option<&'a str> {
    match m.get(field) {
        Some(Value::String(s)) => Some(s),
        None | Some(Value::Null) if !required => None,
        None => {
            errors.push((vec!["body", field], "Field required".into(), "missing"));
            None
        }
        Some(_) => {
            errors.push((
                vec!["body", field],
                "Input should be a valid string".into(),
                "string_type",
            ));
            None
        }
    }
}
