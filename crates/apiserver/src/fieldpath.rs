//! Field paths over JSON objects with Kubernetes list semantics, the vocabulary of
//! `managedFields`.
//!
//! A path is a list of segments: field names, and list items written as in `fieldsV1`:
//! `k:{"type":"Ready"}` for an item of an associative list (`x-kubernetes-list-type: map`,
//! keyed by `x-kubernetes-list-map-keys`) and `v:"name"` for an item of a set
//! (`x-kubernetes-list-type: set`). Other lists are atomic: a leaf, replaced whole. The list
//! types come from the CRD schema; `metadata.finalizers` is a set and
//! `metadata.ownerReferences` a map keyed by `uid` for every kind, and `status.conditions` of
//! built-in kinds a map keyed by `type`.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// A field path such as `["spec", "gpuCount"]` or `["status", "conditions", "k:{\"type\":\"Ready\"}", "status"]`.
pub(crate) type FieldPath = Vec<String>;
pub(crate) type FieldSet = BTreeSet<FieldPath>;

/// How a list merges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListKind {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// Resolves list kinds from an optional CRD `openAPIV3Schema`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Lists<'a> {
    schema: Option<&'a Value>,
}

fn is_item(segment: &str) -> bool {
    segment.starts_with("k:") || segment.starts_with("v:")
}

impl<'a> Lists<'a> {
    pub fn new(schema: Option<&'a Value>) -> Self {
        Lists { schema }
    }

    /// The kind of the list at `path`.
    pub fn kind(&self, path: &[String]) -> ListKind {
        let names: Vec<&str> = path.iter().map(String::as_str).collect();
        match names.as_slice() {
            ["metadata", "finalizers"] => return ListKind::Set,
            ["metadata", "ownerReferences"] => return ListKind::Map(vec!["uid".into()]),
            _ => {}
        }
        let Some(mut node) = self.schema else {
            return if names == ["status", "conditions"] {
                ListKind::Map(vec!["type".into()])
            } else {
                ListKind::Atomic
            };
        };
        for segment in path {
            node = if is_item(segment) {
                &node["items"]
            } else if node["properties"][segment.as_str()].is_object() {
                &node["properties"][segment.as_str()]
            } else if node["additionalProperties"].is_object() {
                &node["additionalProperties"]
            } else {
                return ListKind::Atomic;
            };
        }
        match node["x-kubernetes-list-type"].as_str() {
            Some("set") => ListKind::Set,
            Some("map") => {
                let keys: Vec<String> = node["x-kubernetes-list-map-keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect();
                if keys.is_empty() {
                    ListKind::Atomic
                } else {
                    ListKind::Map(keys)
                }
            }
            _ => ListKind::Atomic,
        }
    }
}

/// The path segment naming `item` in a list of `kind`, if it can be named.
fn item_segment(kind: &ListKind, item: &Value) -> Option<String> {
    match kind {
        ListKind::Atomic => None,
        ListKind::Set if !item.is_object() && !item.is_array() => Some(format!("v:{item}")),
        ListKind::Set => None,
        ListKind::Map(keys) => {
            let mut key = Map::new();
            for k in keys {
                key.insert(k.clone(), item.get(k.as_str())?.clone());
            }
            Some(format!("k:{}", Value::Object(key)))
        }
    }
}

fn item_matches(segment: &str, item: &Value) -> bool {
    if let Some(value) = segment.strip_prefix("v:") {
        return serde_json::from_str::<Value>(value).is_ok_and(|v| &v == item);
    }
    let Some(Ok(Value::Object(key))) = segment
        .strip_prefix("k:")
        .map(serde_json::from_str::<Value>)
    else {
        return false;
    };
    key.iter().all(|(k, v)| item.get(k.as_str()) == Some(v))
}

/// Whether `a` and `b` are the same item of a list of `kind` (same value, or same keys).
pub(crate) fn same_item(kind: &ListKind, a: &Value, b: &Value) -> bool {
    item_segment(kind, a).is_some_and(|segment| item_matches(&segment, b))
}

/// The key fields of a `k:` segment.
pub(crate) fn item_keys(segment: &str) -> Vec<String> {
    match segment
        .strip_prefix("k:")
        .map(serde_json::from_str::<Value>)
    {
        Some(Ok(Value::Object(key))) => key.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Leaf paths of `value`: non-empty maps and named list items are walked, everything else is
/// a leaf. Nulls are not fields.
pub(crate) fn leaf_paths(value: &Value, lists: Lists<'_>) -> FieldSet {
    fn walk(value: &Value, path: &mut FieldPath, lists: Lists<'_>, out: &mut FieldSet) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    path.push(key.clone());
                    walk(child, path, lists, out);
                    path.pop();
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let kind = lists.kind(path);
                let segments: Option<Vec<String>> =
                    items.iter().map(|i| item_segment(&kind, i)).collect();
                let Some(segments) = segments else {
                    out.insert(path.clone());
                    return;
                };
                for (segment, item) in segments.into_iter().zip(items) {
                    path.push(segment);
                    match item {
                        Value::Object(_) => walk(item, path, lists, out),
                        _ => {
                            out.insert(path.clone());
                        }
                    }
                    path.pop();
                }
            }
            // An empty set or associative list owns no items; an empty atomic list is a value.
            Value::Null => {}
            Value::Array(_) if lists.kind(path) != ListKind::Atomic => {}
            _ if !path.is_empty() => {
                out.insert(path.clone());
            }
            _ => {}
        }
    }
    let mut out = FieldSet::new();
    walk(value, &mut Vec::new(), lists, &mut out);
    out
}

/// The value at `path`.
pub(crate) fn value_at<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |node, segment| {
        if is_item(segment) {
            node.as_array()?.iter().find(|i| item_matches(segment, i))
        } else {
            node.get(segment.as_str())
        }
    })
}

fn value_at_mut<'v>(value: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |node, segment| {
        if is_item(segment) {
            node.as_array_mut()?
                .iter_mut()
                .find(|i| item_matches(segment, i))
        } else {
            node.get_mut(segment.as_str())
        }
    })
}

/// Remove the field or list item at `path`.
pub(crate) fn remove(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let Some(parent) = value_at_mut(object, parents) else {
        return;
    };
    if is_item(last) {
        if let Some(items) = parent.as_array_mut() {
            items.retain(|i| !item_matches(last, i));
        }
    } else if let Some(map) = parent.as_object_mut() {
        map.remove(last.as_str());
    }
}

/// Merge `src` into `dst`: maps key by key, sets by value, associative lists item by key,
/// everything else replaced; nulls skipped.
pub(crate) fn merge(dst: &mut Value, src: &Value, lists: Lists<'_>) {
    merge_at(dst, src, &mut Vec::new(), lists);
}

fn merge_at(dst: &mut Value, src: &Value, path: &mut FieldPath, lists: Lists<'_>) {
    match (dst, src) {
        (Value::Object(dst_map), Value::Object(src_map)) => {
            for (key, value) in src_map {
                if value.is_null() {
                    continue;
                }
                match dst_map.get_mut(key) {
                    Some(existing) => {
                        path.push(key.clone());
                        merge_at(existing, value, path, lists);
                        path.pop();
                    }
                    None => {
                        dst_map.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(dst_items), Value::Array(src_items)) => {
            let kind = lists.kind(path);
            if kind == ListKind::Atomic {
                *dst_items = src_items.clone();
                return;
            }
            for item in src_items {
                let Some(segment) = item_segment(&kind, item) else {
                    *dst_items = src_items.clone();
                    return;
                };
                match dst_items.iter_mut().find(|d| item_matches(&segment, d)) {
                    Some(existing) => {
                        path.push(segment);
                        merge_at(existing, item, path, lists);
                        path.pop();
                    }
                    None => dst_items.push(item.clone()),
                }
            }
        }
        (dst, src) => {
            if !src.is_null() {
                *dst = src.clone();
            }
        }
    }
}

/// Render a field set as `fieldsV1` (`{"f:spec": {"f:x": {}}}`, list items as `k:`/`v:`).
pub(crate) fn to_fields_v1(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for segment in path {
            let key = if is_item(segment) {
                segment.clone()
            } else {
                format!("f:{segment}")
            };
            let entry = node.entry(key).or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(next) = entry else { break };
            node = next;
        }
    }
    Value::Object(root)
}

/// Parse `fieldsV1`; index segments (`i:`) make their list an atomic leaf.
pub(crate) fn from_fields_v1(value: &Value) -> FieldSet {
    fn walk(value: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        let Some(map) = value.as_object() else { return };
        let atomic = map.keys().any(|k| k.starts_with("i:"));
        let children: Vec<(String, &Value)> = map
            .iter()
            .filter_map(|(k, v)| match k.strip_prefix("f:") {
                Some(name) => Some((name.to_string(), v)),
                None if is_item(k) => Some((k.clone(), v)),
                None => None,
            })
            .collect();
        if atomic || children.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (name, child) in children {
            path.push(name);
            walk(child, path, out);
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

/// `spec.conditions[type="Ready"].status`, for conflict messages.
pub(crate) fn display(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if let Some(Ok(Value::Object(key))) = segment
            .strip_prefix("k:")
            .map(serde_json::from_str::<Value>)
        {
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = segment.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else {
            out.push('.');
            out.push_str(segment);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(segments: &[&str]) -> FieldPath {
        segments.iter().map(|s| s.to_string()).collect()
    }

    fn schema() -> Value {
        json!({"type": "object", "properties": {"status": {"type": "object", "properties": {
            "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                           "items": {"type": "object"}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "plain": {"type": "array", "items": {"type": "string"}},
        }}}})
    }

    #[test]
    fn list_kinds_from_schema_and_builtins() {
        let schema = schema();
        let lists = Lists::new(Some(&schema));
        let cases = [
            (
                path(&["status", "conditions"]),
                ListKind::Map(vec!["type".into()]),
            ),
            (path(&["status", "tags"]), ListKind::Set),
            (path(&["status", "plain"]), ListKind::Atomic),
            (path(&["metadata", "finalizers"]), ListKind::Set),
            (
                path(&["metadata", "ownerReferences"]),
                ListKind::Map(vec!["uid".into()]),
            ),
        ];
        for (p, kind) in cases {
            assert_eq!(lists.kind(&p), kind, "{p:?}");
        }
        assert_eq!(
            Lists::default().kind(&path(&["status", "conditions"])),
            ListKind::Map(vec!["type".into()])
        );
    }

    #[test]
    fn leaves_values_and_round_trip() {
        let schema = schema();
        let lists = Lists::new(Some(&schema));
        let obj = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "tags": ["a"], "plain": ["x"]},
                         "metadata": {"finalizers": ["f"]}});
        let leaves = leaf_paths(&obj, lists);
        let ready = "k:{\"type\":\"Ready\"}";
        let expect: FieldSet = [
            path(&["metadata", "finalizers", "v:\"f\""]),
            path(&["status", "conditions", ready, "status"]),
            path(&["status", "conditions", ready, "type"]),
            path(&["status", "plain"]),
            path(&["status", "tags", "v:\"a\""]),
        ]
        .into_iter()
        .collect();
        assert_eq!(leaves, expect);
        assert_eq!(from_fields_v1(&to_fields_v1(&leaves)), leaves);
        assert_eq!(
            value_at(&obj, &path(&["status", "conditions", ready, "status"])),
            Some(&json!("True"))
        );
        assert_eq!(
            display(&path(&["status", "conditions", ready, "status"])),
            ".status.conditions[type=\"Ready\"].status"
        );
    }

    #[test]
    fn merge_and_remove_respect_list_kinds() {
        let schema = schema();
        let lists = Lists::new(Some(&schema));
        let mut dst = json!({"status": {"conditions": [{"type": "A", "status": "True"}], "tags": ["a"], "plain": ["x"]},
                             "metadata": {"finalizers": ["theirs"]}});
        let src = json!({"status": {"conditions": [{"type": "A", "reason": "R"}, {"type": "B", "status": "False"}],
                                    "tags": ["b"], "plain": ["y"]},
                         "metadata": {"finalizers": ["mine"]}});
        merge(&mut dst, &src, lists);
        assert_eq!(
            dst["status"]["conditions"],
            json!([{"type": "A", "status": "True", "reason": "R"}, {"type": "B", "status": "False"}])
        );
        assert_eq!(dst["status"]["tags"], json!(["a", "b"]));
        assert_eq!(dst["status"]["plain"], json!(["y"]));
        assert_eq!(dst["metadata"]["finalizers"], json!(["theirs", "mine"]));
        remove(
            &mut dst,
            &path(&["status", "conditions", "k:{\"type\":\"B\"}"]),
        );
        remove(&mut dst, &path(&["metadata", "finalizers", "v:\"theirs\""]));
        assert_eq!(
            dst["status"]["conditions"].as_array().map(Vec::len),
            Some(1)
        );
        assert_eq!(dst["metadata"]["finalizers"], json!(["mine"]));
    }
}
