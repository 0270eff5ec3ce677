//! Custom resource admission against the CRD's `openAPIV3Schema`: pruning of unknown fields,
//! `default:` values, structural validation (types, required, enum, bounds, lengths, pattern,
//! item counts) and CEL `x-kubernetes-validations` (with `oldSelf` transition rules on update).
//! Errors are field causes worded like the real apiserver's.

use std::collections::HashMap;
use std::sync::LazyLock;

use kube::core::cel::{CompiledSchema, ValidationError, apply_defaults, validate_compiled};
use parking_lot::Mutex;
use regex::Regex;
use serde_json::Value;

use crate::error::Cause;

/// Remove fields the schema does not declare, except under
/// `x-kubernetes-preserve-unknown-fields` and the root's `apiVersion`/`kind`/`metadata`.
/// Returns the paths removed (`spec.bogus`, `spec.items[0].x`).
pub(crate) fn prune(schema: &Value, object: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    prune_node(schema, object, true, "", &mut removed);
    removed
}

fn prune_node(
    schema: &Value,
    value: &mut Value,
    keep_type_meta: bool,
    path: &str,
    removed: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            let preserve = schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true);
            let embedded =
                keep_type_meta || schema["x-kubernetes-embedded-resource"].as_bool() == Some(true);
            let properties = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let type_meta =
                    embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata");
                if let Some(child_schema) = properties.and_then(|p| p.get(&key)) {
                    if !(type_meta && key == "metadata")
                        && let Some(child) = map.get_mut(&key)
                    {
                        prune_node(child_schema, child, false, &join(path, &key), removed);
                    }
                } else if additional.is_object() {
                    if let Some(child) = map.get_mut(&key) {
                        prune_node(additional, child, false, &join(path, &key), removed);
                    }
                } else if !(preserve || type_meta || additional.as_bool() == Some(true)) {
                    map.remove(&key);
                    removed.push(join(path, &key));
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter_mut().enumerate() {
                prune_node(
                    &schema["items"],
                    item,
                    false,
                    &format!("{path}[{i}]"),
                    removed,
                );
            }
        }
        _ => {}
    }
}

/// Apply schema defaults to `object`.
pub(crate) fn default(schema: &Value, object: &Value) -> Value {
    apply_defaults(schema, object)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, value: &Value, int_or_string: bool) -> bool {
    let actual = type_name(value);
    if int_or_string {
        return matches!(actual, "integer" | "string");
    }
    expected == actual || (expected == "number" && actual == "integer")
}

/// How a value prints inside `Invalid value: ...`.
fn shown(value: &Value) -> String {
    match value {
        Value::Object(_) | Value::Array(_) => format!("\"{}\"", type_name(value)),
        other => other.to_string(),
    }
}

static PATTERNS: LazyLock<Mutex<HashMap<String, Option<Regex>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn pattern_matches(pattern: &str, text: &str) -> bool {
    let mut cache = PATTERNS.lock();
    let regex = cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok());
    regex.as_ref().is_none_or(|r| r.is_match(text))
}

/// A schema bound as Go prints a float64 with `%v`: `1`, not `1.0`.
fn go_number(n: &Value) -> String {
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

fn check_bounds(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let invalid = |msg: String| {
        Cause::new(
            "FieldValueInvalid",
            path,
            format!("Invalid value: {}: {path} in body {msg}", shown(value)),
        )
    };
    if let Some(n) = value.as_f64() {
        let exclusive_min = schema["exclusiveMinimum"].as_bool() == Some(true);
        let exclusive_max = schema["exclusiveMaximum"].as_bool() == Some(true);
        if let Some(min) = schema["minimum"].as_f64()
            && (n < min || (exclusive_min && n == min))
        {
            let op = if exclusive_min {
                "greater than"
            } else {
                "greater than or equal to"
            };
            causes.push(invalid(format!(
                "should be {op} {}",
                go_number(&schema["minimum"])
            )));
        }
        if let Some(max) = schema["maximum"].as_f64()
            && (n > max || (exclusive_max && n == max))
        {
            let op = if exclusive_max {
                "less than"
            } else {
                "less than or equal to"
            };
            causes.push(invalid(format!(
                "should be {op} {}",
                go_number(&schema["maximum"])
            )));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema["minLength"].as_u64()
            && len < min
        {
            causes.push(invalid(format!("should be at least {min} chars long")));
        }
        if let Some(max) = schema["maxLength"].as_u64()
            && len > max
        {
            causes.push(Cause::new(
                "FieldValueTooLong",
                path,
                format!("Too long: may not be more than {max} bytes"),
            ));
        }
        if let Some(pattern) = schema["pattern"].as_str()
            && !pattern_matches(pattern, s)
        {
            causes.push(invalid(format!("should match '{pattern}'")));
        }
    }
    if let Some(map) = value.as_object()
        && let Some(max) = schema["maxProperties"].as_u64()
        && (map.len() as u64) > max
    {
        causes.push(Cause::new(
            "FieldValueTooMany",
            path,
            format!("Too many: {}: must have at most {max} items", map.len()),
        ));
    }
    if let Some(items) = value.as_array() {
        if schema["x-kubernetes-list-type"].as_str() == Some("set") {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    causes.push(Cause::new(
                        "FieldValueDuplicate",
                        format!("{path}[{i}]"),
                        format!("Duplicate value: {item}"),
                    ));
                }
            }
        }
        if let Some(min) = schema["minItems"].as_u64()
            && (items.len() as u64) < min
        {
            causes.push(invalid(format!("should have at least {min} items")));
        }
        if let Some(max) = schema["maxItems"].as_u64()
            && (items.len() as u64) > max
        {
            causes.push(Cause::new(
                "FieldValueTooMany",
                path,
                format!("Too many: {}: must have at most {max} items", items.len()),
            ));
        }
    }
}

fn structural(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    if value.is_null() {
        if schema["nullable"].as_bool() != Some(true) && !path.is_empty() {
            causes.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
            ));
        }
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"].as_bool() == Some(true);
    if let Some(expected) = schema["type"].as_str()
        && !type_matches(expected, value, int_or_string)
    {
        let actual = type_name(value);
        causes.push(Cause::new(
            "FieldValueTypeInvalid",
            path,
            format!("Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""),
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        causes.push(Cause::new(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                shown(value),
                list.join(", ")
            ),
        ));
    }
    check_bounds(schema, value, path, causes);
    match value {
        Value::Object(map) => {
            for required in schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(required) {
                    causes.push(Cause::new(
                        "FieldValueRequired",
                        join(path, required),
                        "Required value",
                    ));
                }
            }
            let properties = schema["properties"].as_object();
            for (key, child) in map {
                if path.is_empty() && key == "metadata" {
                    continue;
                }
                if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                    structural(child_schema, child, &join(path, key), causes);
                } else if schema["additionalProperties"].is_object() {
                    structural(
                        &schema["additionalProperties"],
                        child,
                        &join(path, key),
                        causes,
                    );
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter().enumerate() {
                structural(&schema["items"], item, &format!("{path}[{i}]"), causes);
            }
        }
        _ => {}
    }
}

/// Rules by text and the path they report (`[]` for list indices), and whether that path is a
/// `fieldPath` below the node that holds the rule.
fn rule_paths(schema: &Value, path: &str, out: &mut Vec<(String, String, bool)>) {
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(text) = rule["rule"].as_str() else {
            continue;
        };
        let (reported, below) = match rule["fieldPath"].as_str() {
            Some(fp) if fp.starts_with('.') => (format!("{path}{fp}"), true),
            Some(fp) => (join(path, fp), true),
            None => (path.to_string(), false),
        };
        out.push((text.to_string(), reported, below));
    }
    for (key, child) in schema["properties"].as_object().into_iter().flatten() {
        rule_paths(child, &join(path, key), out);
    }
    if schema["items"].is_object() {
        rule_paths(&schema["items"], &format!("{path}[]"), out);
    }
    if schema["additionalProperties"].is_object() {
        rule_paths(&schema["additionalProperties"], &format!("{path}[]"), out);
    }
}

static INDEX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[\d+\]").unwrap_or_else(|_| unreachable!("static regex")));

/// The value at a reported path such as `spec.workload.env[2].name`.
fn value_at<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let mut value = object;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, indices) = part.split_once('[').unwrap_or((part, ""));
        value = value.get(key)?;
        for index in indices.split('[').filter(|i| !i.is_empty()) {
            value = value.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(value)
}

/// A CEL rule's failure as kube-apiserver (1.33 and later) words it: `Invalid value: <value>:
/// <message>` when the rule holds a scalar, `Invalid value: <message>` when it holds an object
/// or a list (or reports a `fieldPath` below its node, which is then an object).
fn cel_cause(schema: &Value, object: &Value, error: &ValidationError) -> Cause {
    let mut rules = Vec::new();
    rule_paths(schema, "", &mut rules);
    let reported = INDEX.replace_all(&error.field_path, "[]");
    let below = rules
        .iter()
        .find(|(rule, path, _)| rule == &error.rule && *path == reported)
        .is_some_and(|(_, _, below)| *below);
    let shown = match value_at(object, &error.field_path) {
        Some(v) if !below && !v.is_object() && !v.is_array() => format!("{v}: "),
        _ => String::new(),
    };
    let reason = match error.reason.as_deref() {
        Some("FieldValueForbidden") => "FieldValueForbidden",
        Some("FieldValueRequired") => "FieldValueRequired",
        Some("FieldValueDuplicate") => "FieldValueDuplicate",
        _ => "FieldValueInvalid",
    };
    Cause::new(
        reason,
        error.field_path.clone(),
        format!("Invalid value: {shown}{}", error.message),
    )
}

/// Schema failures after which kube-apiserver does not run CEL rules (its `hasBlockingErr`):
/// a rule's cost was estimated from the schema's types and bounds, which such a value breaks.
const BLOCKS_RULES: [&str; 5] = [
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTooLong",
    "FieldValueTooMany",
    "FieldValueTypeInvalid",
];

/// Validate a pruned and defaulted custom resource; `old` enables transition rules.
pub(crate) fn validate(
    schema: &Value,
    compiled: Option<&CompiledSchema>,
    object: &Value,
    old: Option<&Value>,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    structural(schema, object, "", &mut causes);
    let Some(compiled) = compiled else {
        return causes;
    };
    if causes.iter().any(|c| BLOCKS_RULES.contains(&c.reason)) {
        // Like kube-apiserver: the rules are skipped, and the answer says so.
        causes.push(Cause::new(
            "FieldValueInvalid",
            "<nil>",
            "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ));
    } else if let Err(errors) = validate_compiled(compiled, object, old) {
        causes.extend(errors.iter().map(|e| cel_cause(schema, object, e)));
    }
    causes
}

/// Names: lowercase RFC 1123 subdomains of at most 253 characters.
pub(crate) fn name_cause(name: &str) -> Option<Cause> {
    static NAME: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
            .unwrap_or_else(|_| unreachable!("static regex"))
    });
    if name.len() <= 253 && NAME.is_match(name) {
        return None;
    }
    Some(Cause::new(
        "FieldValueInvalid",
        "metadata.name",
        format!(
            "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::cel::compile_schema;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["provider"],
                    "properties": {
                        "provider": {"type": "string", "enum": ["aws", "lyceum"]},
                        "gpuCount": {"type": "integer", "minimum": 1, "maximum": 16,
                                     "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "gpuCount is immutable"}]},
                        "region": {"type": "string", "maxLength": 5, "pattern": "^[a-z-]+$"},
                        "spot": {"type": "boolean", "default": false},
                        "tags": {"type": "object", "maxProperties": 2, "additionalProperties": {"type": "string"}},
                        "zones": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    },
                    "x-kubernetes-validations": [
                        {"rule": "self.provider != 'lyceum' || !has(self.gpuCount) || self.gpuCount in [1, 2, 4, 8]",
                         "message": "Lyceum machines take 1, 2, 4 or 8 GPUs", "fieldPath": ".gpuCount"}
                    ]
                },
                "status": {"type": "object", "properties": {"state": {"type": "string"}}}
            }
        })
    }

    fn check(object: Value, old: Option<Value>) -> Vec<Cause> {
        let schema = schema();
        let compiled = compile_schema(&schema);
        let object = default(&schema, &object);
        let old = old.map(|o| default(&schema, &o));
        validate(&schema, Some(&compiled), &object, old.as_ref())
    }

    #[test]
    fn prune_keeps_declared_and_preserved_fields() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"}, "junk": 1,
            "spec": {"provider": "aws", "bogus": true, "tags": {"k": "v"}, "extra": {"anything": [1]}}});
        let removed = prune(&schema(), &mut obj);
        assert_eq!(removed, vec!["junk".to_string(), "spec.bogus".to_string()]);
        assert_eq!(
            obj,
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
            "spec": {"provider": "aws", "tags": {"k": "v"}, "extra": {"anything": [1]}}})
        );
    }

    #[test]
    fn defaults_fill_missing_fields() {
        let obj = default(&schema(), &json!({"spec": {"provider": "aws"}}));
        assert_eq!(obj["spec"]["spot"], json!(false));
    }

    #[test]
    fn structural_and_cel_table() {
        type Case = (Value, Option<Value>, Vec<(&'static str, &'static str)>);
        // kube-apiserver's note that CEL rules were skipped on a structurally invalid object.
        const SKIPPED: (&str, &str) = (
            "<nil>",
            "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        );
        let cases: Vec<Case> = vec![
            (
                json!({"spec": {"provider": "aws", "gpuCount": 2}}),
                None,
                vec![],
            ),
            (
                json!({"spec": {}}),
                None,
                vec![("spec.provider", "Required value"), SKIPPED],
            ),
            (
                json!({"spec": {"provider": "gcp"}}),
                None,
                vec![
                    (
                        "spec.provider",
                        "Unsupported value: \"gcp\": supported values: \"aws\", \"lyceum\"",
                    ),
                    SKIPPED,
                ],
            ),
            (
                json!({"spec": {"provider": "aws", "gpuCount": "two"}}),
                None,
                vec![
                    (
                        "spec.gpuCount",
                        "Invalid value: \"string\": spec.gpuCount in body must be of type integer: \"string\"",
                    ),
                    SKIPPED,
                ],
            ),
            (
                json!({"spec": {"provider": "aws", "gpuCount": 0}}),
                None,
                vec![(
                    "spec.gpuCount",
                    "Invalid value: 0: spec.gpuCount in body should be greater than or equal to 1",
                )],
            ),
            (
                json!({"spec": {"provider": "aws", "region": "UPPER"}}),
                None,
                vec![(
                    "spec.region",
                    "Invalid value: \"UPPER\": spec.region in body should match '^[a-z-]+$'",
                )],
            ),
            (
                json!({"spec": {"provider": "lyceum", "gpuCount": 3}}),
                None,
                vec![(
                    "spec.gpuCount",
                    "Invalid value: Lyceum machines take 1, 2, 4 or 8 GPUs",
                )],
            ),
            (
                json!({"spec": {"provider": "aws", "gpuCount": 4}}),
                Some(json!({"spec": {"provider": "aws", "gpuCount": 2}})),
                vec![("spec.gpuCount", "Invalid value: 4: gpuCount is immutable")],
            ),
            (
                json!({"spec": {"provider": "aws", "gpuCount": 4}}),
                Some(json!({"spec": {"provider": "aws"}})),
                vec![],
            ),
            (
                json!({"spec": {"provider": "aws", "tags": {"a": "1", "b": "2", "c": "3"}}}),
                None,
                vec![
                    ("spec.tags", "Too many: 3: must have at most 2 items"),
                    SKIPPED,
                ],
            ),
            (
                json!({"spec": {"provider": "aws", "zones": ["a", "b", "a", "a"]}}),
                None,
                vec![
                    ("spec.zones[2]", "Duplicate value: \"a\""),
                    ("spec.zones[3]", "Duplicate value: \"a\""),
                ],
            ),
        ];
        for (object, old, expected) in cases {
            let causes = check(object.clone(), old);
            let got: Vec<(&str, &str)> = causes
                .iter()
                .map(|c| (c.field.as_str(), c.message.as_str()))
                .collect();
            assert_eq!(got, expected, "object {object}");
        }
    }

    #[test]
    fn names_must_be_subdomains() {
        assert!(name_cause("gpu-1.example").is_none());
        assert!(name_cause("Bad_Name").is_some());
        assert!(name_cause("").is_some());
    }
}
