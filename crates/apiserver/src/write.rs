//! The write pipeline shared by create, update, patch and apply: metadata rules, status
//! isolation, admission of custom resources, generation, no-op detection and finalizers.
//! Everything here runs under the store lock.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::crds;
use crate::delete;
use crate::error::{ApiError, Cause};
use crate::fieldpath::Lists;
use crate::managed::{self, Entry, Scope, Writer};
use crate::namespaces;
use crate::resources::ResourceType;
use crate::schema;
use crate::store::{EventKind, Store};

/// Who writes, when, and how.
pub(crate) struct WriteCtx<'a> {
    pub rt: &'a ResourceType,
    pub namespace: &'a str,
    pub manager: &'a str,
    pub now: &'a str,
    pub dry_run: bool,
    pub scope: Scope,
    /// `fieldValidation=Strict`: unknown fields are an error instead of being dropped.
    pub strict: bool,
}

impl WriteCtx<'_> {
    /// The writer for ownership records.
    pub(crate) fn writer(&self) -> Writer<'_> {
        Writer {
            manager: self.manager,
            api_version: "",
            now: self.now,
            scope: self.scope,
            lists: Lists::new(self.rt.schema.as_deref()),
        }
    }

    fn conflict(&self, name: &str) -> ApiError {
        ApiError::stale(&self.rt.group, &self.rt.plural, name)
    }

    pub(crate) fn invalid(&self, name: &str, causes: Vec<Cause>) -> ApiError {
        ApiError::invalid(
            &self.rt.kind_group(),
            &self.rt.group,
            &self.rt.kind,
            name,
            causes,
        )
    }
}

/// The scope of a write to `subresource` of `rt`.
pub(crate) fn scope_for(rt: &ResourceType, subresource: Option<&str>) -> Scope {
    match subresource {
        Some("status") => Scope::Status,
        _ => Scope::Main {
            exclude_status: rt.status,
        },
    }
}

pub(crate) fn meta(obj: &Value) -> &Value {
    &obj["metadata"]
}

pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(map) => map,
        None => unreachable!("metadata was just made an object"),
    }
}

pub(crate) fn name_of(obj: &Value) -> &str {
    meta(obj)["name"].as_str().unwrap_or_default()
}

pub(crate) fn rv_of(obj: &Value) -> &str {
    meta(obj)["resourceVersion"].as_str().unwrap_or_default()
}

pub(crate) fn finalizers(obj: &Value) -> Vec<&str> {
    meta(obj)["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

pub(crate) fn is_deleting(obj: &Value) -> bool {
    meta(obj)
        .get("deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// Everything outside metadata (and status when it is a subresource): a change bumps generation.
fn spec_part(rt: &ResourceType, obj: &Value) -> Map<String, Value> {
    obj.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !(matches!(k.as_str(), "metadata" | "apiVersion" | "kind")
                        || (rt.status && k.as_str() == "status"))
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Compare ignoring resourceVersion and managedFields timestamps.
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        let m = meta_mut(&mut v);
        m.remove("resourceVersion");
        m.remove("managedFields");
        v
    };
    strip(a) == strip(b)
        && managed::same_ownership(&managed::parse_entries(a), &managed::parse_entries(b))
}

/// Set type meta from the resource and check what the client sent.
fn type_meta(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    if let Some(kind) = obj["kind"].as_str()
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the server rejected our request due to an error in our request: kind {kind:?} does not match {:?}",
            rt.kind
        )));
    }
    check_api_version(rt, obj)?;
    obj["apiVersion"] = json!(rt.api_version());
    obj["kind"] = json!(rt.kind);
    Ok(())
}

/// A body's `apiVersion`, when given, must be the one in the URL.
pub(crate) fn check_api_version(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let expected = rt.api_version();
    match obj["apiVersion"].as_str() {
        Some(sent) if !sent.is_empty() && sent != expected => Err(ApiError::bad_request(format!(
            "the API version in the data ({sent}) does not match the expected API version ({expected})"
        ))),
        _ => Ok(()),
    }
}

fn set_managed(obj: &mut Value, entries: &[Entry], api_version: &str) {
    let mut entries = entries.to_vec();
    for e in entries.iter_mut().filter(|e| e.api_version.is_empty()) {
        e.api_version = api_version.to_string();
    }
    let rendered = managed::render_entries(&entries);
    let m = meta_mut(obj);
    if rendered.as_array().is_some_and(Vec::is_empty) {
        m.remove("managedFields");
    } else {
        m.insert("managedFields".into(), rendered);
    }
}

/// A random `generateName` suffix.
fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Secrets: fold `stringData` into base64 `data` and default `type` to `Opaque`, as the real
/// apiserver does.
fn fold_string_data(rt: &ResourceType, obj: &mut Value) {
    use base64::Engine;
    let secret = rt.group.is_empty() && rt.plural == "secrets";
    if secret && obj["type"].as_str().is_none_or(str::is_empty) {
        obj["type"] = json!("Opaque");
    }
    if secret
        && let Some(Value::Object(string_data)) =
            obj.as_object_mut().and_then(|m| m.remove("stringData"))
    {
        if !obj["data"].is_object() {
            obj["data"] = json!({});
        }
        for (k, v) in string_data {
            let text = v.as_str().unwrap_or_default();
            obj["data"][k.as_str()] = json!(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }
}

/// A body's `metadata.namespace`, when given, must be the one in the URL.
pub(crate) fn check_namespace(ctx: &WriteCtx<'_>, obj: &Value) -> Result<(), ApiError> {
    match meta(obj)["namespace"].as_str() {
        Some(ns) if ctx.rt.namespaced && !ns.is_empty() && ns != ctx.namespace => {
            Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ))
        }
        _ => Ok(()),
    }
}

/// Normalise a create body: type meta, namespace, name or generateName, system metadata.
fn prepare_create(store: &Store, ctx: &WriteCtx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let rt = ctx.rt;
    type_meta(rt, obj)?;
    if !rv_of(obj).is_empty() {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    if rt.namespaced {
        check_namespace(ctx, obj)?;
        if store.get("/namespaces", "", ctx.namespace).is_none() {
            return Err(ApiError::not_found("", "namespaces", ctx.namespace));
        }
        if namespaces::is_terminating(store, ctx.namespace) {
            return Err(ApiError::forbidden(
                &rt.group,
                &rt.plural,
                name_of(obj),
                &format!(
                    "unable to create new content in namespace {} because it is being terminated",
                    ctx.namespace
                ),
            ));
        }
        meta_mut(obj).insert("namespace".into(), json!(ctx.namespace));
    } else {
        meta_mut(obj).remove("namespace");
    }
    if name_of(obj).is_empty() {
        let Some(prefix) = meta(obj)["generateName"].as_str().map(String::from) else {
            return Err(ctx.invalid(
                "",
                vec![Cause::new(
                    "FieldValueRequired",
                    "metadata.name",
                    "Required value: name or generateName is required",
                )],
            ));
        };
        let mut name = format!("{prefix}{}", suffix());
        while store
            .get(&rt.storage_key(), ctx.namespace_key(), &name)
            .is_some()
        {
            name = format!("{prefix}{}", suffix());
        }
        meta_mut(obj).insert("name".into(), json!(name));
    }
    let name = name_of(obj).to_string();
    if let Some(cause) = schema::name_cause(&name) {
        return Err(ctx.invalid(&name, vec![cause]));
    }
    if rt.status
        && let Some(map) = obj.as_object_mut()
    {
        map.remove("status");
    }
    fold_string_data(rt, obj);
    let m = meta_mut(obj);
    for key in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "selfLink",
    ] {
        m.remove(key);
    }
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(ctx.now));
    if rt.has_generation() {
        m.insert("generation".into(), json!(1));
    }
    Ok(())
}

impl WriteCtx<'_> {
    /// The storage namespace key: empty for cluster-scoped resources.
    pub fn namespace_key(&self) -> &str {
        if self.rt.namespaced {
            self.namespace
        } else {
            ""
        }
    }
}

/// Drop fields a custom resource's schema does not declare (a 400 under
/// `fieldValidation=Strict`). Runs before ownership is recorded, so nobody owns pruned fields.
pub(crate) fn prune_unknown(ctx: &WriteCtx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let (true, Some(schema)) = (ctx.rt.custom, ctx.rt.schema.as_deref()) else {
        return Ok(());
    };
    let unknown = schema::prune(schema, obj);
    if ctx.strict && !unknown.is_empty() {
        let fields: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            fields.join(", ")
        )));
    }
    Ok(())
}

/// Default and validate a (pruned) custom resource.
fn admit(ctx: &WriteCtx<'_>, obj: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    let rt = ctx.rt;
    let (true, Some(schema)) = (rt.custom, rt.schema.as_deref()) else {
        return Ok(());
    };
    *obj = schema::default(schema, obj);
    let causes = schema::validate(schema, rt.cel.as_deref(), obj, old);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ctx.invalid(name_of(obj), causes))
    }
}

/// Create `obj` (already carrying its managedFields when `entries` is None).
pub(crate) fn create(
    store: &mut Store,
    ctx: &WriteCtx<'_>,
    mut obj: Value,
    entries: Option<Vec<Entry>>,
) -> Result<Arc<Value>, ApiError> {
    prepare_create(store, ctx, &mut obj)?;
    let name = name_of(&obj).to_string();
    if store
        .get(&ctx.rt.storage_key(), ctx.namespace_key(), &name)
        .is_some()
    {
        return Err(ApiError::already_exists(
            &ctx.rt.group,
            &ctx.rt.plural,
            &name,
        ));
    }
    prune_unknown(ctx, &mut obj)?;
    let entries = entries.unwrap_or_else(|| managed::record_update(None, &obj, &ctx.writer()));
    set_managed(&mut obj, &entries, &ctx.rt.api_version());
    admit(ctx, &mut obj, None)?;
    if ctx.rt.group.is_empty() && ctx.rt.plural == "namespaces" {
        obj["status"] = json!({"phase": "Active"});
    }
    if ctx.rt.plural == "customresourcedefinitions" {
        crds::check(ctx, &obj)?;
        crds::status(&mut obj, None, ctx.now);
    }
    if ctx.dry_run {
        return Ok(Arc::new(obj));
    }
    let rv = store.next_rv();
    meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
    let stored = store.commit(&ctx.rt.storage_key(), EventKind::Added, rv, obj, None);
    if ctx.rt.plural == "customresourcedefinitions" {
        store.registry.install_crd(&stored);
    }
    Ok(stored)
}

/// Check a client-sent resourceVersion against the stored one.
pub(crate) fn check_rv(ctx: &WriteCtx<'_>, sent: &Value, old: &Value) -> Result<(), ApiError> {
    let sent_rv = rv_of(sent);
    if !sent_rv.is_empty() && sent_rv != rv_of(old) {
        return Err(ctx.conflict(name_of(old)));
    }
    Ok(())
}

/// Replace `old` by `new` (a PUT body, a patched object or an applied one). `entries` are the
/// managedFields after an apply; other writes compute them here.
pub(crate) fn update(
    store: &mut Store,
    ctx: &WriteCtx<'_>,
    old: Arc<Value>,
    mut new: Value,
    entries: Option<Vec<Entry>>,
) -> Result<Arc<Value>, ApiError> {
    let rt = ctx.rt;
    type_meta(rt, &mut new)?;
    let name = name_of(&old).to_string();
    if name_of(&new) != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            name_of(&new)
        )));
    }
    check_rv(ctx, &new, &old)?;
    check_namespace(ctx, &new)?;
    let (sent_uid, uid) = (
        meta(&new)["uid"].as_str().unwrap_or_default(),
        meta(&old)["uid"].as_str().unwrap_or_default(),
    );
    if !sent_uid.is_empty() && sent_uid != uid {
        let why = format!(
            "Precondition failed: UID in precondition: {sent_uid}, UID in object meta: {uid}"
        );
        return Err(ApiError::conflict(&rt.group, &rt.plural, &name, &why));
    }
    // Status isolation: a status write keeps everything but status; a main write keeps status.
    let mut next = match ctx.scope {
        Scope::Status => {
            let mut next = (*old).clone();
            match new.get("status") {
                Some(status) => next["status"] = status.clone(),
                None => {
                    if let Some(m) = next.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            next
        }
        Scope::Main { exclude_status } => {
            if exclude_status && let Some(m) = new.as_object_mut() {
                match old.get("status") {
                    Some(status) => m.insert("status".into(), status.clone()),
                    None => m.remove("status"),
                };
            }
            new
        }
    };
    if ctx.scope != Scope::Status {
        fold_string_data(rt, &mut next);
        let old_meta = meta(&old).clone();
        let m = meta_mut(&mut next);
        for key in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "resourceVersion",
        ] {
            match old_meta.get(key) {
                Some(v) => m.insert(key.into(), v.clone()),
                None => m.remove(key),
            };
        }
        if is_deleting(&old) {
            let before = finalizers(&old);
            let added: Vec<&str> = finalizers(&next)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                let message = format!(
                    "Forbidden: no new finalizers can be added if the object is being deleted, \
                     found new finalizers {added:?}"
                );
                let cause = Cause::new("FieldValueForbidden", "metadata.finalizers", message);
                return Err(ctx.invalid(&name, vec![cause]));
            }
        }
    }
    meta_mut(&mut next).insert("resourceVersion".into(), json!(rv_of(&old)));
    prune_unknown(ctx, &mut next)?;
    let entries =
        entries.unwrap_or_else(|| managed::record_update(Some(&old), &next, &ctx.writer()));
    set_managed(&mut next, &entries, &rt.api_version());
    admit(ctx, &mut next, Some(&old))?;
    if rt.has_generation() {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let bumped = if spec_part(rt, &old) != spec_part(rt, &next) {
            generation + 1
        } else {
            generation
        };
        meta_mut(&mut next).insert("generation".into(), json!(bumped));
    }
    if rt.plural == "customresourcedefinitions" {
        crds::check(ctx, &next)?;
        crds::status(&mut next, Some(&old), ctx.now);
    }
    if same_content(&old, &next) {
        return Ok(old);
    }
    if ctx.dry_run {
        return Ok(Arc::new(next));
    }
    let rv = store.next_rv();
    meta_mut(&mut next).insert("resourceVersion".into(), json!(rv.to_string()));
    let release = is_deleting(&next) && finalizers(&next).is_empty();
    let stored = store.commit(&rt.storage_key(), EventKind::Modified, rv, next, Some(old));
    if rt.plural == "customresourcedefinitions" {
        store.registry.install_crd(&stored);
    }
    if release {
        return Ok(delete::remove(store, rt, stored, ctx.now));
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delete::{Deleted, delete};
    use crate::resources::Registry;
    use crate::store::StoreLimits;

    fn store() -> Store {
        let mut store = Store::new(StoreLimits {
            history: 100,
            channel: 16,
        });
        let ns = Registry::with_builtins()
            .get("", "v1", "namespaces")
            .expect("builtin");
        let ctx = WriteCtx {
            rt: &ns,
            namespace: "",
            manager: "test",
            now: "2026-01-01T00:00:00Z",
            dry_run: false,
            scope: Scope::Main {
                exclude_status: true,
            },
            strict: false,
        };
        create(
            &mut store,
            &ctx,
            json!({"metadata": {"name": "default"}}),
            None,
        )
        .expect("namespace");
        store
    }

    #[test]
    fn configmap_lifecycle_and_noop() {
        let mut store = store();
        let cm = store.registry.get("", "v1", "configmaps").expect("builtin");
        let ctx = WriteCtx {
            rt: &cm,
            namespace: "default",
            manager: "test",
            now: "2026-01-01T00:00:00Z",
            dry_run: false,
            scope: Scope::Main {
                exclude_status: false,
            },
            strict: false,
        };
        let created = create(
            &mut store,
            &ctx,
            json!({"metadata": {"name": "a"}, "data": {"k": "v"}}),
            None,
        )
        .expect("create");
        assert_eq!(created["kind"], json!("ConfigMap"));
        assert!(created["metadata"]["generation"].is_null());
        let same =
            update(&mut store, &ctx, created.clone(), (*created).clone(), None).expect("no-op");
        assert_eq!(
            same["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
        let mut changed = (*created).clone();
        changed["data"]["k"] = json!("w");
        let updated =
            update(&mut store, &ctx, created.clone(), changed.clone(), None).expect("update");
        assert_ne!(
            updated["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
        assert!(
            matches!(update(&mut store, &ctx, updated.clone(), changed, None), Err(e) if e.code == 409)
        );
        assert!(
            matches!(create(&mut store, &ctx, json!({"metadata": {"name": "a"}}), None), Err(e) if e.reason == "AlreadyExists")
        );
    }

    #[test]
    fn finalizers_hold_deletion() {
        let mut store = store();
        let cm = store.registry.get("", "v1", "configmaps").expect("builtin");
        let ctx = WriteCtx {
            rt: &cm,
            namespace: "default",
            manager: "test",
            now: "2026-01-01T00:00:00Z",
            dry_run: false,
            scope: Scope::Main {
                exclude_status: false,
            },
            strict: false,
        };
        let created = create(
            &mut store,
            &ctx,
            json!({"metadata": {"name": "f", "finalizers": ["x"]}}),
            None,
        )
        .expect("create");
        let Ok(Deleted::Pending(pending)) = delete(&mut store, &ctx, created, &json!({})) else {
            panic!("finalizer keeps it")
        };
        assert!(is_deleting(&pending));
        let mut more = (*pending).clone();
        more["metadata"]["finalizers"] = json!(["x", "y"]);
        assert!(
            matches!(update(&mut store, &ctx, pending.clone(), more, None), Err(e) if e.code == 422)
        );
        let mut done = (*pending).clone();
        done["metadata"]["finalizers"] = json!([]);
        update(&mut store, &ctx, pending, done, None).expect("release");
        assert!(store.get("/configmaps", "default", "f").is_none());
    }
}
