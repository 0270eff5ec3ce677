//! Custom resources from a CRD: serving, generation, status isolation, admission (schema and
//! CEL) and the dynamic client.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;

use crate::common::{Widget, WidgetStatus, server, widget};

fn invalid(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(status) if status.code == 422 => status,
        other => panic!("expected 422 Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn crd_is_established_and_discoverable() {
    let (server, _) = server().await;
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    let established = await_condition(
        crds,
        "widgets.test.runctl.dev",
        conditions::is_crd_established(),
    );
    let crd = tokio::time::timeout(std::time::Duration::from_secs(5), established)
        .await
        .expect("in time")
        .expect("watch works");
    assert!(crd.is_some());
    let resources = server
        .client()
        .list_api_group_resources("test.runctl.dev/v1")
        .await
        .expect("group resources");
    let main = resources
        .resources
        .iter()
        .find(|r| r.name == "widgets")
        .expect("widgets served");
    assert_eq!(main.short_names, Some(vec!["wd".to_string()]));
    assert_eq!(main.categories, Some(vec!["testing".to_string()]));
    assert!(
        resources
            .resources
            .iter()
            .any(|r| r.name == "widgets/status")
    );
}

#[tokio::test]
async fn crd_name_must_match_plural_and_group() {
    let (server, _) = server().await;
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    let mut crd = <Widget as kube::CustomResourceExt>::crd();
    crd.metadata.name = Some("wrong.test.runctl.dev".into());
    let err = crds
        .create(&PostParams::default(), &crd)
        .await
        .expect_err("bad name");
    assert!(
        matches!(err, kube::Error::Api(s) if s.code == 422 && s.message.contains("spec.names.plural"))
    );
}

#[tokio::test]
async fn generation_and_status_isolation() {
    let (_server, widgets) = server().await;
    let created = widgets
        .create(&PostParams::default(), &widget("w", "aws", Some(2)))
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));

    // Status through the main resource is ignored; metadata changes keep generation.
    let labelled = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"a": "b"}}, "status": {"state": "Bogus"}}),
            ),
        )
        .await
        .expect("label");
    assert_eq!(labelled.metadata.generation, Some(1));
    assert!(labelled.status.is_none());
    assert_ne!(
        labelled.metadata.resource_version,
        created.metadata.resource_version
    );

    // Status writes change only status, bump resourceVersion, not generation.
    let status = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"state": "Running"}, "spec": {"note": "ignored"}})),
        )
        .await
        .expect("status");
    assert_eq!(
        status.status,
        Some(WidgetStatus {
            state: Some("Running".into())
        })
    );
    assert_eq!(status.spec.note, None);
    assert_eq!(status.metadata.generation, Some(1));

    let noted = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"note": "hi"}})),
        )
        .await
        .expect("spec");
    assert_eq!(noted.metadata.generation, Some(2));
    let again = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"note": "hi"}})),
        )
        .await
        .expect("no-op");
    assert_eq!(
        again.metadata.resource_version, noted.metadata.resource_version,
        "a no-op keeps the resourceVersion"
    );

    // Replace of a custom resource needs a resourceVersion.
    let mut unversioned = again.clone();
    unversioned.metadata.resource_version = None;
    assert_eq!(
        invalid(
            widgets
                .replace("w", &PostParams::default(), &unversioned)
                .await
                .expect_err("needs rv")
        )
        .reason,
        "Invalid"
    );
}

#[tokio::test]
async fn cel_rejection_has_field_path_and_message() {
    let (_server, widgets) = server().await;
    let status = invalid(
        widgets
            .create(&PostParams::default(), &widget("bad", "lyceum", Some(3)))
            .await
            .expect_err("3 GPUs rejected"),
    );
    assert_eq!(status.reason, "Invalid");
    assert_eq!(
        status.message,
        "Widget.test.runctl.dev \"bad\" is invalid: spec.gpuCount: Invalid value: Lyceum machines take 1, 2, 4 or 8 GPUs"
    );
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.clone())
        .unwrap_or_default();
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].field, "spec.gpuCount");
    assert_eq!(causes[0].reason, "FieldValueInvalid");
    assert!(
        causes[0]
            .message
            .ends_with("Lyceum machines take 1, 2, 4 or 8 GPUs")
    );

    widgets
        .create(&PostParams::default(), &widget("good", "lyceum", Some(4)))
        .await
        .expect("4 GPUs accepted");
    // Transition rule: gpuCount is immutable.
    let err = widgets
        .patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"gpuCount": 8}})),
        )
        .await
        .expect_err("immutable");
    let status = invalid(err);
    assert!(
        status
            .message
            .contains("spec.gpuCount: Invalid value: 8: gpuCount is immutable"),
        "{}",
        status.message
    );
    // Structural: bounds and types.
    let err = widgets
        .patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"note": 5}})),
        )
        .await
        .expect_err("type");
    assert!(
        invalid(err)
            .message
            .contains("spec.note in body must be of type string")
    );
    let status = invalid(
        widgets
            .create(&PostParams::default(), &widget("big", "aws", Some(32)))
            .await
            .expect_err("max"),
    );
    assert!(
        status
            .message
            .contains("spec.gpuCount in body should be less than or equal to 16"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn json_patch_test_null_and_pruning_with_dynamic_client() {
    let (server, widgets) = server().await;
    widgets
        .create(&PostParams::default(), &widget("d", "aws", None))
        .await
        .expect("create");
    let gvk = GroupVersionKind::gvk("test.runctl.dev", "v1", "Widget");
    let dynamic: Api<DynamicObject> =
        Api::namespaced_with(server.client(), "default", &ApiResource::from_gvk(&gvk));
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["test/fin"]},
    ]))
    .expect("patch");
    let patched = dynamic
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Json::<()>(patch.clone()),
        )
        .await
        .expect("test null passes");
    assert_eq!(
        patched.metadata.finalizers,
        Some(vec!["test/fin".to_string()])
    );
    let err = dynamic
        .patch("d", &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .expect_err("now the test fails");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 422));

    let mut obj = dynamic.get("d").await.expect("get");
    obj.data["spec"]["unknownField"] = json!("dropped");
    obj.data["spec"]["note"] = json!("kept");
    let replaced = dynamic
        .replace("d", &PostParams::default(), &obj)
        .await
        .expect("replace");
    assert!(
        replaced.data["spec"].get("unknownField").is_none(),
        "unknown fields are pruned"
    );
    assert_eq!(replaced.data["spec"]["note"], json!("kept"));
    assert_eq!(
        replaced.types.as_ref().map(|t| t.kind.as_str()),
        Some("Widget")
    );
    let listed = dynamic.list(&Default::default()).await.expect("list");
    assert_eq!(listed.items.len(), 1);
}

#[tokio::test]
async fn strict_field_validation_rejects_unknown_fields() {
    let (_server, widgets) = server().await;
    widgets
        .create(&PostParams::default(), &widget("v", "aws", None))
        .await
        .expect("create");
    let strict = PatchParams {
        field_validation: Some(kube::api::ValidationDirective::Strict),
        ..Default::default()
    };
    let err = widgets
        .patch("v", &strict, &Patch::Merge(json!({"spec": {"bogus": 1}})))
        .await
        .expect_err("strict");
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest"));
            assert!(
                s.message.contains("unknown field \"spec.bogus\""),
                "{}",
                s.message
            );
        }
        other => panic!("expected 400, got {other:?}"),
    }
    let lenient = widgets
        .patch(
            "v",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"bogus": 1}})),
        )
        .await
        .expect("pruned");
    assert_eq!(lenient.metadata.generation, Some(1), "pruned to a no-op");
}

#[tokio::test]
async fn strategic_merge_is_refused_for_custom_resources() {
    let (_server, widgets) = server().await;
    widgets
        .create(&PostParams::default(), &widget("s", "aws", None))
        .await
        .expect("create");
    let err = widgets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"note": "x"}})),
        )
        .await
        .expect_err("415");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 415));
    let _: Option<Widget> = widgets.get_opt("s").await.expect("still there");
}
