//! Differential check: the requests the operator makes, sent to runctl's in-process API test
//! server and to a real kube-apiserver (crates/envtest), must get the same answers where the
//! operator or kube-rs reads them: status code, `reason`, and the fields each case names. Every
//! difference found is fixed in the in-process server (crates/apiserver) and pinned by a case
//! here; docs/testing.md lists them.

mod support;

use axum::http::{Method, Request};
use http_body_util::BodyExt;
use kube::Client;
use serde_json::{Value, json};

const CR: &str = "/apis/runctl.dev/v1alpha1/namespaces/{ns}/cloudresources";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const APPLY: &str = "application/apply-patch+yaml";
const JSON: &str = "application/json";

/// One request and the parts of its answer that must agree (JSON pointers into the body;
/// `?/ptr` records only whether the field is present).
struct Step {
    method: Method,
    path: String,
    content_type: &'static str,
    body: Option<Value>,
    compare: &'static [&'static str],
}

fn step(
    method: Method,
    path: &str,
    content_type: &'static str,
    body: Option<Value>,
    compare: &'static [&'static str],
) -> Step {
    Step {
        method,
        path: path.to_string(),
        content_type,
        body,
        compare,
    }
}

fn machine(name: &str) -> Value {
    json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource",
        "metadata": {"name": name, "labels": {"runctl.dev/job": "j"}},
        "spec": {"provider": "sim", "instanceType": "sim.a100"}
    })
}

/// The cases, each a sequence of steps in a fresh namespace.
fn cases() -> Vec<(&'static str, Vec<Step>)> {
    let one = |name: &str| format!("{CR}/{name}");
    vec![
        (
            "get a missing object",
            vec![step(
                Method::GET,
                &one("nope"),
                JSON,
                None,
                &[
                    "/kind",
                    "/reason",
                    "/details/name",
                    "/details/group",
                    "/details/kind",
                    "/code",
                ],
            )],
        ),
        (
            "create, then create again",
            vec![
                step(
                    Method::POST,
                    CR,
                    JSON,
                    Some(machine("c1")),
                    &[
                        "/kind",
                        "/apiVersion",
                        "/metadata/generation",
                        "?/metadata/uid",
                        "?/metadata/resourceVersion",
                        "?/metadata/creationTimestamp",
                    ],
                ),
                step(
                    Method::POST,
                    CR,
                    JSON,
                    Some(machine("c1")),
                    &["/reason", "/details/name", "/details/kind", "/code"],
                ),
            ],
        ),
        (
            "status and spec writes: generation moves with spec only",
            vec![
                step(
                    Method::POST,
                    CR,
                    JSON,
                    Some(machine("s1")),
                    &["/metadata/generation"],
                ),
                step(
                    Method::PATCH,
                    &format!("{}/status", one("s1")),
                    MERGE,
                    Some(json!({"status": {"state": "Running", "costPerHour": 1.5}})),
                    &["/status/state", "/metadata/generation", "/spec/provider"],
                ),
                step(
                    Method::PATCH,
                    &one("s1"),
                    MERGE,
                    Some(
                        json!({"status": {"state": "Failed"}, "metadata": {"labels": {"a": "b"}}}),
                    ),
                    &[
                        "/status/state",
                        "/metadata/generation",
                        "/metadata/labels/a",
                    ],
                ),
                step(
                    Method::PATCH,
                    &one("s1"),
                    MERGE,
                    Some(json!({"spec": {"maxLifetimeSeconds": 3600}})),
                    &["/metadata/generation", "/status/state"],
                ),
                step(
                    Method::PATCH,
                    &format!("{}/status", one("s1")),
                    MERGE,
                    Some(
                        json!({"spec": {"maxLifetimeSeconds": 60}, "status": {"state": "Stopped"}}),
                    ),
                    &[
                        "/spec/maxLifetimeSeconds",
                        "/status/state",
                        "/metadata/generation",
                    ],
                ),
            ],
        ),
        (
            "replace with a stale resourceVersion",
            vec![
                step(Method::POST, CR, JSON, Some(machine("r1")), &[]),
                step(
                    Method::PUT,
                    &one("r1"),
                    JSON,
                    Some({
                        let mut m = machine("r1");
                        m["metadata"]["resourceVersion"] = json!("1");
                        m
                    }),
                    &["/reason", "/code", "/details/name"],
                ),
                step(
                    Method::PUT,
                    &one("r1"),
                    JSON,
                    Some(machine("r1")),
                    &["/reason", "/code"],
                ),
                step(
                    Method::PATCH,
                    &one("r1"),
                    MERGE,
                    Some(json!({"spec": {"instanceType": "sim.h100", "gpuCount": 2}})),
                    &["/reason", "/code", "/details/causes"],
                ),
            ],
        ),
        (
            "finalizer added with a JSON patch test against a missing list, then deletion",
            vec![
                step(Method::POST, CR, JSON, Some(machine("f1")), &[]),
                step(
                    Method::PATCH,
                    &one("f1"),
                    JSON_PATCH,
                    Some(json!([
                        {"op": "test", "path": "/metadata/finalizers", "value": null},
                        {"op": "add", "path": "/metadata/finalizers", "value": ["runctl.dev/machine"]}
                    ])),
                    &["/metadata/finalizers"],
                ),
                step(
                    Method::PATCH,
                    &one("f1"),
                    JSON_PATCH,
                    Some(json!([
                        {"op": "test", "path": "/metadata/finalizers", "value": null},
                        {"op": "add", "path": "/metadata/finalizers", "value": ["other"]}
                    ])),
                    &["/reason", "/code"],
                ),
                step(
                    Method::DELETE,
                    &one("f1"),
                    JSON,
                    None,
                    &[
                        "/kind",
                        "?/metadata/deletionTimestamp",
                        "/metadata/finalizers",
                    ],
                ),
                step(
                    Method::PATCH,
                    &one("f1"),
                    MERGE,
                    Some(
                        json!({"metadata": {"finalizers": ["runctl.dev/machine", "late.example/added"]}}),
                    ),
                    &["/reason", "/code"],
                ),
                step(
                    Method::PATCH,
                    &one("f1"),
                    MERGE,
                    Some(json!({"metadata": {"finalizers": null}})),
                    &["?/metadata/deletionTimestamp"],
                ),
                step(Method::GET, &one("f1"), JSON, None, &["/reason", "/code"]),
            ],
        ),
        (
            "delete with a uid precondition that does not match",
            vec![
                step(Method::POST, CR, JSON, Some(machine("p1")), &[]),
                step(
                    Method::DELETE,
                    &one("p1"),
                    JSON,
                    Some(
                        json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}}),
                    ),
                    &["/reason", "/code"],
                ),
            ],
        ),
        (
            "an invalid object",
            vec![step(
                Method::POST,
                CR,
                JSON,
                Some(json!({
                    "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource",
                    "metadata": {"name": "bad"},
                    "spec": {"provider": "aws", "gpuCount": 0}
                })),
                &[
                    "/reason",
                    "/code",
                    "/details/name",
                    "/details/kind",
                    "/details/causes",
                ],
            )],
        ),
        (
            "server-side apply: managed fields and a conflict between managers",
            vec![
                step(
                    Method::PATCH,
                    &format!("{}?fieldManager=runctl", one("a1")),
                    APPLY,
                    Some(machine("a1")),
                    &[
                        "/metadata/managedFields/0/manager",
                        "/metadata/managedFields/0/operation",
                        "/metadata/generation",
                    ],
                ),
                step(
                    Method::PATCH,
                    &format!("{}?fieldManager=other", one("a1")),
                    APPLY,
                    Some({
                        let mut m = machine("a1");
                        m["spec"]["instanceType"] = json!("sim.h100");
                        m
                    }),
                    &["/reason", "/code"],
                ),
                step(
                    Method::PATCH,
                    &format!("{}/status?fieldManager=runctl-status&force=true", one("a1")),
                    APPLY,
                    Some(json!({
                        "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource",
                        "metadata": {"name": "a1"}, "status": {"state": "Starting"}
                    })),
                    &["/status/state", "/metadata/generation"],
                ),
            ],
        ),
        (
            "list by label",
            vec![
                step(Method::POST, CR, JSON, Some(machine("l1")), &[]),
                step(
                    Method::GET,
                    &format!("{CR}?labelSelector=runctl.dev%2Fjob%3Dj"),
                    JSON,
                    None,
                    &[
                        "/kind",
                        "/apiVersion",
                        "/items/0/metadata/name",
                        "?/metadata/resourceVersion",
                    ],
                ),
                step(
                    Method::GET,
                    &format!("{CR}?labelSelector=runctl.dev%2Fjob%3Dother"),
                    JSON,
                    None,
                    &["/kind", "/items"],
                ),
                // A watch from a resourceVersion the server no longer has: the watcher relists.
                step(
                    Method::GET,
                    &format!("{CR}?watch=true&resourceVersion=1&timeoutSeconds=1"),
                    JSON,
                    None,
                    &["/type", "/object/kind", "/object/code", "/object/reason"],
                ),
            ],
        ),
        (
            "an event, then its series patch",
            vec![
                step(
                    Method::POST,
                    "/apis/events.k8s.io/v1/namespaces/{ns}/events",
                    JSON,
                    Some(json!({
                        "apiVersion": "events.k8s.io/v1", "kind": "Event",
                        "metadata": {"name": "e1"},
                        "eventTime": "2026-01-01T00:00:00.000000Z",
                        "reportingController": "runctl.dev/operator", "reportingInstance": "runctl-a",
                        "action": "Create", "reason": "Created", "type": "Normal", "note": "created",
                        "regarding": {"apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource", "name": "x", "namespace": "{ns}"}
                    })),
                    &["/kind", "/reason", "/note"],
                ),
                step(
                    Method::PATCH,
                    "/apis/events.k8s.io/v1/namespaces/{ns}/events/e1",
                    MERGE,
                    Some(json!({
                        "series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"}
                    })),
                    &["/series/count"],
                ),
            ],
        ),
        (
            "a Lease taken over with a stale resourceVersion",
            vec![
                step(
                    Method::POST,
                    "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
                    JSON,
                    Some(json!({
                        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": "runctl-leader"},
                        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}
                    })),
                    &["/spec/holderIdentity"],
                ),
                step(
                    Method::PUT,
                    "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/runctl-leader",
                    JSON,
                    Some(json!({
                        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": "runctl-leader", "resourceVersion": "1"},
                        "spec": {"holderIdentity": "b", "leaseDurationSeconds": 15}
                    })),
                    &["/reason", "/code"],
                ),
            ],
        ),
        (
            "a Secret and a ConfigMap with owner references, created twice",
            vec![
                step(
                    Method::POST,
                    "/api/v1/namespaces/{ns}/secrets",
                    JSON,
                    Some(json!({
                        "apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "t1", "ownerReferences": [{"apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob", "name": "j", "uid": "11111111-1111-1111-1111-111111111111", "controller": true}]},
                        "stringData": {"token": "x"}
                    })),
                    &["/kind", "/data/token", "?/stringData", "/type"],
                ),
                step(
                    Method::POST,
                    "/api/v1/namespaces/{ns}/secrets",
                    JSON,
                    Some(json!({
                        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t1"}, "data": {"token": "eA=="}
                    })),
                    &["/reason", "/code", "/details/kind"],
                ),
                step(
                    Method::POST,
                    "/api/v1/namespaces/{ns}/configmaps",
                    JSON,
                    Some(json!({
                        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rec"}, "data": {"k": "v"}
                    })),
                    &["/kind", "/data/k"],
                ),
                step(
                    Method::DELETE,
                    "/api/v1/namespaces/{ns}/configmaps/rec",
                    JSON,
                    None,
                    &["/kind", "/status", "/details/name", "/details/kind"],
                ),
                step(
                    Method::DELETE,
                    "/api/v1/namespaces/{ns}/configmaps/rec",
                    JSON,
                    None,
                    &["/reason", "/code"],
                ),
            ],
        ),
    ]
}

/// Sends `step` and returns `[code, compared parts...]`.
async fn observe(client: &Client, ns: &str, step: &Step) -> Value {
    let path = step.path.replace("{ns}", ns);
    let body = step
        .body
        .as_ref()
        .map(|b| {
            serde_json::to_string(b)
                .unwrap()
                .replace("{ns}", ns)
                .into_bytes()
        })
        .unwrap_or_default();
    let request = Request::builder()
        .method(step.method.clone())
        .uri(&path)
        .header("content-type", step.content_type)
        .header("accept", JSON)
        .body(body)
        .unwrap();
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .unwrap_or_else(|e| panic!("{} {path}: {e}", step.method));
    let code = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut seen = vec![json!(code)];
    for pointer in step.compare {
        seen.push(match pointer.strip_prefix('?') {
            Some(p) => json!(answer.pointer(p).is_some()),
            None => answer.pointer(pointer).cloned().unwrap_or(Value::Null),
        });
    }
    json!(seen)
}

async fn namespace(client: &Client, name: &str) {
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&Default::default(), &ns).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_test_server_answers_the_operators_requests_as_kube_apiserver_does() {
    let fake = runctl_apiserver::ApiServer::start().await.unwrap();
    let fake_client = fake.client();
    support::install_crds(&fake_client).await;
    let plane = runctl_envtest::shared().await;
    support::ensure_crds_on(plane).await;
    let real_client = plane.client().await.unwrap();

    let mut differences = vec![];
    for (i, (name, steps)) in cases().into_iter().enumerate() {
        let ns = format!("diff-{i}");
        namespace(&fake_client, &ns).await;
        namespace(&real_client, &ns).await;
        for (n, step) in steps.iter().enumerate() {
            let real = observe(&real_client, &ns, step).await;
            let fake = observe(&fake_client, &ns, step).await;
            if real != fake {
                differences.push(format!(
                    "{name}, step {} ({} {}):\n  kube-apiserver: {real}\n  API test server: {fake}",
                    n + 1,
                    step.method,
                    step.path
                ));
            }
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
