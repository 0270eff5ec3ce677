//! Adding a controller's finalizer without a second trip through the work queue.
//!
//! kube-runtime's `finalizer()` shell adds a missing finalizer and then ends the reconcile; the
//! work happens in the next reconcile, triggered by the patch's watch event. Under a burst of new
//! objects that is one more wait behind every other queued object before a machine is asked for.
//! [`ensure`] adds the finalizer with the same guarded JSON patch (it fails instead of
//! duplicating a finalizer someone else added meanwhile) and hands back the patched object, so
//! the same reconcile can go on with `finalizer()` seeing its finalizer in place.

use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The patch that adds `finalizer` to an object whose finalizers are `current`; it fails (422)
/// when the list changed since it was read.
pub fn add_patch(current: &[String], finalizer: &str) -> json_patch::Patch {
    let ops = if current.is_empty() {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
        ])
    } else {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": current},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
        ])
    };
    // The operations above are well-formed JSON patch operations.
    serde_json::from_value(ops).expect("valid JSON patch")
}

/// `obj` with `finalizer` in place: unchanged when it has it or is being deleted (then the
/// finalizer shell decides), else patched and returned as the API server stored it.
pub async fn ensure<K>(api: &Api<K>, obj: Arc<K>, finalizer: &str) -> Result<Arc<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let has = obj.finalizers().iter().any(|f| f == finalizer);
    if has || obj.meta().deletion_timestamp.is_some() {
        return Ok(obj);
    }
    let patch = add_patch(obj.finalizers(), finalizer);
    let patched = api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await?;
    Ok(Arc::new(patched))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_is_guarded_by_the_list_it_read() {
        let first = serde_json::to_value(add_patch(&[], "runctl.dev/x")).unwrap();
        assert_eq!(
            first,
            serde_json::json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["runctl.dev/x"]},
            ])
        );
        let more = serde_json::to_value(add_patch(&["other".into()], "runctl.dev/x")).unwrap();
        assert_eq!(
            more,
            serde_json::json!([
                {"op": "test", "path": "/metadata/finalizers", "value": ["other"]},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "runctl.dev/x"},
            ])
        );
    }
}
