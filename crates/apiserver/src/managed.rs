//! `metadata.managedFields` and server-side apply.
//!
//! Field ownership is tracked per (manager, operation, subresource) as a set of leaf paths (see
//! [`crate::fieldpath`] for maps, sets, associative and atomic lists). Apply takes the
//! fields it sets, reports a conflict when another manager owns a field it would change (unless
//! forced, which moves ownership), and removes fields the same manager applied before but no
//! longer applies when nobody else owns them. Other writes (create, update, patch) take
//! ownership of the fields they change, as the real apiserver's "Update" operations do.

use serde_json::{Map, Value, json};

use crate::error::Cause;
use crate::fieldpath::{
    self, FieldPath, FieldSet, Lists, from_fields_v1, item_keys, leaf_paths, to_fields_v1, value_at,
};

/// Which part of an object a write may touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The main resource; `status` excluded when a status subresource exists.
    Main { exclude_status: bool },
    /// The `/status` subresource: only `status`.
    Status,
}

impl Scope {
    fn subresource(self) -> &'static str {
        match self {
            Scope::Main { .. } => "",
            Scope::Status => "status",
        }
    }
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    fn same_slot(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }
}

const TRACKED_METADATA: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

/// The part of `object` whose ownership is tracked within `scope`.
pub(crate) fn tracked(object: &Value, scope: Scope) -> Value {
    let mut out = Map::new();
    let Some(map) = object.as_object() else {
        return Value::Object(out);
    };
    for (key, value) in map {
        let keep = match (scope, key.as_str()) {
            (_, "apiVersion" | "kind") => false,
            (Scope::Status, k) => k == "status",
            (Scope::Main { exclude_status }, "status") => !exclude_status,
            (Scope::Main { .. }, "metadata") => {
                let meta: Map<String, Value> = value
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter(|(k, _)| TRACKED_METADATA.contains(&k.as_str()))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                if !meta.is_empty() {
                    out.insert(key.clone(), Value::Object(meta));
                }
                false
            }
            (Scope::Main { .. }, _) => true,
        };
        if keep {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn shorter<'a>(a: &'a [String], b: &'a [String]) -> &'a [String] {
    if a.len() <= b.len() { a } else { b }
}

/// Entries stored on `object`.
pub(crate) fn parse_entries(object: &Value) -> Vec<Entry> {
    let list = object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    list.iter()
        .filter_map(|e| {
            Some(Entry {
                manager: e["manager"].as_str()?.to_string(),
                operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                time: e["time"].as_str().unwrap_or_default().to_string(),
                subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
                fields: from_fields_v1(&e["fieldsV1"]),
            })
        })
        .collect()
}

/// `managedFields` for `entries` (empty entries dropped).
pub(crate) fn render_entries(entries: &[Entry]) -> Value {
    Value::Array(
        entries
            .iter()
            .filter(|e| !e.fields.is_empty())
            .map(|e| {
                let mut v = json!({
                    "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                    "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields),
                });
                if !e.subresource.is_empty() {
                    v["subresource"] = json!(e.subresource);
                }
                v
            })
            .collect(),
    )
}

/// Whether two entry lists record the same ownership (times ignored).
pub(crate) fn same_ownership(a: &[Entry], b: &[Entry]) -> bool {
    let key = |e: &Entry| {
        (
            e.manager.clone(),
            e.operation.clone(),
            e.subresource.clone(),
            e.fields.clone(),
        )
    };
    let mut a: Vec<_> = a.iter().filter(|e| !e.fields.is_empty()).map(key).collect();
    let mut b: Vec<_> = b.iter().filter(|e| !e.fields.is_empty()).map(key).collect();
    a.sort();
    b.sort();
    a == b
}

/// Identity of the writer.
pub(crate) struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub now: &'a str,
    pub scope: Scope,
    /// List semantics of the object's schema.
    pub lists: Lists<'a>,
}

fn entry_mut<'e>(
    entries: &'e mut Vec<Entry>,
    writer: &Writer<'_>,
    operation: &str,
) -> &'e mut Entry {
    let sub = writer.scope.subresource();
    let index = match entries
        .iter()
        .position(|e| e.same_slot(writer.manager, operation, sub))
    {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: writer.manager.to_string(),
                operation: operation.to_string(),
                api_version: writer.api_version.to_string(),
                time: writer.now.to_string(),
                subresource: sub.to_string(),
                fields: FieldSet::new(),
            });
            entries.len() - 1
        }
    };
    let entry = &mut entries[index];
    entry.time = writer.now.to_string();
    entry.api_version = writer.api_version.to_string();
    entry
}

/// Remove the leaf at `path` and the maps it leaves empty below the top level.
fn remove_leaf(object: &mut Value, path: &[String]) {
    fieldpath::remove(object, path);
    for depth in (2..path.len()).rev() {
        let parent = &path[..depth];
        let empty_map = value_at(object, parent)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty);
        if !empty_map || parent.last().is_some_and(|s| s.starts_with("k:")) {
            break;
        }
        fieldpath::remove(object, parent);
    }
}

/// Server-side apply of `config` onto `current` (an object without managed fields of its own
/// is fine). Returns the merged object and the new entries, or the conflicts.
pub(crate) fn apply(
    current: &Value,
    config: &Value,
    force: bool,
    writer: &Writer<'_>,
) -> Result<(Value, Vec<Entry>), Vec<Cause>> {
    let cfg = tracked(config, writer.scope);
    let cfg_fields = leaf_paths(&cfg, writer.lists);
    let mut entries = parse_entries(current);
    let sub = writer.scope.subresource();

    let mut conflicts: Vec<(usize, FieldPath)> = Vec::new();
    for (i, entry) in entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.manager != writer.manager)
    {
        for owned in &entry.fields {
            let differs = cfg_fields.iter().any(|p| {
                overlaps(p, owned) && {
                    let at = shorter(p, owned);
                    value_at(current, at) != value_at(&cfg, at)
                }
            });
            if differs {
                conflicts.push((i, owned.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts
            .iter()
            .map(|(i, path)| {
                let e = &entries[*i];
                Cause::new(
                    "FieldManagerConflict",
                    fieldpath::display(path),
                    format!("conflict with \"{}\" using {}", e.manager, e.api_version),
                )
            })
            .collect());
    }
    for (i, path) in &conflicts {
        entries[*i].fields.remove(path);
    }

    let previous = entries
        .iter()
        .find(|e| e.same_slot(writer.manager, "Apply", sub))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut merged = current.clone();
    let owned_by_others = |path: &[String]| {
        entries
            .iter()
            .filter(|e| !e.same_slot(writer.manager, "Apply", sub))
            .any(|e| e.fields.iter().any(|q| overlaps(q, path)))
    };
    let mut items = Vec::new();
    for stale in previous.difference(&cfg_fields) {
        // Still applied: set below it now, or replaced whole by a value (not an empty map) above.
        let still_applied = cfg_fields.iter().any(|p| {
            p.starts_with(stale)
                || (stale.starts_with(p) && !value_at(&cfg, p).is_some_and(Value::is_object))
        });
        if still_applied || owned_by_others(stale) {
            continue;
        }
        // Associative list items go as a whole once nobody owns anything in them; their key
        // fields stay while they remain.
        let item_prefix = stale
            .iter()
            .rposition(|s| s.starts_with("k:"))
            .map(|i| stale[..=i].to_vec());
        let is_key = matches!(stale.split_last(), Some((last, rest)) if rest.last().is_some_and(|seg| item_keys(seg).contains(last)));
        if !is_key {
            remove_leaf(&mut merged, stale);
        }
        items.extend(item_prefix);
    }
    for item in items {
        let owned = cfg_fields.iter().any(|p| p.starts_with(&item)) || owned_by_others(&item);
        if !owned {
            fieldpath::remove(&mut merged, &item);
        }
    }
    fieldpath::merge(&mut merged, &cfg, writer.lists);
    entry_mut(&mut entries, writer, "Apply").fields = cfg_fields;
    entries.retain(|e| !e.fields.is_empty());
    Ok((merged, entries))
}

/// Ownership after a non-apply write from `old` (None on create) to `new`.
pub(crate) fn record_update(old: Option<&Value>, new: &Value, writer: &Writer<'_>) -> Vec<Entry> {
    let mut entries = old.map(parse_entries).unwrap_or_default();
    let old_t = old
        .map(|o| tracked(o, writer.scope))
        .unwrap_or_else(|| json!({}));
    let new_t = tracked(new, writer.scope);
    let old_fields = leaf_paths(&old_t, writer.lists);
    let new_fields = leaf_paths(&new_t, writer.lists);
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| value_at(&old_t, p) != value_at(&new_t, p))
        .cloned()
        .collect();
    let removed: FieldSet = old_fields
        .difference(&new_fields)
        .filter(|p| value_at(&new_t, p).is_none())
        .cloned()
        .collect();
    if changed.is_empty() && removed.is_empty() {
        return entries;
    }
    let sub = writer.scope.subresource();
    for entry in entries.iter_mut() {
        let is_writer = entry.same_slot(writer.manager, "Update", sub);
        entry.fields.retain(|q| {
            !removed.iter().any(|r| q.starts_with(r))
                && (is_writer || !changed.iter().any(|c| overlaps(c, q)))
        });
    }
    entry_mut(&mut entries, writer, "Update")
        .fields
        .extend(changed);
    entries.retain(|e| !e.fields.is_empty());
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "v1",
            now: "2026-01-01T00:00:00Z",
            scope: Scope::Main {
                exclude_status: true,
            },
            lists: Lists::default(),
        }
    }

    fn with_entries(mut obj: Value, entries: &[Entry]) -> Value {
        obj["metadata"]["managedFields"] = render_entries(entries);
        obj
    }

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"metadata": {"labels": {"a": "1"}, "name": "x"}, "spec": {"x": 1, "list": [1, 2], "m": {}}, "status": {"s": 1}});
        let fields = leaf_paths(
            &tracked(
                &obj,
                Scope::Main {
                    exclude_status: true,
                },
            ),
            Lists::default(),
        );
        let expect: FieldSet = [
            vec!["metadata", "labels", "a"],
            vec!["spec", "list"],
            vec!["spec", "m"],
            vec!["spec", "x"],
        ]
        .into_iter()
        .map(|p| p.into_iter().map(String::from).collect())
        .collect();
        assert_eq!(fields, expect);
        assert_eq!(from_fields_v1(&to_fields_v1(&fields)), fields);
        let keyed = json!({"f:spec": {"f:items": {"k:{\"name\":\"a\"}": {".": {}}}}});
        assert_eq!(
            from_fields_v1(&keyed).into_iter().next(),
            Some(vec![
                "spec".to_string(),
                "items".to_string(),
                "k:{\"name\":\"a\"}".to_string()
            ])
        );
    }

    #[test]
    fn apply_create_update_and_remove_field() {
        let base = json!({"metadata": {"name": "x"}});
        let (obj, entries) = apply(
            &base,
            &json!({"spec": {"a": 1, "b": 2}}),
            false,
            &writer("m1"),
        )
        .expect("no conflict");
        let obj = with_entries(obj, &entries);
        assert_eq!(obj["spec"], json!({"a": 1, "b": 2}));
        let (obj2, entries2) =
            apply(&obj, &json!({"spec": {"a": 3}}), false, &writer("m1")).expect("no conflict");
        assert_eq!(
            obj2["spec"],
            json!({"a": 3}),
            "b is no longer applied and removed"
        );
        assert_eq!(entries2.len(), 1);
    }

    #[test]
    fn associative_lists_and_sets_are_shared_between_managers() {
        let schema = json!({"type": "object", "properties": {"status": {"type": "object", "properties": {
            "conditions": {"type": "array", "x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["type"], "items": {"type": "object"}}}}}});
        let lists = Lists::new(Some(&schema));
        let w = |manager| Writer {
            scope: Scope::Status,
            lists,
            ..writer(manager)
        };
        let base = json!({"metadata": {"name": "x"}});
        let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let synced = json!({"status": {"conditions": [{"type": "Synced", "status": "False"}]}});
        let (obj, entries) = apply(&base, &ready, false, &w("a")).expect("a");
        let obj = with_entries(obj, &entries);
        let (obj, entries) = apply(&obj, &synced, false, &w("b")).expect("b adds its own item");
        let obj = with_entries(obj, &entries);
        assert_eq!(
            obj["status"]["conditions"].as_array().map(Vec::len),
            Some(2)
        );
        let flip = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        assert!(
            apply(&obj, &flip, false, &w("b")).is_err(),
            "a owns Ready's status"
        );
        let (obj, _) = apply(&obj, &json!({"status": {"conditions": []}}), false, &w("a"))
            .expect("a drops Ready");
        assert_eq!(
            obj["status"]["conditions"],
            json!([{"type": "Synced", "status": "False"}])
        );
    }

    #[test]
    fn finalizers_are_a_set() {
        let base = json!({"metadata": {"name": "x"}});
        let (obj, entries) = apply(
            &base,
            &json!({"metadata": {"finalizers": ["a/f"]}}),
            false,
            &writer("a"),
        )
        .expect("a");
        let obj = with_entries(obj, &entries);
        let mut patched = obj.clone();
        patched["metadata"]["finalizers"] = json!(["a/f", "b/f"]);
        let entries = record_update(Some(&obj), &patched, &writer("b"));
        let obj = with_entries(patched, &entries);
        let (obj, _) = apply(
            &obj,
            &json!({"metadata": {"labels": {"l": "v"}}}),
            false,
            &writer("a"),
        )
        .expect("a stops");
        assert_eq!(
            obj["metadata"]["finalizers"],
            json!(["b/f"]),
            "only a's finalizer goes"
        );
    }

    #[test]
    fn applying_an_empty_map_releases_what_was_below_it() {
        let base = json!({"metadata": {"name": "x"}});
        let (obj, entries) = apply(
            &base,
            &json!({"spec": {"a": {"b": 1}, "keep": 1}}),
            false,
            &writer("m1"),
        )
        .expect("apply");
        let obj = with_entries(obj, &entries);
        let (obj, _) = apply(
            &obj,
            &json!({"spec": {"a": {}, "keep": 1}}),
            false,
            &writer("m1"),
        )
        .expect("apply");
        assert_eq!(obj["spec"], json!({"a": {}, "keep": 1}));
    }

    #[test]
    fn conflicts_unless_forced_and_shared_values_do_not_conflict() {
        let base = json!({"metadata": {"name": "x"}});
        let (obj, entries) =
            apply(&base, &json!({"spec": {"a": 1}}), false, &writer("m1")).expect("first");
        let obj = with_entries(obj, &entries);
        assert!(
            apply(&obj, &json!({"spec": {"a": 1}}), false, &writer("m2")).is_ok(),
            "same value is shared"
        );
        let causes =
            apply(&obj, &json!({"spec": {"a": 2}}), false, &writer("m2")).expect_err("conflict");
        assert_eq!(causes[0].field, ".spec.a");
        assert!(causes[0].message.contains("\"m1\""));
        let (forced, entries) =
            apply(&obj, &json!({"spec": {"a": 2}}), true, &writer("m2")).expect("forced");
        assert_eq!(forced["spec"]["a"], json!(2));
        assert_eq!(entries.len(), 1, "m1 lost its only field");
        assert_eq!(entries[0].manager, "m2");
    }

    #[test]
    fn update_takes_ownership_of_changed_fields() {
        let base = json!({"metadata": {"name": "x"}});
        let (obj, entries) = apply(
            &base,
            &json!({"spec": {"a": 1, "b": 1}}),
            false,
            &writer("m1"),
        )
        .expect("apply");
        let obj = with_entries(obj, &entries);
        let mut edited = obj.clone();
        edited["spec"]["a"] = json!(5);
        let entries = record_update(Some(&obj), &edited, &writer("editor"));
        let editor = entries
            .iter()
            .find(|e| e.manager == "editor")
            .expect("editor entry");
        assert_eq!(editor.fields.len(), 1);
        let applier = entries
            .iter()
            .find(|e| e.manager == "m1")
            .expect("m1 entry");
        assert_eq!(applier.fields.len(), 1, "m1 keeps spec.b only");
        let edited = with_entries(edited, &entries);
        assert!(
            apply(
                &edited,
                &json!({"spec": {"a": 1, "b": 1}}),
                false,
                &writer("m1")
            )
            .is_err()
        );
    }

    #[test]
    fn status_scope_only_touches_status() {
        let w = Writer {
            lists: Lists::default(),
            scope: Scope::Status,
            ..writer("ctl")
        };
        let base = json!({"metadata": {"name": "x"}, "spec": {"a": 1}});
        let (obj, entries) = apply(
            &base,
            &json!({"spec": {"a": 9}, "status": {"ok": true}}),
            false,
            &w,
        )
        .expect("apply");
        assert_eq!(obj["spec"]["a"], json!(1));
        assert_eq!(obj["status"]["ok"], json!(true));
        assert_eq!(entries[0].subresource, "status");
    }
}
