//! The Argo CD health checks (`deploy/argocd/health/*.lua`) run in Lua 5.1, as in Argo CD, against
//! sample TrainingJob and CloudResource objects; `deploy/argocd/argocd-cm.yaml` carries exact
//! copies of them under the keys Argo CD reads.

mod deploy_support;

use deploy_support::*;
use mlua::{Lua, Table, Value as LuaValue};
use serde_json::{Value, json};

const TRAINING_JOB: &str = "deploy/argocd/health/runctl.dev_TrainingJob.lua";
const CLOUD_RESOURCE: &str = "deploy/argocd/health/runctl.dev_CloudResource.lua";

/// Converts JSON to a Lua value the way Argo CD hands objects to health scripts: objects and
/// arrays become tables (arrays 1-based), null becomes nil.
fn to_lua(lua: &Lua, v: &Value) -> mlua::Result<LuaValue> {
    Ok(match v {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => LuaValue::Integer(i),
            None => LuaValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => LuaValue::String(lua.create_string(s)?),
        Value::Array(a) => {
            let t = lua.create_table()?;
            for (i, item) in a.iter().enumerate() {
                t.set(i + 1, to_lua(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
        Value::Object(o) => {
            let t = lua.create_table()?;
            for (k, item) in o {
                t.set(k.as_str(), to_lua(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

/// Runs a health script on an object; returns (status, message).
fn health(script_path: &str, obj: &Value) -> (String, String) {
    let lua = Lua::new();
    let obj = to_lua(&lua, obj).expect("object converts");
    lua.globals().set("obj", obj).expect("set obj");
    let hs: Table = lua
        .load(read(script_path))
        .set_name(script_path)
        .eval()
        .unwrap_or_else(|e| panic!("{script_path}: {e}"));
    let status: String = hs.get("status").expect("hs.status is a string");
    let message: String = hs.get("message").expect("hs.message is a string");
    (status, message)
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 2})
}

fn job(phase: Option<&str>, observed: Option<i64>, extra: Value) -> Value {
    let mut status = json!({"conditions": [condition("Ready", "False", "Waiting", "")]});
    if let Some(p) = phase {
        status["phase"] = json!(p);
    }
    if let Some(g) = observed {
        status["observedGeneration"] = json!(g);
    }
    if let (Some(s), Some(e)) = (status.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
           "metadata": {"name": "j", "namespace": "ml", "generation": 2}, "spec": {}, "status": status})
}

fn machine(
    state: Option<&str>,
    observed: Option<i64>,
    conditions: Vec<Value>,
    extra: Value,
) -> Value {
    let mut status = json!({"conditions": conditions});
    if let Some(s) = state {
        status["state"] = json!(s);
    }
    if let Some(g) = observed {
        status["observedGeneration"] = json!(g);
    }
    if let (Some(s), Some(e)) = (status.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource",
           "metadata": {"name": "m", "namespace": "ml", "generation": 2}, "spec": {"provider": "sim"}, "status": status})
}

#[test]
fn training_job_health_by_phase() {
    let none = json!({});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "no status yet",
            json!({"apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "j", "generation": 1}, "spec": {}}),
            "Progressing",
        ),
        (
            "status without phase",
            job(None, Some(2), none.clone()),
            "Progressing",
        ),
        (
            "pending",
            job(Some("Pending"), Some(2), none.clone()),
            "Progressing",
        ),
        (
            "provisioning",
            job(Some("Provisioning"), Some(2), none.clone()),
            "Progressing",
        ),
        (
            "running",
            job(Some("Running"), Some(2), none.clone()),
            "Progressing",
        ),
        (
            "succeeded",
            job(Some("Succeeded"), Some(2), none.clone()),
            "Healthy",
        ),
        (
            "failed",
            job(
                Some("Failed"),
                Some(2),
                json!({"reason": "BackoffLimitExceeded", "message": "3 attempts failed"}),
            ),
            "Degraded",
        ),
        (
            "suspended",
            job(Some("Suspended"), Some(2), none.clone()),
            "Suspended",
        ),
        (
            "succeeded but spec changed since",
            job(Some("Succeeded"), Some(1), none.clone()),
            "Progressing",
        ),
        (
            "failed, generation not observed yet",
            job(Some("Failed"), None, none.clone()),
            "Progressing",
        ),
        (
            "unknown phase",
            job(Some("Exploded"), Some(2), none.clone()),
            "Unknown",
        ),
    ];
    for (name, obj, want) in cases {
        let (status, message) = health(TRAINING_JOB, &obj);
        assert_eq!(status, want, "{name}: {message}");
        assert!(!message.is_empty(), "{name}: a message is always set");
    }
    let (_, message) = health(
        TRAINING_JOB,
        &job(
            Some("Failed"),
            Some(2),
            json!({"reason": "BackoffLimitExceeded", "message": "3 attempts failed"}),
        ),
    );
    assert_eq!(message, "BackoffLimitExceeded: 3 attempts failed");
    let retrying = job(
        Some("Provisioning"),
        Some(2),
        json!({"conditions": [condition("Synced", "False", "RateLimited", "slow down")]}),
    );
    let (status, message) = health(TRAINING_JOB, &retrying);
    assert_eq!(
        (status.as_str(), message.as_str()),
        ("Progressing", "Provisioning (retrying: RateLimited)")
    );
}

#[test]
fn cloud_resource_health_by_state() {
    let ok = || {
        vec![
            condition("Ready", "True", "Running", ""),
            condition("Synced", "True", "ReconcileSuccess", ""),
        ]
    };
    let none = json!({});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "no status yet",
            json!({"apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource", "metadata": {"name": "m", "generation": 1}, "spec": {}}),
            "Progressing",
        ),
        (
            "starting",
            machine(Some("Starting"), Some(2), ok(), none.clone()),
            "Progressing",
        ),
        (
            "running",
            machine(Some("Running"), Some(2), ok(), none.clone()),
            "Healthy",
        ),
        (
            "stopping",
            machine(Some("Stopping"), Some(2), ok(), none.clone()),
            "Progressing",
        ),
        (
            "stopped",
            machine(Some("Stopped"), Some(2), ok(), none.clone()),
            "Suspended",
        ),
        (
            "terminating",
            machine(Some("Terminating"), Some(2), ok(), none.clone()),
            "Progressing",
        ),
        (
            "terminated",
            machine(Some("Terminated"), Some(2), ok(), none.clone()),
            "Healthy",
        ),
        (
            "error",
            machine(
                Some("Error"),
                Some(2),
                ok(),
                json!({"reason": "SpotInterrupted", "message": "reclaimed"}),
            ),
            "Degraded",
        ),
        (
            "unknown provider state",
            machine(Some("Unknown"), Some(2), ok(), none.clone()),
            "Unknown",
        ),
        (
            "running but spec not observed",
            machine(Some("Running"), Some(1), ok(), none.clone()),
            "Progressing",
        ),
        (
            "running but out of sync",
            machine(
                Some("Running"),
                Some(2),
                vec![condition(
                    "Synced",
                    "False",
                    "AuthenticationFailed",
                    "bad key",
                )],
                none.clone(),
            ),
            "Degraded",
        ),
        (
            "terminated and out of sync is still done",
            machine(
                Some("Terminated"),
                Some(2),
                vec![condition("Synced", "False", "NotFound", "gone")],
                none.clone(),
            ),
            "Healthy",
        ),
    ];
    for (name, obj, want) in cases {
        let (status, message) = health(CLOUD_RESOURCE, &obj);
        assert_eq!(status, want, "{name}: {message}");
        assert!(!message.is_empty(), "{name}: a message is always set");
    }
    let (_, message) = health(
        CLOUD_RESOURCE,
        &machine(
            Some("Error"),
            Some(2),
            ok(),
            json!({"reason": "SpotInterrupted", "message": "reclaimed"}),
        ),
    );
    assert_eq!(message, "SpotInterrupted: reclaimed");
    let out_of_sync = machine(
        Some("Running"),
        Some(2),
        vec![condition(
            "Synced",
            "False",
            "AuthenticationFailed",
            "bad key",
        )],
        json!({}),
    );
    assert_eq!(
        health(CLOUD_RESOURCE, &out_of_sync).1,
        "AuthenticationFailed: bad key"
    );
}

#[test]
fn argocd_cm_carries_exact_copies_under_argo_keys() {
    let cm = parse_file("deploy/argocd/argocd-cm.yaml");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    for (kind, path) in [
        ("TrainingJob", TRAINING_JOB),
        ("CloudResource", CLOUD_RESOURCE),
    ] {
        let key = format!("resource.customizations.health.runctl.dev_{kind}");
        let embedded = cm["data"][&key]
            .as_str()
            .unwrap_or_else(|| panic!("argocd-cm has {key}"));
        assert!(
            embedded == read(path),
            "{key} in deploy/argocd/argocd-cm.yaml differs from {path}"
        );
    }
    let gitops = read("docs/gitops.md");
    assert!(gitops.contains("resource.customizations.health.runctl.dev_TrainingJob"));
    assert!(gitops.contains("deploy/argocd/argocd-cm.yaml"));
}
