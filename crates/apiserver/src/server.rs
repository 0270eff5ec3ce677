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
use crate::faults::Faults;
use crate::resources::ResourceType;
use crate::selectors::Selector;
use crate::stats::{StatsRecorder, Verb};
use crate::store::Store;
use crate::verbs;
use crate::watch::{self as watching, WatchRequest};

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
    pub(crate) fn from_accept(headers: &HeaderMap) -> Self {
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
    if !path.starts_with(&format!("/{STATS_PREFIX}/")) {
        app.stats.user_agent(
            parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
        );
    }
    let call = Call {
        app: &app,
        method: &parts.method,
        headers: &parts.headers,
        query: &query,
        body: &body,
    };
    // Paths and query strings name objects, never secret values; bodies are not logged.
    match dispatch(&call, &path) {
        Ok(response) => {
            tracing::debug!(method = %parts.method, %path, status = response.status().as_u16(), "api request");
            response
        }
        Err(error) => {
            tracing::debug!(method = %parts.method, %path, status = error.code, reason = error.reason, "api request failed");
            error.into_response()
        }
    }
}

/// One request.
pub(crate) struct Call<'a> {
    pub app: &'a Arc<App>,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub query: &'a Query,
    pub body: &'a Bytes,
}

impl Call<'_> {
    pub(crate) fn param(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    pub(crate) fn flag(&self, key: &str) -> bool {
        matches!(self.param(key), Some("true" | "1"))
    }

    pub(crate) fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
    }

    pub(crate) fn manager(&self) -> String {
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
    pub(crate) fn object_body(&self) -> Result<Value, ApiError> {
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

pub(crate) fn yaml(body: &[u8]) -> Result<Value, ApiError> {
    serde_yaml::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("failed to decode the request body as YAML: {e}"))
    })
}

/// First path segment of the test-only endpoints: `GET /_runctl/stats`, `POST /_runctl/stats/reset`.
pub(crate) const STATS_PREFIX: &str = "_runctl";

fn stats_json(stats: &crate::stats::RequestStats) -> Value {
    serde_json::to_value(stats).unwrap_or_default()
}

fn dispatch(call: &Call<'_>, path: &str) -> Result<Response, ApiError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let registry = || call.app.store.lock().registry.clone();
    match segments.as_slice() {
        ["version"] => call.only_get(discovery::version()),
        ["healthz" | "livez" | "readyz"] => Ok((StatusCode::OK, "ok").into_response()),
        // Test-only endpoints (not counted): the request counts, for a driver in another process.
        [STATS_PREFIX, "stats"] => call.only_get(stats_json(&call.app.stats.snapshot())),
        [STATS_PREFIX, "stats", "reset"] => {
            if call.method != Method::POST {
                return Err(ApiError::method_not_allowed(call.method.as_str()));
            }
            call.app.stats.reset();
            Ok(json_response(
                StatusCode::OK,
                &stats_json(&call.app.stats.snapshot()),
            ))
        }
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
pub(crate) struct Target {
    pub rt: Arc<ResourceType>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    pub(crate) fn namespace_key(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }

    pub(crate) fn group_resource(&self) -> String {
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
        (Method::POST, None) => verbs::create(call, &target),
        (Method::PUT, Some(name)) => verbs::update(call, &target, &name),
        (Method::PATCH, Some(name)) => verbs::patch(call, &target, &name),
        (Method::DELETE, Some(name)) => verbs::delete(call, &target, &name),
        (Method::DELETE, None) => verbs::delete_collection(call, &target),
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

pub(crate) fn selector(call: &Call<'_>) -> Result<Selector, ApiError> {
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
