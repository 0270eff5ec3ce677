//! HTTP front: one axum fallback handler that parses Kubernetes API paths and dispatches to
//! discovery, reads (get, list, watch) and writes (create, update, patch, apply, delete).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, header};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::discovery;
use crate::error::{ApiError, group_resource, json_response};
use crate::faults::{FaultKind, Faults};
use crate::managed::{self, Writer};
use crate::patch::{self, PatchKind};
use crate::resources::ResourceType;
use crate::selectors::Selector;
use crate::stats::{StatsRecorder, Verb};
use crate::store::Store;
use crate::watch::{self as watching, WatchRequest};
use crate::write::{self, Deleted, WriteCtx};

/// Shared server state.
pub(crate) struct App {
    pub store: Mutex<Store>,
    pub faults: Arc<Faults>,
    pub stats: Arc<StatsRecorder>,
    pub bookmark_interval: Duration,
    pub shutdown: watch::Receiver<bool>,
}

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

/// Current time as a Kubernetes `Time` (RFC 3339, seconds).
pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// How objects are shown: full, or as `PartialObjectMetadata` when the client asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Presenter {
    Full,
    Metadata,
}

impl Presenter {
    fn from_accept(headers: &HeaderMap) -> Self {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if accept.contains("as=PartialObjectMetadata") {
            Presenter::Metadata
        } else {
            Presenter::Full
        }
    }

    /// `obj` as served at `rt`'s version.
    pub fn present(self, rt: &ResourceType, obj: &Value) -> Value {
        match self {
            Presenter::Metadata => {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"].clone()})
            }
            Presenter::Full => {
                let mut out = obj.clone();
                let api_version = rt.api_version();
                if out["apiVersion"].as_str() != Some(api_version.as_str()) {
                    out["apiVersion"] = json!(api_version);
                }
                out
            }
        }
    }

    fn list_kind(self, rt: &ResourceType) -> (String, String) {
        match self {
            Presenter::Metadata => ("PartialObjectMetadataList".into(), "meta.k8s.io/v1".into()),
            Presenter::Full => (format!("{}List", rt.kind), rt.api_version()),
        }
    }
}

type Query = HashMap<String, String>;

async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    let latency = app.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 256 << 20).await else {
        return ApiError::bad_request("failed to read the request body").into_response();
    };
    let query: Query =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let path = parts.uri.path().to_string();
    let call = Call {
        app: &app,
        method: &parts.method,
        headers: &parts.headers,
        query: &query,
        body: &body,
    };
    match dispatch(&call, &path) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// One request.
struct Call<'a> {
    app: &'a Arc<App>,
    method: &'a Method,
    headers: &'a HeaderMap,
    query: &'a Query,
    body: &'a Bytes,
}

impl Call<'_> {
    fn param(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.param(key), Some("true" | "1"))
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
    }

    fn manager(&self) -> String {
        if let Some(m) = self.param("fieldManager").filter(|m| !m.is_empty()) {
            return m.to_string();
        }
        let agent = self
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        agent.split('/').next().unwrap_or("unknown").to_string()
    }

    /// A create/update body: JSON (or YAML); protobuf and others are refused with 415.
    fn object_body(&self) -> Result<Value, ApiError> {
        let content_type = self.content_type();
        match content_type.split(';').next().unwrap_or_default().trim() {
            "application/json" | "" | "*/*" => serde_json::from_slice(self.body).map_err(|e| {
                ApiError::bad_request(format!("failed to decode the request body as JSON: {e}"))
            }),
            "application/yaml" => yaml(self.body),
            _ => Err(ApiError::unsupported_media_type(content_type)),
        }
    }

    fn only_get(&self, body: Value) -> Result<Response, ApiError> {
        if self.method != Method::GET {
            return Err(ApiError::method_not_allowed(self.method.as_str()));
        }
        Ok(json_response(StatusCode::OK, &body))
    }
}

fn yaml(body: &[u8]) -> Result<Value, ApiError> {
    serde_yaml::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("failed to decode the request body as YAML: {e}"))
    })
}

fn dispatch(call: &Call<'_>, path: &str) -> Result<Response, ApiError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let registry = || call.app.store.lock().registry.clone();
    match segments.as_slice() {
        ["version"] => call.only_get(discovery::version()),
        ["healthz" | "livez" | "readyz"] => Ok((StatusCode::OK, "ok").into_response()),
        ["openapi", "v2"] => call.only_get(discovery::openapi_v2()),
        ["openapi", "v3"] => call.only_get(discovery::openapi_v3(&registry())),
        ["openapi", "v3", "api", "v1"] => {
            call.only_get(discovery::openapi_v3_group(&registry(), "", "v1"))
        }
        ["openapi", "v3", "apis", group, version] => {
            call.only_get(discovery::openapi_v3_group(&registry(), group, version))
        }
        ["api"] => call.only_get(discovery::core_versions()),
        ["api", "v1"] => call.only_get(discovery::resource_list(&registry(), "", "v1")),
        ["api", "v1", rest @ ..] => resource(call, "", "v1", rest),
        ["apis"] => call.only_get(discovery::group_list(&registry())),
        ["apis", group] => discovery::group(&registry(), group)
            .ok_or_else(|| ApiError::no_route(path))
            .and_then(|g| call.only_get(g)),
        ["apis", group, version] => {
            let registry = registry();
            if !registry.serves_group_version(group, version) {
                return Err(ApiError::no_route(path));
            }
            call.only_get(discovery::resource_list(&registry, group, version))
        }
        ["apis", group, version, rest @ ..] => resource(call, group, version, rest),
        _ => Err(ApiError::no_route(path)),
    }
}

/// A resolved resource path.
struct Target {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    fn namespace_key(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }

    fn group_resource(&self) -> String {
        group_resource(&self.rt.group, &self.rt.plural)
    }
}

fn resolve(call: &Call<'_>, group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let registry = &call.app.store.lock().registry;
    let missing = || ApiError::no_route(&format!("/{}", rest.join("/")));
    let (namespace, plural, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if registry
                .get(group, version, plural)
                .is_some_and(|rt| rt.namespaced) =>
        {
            (Some(ns.to_string()), *plural, tail)
        }
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return Err(missing()),
    };
    let rt = registry.get(group, version, plural).ok_or_else(missing)?;
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, "status"] if rt.status => (Some(name.to_string()), Some("status".to_string())),
        _ => return Err(missing()),
    };
    if (!rt.namespaced && namespace.is_some())
        || (rt.namespaced && namespace.is_none() && name.is_some())
    {
        return Err(missing());
    }
    Ok(Target {
        rt,
        namespace,
        name,
        subresource,
    })
}

fn resource(
    call: &Call<'_>,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Response, ApiError> {
    let target = resolve(call, group, version, rest)?;
    let presenter = Presenter::from_accept(call.headers);
    let name = target.name.clone();
    match (call.method.clone(), name) {
        (Method::GET, Some(name)) => get(call, &target, &name, presenter),
        (Method::GET, None) if call.flag("watch") => watch(call, &target, presenter),
        (Method::GET, None) => list(call, &target, presenter),
        (Method::POST, None) => create(call, &target),
        (Method::PUT, Some(name)) => update(call, &target, &name),
        (Method::PATCH, Some(name)) => patch(call, &target, &name),
        (Method::DELETE, Some(name)) => delete(call, &target, &name),
        (Method::DELETE, None) => delete_collection(call, &target),
        (method, _) => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

fn get(
    call: &Call<'_>,
    target: &Target,
    name: &str,
    presenter: Presenter,
) -> Result<Response, ApiError> {
    call.app.stats.record(Verb::Get, &target.group_resource());
    let obj = call
        .app
        .store
        .lock()
        .get(&target.rt.storage_key(), target.namespace_key(), name);
    let obj = obj.ok_or_else(|| ApiError::not_found(&target.rt.group, &target.rt.plural, name))?;
    Ok(json_response(
        StatusCode::OK,
        &presenter.present(&target.rt, &obj),
    ))
}

fn selector(call: &Call<'_>) -> Result<Selector, ApiError> {
    Selector::parse(call.param("labelSelector"), call.param("fieldSelector"))
}

fn list(call: &Call<'_>, target: &Target, presenter: Presenter) -> Result<Response, ApiError> {
    call.app.stats.record(Verb::List, &target.group_resource());
    let selector = selector(call)?;
    let (items, rv) = {
        let mut store = call.app.store.lock();
        let rv = store.rv;
        let collection = store.collection(&target.rt.storage_key());
        let items: Vec<Value> = collection
            .in_namespace(target.namespace.as_deref())
            .filter(|o| selector.matches(o))
            .map(|o| presenter.present(&target.rt, o))
            .collect();
        (items, rv)
    };
    let (kind, api_version) = presenter.list_kind(&target.rt);
    let body = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": rv.to_string()}, "items": items});
    Ok(json_response(StatusCode::OK, &body))
}

fn watch(call: &Call<'_>, target: &Target, presenter: Presenter) -> Result<Response, ApiError> {
    call.app.stats.record(Verb::Watch, &target.group_resource());
    let timeout = call
        .param("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(Duration::from_secs);
    let request = WatchRequest {
        rt: target.rt.clone(),
        namespace: target.namespace.clone(),
        selector: selector(call)?,
        resource_version: call.param("resourceVersion").map(String::from),
        bookmarks: call.flag("allowWatchBookmarks"),
        send_initial: call.flag("sendInitialEvents"),
        timeout,
        presenter,
    };
    watching::start(call.app.clone(), request)
}

/// Consume an injected write fault, if one matches.
fn injected(call: &Call<'_>, verb: Verb, target: &Target, name: &str) -> Result<(), ApiError> {
    call.app.stats.record(verb, &target.group_resource());
    match call
        .app
        .faults
        .take_write_fault(verb, &target.rt.plural, &target.group_resource())
    {
        Some(FaultKind::Conflict) => {
            Err(ApiError::stale(&target.rt.group, &target.rt.plural, name))
        }
        Some(FaultKind::ServerError) => Err(ApiError::internal(
            "injected fault: the server is unable to handle the request",
        )),
        None => Ok(()),
    }
}

fn ctx<'a>(call: &Call<'_>, target: &'a Target, manager: &'a str, now: &'a str) -> WriteCtx<'a> {
    WriteCtx {
        rt: &target.rt,
        namespace: target.namespace_key(),
        manager,
        now,
        dry_run: call.param("dryRun") == Some("All"),
        scope: write::scope_for(&target.rt, target.subresource.as_deref()),
        strict: call.param("fieldValidation") == Some("Strict"),
    }
}

/// A write's answer: the object, shown as the client's `Accept` asks.
fn present(call: &Call<'_>, target: &Target, obj: &Value, code: StatusCode) -> Response {
    json_response(
        code,
        &Presenter::from_accept(call.headers).present(&target.rt, obj),
    )
}

fn create(call: &Call<'_>, target: &Target) -> Result<Response, ApiError> {
    let body = call.object_body()?;
    injected(call, Verb::Create, target, write::name_of(&body))?;
    let (manager, now) = (call.manager(), now());
    let ctx = ctx(call, target, &manager, &now);
    let created = write::create(&mut call.app.store.lock(), &ctx, body, None)?;
    Ok(present(call, target, &created, StatusCode::CREATED))
}

fn update(call: &Call<'_>, target: &Target, name: &str) -> Result<Response, ApiError> {
    let body = call.object_body()?;
    injected(call, Verb::Update, target, name)?;
    let (manager, now) = (call.manager(), now());
    let ctx = ctx(call, target, &manager, &now);
    let mut store = call.app.store.lock();
    let old = store.get(&target.rt.storage_key(), target.namespace_key(), name);
    let old = old.ok_or_else(|| ApiError::not_found(&target.rt.group, &target.rt.plural, name))?;
    if target.rt.custom
        && body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    {
        let cause = crate::error::Cause::new(
            "FieldValueInvalid",
            "metadata.resourceVersion",
            "Invalid value: 0x0: must be specified for an update",
        );
        return Err(ApiError::invalid(
            &target.rt.kind_group(),
            &target.rt.group,
            &target.rt.kind,
            name,
            vec![cause],
        ));
    }
    let updated = write::update(&mut store, &ctx, old, body, None)?;
    Ok(present(call, target, &updated, StatusCode::OK))
}

fn patch(call: &Call<'_>, target: &Target, name: &str) -> Result<Response, ApiError> {
    let content_type = call.content_type();
    let kind = PatchKind::from_content_type(content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
    if kind == PatchKind::Strategic && target.rt.custom {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    injected(call, Verb::Patch, target, name)?;
    let (manager, now) = (call.manager(), now());
    let ctx = ctx(call, target, &manager, &now);
    let mut store = call.app.store.lock();
    let old = store.get(&target.rt.storage_key(), target.namespace_key(), name);
    if kind == PatchKind::Apply {
        return apply(call, target, &ctx, &mut store, old, name);
    }
    let old = old.ok_or_else(|| ApiError::not_found(&target.rt.group, &target.rt.plural, name))?;
    let current = Presenter::Full.present(&target.rt, &old);
    let patched = match kind {
        PatchKind::Json => patch::json(&current, call.body)?,
        _ => {
            let body: Value = serde_json::from_slice(call.body).map_err(|e| {
                ApiError::bad_request(format!("failed to decode the patch as JSON: {e}"))
            })?;
            patch::merge(&current, &body)
        }
    };
    let updated = write::update(&mut store, &ctx, old, patched, None)?;
    Ok(present(call, target, &updated, StatusCode::OK))
}

fn apply(
    call: &Call<'_>,
    target: &Target,
    ctx: &WriteCtx<'_>,
    store: &mut Store,
    old: Option<Arc<Value>>,
    name: &str,
) -> Result<Response, ApiError> {
    if call.param("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::unprocessable(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let config = yaml(call.body)?;
    if !config.is_object()
        || config["apiVersion"].as_str().is_none()
        || config["kind"].as_str().is_none()
    {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in an apply patch",
        ));
    }
    if config["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != name)
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            write::name_of(&config)
        )));
    }
    let force = call.flag("force");
    let writer = Writer {
        manager: ctx.manager,
        api_version: "",
        now: ctx.now,
        scope: ctx.scope,
    };
    let conflict =
        |causes| ApiError::apply_conflict(&target.rt.group, &target.rt.plural, name, causes);
    match old {
        None => {
            if target.subresource.is_some() {
                return Err(ApiError::not_found(
                    &target.rt.group,
                    &target.rt.plural,
                    name,
                ));
            }
            let mut base = json!({"apiVersion": target.rt.api_version(), "kind": target.rt.kind, "metadata": {"name": name}});
            if let Some(ns) = &target.namespace {
                base["metadata"]["namespace"] = json!(ns);
            }
            let (merged, entries) =
                managed::apply(&base, &config, force, &writer).map_err(conflict)?;
            let created = write::create(store, ctx, merged, Some(entries))?;
            Ok(present(call, target, &created, StatusCode::CREATED))
        }
        Some(old) => {
            write::check_rv(ctx, &config, &old)?;
            let current = Presenter::Full.present(&target.rt, &old);
            let (merged, entries) =
                managed::apply(&current, &config, force, &writer).map_err(conflict)?;
            let updated = write::update(store, ctx, old, merged, Some(entries))?;
            Ok(present(call, target, &updated, StatusCode::OK))
        }
    }
}

fn delete_options(call: &Call<'_>) -> Result<Value, ApiError> {
    if call.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(call.body)
        .map_err(|e| ApiError::bad_request(format!("failed to decode DeleteOptions: {e}")))
}

/// `dryRun: ["All"]` in DeleteOptions.
fn dry_run_in(options: &Value) -> bool {
    options["dryRun"]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v == "All"))
}

fn delete(call: &Call<'_>, target: &Target, name: &str) -> Result<Response, ApiError> {
    let options = delete_options(call)?;
    injected(call, Verb::Delete, target, name)?;
    let (manager, now) = (call.manager(), now());
    let mut ctx = ctx(call, target, &manager, &now);
    ctx.dry_run |= dry_run_in(&options);
    let mut store = call.app.store.lock();
    let old = store.get(&target.rt.storage_key(), target.namespace_key(), name);
    let old = old.ok_or_else(|| ApiError::not_found(&target.rt.group, &target.rt.plural, name))?;
    match write::delete(&mut store, &ctx, old, &options)? {
        Deleted::Pending(obj) => Ok(present(call, target, &obj, StatusCode::OK)),
        Deleted::Gone(obj) => {
            let status = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": target.rt.group, "kind": target.rt.plural, "uid": obj["metadata"]["uid"]},
            });
            Ok(json_response(StatusCode::OK, &status))
        }
    }
}

fn delete_collection(call: &Call<'_>, target: &Target) -> Result<Response, ApiError> {
    let options = delete_options(call)?;
    injected(call, Verb::Delete, target, "")?;
    let selector = selector(call)?;
    let (manager, now) = (call.manager(), now());
    let mut ctx = ctx(call, target, &manager, &now);
    ctx.dry_run |= dry_run_in(&options);
    let mut store = call.app.store.lock();
    let victims: Vec<Arc<Value>> = store
        .collection(&target.rt.storage_key())
        .in_namespace(target.namespace.as_deref())
        .filter(|o| selector.matches(o))
        .cloned()
        .collect();
    let mut items = Vec::new();
    for victim in victims {
        // Garbage collection of an earlier victim may have removed this one.
        let Some(victim) = store.get(
            &target.rt.storage_key(),
            target.namespace_key(),
            write::name_of(&victim),
        ) else {
            continue;
        };
        let obj = match write::delete(&mut store, &ctx, victim, &options)? {
            Deleted::Pending(obj) | Deleted::Gone(obj) => obj,
        };
        items.push(Presenter::Full.present(&target.rt, &obj));
    }
    let body = json!({"kind": format!("{}List", target.rt.kind), "apiVersion": target.rt.api_version(),
                      "metadata": {"resourceVersion": store.rv.to_string()}, "items": items});
    Ok(json_response(StatusCode::OK, &body))
}
