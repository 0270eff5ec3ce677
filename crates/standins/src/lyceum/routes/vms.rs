//! VM routes of the Lyceum stand-in: create, list, status, delete, availability and pricing.

// Helpers return a ready error response as `Err`; its size does not matter in a test server.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::super::state::{PROFILES, unit_price};
use super::{
    App, authorize, create_fault, detail, finish_create, parse_body, str_field, validation,
};

pub(super) async fn create_vm(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
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

pub(super) async fn list_vms(
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

pub(super) async fn vm_status(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&app, &headers, "GET /vms/{vm_id}/status") {
        return r;
    }
    let store = app.store.lock();
    match store.vms.iter().find(|v| v.id == id) {
        Some(vm) => axum::Json(vm.status_json(Instant::now(), &store.knobs)).into_response(),
        None => detail(StatusCode::NOT_FOUND, "VM not found"),
    }
}

pub(super) async fn delete_vm(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
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

pub(super) async fn availability(State(app): State<App>, headers: HeaderMap) -> Response {
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

pub(super) async fn pricing(State(app): State<App>, headers: HeaderMap) -> Response {
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
