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
/// finalizer shell decides), else patched and returned as the API server stored it. When the
/// guarded patch fails because the list changed meanwhile (422), the object is read and, unless
/// it has the finalizer now, patched once more from what was read.
pub async fn ensure<K>(api: &Api<K>, obj: Arc<K>, finalizer: &str) -> Result<Arc<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    if has_or_deleting(obj.as_ref(), finalizer) {
        return Ok(obj);
    }
    let name = obj.name_any();
    match add(api, &name, obj.finalizers(), finalizer).await {
        // The list changed since the cache's copy was read: most often this controller's own
        // earlier patch, whose watch event has not reached the cache yet (a reconcile woken by
        // another watch). The object as stored decides, and a reconcile goes on with it instead
        // of failing into backoff.
        Err(kube::Error::Api(s)) if s.code == 422 => {
            let fresh = api.get(&name).await?;
            if has_or_deleting(&fresh, finalizer) {
                return Ok(Arc::new(fresh));
            }
            Ok(Arc::new(
                add(api, &name, fresh.finalizers(), finalizer).await?,
            ))
        }
        other => other.map(Arc::new),
    }
}

fn has_or_deleting<K: Resource>(obj: &K, finalizer: &str) -> bool {
    obj.finalizers().iter().any(|f| f == finalizer) || obj.meta().deletion_timestamp.is_some()
}

/// Adds `finalizer` to the object `name` whose finalizers were `current` ([`add_patch`]).
async fn add<K>(
    api: &Api<K>,
    name: &str,
    current: &[String],
    finalizer: &str,
) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = add_patch(current, finalizer);
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
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
