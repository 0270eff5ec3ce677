//! Shared helpers of the deploy tests (`tests/deploy_*.rs`): the repository root, the helm and
//! kubectl binaries that `scripts/setup-tools.sh` installs into `.tools/bin`, and parsing
//! rendered multi-document YAML into JSON values that the tests query by kind and name.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Reads a file under the repository root.
pub fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The path of a tool in `.tools/bin`; fails (never skips) when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let path = root().join(".tools/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/setup-tools.sh` to install helm and kubectl into .tools/bin",
        path.display()
    );
    path
}

/// Runs a tool from `.tools/bin` in the repository root and returns its stdout; panics with its
/// stderr when it fails.
pub fn run_tool(name: &str, args: &[&str]) -> String {
    let output = run_tool_raw(name, args);
    assert!(
        output.status.success(),
        "`{name} {}` failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("tool output is UTF-8")
}

/// Runs a tool and returns its whole output, successful or not.
pub fn run_tool_raw(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool(name))
        .args(args)
        .current_dir(root())
        // helm keeps caches and config under these; keep them out of the user's home.
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("runctl-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("runctl-helm-config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("runctl-helm-data"),
        )
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"))
}

/// Renders the chart with `helm template` (release `runctl`, namespace `runctl-system`).
pub fn helm_template(extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "template",
        "runctl",
        "charts/runctl",
        "--namespace",
        "runctl-system",
    ];
    args.extend_from_slice(extra);
    parse_docs(&run_tool("helm", &args))
}

/// The one value a default install needs (`--set` it): with a cloud provider enabled (AWS is, by
/// default) the chart refuses to render without a callback URL the machines can reach.
pub const CALLBACK_URL: &str = "callback.url=https://runctl.example.com";

/// The values file that turns every optional feature on.
pub const ALL_OPTIONS: &str = "charts/runctl/ci/all-options-values.yaml";

/// Renders `config/default` with `kubectl kustomize`.
pub fn kustomize(dir: &str) -> Vec<Value> {
    parse_docs(&run_tool("kubectl", &["kustomize", dir]))
}

/// Parses a multi-document YAML stream; empty documents are dropped.
pub fn parse_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("valid YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Parses one YAML file into JSON.
pub fn parse_file(rel: &str) -> Value {
    let docs = parse_docs(&read(rel));
    assert_eq!(docs.len(), 1, "{rel} holds one document");
    docs.into_iter().next().expect("one document")
}

/// Every object of a kind.
pub fn all_of<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one object of a kind; panics when there is none or several.
pub fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = all_of(docs, kind);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind}, found {}",
        found.len()
    );
    found[0]
}

/// The kinds in a rendering, sorted.
pub fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or("").to_string())
        .collect();
    k.sort();
    k
}

/// The operator container of a Deployment.
pub fn operator_container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    containers
        .iter()
        .find(|c| c["name"] == "operator")
        .expect("a container named operator")
}

/// RBAC rules in a canonical form: one `(apiGroup, resource, sorted verbs)` per resource, sorted.
/// A rule limited to some objects names them after the resource: `leases[runctl-leader]`.
pub fn canonical_rules(role: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out = vec![];
    for rule in role["rules"].as_array().expect("rules") {
        let strings = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().expect("string").to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut verbs = strings("verbs");
        verbs.sort();
        let names = strings("resourceNames");
        let names = if names.is_empty() {
            String::new()
        } else {
            format!("[{}]", names.join(","))
        };
        for group in strings("apiGroups") {
            for resource in strings("resources") {
                out.push((group.clone(), format!("{resource}{names}"), verbs.clone()));
            }
        }
    }
    out.sort();
    out
}

/// Numbers as f64 everywhere, so that `8` and `8.0` compare equal (Helm's `fromYaml` turns every
/// number into a float).
pub fn normalize_numbers(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64().expect("finite number")),
        Value::Array(a) => Value::Array(a.iter().map(normalize_numbers).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), normalize_numbers(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The CRD files of `crds/`, by file name.
pub fn repo_crds() -> Vec<(String, String)> {
    list_yaml(&root().join("crds"))
}

/// The `*.yaml` files of a directory with their contents, sorted by name.
pub fn list_yaml(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let name = p
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .to_string();
            let text = std::fs::read_to_string(&p).expect("readable");
            (name, text)
        })
        .collect();
    files.sort();
    files
}
