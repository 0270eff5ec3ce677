//! `docs/crd-reference.md` is generated from the CRDs (`runctl::crd::all()`); this test
//! regenerates it in memory and fails on drift. Regenerate with
//! `UPDATE_GOLDEN=1 cargo test --test deploy_docs`. It also checks that the operator docs'
//! relative links point at files that exist.

mod deploy_support;

use deploy_support::*;
use serde_json::Value;

/// One line of a Markdown table cell: no newlines, no bare pipes.
fn cell(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// A schema's type in words: `string (enum: a, b)`, `[]object`, `integer (int32, 1–16)`.
fn type_of(schema: &Value) -> String {
    let mut t = match schema["type"].as_str() {
        Some("array") => format!("[]{}", type_of(&schema["items"])),
        Some(other) => other.to_string(),
        None if schema["x-kubernetes-int-or-string"] == true => "int-or-string".to_string(),
        None if schema["x-kubernetes-preserve-unknown-fields"] == true => "any".to_string(),
        None => "object".to_string(),
    };
    if schema["type"] == "object" && schema["additionalProperties"].is_object() {
        t = format!("map[string]{}", type_of(&schema["additionalProperties"]));
    }
    let mut notes = vec![];
    if let Some(f) = schema["format"].as_str() {
        notes.push(f.to_string());
    }
    if let Some(values) = schema["enum"].as_array() {
        notes.push(format!(
            "one of: {}",
            values
                .iter()
                .map(|v| v
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let num = |v: &Value| {
        v.as_f64().map(|f| {
            if f.fract() == 0.0 {
                format!("{}", f as i64)
            } else {
                f.to_string()
            }
        })
    };
    match (num(&schema["minimum"]), num(&schema["maximum"])) {
        (Some(a), Some(b)) => notes.push(format!("{a}–{b}")),
        (Some(a), None) => notes.push(format!("≥ {a}")),
        (None, Some(b)) => notes.push(format!("≤ {b}")),
        _ => {}
    }
    if let Some(n) = schema["maxLength"].as_u64() {
        notes.push(format!("max length {n}"));
    }
    if let Some(n) = schema["maxItems"].as_u64() {
        notes.push(format!("at most {n} items"));
    }
    if let Some(n) = schema["maxProperties"].as_u64() {
        notes.push(format!("at most {n} entries"));
    }
    match schema["x-kubernetes-list-type"].as_str() {
        Some("set") => notes.push("set: no duplicates".into()),
        Some("map") => notes.push("map list".into()),
        _ => {}
    }
    if let Some(p) = schema["pattern"].as_str() {
        notes.push(format!("pattern `{p}`"));
    }
    if notes.is_empty() {
        t
    } else {
        format!("{t} ({})", notes.join(", "))
    }
}

/// Rows `(path, type, required, description)` for every field under `schema`, depth first.
fn walk(
    path: &str,
    schema: &Value,
    rows: &mut Vec<[String; 4]>,
    rules: &mut Vec<(String, String, String)>,
) {
    collect_rules(path, schema, rules);
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = schema["properties"].as_object() {
        for (name, child) in props {
            let p = format!("{path}.{name}");
            rows.push([
                format!("`{p}`"),
                cell(&type_of(child)),
                if required.contains(&name.as_str()) {
                    "yes".into()
                } else {
                    String::new()
                },
                cell(child["description"].as_str().unwrap_or("")),
            ]);
            walk(&p, child, rows, rules);
        }
    }
    if schema["type"] == "array" {
        walk(&format!("{path}[]"), &schema["items"], rows, rules);
    }
}

fn collect_rules(path: &str, schema: &Value, rules: &mut Vec<(String, String, String)>) {
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        rules.push((
            path.to_string(),
            cell(rule["rule"].as_str().unwrap_or("")),
            cell(rule["message"].as_str().unwrap_or("")),
        ));
    }
}

/// The whole reference, from the CRDs.
/// What each provider's descriptor says, the source of its CEL rules below.
fn providers_table() -> String {
    use runctl::provider::descriptor::{ALL, Sizing};
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut out = String::from(
        "\n## Providers\n\nFrom each provider's descriptor (`src/provider/<name>/mod.rs`); the \
         provider-specific CEL rules of the kinds below are generated from it \
         (`src/crd/rules.rs`).\n\n\
         | provider | machines named by | regions | spot | multi-node | workload reports | settings block |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for d in ALL {
        let name = d.kind.as_str();
        let sizing = match d.sizing {
            Sizing::InstanceType => format!("`instanceType` (`{}`)", d.machine_example),
            Sizing::GpuType => format!("`gpuType` (`{}`)", d.machine_example),
            Sizing::Either => format!("`instanceType` or `gpuType` (`{}`)", d.machine_example),
            Sizing::GpuCount => format!("`gpuCount`, `gpuType` optional (`{}`)", d.machine_example),
        };
        let reports = match (d.reports, d.reports_from_outside) {
            (false, _) => "no (the provider's status)",
            (true, true) => "callback URL",
            (true, false) => "in process",
        };
        let block = if d.options {
            format!("`spec.{name}`")
        } else {
            "none".to_string()
        };
        out.push_str(&format!(
            "| `{name}` | {sizing} | {} | {} | {} | {reports} | {block} |\n",
            yes(d.regions),
            yes(d.spot),
            yes(d.multi_node),
        ));
    }
    out
}

fn generate() -> String {
    let mut out = String::from(
        "# CRD reference\n\n<!-- Generated from the Rust types by tests/deploy_docs.rs; do not edit.\n     \
         Regenerate: UPDATE_GOLDEN=1 cargo test --test deploy_docs -->\n\n\
         runctl's API group is `runctl.dev`, version `v1alpha1`. The same schemas are in `crds/`;\n\
         `kubectl explain trainingjob.spec` shows them in a cluster.\n\n\
         Every string, list and map under `spec` is bounded (max length, at most N items or\n\
         entries): kube-apiserver estimates the worst-case cost of each CEL rule from these bounds\n\
         and refuses a CRD whose rules could cost too much. They are sized for real use: names\n\
         253 characters as in Kubernetes, image references 1024, URIs 2048, 64 command words of\n\
         4 KiB, 512 arguments of 16 KiB, 256 env variables with values up to 32 KiB, 40 tags\n\
         (EC2 allows 50 per instance and runctl adds its own) with values up to 256 characters,\n\
         EC2's limit. A value over a bound is refused with `Too long` or `Too many`, and the CEL rules\n\
         are then not checked until it is fixed. Status is written by runctl only and has no\n\
         bounds.\n",
    );
    out.push_str(&providers_table());
    for crd in runctl::crd::all() {
        let v = serde_json::to_value(&crd).expect("CRD serializes");
        let spec = &v["spec"];
        let names = &spec["names"];
        let version = &spec["versions"][0];
        let kind = names["kind"].as_str().unwrap_or_default();
        out.push_str(&format!("\n## {kind}\n\n"));
        out.push_str(&format!(
            "`{}/{}`, {} scope; plural `{}`",
            spec["group"].as_str().unwrap_or_default(),
            version["name"].as_str().unwrap_or_default(),
            spec["scope"].as_str().unwrap_or_default().to_lowercase(),
            names["plural"].as_str().unwrap_or_default()
        ));
        if let Some(short) = names["shortNames"].as_array() {
            let s: Vec<String> = short
                .iter()
                .filter_map(Value::as_str)
                .map(|s| format!("`{s}`"))
                .collect();
            out.push_str(&format!(", short names {}", s.join(", ")));
        }
        out.push_str(".\n");
        let schema = &version["schema"]["openAPIV3Schema"];
        if let Some(d) = schema["description"].as_str() {
            out.push_str(&format!("\n{}\n", cell(d)));
        }
        if let Some(cols) = version["additionalPrinterColumns"].as_array() {
            out.push_str(
                "\n`kubectl get` columns:\n\n| Column | JSON path | Shown |\n|---|---|---|\n",
            );
            for c in cols {
                let wide = c["priority"].as_i64().unwrap_or(0) > 0;
                out.push_str(&format!(
                    "| {} | `{}` | {} |\n",
                    cell(c["name"].as_str().unwrap_or_default()),
                    c["jsonPath"].as_str().unwrap_or_default(),
                    if wide { "`-o wide`" } else { "always" }
                ));
            }
        }
        for part in ["spec", "status"] {
            let mut rows = vec![];
            let mut rules = vec![];
            walk(part, &schema["properties"][part], &mut rows, &mut rules);
            out.push_str(&format!("\n### {kind} {part}\n\n| Field | Type | Required | Description |\n|---|---|---|---|\n"));
            for r in rows {
                out.push_str(&format!("| {} | {} | {} | {} |\n", r[0], r[1], r[2], r[3]));
            }
            if !rules.is_empty() {
                out.push_str(&format!("\nValidation rules on {part} (CEL, checked by the API server):\n\n| At | Rule | Message |\n|---|---|---|\n"));
                for (at, rule, message) in rules {
                    out.push_str(&format!("| `{at}` | `{rule}` | {message} |\n"));
                }
            }
        }
    }
    out
}

#[test]
fn crd_reference_is_up_to_date() {
    let path = root().join("docs/crd-reference.md");
    let generated = generate();
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write docs/crd-reference.md");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/crd-reference.md is out of date with the CRDs; regenerate every generated file with scripts/generate.sh"
    );
}

#[test]
fn crd_reference_covers_every_field() {
    let doc = generate();
    for needle in [
        "`spec.placement.provider`",
        "`spec.workload.image`",
        "`status.phase`",
        "`spec.provider`",
        "`status.state`",
        "`status.conditions[].type`",
    ] {
        assert!(doc.contains(needle), "the reference documents {needle}");
    }
}

#[test]
fn operator_docs_links_resolve() {
    for doc in [
        "getting-started",
        "operations",
        "security",
        "gitops",
        "observability",
        "crd-reference",
    ] {
        let rel = format!("docs/{doc}.md");
        let text = read(&rel);
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let end = rest.find(')').expect("closed link");
            let target = rest[..end].split('#').next().unwrap_or_default();
            if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
                let path = root().join("docs").join(target);
                assert!(
                    path.exists(),
                    "{rel} links to {target}, which does not exist"
                );
            }
        }
    }
}
