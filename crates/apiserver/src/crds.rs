//! CustomResourceDefinition objects: the checks the real apiserver makes on their names and
//! versions, and the status (`NamesAccepted`, `Established`) it reports once they are served.

use kube::core::cel::CompiledSchema;
use serde_json::{Value, json};

use crate::error::{ApiError, Cause};
use crate::write::{WriteCtx, name_of};

/// CRDs: the name must be `<plural>.<group>`, at least one version must be served, and every
/// CEL rule must compile.
pub(crate) fn check(ctx: &WriteCtx<'_>, crd: &Value) -> Result<(), ApiError> {
    let name = name_of(crd);
    let spec = &crd["spec"];
    let expected = format!(
        "{}.{}",
        spec["names"]["plural"].as_str().unwrap_or_default(),
        spec["group"].as_str().unwrap_or_default()
    );
    let mut causes = Vec::new();
    if name != expected {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if crate::resources::types_from_crd(crd).is_empty() {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.versions",
            "Invalid value: \"array\": must have exactly one version marked as storage version and at least one served",
        ));
    }
    for rt in crate::resources::types_from_crd(crd) {
        if let Some(compiled) = rt.cel.as_deref() {
            let path = format!("spec.versions[{}].schema.openAPIV3Schema", rt.version);
            rule_errors(compiled, &path, &mut causes);
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ctx.invalid(name, causes))
    }
}

/// CEL rules that do not compile, as the real apiserver reports them at registration.
fn rule_errors(compiled: &CompiledSchema, path: &str, causes: &mut Vec<Cause>) {
    for error in compiled.compilation_errors() {
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!("{path}.x-kubernetes-validations"),
            format!("Invalid value: \"object\": compilation failed: {error}"),
        ));
    }
    for (name, child) in &compiled.properties {
        rule_errors(child, &format!("{path}.properties[{name}]"), causes);
    }
    if let Some(items) = compiled.items.as_deref() {
        rule_errors(items, &format!("{path}.items"), causes);
    }
    if let Some(additional) = compiled.additional_properties.as_deref() {
        rule_errors(additional, &format!("{path}.additionalProperties"), causes);
    }
}

/// CRDs: accept names and mark Established.
pub(crate) fn status(obj: &mut Value, old: Option<&Value>, now: &str) {
    let old_status = old.map(|o| o["status"].clone()).unwrap_or(Value::Null);
    let condition = |type_: &str, reason: &str, message: &str| {
        let kept = old_status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
            .cloned();
        kept.unwrap_or_else(|| json!({"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now}))
    };
    let stored: Vec<Value> = obj["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .map(|v| v["name"].clone())
        .collect();
    obj["status"] = json!({
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": obj["spec"]["names"].clone(),
        "storedVersions": stored,
    });
}
