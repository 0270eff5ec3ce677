//! The Helm chart (`charts/runctl`): `helm lint` is clean, and `helm template` with the default
//! values and with every option on (`ci/all-options-values.yaml`) renders what a platform team
//! expects: exactly the RBAC the operator needs, the image, probes, restricted security context,
//! HA replicas with a PodDisruptionBudget, the optional objects only when asked for, CRDs that
//! survive `helm uninstall`, and a values schema that rejects bad values.
//!
//! Needs helm in `.tools/bin` (`bash scripts/setup-tools.sh`).

mod deploy_support;

use deploy_support::*;
use serde_json::{Value, json};

type Rules = Vec<(String, String, Vec<String>)>;

/// Canonical rules (see `canonical_rules`) from `(apiGroup, resource, verbs)`.
fn rules(list: &[(&str, &str, &[&str])]) -> Rules {
    let mut out: Rules = list
        .iter()
        .map(|(group, resource, verbs)| {
            let mut v: Vec<String> = verbs.iter().map(|s| s.to_string()).collect();
            v.sort();
            (group.to_string(), resource.to_string(), v)
        })
        .collect();
    out.sort();
    out
}

/// The operator's Kubernetes calls on the objects it reconciles (docs/security.md says which
/// code makes each).
fn expected_object_rules() -> Rules {
    let cloud_resources = ["list", "watch", "get", "create", "patch", "delete"];
    let jobs = ["list", "watch", "get", "patch"];
    rules(&[
        ("runctl.dev", "cloudresources", &cloud_resources),
        ("runctl.dev", "trainingjobs", &jobs),
        ("runctl.dev", "cloudresources/status", &["get", "patch"]),
        ("runctl.dev", "trainingjobs/status", &["patch"]),
        ("", "secrets", &["get", "create", "delete"]),
        (
            "",
            "configmaps",
            &["list", "get", "create", "update", "delete"],
        ),
        ("events.k8s.io", "events", &["create", "patch"]),
    ])
}

/// The ClusterRole's rules (cluster scope): the objects' rules and the MachineClasses, which are
/// cluster-scoped and so not available in namespaced scope.
fn expected_cluster_rules() -> Rules {
    let mut r = expected_object_rules();
    r.extend(rules(&[
        ("runctl.dev", "machineclasses", &["list", "watch"]),
        ("runctl.dev", "machineclasses/status", &["patch"]),
    ]));
    r.sort();
    r
}

/// The release-namespace Role's rules: the leader Lease and the reaper's status ConfigMap.
fn expected_operator_namespace_rules(reaper_status: &[&str]) -> Rules {
    rules(&[
        ("coordination.k8s.io", "leases", &["create"]),
        (
            "coordination.k8s.io",
            "leases[runctl-leader]",
            &["get", "update"],
        ),
        ("", "configmaps[runctl-reaper]", reaper_status),
    ])
}

/// The one object of `kind` named `name`.
fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = all_of(docs, kind)
        .into_iter()
        .filter(|d| d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind} {name}");
    found[0]
}

/// The RBAC objects of a rendering: no wildcard, no access to CRDs, every binding to the
/// chart's ServiceAccount in the release namespace and to a role of the rendering.
fn check_bindings_and_wildcards(docs: &[Value]) {
    let sa = one(docs, "ServiceAccount");
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        for binding in all_of(docs, kind) {
            let subjects = binding["subjects"].as_array().expect("subjects");
            assert_eq!(subjects.len(), 1);
            assert_eq!(subjects[0]["name"], sa["metadata"]["name"]);
            assert_eq!(subjects[0]["namespace"], "runctl-system");
            let role_kind = binding["roleRef"]["kind"].as_str().expect("roleRef kind");
            let role = named(
                docs,
                role_kind,
                binding["roleRef"]["name"].as_str().expect("roleRef name"),
            );
            assert_eq!(
                role["metadata"]["namespace"], binding["metadata"]["namespace"],
                "{kind} {} and its {role_kind} live in the same namespace",
                binding["metadata"]["name"]
            );
        }
    }
    let text = serde_json::to_string(
        &docs
            .iter()
            .filter(|d| d["kind"].as_str().is_some_and(|k| k.contains("Role")))
            .collect::<Vec<_>>(),
    )
    .expect("json");
    assert!(!text.contains("\"*\""), "RBAC uses a wildcard");
    assert!(!text.contains("customresourcedefinitions"));
    assert!(
        !text.contains("/finalizers"),
        "no owner reference blocks deletion"
    );
}

fn template_error(extra: &[&str]) -> String {
    let mut args = vec![
        "template",
        "runctl",
        "charts/runctl",
        "--namespace",
        "runctl-system",
    ];
    args.extend_from_slice(extra);
    let out = run_tool_raw("helm", &args);
    assert!(!out.status.success(), "helm template {extra:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn helm_lint_is_clean_with_default_and_all_options() {
    for extra in [
        vec![],
        vec!["--set", CALLBACK_URL],
        vec!["--values", ALL_OPTIONS],
        vec!["--set", "sharding.shards=2", "--set", SHARDED_URL],
    ] {
        let mut args = vec!["lint", "--strict", "charts/runctl"];
        args.extend(extra.iter());
        let out = run_tool("helm", &args);
        assert!(out.contains("0 chart(s) failed"), "helm lint: {out}");
    }
}

#[test]
fn rbac_grants_exactly_the_operators_calls() {
    for extra in [vec!["--set", CALLBACK_URL], vec!["--values", ALL_OPTIONS]] {
        let docs = helm_template(&extra);
        let cluster_role = one(&docs, "ClusterRole");
        assert_eq!(canonical_rules(cluster_role), expected_cluster_rules());
        let role = one(&docs, "Role");
        assert_eq!(role["metadata"]["name"], "runctl-operator-namespace");
        assert_eq!(role["metadata"]["namespace"], "runctl-system");
        assert_eq!(
            canonical_rules(role),
            expected_operator_namespace_rules(&["patch"])
        );
        assert_eq!(
            one(&docs, "ClusterRoleBinding")["roleRef"]["name"],
            cluster_role["metadata"]["name"]
        );
        assert_eq!(
            one(&docs, "RoleBinding")["roleRef"]["name"],
            role["metadata"]["name"]
        );
        check_bindings_and_wildcards(&docs);
    }
    // The Lease rules follow the configured name, and go without leader election.
    let docs = helm_template(&[
        "--set",
        CALLBACK_URL,
        "--set",
        "config.leaderElection.leaseName=ops-leader",
    ]);
    assert!(
        canonical_rules(one(&docs, "Role"))
            .iter()
            .any(|(_, r, _)| r == "leases[ops-leader]")
    );
    let docs = helm_template(&[
        "--set",
        CALLBACK_URL,
        "--set",
        "config.leaderElection.enabled=false",
    ]);
    assert_eq!(
        canonical_rules(one(&docs, "Role")),
        rules(&[("", "configmaps[runctl-reaper]", &["patch"])])
    );
}

#[test]
fn the_in_cluster_provider_adds_pods_pod_logs_and_nodes_and_its_settings() {
    let docs = helm_template(&[
        "--set",
        CALLBACK_URL,
        "--set",
        "providers.kubernetes.enabled=true",
        // Numbers through --set-json or a values file (`--set` makes 1.25 a string).
        "--set-json",
        "providers.kubernetes.settings={\"pricePerGpuHour\":1.25}",
    ]);
    let mut expected = expected_cluster_rules();
    expected.extend(rules(&[
        ("", "pods", &["list", "get", "create", "delete"]),
        ("", "pods/log", &["get"]),
        ("", "nodes", &["list"]),
    ]));
    expected.sort();
    assert_eq!(canonical_rules(one(&docs, "ClusterRole")), expected);
    let config = rendered_config(&docs);
    assert_eq!(config["providers"]["kubernetes"]["enabled"], true);
    assert_eq!(config["providers"]["kubernetes"]["pricePerGpuHour"], 1.25);
    let err = template_error(&[
        "--set",
        "providers.kubernetes.enabled=true",
        "--set",
        "providers.aws.enabled=false",
        "--set",
        "rbac.scope=namespaced",
        "--set",
        "config.watchNamespace=ml",
    ]);
    assert!(err.contains("needs rbac.scope=cluster"), "{err}");
}

#[test]
fn namespaced_rbac_grants_nothing_outside_the_watched_namespace() {
    let docs = helm_template(&[
        "--values",
        ALL_OPTIONS,
        "--set",
        "rbac.scope=namespaced",
        "--set",
        "config.watchNamespace=ml-team",
    ]);
    check_bindings_and_wildcards(&docs);
    // The objects' rules in the watched namespace, without cluster-wide access to them.
    let objects = named(&docs, "Role", "runctl");
    assert_eq!(objects["metadata"]["namespace"], "ml-team");
    assert_eq!(canonical_rules(objects), expected_object_rules());
    assert_eq!(
        named(&docs, "RoleBinding", "runctl")["metadata"]["namespace"],
        "ml-team"
    );
    // The release namespace: Lease, the reaper's status ConfigMap (created there by its first
    // apply) and the providers' credentials Secrets, by name.
    let own = named(&docs, "Role", "runctl-operator-namespace");
    assert_eq!(own["metadata"]["namespace"], "runctl-system");
    let mut expected = expected_operator_namespace_rules(&["create", "patch"]);
    expected.extend(rules(&[(
        "",
        "secrets[runpod-credentials,lyceum-credentials]",
        &["get"],
    )]));
    expected.sort();
    assert_eq!(canonical_rules(own), expected);
    // Nothing cluster-wide: the start-up check lists the watched namespace.
    assert!(all_of(&docs, "ClusterRole").is_empty());
    assert!(all_of(&docs, "ClusterRoleBinding").is_empty());
    assert_eq!(all_of(&docs, "Role").len(), 2);
    assert_eq!(all_of(&docs, "RoleBinding").len(), 2);

    // Watching the release namespace itself: its two Roles do not repeat each other.
    let docs = helm_template(&[
        "--values",
        ALL_OPTIONS,
        "--set",
        "rbac.scope=namespaced",
        "--set",
        "config.watchNamespace=runctl-system",
    ]);
    check_bindings_and_wildcards(&docs);
    assert_eq!(
        canonical_rules(named(&docs, "Role", "runctl")),
        expected_object_rules()
    );
    assert_eq!(
        canonical_rules(named(&docs, "Role", "runctl-operator-namespace")),
        expected_operator_namespace_rules(&["patch"])
    );

    // The scope needs the namespace.
    let err = template_error(&["--set", CALLBACK_URL, "--set", "rbac.scope=namespaced"]);
    assert!(err.contains("watchNamespace"), "{err}");
    let err = template_error(&[
        "--set",
        CALLBACK_URL,
        "--set",
        "rbac.scope=namespaced",
        "--skip-schema-validation",
    ]);
    assert!(
        err.contains("rbac.scope=namespaced needs config.watchNamespace"),
        "{err}"
    );
}

#[test]
fn default_rendering_has_the_operator_with_ha_and_restricted_security() {
    let docs = helm_template(&["--set", CALLBACK_URL]);
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
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    let deployment = one(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["serviceAccountName"],
        one(&docs, "ServiceAccount")["metadata"]["name"]
    );
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
               "seccompProfile": {"type": "RuntimeDefault"}})
    );
    let c = operator_container(deployment);
    assert_eq!(
        c["image"], "ghcr.io/runctl/runctl:0.1.0",
        "image defaults to the chart's appVersion"
    );
    assert_eq!(
        c["args"],
        json!(["run", "--config", "/etc/runctl/config.yaml"])
    );
    assert_eq!(
        c["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
               "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "metrics"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "metrics"})
    );
    assert_eq!(
        c["ports"],
        json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"},
               {"name": "callback", "containerPort": 8443, "protocol": "TCP"}])
    );
    for key in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                c["resources"][key][res].is_string(),
                "resources.{key}.{res} is set"
            );
        }
    }
    let env: Vec<&Value> = c["env"].as_array().expect("env").iter().collect();
    let pod_ns = env
        .iter()
        .find(|e| e["name"] == "POD_NAMESPACE")
        .expect("POD_NAMESPACE for the leader Lease");
    assert_eq!(
        pod_ns["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert!(env.iter().any(|e| e["name"] == "POD_NAME"));
    // The root filesystem is read-only: the config comes from a ConfigMap, /tmp is an emptyDir.
    let mounts = c["volumeMounts"].as_array().expect("mounts");
    assert!(
        mounts
            .iter()
            .any(|m| m["mountPath"] == "/etc/runctl" && m["readOnly"] == true)
    );
    assert!(mounts.iter().any(|m| m["mountPath"] == "/tmp"));

    let pdb = one(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    let service = one(&docs, "Service");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let ports: Vec<(&str, i64, &str)> = service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("name"),
                p["port"].as_i64().expect("port"),
                p["targetPort"].as_str().expect("target"),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [("metrics", 8080, "metrics"), ("callback", 8443, "callback")]
    );
}

#[test]
fn optional_objects_render_only_when_enabled() {
    let default = helm_template(&["--set", CALLBACK_URL]);
    for kind in ["ServiceMonitor", "NetworkPolicy", "Ingress"] {
        assert!(
            all_of(&default, kind).is_empty(),
            "{kind} is off by default"
        );
    }
    let docs = helm_template(&["--values", ALL_OPTIONS]);
    let deployment = one(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        operator_container(deployment)["image"],
        "registry.example.com/platform/runctl:0.1.0-test"
    );
    assert_eq!(one(&docs, "PodDisruptionBudget")["spec"]["minAvailable"], 2);

    let sm = one(&docs, "ServiceMonitor");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    let np = one(&docs, "NetworkPolicy");
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    let ingress_rules = np["spec"]["ingress"].as_array().expect("ingress rules");
    let ports: Vec<&Value> = ingress_rules
        .iter()
        .map(|r| &r["ports"][0]["port"])
        .collect();
    assert_eq!(ports, [&json!("metrics"), &json!("callback")]);
    assert_eq!(
        ingress_rules[0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );

    let ing = one(&docs, "Ingress");
    let path = &ing["spec"]["rules"][0]["http"]["paths"][0];
    assert_eq!(path["path"], "/callback/");
    assert_eq!(path["pathType"], "Prefix");
    assert_eq!(
        path["backend"]["service"]["name"],
        one(&docs, "Service")["metadata"]["name"]
    );
    assert_eq!(path["backend"]["service"]["port"]["name"], "callback");
    assert_eq!(ing["spec"]["tls"][0]["secretName"], "runctl-callback-tls");
    assert_eq!(ing["spec"]["ingressClassName"], "nginx");

    // IRSA: the role ARN lands on the ServiceAccount.
    let sa = one(&docs, "ServiceAccount");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/runctl-operator"
    );

    let metrics_backend = helm_template(&[
        "--values",
        ALL_OPTIONS,
        "--set",
        "ingress.servicePort=metrics",
    ]);
    let path = &one(&metrics_backend, "Ingress")["spec"]["rules"][0]["http"]["paths"][0];
    assert_eq!(
        path["path"], "/callback/",
        "only the callback routes are exposed"
    );
    assert_eq!(path["backend"]["service"]["port"]["name"], "metrics");

    let no_pdb = helm_template(&[
        "--set",
        CALLBACK_URL,
        "--set",
        "podDisruptionBudget.enabled=false",
    ]);
    assert!(all_of(&no_pdb, "PodDisruptionBudget").is_empty());
}

fn rendered_config(docs: &[Value]) -> Value {
    let cm = one(docs, "ConfigMap");
    let text = cm["data"]["config.yaml"].as_str().expect("config.yaml");
    serde_yaml::from_str(text).expect("config.yaml is YAML")
}

#[test]
fn configmap_renders_the_operator_config_with_secret_references_only() {
    let docs = helm_template(&["--set", CALLBACK_URL]);
    let config = rendered_config(&docs);
    assert_eq!(config["metricsAddr"], "0.0.0.0:8080");
    assert_eq!(config["installationId"], "default");
    assert_eq!(config["leaderElection"]["enabled"], true);
    // The enabled clouds, each with `enabled: true`; the simulated cloud stays off.
    assert_eq!(
        config["providers"],
        json!({"aws": {"enabled": true, "defaultRegion": "us-east-1"}})
    );
    assert!(
        config.get("namespace").is_none(),
        "namespace comes from POD_NAMESPACE"
    );

    let docs = helm_template(&["--values", ALL_OPTIONS]);
    let config = rendered_config(&docs);
    assert_eq!(config["watchNamespace"], "ml-team");
    assert_eq!(config["installationId"], "prod-eu");
    assert_eq!(
        config["providers"]["runpod"],
        json!({"enabled": true, "credentialsSecret": {"namespace": "runctl-system", "name": "runpod-credentials"}})
    );
    assert_eq!(
        config["providers"]["lyceum"],
        json!({"enabled": true, "credentialsSecret": {"namespace": "runctl-system", "name": "lyceum-credentials"}})
    );
    assert_eq!(
        config["providers"]["aws"],
        json!({"enabled": true, "defaultRegion": "eu-west-1", "subnetId": "subnet-0abc"})
    );
    assert!(config["providers"].get("sim").is_none());
    // The pods roll when the configuration changes.
    let checksum = |docs: &[Value]| {
        one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            .clone()
    };
    assert_ne!(
        checksum(&docs),
        checksum(&helm_template(&["--set", CALLBACK_URL]))
    );
    // The chart creates no Secret: credentials are only ever referenced.
    assert!(all_of(&docs, "Secret").is_empty());
}

#[test]
fn the_simulated_cloud_is_enabled_only_on_request() {
    use runctl::crd::ProviderKind;
    let enabled = |extra: &[&str]| {
        let docs = helm_template(extra);
        check_loads(&docs);
        let cm = one(&docs, "ConfigMap");
        let text = cm["data"]["config.yaml"].as_str().expect("config.yaml");
        runctl::config::OperatorConfig::from_yaml(text)
            .expect("loads")
            .providers
            .enabled_kinds()
    };
    assert_eq!(enabled(&["--set", CALLBACK_URL]), [ProviderKind::Aws]);
    // A first try without a cloud account (docs/getting-started.md).
    let first_try = [
        "--set",
        "providers.aws.enabled=false",
        "--set",
        "providers.sim.enabled=true",
    ];
    assert_eq!(enabled(&first_try), [ProviderKind::Sim]);
    assert_eq!(
        rendered_config(&helm_template(&first_try))["providers"],
        json!({"sim": {"enabled": true}})
    );
    // Nothing enabled: no providers section, so no provider is enabled.
    assert!(enabled(&["--set", "providers.aws.enabled=false"]).is_empty());
    let err = template_error(&["--set", CALLBACK_URL, "--set", "providers.sim.speed=2"]);
    assert!(err.contains("speed"), "{err}");
}

#[test]
fn a_provider_without_a_credentials_secret_is_refused() {
    let err = template_error(&[
        "--set",
        CALLBACK_URL,
        "--set",
        "providers.runpod.enabled=true",
    ]);
    assert!(
        err.contains("providers.runpod.existingSecret is required"),
        "{err}"
    );
}

#[test]
fn values_schema_rejects_bad_values() {
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "replicaCount=0"], "replicaCount"),
        (
            &["--set", "securityContext.readOnlyRootFilesystem=false"],
            "readOnlyRootFilesystem",
        ),
        (
            &["--set", "securityContext.allowPrivilegeEscalation=true"],
            "allowPrivilegeEscalation",
        ),
        (
            &["--set", "podSecurityContext.runAsNonRoot=false"],
            "runAsNonRoot",
        ),
        (&["--set", "podSecurityContext.runAsUser=0"], "runAsUser"),
        (&["--set", "ports.metrics=70000"], "metrics"),
        (&["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (&["--set", "config.log.format=xml"], "format"),
        (&["--set", "config.installationId=-bad-"], "installationId"),
        (&["--set", "providers.aws.roleArn=not-an-arn"], "roleArn"),
        (
            &["--set", "providers.runpod.settings.apiKey=abc"],
            "settings",
        ),
        (
            &["--set", "providers.aws.settings.secretAccessKey=abc"],
            "settings",
        ),
        (&["--set", "providers.runpod.apiKey=abc"], "apiKey"),
        (&["--set", "replicas=2"], "replicas"),
        (&["--set", "sharding.shards=0"], "shards"),
        (&["--set", "sharding.shards=65"], "shards"),
        (&["--set", "sharding.index=1"], "index"),
        (&["--set", "ingress.servicePort=admin"], "servicePort"),
        (&["--set", "rbac.scope=global"], "scope"),
        (&["--set", "callback.url=http://runctl.example.com"], "url"),
        (&["--set", "callback.url=runctl.example.com"], "url"),
        (
            &["--set", "callback.tls.secretName=Not_A_Name"],
            "secretName",
        ),
        (&["--set", "callback.tls.certFile=/tls.crt"], "certFile"),
        (
            &[
                "--set",
                "extraEnv[0].name=AWS_SECRET_ACCESS_KEY",
                "--set",
                "extraEnv[0].value=x",
            ],
            "name",
        ),
    ];
    for (args, needle) in cases {
        let err = template_error(args);
        assert!(
            err.contains(needle),
            "{args:?}: the error should name {needle}: {err}"
        );
    }
}

#[test]
fn crds_are_templates_kept_on_uninstall_and_equal_to_crds_dir() {
    // The chart's copies are byte-identical to the generated crds/.
    let chart_copies = list_yaml(&root().join("charts/runctl/files/crds"));
    let repo = repo_crds();
    assert_eq!(
        chart_copies.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        repo.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "charts/runctl/files/crds must hold the same files as crds/"
    );
    for ((name, chart), (_, repo)) in chart_copies.iter().zip(&repo) {
        assert!(
            chart == repo,
            "charts/runctl/files/crds/{name} differs from crds/{name}; regenerate every generated file with scripts/generate.sh"
        );
    }

    // Rendered: the same objects, plus the keep policy (Helm upgrades templates, unlike crds/).
    let docs = helm_template(&["--set", CALLBACK_URL]);
    let rendered = all_of(&docs, "CustomResourceDefinition");
    assert_eq!(rendered.len(), repo.len());
    for (name, text) in &repo {
        let expected = parse_docs(text).remove(0);
        let crd_name = expected["metadata"]["name"].clone();
        let got = rendered
            .iter()
            .find(|d| d["metadata"]["name"] == crd_name)
            .unwrap_or_else(|| panic!("{name} is rendered"));
        assert_eq!(
            got["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
        assert_eq!(
            got["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "Helm"
        );
        assert_eq!(
            normalize_numbers(&got["spec"]),
            normalize_numbers(&expected["spec"]),
            "{name}: rendered spec differs"
        );
    }

    let without_keep = helm_template(&["--set", CALLBACK_URL, "--set", "crds.keep=false"]);
    for crd in all_of(&without_keep, "CustomResourceDefinition") {
        assert!(
            crd["metadata"]["annotations"]
                .get("helm.sh/resource-policy")
                .is_none()
        );
    }
    let without = helm_template(&["--set", CALLBACK_URL, "--set", "crds.install=false"]);
    assert!(all_of(&without, "CustomResourceDefinition").is_empty());
}

/// NOTES.txt as `helm install --dry-run=client` renders it (no cluster needed) with `sets`.
fn dry_run_notes(sets: &[&str]) -> String {
    let mut args = vec![
        "install",
        "runctl",
        "charts/runctl",
        "--namespace",
        "runctl-system",
        "--dry-run=client",
    ];
    args.extend_from_slice(sets);
    let out = run_tool("helm", &args);
    out[out.find("NOTES:").expect("NOTES are printed")..].to_string()
}

#[test]
fn notes_tell_the_next_step() {
    let notes = &dry_run_notes(&["--set", CALLBACK_URL]);
    for needle in [
        "rollout status deployment/runctl",
        "https://runctl.example.com/callback/",
        "get lease runctl-leader",
        "aws: the default AWS credential chain",
        "config/samples/trainingjob-sim.yaml",
        "docs/getting-started.md",
    ] {
        assert!(
            notes.contains(needle),
            "NOTES should mention {needle:?}:\n{notes}"
        );
    }
    let out = run_tool(
        "helm",
        &[
            "install",
            "runctl",
            "charts/runctl",
            "--namespace",
            "runctl-system",
            "--dry-run=client",
            "--values",
            ALL_OPTIONS,
        ],
    );
    let notes = &out[out.find("NOTES:").expect("NOTES are printed")..];
    assert!(
        notes.contains("runpod: Secret runpod-credentials"),
        "{notes}"
    );
    assert!(
        notes.contains("https://runctl.example.com/callback/"),
        "the Ingress host is the callback URL: {notes}"
    );
    assert!(
        notes.contains("IRSA role arn:aws:iam::123456789012:role/runctl-operator"),
        "{notes}"
    );
}

/// The operator's own parser accepts a rendered configuration (unknown fields are refused).
fn check_loads(docs: &[Value]) {
    let cm = one(docs, "ConfigMap");
    let text = cm["data"]["config.yaml"].as_str().expect("config.yaml");
    runctl::config::OperatorConfig::from_yaml(text)
        .unwrap_or_else(|e| panic!("the operator refuses the rendered config: {e}\n{text}"));
}

#[test]
fn callback_url_comes_from_the_values_or_the_ingress() {
    let url = |extra: &[&str]| {
        let docs = helm_template(extra);
        check_loads(&docs);
        rendered_config(&docs)["jobs"]["callbackUrl"].clone()
    };
    // The Ingress routes /callback/ on its host; machines append /callback/... to the base URL.
    assert_eq!(
        url(&["--set", "ingress.enabled=true"]),
        "https://runctl.example.com"
    );
    assert_eq!(
        url(&[
            "--set",
            "ingress.enabled=true",
            "--set",
            "ingress.host=jobs.acme.dev"
        ]),
        "https://jobs.acme.dev"
    );
    assert_eq!(
        url(&["--values", ALL_OPTIONS]),
        "https://runctl.example.com"
    );
    // An explicit URL wins over the Ingress (a trailing slash is dropped).
    assert_eq!(
        url(&[
            "--values",
            ALL_OPTIONS,
            "--set",
            "callback.url=https://callback.acme.dev:8443/"
        ]),
        "https://callback.acme.dev:8443"
    );
    assert_eq!(
        url(&["--set", "callback.url=https://callback.acme.dev"]),
        "https://callback.acme.dev"
    );
    // The field set through config.extra (how it was set before callback.url) still counts.
    assert_eq!(
        url(&[
            "--set",
            "config.extra.jobs.callbackUrl=https://old.acme.dev",
            "--set",
            "config.extra.jobs.heartbeatIntervalSeconds=20",
        ]),
        "https://old.acme.dev"
    );
    // Only the simulated cloud: no URL needed, none rendered.
    let docs = helm_template(&["--set", "providers.aws.enabled=false"]);
    check_loads(&docs);
    assert!(rendered_config(&docs).get("jobs").is_none());
    // The base URL, not the endpoint's.
    let err = template_error(&["--set", "callback.url=https://runctl.example.com/callback"]);
    assert!(err.contains("without /callback"), "{err}");
}

#[test]
fn a_cloud_provider_without_a_callback_url_is_refused() {
    // The default values enable AWS.
    let err = template_error(&[]);
    for needle in [
        "callback.url is required when a cloud provider is enabled (providers.aws)",
        "outside the cluster",
        "Set callback.url",
        "ingress.enabled=true and ingress.host",
        "port 8443 of the runctl Service",
    ] {
        assert!(
            err.contains(needle),
            "the error should say {needle:?}: {err}"
        );
    }
    let err = template_error(&[
        "--set",
        "providers.aws.enabled=false",
        "--set",
        "providers.runpod.enabled=true",
        "--set",
        "providers.runpod.existingSecret=runpod",
        "--set",
        "providers.lyceum.enabled=true",
        "--set",
        "providers.lyceum.existingSecret=lyceum",
    ]);
    assert!(
        err.contains("(providers.runpod, providers.lyceum)"),
        "{err}"
    );
    // A helm install fails the same way, before anything is created.
    let out = run_tool_raw(
        "helm",
        &[
            "install",
            "runctl",
            "charts/runctl",
            "--namespace",
            "runctl-system",
            "--dry-run=client",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("callback.url is required"));
}

#[test]
fn callback_tls_secret_is_mounted_and_configured() {
    let docs = helm_template(&[
        "--set",
        CALLBACK_URL,
        "--set",
        "callback.tls.secretName=runctl-callback-cert",
    ]);
    check_loads(&docs);
    let dir = "/var/run/secrets/runctl/callback-tls";
    assert_eq!(
        rendered_config(&docs)["jobs"]["callbackTls"],
        json!({"certFile": format!("{dir}/tls.crt"), "keyFile": format!("{dir}/tls.key")})
    );
    let deployment = one(&docs, "Deployment");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes");
    let volume = volumes
        .iter()
        .find(|v| v["name"] == "callback-tls")
        .expect("the callback-tls volume");
    assert_eq!(volume["secret"]["secretName"], "runctl-callback-cert");
    let mounts = operator_container(deployment)["volumeMounts"]
        .as_array()
        .expect("volumeMounts");
    let mount = mounts
        .iter()
        .find(|m| m["name"] == "callback-tls")
        .expect("the callback-tls mount");
    assert_eq!(mount["mountPath"], dir);
    assert_eq!(mount["readOnly"], true);
    // No subPath: kubelet then updates the files when the Secret is renewed.
    assert!(mount.get("subPath").is_none());
    // The chart only references the Secret.
    assert!(all_of(&docs, "Secret").is_empty());

    // Without it: plain HTTP, no volume.
    let docs = helm_template(&["--set", CALLBACK_URL]);
    assert!(rendered_config(&docs)["jobs"].get("callbackTls").is_none());
    let deployment = one(&docs, "Deployment");
    assert!(
        !deployment["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["name"] == "callback-tls")
    );
}

#[test]
fn the_argocd_application_values_render() {
    // deploy/argocd/application.yaml installs the chart with its valuesObject: it must render.
    let app = parse_file("deploy/argocd/application.yaml");
    let values = &app["spec"]["source"]["helm"]["valuesObject"];
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, serde_yaml::to_string(values).expect("YAML")).expect("write values");
    let docs = helm_template(&["--values", &file.display().to_string()]);
    check_loads(&docs);
    assert_eq!(
        rendered_config(&docs)["jobs"]["callbackUrl"],
        "https://runctl.example.com"
    );
}

/// A callback URL with the shard's number in it, as sharding needs.
const SHARDED_URL: &str = "callback.url=https://runctl-{shard}.example.com";

/// The value of the environment variable `name` in a Deployment's operator container.
fn env_value(deployment: &Value, name: &str) -> Option<String> {
    operator_container(deployment)["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].as_str().expect("a plain value").to_string())
}

/// The configuration one shard's replicas load: the rendered file and that Deployment's
/// environment (`RUNCTL_SHARD_INDEX`), as the operator reads them at start.
fn load_as(docs: &[Value], deployment: &Value) -> runctl::config::OperatorConfig {
    let text = one(docs, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml")
        .to_string();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, &text).expect("write the config");
    let index = env_value(deployment, "RUNCTL_SHARD_INDEX");
    runctl::config::OperatorConfig::load_with_env(
        Some(&file),
        &runctl::config::Overrides::default(),
        |var| match var {
            "POD_NAMESPACE" => Some("runctl-system".to_string()),
            "RUNCTL_SHARD_INDEX" => index.clone(),
            _ => None,
        },
    )
    .unwrap_or_else(|e| panic!("the operator refuses the rendered config: {e}\n{text}"))
}

#[test]
fn one_shard_renders_as_without_sharding() {
    // The default is one shard, and saying so changes nothing in the rendering.
    let args = [
        "template",
        "runctl",
        "charts/runctl",
        "--namespace",
        "runctl-system",
    ];
    let default = run_tool("helm", &[&args[..], &["--set", CALLBACK_URL]].concat());
    let one_shard = run_tool(
        "helm",
        &[
            &args[..],
            &["--set", CALLBACK_URL, "--set", "sharding.shards=1"],
        ]
        .concat(),
    );
    assert!(
        default == one_shard,
        "sharding.shards=1 changes the rendering"
    );
    let docs = parse_docs(&one_shard);
    let deployment = one(&docs, "Deployment");
    assert_eq!(deployment["metadata"]["name"], "runctl");
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "runctl", "app.kubernetes.io/instance": "runctl"})
    );
    assert!(env_value(deployment, "RUNCTL_SHARD_INDEX").is_none());
    assert!(!one_shard.contains("runctl.dev/shard"));
    assert!(rendered_config(&docs).get("sharding").is_none());
    assert_eq!(one(&docs, "Service")["metadata"]["name"], "runctl");
    assert_eq!(
        one(&docs, "PodDisruptionBudget")["metadata"]["name"],
        "runctl"
    );
    let config = load_as(&docs, deployment);
    assert_eq!(config.lease_config("pod").name, "runctl-leader");
    // {shard} in a one-shard URL or host is shard 0's, as the operator fills it.
    let docs = helm_template(&[
        "--set",
        "ingress.enabled=true",
        "--set",
        "ingress.host=runctl-{shard}.example.com",
    ]);
    assert_eq!(
        one(&docs, "Ingress")["spec"]["rules"][0]["host"],
        "runctl-0.example.com"
    );
    assert_eq!(
        load_as(&docs, one(&docs, "Deployment"))
            .training_job_config()
            .reporting
            .callback_base_url,
        "https://runctl-0.example.com"
    );
}

#[test]
fn two_shards_render_a_deployment_service_and_budget_per_shard() {
    let docs = helm_template(&["--set", "sharding.shards=2", "--set", SHARDED_URL]);
    let config = rendered_config(&docs);
    assert_eq!(config["sharding"], json!({"shards": 2}));
    assert_eq!(
        config["jobs"]["callbackUrl"], "https://runctl-{shard}.example.com",
        "the operator puts each shard's number in place of {{shard}}"
    );
    let selector =
        json!({"app.kubernetes.io/name": "runctl", "app.kubernetes.io/instance": "runctl"});
    let deployments = all_of(&docs, "Deployment");
    assert_eq!(
        deployments
            .iter()
            .map(|d| d["metadata"]["name"].as_str().expect("name"))
            .collect::<Vec<_>>(),
        ["runctl-shard-0", "runctl-shard-1"]
    );
    let checksums: Vec<&Value> = deployments
        .iter()
        .map(|d| &d["spec"]["template"]["metadata"]["annotations"]["checksum/config"])
        .collect();
    assert_eq!(
        checksums[0], checksums[1],
        "one configuration for every shard"
    );
    for (i, deployment) in deployments.iter().enumerate() {
        let name = format!("runctl-shard-{i}");
        assert_eq!(deployment["spec"]["replicas"], 2, "replicaCount per shard");
        let mut shard_selector = selector.clone();
        shard_selector["runctl.dev/shard"] = json!(i.to_string());
        // The shard label is in the selector, so the Deployments never share pods.
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"],
            shard_selector
        );
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert_eq!(pod_labels["runctl.dev/shard"], i.to_string());
        assert_eq!(
            env_value(deployment, "RUNCTL_SHARD_INDEX").as_deref(),
            Some(i.to_string().as_str())
        );
        let spread = &deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0];
        assert_eq!(spread["labelSelector"]["matchLabels"], shard_selector);

        // The shard's replicas load the configuration as shard i of 2: their own Lease and
        // callback URL.
        let loaded = load_as(&docs, deployment);
        assert_eq!(loaded.sharding.index, i as u32);
        assert_eq!(
            loaded.lease_config("pod").name,
            format!("runctl-leader-shard-{i}")
        );
        assert_eq!(
            loaded.training_job_config().reporting.callback_base_url,
            format!("https://runctl-{i}.example.com")
        );

        let service = named(&docs, "Service", &name);
        assert_eq!(service["spec"]["selector"], shard_selector);
        assert_eq!(
            service["metadata"]["labels"]["runctl.dev/shard"],
            i.to_string()
        );
        let ports: Vec<&Value> = service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| &p["name"])
            .collect();
        assert_eq!(ports, [&json!("metrics"), &json!("callback")]);
        let pdb = named(&docs, "PodDisruptionBudget", &name);
        assert_eq!(pdb["spec"]["selector"]["matchLabels"], shard_selector);
        assert_eq!(pdb["spec"]["minAvailable"], 1);
    }
    // The main Service still selects every pod (metrics).
    assert_eq!(all_of(&docs, "Service").len(), 3);
    let main = named(&docs, "Service", "runctl");
    assert_eq!(main["spec"]["selector"], selector);
    assert_eq!(main["spec"]["type"], "ClusterIP");
    assert_eq!(all_of(&docs, "PodDisruptionBudget").len(), 2);
    assert_eq!(all_of(&docs, "ConfigMap").len(), 1);

    // Each shard's Lease, and no other, in the release namespace.
    let role = named(&docs, "Role", "runctl-operator-namespace");
    assert_eq!(
        canonical_rules(role),
        rules(&[
            ("coordination.k8s.io", "leases", &["create"]),
            (
                "coordination.k8s.io",
                "leases[runctl-leader-shard-0,runctl-leader-shard-1]",
                &["get", "update"],
            ),
            ("", "configmaps[runctl-reaper]", &["patch"]),
        ])
    );
    assert_eq!(
        canonical_rules(one(&docs, "ClusterRole")),
        expected_cluster_rules()
    );
    check_bindings_and_wildcards(&docs);
}

#[test]
fn sharded_services_monitoring_and_network_policy_select_the_right_pods() {
    let docs = helm_template(&[
        "--set",
        "sharding.shards=3",
        "--set",
        SHARDED_URL,
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "service.type=LoadBalancer",
        "--set",
        "service.annotations.external-dns\\.alpha\\.kubernetes\\.io/hostname=runctl-{shard}.example.com",
        "--set",
        "service.annotations.team=ml",
    ]);
    let labels_match = |selector: &Value, labels: &Value| {
        selector
            .as_object()
            .expect("matchLabels")
            .iter()
            .all(|(k, v)| &labels[k] == v)
    };
    let pods: Vec<&Value> = all_of(&docs, "Deployment")
        .into_iter()
        .map(|d| &d["spec"]["template"]["metadata"]["labels"])
        .collect();
    assert_eq!(pods.len(), 3);
    // The NetworkPolicy covers every shard's pods.
    let np = one(&docs, "NetworkPolicy");
    assert!(
        pods.iter()
            .all(|p| labels_match(&np["spec"]["podSelector"]["matchLabels"], p))
    );
    // The ServiceMonitor scrapes each pod once: through the main Service, not the shards'.
    let sm = one(&docs, "ServiceMonitor");
    let selector = &sm["spec"]["selector"];
    let scraped: Vec<&str> = all_of(&docs, "Service")
        .into_iter()
        .filter(|s| {
            let labels = &s["metadata"]["labels"];
            labels_match(&selector["matchLabels"], labels)
                && selector["matchExpressions"]
                    .as_array()
                    .expect("matchExpressions")
                    .iter()
                    .all(|e| {
                        assert_eq!(e["operator"], "DoesNotExist");
                        labels.get(e["key"].as_str().expect("key")).is_none()
                    })
        })
        .map(|s| s["metadata"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(scraped, ["runctl"]);
    assert_eq!(
        sm["spec"]["endpoints"][0]["relabelings"],
        json!([{"sourceLabels": ["__meta_kubernetes_pod_label_runctl_dev_shard"], "targetLabel": "shard"}])
    );
    // The load balancers are the shards'; {shard} in an annotation is each shard's number.
    let main = named(&docs, "Service", "runctl");
    assert_eq!(main["spec"]["type"], "ClusterIP");
    assert_eq!(main["metadata"]["annotations"], json!({"team": "ml"}));
    for i in 0..3 {
        let service = named(&docs, "Service", &format!("runctl-shard-{i}"));
        assert_eq!(service["spec"]["type"], "LoadBalancer");
        assert_eq!(
            service["metadata"]["annotations"],
            json!({"external-dns.alpha.kubernetes.io/hostname": format!("runctl-{i}.example.com"), "team": "ml"})
        );
    }
}

#[test]
fn a_sharded_ingress_routes_one_host_per_shard() {
    let docs = helm_template(&[
        "--set",
        "sharding.shards=2",
        "--set",
        "ingress.enabled=true",
        "--set",
        "ingress.host=runctl-{shard}.example.com",
        "--set",
        "ingress.tlsSecretName=runctl-callback-tls",
    ]);
    // The URL keeps {shard} for the operator to fill.
    assert_eq!(
        rendered_config(&docs)["jobs"]["callbackUrl"],
        "https://runctl-{shard}.example.com"
    );
    let ing = one(&docs, "Ingress");
    assert_eq!(
        ing["spec"]["tls"],
        json!([{"hosts": ["runctl-0.example.com", "runctl-1.example.com"],
                "secretName": "runctl-callback-tls"}])
    );
    let rules = ing["spec"]["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 2);
    for (i, rule) in rules.iter().enumerate() {
        assert_eq!(rule["host"], format!("runctl-{i}.example.com"));
        let path = &rule["http"]["paths"][0];
        assert_eq!(path["path"], "/callback/");
        assert_eq!(
            path["backend"]["service"]["name"],
            format!("runctl-shard-{i}")
        );
        assert_eq!(path["backend"]["service"]["port"]["name"], "callback");
        named(&docs, "Service", &format!("runctl-shard-{i}"));
    }
}

#[test]
fn sharding_without_a_per_shard_address_is_refused() {
    let err = template_error(&[
        "--set",
        "sharding.shards=2",
        "--set",
        "callback.url=https://runctl.example.com",
    ]);
    for needle in [
        "callback.url \"https://runctl.example.com\" must contain {shard} when sharding.shards is 2",
        "runctl-shard-<i>",
        "docs/operations.md#sharding",
    ] {
        assert!(
            err.contains(needle),
            "the error should say {needle:?}: {err}"
        );
    }
    // The URL set through config.extra is checked the same way.
    let err = template_error(&[
        "--set",
        "sharding.shards=2",
        "--set",
        "config.extra.jobs.callbackUrl=https://old.acme.dev",
    ]);
    assert!(err.contains("must contain {shard}"), "{err}");
    let err = template_error(&[
        "--set",
        "sharding.shards=2",
        "--set",
        "ingress.enabled=true",
    ]);
    assert!(
        err.contains(
            "ingress.host \"runctl.example.com\" must contain {shard} when sharding.shards is 2"
        ),
        "{err}"
    );
    // With an explicit URL the Ingress host still needs one host per shard.
    let err = template_error(&[
        "--set",
        "sharding.shards=2",
        "--set",
        SHARDED_URL,
        "--set",
        "ingress.enabled=true",
    ]);
    assert!(err.contains("ingress.host"), "{err}");
    // No URL at all with a cloud provider: the message names the shard Services.
    let err = template_error(&["--set", "sharding.shards=2"]);
    assert!(
        err.contains("callback.url is required") && err.contains("runctl-shard-<i>"),
        "{err}"
    );
    // Only the simulated cloud: no URL needed.
    let docs = helm_template(&[
        "--set",
        "sharding.shards=2",
        "--set",
        "providers.aws.enabled=false",
        "--set",
        "providers.sim.enabled=true",
    ]);
    assert_eq!(all_of(&docs, "Deployment").len(), 2);
    assert!(rendered_config(&docs).get("jobs").is_none());
    for deployment in all_of(&docs, "Deployment") {
        load_as(&docs, deployment);
    }
}

#[test]
fn sharding_refuses_a_watched_namespace_and_a_second_shard_setting() {
    let err = template_error(&[
        "--set",
        "sharding.shards=2",
        "--set",
        SHARDED_URL,
        "--set",
        "config.watchNamespace=ml-team",
    ]);
    assert!(
        err.contains("sharding.shards 2 needs config.watchNamespace empty"),
        "{err}"
    );
    let err = template_error(&[
        "--set",
        "sharding.shards=2",
        "--set",
        SHARDED_URL,
        "--set",
        "config.extra.sharding.shards=3",
    ]);
    assert!(
        err.contains("config.extra.sharding is not allowed"),
        "{err}"
    );
    let err = template_error(&[
        "--set",
        "sharding.shards=2",
        "--set",
        SHARDED_URL,
        "--set",
        "extraEnv[0].name=RUNCTL_SHARD_INDEX",
        "--set-string",
        "extraEnv[0].value=1",
    ]);
    assert!(
        err.contains("extraEnv must not set RUNCTL_SHARD_INDEX"),
        "{err}"
    );
}

#[test]
fn sharded_notes_name_every_shard() {
    let notes = &dry_run_notes(&["--set", "sharding.shards=2", "--set", SHARDED_URL]);
    for needle in [
        "split into 2 shards",
        "rollout status deployment/runctl-shard-0",
        "rollout status deployment/runctl-shard-1",
        "get lease runctl-leader-shard-0 runctl-leader-shard-1",
        "https://runctl-{shard}.example.com/callback/",
        "docs/operations.md#sharding",
    ] {
        assert!(
            notes.contains(needle),
            "NOTES should mention {needle:?}:\n{notes}"
        );
    }
}
