//! HTTP routes of the Lyceum stand-in, under `/api/v2/external`, with Lyceum's status codes and
//! bodies: `{"detail": "..."}` errors, FastAPI `HTTPValidationError` for 422, Bearer `lk_…`
//! authentication, capacity refusals as HTTP 500 "could not be provisioned".

// Helpers return a ready error response as `Err`; its size does not matter in a test server.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};

use super::state::{DEFAULT_RUN_TIMEOUT_SECONDS, Fault, PROFILES, RUN_TERMINAL, Store, unit_price};

/// Shared server state.
pub struct Shared {
    /// The truth.
    pub store: Mutex<Store>,
    /// The one accepted API key.
    pub api_key: String,
}

type App = Arc<Shared>;

/// The stand-in's router (mounted under `/api/v2/external`).
pub fn router(app: App) -> Router {
    let api = Router::new()
        .route("/vms/create", post(create_vm))
        .route("/vms/list", get(list_vms))
        .route("/vms/availability", get(availability))
        .route("/vms/{vm_id}/status", get(vm_status))
        .route("/vms/{vm_id}", delete(delete_vm))
        .route("/execution/image/start", post(start_run))
        .route("/execution/{id}", get(run_status))
        .route("/workloads/list", get(list_runs))
        .route("/workloads/abort/{id}", post(abort_run))
        .route("/logs/execution/{id}", get(run_logs))
        .route("/pricing", get(pricing));
    Router::new().nest("/api/v2/external", api).with_state(app)
}

fn detail(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(json!({ "detail": msg }))).into_response()
}

/// FastAPI's 422 body: one entry per problem.
fn validation(errors: Vec<(Vec<&str>, String, &str)>) -> Response {
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

fn authorize(app: &App, headers: &HeaderMap, route: &str) -> Result<(), Response> {
    app.store
        .lock()
        .calls
        .entry(route.to_string())
        .and_modify(|n| *n += 1)
        .or_insert(1);
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
enum Outcome {
    Answer,
    Delay(std::time::Duration),
    ServerErrorAfter,
    Drop,
}

/// Applies the next one-shot fault (and the out-of-credits knob) to a create call.
fn create_fault(app: &App) -> Result<Outcome, Response> {
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
async fn finish_create(outcome: Outcome, body: Value) -> Response {
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

fn parse_body(body: &Bytes) -> Result<Map<String, Value>, Response> {
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

fn str_field<'a>(
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

async fn create_vm(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&app, &headers, "POST /vms/create") {
        return r;
    }
    let m = match parse_body(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut errors = vec![];
    let key = str_field(&m, "user_public_key", true, &mut errors).map(str::to_string);
    let profile = str_field(&m, "hardware_profile", true, &mut errors).map(str::to_string);
    let instance_type = str_field(&m, "instance_type", false, &mut errors)
        .unwrap_or("on-demand")
        .to_string();
    let name = str_field(&m, "display_name", false, &mut errors)
        .or_else(|| m.get("name").and_then(Value::as_str))
        .unwrap_or_default()
        .to_string();
    if !matches!(instance_type.as_str(), "on-demand" | "spot") {
        errors.push((
            vec!["body", "instance_type"],
            "Input should be 'on-demand' or 'spot'".into(),
            "enum",
        ));
    }
    let raw_count = m.get("instance_specs").and_then(|s| s.get("gpu_count"));
    let gpu_count = match raw_count {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            // Lyceum silently turns 0 into 1 (and bills it).
            Some(0) => 1,
            Some(n @ (1 | 2 | 4 | 8)) => n as u32,
            _ => {
                errors.push((
                    vec!["body", "instance_specs", "gpu_count"],
                    "gpu_count must be one of 1, 2, 4, 8".into(),
                    "value_error",
                ));
                1
            }
        },
    };
    if let Some(p) = &profile
        && !PROFILES.contains(&p.as_str())
    {
        errors.push((
            vec!["body", "hardware_profile"],
            format!("Unknown hardware profile '{p}'"),
            "value_error",
        ));
    }
    let (Some(key), Some(profile)) = (key, profile) else {
        return validation(errors);
    };
    if !errors.is_empty() {
        return validation(errors);
    }
    let outcome = match create_fault(&app) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let vm = app
        .store
        .lock()
        .add_vm(name, profile, instance_type, gpu_count, key);
    finish_create(outcome, vm.created_json()).await
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_none_or(|v| v != "false")
}

async fn list_vms(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&app, &headers, "GET /vms/list") {
        return r;
    }
    let store = app.store.lock();
    let now = Instant::now();
    let vms: Vec<Value> = store
        .vms
        .iter()
        .filter(|vm| match vm.status(now, &store.knobs).as_str() {
            "pending" | "provisioning" | "running" => flag(&q, "include_provisioning"),
            "ready" => flag(&q, "include_ready"),
            "failed" | "error" => flag(&q, "include_failed"),
            _ => flag(&q, "include_terminated"),
        })
        .map(|vm| vm.list_json(now, &store.knobs))
        .collect();
    let total = vms.len();
    axum::Json(json!({ "vms": vms, "total": total })).into_response()
}

async fn vm_status(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&app, &headers, "GET /vms/{vm_id}/status") {
        return r;
    }
    let store = app.store.lock();
    match store.vms.iter().find(|v| v.id == id) {
        Some(vm) => axum::Json(vm.status_json(Instant::now(), &store.knobs)).into_response(),
        None => detail(StatusCode::NOT_FOUND, "VM not found"),
    }
}

async fn delete_vm(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&app, &headers, "DELETE /vms/{vm_id}") {
        return r;
    }
    if app.store.lock().delete_vm(&id) {
        axum::Json(
            json!({"message": format!("VM {id} is being terminated"), "detached_volumes": []}),
        )
        .into_response()
    } else {
        detail(StatusCode::NOT_FOUND, "VM not found")
    }
}

async fn availability(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&app, &headers, "GET /vms/availability") {
        return r;
    }
    let mut variants = vec![];
    for profile in PROFILES {
        for (instance_type, spot) in [("on-demand", false), ("spot", true)] {
            let price = unit_price(profile, spot).unwrap_or_default();
            variants.push(json!({
                "hardware_profile": profile,
                "instance_type": instance_type,
                "price_per_hour": format!("{price:.4}"),
                "available_gpus_per_instance": if profile == "cpu" { json!([0]) } else { json!([1, 2, 4, 8]) },
                "block_storage_gpu_counts": [1, 2, 4, 8],
            }));
        }
    }
    axum::Json(json!({ "available_instance_variants": variants })).into_response()
}

async fn pricing(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&app, &headers, "GET /pricing") {
        return r;
    }
    let mut prices = vec![];
    for profile in PROFILES {
        for (instance_type, spot) in [("on-demand", false), ("spot", true)] {
            for count in [1u32, 2, 4, 8] {
                let per_hour = unit_price(profile, spot).unwrap_or_default() * f64::from(count);
                prices.push(json!({
                    "meter_slug": "vm_running",
                    "group_by": { "hardware_profile": format!("{instance_type}.{profile}.{count}x") },
                    "unit_price": format!("{:.8}", per_hour / 3600.0),
                    "unit_price_per_hour": format!("{per_hour:.4}"),
                }));
            }
        }
    }
    let count = prices.len();
    axum::Json(json!({ "prices": prices, "count": count })).into_response()
}

async fn start_run(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&app, &headers, "POST /execution/image/start") {
        return r;
    }
    let m = match parse_body(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut errors = vec![];
    let image = str_field(&m, "docker_image_ref", true, &mut errors).map(str::to_string);
    let execution_type = str_field(&m, "execution_type", false, &mut errors)
        .unwrap_or("cpu")
        .to_string();
    let env = str_field(&m, "docker_run_env", false, &mut errors)
        .unwrap_or_default()
        .to_string();
    let run_name = str_field(&m, "run_name", false, &mut errors).map(str::to_string);
    let cmd: Vec<String> = match m.get("docker_run_cmd") {
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        None => {
            errors.push((
                vec!["body", "docker_run_cmd"],
                "Field required".into(),
                "missing",
            ));
            vec![]
        }
        Some(_) => {
            errors.push((
                vec!["body", "docker_run_cmd"],
                "Input should be a valid list of strings".into(),
                "list_type",
            ));
            vec![]
        }
    };
    let timeout = match m.get("timeout") {
        None | Some(Value::Null) => DEFAULT_RUN_TIMEOUT_SECONDS,
        Some(v) => v.as_u64().filter(|t| *t > 0).unwrap_or_else(|| {
            errors.push((
                vec!["body", "timeout"],
                "Input should be a positive integer".into(),
                "int_type",
            ));
            DEFAULT_RUN_TIMEOUT_SECONDS
        }),
    };
    if unit_price(&execution_type, false).is_none()
        || !(execution_type == "cpu" || execution_type.starts_with("gpu."))
    {
        errors.push((
            vec!["body", "execution_type"],
            format!("Unknown execution type '{execution_type}'"),
            "value_error",
        ));
    }
    let labels: Vec<String> = m
        .get("labels")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let metadata = m.get("metadata").cloned().unwrap_or(Value::Null);
    let Some(image) = image else {
        return validation(errors);
    };
    if !errors.is_empty() {
        return validation(errors);
    }
    let outcome = match create_fault(&app) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let run = app.store.lock().add_run(
        run_name,
        execution_type,
        image,
        cmd,
        env,
        timeout,
        labels,
        metadata,
    );
    let body = json!({
        "execution_id": run.id,
        "status": "pending",
        "streaming_url": format!("https://api.lyceum.technology/api/v1/stream/{}", run.id),
    });
    finish_create(outcome, body).await
}

async fn run_status(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&app, &headers, "GET /execution/{id}") {
        return r;
    }
    let store = app.store.lock();
    match store.runs.iter().find(|r| r.id == id) {
        Some(run) => axum::Json(run.json(Instant::now(), &store.knobs)).into_response(),
        None => detail(StatusCode::NOT_FOUND, "Execution not found"),
    }
}

async fn list_runs(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&app, &headers, "GET /workloads/list") {
        return r;
    }
    let store = app.store.lock();
    let now = Instant::now();
    let runs: Vec<Value> = store
        .runs
        .iter()
        .map(|r| r.json(now, &store.knobs))
        .collect();
    axum::Json(Value::Array(runs)).into_response()
}

async fn abort_run(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&app, &headers, "POST /workloads/abort/{id}") {
        return r;
    }
    let mut store = app.store.lock();
    let now = Instant::now();
    let status = match store.runs.iter().find(|r| r.id == id) {
        Some(run) => run.status(now, &store.knobs).0,
        None => return detail(StatusCode::NOT_FOUND, "Execution not found"),
    };
    if RUN_TERMINAL.contains(&status.as_str()) {
        return detail(
            StatusCode::BAD_REQUEST,
            &format!("Execution already finished with status '{status}'"),
        );
    }
    store.force_run(&id, "aborted", None);
    axum::Json(json!({ "message": format!("Execution {id} aborted") })).into_response()
}

async fn run_logs(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&app, &headers, "GET /logs/execution/{id}") {
        return r;
    }
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return validation(vec![(
            vec!["query", "limit"],
            "Input should be between 1 and 10000".into(),
            "range",
        )]);
    }
    let store = app.store.lock();
    let Some(run) = store.runs.iter().find(|r| r.id == id) else {
        return detail(StatusCode::NOT_FOUND, "Execution not found");
    };
    let (status, _) = run.status(Instant::now(), &store.knobs);
    let ts = run.created_at.to_string();
    let lines = [
        format!("pulling image {}", run.image),
        format!("starting command {:?}", run.cmd),
        format!("status {status}"),
    ];
    let logs: Vec<Value> = lines
        .iter()
        .take(limit)
        .map(|l| json!({"timestamp": ts, "message": l, "level": "info"}))
        .collect();
    let total = logs.len();
    axum::Json(json!({ "logs": logs, "total": total })).into_response()
}
