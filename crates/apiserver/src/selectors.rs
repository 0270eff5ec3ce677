//! Label and field selectors (`labelSelector`, `fieldSelector` query parameters).
//!
//! Label selectors support `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` and `!k`.
//! Field selectors support `path=v`, `path==v` and `path!=v` on any dotted path whose value is a
//! string, number or boolean (`metadata.name`, `metadata.namespace`, `spec.x`, ...).

use serde_json::Value;

use crate::error::ApiError;

#[derive(Clone, Debug, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Clone, Debug, PartialEq)]
struct FieldReq {
    path: Vec<String>,
    value: String,
    equal: bool,
}

/// A parsed pair of label and field selectors; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Selector {
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

/// Split on commas that are not inside parentheses.
fn split_top(input: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0usize);
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_set(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

fn parse_label(req: &str) -> Result<LabelReq, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "unable to parse requirement: invalid label selector: {req:?}"
        ))
    };
    if let Some(key) = req.strip_prefix('!') {
        return Ok(LabelReq::NotExists(key.trim().to_string()));
    }
    if let Some((k, v)) = req.split_once("!=") {
        return Ok(LabelReq::NotEq(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
        return Ok(LabelReq::Eq(k.trim().into(), v.trim().into()));
    }
    if let Some((k, rest)) = req.split_once(" notin ") {
        return Ok(LabelReq::NotIn(
            k.trim().into(),
            parse_set(rest).ok_or_else(bad)?,
        ));
    }
    if let Some((k, rest)) = req.split_once(" in ") {
        return Ok(LabelReq::In(
            k.trim().into(),
            parse_set(rest).ok_or_else(bad)?,
        ));
    }
    if req.contains(char::is_whitespace) || req.contains('(') {
        return Err(bad());
    }
    Ok(LabelReq::Exists(req.to_string()))
}

fn parse_field(req: &str) -> Result<FieldReq, ApiError> {
    let (path, value, equal) = if let Some((p, v)) = req.split_once("!=") {
        (p, v, false)
    } else if let Some((p, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
        (p, v, true)
    } else {
        return Err(ApiError::bad_request(format!(
            "invalid field selector: {req:?}"
        )));
    };
    Ok(FieldReq {
        path: path.trim().split('.').map(String::from).collect(),
        value: value.trim().into(),
        equal,
    })
}

impl Selector {
    /// Parse the two query parameters (either may be absent).
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, ApiError> {
        Ok(Selector {
            labels: labels
                .map(split_top)
                .unwrap_or_default()
                .into_iter()
                .map(parse_label)
                .collect::<Result<_, _>>()?,
            fields: fields
                .map(split_top)
                .unwrap_or_default()
                .into_iter()
                .map(parse_field)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether `object` matches every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |k: &str| labels.get(k).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|req| match req {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => label(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
        });
        labels_ok
            && self.fields.iter().all(|req| {
                let mut node = object;
                for segment in &req.path {
                    node = &node[segment.as_str()];
                }
                let actual = match node {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    Value::Bool(_) | Value::Number(_) => node.to_string(),
                    _ => return !req.equal,
                };
                (actual == req.value) == req.equal
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_and_field_table() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns1", "labels": {"app": "x", "tier": "gpu"}},
                         "spec": {"count": 2}});
        let cases = [
            (Some("app=x"), None, true),
            (Some("app==x"), None, true),
            (Some("app!=x"), None, false),
            (Some("app in (x, y)"), None, true),
            (Some("app notin (x)"), None, false),
            (Some("tier,app=x"), None, true),
            (Some("!tier"), None, false),
            (Some("missing"), None, false),
            (Some("!missing"), None, true),
            (None, Some("metadata.name=a"), true),
            (None, Some("metadata.name!=a"), false),
            (None, Some("metadata.namespace=ns1,metadata.name=a"), true),
            (None, Some("metadata.namespace=ns2"), false),
            (None, Some("spec.count=2"), true),
            (Some("app=x"), Some("metadata.name=b"), false),
            (None, None, true),
        ];
        for (labels, fields, expected) in cases {
            let sel = Selector::parse(labels, fields).expect("parses");
            assert_eq!(
                sel.matches(&obj),
                expected,
                "labels {labels:?} fields {fields:?}"
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(Selector::parse(Some("a in x"), None).is_err());
        assert!(Selector::parse(None, Some("metadata.name")).is_err());
    }
}
