//! Garbage collection through `ownerReferences`, done synchronously under the store lock:
//! background deletion (dependents whose owners are all gone are deleted, references to gone
//! owners are dropped while other owners remain), `Orphan` (references to the deleted owner are
//! removed) and `Foreground` (the owner waits with the `foregroundDeletion` finalizer until no
//! dependent with `blockOwnerDeletion` remains).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::delete;
use crate::store::{EventKind, ObjKey, Store, owner_uids};

/// The finalizer holding an owner in foreground deletion.
pub(crate) const FOREGROUND: &str = "foregroundDeletion";

fn uid_of(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or_default()
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Write `obj` (a changed copy of what is stored at `key`) with a new resourceVersion.
fn rewrite(store: &mut Store, key: &ObjKey, old: Arc<Value>, mut obj: Value) -> Arc<Value> {
    let rv = store.next_rv();
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    store.commit(&key.0, EventKind::Modified, rv, obj, Some(old))
}

/// Keep only the ownerReferences for which `keep` holds.
fn retain_refs(store: &mut Store, key: &ObjKey, obj: Arc<Value>, keep: impl Fn(&str) -> bool) {
    let mut next = (*obj).clone();
    let refs: Vec<Value> = next["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| keep(r["uid"].as_str().unwrap_or_default()))
        .cloned()
        .collect();
    if let Some(meta) = next["metadata"].as_object_mut() {
        if refs.is_empty() {
            meta.remove("ownerReferences");
        } else {
            meta.insert("ownerReferences".into(), Value::Array(refs));
        }
    }
    if next != *obj {
        rewrite(store, key, obj, next);
    }
}

/// Delete `obj` as the garbage collector does: mark it while finalizers remain, else remove.
pub(crate) fn collect(store: &mut Store, key: &ObjKey, obj: Arc<Value>, now: &str) {
    let Some(rt) = store.registry.by_storage_key(&key.0) else {
        return;
    };
    if finalizers(&obj).is_empty() {
        delete::remove(store, &rt, obj, now);
    } else if obj["metadata"]["deletionTimestamp"].is_null() {
        let mut next = (*obj).clone();
        next["metadata"]["deletionTimestamp"] = json!(now);
        next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        rewrite(store, key, obj, next);
    }
}

/// After `gone` was removed: collect or update its dependents, and let owners waiting in
/// foreground deletion finish.
pub(crate) fn after_removal(store: &mut Store, gone: &Value, now: &str) {
    for (key, dependent) in store.dependents_of(uid_of(gone)) {
        let alive: Vec<String> = owner_uids(&dependent)
            .into_iter()
            .filter(|o| store.by_uid(o).is_some())
            .collect();
        if alive.is_empty() {
            collect(store, &key, dependent, now);
        } else {
            retain_refs(store, &key, dependent, |uid| alive.iter().any(|a| a == uid));
        }
    }
    for owner in owner_uids(gone) {
        if let Some((key, obj)) = store.by_uid(&owner)
            && finalizers(&obj).iter().any(|f| f == FOREGROUND)
        {
            settle_foreground(store, &key, obj, now);
        }
    }
}

/// Orphan the dependents of `owner`: drop their references to it.
pub(crate) fn orphan(store: &mut Store, owner: &Value) {
    let uid = uid_of(owner).to_string();
    for (key, dependent) in store.dependents_of(&uid) {
        retain_refs(store, &key, dependent, |u| u != uid);
    }
}

/// Whether `owner` has live dependents.
pub(crate) fn has_dependents(store: &Store, owner: &Value) -> bool {
    !store.dependents_of(uid_of(owner)).is_empty()
}

/// Start foreground deletion of `owner` (stored at `key`): mark it, collect its dependents,
/// and finish at once if nothing blocks.
pub(crate) fn foreground(store: &mut Store, key: &ObjKey, owner: Arc<Value>, now: &str) {
    let mut next = (*owner).clone();
    let mut fins = finalizers(&owner);
    if !fins.iter().any(|f| f == FOREGROUND) {
        fins.push(FOREGROUND.to_string());
    }
    next["metadata"]["finalizers"] = json!(fins);
    if next["metadata"]["deletionTimestamp"].is_null() {
        next["metadata"]["deletionTimestamp"] = json!(now);
        next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    }
    let marked = if next != *owner {
        rewrite(store, key, owner, next)
    } else {
        owner
    };
    for (dep_key, dependent) in store.dependents_of(uid_of(&marked)) {
        let others_alive = owner_uids(&dependent)
            .iter()
            .any(|o| o != uid_of(&marked) && store.by_uid(o).is_some());
        if !others_alive {
            collect(store, &dep_key, dependent, now);
        }
    }
    if let Some((key, current)) = store.by_uid(uid_of(&marked)) {
        settle_foreground(store, &key, current, now);
    }
}

/// Drop the foreground finalizer once no dependent blocks the owner; remove it if that was the
/// last finalizer.
fn settle_foreground(store: &mut Store, key: &ObjKey, owner: Arc<Value>, now: &str) {
    let uid = uid_of(&owner).to_string();
    let blocked = store.dependents_of(&uid).iter().any(|(_, dep)| {
        dep["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| {
                r["uid"].as_str() == Some(uid.as_str())
                    && r["blockOwnerDeletion"].as_bool() == Some(true)
            })
    });
    if blocked {
        return;
    }
    let remaining: Vec<String> = finalizers(&owner)
        .into_iter()
        .filter(|f| f != FOREGROUND)
        .collect();
    let mut next = (*owner).clone();
    next["metadata"]["finalizers"] = json!(remaining);
    if remaining.is_empty() {
        if let Some(meta) = next["metadata"].as_object_mut() {
            meta.remove("finalizers");
        }
        if let Some(rt) = store.registry.by_storage_key(&key.0) {
            delete::remove(store, &rt, Arc::new(next), now);
        }
    } else {
        rewrite(store, key, owner, next);
    }
}
