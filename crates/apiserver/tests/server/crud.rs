//! Built-in kinds over HTTP: CRUD, errors, resourceVersion conflicts, finalizers, leases,
//! selectors, discovery and content types.

use http::Request;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::ObjectMeta;
use runctl_apiserver::{ApiServer, Verb, WriteFault};
use serde_json::json;

use crate::common::raw;

fn configmap(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([("k".to_string(), value.to_string())].into()),
        ..Default::default()
    }
}

fn code(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn configmap_crud_and_errors() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let created = cms
        .create(&PostParams::default(), &configmap("a", "1"))
        .await
        .expect("create");
    let meta = &created.metadata;
    assert!(
        meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some()
    );
    assert_eq!(meta.namespace.as_deref(), Some("default"));

    assert_eq!(
        code(
            cms.create(&PostParams::default(), &configmap("a", "1"))
                .await
                .expect_err("dup")
        ),
        (409, "AlreadyExists".into())
    );
    let missing = cms.get("nope").await.expect_err("missing");
    assert_eq!(code(missing).0, 404);
    assert!(cms.get_opt("nope").await.expect("get_opt").is_none());

    let mut stale = created.clone();
    let mut fresh = cms.get("a").await.expect("get");
    fresh.data = Some([("k".to_string(), "2".to_string())].into());
    let replaced = cms
        .replace("a", &PostParams::default(), &fresh)
        .await
        .expect("replace");
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );
    stale.data = Some([("k".to_string(), "3".to_string())].into());
    assert_eq!(
        code(
            cms.replace("a", &PostParams::default(), &stale)
                .await
                .expect_err("stale")
        ),
        (409, "Conflict".into())
    );

    // A write that changes nothing keeps the resourceVersion.
    let same = cms
        .replace("a", &PostParams::default(), &replaced)
        .await
        .expect("no-op replace");
    assert_eq!(
        same.metadata.resource_version,
        replaced.metadata.resource_version
    );

    let patched = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "y"}})),
        )
        .await
        .expect("merge");
    assert_eq!(
        patched
            .data
            .as_ref()
            .and_then(|d| d.get("x"))
            .map(String::as_str),
        Some("y")
    );
    let strategic = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"l": "v"}}})),
        )
        .await
        .expect("strategic");
    assert_eq!(
        strategic
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("l"))
            .map(String::as_str),
        Some("v")
    );

    let listed = cms
        .list(&ListParams::default().labels("l=v"))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1);
    assert!(listed.metadata.resource_version.is_some());
    assert!(
        cms.list(&ListParams::default().labels("l=w"))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert_eq!(
        cms.list(&ListParams::default().fields("metadata.name=a"))
            .await
            .expect("list")
            .items
            .len(),
        1
    );

    let deleted = cms
        .delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(deleted.is_right(), "gone at once without finalizers");
    assert_eq!(
        code(
            cms.delete("a", &DeleteParams::default())
                .await
                .expect_err("gone")
        )
        .0,
        404
    );

    let wrong_ns: Api<ConfigMap> = Api::namespaced(server.client(), "ghost");
    assert_eq!(
        code(
            wrong_ns
                .create(&PostParams::default(), &configmap("b", "1"))
                .await
                .expect_err("no namespace")
        )
        .0,
        404
    );
    server.shutdown().await;
}

#[tokio::test]
async fn generate_name_and_invalid_name() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let mut cm = configmap("", "1");
    cm.metadata.name = None;
    cm.metadata.generate_name = Some("gen-".into());
    let created = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("generateName");
    let name = created.metadata.name.expect("named");
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    assert_eq!(
        code(
            cms.create(&PostParams::default(), &configmap("Bad_Name", "1"))
                .await
                .expect_err("invalid")
        ),
        (422, "Invalid".into())
    );
    let mut versioned = configmap("versioned", "1");
    versioned.metadata.resource_version = Some("7".into());
    let err = cms
        .create(&PostParams::default(), &versioned)
        .await
        .expect_err("rv on create");
    assert!(
        matches!(err, kube::Error::Api(s) if s.message.contains("resourceVersion should not be set"))
    );
    let mut elsewhere = configmap("elsewhere", "1");
    elsewhere.metadata.namespace = Some("kube-system".into());
    assert_eq!(
        code(
            cms.create(&PostParams::default(), &elsewhere)
                .await
                .expect_err("namespace mismatch")
        )
        .0,
        400
    );
}

#[tokio::test]
async fn finalizers_and_preconditions() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let mut cm = configmap("f", "1");
    cm.metadata.finalizers = Some(vec!["test/one".into()]);
    let created = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("create");

    let wrong_uid = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("other".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        code(cms.delete("f", &wrong_uid).await.expect_err("precondition")),
        (409, "Conflict".into())
    );

    let right = DeleteParams {
        preconditions: Some(Preconditions {
            uid: created.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let pending = cms.delete("f", &right).await.expect("delete starts");
    let pending = pending.left().expect("kept by finalizer");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.metadata.deletion_grace_period_seconds, Some(0));

    let add = Patch::Merge(json!({"metadata": {"finalizers": ["test/one", "test/two"]}}));
    assert_eq!(
        code(
            cms.patch("f", &PatchParams::default(), &add)
                .await
                .expect_err("no new finalizers")
        ),
        (422, "Invalid".into())
    );

    cms.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    assert!(
        cms.get_opt("f").await.expect("get").is_none(),
        "gone once the last finalizer is removed"
    );
}

#[tokio::test]
async fn lease_get_create_replace_conflict() {
    let server = ApiServer::start().await.expect("starts");
    let leases: Api<Lease> = Api::namespaced(server.client(), "kube-system");
    assert!(leases.get_opt("leader").await.expect("get").is_none());
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("leader".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    let created = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create");
    assert_eq!(
        code(
            leases
                .create(&PostParams::default(), &lease)
                .await
                .expect_err("taken")
        ),
        (409, "AlreadyExists".into())
    );

    let mut renew_a = created.clone();
    let mut steal_b = created.clone();
    if let Some(spec) = renew_a.spec.as_mut() {
        spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now(),
        ));
    }
    let renewed = leases
        .replace("leader", &PostParams::default(), &renew_a)
        .await
        .expect("holder renews");
    assert!(
        renewed
            .spec
            .as_ref()
            .and_then(|s| s.renew_time.as_ref())
            .is_some()
    );
    if let Some(spec) = steal_b.spec.as_mut() {
        spec.holder_identity = Some("b".into());
        spec.lease_transitions = Some(1);
    }
    assert_eq!(
        code(
            leases
                .replace("leader", &PostParams::default(), &steal_b)
                .await
                .expect_err("stale")
        ),
        (409, "Conflict".into())
    );
    let current = leases.get("leader").await.expect("get");
    assert_eq!(
        current.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("a")
    );
}

#[tokio::test]
async fn secrets_fold_string_data_and_namespaces_cascade() {
    let server = ApiServer::start().await.expect("starts");
    let namespaces: Api<Namespace> = Api::all(server.client());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("team".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let secrets: Api<Secret> = Api::namespaced(server.client(), "team");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("creds".into()),
            ..Default::default()
        },
        string_data: Some([("apiKey".to_string(), "s3cr3t".to_string())].into()),
        ..Default::default()
    };
    let created = secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let data = created.data.expect("data");
    assert_eq!(
        data.get("apiKey").map(|b| b.0.clone()),
        Some(b"s3cr3t".to_vec())
    );
    assert!(created.string_data.is_none());
    namespaces
        .delete("team", &DeleteParams::default())
        .await
        .expect("delete namespace");
    assert!(secrets.get_opt("creds").await.expect("get").is_none());
}

#[tokio::test]
async fn terminating_namespace_waits_for_finalizers() {
    let server = ApiServer::start().await.expect("starts");
    let namespaces: Api<Namespace> = Api::all(server.client());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("doomed".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let created = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    assert_eq!(
        created.status.and_then(|s| s.phase).as_deref(),
        Some("Active")
    );
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "doomed");
    let mut held = configmap("held", "1");
    held.metadata.finalizers = Some(vec!["test/hold".into()]);
    cms.create(&PostParams::default(), &held)
        .await
        .expect("held");
    cms.create(&PostParams::default(), &configmap("free", "1"))
        .await
        .expect("free");

    let pending = namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("delete")
        .left()
        .expect("terminating");
    assert_eq!(
        pending.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    assert!(cms.get_opt("free").await.expect("get").is_none());
    assert!(
        cms.get("held")
            .await
            .expect("held back")
            .metadata
            .deletion_timestamp
            .is_some()
    );
    assert_eq!(
        code(
            cms.create(&PostParams::default(), &configmap("new", "1"))
                .await
                .expect_err("forbidden")
        ),
        (403, "Forbidden".into())
    );

    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    assert!(
        namespaces.get_opt("doomed").await.expect("get").is_none(),
        "namespace goes once empty"
    );
}

#[tokio::test]
async fn content_types_methods_and_discovery() {
    let server = ApiServer::start().await.expect("starts");
    let protobuf = Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/vnd.kubernetes.protobuf")
        .body(b"k8s\x00\x0a".to_vec())
        .expect("request");
    let (status, body, _) = raw(&server, protobuf).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );

    let post_named = Request::post("/api/v1/namespaces/default/configmaps/x")
        .header("content-type", "application/json")
        .body(b"{}".to_vec())
        .expect("request");
    let (status, body, _) = raw(&server, post_named).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );

    let (status, body, _) = raw(
        &server,
        Request::get("/api/v1/namespaces/default/widgets")
            .body(vec![])
            .expect("request"),
    )
    .await;
    assert_eq!((status, body["reason"].as_str()), (404, Some("NotFound")));

    let (status, version, _) = raw(
        &server,
        Request::get("/version").body(vec![]).expect("request"),
    )
    .await;
    assert_eq!((status, version["major"].as_str()), (200, Some("1")));
    let (_, openapi, _) = raw(
        &server,
        Request::get("/openapi/v3").body(vec![]).expect("request"),
    )
    .await;
    assert!(openapi["paths"]["api/v1"].is_object());
    let (_, v2, _) = raw(
        &server,
        Request::get("/openapi/v2").body(vec![]).expect("request"),
    )
    .await;
    assert_eq!(v2["swagger"], json!("2.0"));

    let client = server.client();
    let version = client.apiserver_version().await.expect("version");
    assert_eq!(version.major, "1");
    let core = client.list_core_api_resources("v1").await.expect("core");
    assert!(
        core.resources
            .iter()
            .any(|r| r.name == "configmaps" && r.short_names == Some(vec!["cm".into()]))
    );
    let discovery = kube::Discovery::new(client).run().await.expect("discovery");
    assert!(discovery.has_group("coordination.k8s.io"));
}

#[tokio::test]
async fn faults_and_stats() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    server.reset_stats();
    server.faults().fail_writes(
        WriteFault::conflict(1)
            .on_resource("configmaps")
            .on_verb(Verb::Create),
    );
    server
        .faults()
        .fail_writes(WriteFault::server_error(1).on_verb(Verb::Patch));
    assert_eq!(
        code(
            cms.create(&PostParams::default(), &configmap("c", "1"))
                .await
                .expect_err("fault")
        ),
        (409, "Conflict".into())
    );
    cms.create(&PostParams::default(), &configmap("c", "1"))
        .await
        .expect("second try works");
    assert_eq!(
        code(
            cms.patch("c", &PatchParams::default(), &Patch::Merge(json!({})))
                .await
                .expect_err("fault")
        )
        .0,
        500
    );
    cms.get("c").await.expect("get");
    cms.list(&ListParams::default()).await.expect("list");
    let stats = server.stats();
    assert_eq!(stats.count(Verb::Create, "configmaps"), 2);
    assert_eq!(stats.count(Verb::Patch, "configmaps"), 1);
    assert_eq!(stats.count(Verb::Get, "configmaps"), 1);
    assert_eq!(stats.total(Verb::List), 1);
    assert_eq!(server.faults().pending_write_faults(), 0);
    server.reset_stats();
    assert_eq!(server.stats().writes(), 0);
}

#[tokio::test]
async fn kubeconfig_yaml_works_for_a_new_client() {
    let server = ApiServer::start().await.expect("starts");
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&server.kubeconfig_yaml()).expect("parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).expect("client");
    let namespaces: Api<Namespace> = Api::all(client);
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(
        names.contains(&"default".to_string()) && names.contains(&"kube-system".to_string()),
        "{names:?}"
    );
}

#[tokio::test]
async fn an_undecodable_patch_is_answered_after_the_object_is_found() {
    let server = ApiServer::start().await.expect("starts");
    let patch = |name: &str| {
        Request::patch(format!("/api/v1/namespaces/default/configmaps/{name}"))
            .header("content-type", "application/merge-patch+json")
            .body(b"{not json".to_vec())
            .expect("request")
    };
    // The object is looked up first: a missing one is NotFound whatever the body.
    let (status, body, _) = raw(&server, patch("missing")).await;
    assert_eq!((status, body["reason"].as_str()), (404, Some("NotFound")));
    let create = Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"present"}}"#.to_vec())
        .expect("request");
    assert_eq!(raw(&server, create).await.0, 201);
    let (status, body, _) = raw(&server, patch("present")).await;
    assert_eq!((status, body["reason"].as_str()), (400, Some("BadRequest")));
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("failed to decode the patch as JSON")),
        "{body}"
    );
}
