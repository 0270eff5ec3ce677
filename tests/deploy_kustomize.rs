//! The kustomize tree (`config/`): its CRDs equal the generated `crds/`, `config/default` renders
//! with `kubectl kustomize`, and it stays consistent with the Helm chart (same RBAC rules, same
//! security contexts, probes and ports). The samples are valid runctl objects.
//!
//! Needs kubectl and helm in `.tools/bin` (`bash scripts/setup-tools.sh`).

mod deploy_support;

use deploy_support::*;
use runctl::crd::{CloudResource, TrainingJob};
use serde_json::Value;

#[test]
fn config_crd_equals_crds_dir() {
    let repo = repo_crds();
    let copies = list_yaml(&root().join("config/crd"));
    let copies: Vec<&(String, String)> = copies
        .iter()
        .filter(|(n, _)| n != "kustomization.yaml")
        .collect();
    assert_eq!(
        copies.len(),
        repo.len(),
        "config/crd holds one copy per file in crds/"
    );
    for ((name, copy), (repo_name, text)) in copies.iter().zip(&repo) {
        assert_eq!(name, repo_name);
        assert!(
            copy == text,
            "config/crd/{name} differs from crds/{name}; regenerate every generated file with scripts/generate.sh"
        );
    }
    let kustomization = read("config/crd/kustomization.yaml");
    for (name, _) in &repo {
        assert!(
            kustomization.contains(name.as_str()),
            "config/crd/kustomization.yaml lists {name}"
        );
    }
}

#[test]
fn default_overlay_renders_everything_into_runctl_system() {
    let docs = kustomize("config/default");
    assert_eq!(
        kinds(&docs),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Namespace",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    assert_eq!(one(&docs, "Namespace")["metadata"]["name"], "runctl-system");
    assert_eq!(
        one(&docs, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        if ![
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
        ]
        .contains(&kind)
        {
            assert_eq!(
                doc["metadata"]["namespace"], "runctl-system",
                "{kind} namespace"
            );
        }
    }
    for binding in [one(&docs, "ClusterRoleBinding"), one(&docs, "RoleBinding")] {
        assert_eq!(binding["subjects"][0]["namespace"], "runctl-system");
        assert_eq!(
            binding["subjects"][0]["name"],
            one(&docs, "ServiceAccount")["metadata"]["name"]
        );
    }
    // The generated ConfigMap name (with its hash) is the one the Deployment mounts.
    let cm = one(&docs, "ConfigMap");
    let volumes = one(&docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .clone();
    assert!(
        volumes
            .iter()
            .any(|v| v["configMap"]["name"] == cm["metadata"]["name"])
    );
    let config: Value =
        serde_yaml::from_str(cm["data"]["config.yaml"].as_str().expect("config.yaml"))
            .expect("YAML");
    assert_eq!(config["metricsAddr"], "0.0.0.0:8080");
    assert_eq!(
        operator_container(one(&docs, "Deployment"))["image"],
        "ghcr.io/runctl/runctl:0.1.0"
    );
}

#[test]
fn kustomize_and_helm_agree() {
    let kust = kustomize("config/default");
    let helm = helm_template(&["--set", CALLBACK_URL]);

    assert_eq!(
        canonical_rules(one(&kust, "ClusterRole")),
        canonical_rules(one(&helm, "ClusterRole")),
        "ClusterRole rules"
    );
    assert_eq!(
        canonical_rules(one(&kust, "Role")),
        canonical_rules(one(&helm, "Role")),
        "operator-namespace Role rules"
    );

    let (kd, hd) = (one(&kust, "Deployment"), one(&helm, "Deployment"));
    assert_eq!(kd["spec"]["replicas"], hd["spec"]["replicas"]);
    let pod = |d: &Value| d["spec"]["template"]["spec"]["securityContext"].clone();
    assert_eq!(pod(kd), pod(hd), "pod securityContext");
    let (kc, hc) = (operator_container(kd), operator_container(hd));
    for field in [
        "securityContext",
        "ports",
        "args",
        "resources",
        "volumeMounts",
    ] {
        assert_eq!(kc[field], hc[field], "container {field}");
    }
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(kc[probe]["httpGet"], hc[probe]["httpGet"], "{probe}");
    }
    assert_eq!(kc["env"], hc["env"], "env");
    assert_eq!(
        one(&kust, "PodDisruptionBudget")["spec"]["minAvailable"],
        one(&helm, "PodDisruptionBudget")["spec"]["minAvailable"]
    );
    let ports = |docs: &[Value]| one(docs, "Service")["spec"]["ports"].clone();
    assert_eq!(ports(&kust), ports(&helm), "Service ports");

    // Both render the same operator configuration from their defaults.
    let config = |docs: &[Value]| -> Value {
        serde_yaml::from_str(
            one(docs, "ConfigMap")["data"]["config.yaml"]
                .as_str()
                .expect("config.yaml"),
        )
        .expect("YAML")
    };
    // Except the callback URL, which the chart must be given and config.yaml leaves to a patch.
    let mut helm_config = config(&helm);
    let jobs = helm_config
        .as_object_mut()
        .expect("a mapping")
        .remove("jobs");
    assert_eq!(
        jobs,
        Some(serde_json::json!({"callbackUrl": "https://runctl.example.com"}))
    );
    assert_eq!(config(&kust), helm_config, "operator config");
}

/// Every field the sample sets survives a round trip through the Rust type (serde ignores unknown
/// fields, so a typo would otherwise pass).
fn assert_known_fields(file: &str, path: &str, sample: &Value, round_trip: &Value) {
    match (sample, round_trip) {
        (Value::Object(s), Value::Object(r)) => {
            for (k, v) in s {
                let child = r
                    .get(k)
                    .unwrap_or_else(|| panic!("{file}: {path}.{k} is not a field of the API"));
                assert_known_fields(file, &format!("{path}.{k}"), v, child);
            }
        }
        (Value::Array(s), Value::Array(r)) => {
            for (i, (sv, rv)) in s.iter().zip(r).enumerate() {
                assert_known_fields(file, &format!("{path}[{i}]"), sv, rv);
            }
        }
        _ => {}
    }
}

#[test]
fn samples_are_valid_runctl_objects() {
    let docs = kustomize("config/samples");
    assert_eq!(docs.len(), 2);
    let mut seen = 0;
    for (name, text) in list_yaml(&root().join("config/samples")) {
        if name == "kustomization.yaml" {
            continue;
        }
        let doc = parse_docs(&text).remove(0);
        let round_trip = match doc["kind"].as_str() {
            Some("TrainingJob") => {
                let job: TrainingJob =
                    serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
                serde_json::to_value(&job).expect("serializes")
            }
            Some("CloudResource") => {
                let cr: CloudResource =
                    serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
                serde_json::to_value(&cr).expect("serializes")
            }
            other => panic!("{name}: unexpected kind {other:?}"),
        };
        assert_known_fields(&name, "spec", &doc["spec"], &round_trip["spec"]);
        assert_eq!(doc["apiVersion"], "runctl.dev/v1alpha1");
        seen += 1;
    }
    assert_eq!(seen, 3);
}
