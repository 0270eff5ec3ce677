//! The Grafana dashboard (`dashboards/runctl.json`) and the Prometheus alert rules
//! (`alerts/runctl.rules.yaml`) use only metrics that runctl defines, and cover what platform
//! teams watch: jobs by phase and provider, spend, accrued cost, provisioning latency, reconcile
//! and provider errors; leaked machines, budget, provider errors, leader election.
//!
//! The defined metrics are read from `src/metrics.rs` as text (every `"runctl_*"` name literal
//! outside its tests).

mod deploy_support;

use std::collections::BTreeSet;

use deploy_support::*;
use serde_json::Value;

/// `runctl_*` identifiers in a text (PromQL or Rust).
fn metric_tokens(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("runctl_") {
        let start = i + pos;
        let boundary = start == 0
            || !(bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b':');
        let mut end = start + "runctl_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if boundary && end > start + "runctl_".len() {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

/// Metric names defined in `src/metrics.rs` (string literals before its test module).
fn defined_in_code() -> BTreeSet<String> {
    let src = read("src/metrics.rs");
    let code = src.split("#[cfg(test)]").next().unwrap_or_default();
    code.split('"')
        .skip(1)
        .step_by(2)
        .filter(|lit| {
            lit.starts_with("runctl_")
                && lit
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_string)
        .collect()
}

/// Metric names in the table of `docs/observability.md` (rows starting with "| `runctl_").
fn documented() -> BTreeSet<String> {
    read("docs/observability.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("runctl_"))
        .map(str::to_string)
        .collect()
}

/// The metrics the code defines.
fn defined() -> BTreeSet<String> {
    let code = defined_in_code();
    assert!(!code.is_empty(), "src/metrics.rs defines no metric names");
    code
}

/// Maps a series name to its metric: histogram series end in _bucket, _sum or _count.
fn base_metric(name: &str, defined: &BTreeSet<String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && defined.contains(base)
        {
            return base.to_string();
        }
    }
    name.to_string()
}

fn dashboard() -> Value {
    serde_json::from_str(&read("dashboards/runctl.json")).expect("dashboards/runctl.json is JSON")
}

fn dashboard_exprs() -> Vec<String> {
    let mut out = vec![];
    for panel in dashboard()["panels"].as_array().expect("panels") {
        for target in panel["targets"]
            .as_array()
            .expect("every panel has targets")
        {
            out.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    out
}

fn rules() -> Vec<Value> {
    let file = parse_file("alerts/runctl.rules.yaml");
    file["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .collect()
}

#[test]
fn dashboard_and_alerts_use_only_defined_metrics() {
    let defined = defined();
    let mut used = BTreeSet::new();
    for expr in dashboard_exprs().iter().chain(
        rules()
            .iter()
            .filter_map(|r| r["expr"].as_str().map(String::from))
            .collect::<Vec<_>>()
            .iter(),
    ) {
        for token in metric_tokens(expr) {
            used.insert(base_metric(&token, &defined));
        }
    }
    // The job variable's query too.
    for token in metric_tokens(&dashboard()["templating"].to_string()) {
        used.insert(base_metric(&token, &defined));
    }
    let unknown: Vec<&String> = used.difference(&defined).collect();
    assert!(
        unknown.is_empty(),
        "metrics used by the dashboard or alerts that runctl does not define: {unknown:?}"
    );
    assert!(used.len() >= 8, "the dashboard and alerts use {used:?}");
}

#[test]
fn documented_metrics_match_the_code() {
    let code = defined_in_code();
    assert!(!code.is_empty(), "src/metrics.rs defines no metric names");
    let docs = documented();
    assert_eq!(
        docs, code,
        "docs/observability.md's metric table and src/metrics.rs differ"
    );
}

#[test]
fn dashboard_covers_what_platform_teams_watch() {
    let d = dashboard();
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_i64().expect("id")),
            "panel ids are unique"
        );
        assert!(p["gridPos"]["w"].as_i64().is_some_and(|w| w > 0 && w <= 24));
    }
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().expect("title"))
        .collect();
    for want in [
        "Training jobs by phase",
        "Training jobs by provider",
        "Spend per hour by provider",
        "Accrued cost by provider",
        "Provisioning latency (provider create calls)",
        "Reconcile errors by reason",
        "Provider API errors",
        "Operator leader",
    ] {
        assert!(titles.contains(&want), "dashboard has a panel {want:?}");
    }
    assert_eq!(d["uid"], "runctl-overview");
}

#[test]
fn alert_rules_are_complete_and_well_formed() {
    let rules = rules();
    let mut names = BTreeSet::new();
    for rule in &rules {
        assert!(rule["expr"].is_string(), "every rule has an expr: {rule}");
        if let Some(alert) = rule["alert"].as_str() {
            assert!(names.insert(alert.to_string()), "{alert} is defined twice");
            assert!(
                ["warning", "critical"]
                    .contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
                "{alert} severity"
            );
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{alert} has a summary"
            );
            assert!(rule["for"].is_string(), "{alert} has a for duration");
        } else {
            assert!(
                rule["record"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("runctl:")),
                "a rule is an alert or a runctl: recording rule"
            );
        }
    }
    for want in [
        "RunctlLeakedMachineSuspected",
        "RunctlBudgetNearlySpent",
        "RunctlProviderErrors",
        "RunctlNotLeaderElected",
    ] {
        assert!(names.contains(want), "alert {want} exists");
    }
    // Provider error outcomes named in alerts are reasons ProviderError really produces.
    let credentials = rules
        .iter()
        .find(|r| r["alert"] == "RunctlProviderCredentialsFailing")
        .expect("credentials alert");
    for reason in ["AuthenticationFailed", "InsufficientFunds"] {
        assert!(credentials["expr"].as_str().expect("expr").contains(reason));
        assert!(
            read("src/provider/error.rs").contains(&format!("\"{reason}\"")),
            "ProviderError has reason {reason}"
        );
    }
}

#[test]
fn metric_tokens_finds_names_and_skips_recording_rules() {
    let t = metric_tokens(
        r#"sum(rate(runctl_reconciles_total{a="b"}[5m])) > scalar(runctl:budget_usd) + x_runctl_y"#,
    );
    assert_eq!(
        t.into_iter().collect::<Vec<_>>(),
        ["runctl_reconciles_total"]
    );
}
