//! Watches: resume, bookmarks, 410 for compacted history, streaming lists, selectors, timeouts,
//! fault-injected expiry, and kube-runtime's watcher seeing ADDED/MODIFIED/DELETED.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use http::Request;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::ObjectMeta;
use kube::runtime::watcher;
use runctl_apiserver::{ApiServer, ServerConfig};
use serde_json::json;

use crate::common::raw;

fn configmap(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn next<S, T>(stream: &mut S) -> T
where
    S: futures::Stream<Item = Result<T, kube::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("event in time")
        .expect("stream open")
        .expect("no error")
}

fn name_of(event: &WatchEvent<ConfigMap>) -> (String, String) {
    match event {
        WatchEvent::Added(o) => ("ADDED".into(), o.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Modified(o) => (
            "MODIFIED".into(),
            o.metadata.name.clone().unwrap_or_default(),
        ),
        WatchEvent::Deleted(o) => (
            "DELETED".into(),
            o.metadata.name.clone().unwrap_or_default(),
        ),
        WatchEvent::Bookmark(b) => ("BOOKMARK".into(), b.metadata.resource_version.clone()),
        WatchEvent::Error(e) => ("ERROR".into(), e.reason.clone()),
    }
}

#[tokio::test]
async fn resume_from_resource_version_and_live_events() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let a = cms
        .create(&PostParams::default(), &configmap("a", &[]))
        .await
        .expect("a");
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .expect("modify");
    let rv = a.metadata.resource_version.expect("rv");
    let mut stream = cms
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .expect("watch")
        .boxed();
    assert_eq!(
        name_of(&next(&mut stream).await),
        ("MODIFIED".into(), "a".into())
    );
    cms.create(&PostParams::default(), &configmap("b", &[]))
        .await
        .expect("b");
    assert_eq!(
        name_of(&next(&mut stream).await),
        ("ADDED".into(), "b".into())
    );
    cms.delete("b", &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(
        name_of(&next(&mut stream).await),
        ("DELETED".into(), "b".into())
    );
    assert_eq!(server.stats().watches_opened, 1);
}

#[tokio::test]
async fn bookmarks_and_timeout() {
    let config = ServerConfig {
        bookmark_interval: Duration::from_millis(50),
        ..ServerConfig::default()
    };
    let server = ApiServer::start_with(config).await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let list = cms.list(&ListParams::default()).await.expect("list");
    let rv = list.metadata.resource_version.expect("rv");
    let mut stream = cms
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .expect("watch")
        .boxed();
    let event = next(&mut stream).await;
    assert_eq!(name_of(&event).0, "BOOKMARK");
    // timeoutSeconds ends the stream.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(item) = stream.next().await {
            item.expect("no error");
        }
    })
    .await;
    assert!(ended.is_ok(), "stream ends after timeoutSeconds");
}

/// kube-apiserver's versions continue etcd's revision and its watch history starts when it
/// starts: a version from before the server (here `1`) is expired, not replayed.
#[tokio::test]
async fn a_resource_version_older_than_the_server_is_expired() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let created = cms
        .create(&PostParams::default(), &configmap("c0", &[]))
        .await
        .expect("c0");
    let rv: u64 = created
        .metadata
        .resource_version
        .expect("rv")
        .parse()
        .expect("number");
    assert!(rv > 1, "versions start above 1: {rv}");
    let mut stream = cms
        .watch(&WatchParams::default(), "1")
        .await
        .expect("watch")
        .boxed();
    match next(&mut stream).await {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn too_old_resource_version_is_expired() {
    let config = ServerConfig {
        watch_history: 2,
        ..ServerConfig::default()
    };
    let server = ApiServer::start_with(config).await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let first = cms
        .create(&PostParams::default(), &configmap("c0", &[]))
        .await
        .expect("c0");
    for i in 1..5 {
        cms.create(&PostParams::default(), &configmap(&format!("c{i}"), &[]))
            .await
            .expect("create");
    }
    let rv = first.metadata.resource_version.expect("rv");
    let mut stream = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();
    match next(&mut stream).await {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn streaming_list_ends_with_initial_events_bookmark() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(&PostParams::default(), &configmap("s1", &[]))
        .await
        .expect("s1");
    cms.create(&PostParams::default(), &configmap("s2", &[]))
        .await
        .expect("s2");
    let mut stream = cms
        .watch(&WatchParams::streaming_lists(), "")
        .await
        .expect("watch")
        .boxed();
    assert_eq!(
        name_of(&next(&mut stream).await),
        ("ADDED".into(), "s1".into())
    );
    assert_eq!(
        name_of(&next(&mut stream).await),
        ("ADDED".into(), "s2".into())
    );
    match next(&mut stream).await {
        WatchEvent::Bookmark(b) => assert_eq!(
            b.metadata
                .annotations
                .get("k8s.io/initial-events-end")
                .map(String::as_str),
            Some("true")
        ),
        other => panic!("expected the initial-events-end bookmark, got {other:?}"),
    }
}

#[tokio::test]
async fn selector_watch_sees_leaving_objects_as_deleted() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let list = cms.list(&ListParams::default()).await.expect("list");
    let rv = list.metadata.resource_version.expect("rv");
    let mut stream = cms
        .watch(
            &WatchParams::default().labels("team=a").disable_bookmarks(),
            &rv,
        )
        .await
        .expect("watch")
        .boxed();
    cms.create(
        &PostParams::default(),
        &configmap("other", &[("team", "b")]),
    )
    .await
    .expect("other");
    cms.create(&PostParams::default(), &configmap("mine", &[("team", "a")]))
        .await
        .expect("mine");
    assert_eq!(
        name_of(&next(&mut stream).await),
        ("ADDED".into(), "mine".into())
    );
    cms.patch(
        "mine",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "b"}}})),
    )
    .await
    .expect("relabel");
    assert_eq!(
        name_of(&next(&mut stream).await),
        ("DELETED".into(), "mine".into())
    );
    cms.patch(
        "other",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
    )
    .await
    .expect("relabel");
    assert_eq!(
        name_of(&next(&mut stream).await),
        ("ADDED".into(), "other".into())
    );
}

#[tokio::test]
async fn fault_expires_open_watches() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let list = cms.list(&ListParams::default()).await.expect("list");
    let rv = list.metadata.resource_version.expect("rv");
    let mut stream = cms
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .expect("watch")
        .boxed();
    cms.create(&PostParams::default(), &configmap("x", &[]))
        .await
        .expect("x");
    assert_eq!(name_of(&next(&mut stream).await).0, "ADDED");
    server.faults().expire_watches();
    assert_eq!(
        name_of(&next(&mut stream).await),
        ("ERROR".into(), "Expired".into())
    );
}

#[tokio::test]
async fn watch_stream_is_json_lines() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(&PostParams::default(), &configmap("j", &[]))
        .await
        .expect("j");
    let request = Request::get("/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1")
        .body(vec![])
        .expect("request");
    let (status, body, headers) = raw(&server, request).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    assert_eq!(body["type"], json!("ADDED"), "one JSON event per line");
}

#[tokio::test]
async fn runtime_watcher_sees_added_modified_deleted() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    let driver = async {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(5), events.try_next())
                .await
                .expect("in time")
                .expect("no error")
                .expect("open");
            match event {
                watcher::Event::InitDone => {
                    cms.create(&PostParams::default(), &configmap("w", &[]))
                        .await
                        .expect("create");
                }
                watcher::Event::Apply(cm) if cm.data.is_none() => {
                    seen.push("added");
                    cms.patch(
                        "w",
                        &PatchParams::default(),
                        &Patch::Merge(json!({"data": {"k": "v"}})),
                    )
                    .await
                    .expect("modify");
                }
                watcher::Event::Apply(_) => {
                    seen.push("modified");
                    cms.delete("w", &DeleteParams::default())
                        .await
                        .expect("delete");
                }
                watcher::Event::Delete(_) => {
                    seen.push("deleted");
                    break;
                }
                _ => {}
            }
        }
    };
    driver.await;
    assert_eq!(seen, vec!["added", "modified", "deleted"]);
}

#[tokio::test]
async fn runtime_watcher_with_streaming_lists() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(&PostParams::default(), &configmap("early", &[]))
        .await
        .expect("early");
    let mut events = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await
            .expect("in time")
            .expect("no error")
            .expect("open");
        match event {
            watcher::Event::InitApply(cm) => seen.push(cm.metadata.name.unwrap_or_default()),
            watcher::Event::InitDone => {
                cms.create(&PostParams::default(), &configmap("late", &[]))
                    .await
                    .expect("late");
            }
            watcher::Event::Apply(cm) => {
                seen.push(cm.metadata.name.unwrap_or_default());
                break;
            }
            _ => {}
        }
    }
    assert_eq!(seen, vec!["early".to_string(), "late".to_string()]);
    assert_eq!(
        server.stats().total(runctl_apiserver::Verb::List),
        0,
        "a streaming list needs no LIST"
    );
}

#[tokio::test]
async fn runtime_watcher_relists_after_expiry() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(&PostParams::default(), &configmap("r", &[]))
        .await
        .expect("r");
    server.reset_stats();
    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    let (mut inits, mut expired) = (0, false);
    let run = async {
        while inits < 2 {
            tokio::select! {
                event = events.next() => match event.expect("open") {
                    Ok(watcher::Event::InitDone) => inits += 1,
                    Ok(_) => {}
                    Err(error) => assert!(error.to_string().contains("410") || error.to_string().contains("Expired"), "{error}"),
                },
                _ = tokio::time::sleep(Duration::from_millis(20)), if inits == 1 && !expired => {
                    if server.stats().watches_opened >= 1 {
                        server.faults().expire_watches();
                        expired = true;
                    }
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("relisted in time");
    assert!(expired);
    assert!(
        server.stats().total(runctl_apiserver::Verb::List) >= 2,
        "the watcher listed again"
    );
}

#[tokio::test]
async fn metadata_watcher_gets_partial_objects() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(&PostParams::default(), &configmap("m", &[("a", "b")]))
        .await
        .expect("m");
    let metas = cms
        .list_metadata(&ListParams::default())
        .await
        .expect("metadata list");
    assert_eq!(metas.items.len(), 1);
    assert_eq!(
        metas.items[0]
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("a"))
            .map(String::as_str),
        Some("b")
    );
    let partial: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::default_namespaced(server.client());
    let mut events = watcher(partial, watcher::Config::default()).boxed();
    let mut saw_init_apply = false;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await
            .expect("in time")
            .expect("no error")
            .expect("open");
        match event {
            watcher::Event::InitApply(meta) => {
                assert_eq!(meta.metadata.name.as_deref(), Some("m"));
                saw_init_apply = true;
            }
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert!(saw_init_apply);
}

#[tokio::test]
async fn shutdown_ends_open_watches() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let watching = tokio::spawn(async move {
        let mut events = watcher(cms, watcher::Config::default()).boxed();
        // Runs until the server goes away and the watcher starts failing.
        while let Some(event) = events.next().await {
            if event.is_err() {
                break;
            }
        }
    });
    eventually_watching(&server).await;
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown completes with a watch open");
    tokio::time::timeout(Duration::from_secs(5), watching)
        .await
        .expect("watcher sees the end")
        .expect("task");
}

async fn eventually_watching(server: &ApiServer) {
    for _ in 0..250 {
        if server.stats().watches_opened > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no watch opened");
}
