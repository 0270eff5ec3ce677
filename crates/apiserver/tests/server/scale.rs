//! Many objects and many watchers: every watcher sees every event once, lists return everything.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::core::ObjectMeta;
use runctl_apiserver::{ApiServer, Verb};

const OBJECTS: usize = 2_000;
const WATCHERS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_objects_twenty_watchers() {
    let server = ApiServer::start().await.expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let rv = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let mut watchers = Vec::new();
    for i in 0..WATCHERS {
        // Half watch everything, half only the even-labelled objects.
        let params = if i % 2 == 0 {
            WatchParams::default()
        } else {
            WatchParams::default().labels("parity=even")
        };
        let stream = cms
            .watch(&params.disable_bookmarks(), &rv)
            .await
            .expect("watch")
            .boxed();
        let expected = if i % 2 == 0 { OBJECTS } else { OBJECTS / 2 };
        watchers.push(tokio::spawn(async move {
            let mut stream = stream;
            let mut added = 0;
            while added < expected {
                match tokio::time::timeout(Duration::from_secs(30), stream.try_next()).await {
                    Ok(Ok(Some(WatchEvent::Added(_)))) => added += 1,
                    Ok(Ok(Some(other))) => panic!("unexpected {other:?}"),
                    other => panic!("stream ended early after {added}: {other:?}"),
                }
            }
            added
        }));
    }
    stream::iter(0..OBJECTS)
        .map(|i| {
            let cms = cms.clone();
            async move {
                let parity = if i % 2 == 0 { "even" } else { "odd" };
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("cm-{i:05}")),
                        labels: Some([("parity".to_string(), parity.to_string())].into()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                cms.create(&PostParams::default(), &cm)
                    .await
                    .expect("create");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for (i, watcher) in watchers.into_iter().enumerate() {
        let expected = if i % 2 == 0 { OBJECTS } else { OBJECTS / 2 };
        assert_eq!(watcher.await.expect("watcher task"), expected);
    }
    assert_eq!(
        cms.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        OBJECTS
    );
    assert_eq!(
        cms.list(&ListParams::default().labels("parity=odd"))
            .await
            .expect("list")
            .items
            .len(),
        OBJECTS / 2
    );
    let stats = server.stats();
    assert_eq!(stats.count(Verb::Create, "configmaps"), OBJECTS as u64);
    assert_eq!(stats.watches_opened, WATCHERS as u64);
}
