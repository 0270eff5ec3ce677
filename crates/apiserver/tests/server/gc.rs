//! Garbage collection through ownerReferences: background, multiple owners, orphan and
//! foreground deletion.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, PostParams};
use kube::core::ObjectMeta;
use runctl_apiserver::ApiServer;

fn owned(name: &str, owners: &[&ConfigMap], block: bool, finalizer: bool) -> ConfigMap {
    let refs = owners
        .iter()
        .map(|o| OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: o.metadata.name.clone().unwrap_or_default(),
            uid: o.metadata.uid.clone().unwrap_or_default(),
            block_owner_deletion: block.then_some(true),
            controller: None,
        })
        .collect();
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: Some(refs),
            finalizers: finalizer.then(|| vec!["test/hold".to_string()]),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn plain(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn setup() -> (ApiServer, Api<ConfigMap>) {
    let server = ApiServer::start().await.expect("starts");
    let cms = Api::default_namespaced(server.client());
    (server, cms)
}

#[tokio::test]
async fn background_deletes_dependents_and_keeps_those_with_other_owners() {
    let (_server, cms) = setup().await;
    let a = cms
        .create(&PostParams::default(), &plain("owner-a"))
        .await
        .expect("a");
    let b = cms
        .create(&PostParams::default(), &plain("owner-b"))
        .await
        .expect("b");
    cms.create(
        &PostParams::default(),
        &owned("only-a", &[&a], false, false),
    )
    .await
    .expect("dep");
    cms.create(&PostParams::default(), &owned("held", &[&a], false, true))
        .await
        .expect("dep");
    cms.create(
        &PostParams::default(),
        &owned("both", &[&a, &b], false, false),
    )
    .await
    .expect("dep");

    cms.delete("owner-a", &DeleteParams::default())
        .await
        .expect("delete owner");
    assert!(
        cms.get_opt("only-a").await.expect("get").is_none(),
        "collected"
    );
    let held = cms.get("held").await.expect("kept by its finalizer");
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "but marked for deletion"
    );
    let both = cms.get("both").await.expect("still owned by b");
    let refs = both.metadata.owner_references.unwrap_or_default();
    assert_eq!(
        refs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        vec!["owner-b"],
        "dangling reference dropped"
    );
}

#[tokio::test]
async fn orphan_keeps_dependents_without_the_reference() {
    let (_server, cms) = setup().await;
    let a = cms
        .create(&PostParams::default(), &plain("owner"))
        .await
        .expect("owner");
    cms.create(&PostParams::default(), &owned("child", &[&a], false, false))
        .await
        .expect("child");
    cms.delete("owner", &DeleteParams::orphan())
        .await
        .expect("delete");
    let child = cms.get("child").await.expect("orphaned, not deleted");
    assert!(child.metadata.owner_references.is_none());
}

#[tokio::test]
async fn foreground_waits_for_blocking_dependents() {
    let (_server, cms) = setup().await;
    let a = cms
        .create(&PostParams::default(), &plain("owner"))
        .await
        .expect("owner");
    cms.create(&PostParams::default(), &owned("blocker", &[&a], true, true))
        .await
        .expect("child");
    let pending = cms
        .delete("owner", &DeleteParams::foreground())
        .await
        .expect("delete")
        .left()
        .expect("owner waits");
    assert!(
        pending
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"foregroundDeletion".to_string())
    );
    let blocker = cms.get("blocker").await.expect("held by its finalizer");
    assert!(blocker.metadata.deletion_timestamp.is_some());
    assert!(
        cms.get_opt("owner").await.expect("get").is_some(),
        "owner waits for the blocker"
    );

    let mut release = blocker.clone();
    release.metadata.finalizers = None;
    cms.replace("blocker", &PostParams::default(), &release)
        .await
        .expect("release the blocker");
    assert!(cms.get_opt("blocker").await.expect("get").is_none());
    assert!(
        cms.get_opt("owner").await.expect("get").is_none(),
        "owner finishes once nothing blocks"
    );
}
