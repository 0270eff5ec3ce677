//! Non-apply PATCH bodies: JSON merge patch (also used for strategic merge patch of built-in
//! kinds) and JSON patch, whose `test` of a missing path compares against `null` as the real
//! apiserver does.

use json_patch::PatchOperation;
use serde_json::Value;

use crate::error::ApiError;

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
    fn merge_removes_nulls() {
        let out = merge(
            &json!({"a": 1, "b": {"c": 2}}),
            &json!({"a": null, "b": {"d": 3}}),
        );
        assert_eq!(out, json!({"b": {"c": 2, "d": 3}}));
    }
}
