//! Write verbs over HTTP: create (POST), update (PUT), patch and server-side apply (PATCH),
//! delete and deletecollection (DELETE). Each takes the store lock once and runs the write
//! pipeline; injected faults are consumed first. Request bodies are decoded before the lock is
//! taken and answers are encoded after it is released, so that concurrent writes only queue for
//! the part that must be serial.

use std::sync::Arc;

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use crate::delete::{self as deleting, Deleted};
use crate::error::{ApiError, json_response};
use crate::faults::FaultKind;
use crate::managed;
use crate::patch::{self, PatchKind};
use crate::server::{Call, Presenter, Target, now, selector, yaml};
use crate::stats::Verb;
use crate::store::Store;
use crate::write::{self, WriteCtx};

/// Consume an injected write fault, if one matches.
fn injected(call: &Call<'_>, verb: Verb, target: &Target, name: &str) -> Result<(), ApiError> {
    call.app.stats.record(verb, &target.group_resource());
    match call
        .app
        .faults
        .take_write_fault(verb, &target.rt.plural, &target.group_resource())
    {
        Some(FaultKind::Conflict) => {
            Err(ApiError::stale(&target.rt.group, &target.rt.plural, name))
        }
        Some(FaultKind::ServerError) => Err(ApiError::internal(
            "injected fault: the server is unable to handle the request",
        )),
        None => Ok(()),
    }
}

fn ctx<'a>(call: &Call<'_>, target: &'a Target, manager: &'a str, now: &'a str) -> WriteCtx<'a> {
    WriteCtx {
        rt: &target.rt,
        namespace: target.namespace_key(),
        manager,
        now,
        dry_run: call.param("dryRun") == Some("All"),
        scope: write::scope_for(&target.rt, target.subresource.as_deref()),
        strict: call.param("fieldValidation") == Some("Strict"),
    }
}

/// A write's answer: the object, shown as the client's `Accept` asks.
fn present(call: &Call<'_>, target: &Target, obj: &Value, code: StatusCode) -> Response {
    json_response(
        code,
        &Presenter::from_accept(call.headers).present(&target.rt, obj),
    )
}

pub(crate) fn create(call: &Call<'_>, target: &Target) -> Result<Response, ApiError> {
    let body = call.object_body()?;
    injected(call, Verb::Create, target, write::name_of(&body))?;
    let (manager, now) = (call.manager(), now());
    let ctx = ctx(call, target, &manager, &now);
    let created = {
        let mut store = call.app.store.lock();
        write::create(&mut store, &ctx, body, None)?
    };
    Ok(present(call, target, &created, StatusCode::CREATED))
}

pub(crate) fn update(call: &Call<'_>, target: &Target, name: &str) -> Result<Response, ApiError> {
    let body = call.object_body()?;
    injected(call, Verb::Update, target, name)?;
    let (manager, now) = (call.manager(), now());
    let ctx = ctx(call, target, &manager, &now);
    let updated = {
        let mut store = call.app.store.lock();
        update_locked(&mut store, target, &ctx, body, name)?
    };
    Ok(present(call, target, &updated, StatusCode::OK))
}

fn update_locked(
    store: &mut Store,
    target: &Target,
    ctx: &WriteCtx<'_>,
    body: Value,
    name: &str,
) -> Result<Arc<Value>, ApiError> {
    let old = store.get(&target.rt.storage_key(), target.namespace_key(), name);
    let old = old.ok_or_else(|| ApiError::not_found(&target.rt.group, &target.rt.plural, name))?;
    if target.rt.custom
        && body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    {
        let cause = crate::error::Cause::new(
            "FieldValueInvalid",
            "metadata.resourceVersion",
            "Invalid value: 0x0: must be specified for an update",
        );
        return Err(ApiError::invalid(
            &target.rt.kind_group(),
            &target.rt.group,
            &target.rt.kind,
            name,
            vec![cause],
        ));
    }
    write::update(store, ctx, old, body, None)
}

/// A patch body decoded before the store lock: a server-side apply configuration, a merge or
/// strategic merge document (a decoding error is answered only if the object exists, as when it
/// was decoded under the lock); a JSON patch is read against the object itself, under the lock.
enum PatchBody {
    Apply(Value),
    Json,
    Merge(Result<Value, ApiError>),
    Strategic(Result<Value, ApiError>),
}

pub(crate) fn patch(call: &Call<'_>, target: &Target, name: &str) -> Result<Response, ApiError> {
    let content_type = call.content_type();
    let kind = PatchKind::from_content_type(content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
    if kind == PatchKind::Strategic && target.rt.custom {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    injected(call, Verb::Patch, target, name)?;
    let (manager, now) = (call.manager(), now());
    let ctx = ctx(call, target, &manager, &now);
    let document = || {
        serde_json::from_slice(call.body)
            .map_err(|e| ApiError::bad_request(format!("failed to decode the patch as JSON: {e}")))
    };
    let body = match kind {
        PatchKind::Apply => PatchBody::Apply(apply_config(call, target, &ctx, name)?),
        PatchKind::Json => PatchBody::Json,
        PatchKind::Merge => PatchBody::Merge(document()),
        PatchKind::Strategic => PatchBody::Strategic(document()),
    };
    let (written, code) = {
        let mut store = call.app.store.lock();
        let old = store.get(&target.rt.storage_key(), target.namespace_key(), name);
        let store = &mut store;
        match body {
            PatchBody::Apply(config) => apply(call, target, &ctx, store, old, config, name)?,
            PatchBody::Json => patch_locked(store, target, &ctx, old, name, |current| {
                patch::json(current, call.body)
            })?,
            PatchBody::Merge(doc) => patch_locked(store, target, &ctx, old, name, |current| {
                doc.map(|doc| patch::merge(current, &doc))
            })?,
            PatchBody::Strategic(doc) => patch_locked(store, target, &ctx, old, name, |current| {
                doc.map(|doc| patch::strategic(current, &doc))
            })?,
        }
    };
    Ok(present(call, target, &written, code))
}

/// A JSON, merge or strategic merge patch of the stored object by `edit`, under the store lock.
fn patch_locked(
    store: &mut Store,
    target: &Target,
    ctx: &WriteCtx<'_>,
    old: Option<Arc<Value>>,
    name: &str,
    edit: impl FnOnce(&Value) -> Result<Value, ApiError>,
) -> Result<(Arc<Value>, StatusCode), ApiError> {
    let old = old.ok_or_else(|| ApiError::not_found(&target.rt.group, &target.rt.plural, name))?;
    let current = Presenter::Full.present(&target.rt, &old);
    let patched = edit(&current)?;
    let updated = write::update(store, ctx, old, patched, None)?;
    Ok((updated, StatusCode::OK))
}

/// Decodes and checks a server-side apply configuration (no store access).
fn apply_config(
    call: &Call<'_>,
    target: &Target,
    ctx: &WriteCtx<'_>,
    name: &str,
) -> Result<Value, ApiError> {
    if call.param("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::unprocessable(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let mut config = yaml(call.body)?;
    if !config.is_object()
        || config["apiVersion"].as_str().is_none()
        || config["kind"].as_str().is_none()
    {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in an apply patch",
        ));
    }
    if config["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != name)
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            write::name_of(&config)
        )));
    }
    write::check_api_version(&target.rt, &config)?;
    write::check_namespace(ctx, &config)?;
    write::prune_unknown(ctx, &mut config)?;
    Ok(config)
}

/// Server-side apply of a checked configuration, under the store lock.
fn apply(
    call: &Call<'_>,
    target: &Target,
    ctx: &WriteCtx<'_>,
    store: &mut Store,
    old: Option<Arc<Value>>,
    config: Value,
    name: &str,
) -> Result<(Arc<Value>, StatusCode), ApiError> {
    let force = call.flag("force");
    let writer = ctx.writer();
    let conflict =
        |causes| ApiError::apply_conflict(&target.rt.group, &target.rt.plural, name, causes);
    match old {
        None => {
            if target.subresource.is_some() {
                return Err(ApiError::not_found(
                    &target.rt.group,
                    &target.rt.plural,
                    name,
                ));
            }
            let mut base = json!({"apiVersion": target.rt.api_version(), "kind": target.rt.kind, "metadata": {"name": name}});
            if let Some(ns) = &target.namespace {
                base["metadata"]["namespace"] = json!(ns);
            }
            let (merged, entries) =
                managed::apply(&base, &config, force, &writer).map_err(conflict)?;
            let created = write::create(store, ctx, merged, Some(entries))?;
            Ok((created, StatusCode::CREATED))
        }
        Some(old) => {
            write::check_rv(ctx, &config, &old)?;
            let current = Presenter::Full.present(&target.rt, &old);
            let (merged, entries) =
                managed::apply(&current, &config, force, &writer).map_err(conflict)?;
            let updated = write::update(store, ctx, old, merged, Some(entries))?;
            Ok((updated, StatusCode::OK))
        }
    }
}

fn delete_options(call: &Call<'_>) -> Result<Value, ApiError> {
    if call.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(call.body)
        .map_err(|e| ApiError::bad_request(format!("failed to decode DeleteOptions: {e}")))
}

/// `dryRun: ["All"]` in DeleteOptions.
fn dry_run_in(options: &Value) -> bool {
    options["dryRun"]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v == "All"))
}

pub(crate) fn delete(call: &Call<'_>, target: &Target, name: &str) -> Result<Response, ApiError> {
    let options = delete_options(call)?;
    injected(call, Verb::Delete, target, name)?;
    let (manager, now) = (call.manager(), now());
    let mut ctx = ctx(call, target, &manager, &now);
    ctx.dry_run |= dry_run_in(&options);
    let deleted = {
        let mut store = call.app.store.lock();
        let old = store.get(&target.rt.storage_key(), target.namespace_key(), name);
        let old =
            old.ok_or_else(|| ApiError::not_found(&target.rt.group, &target.rt.plural, name))?;
        deleting::delete(&mut store, &ctx, old, &options)?
    };
    match deleted {
        Deleted::Pending(obj) => Ok(present(call, target, &obj, StatusCode::OK)),
        Deleted::Gone(obj) => {
            let status = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": target.rt.group, "kind": target.rt.plural, "uid": obj["metadata"]["uid"]},
            });
            Ok(json_response(StatusCode::OK, &status))
        }
    }
}

pub(crate) fn delete_collection(call: &Call<'_>, target: &Target) -> Result<Response, ApiError> {
    let options = delete_options(call)?;
    injected(call, Verb::Delete, target, "")?;
    let selector = selector(call)?;
    let (manager, now) = (call.manager(), now());
    let mut ctx = ctx(call, target, &manager, &now);
    ctx.dry_run |= dry_run_in(&options);
    let mut store = call.app.store.lock();
    let victims: Vec<Arc<Value>> = store
        .collection(&target.rt.storage_key())
        .in_namespace(target.namespace.as_deref())
        .filter(|o| selector.matches(o))
        .cloned()
        .collect();
    let mut items = Vec::new();
    for victim in victims {
        // Garbage collection of an earlier victim may have removed this one.
        let Some(victim) = store.get(
            &target.rt.storage_key(),
            target.namespace_key(),
            write::name_of(&victim),
        ) else {
            continue;
        };
        let obj = match deleting::delete(&mut store, &ctx, victim, &options)? {
            Deleted::Pending(obj) | Deleted::Gone(obj) => obj,
        };
        items.push(Presenter::Full.present(&target.rt, &obj));
    }
    let body = json!({"kind": format!("{}List", target.rt.kind), "apiVersion": target.rt.api_version(),
                      "metadata": {"resourceVersion": store.rv.to_string()}, "items": items});
    Ok(json_response(StatusCode::OK, &body))
}
