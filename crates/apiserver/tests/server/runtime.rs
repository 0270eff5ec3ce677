//! kube-runtime against the server: `finalizer()`, the event `Recorder` (create then series
//! patch) and a `Controller` whose status writes settle instead of looping.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalized, finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::common::{Widget, eventually, server, widget};

#[derive(Debug, thiserror::Error)]
#[error("never fails")]
struct Never;

const FINALIZER: &str = "test.runctl.dev/cleanup";

#[tokio::test]
async fn finalizer_flow() {
    let (_server, widgets) = server().await;
    widgets
        .create(&PostParams::default(), &widget("f", "aws", None))
        .await
        .expect("create");
    let (applied, cleaned) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let run = |obj: Arc<Widget>| {
        let (applied, cleaned) = (applied.clone(), cleaned.clone());
        let widgets = widgets.clone();
        async move {
            finalizer(&widgets, FINALIZER, obj, |event| async move {
                match event {
                    Finalized::Apply(_) => applied.fetch_add(1, Ordering::SeqCst),
                    Finalized::Cleanup(_) => cleaned.fetch_add(1, Ordering::SeqCst),
                };
                Ok::<_, Never>(Action::await_change())
            })
            .await
            .expect("finalizer step")
        }
    };
    // First pass adds the finalizer (JSON patch with a test against null).
    run(Arc::new(widgets.get("f").await.expect("get"))).await;
    let obj = widgets.get("f").await.expect("get");
    assert_eq!(obj.finalizers(), &[FINALIZER.to_string()]);
    run(Arc::new(obj)).await;
    assert_eq!(applied.load(Ordering::SeqCst), 1);

    widgets
        .delete("f", &DeleteParams::default())
        .await
        .expect("delete");
    let deleting = widgets.get("f").await.expect("kept by finalizer");
    assert!(deleting.meta().deletion_timestamp.is_some());
    run(Arc::new(deleting)).await;
    assert_eq!(cleaned.load(Ordering::SeqCst), 1);
    assert!(
        widgets.get_opt("f").await.expect("get").is_none(),
        "gone after cleanup"
    );
}

#[tokio::test]
async fn recorder_creates_then_patches_a_series() {
    let (server, widgets) = server().await;
    let obj = widgets
        .create(&PostParams::default(), &widget("e", "aws", None))
        .await
        .expect("create");
    let recorder = Recorder::new(
        server.client(),
        Reporter {
            controller: "runctl-test".into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "Launched".into(),
        note: Some("machine up".into()),
        action: "Launch".into(),
        secondary: None,
    };
    let reference = obj.object_ref(&());
    recorder
        .publish(&event, &reference)
        .await
        .expect("first publish creates");
    recorder
        .publish(&event, &reference)
        .await
        .expect("second publish patches");
    let events: Api<K8sEvent> = Api::namespaced(server.client(), "default");
    let list = events.list(&ListParams::default()).await.expect("list");
    assert_eq!(list.items.len(), 1, "one event with a series");
    assert_eq!(list.items[0].series.as_ref().map(|s| s.count), Some(2));
    let stats = server.stats();
    assert_eq!(
        stats.count(runctl_apiserver::Verb::Create, "events.events.k8s.io"),
        1
    );
    assert_eq!(
        stats.count(runctl_apiserver::Verb::Patch, "events.events.k8s.io"),
        1
    );
}

#[tokio::test]
async fn controller_status_writes_settle() {
    let (server, widgets) = server().await;
    widgets
        .create(&PostParams::default(), &widget("c", "aws", Some(1)))
        .await
        .expect("create");
    let reconciles = Arc::new(AtomicUsize::new(0));
    let context = (widgets.clone(), reconciles.clone());
    let controller = Controller::new(widgets.clone(), watcher::Config::default())
        .run(
            |obj: Arc<Widget>, ctx: Arc<(Api<Widget>, Arc<AtomicUsize>)>| async move {
                ctx.1.fetch_add(1, Ordering::SeqCst);
                let status = json!({"apiVersion": "test.runctl.dev/v1", "kind": "Widget", "status": {"state": "Ready"}});
                ctx.0.patch_status(&obj.name_any(), &PatchParams::apply("runctl-test").force(), &Patch::Apply(status)).await?;
                Ok::<_, kube::Error>(Action::await_change())
            },
            |_, _, _| Action::requeue(Duration::from_millis(100)),
            Arc::new(context),
        )
        .for_each(|_| async {});
    let handle = tokio::spawn(controller);
    eventually(|| async {
        widgets
            .get("c")
            .await
            .ok()
            .and_then(|w| w.status)
            .and_then(|s| s.state)
    })
    .await;
    // The status write triggers exactly one more reconcile, whose identical write is a no-op
    // that triggers nothing: the count settles at two.
    let counter = reconciles.clone();
    eventually(|| {
        let counter = counter.clone();
        async move { (counter.load(Ordering::SeqCst) >= 2).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reconciles.load(Ordering::SeqCst), 2, "no hot loop");
    handle.abort();
    drop(server);
}
