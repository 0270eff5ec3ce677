//! In-memory storage: objects per resource, one global monotonically increasing
//! resourceVersion, and a bounded per-resource history of watch events fanned out to watchers
//! through a broadcast channel.
//!
//! Every write happens under the store's lock and publishes its event while still holding it,
//! so a watcher that snapshots history and subscribes under the same lock sees no gap and no
//! duplicate.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use serde_json::Value;
use tokio::sync::broadcast;

use crate::resources::Registry;

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// One change, as stored in history and sent to watchers.
#[derive(Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub kind: EventKind,
    pub object: Arc<Value>,
    /// The previous state, so selector-filtered watches can turn a change of match into
    /// ADDED or DELETED.
    pub old: Option<Arc<Value>>,
    /// `object` serialized once, shared by every watcher that shows it as stored.
    pub json: OnceLock<Bytes>,
}

impl Event {
    /// The object's JSON, serialized on first use.
    pub fn object_json(&self) -> &Bytes {
        self.json
            .get_or_init(|| Bytes::from(serde_json::to_vec(&*self.object).unwrap_or_default()))
    }
}

/// Objects of one resource (all versions) keyed by (namespace, name).
pub(crate) struct Collection {
    pub objects: BTreeMap<(String, String), Arc<Value>>,
    history: VecDeque<Arc<Event>>,
    /// resourceVersion of the newest event dropped from history ([`FIRST_RV`] when none was: the
    /// history starts with the server).
    pub compacted_rv: u64,
    pub tx: broadcast::Sender<Arc<Event>>,
}

impl Collection {
    fn new(channel: usize, compacted_rv: u64) -> Self {
        let (tx, _) = broadcast::channel(channel);
        Collection {
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted_rv,
            tx,
        }
    }

    /// Events newer than `rv`, oldest first.
    pub fn events_after(&self, rv: u64) -> Vec<Arc<Event>> {
        let start = self.history.partition_point(|e| e.rv <= rv);
        self.history.iter().skip(start).cloned().collect()
    }

    /// Objects in `namespace` (all when `None`), in name order.
    pub fn in_namespace<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = &'a Arc<Value>> + 'a> {
        match namespace {
            None => Box::new(self.objects.values()),
            Some(ns) => Box::new(
                self.objects
                    .range((ns.to_string(), String::new())..)
                    .take_while(move |((n, _), _)| n == ns)
                    .map(|(_, v)| v),
            ),
        }
    }
}

/// Tunables for storage.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StoreLimits {
    /// Events kept per resource for watch resumption.
    pub history: usize,
    /// Buffered events per watcher before it is expired as too slow.
    pub channel: usize,
}

/// Where an object lives: (storage key, namespace, name).
pub(crate) type ObjKey = (String, String, String);

/// The uids named in `object`'s ownerReferences.
pub(crate) fn owner_uids(object: &Value) -> Vec<String> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str().map(String::from))
        .collect()
}

/// The resourceVersion of an empty server. Like a real kube-apiserver, whose versions continue
/// etcd's revision and whose watch history starts when it starts, versions begin well above 1, and
/// a watch from one older than the server (`resourceVersion=1`) is answered 410 Expired.
pub(crate) const FIRST_RV: u64 = 1000;

/// All server state guarded by one lock.
pub(crate) struct Store {
    pub rv: u64,
    pub registry: Registry,
    collections: HashMap<String, Collection>,
    limits: StoreLimits,
    /// Live objects by uid.
    uids: HashMap<String, ObjKey>,
    /// Objects naming an owner uid in their ownerReferences.
    dependents: HashMap<String, BTreeSet<ObjKey>>,
}

impl Store {
    pub fn new(limits: StoreLimits) -> Self {
        Store {
            rv: FIRST_RV,
            registry: Registry::with_builtins(),
            collections: HashMap::new(),
            limits,
            uids: HashMap::new(),
            dependents: HashMap::new(),
        }
    }

    /// The collection under `key` (`group/plural`), created on first use.
    pub fn collection(&mut self, key: &str) -> &mut Collection {
        let channel = self.limits.channel;
        self.collections
            .entry(key.to_string())
            .or_insert_with(|| Collection::new(channel, FIRST_RV))
    }

    pub fn get(&self, key: &str, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.collections
            .get(key)?
            .objects
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Drop a whole collection (its CRD was deleted); its watchers see their stream end.
    pub fn drop_collection(&mut self, key: &str) {
        if let Some(collection) = self.collections.remove(key) {
            for object in collection.objects.values() {
                self.index(key, object, Some(object), true);
            }
        }
    }

    /// The live object with `uid`.
    pub fn by_uid(&self, uid: &str) -> Option<(ObjKey, Arc<Value>)> {
        let key = self.uids.get(uid)?;
        Some((key.clone(), self.get(&key.0, &key.1, &key.2)?))
    }

    /// Live objects whose ownerReferences name `uid`.
    pub fn dependents_of(&self, uid: &str) -> Vec<(ObjKey, Arc<Value>)> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|k| Some((k.clone(), self.get(&k.0, &k.1, &k.2)?)))
            .collect()
    }

    /// Keep the uid and owner indexes in step with a write of `object` (replacing `old`).
    fn index(&mut self, key: &str, object: &Value, old: Option<&Value>, gone: bool) {
        let meta = &object["metadata"];
        let at: ObjKey = (
            key.to_string(),
            meta["namespace"].as_str().unwrap_or_default().to_string(),
            meta["name"].as_str().unwrap_or_default().to_string(),
        );
        let before = old.map(owner_uids).unwrap_or_default();
        let after = if gone { Vec::new() } else { owner_uids(object) };
        for owner in before.iter().filter(|o| !after.contains(o)) {
            if let Some(set) = self.dependents.get_mut(owner) {
                set.remove(&at);
                if set.is_empty() {
                    self.dependents.remove(owner);
                }
            }
        }
        for owner in after {
            self.dependents.entry(owner).or_default().insert(at.clone());
        }
        if let Some(uid) = meta["uid"].as_str() {
            if gone {
                self.uids.remove(uid);
            } else {
                self.uids.insert(uid.to_string(), at);
            }
        }
    }

    /// Allocate the next resourceVersion.
    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Store (or remove, for `Deleted`) `object`, which already carries resourceVersion `rv`,
    /// record the event and publish it.
    pub fn commit(
        &mut self,
        key: &str,
        kind: EventKind,
        rv: u64,
        object: Value,
        old: Option<Arc<Value>>,
    ) -> Arc<Value> {
        let limit = self.limits.history.max(1);
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let gone = kind == EventKind::Deleted;
        self.index(key, &object, old.as_deref(), gone);
        let object = Arc::new(object);
        let collection = self.collection(key);
        if kind == EventKind::Deleted {
            collection.objects.remove(&(namespace, name));
        } else {
            collection.objects.insert((namespace, name), object.clone());
        }
        let event = Arc::new(Event {
            rv,
            kind,
            object: object.clone(),
            old,
            json: OnceLock::new(),
        });
        collection.history.push_back(event.clone());
        while collection.history.len() > limit {
            if let Some(dropped) = collection.history.pop_front() {
                collection.compacted_rv = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = collection.tx.send(event);
        object
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(ns: &str, name: &str, rv: u64) -> Value {
        json!({"metadata": {"namespace": ns, "name": name, "resourceVersion": rv.to_string()}})
    }

    #[test]
    fn history_is_bounded_and_compaction_is_recorded() {
        let mut store = Store::new(StoreLimits {
            history: 2,
            channel: 16,
        });
        for i in 0..4 {
            let rv = store.next_rv();
            store.commit(
                "/configmaps",
                EventKind::Added,
                rv,
                obj("default", &format!("c{i}"), rv),
                None,
            );
        }
        let col = store.collection("/configmaps");
        let first = FIRST_RV;
        assert_eq!(col.compacted_rv, first + 2);
        assert_eq!(
            col.events_after(first + 2)
                .iter()
                .map(|e| e.rv)
                .collect::<Vec<_>>(),
            vec![first + 3, first + 4]
        );
        assert_eq!(col.events_after(first + 3).len(), 1);
    }

    #[test]
    fn namespace_range_only_returns_that_namespace() {
        let mut store = Store::new(StoreLimits {
            history: 10,
            channel: 16,
        });
        for (ns, name) in [("a", "x"), ("b", "y"), ("b", "z"), ("c", "w")] {
            let rv = store.next_rv();
            store.commit("/configmaps", EventKind::Added, rv, obj(ns, name, rv), None);
        }
        let col = store.collection("/configmaps");
        let names: Vec<_> = col
            .in_namespace(Some("b"))
            .map(|o| o["metadata"]["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("y"), json!("z")]);
        assert_eq!(col.in_namespace(None).count(), 4);
        let rv = store.next_rv();
        store.commit(
            "/configmaps",
            EventKind::Deleted,
            rv,
            obj("b", "y", rv),
            None,
        );
        assert!(store.get("/configmaps", "b", "y").is_none());
    }
}
