//! DELETE: preconditions, finalizers (`deletionTimestamp` first, removal when the last
//! finalizer goes), propagation policies, and the side effects of a removal (CRDs stop being
//! served, garbage collection, namespace termination).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::gc;
use crate::namespaces;
use crate::resources::ResourceType;
use crate::store::{EventKind, ObjKey, Store};
use crate::write::{WriteCtx, finalizers, is_deleting, meta, meta_mut, name_of, rv_of};

/// Delete preconditions from a DeleteOptions body.
pub(crate) fn check_preconditions(
    ctx: &WriteCtx<'_>,
    options: &Value,
    old: &Value,
) -> Result<(), ApiError> {
    let pre = &options["preconditions"];
    let name = name_of(old);
    if let Some(uid) = pre["uid"].as_str() {
        let actual = meta(old)["uid"].as_str().unwrap_or_default();
        if uid != actual {
            let why = format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
            );
            return Err(ApiError::conflict(
                &ctx.rt.group,
                &ctx.rt.plural,
                name,
                &why,
            ));
        }
    }
    if let Some(rv) = pre["resourceVersion"].as_str() {
        let actual = rv_of(old);
        if rv != actual {
            let why = format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in meta: {actual}"
            );
            return Err(ApiError::conflict(
                &ctx.rt.group,
                &ctx.rt.plural,
                name,
                &why,
            ));
        }
    }
    Ok(())
}

/// Outcome of a delete request.
pub(crate) enum Deleted {
    /// Finalizers keep the object; it now carries deletionTimestamp.
    Pending(Arc<Value>),
    /// The object is gone.
    Gone(Arc<Value>),
}

/// DELETE: mark for deletion while finalizers remain, otherwise remove; dependents follow the
/// propagation policy (background by default).
pub(crate) fn delete(
    store: &mut Store,
    ctx: &WriteCtx<'_>,
    old: Arc<Value>,
    options: &Value,
) -> Result<Deleted, ApiError> {
    check_preconditions(ctx, options, &old)?;
    if ctx.dry_run {
        return Ok(if finalizers(&old).is_empty() {
            Deleted::Gone(old)
        } else {
            Deleted::Pending(old)
        });
    }
    let orphan_flag = options["orphanDependents"].as_bool() == Some(true);
    let policy = options["propagationPolicy"]
        .as_str()
        .or(orphan_flag.then_some("Orphan"));
    let key: ObjKey = (
        ctx.rt.storage_key(),
        ctx.namespace_key().to_string(),
        name_of(&old).to_string(),
    );
    if policy == Some("Orphan") {
        gc::orphan(store, &old);
    }
    if ctx.rt.group.is_empty() && ctx.rt.plural == "namespaces" {
        namespaces::terminate(store, old.clone(), ctx.now);
        return Ok(match store.get(&key.0, &key.1, &key.2) {
            Some(current) => Deleted::Pending(current),
            None => Deleted::Gone(old),
        });
    }
    if policy == Some("Foreground") && gc::has_dependents(store, &old) {
        gc::foreground(store, &key, old.clone(), ctx.now);
        return Ok(match store.get(&key.0, &key.1, &key.2) {
            Some(current) => Deleted::Pending(current),
            None => Deleted::Gone(old),
        });
    }
    if !finalizers(&old).is_empty() {
        if is_deleting(&old) {
            return Ok(Deleted::Pending(old));
        }
        let mut next = (*old).clone();
        let m = meta_mut(&mut next);
        m.insert("deletionTimestamp".into(), json!(ctx.now));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        let rv = store.next_rv();
        meta_mut(&mut next).insert("resourceVersion".into(), json!(rv.to_string()));
        return Ok(Deleted::Pending(store.commit(
            &key.0,
            EventKind::Modified,
            rv,
            next,
            Some(old),
        )));
    }
    Ok(Deleted::Gone(remove(store, ctx.rt, old, ctx.now)))
}

/// Remove an object for good, with the side effects of its kind.
pub(crate) fn remove(
    store: &mut Store,
    rt: &ResourceType,
    old: Arc<Value>,
    now: &str,
) -> Arc<Value> {
    let rv = store.next_rv();
    let mut last = (*old).clone();
    meta_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
    let gone = store.commit(&rt.storage_key(), EventKind::Deleted, rv, last, Some(old));
    if rt.plural == "customresourcedefinitions" {
        let keys: Vec<String> = crate::resources::types_from_crd(&gone)
            .iter()
            .map(ResourceType::storage_key)
            .collect();
        store.registry.remove_crd(&gone);
        for key in keys {
            store.drop_collection(&key);
        }
    }
    gc::after_removal(store, &gone, now);
    if let Some(ns) = gone["metadata"]["namespace"].as_str()
        && rt.namespaced
    {
        namespaces::settle(store, ns, now);
    }
    gone
}
