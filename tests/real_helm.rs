//! The Helm chart on a real control plane (crates/envtest): `helm install` creates every object
//! of the rendering (CRDs included: they are templates), `helm upgrade` with changed values
//! updates them (more replicas, another poll interval, and the RBAC switched to
//! `rbac.scope=namespaced`), and `helm uninstall` keeps the CRDs. The Deployment with the
//! callback endpoint's TLS Secret mounted (`callback.tls.secretName`) passes the API server's
//! validation, and so do the per-shard objects of a sharded rendering (`sharding.shards`).
//!
//! The control plane has no nodes and no Deployment controller, so no operator pod runs: these
//! tests check what the API server accepts and stores, not the operator (tests/real_rbac.rs runs
//! the operator with the chart's RBAC). The chart installs the CRDs, so this binary never
//! installs them any other way, and only the install test touches them.

mod deploy_support;

use std::path::Path;

use deploy_support::{CALLBACK_URL, parse_docs, run_tool, run_tool_raw};
use runctl_envtest::ControlPlane;
use serde_json::Value;

fn helm(plane: &ControlPlane, args: &[&str]) -> String {
    let kubeconfig = plane.kubeconfig().display().to_string();
    let mut all = args.to_vec();
    all.extend(["--kubeconfig", kubeconfig.as_str()]);
    run_tool("helm", &all)
}

fn kubectl(plane: &ControlPlane, args: &[&str]) -> String {
    let kubeconfig = plane.kubeconfig().display().to_string();
    let mut all = vec!["--kubeconfig", kubeconfig.as_str()];
    all.extend_from_slice(args);
    run_tool("kubectl", &all)
}

/// `kind/name` (and namespace) of every object of a rendering.
fn identities(docs: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{} {}",
                d["kind"].as_str().unwrap_or_default(),
                d["metadata"]["name"].as_str().unwrap_or_default(),
                d["metadata"]["namespace"].as_str().unwrap_or_default()
            )
        })
        .collect();
    ids.sort();
    ids
}

/// The objects of `manifest` as the API server holds them (`kubectl get -f`, which fails when
/// one is missing).
fn stored(plane: &ControlPlane, dir: &Path, manifest: &str) -> Vec<Value> {
    let file = dir.join("manifest.yaml");
    std::fs::write(&file, manifest).expect("write the manifest");
    let out = kubectl(
        plane,
        &["get", "-f", &file.display().to_string(), "-o", "json"],
    );
    let list: Value = serde_json::from_str(&out).expect("kubectl prints JSON");
    match list["kind"].as_str() {
        Some("List") => list["items"].as_array().cloned().unwrap_or_default(),
        _ => vec![list],
    }
}

/// Renders the chart as `helm install` would for this release (namespace set by the caller).
fn template(release: &str, namespace: &str, values: &[&str]) -> String {
    let mut args = vec![
        "template",
        release,
        "charts/runctl",
        "--namespace",
        namespace,
    ];
    args.extend_from_slice(values);
    run_tool("helm", &args)
}

/// The operator configuration in the chart's ConfigMap.
fn operator_config(objects: &[Value]) -> Value {
    let cm = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .expect("the ConfigMap");
    serde_yaml::from_str(cm["data"]["config.yaml"].as_str().expect("config.yaml")).expect("YAML")
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

#[tokio::test]
async fn helm_installs_upgrades_and_uninstalls_the_chart() {
    let plane = runctl_envtest::shared().await;
    let ns = plane
        .create_namespace("runctl")
        .await
        .expect("the release namespace");
    let watched = plane
        .create_namespace("ml")
        .await
        .expect("the watched namespace");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let release = "rc";

    // Install: every object of the rendering exists, as rendered.
    let out = helm(
        plane,
        &[
            "install",
            release,
            "charts/runctl",
            "--namespace",
            &ns,
            "--set",
            CALLBACK_URL,
        ],
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    let rendered = template(release, &ns, &["--set", CALLBACK_URL]);
    let docs = parse_docs(&rendered);
    let objects = stored(plane, dir.path(), &rendered);
    assert_eq!(identities(&objects), identities(&docs));
    for name in ["cloudresources.runctl.dev", "trainingjobs.runctl.dev"] {
        let crd = find(&objects, "CustomResourceDefinition", name).expect("CRD installed");
        assert!(
            crd["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "NamesAccepted" && c["status"] == "True"),
            "{name} accepted: {}",
            crd["status"]
        );
    }
    let deployment = find(&objects, "Deployment", "rc-runctl").expect("the Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(find(&objects, "ClusterRole", "rc-runctl").is_some());
    assert_eq!(operator_config(&objects)["pollIntervalSeconds"], 30);
    assert_eq!(
        operator_config(&objects)["jobs"]["callbackUrl"],
        "https://runctl.example.com"
    );

    // Upgrade with changed values: replicas, the operator configuration, and the RBAC scope.
    let values = [
        "--set",
        CALLBACK_URL,
        "--set",
        "replicaCount=3",
        "--set",
        "config.pollIntervalSeconds=10",
        "--set",
        "rbac.scope=namespaced",
        "--set",
        &format!("config.watchNamespace={watched}"),
    ];
    let mut args = vec!["upgrade", release, "charts/runctl", "--namespace", &ns];
    args.extend_from_slice(&values);
    let out = helm(plane, &args);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(out.contains("REVISION: 2"), "{out}");
    let rendered = template(release, &ns, &values);
    let docs = parse_docs(&rendered);
    let objects = stored(plane, dir.path(), &rendered);
    assert_eq!(identities(&objects), identities(&docs));
    let deployment = find(&objects, "Deployment", "rc-runctl").expect("the Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let config = operator_config(&objects);
    assert_eq!(config["pollIntervalSeconds"], 10);
    assert_eq!(config["watchNamespace"], watched.as_str());
    let role = find(&objects, "Role", "rc-runctl").expect("the watched namespace's Role");
    assert_eq!(role["metadata"]["namespace"], watched.as_str());
    // The cluster-wide role of the first revision is gone.
    let out = run_tool_raw(
        "kubectl",
        &[
            "--kubeconfig",
            &plane.kubeconfig().display().to_string(),
            "get",
            "clusterrole",
            "rc-runctl",
        ],
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound"),
        "the first revision's ClusterRole is deleted by the upgrade"
    );
    let history = helm(plane, &["history", release, "--namespace", &ns]);
    assert!(
        history.contains("superseded") && history.contains("deployed"),
        "{history}"
    );

    // Uninstall: everything goes but the CRDs (helm.sh/resource-policy: keep).
    helm(plane, &["uninstall", release, "--namespace", &ns]);
    let left = kubectl(
        plane,
        &[
            "get",
            "deployment,configmap,serviceaccount,role,rolebinding",
            "--namespace",
            &ns,
            "-l",
            "app.kubernetes.io/instance=rc",
            "-o",
            "name",
        ],
    );
    assert!(left.trim().is_empty(), "left after uninstall: {left}");
    for (kinds, namespace) in [
        ("role,rolebinding", watched.as_str()),
        ("clusterrole,clusterrolebinding", ""),
    ] {
        let mut args = vec![
            "get",
            kinds,
            "-l",
            "app.kubernetes.io/instance=rc",
            "-o",
            "name",
        ];
        if !namespace.is_empty() {
            args.extend(["--namespace", namespace]);
        }
        let left = kubectl(plane, &args);
        assert!(left.trim().is_empty(), "left after uninstall: {left}");
    }
    let crds = kubectl(plane, &["get", "crd", "-o", "name"]);
    for name in ["cloudresources.runctl.dev", "trainingjobs.runctl.dev"] {
        assert!(crds.contains(name), "{name} is kept: {crds}");
    }
}

/// `kubectl apply --dry-run=server --validate=strict` of `manifest` (written to `file`) against
/// the cluster of `kubeconfig`; what kubectl printed.
fn server_dry_run(kubeconfig: &str, file: &std::path::Path, manifest: &str) -> String {
    std::fs::write(file, manifest).expect("write the manifest");
    run_tool(
        "kubectl",
        &[
            "--kubeconfig",
            kubeconfig,
            "apply",
            "--dry-run=server",
            "--validate=strict",
            "-f",
            &file.display().to_string(),
        ],
    )
}

/// The Deployment and configuration with the operator serving the callback endpoint over TLS
/// (`callback.tls.secretName`) are accepted by the API server as they are rendered: the Secret
/// volume and its read-only mount validate (`kubectl apply --dry-run=server --validate=strict`).
/// The Secret itself is the user's (cert-manager's); a real one is created here too so that the
/// objects are applied as a release would find them.
#[tokio::test]
async fn the_deployment_with_callback_tls_passes_server_side_validation() {
    let plane = runctl_envtest::shared().await;
    let ns = plane
        .create_namespace("runctl-tls")
        .await
        .expect("the release namespace");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = plane.kubeconfig().display().to_string();
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["runctl.example.com".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("a certificate");
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_file, cert.pem()).expect("write the certificate");
    std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
    kubectl(
        plane,
        &[
            "create",
            "secret",
            "tls",
            "runctl-callback-cert",
            "--namespace",
            &ns,
            "--cert",
            &cert_file.display().to_string(),
            "--key",
            &key_file.display().to_string(),
        ],
    );
    let rendered = run_tool(
        "helm",
        &[
            "template",
            "tls",
            "charts/runctl",
            "--namespace",
            &ns,
            "--set",
            CALLBACK_URL,
            "--set",
            "callback.tls.secretName=runctl-callback-cert",
            "--show-only",
            "templates/configmap.yaml",
            "--show-only",
            "templates/deployment.yaml",
        ],
    );
    let docs = parse_docs(&rendered);
    assert_eq!(docs.len(), 2, "{rendered}");
    let out = server_dry_run(&kubeconfig, &dir.path().join("tls.yaml"), &rendered);
    assert!(
        out.contains("deployment.apps/tls-runctl created (server dry run)"),
        "{out}"
    );
    assert!(
        out.contains("configmap/tls-runctl-config created (server dry run)"),
        "{out}"
    );
}

/// A sharded rendering (`sharding.shards=2`, the Ingress with one host per shard, the
/// NetworkPolicy): the per-shard Deployments, Services, PodDisruptionBudgets, the Ingress and the
/// Role with the shards' Leases are accepted by the API server as they are rendered (`kubectl apply
/// --dry-run=server --validate=strict`).
#[tokio::test]
async fn a_sharded_rendering_passes_server_side_validation() {
    let plane = runctl_envtest::shared().await;
    let ns = plane
        .create_namespace("runctl-shards")
        .await
        .expect("the release namespace");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = plane.kubeconfig().display().to_string();
    let shown: Vec<String> = [
        "configmap",
        "deployment",
        "service",
        "pdb",
        "ingress",
        "networkpolicy",
        "rbac",
    ]
    .iter()
    .map(|t| format!("templates/{t}.yaml"))
    .collect();
    let mut args = vec!["template", "sh", "charts/runctl", "--namespace", &ns];
    args.extend([
        "--set",
        "sharding.shards=2",
        "--set",
        "ingress.enabled=true",
        "--set",
        "ingress.host=runctl-{shard}.example.com",
        "--set",
        "ingress.tlsSecretName=runctl-callback-tls",
        "--set",
        "networkPolicy.enabled=true",
    ]);
    for path in &shown {
        args.extend(["--show-only", path.as_str()]);
    }
    let rendered = run_tool("helm", &args);
    let out = server_dry_run(&kubeconfig, &dir.path().join("shards.yaml"), &rendered);
    for object in [
        "configmap/sh-runctl-config",
        "deployment.apps/sh-runctl-shard-0",
        "deployment.apps/sh-runctl-shard-1",
        "service/sh-runctl",
        "service/sh-runctl-shard-0",
        "service/sh-runctl-shard-1",
        "poddisruptionbudget.policy/sh-runctl-shard-0",
        "poddisruptionbudget.policy/sh-runctl-shard-1",
        "ingress.networking.k8s.io/sh-runctl-callback",
        "networkpolicy.networking.k8s.io/sh-runctl",
        "role.rbac.authorization.k8s.io/sh-runctl-operator-namespace",
    ] {
        assert!(
            out.contains(&format!("{object} created (server dry run)")),
            "{object}: {out}"
        );
    }
}
