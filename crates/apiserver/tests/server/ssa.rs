//! Server-side apply: create, update, removal of fields a manager stopped applying, conflicts
//! and force, and status apply.

use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::common::server;

fn apply(manager: &str) -> PatchParams {
    PatchParams::apply(manager)
}

#[tokio::test]
async fn apply_create_update_remove_conflict_force() {
    let (_server, widgets) = server().await;
    let body = |spec: serde_json::Value| json!({"apiVersion": "test.runctl.dev/v1", "kind": "Widget", "metadata": {"name": "s"}, "spec": spec});

    let created = widgets
        .patch(
            "s",
            &apply("alice"),
            &Patch::Apply(body(
                json!({"provider": "aws", "note": "n1", "gpuCount": 2}),
            )),
        )
        .await
        .expect("apply creates");
    assert_eq!(created.spec.note.as_deref(), Some("n1"));
    let managers: Vec<_> = created
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.manager, m.operation))
        .collect();
    assert_eq!(managers, vec![(Some("alice".into()), Some("Apply".into()))]);

    let same = widgets
        .patch(
            "s",
            &apply("alice"),
            &Patch::Apply(body(
                json!({"provider": "aws", "note": "n1", "gpuCount": 2}),
            )),
        )
        .await
        .expect("reapply");
    assert_eq!(
        same.metadata.resource_version, created.metadata.resource_version,
        "identical apply is a no-op"
    );

    let dropped = widgets
        .patch(
            "s",
            &apply("alice"),
            &Patch::Apply(body(json!({"provider": "aws", "gpuCount": 2}))),
        )
        .await
        .expect("drop note");
    assert_eq!(
        dropped.spec.note, None,
        "a field alice stopped applying is removed"
    );

    widgets
        .patch(
            "s",
            &apply("bob"),
            &Patch::Apply(body(json!({"note": "bob's"}))),
        )
        .await
        .expect("bob adds a field");
    let err = widgets
        .patch(
            "s",
            &apply("alice"),
            &Patch::Apply(body(
                json!({"provider": "aws", "gpuCount": 2, "note": "mine"}),
            )),
        )
        .await
        .expect_err("conflict");
    match err {
        kube::Error::Api(status) => {
            assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
            assert!(
                status.message.contains("conflict with \"bob\""),
                "{}",
                status.message
            );
            let causes = status.details.map(|d| d.causes).unwrap_or_default();
            assert_eq!(causes[0].field, ".spec.note");
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    let forced = widgets
        .patch(
            "s",
            &apply("alice").force(),
            &Patch::Apply(body(
                json!({"provider": "aws", "gpuCount": 2, "note": "mine"}),
            )),
        )
        .await
        .expect("force");
    assert_eq!(forced.spec.note.as_deref(), Some("mine"));
    let owners: Vec<_> = forced
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(owners, vec!["alice".to_string()], "bob lost his only field");
}

#[tokio::test]
async fn apply_status_and_update_ownership() {
    let (_server, widgets) = server().await;
    let obj = json!({"apiVersion": "test.runctl.dev/v1", "kind": "Widget", "metadata": {"name": "t"}, "spec": {"provider": "aws"}});
    widgets
        .patch("t", &apply("ctl"), &Patch::Apply(obj))
        .await
        .expect("create");
    let status = json!({"apiVersion": "test.runctl.dev/v1", "kind": "Widget", "metadata": {"name": "t"}, "status": {"state": "Ready"}});
    let written = widgets
        .patch_status("t", &apply("ctl").force(), &Patch::Apply(status.clone()))
        .await
        .expect("status apply");
    assert_eq!(
        written.status.and_then(|s| s.state).as_deref(),
        Some("Ready")
    );
    assert_eq!(written.metadata.generation, Some(1));
    let again = widgets
        .patch_status("t", &apply("ctl").force(), &Patch::Apply(status))
        .await
        .expect("same status");
    assert_eq!(
        again.metadata.resource_version, written.metadata.resource_version,
        "no hot loop on identical status"
    );

    // An update (merge patch) takes the field; a later apply without force conflicts.
    widgets
        .patch(
            "t",
            &PatchParams {
                field_manager: Some("editor".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"spec": {"provider": "lyceum"}})),
        )
        .await
        .expect("edit");
    let obj = json!({"apiVersion": "test.runctl.dev/v1", "kind": "Widget", "metadata": {"name": "t"}, "spec": {"provider": "aws"}});
    assert!(
        widgets
            .patch("t", &apply("ctl"), &Patch::Apply(obj))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn pruned_fields_are_owned_by_nobody() {
    let (_server, widgets) = server().await;
    let obj = json!({"apiVersion": "test.runctl.dev/v1", "kind": "Widget", "metadata": {"name": "p"},
                     "spec": {"provider": "aws", "bogus": 1}});
    let created = widgets
        .patch("p", &apply("alice"), &Patch::Apply(obj.clone()))
        .await
        .expect("apply");
    let fields = serde_json::to_string(&created.metadata.managed_fields).expect("json");
    assert!(
        fields.contains("f:provider") && !fields.contains("f:bogus"),
        "{fields}"
    );
    let strict = PatchParams {
        field_validation: Some(kube::api::ValidationDirective::Strict),
        ..apply("alice")
    };
    let err = widgets
        .patch("p", &strict, &Patch::Apply(obj))
        .await
        .expect_err("strict apply");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 400));
}
