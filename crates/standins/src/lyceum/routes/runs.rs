//! Run routes of the Lyceum stand-in: start, status, list, abort and logs.

// Helpers return a ready error response as `Err`; its size does not matter in a test server.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::super::state::{DEFAULT_RUN_TIMEOUT_SECONDS, RUN_TERMINAL, unit_price};
use super::{
    App, authorize, create_fault, detail, finish_create, parse_body, str_field, validation,
};

pub(super) async fn start_run(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
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

pub(super) async fn run_status(
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

pub(super) async fn list_runs(State(app): State<App>, headers: HeaderMap) -> Response {
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

pub(super) async fn abort_run(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
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

pub(super) async fn run_logs(
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
    let hours = q
        .get("hours")
        .and_then(|h| h.parse::<i64>().ok())
        .unwrap_or(24);
    if !(1..=168).contains(&hours) {
        return validation(vec![(
            vec!["query", "hours"],
            "Input should be between 1 and 168".into(),
            "range",
        )]);
    }
    let store = app.store.lock();
    let Some(run) = store.runs.iter().find(|r| r.id == id) else {
        return detail(StatusCode::NOT_FOUND, "Execution not found");
    };
    // The last `limit` lines of the last `hours` hours, oldest first.
    let oldest = Timestamp::now() - jiff::SignedDuration::from_hours(hours);
    let recent: Vec<&(Timestamp, String)> = run.logs.iter().filter(|(t, _)| *t >= oldest).collect();
    let logs: Vec<Value> = recent[recent.len().saturating_sub(limit)..]
        .iter()
        .map(|(t, l)| json!({"timestamp": t.to_string(), "message": l, "level": "info"}))
        .collect();
    let total = logs.len();
    axum::Json(json!({ "logs": logs, "total": total })).into_response()
}
