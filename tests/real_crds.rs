//! runctl's CRDs on a real kube-apiserver (crates/envtest), driven with the real kubectl: both
//! CRDs are accepted (CEL cost included) and Established, `kubectl explain` reads their schema,
//! `kubectl get` prints the printer columns from the server's Table, every example manifest is
//! accepted, and `kubectl apply --validate=strict` refuses unknown fields. The invalid-manifest
//! corpus runs against the same server through `tests/hostile_input.rs` with
//! `RUNCTL_TEST_BACKEND=real`.

mod deploy_support;

use std::path::Path;
use std::process::Output;

use deploy_support::{root, run_tool_raw};
use runctl_envtest::ControlPlane;

fn kubectl(plane: &ControlPlane, args: &[&str]) -> Output {
    let kubeconfig = plane.kubeconfig().display().to_string();
    let mut all = vec!["--kubeconfig", kubeconfig.as_str()];
    all.extend_from_slice(args);
    run_tool_raw("kubectl", &all)
}

fn ok(plane: &ControlPlane, args: &[&str]) -> String {
    let out = kubectl(plane, args);
    assert!(
        out.status.success(),
        "`kubectl {}` failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Applies `crds/` with kubectl once per test binary and waits until both are Established.
async fn plane_with_crds() -> &'static ControlPlane {
    static APPLIED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let plane = runctl_envtest::shared().await;
    APPLIED
        .get_or_init(|| async {
            // As the README tells users to install them.
            let out = ok(plane, &["apply", "-f", "crds/"]);
            assert!(out.contains("trainingjobs.runctl.dev"), "{out}");
            ok(
                plane,
                &[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=60s",
                    "crd/trainingjobs.runctl.dev",
                    "crd/cloudresources.runctl.dev",
                ],
            );
        })
        .await;
    plane
}

#[tokio::test]
async fn kubectl_applies_the_crds_and_they_are_established() {
    let plane = plane_with_crds().await;
    let out = ok(
        plane,
        &[
            "get",
            "crd",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Established\")].status};{end}",
        ],
    );
    assert!(out.contains("trainingjobs.runctl.dev=True"), "{out}");
    assert!(out.contains("cloudresources.runctl.dev=True"), "{out}");
    // Applying the same files again is a no-op, client-side or server-side (as GitOps tools do
    // on every sync).
    let again = ok(plane, &["apply", "-f", "crds/"]);
    assert!(again.contains("unchanged"), "{again}");
    ok(plane, &["apply", "--server-side", "-f", "crds/"]);
    // Short names and the category resolve through discovery.
    ok(plane, &["get", "tj,cres", "-A"]);
    ok(plane, &["get", "runctl", "-A"]);
}

#[tokio::test]
async fn kubectl_explain_reads_the_schema() {
    let plane = plane_with_crds().await;
    // The server publishes a new CRD's OpenAPI a moment after it is Established.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !kubectl(plane, &["explain", "trainingjob"]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "the schema was never published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let out = ok(plane, &["explain", "trainingjob.spec.placement"]);
    assert!(out.contains("provider"), "{out}");
    assert!(out.contains("allowedProviders"), "{out}");
    let out = ok(plane, &["explain", "cres.spec.workload.env"]);
    assert!(out.contains("valueFrom"), "{out}");
}

#[tokio::test]
async fn kubectl_get_prints_the_printer_columns_from_the_servers_table() {
    let plane = plane_with_crds().await;
    let ns = plane.create_namespace("columns").await.unwrap();
    ok(
        plane,
        &["apply", "-n", &ns, "-f", "examples/sim/trainingjob.yaml"],
    );
    ok(
        plane,
        &["apply", "-n", &ns, "-f", "examples/sim/train-a100.yaml"],
    );
    let jobs = ok(plane, &["get", "tj", "-n", &ns]);
    let header: Vec<&str> = jobs
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "PHASE", "PROVIDER", "GPU", "ATTEMPTS", "$/H", "COST", "AGE"
        ],
        "{jobs}"
    );
    let machines = ok(plane, &["get", "cres", "-n", &ns, "-o", "wide"]);
    let header: Vec<&str> = machines
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "PROVIDER",
            "TYPE",
            "STATE",
            "$/H",
            "ACCRUED",
            "AGE",
            "PROVIDER-ID",
            "REASON"
        ],
        "{machines}"
    );
    assert!(
        machines.lines().nth(1).unwrap_or("").contains("sim"),
        "{machines}"
    );
}

#[tokio::test]
async fn every_example_manifest_is_accepted() {
    let plane = plane_with_crds().await;
    let ns = plane.create_namespace("examples").await.unwrap();
    let dir = root().join("examples");
    let mut files = vec![];
    for provider in std::fs::read_dir(&dir).unwrap() {
        for file in std::fs::read_dir(provider.unwrap().path()).unwrap() {
            files.push(file.unwrap().path());
        }
    }
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    for file in files {
        let rel = file.strip_prefix(root()).unwrap().display().to_string();
        ok(
            plane,
            &[
                "apply",
                "--validate=strict",
                "--dry-run=server",
                "-n",
                &ns,
                "-f",
                &rel,
            ],
        );
    }
}

#[tokio::test]
async fn strict_validation_refuses_unknown_fields() {
    let plane = plane_with_crds().await;
    let ns = plane.create_namespace("strict").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("typo.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: runctl.dev/v1alpha1\nkind: TrainingJob\nmetadata:\n  name: typo\nspec:\n  placement:\n    provider: sim\n    instanceType: sim.a100\n    maxHourlyPrise: 2\n  workload:\n    image: busybox\n",
    )
    .unwrap();
    let out = kubectl(
        plane,
        &[
            "apply",
            "--validate=strict",
            "-n",
            &ns,
            "-f",
            &manifest.display().to_string(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a typo must not be accepted");
    assert!(
        stderr.contains("unknown field") && stderr.contains("maxHourlyPrise"),
        "{stderr}"
    );
    let got = kubectl(plane, &["get", "tj", "typo", "-n", &ns]);
    assert!(!got.status.success(), "nothing was created");
    assert!(Path::new(&manifest).exists());
}
