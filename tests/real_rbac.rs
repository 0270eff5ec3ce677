//! The chart's RBAC on a real API server: the operator's scenarios pass with exactly the rules
//! `charts/runctl/templates/rbac.yaml` renders, and each of those rules is needed.
//!
//! The rules are rendered with `helm template` (cluster scope, and namespaced scope with
//! `config.watchNamespace`), created on the real control plane (crates/envtest) for a
//! ServiceAccount, and the operator runs with a client acting as that ServiceAccount:
//! - the CloudResource controller and the TrainingJob controller with its callback endpoint
//!   (`TestEnv::start_controller_as`, `start_training_job_controller_as`): a CloudResource that
//!   hits two capacity errors, runs and is deleted; a TrainingJob whose workload ships output
//!   (its log ConfigMap) and that succeeds from its exit report; a TrainingJob deleted while it
//!   runs, with its token Secret;
//! - the whole operator (`runctl::operator::Operator`: preflight, leader Lease, orphan reaper,
//!   both controllers, callback endpoint) through the same scenarios.
//!
//! The operator's requests go to a second kube-apiserver on the shared control plane's etcd
//! ([`StrictServer`], `ControlPlane::start_apiserver`) that adds what the shared one leaves off: the
//! OwnerReferencesPermissionEnforcement admission plugin (on in OpenShift and in hardened
//! clusters: an owner reference with `blockOwnerDeletion` needs `update` on the owner's
//! `finalizers`; runctl sets none, so the chart grants no `finalizers`, and these tests show
//! that none is needed) and an audit log, from which the tests read every 403 answer the
//! ServiceAccount got, with the verb and resource the server found missing.
//!
//! `*_roles_let_every_scenario_run_without_a_403` assert no 403 at all. `every_*_grant_is_needed`
//! drop one grant (an apiGroup, resource, verb and resource names) at a time, run the combined
//! scenario (the whole operator) until the server refuses that grant, stopping at the first such
//! 403, and assert that every grant was refused (and no other): the chart grants nothing the
//! operator does not call. [`RACE_ONLY`] lists the one grant the code needs only on a race the
//! scenarios cannot force.
//!
//! The controllers watch the test's namespace even with cluster-scope rules (every test of this
//! binary shares the control plane); the verbs are the same as cluster-wide.

mod deploy_support;
mod support;

use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use runctl::controller::reaper::ReaperConfig;
use runctl::crd::CloudResource;
use runctl::crd::cloud_resource::ResourceState;
use runctl::crd::training_job::{JobPhase, TrainingJob, TrainingJobStatus};
use runctl::metrics::Metrics;
use runctl::operator::Operator;
use runctl::provider::ProvidersConfig;
use runctl::provider::sim::{SimFault, SimOp};
use runctl::runtime::leader::LeaseConfig;
use runctl_envtest::process::free_ports;
use runctl_envtest::{ApiServer, ControlPlane};
use serde_json::{Value, json};
use support::builders::CloudResourceBuilder;
use support::jobs::{Workload, test_job_config};
use support::{Backend, TestEnv, eventually, fast_sim, test_controller_config};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// The strict API server and its audit log.

/// A second kube-apiserver on the shared control plane's etcd, CA, serving certificate and
/// ServiceAccount keys (as in a highly available control plane), with the
/// OwnerReferencesPermissionEnforcement admission plugin and an audit log of ServiceAccount
/// requests. Its process dies with the test binary (`runctl_envtest::process`); its files live in
/// the control plane's state directory.
struct StrictServer {
    server: ApiServer,
    audit_log: PathBuf,
    audit: Mutex<AuditState>,
}

#[derive(Default)]
struct AuditState {
    offset: u64,
    denials: Vec<Denial>,
}

/// The audit policy: every ServiceAccount request once, when its answer is complete.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
    userGroups: [\"system:serviceaccounts\"]
  - level: None
";

/// The strict API server of this test binary, started by the first test that asks.
async fn strict() -> &'static StrictServer {
    static STRICT: tokio::sync::OnceCell<StrictServer> = tokio::sync::OnceCell::const_new();
    STRICT
        .get_or_init(|| async { StrictServer::start(runctl_envtest::shared().await).await })
        .await
}

impl StrictServer {
    async fn start(plane: &'static ControlPlane) -> Self {
        let dir = plane
            .state_dir()
            .join(format!("strict-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).expect("create the strict API server's files' directory");
        let policy = dir.join("audit-policy.yaml");
        std::fs::write(&policy, AUDIT_POLICY).expect("write the audit policy");
        let audit_log = dir.join("audit.log");
        let server = plane
            .start_apiserver(&[
                "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
                format!("--audit-policy-file={}", policy.display()),
                format!("--audit-log-path={}", audit_log.display()),
                "--audit-log-format=json".into(),
                "--audit-log-mode=blocking".into(),
            ])
            .await
            .unwrap_or_else(|e| panic!("start the strict API server: {e}"));
        Self {
            server,
            audit_log,
            audit: Mutex::new(AuditState::default()),
        }
    }

    /// A client acting as ServiceAccount `namespace/name` (created if missing) through this
    /// server.
    async fn service_account(&self, namespace: &str, name: &str) -> Client {
        self.server
            .service_account_client(namespace, name)
            .await
            .unwrap_or_else(|e| panic!("a client for ServiceAccount {namespace}/{name}: {e}"))
    }

    /// Every 403 answer this server gave to `user` so far.
    fn denials(&self, user: &str) -> Vec<Denial> {
        let mut state = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(mut file) = std::fs::File::open(&self.audit_log) {
            let mut text = String::new();
            if file.seek(SeekFrom::Start(state.offset)).is_ok()
                && file.read_to_string(&mut text).is_ok()
            {
                // Only whole lines: the server may be writing the last one.
                let complete = text.rfind('\n').map_or(0, |i| i + 1);
                for line in text[..complete].lines() {
                    if let Some(d) = Denial::parse(line) {
                        state.denials.push(d);
                    }
                }
                state.offset += complete as u64;
            }
        }
        state
            .denials
            .iter()
            .filter(|d| d.user == user)
            .cloned()
            .collect()
    }
}

/// A request the server answered 403, from its audit event.
#[derive(Clone, Debug)]
struct Denial {
    user: String,
    verb: String,
    group: String,
    /// `resource` or `resource/subresource`.
    resource: String,
    namespace: String,
    name: String,
    message: String,
}

impl Denial {
    fn parse(line: &str) -> Option<Self> {
        let event: Value = serde_json::from_str(line).ok()?;
        if event["stage"] != "ResponseComplete" || event["responseStatus"]["code"] != 403 {
            return None;
        }
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let object = &event["objectRef"];
        let mut resource = text(&object["resource"]);
        if let Some(sub) = object["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        Some(Self {
            user: text(&event["user"]["username"]),
            verb: text(&event["verb"]),
            group: text(&object["apiGroup"]),
            resource,
            namespace: text(&object["namespace"]),
            name: text(&object["name"]),
            message: text(&event["responseStatus"]["message"]),
        })
    }

    /// The `(apiGroup, resource, verb)` the server found missing. Its message names them (a
    /// server-side apply that creates an object is a `patch` request that needs `create`); the
    /// owner-reference check's message does not: it refuses a `blockOwnerDeletion` owner the
    /// user cannot finalize (`update` on the owner's `finalizers`; runctl's only owner kind is
    /// TrainingJob).
    fn missing(&self) -> (String, String, String) {
        if self
            .message
            .contains("refers to a resource you can't set finalizers on")
        {
            return (
                "runctl.dev".into(),
                "trainingjobs/finalizers".into(),
                "update".into(),
            );
        }
        let named = || {
            let rest = &self.message[self.message.find("\" cannot ")? + 9..];
            let (verb, rest) = rest.split_once(" resource \"")?;
            let (resource, rest) = rest.split_once('"')?;
            let (group, _) = rest.strip_prefix(" in API group \"")?.split_once('"')?;
            Some((group.to_string(), resource.to_string(), verb.to_string()))
        };
        named().unwrap_or_else(|| (self.group.clone(), self.resource.clone(), self.verb.clone()))
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{} {}/{}: {}",
            self.verb, self.group, self.resource, self.namespace, self.name, self.message
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The chart's RBAC, rendered, taken apart into grants, and created.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Cluster,
    Namespaced,
}

/// One installation of the chart's RBAC: the operator's ServiceAccount `runctl` in the release
/// namespace, the objects in the watched namespace.
struct Install {
    scope: Scope,
    release_ns: String,
    watch_ns: String,
    fullname: String,
}

const ACCOUNT: &str = "runctl";

impl Install {
    /// `helm template` of `templates/rbac.yaml` for this installation.
    fn render(&self) -> Vec<Value> {
        let fullname = format!("fullnameOverride={}", self.fullname);
        let account = format!("serviceAccount.name={ACCOUNT}");
        let watch = format!("config.watchNamespace={}", self.watch_ns);
        let mut args = vec![
            "template",
            "runctl",
            "charts/runctl",
            "--namespace",
            &self.release_ns,
            "--show-only",
            "templates/rbac.yaml",
            "--set",
            &fullname,
            "--set",
            &account,
            "--set",
            deploy_support::CALLBACK_URL,
        ];
        if self.scope == Scope::Namespaced {
            args.extend(["--set", "rbac.scope=namespaced", "--set", &watch]);
        }
        deploy_support::parse_docs(&deploy_support::run_tool("helm", &args))
    }

    fn user(&self) -> String {
        format!("system:serviceaccount:{}:{ACCOUNT}", self.release_ns)
    }
}

/// One verb on one resource granted by one role: the unit the drop test removes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Grant {
    kind: String,
    role: String,
    namespace: Option<String>,
    group: String,
    resource: String,
    verb: String,
    names: Vec<String>,
}

impl Grant {
    /// What identifies the grant across installations (whose names differ).
    fn label(&self, install: &Install) -> String {
        let role = self.role.replace(&install.fullname, "<fullname>");
        let place = match &self.namespace {
            None => "cluster-wide".to_string(),
            Some(ns) if *ns == install.release_ns => "in the release namespace".into(),
            Some(_) => "in the watched namespace".into(),
        };
        let names = if self.names.is_empty() {
            String::new()
        } else {
            format!(" {:?}", self.names)
        };
        format!(
            "{} {role} ({place}): {} {}/{}{names}",
            self.kind, self.verb, self.group, self.resource
        )
    }

    fn is_missing_in(&self, denial: &Denial) -> bool {
        denial.missing() == (self.group.clone(), self.resource.clone(), self.verb.clone())
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn is_role(doc: &Value) -> bool {
    doc["kind"] == "ClusterRole" || doc["kind"] == "Role"
}

/// The grants of one role document.
fn role_grants(doc: &Value) -> Vec<Grant> {
    let mut out = vec![];
    for rule in doc["rules"].as_array().cloned().unwrap_or_default() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.push(Grant {
                        kind: doc["kind"].as_str().unwrap_or_default().into(),
                        role: doc["metadata"]["name"].as_str().unwrap_or_default().into(),
                        namespace: doc["metadata"]["namespace"].as_str().map(str::to_string),
                        group: group.clone(),
                        resource: resource.clone(),
                        verb,
                        names: strings(&rule["resourceNames"]),
                    });
                }
            }
        }
    }
    out
}

/// Every grant of a rendering, in rendering order.
fn grants(docs: &[Value]) -> Vec<Grant> {
    docs.iter()
        .filter(|d| is_role(d))
        .flat_map(role_grants)
        .collect()
}

/// The rendering with `drop` removed (its role rewritten as one rule per remaining grant).
fn without(docs: &[Value], drop: &Grant) -> Vec<Value> {
    docs.iter()
        .map(|doc| {
            if !is_role(doc) || doc["kind"] != drop.kind.as_str() || doc["metadata"]["name"] != drop.role.as_str() {
                return doc.clone();
            }
            let rules: Vec<Value> = role_grants(doc)
                .into_iter()
                .filter(|g| g != drop)
                .map(|g| {
                    let mut rule = json!({"apiGroups": [g.group], "resources": [g.resource], "verbs": [g.verb]});
                    if !g.names.is_empty() {
                        rule["resourceNames"] = json!(g.names);
                    }
                    rule
                })
                .collect();
            let mut doc = doc.clone();
            doc["rules"] = Value::Array(rules);
            doc
        })
        .collect()
}

/// Creates the rendered RBAC objects with the admin client.
async fn create_rbac(admin: &Client, docs: &[Value]) {
    fn typed<T: serde::de::DeserializeOwned>(doc: &Value) -> T {
        serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc}"))
    }
    let pp = PostParams::default();
    for doc in docs {
        let ns = doc["metadata"]["namespace"].as_str().unwrap_or_default();
        let result = match doc["kind"].as_str().unwrap_or_default() {
            "ClusterRole" => Api::<ClusterRole>::all(admin.clone())
                .create(&pp, &typed(doc))
                .await
                .map(drop),
            "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(admin.clone())
                .create(&pp, &typed(doc))
                .await
                .map(drop),
            "Role" => Api::<Role>::namespaced(admin.clone(), ns)
                .create(&pp, &typed(doc))
                .await
                .map(drop),
            "RoleBinding" => Api::<RoleBinding>::namespaced(admin.clone(), ns)
                .create(&pp, &typed(doc))
                .await
                .map(drop),
            other => panic!("templates/rbac.yaml renders a {other}"),
        };
        result.unwrap_or_else(|e| panic!("create {}: {e}", doc["metadata"]["name"]));
    }
}

/// Deletes the rendering's cluster-scoped objects (the namespaced ones go with their namespace).
async fn delete_cluster_scoped(admin: &Client, docs: &[Value]) {
    for doc in docs {
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let dp = DeleteParams::default();
        let _ = match doc["kind"].as_str().unwrap_or_default() {
            "ClusterRole" => Api::<ClusterRole>::all(admin.clone())
                .delete(name, &dp)
                .await
                .map(drop),
            "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(admin.clone())
                .delete(name, &dp)
                .await
                .map(drop),
            _ => Ok(()),
        };
    }
}

/// Whether the strict server lets `client` do what `grant` grants (a SelfSubjectAccessReview).
async fn allowed(client: &Client, grant: &Grant) -> Option<bool> {
    let (resource, subresource) = match grant.resource.split_once('/') {
        Some((r, s)) => (r.to_string(), Some(s.to_string())),
        None => (grant.resource.clone(), None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: grant.namespace.clone(),
                verb: Some(grant.verb.clone()),
                group: Some(grant.group.clone()),
                resource: Some(resource),
                subresource,
                name: grant.names.first().cloned(),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .ok()?;
    Some(answer.status.is_some_and(|s| s.allowed))
}

/// Waits until the strict server's authorizer has every grant of `kept` in effect, and checks
/// that `dropped` (if any) is refused: no other rule grants it.
async fn wait_effective(client: &Client, kept: &[Grant], dropped: Option<(&Grant, String)>) {
    eventually(30, "the roles to take effect", || async {
        for g in kept {
            if !allowed(client, g).await? {
                return None;
            }
        }
        Some(())
    })
    .await;
    if let Some((g, label)) = dropped {
        let granted = eventually(30, "an access review of the dropped grant", || {
            allowed(client, g)
        })
        .await;
        assert!(
            !granted,
            "{label} is still granted with it dropped: another rule grants it too"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The scenarios (run with the admin client on the test's objects; the operator acts as the
// ServiceAccount).

fn job(name: &str, extra: Value) -> TrainingJob {
    let mut spec = json!({
        "placement": {"provider": "sim", "instanceType": "sim.a100"},
        "workload": {"image": "ghcr.io/acme/train:1", "command": ["python", "train.py"]}
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    serde_json::from_value(json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("valid job")
}

async fn wait_job(
    env: &TestEnv,
    name: &str,
    what: &str,
    pred: impl Fn(&TrainingJobStatus) -> bool,
) -> TrainingJobStatus {
    let api: Api<TrainingJob> = env.api();
    eventually(40, &format!("{name}: {what}"), || {
        let api = api.clone();
        let pred = &pred;
        async move {
            let s = api.get_opt(name).await.ok().flatten()?.status?;
            pred(&s).then_some(s)
        }
    })
    .await
}

async fn wait_gone<K>(api: &Api<K>, name: &str, what: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(40, &format!("{what} {name} to be gone"), || async {
        matches!(api.get_opt(name).await, Ok(None)).then_some(())
    })
    .await;
}

/// A CloudResource whose first two create calls fail for capacity (the retries' second Warning
/// extends the first Event's series: a patch), runs, and is deleted.
async fn cloud_resource_lifecycle(env: &TestEnv, name: &str) {
    let crs: Api<CloudResource> = env.api();
    env.sim.fail_next(SimOp::Create, SimFault::Capacity, 2);
    crs.create(
        &PostParams::default(),
        &CloudResourceBuilder::sim(name).build(),
    )
    .await
    .expect("create the CloudResource");
    eventually(40, &format!("{name} to run"), || async {
        let cr = crs.get_opt(name).await.ok().flatten()?;
        (cr.status?.state == Some(ResourceState::Running)).then_some(())
    })
    .await;
    let events: Api<Event> = env.api();
    eventually(
        20,
        &format!("{name}: the capacity Warning as a series"),
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                        && e.reason.as_deref() == Some("InsufficientCapacity")
                        && e.series.as_ref().is_some_and(|s| s.count >= 2)
                })
                .then_some(())
        },
    )
    .await;
    let uid = crs
        .get(name)
        .await
        .expect("read")
        .metadata
        .uid
        .expect("uid");
    crs.delete(name, &DeleteParams::default())
        .await
        .expect("delete the CloudResource");
    wait_gone(&crs, name, "CloudResource").await;
    no_machine_of(env, &uid).await;
}

/// No machine of CloudResource `uid` bills any more.
async fn no_machine_of(env: &TestEnv, uid: &str) {
    eventually(
        10,
        &format!("the machine of {uid} to be terminated"),
        || async { (env.sim.live_count(uid) == 0).then_some(()) },
    )
    .await;
}

/// The uid of CloudResource `name`.
async fn uid_of(env: &TestEnv, name: &str) -> String {
    let crs: Api<CloudResource> = env.api();
    let cr = crs.get(name).await.expect("the CloudResource exists");
    cr.metadata.uid.expect("uid")
}

/// A TrainingJob with data-source credentials (a Secret read) that someone relabels while it
/// runs (a fresh read of the job) and that succeeds from its workload's exit report; its
/// attempt's CloudResource and token Secret go when it ends.
async fn job_succeeds(env: &TestEnv, name: &str) {
    let jobs: Api<TrainingJob> = env.api();
    let data = format!("{name}-data");
    env.secret(&data, &[("AWS_ACCESS_KEY_ID", "placeholder")])
        .await;
    let spec = json!({"workload": {
        "image": "ghcr.io/acme/train:1",
        "dataSource": {"uri": "s3://data/set", "credentialsSecretRef": {"name": data}}
    }, "recreatePolicy": "SkipIfSucceeded"});
    jobs.create(&PostParams::default(), &job(name, spec.clone()))
        .await
        .expect("create the job");
    wait_job(env, name, "attempt 1 running", |s| {
        s.phase == Some(JobPhase::Running) && s.attempts.last().is_some_and(|a| a.index == 1)
    })
    .await;
    jobs.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"example.com/team": "ml"}}})),
    )
    .await
    .expect("label the job");
    let machine = uid_of(env, &format!("{name}-a1")).await;
    let workload = Workload::of(env, &format!("{name}-a1")).await;
    // Output, followed (`runctl logs -f`): its log ConfigMap is read and created live; the exit
    // report writes it a last time (an update with the resourceVersion read). Unfollowed, the
    // exit report would be its only write (a create).
    jobs.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&runctl::logs::follow::follow_patch(jiff::Timestamp::now())),
    )
    .await
    .expect("follow the job");
    assert_eq!(
        workload.post("logs?offset=0", json!("epoch 1")).await,
        200,
        "{name}: output accepted"
    );
    let configmaps: Api<ConfigMap> = env.api();
    let log = runctl::attempt::log_configmap_name(name, 1);
    eventually(20, "the output written live", || async {
        configmaps.get_opt(&log).await.ok().flatten().map(|_| ())
    })
    .await;
    assert_eq!(workload.exit(0).await, 200, "{name}: exit report accepted");
    wait_job(env, name, "Succeeded", |s| {
        s.phase == Some(JobPhase::Succeeded)
    })
    .await;
    let crs: Api<CloudResource> = env.api();
    wait_gone(&crs, &format!("{name}-a1"), "CloudResource").await;
    let secrets: Api<Secret> = env.api();
    let token = runctl::attempt::token_secret_name(name, 1);
    wait_gone(&secrets, &token, "token Secret").await;
    no_machine_of(env, &machine).await;
    jobs.delete(name, &DeleteParams::default())
        .await
        .expect("delete the job");
    wait_gone(&jobs, name, "TrainingJob").await;
    // Re-created as a GitOps tool would: its success record (a ConfigMap read) stands for it.
    jobs.create(&PostParams::default(), &job(name, spec))
        .await
        .expect("re-create the job");
    wait_job(env, name, "AlreadySucceeded", |s| {
        s.reason.as_deref() == Some("AlreadySucceeded")
    })
    .await;
    jobs.delete(name, &DeleteParams::default())
        .await
        .expect("delete the re-created job");
    wait_gone(&jobs, name, "TrainingJob").await;
}

/// A TrainingJob deleted while its attempt runs: the machine and the token Secret go with it.
async fn job_deleted(env: &TestEnv, name: &str) {
    let jobs: Api<TrainingJob> = env.api();
    jobs.create(&PostParams::default(), &job(name, json!({})))
        .await
        .expect("create the job");
    wait_job(env, name, "attempt 1 running", |s| {
        s.phase == Some(JobPhase::Running) && s.attempts.last().is_some_and(|a| a.index == 1)
    })
    .await;
    let secrets: Api<Secret> = env.api();
    let token = runctl::attempt::token_secret_name(name, 1);
    assert!(
        secrets.get_opt(&token).await.expect("read").is_some(),
        "{name}: the attempt's token Secret exists"
    );
    let machine = uid_of(env, &format!("{name}-a1")).await;
    jobs.delete(name, &DeleteParams::default())
        .await
        .expect("delete the job");
    wait_gone(&jobs, name, "TrainingJob").await;
    let crs: Api<CloudResource> = env.api();
    wait_gone(&crs, &format!("{name}-a1"), "CloudResource").await;
    wait_gone(&secrets, &token, "token Secret").await;
    no_machine_of(env, &machine).await;
}

/// The controllers alone (as the tests' `TestEnv` starts them), acting as `client`.
async fn controllers_scenario(env: &TestEnv, client: Client, scope: Scope) {
    let machines = env.start_controller_as(client.clone(), config_for(scope, "rbac"));
    cloud_resource_lifecycle(env, "solo").await;
    machines.stop().await;
    let operator = env
        .start_training_job_controller_as(client, config_for(scope, "rbac"), test_job_config())
        .await;
    tokio::join!(job_succeeds(env, "ok"), job_deleted(env, "gone"));
    operator.stop().await;
}

/// The chart's default `config.leaderElection.leaseName` (its Lease rules name it).
const LEASE: &str = "runctl-leader";

fn leads(metrics: &Metrics) -> bool {
    metrics.encode().lines().any(|l| l == "runctl_leader 1")
}

fn free_addr() -> SocketAddr {
    let port = free_ports(1).expect("a free port")[0];
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The whole operator (`runctl run` without its config file) acting as `client`: preflight,
/// leader Lease in the release namespace (acquired, renewed, released), orphan reaper with its
/// status ConfigMap, both controllers and the callback endpoint, through the same scenarios.
/// The tests' controller settings for a scope: MachineClasses (cluster-scoped) are watched only
/// with the cluster-wide roles, as `runctl run` does without `watchNamespace`.
fn config_for(scope: Scope, instance: &str) -> runctl::controller::ControllerConfig {
    let mut config = test_controller_config(instance);
    config.machine_classes = scope == Scope::Cluster;
    config
}

/// Cluster scope: a MachineClass is checked and its status written by the operator.
async fn class_checked(env: &TestEnv, scope: Scope) {
    if scope != Scope::Cluster {
        return;
    }
    use runctl::crd::MachineClass;
    let name = format!("rbac-{}", env.ns);
    let api: Api<MachineClass> = Api::all(env.client.clone());
    let class: MachineClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "MachineClass",
        "metadata": {"name": name}, "spec": {"provider": "sim"}
    }))
    .expect("a MachineClass");
    api.create(&kube::api::PostParams::default(), &class)
        .await
        .expect("create the MachineClass");
    eventually(30, "the MachineClass to be checked", || async {
        let c = api.get(&name).await.ok()?;
        c.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready")
            .then_some(())
    })
    .await;
    let _ = api.delete(&name, &DeleteParams::default()).await;
}

async fn operator_scenario(env: Arc<TestEnv>, release_ns: String, client: Client, scope: Scope) {
    let callback = free_addr();
    let mut jobs = test_job_config();
    jobs.reporting.callback_base_url = format!("http://{callback}");
    let operator = Operator {
        client,
        registry: env.registry(),
        metrics: Arc::new(Metrics::new()),
        controllers: env.scoped(config_for(scope, "replica-a")),
        lease: Some(LeaseConfig {
            namespace: release_ns.clone(),
            name: LEASE.into(),
            identity: "replica-a".into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(1),
            retry_interval: Duration::from_secs(1),
        }),
        http_addr: None,
        reaper: Some(ReaperConfig {
            interval: Duration::from_secs(1),
            status_namespace: Some(release_ns.clone()),
            ..ReaperConfig::default()
        }),
        jobs,
        callback_addr: Some(callback),
        callback_tls: None,
    };
    let metrics = operator.metrics.clone();
    let shutdown = CancellationToken::new();
    // Dropping this future (a drop-test run that saw its 403) stops the operator.
    let _stop = shutdown.clone().drop_guard();
    let running = tokio::spawn(operator.run(shutdown.clone()));

    eventually(30, "the operator to lead", || async {
        leads(&metrics).then_some(())
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &release_ns);
    eventually(20, "the leader to renew its Lease", || async {
        let spec = leases.get_opt(LEASE).await.ok()??.spec?;
        (spec.renew_time?.0 > spec.acquire_time?.0).then_some(())
    })
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &release_ns);
    eventually(20, "the reaper's status ConfigMap", || async {
        configmaps
            .get_opt(runctl::controller::reaper::STATUS_CONFIGMAP)
            .await
            .ok()?
            .map(drop)
    })
    .await;
    cloud_resource_lifecycle(&env, "op-solo").await;
    tokio::join!(job_succeeds(&env, "op-ok"), job_deleted(&env, "op-gone"));
    class_checked(&env, scope).await;

    shutdown.cancel();
    running
        .await
        .expect("the operator task")
        .expect("the operator ran and stopped cleanly");
    let lease = leases.get(LEASE).await.expect("the Lease");
    assert!(
        lease.spec.and_then(|s| s.holder_identity).is_none(),
        "the leader released its Lease on shutdown"
    );
}

// ---------------------------------------------------------------------------------------------
// Set-up and the tests.

/// A fresh test environment (its namespace is the watched one), a release namespace of its own
/// (where the operator's ServiceAccount, Lease and reaper status live) and the chart's RBAC for
/// them, rendered.
struct Setup {
    env: Arc<TestEnv>,
    strict: &'static StrictServer,
    install: Install,
    docs: Vec<Value>,
}

impl Setup {
    async fn new(scope: Scope) -> Self {
        let env = TestEnv::start_on(
            Backend::Real,
            ProvidersConfig {
                sim: fast_sim(),
                ..ProvidersConfig::default()
            },
        )
        .await;
        let plane = env.plane.expect("the real control plane");
        let strict = strict().await;
        let release_ns = plane
            .create_namespace("release")
            .await
            .expect("create the release namespace");
        let install = Install {
            scope,
            release_ns,
            watch_ns: env.ns.clone(),
            fullname: format!("rbac-{}", env.ns),
        };
        let docs = install.render();
        Self {
            env: Arc::new(env),
            strict,
            install,
            docs,
        }
    }

    /// Creates the rendering (less `drop`) and returns a client acting as the operator's
    /// ServiceAccount once the roles are in effect.
    async fn create(&self, drop: Option<&Grant>) -> Client {
        let docs = match drop {
            Some(g) => without(&self.docs, g),
            None => self.docs.clone(),
        };
        create_rbac(&self.env.client, &docs).await;
        let client = self
            .strict
            .service_account(&self.install.release_ns, ACCOUNT)
            .await;
        let kept: Vec<Grant> = grants(&docs);
        wait_effective(&client, &kept, drop.map(|g| (g, g.label(&self.install)))).await;
        client
    }

    fn denials(&self) -> Vec<Denial> {
        self.strict.denials(&self.install.user())
    }

    /// Removes what the run left: finalizers of objects a stopped operator could not finish,
    /// the two namespaces and the cluster-scoped RBAC objects.
    async fn clean_up(&self) {
        let admin = &self.env.client;
        let unfinalize = json!({"metadata": {"finalizers": null}});
        let jobs: Api<TrainingJob> = self.env.api();
        let crs: Api<CloudResource> = self.env.api();
        for j in jobs
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let name = j.metadata.name.unwrap_or_default();
            let _ = jobs
                .patch(&name, &PatchParams::default(), &Patch::Merge(&unfinalize))
                .await;
        }
        for c in crs
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let name = c.metadata.name.unwrap_or_default();
            let _ = crs
                .patch(&name, &PatchParams::default(), &Patch::Merge(&unfinalize))
                .await;
        }
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        for ns in [&self.install.watch_ns, &self.install.release_ns] {
            let _ = namespaces.delete(ns, &DeleteParams::default()).await;
        }
        delete_cluster_scoped(admin, &self.docs).await;
    }
}

/// Runs every scenario with the rendered roles as they are and asserts no 403 answer.
async fn every_scenario_without_a_403(scope: Scope) {
    let setup = Setup::new(scope).await;
    let client = setup.create(None).await;
    let env = setup.env.clone();
    let release_ns = setup.install.release_ns.clone();
    let run = tokio::spawn(async move {
        controllers_scenario(&env, client.clone(), scope).await;
        operator_scenario(env, release_ns, client, scope).await;
    })
    .await;
    // Audit events are written as answers complete.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let denials: Vec<String> = setup.denials().iter().map(ToString::to_string).collect();
    if let Err(e) = run {
        panic!("a scenario failed ({e}); the server's 403 answers: {denials:#?}");
    }
    assert!(
        denials.is_empty(),
        "the operator got 403 answers with the chart's {scope:?} roles: {denials:#?}"
    );
    setup.clean_up().await;
}

/// One drop-test run: the dropped grant, what happened, and 403 answers for other grants.
struct RunReport {
    label: String,
    outcome: Outcome,
    others: Vec<Denial>,
}

/// What one drop-test run saw.
enum Outcome {
    /// The server refused the dropped grant.
    Refused(Denial),
    /// The combined scenario passed without it: the grant is not needed.
    NotNeeded,
    /// The scenario failed, or nothing happened in time, without a 403 for the grant.
    Inconclusive(String),
}

/// How long one run may take before it counts as inconclusive.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Drops grant `index` of the rendering, runs the combined scenario until the server refuses
/// that grant, and reports what happened, with any 403 for another grant.
async fn drop_run(scope: Scope, index: usize) -> RunReport {
    let setup = Setup::new(scope).await;
    let grant = grants(&setup.docs)[index].clone();
    let label = grant.label(&setup.install);
    let client = setup.create(Some(&grant)).await;
    let mut scenario = tokio::spawn(operator_scenario(
        setup.env.clone(),
        setup.install.release_ns.clone(),
        client,
        scope,
    ));
    let refused = || setup.denials().into_iter().find(|d| grant.is_missing_in(d));
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let limit = tokio::time::sleep(RUN_LIMIT);
    tokio::pin!(limit);
    let outcome = loop {
        tokio::select! {
            result = &mut scenario => {
                // Audit events are written as answers complete.
                tokio::time::sleep(Duration::from_millis(500)).await;
                break match (refused(), result) {
                    (Some(d), _) => Outcome::Refused(d),
                    (None, Ok(())) => Outcome::NotNeeded,
                    (None, Err(e)) => Outcome::Inconclusive(format!("the scenario failed: {e}")),
                };
            }
            _ = tick.tick() => {
                if let Some(d) = refused() {
                    scenario.abort();
                    break Outcome::Refused(d);
                }
            }
            _ = &mut limit => {
                scenario.abort();
                break Outcome::Inconclusive(format!("no 403 for it within {RUN_LIMIT:?}"));
            }
        }
    };
    // The aborted scenario cancelled the operator; let it stop before cleaning up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let others: Vec<Denial> = setup
        .denials()
        .into_iter()
        .filter(|d| !grant.is_missing_in(d))
        .collect();
    setup.clean_up().await;
    RunReport {
        label,
        outcome,
        others,
    }
}

/// Grants the operator calls only on a race the scenarios cannot force. `get` on a
/// CloudResource: the TrainingJob controller reads an attempt's CloudResource directly only
/// when it reconciles the job after applying it but before its watch has shown it
/// (`machines_of` in src/controller/training_job/mod.rs); without the grant that reconcile fails
/// and is retried once the watch has caught up. The drop test runs these too, and accepts a
/// pass without a 403 for them.
const RACE_ONLY: &[(&str, &str, &str)] = &[("runctl.dev", "cloudresources", "get")];

fn race_only(grant: &Grant) -> bool {
    RACE_ONLY.iter().any(|(group, resource, verb)| {
        grant.group == *group && grant.resource == *resource && grant.verb == *verb
    })
}

/// Runs at once in the drop test (each in namespaces of its own; mostly waiting on the server).
const PARALLEL_RUNS: usize = 3;

/// Drops each grant of the rendering in turn and asserts that the server refused it in the
/// combined scenario, with no 403 for any grant that was kept.
async fn every_grant_is_needed(scope: Scope) {
    let sample = Install {
        scope,
        release_ns: "release".into(),
        watch_ns: "watched".into(),
        fullname: "runctl".into(),
    };
    let count = grants(&sample.render()).len();
    assert!(count > 0, "the chart renders no RBAC rule");
    let started = std::time::Instant::now();
    let exempt: Vec<bool> = grants(&sample.render()).iter().map(race_only).collect();
    let mut results: Vec<(usize, Result<RunReport, String>)> = futures::stream::iter(0..count)
        .map(|i| async move {
            let run = tokio::spawn(drop_run(scope, i)).await;
            (i, run.map_err(|e| format!("the run panicked: {e}")))
        })
        .buffer_unordered(PARALLEL_RUNS)
        .collect()
        .await;
    results.sort_by_key(|(i, _)| *i);
    let mut report = vec![];
    let mut failures = vec![];
    for (i, result) in results {
        let run = match result {
            Ok(run) => run,
            Err(e) => {
                failures.push(format!("grant #{i}: {e}"));
                continue;
            }
        };
        let label = &run.label;
        match &run.outcome {
            Outcome::Refused(d) => report.push(format!("{label}\n    refused: {d}")),
            Outcome::NotNeeded if exempt[i] => report.push(format!(
                "{label}\n    not refused: only needed on a race (RACE_ONLY)"
            )),
            Outcome::NotNeeded => failures.push(format!(
                "{label}: every scenario passed without it; the operator never needs it"
            )),
            Outcome::Inconclusive(why) => failures.push(format!("{label}: {why}")),
        }
        if !run.others.is_empty() {
            let others: Vec<String> = run.others.iter().map(ToString::to_string).collect();
            failures.push(format!(
                "{label}: 403 answers for grants that were kept: {others:#?}"
            ));
        }
    }
    eprintln!(
        "{scope:?} roles: {count} grants, each dropped in turn ({:.0} s):\n{}",
        started.elapsed().as_secs_f64(),
        report.join("\n")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_roles_let_every_scenario_run_without_a_403() {
    every_scenario_without_a_403(Scope::Cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespaced_roles_let_every_scenario_run_without_a_403() {
    every_scenario_without_a_403(Scope::Namespaced).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cluster_scope_grant_is_needed() {
    every_grant_is_needed(Scope::Cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespaced_scope_grant_is_needed() {
    every_grant_is_needed(Scope::Namespaced).await;
}
