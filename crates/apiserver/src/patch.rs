//! Non-apply PATCH bodies: JSON merge patch, strategic merge patch of built-in kinds (a merge
//! patch whose sets and associative lists merge instead of being replaced), and JSON patch,
//! whose `test` of a missing path compares against `null` as the real apiserver does.

use json_patch::PatchOperation;
use serde_json::Value;

use crate::error::ApiError;
use crate::fieldpath::{FieldPath, ListKind, Lists, same_item};

/// The PATCH content types the server understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchKind {
    /// From the request's Content-Type (parameters ignored).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Apply a merge patch (RFC 7386) to `doc`.
pub(crate) fn merge(doc: &Value, patch: &Value) -> Value {
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    out
}

/// Apply a strategic merge patch to a built-in object. `metadata.finalizers` merges as a set,
/// `metadata.ownerReferences` by `uid` and `status.conditions` by `type`; other lists are
/// replaced. Directives: `$patch: replace` on maps, `$patch: delete` on list items and
/// `$deleteFromPrimitiveList/<field>`; `$setElementOrder` and `$retainKeys` are ignored.
pub(crate) fn strategic(doc: &Value, patch: &Value) -> Value {
    let mut out = doc.clone();
    strategic_at(&mut out, patch, &mut Vec::new(), Lists::default());
    out
}

fn strategic_at(dst: &mut Value, patch: &Value, path: &mut FieldPath, lists: Lists<'_>) {
    match (dst, patch) {
        (Value::Object(dst_map), Value::Object(patch_map)) => {
            if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
                let mut replaced = patch_map.clone();
                replaced.remove("$patch");
                *dst_map = replaced;
                return;
            }
            for (key, value) in patch_map {
                if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
                    continue;
                }
                if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
                    if let (Some(Value::Array(items)), Some(gone)) =
                        (dst_map.get_mut(field), value.as_array())
                    {
                        items.retain(|i| !gone.contains(i));
                    }
                    continue;
                }
                if value.is_null() {
                    dst_map.remove(key);
                    continue;
                }
                match dst_map.get_mut(key) {
                    Some(existing) => {
                        path.push(key.clone());
                        strategic_at(existing, value, path, lists);
                        path.pop();
                    }
                    None => {
                        let mut fresh = Value::Null;
                        path.push(key.clone());
                        strategic_at(&mut fresh, value, path, lists);
                        path.pop();
                        dst_map.insert(key.clone(), fresh);
                    }
                }
            }
        }
        (Value::Array(dst_items), Value::Array(patch_items))
            if lists.kind(path) != ListKind::Atomic =>
        {
            let kind = lists.kind(path);
            for item in patch_items {
                let position = dst_items.iter().position(|d| same_item(&kind, item, d));
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (position, delete) {
                    (Some(i), true) => {
                        dst_items.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => strategic_at(&mut dst_items[i], item, path, lists),
                    (None, false) => dst_items.push(item.clone()),
                }
            }
        }
        (dst, Value::Object(patch_map)) => {
            // A map patched onto a missing or non-map value: build it from the patch.
            *dst = Value::Object(serde_json::Map::new());
            strategic_at(dst, &Value::Object(patch_map.clone()), path, lists);
        }
        (dst, patch) => *dst = patch.clone(),
    }
}

/// Apply a JSON patch (RFC 6902) to `doc`.
pub(crate) fn json(doc: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let ops: Vec<PatchOperation> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the server rejected our request due to an error in our request: invalid JSON patch: {e}")))?;
    let mut out = doc.clone();
    for op in &ops {
        if let PatchOperation::Test(test) = op
            && out.pointer(test.path.as_str()).is_none()
        {
            if test.value.is_null() {
                continue;
            }
            return Err(test_failed(test.path.as_str()));
        }
        json_patch::patch(&mut out, std::slice::from_ref(op)).map_err(|e| match op {
            PatchOperation::Test(_) => test_failed(op.path().as_str()),
            _ => ApiError::unprocessable(format!(
                "the server rejected our request due to an error in our request: {e}"
            )),
        })?;
    }
    Ok(out)
}

fn test_failed(path: &str) -> ApiError {
    ApiError::unprocessable(format!(
        "the server rejected our request due to an error in our request: testing value {path} failed"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types() {
        let cases = [
            ("application/merge-patch+json", Some(PatchKind::Merge)),
            (
                "application/strategic-merge-patch+json",
                Some(PatchKind::Strategic),
            ),
            (
                "application/json-patch+json; charset=utf-8",
                Some(PatchKind::Json),
            ),
            ("application/apply-patch+yaml", Some(PatchKind::Apply)),
            ("application/json", None),
        ];
        for (ct, expected) in cases {
            assert_eq!(PatchKind::from_content_type(ct), expected, "{ct}");
        }
    }

    #[test]
    fn test_on_missing_path_compares_to_null() {
        let doc = json!({"metadata": {"name": "a"}});
        let body = br#"[{"op":"test","path":"/metadata/finalizers","value":null},
                        {"op":"add","path":"/metadata/finalizers","value":["x"]}]"#;
        let out = json(&doc, body).expect("test against null passes");
        assert_eq!(out["metadata"]["finalizers"], json!(["x"]));
        let again = json(&out, body);
        assert!(again.is_err(), "finalizers now exist, the test fails");
        let not_null = br#"[{"op":"test","path":"/metadata/missing","value":"v"}]"#;
        assert!(json(&doc, not_null).is_err());
    }

    #[test]
    fn strategic_merges_sets_and_keyed_lists() {
        let doc = json!({"metadata": {"finalizers": ["a"], "labels": {"x": "1"}},
                         "status": {"conditions": [{"type": "Ready", "status": "False"}]}, "data": {"k": ["1"]}});
        let patch = json!({"metadata": {"finalizers": ["b"], "labels": {"x": null, "y": "2"}},
                           "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}]},
                           "data": {"k": ["2"]}});
        let out = strategic(&doc, &patch);
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(out["metadata"]["labels"], json!({"y": "2"}));
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}])
        );
        assert_eq!(out["data"]["k"], json!(["2"]), "other lists are replaced");
        let removal = json!({"$deleteFromPrimitiveList/finalizers": ["a"],
                             "status": {"conditions": [{"type": "Ready", "$patch": "delete"}]}});
        let meta_removal = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}});
        let out = strategic(&strategic(&out, &removal), &meta_removal);
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Synced", "status": "True"}])
        );
    }

    #[test]
    fn merge_removes_nulls() {
        let out = merge(
            &json!({"a": 1, "b": {"c": 2}}),
            &json!({"a": null, "b": {"d": 3}}),
        );
        assert_eq!(out, json!({"b": {"c": 2, "d": 3}}));
    }
}
