//! Namespace lifecycle as the namespace controller runs it: deleting a namespace marks it
//! `Terminating`, deletes everything in it (finalizers honoured, so controllers get to clean up),
//! and removes the namespace once it is empty. A terminating namespace takes no new objects.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::delete;
use crate::gc;
use crate::resources::ResourceType;
use crate::store::{EventKind, ObjKey, Store};

const KEY: &str = "/namespaces";

/// Whether namespace `name` exists and is being deleted.
pub(crate) fn is_terminating(store: &Store, name: &str) -> bool {
    store
        .get(KEY, "", name)
        .is_some_and(|ns| !ns["metadata"]["deletionTimestamp"].is_null())
}

/// One resource type per storage key, namespaced only.
fn namespaced_types(store: &Store) -> Vec<Arc<ResourceType>> {
    let mut seen = HashSet::new();
    store
        .registry
        .all()
        .filter(|rt| rt.namespaced && seen.insert(rt.storage_key()))
        .cloned()
        .collect()
}

fn contents(store: &mut Store, namespace: &str) -> Vec<(ObjKey, Arc<Value>)> {
    let mut out = Vec::new();
    for rt in namespaced_types(store) {
        let key = rt.storage_key();
        for obj in store.collection(&key).in_namespace(Some(namespace)) {
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            out.push(((key.clone(), namespace.to_string(), name), obj.clone()));
        }
    }
    out
}

/// Start deleting namespace `ns` (the stored object): mark it, delete its contents, and
/// remove it if nothing remains.
pub(crate) fn terminate(store: &mut Store, ns: Arc<Value>, now: &str) {
    let name = ns["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if ns["metadata"]["deletionTimestamp"].is_null() {
        let mut next = (*ns).clone();
        next["metadata"]["deletionTimestamp"] = json!(now);
        next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        next["status"] = json!({"phase": "Terminating"});
        let rv = store.next_rv();
        next["metadata"]["resourceVersion"] = json!(rv.to_string());
        store.commit(KEY, EventKind::Modified, rv, next, Some(ns));
    }
    for (key, _) in contents(store, &name) {
        // Garbage collection of an earlier object may have removed this one.
        if let Some(current) = store.get(&key.0, &key.1, &key.2) {
            gc::collect(store, &key, current, now);
        }
    }
    settle(store, &name, now);
}

/// Remove terminating namespace `name` once it is empty and has no finalizers of its own.
pub(crate) fn settle(store: &mut Store, name: &str, now: &str) {
    if !is_terminating(store, name) || !contents(store, name).is_empty() {
        return;
    }
    let Some(ns) = store.get(KEY, "", name) else {
        return;
    };
    let held = ns["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if let (false, Some(rt)) = (held, store.registry.get("", "v1", "namespaces")) {
        delete::remove(store, &rt, ns, now);
    }
}
