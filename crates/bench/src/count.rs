//! Request counts of a run, by verb and resource, from either API server.
//!
//! The API test server counts every request itself ([`runctl_apiserver::RequestStats`]). On the
//! real control plane the benchmark counts on the client side instead: its client (shared by the
//! operator and the driver, as the test server's counts are shared) carries a [`CountLayer`],
//! so that kube-controller-manager's and kube-apiserver's own requests (leases, the garbage
//! collector's watches and deletes) are not the operator's. What the real server saw from every
//! client comes from its `/metrics` ([`ServerRequests`], `apiserver_request_total`).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::BoxFuture;
use http::{Method, Request, Response};
use parking_lot::Mutex;
use runctl_apiserver::{RequestStats, Verb};

/// Requests by verb and resource (`configmaps`, `trainingjobs.runctl.dev`, and on the real
/// control plane `trainingjobs.runctl.dev/status` for a subresource), and watch streams.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    counts: BTreeMap<(Verb, String), u64>,
    /// Watch streams opened since the last reset.
    pub watches_opened: u64,
    /// Watch streams open when the counts were taken.
    pub watches_open: u64,
}

impl Counts {
    /// Requests of `verb` on `resource`.
    pub fn count(&self, verb: Verb, resource: &str) -> u64 {
        self.counts
            .get(&(verb, resource.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Every write (create, update, patch, delete).
    pub fn writes(&self) -> u64 {
        self.counts
            .iter()
            .filter(|((v, _), _)| v.is_write())
            .map(|(_, n)| n)
            .sum()
    }

    /// All (verb, resource, count) triples.
    pub fn iter(&self) -> impl Iterator<Item = (Verb, &str, u64)> {
        self.counts.iter().map(|((v, r), n)| (*v, r.as_str(), *n))
    }
}

impl From<RequestStats> for Counts {
    fn from(stats: RequestStats) -> Self {
        Counts {
            counts: stats
                .iter()
                .map(|(v, r, n)| ((v, r.to_string()), n))
                .collect(),
            watches_opened: stats.watches_opened,
            watches_open: stats.watches_open,
        }
    }
}

/// The live client-side counters.
#[derive(Debug, Default)]
pub struct Recorder {
    counts: Mutex<BTreeMap<(Verb, String), u64>>,
    opened: AtomicU64,
    open: AtomicU64,
}

impl Recorder {
    /// The counts since the last reset (the open-watches gauge: now).
    pub fn snapshot(&self) -> Counts {
        Counts {
            counts: self.counts.lock().clone(),
            watches_opened: self.opened.load(Ordering::Relaxed),
            watches_open: self.open.load(Ordering::Relaxed),
        }
    }

    /// Counts to zero; the open-watches gauge stays.
    pub fn reset(&self) {
        self.counts.lock().clear();
        self.opened.store(0, Ordering::Relaxed);
    }

    fn record(&self, verb: Verb, resource: String) {
        *self.counts.lock().entry((verb, resource)).or_default() += 1;
        if verb == Verb::Watch {
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a request to the Kubernetes API does: its verb and resource (`None` for what is not a
/// resource request: discovery, `/metrics`, `/readyz`).
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> Option<(Verb, String)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (resource, name, sub) = match rest {
        ["namespaces", _ns, resource, tail @ ..] => (*resource, tail.first(), tail.get(1)),
        [resource, tail @ ..] => (*resource, tail.first(), tail.get(1)),
        [] => return None,
    };
    let mut key = resource.to_string();
    if !group.is_empty() {
        key = format!("{key}.{group}");
    }
    if let Some(sub) = sub {
        key = format!("{key}/{sub}");
    }
    let watch = query.is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match *method {
        Method::GET if watch => Verb::Watch,
        Method::GET if name.is_some() => Verb::Get,
        Method::GET => Verb::List,
        Method::POST => Verb::Create,
        Method::PUT => Verb::Update,
        Method::PATCH => Verb::Patch,
        Method::DELETE => Verb::Delete,
        _ => return None,
    };
    Some((verb, key))
}

/// A tower layer for a kube client that counts its requests in a [`Recorder`].
#[derive(Clone, Debug)]
pub struct CountLayer(pub Arc<Recorder>);

impl<S> tower::Layer<S> for CountLayer {
    type Service = CountService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountService {
            inner,
            recorder: self.0.clone(),
        }
    }
}

/// The service of [`CountLayer`].
#[derive(Clone, Debug)]
pub struct CountService<S> {
    inner: S,
    recorder: Arc<Recorder>,
}

impl<S, ReqBody, B> tower::Service<Request<ReqBody>> for CountService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<B>>,
    S::Future: Send + 'static,
{
    type Response = Response<Counted<B>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let kind = classify(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        let watch = matches!(kind, Some((Verb::Watch, _)));
        if let Some((verb, resource)) = kind {
            self.recorder.record(verb, resource);
        }
        let recorder = self.recorder.clone();
        self.inner
            .call(request)
            .map(move |answer| {
                answer.map(|response| {
                    // A watch stream is open while its body is.
                    let open = watch.then(|| {
                        recorder.open.fetch_add(1, Ordering::Relaxed);
                        recorder
                    });
                    response.map(|inner| Counted { inner, open })
                })
            })
            .boxed()
    }
}

/// A response body that counts a watch stream as open until it is dropped.
pub struct Counted<B> {
    inner: B,
    open: Option<Arc<Recorder>>,
}

impl<B> Drop for Counted<B> {
    fn drop(&mut self) {
        if let Some(recorder) = &self.open {
            recorder.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What kube-apiserver counted from every client (`apiserver_request_total` of its `/metrics`):
/// requests by (verb as the server names it: `POST`, `PATCH`, `APPLY` for server-side apply,
/// ...; resource with group and subresource; HTTP code).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerRequests(BTreeMap<(String, String, String), u64>);

/// The server's write verbs (`APPLY` is a server-side apply patch).
const SERVER_WRITE_VERBS: [&str; 6] = [
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

impl ServerRequests {
    /// Parses `apiserver_request_total` out of a Prometheus text exposition.
    pub fn parse(metrics: &str) -> Self {
        let mut out = BTreeMap::new();
        for line in metrics.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let labels = parse_labels(labels);
            let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
            let mut resource = get("resource").to_string();
            if !get("group").is_empty() {
                resource = format!("{resource}.{}", get("group"));
            }
            if !get("subresource").is_empty() {
                resource = format!("{resource}/{}", get("subresource"));
            }
            *out.entry((get("verb").to_string(), resource, get("code").to_string()))
                .or_default() += value as u64;
        }
        ServerRequests(out)
    }

    /// Requests since `earlier`.
    pub fn since(&self, earlier: &ServerRequests) -> ServerRequests {
        ServerRequests(
            self.0
                .iter()
                .filter_map(|(k, n)| {
                    let d = n.saturating_sub(earlier.0.get(k).copied().unwrap_or(0));
                    (d > 0).then(|| (k.clone(), d))
                })
                .collect(),
        )
    }

    /// Writes by `VERB resource`, and the failed ones (HTTP code 400 and above) by
    /// `CODE VERB resource`.
    pub fn writes(&self) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
        let mut all = BTreeMap::new();
        let mut failed = BTreeMap::new();
        for ((verb, resource, code), n) in &self.0 {
            if !SERVER_WRITE_VERBS.contains(&verb.as_str()) {
                continue;
            }
            *all.entry(format!("{verb} {resource}")).or_default() += n;
            if code.parse::<u16>().is_ok_and(|c| c >= 400) {
                *failed
                    .entry(format!("{code} {verb} {resource}"))
                    .or_default() += n;
            }
        }
        (all, failed)
    }
}

/// `a="x",b="y"` to a map (label values with escaped quotes are not expected here).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some((value, tail)) = after.split_once('"') else {
            break;
        };
        out.insert(
            key.trim_start_matches(',').trim().to_string(),
            value.to_string(),
        );
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_resource_requests() {
        let c = |m: Method, p: &str, q: Option<&str>| classify(&m, p, q);
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/default/configmaps", None),
            Some((Verb::List, "configmaps".into()))
        );
        assert_eq!(
            c(
                Method::GET,
                "/apis/runctl.dev/v1alpha1/namespaces/default/trainingjobs",
                Some("watch=true&resourceVersion=5")
            ),
            Some((Verb::Watch, "trainingjobs.runctl.dev".into()))
        );
        assert_eq!(
            c(
                Method::PATCH,
                "/apis/runctl.dev/v1alpha1/namespaces/default/cloudresources/a/status",
                None
            ),
            Some((Verb::Patch, "cloudresources.runctl.dev/status".into()))
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/default", None),
            Some((Verb::Get, "namespaces".into()))
        );
        assert_eq!(
            c(
                Method::GET,
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x.runctl.dev",
                None
            ),
            Some((
                Verb::Get,
                "customresourcedefinitions.apiextensions.k8s.io".into()
            ))
        );
        assert_eq!(
            c(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/default/events",
                None
            ),
            Some((Verb::Create, "events.events.k8s.io".into()))
        );
        assert_eq!(c(Method::GET, "/metrics", None), None);
        assert_eq!(c(Method::GET, "/apis", None), None);
    }

    #[test]
    fn server_writes_from_metrics() {
        let text = r#"# HELP apiserver_request_total x
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 7
apiserver_request_total{code="200",component="apiserver",dry_run="",group="runctl.dev",resource="trainingjobs",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"} 3
apiserver_request_total{code="409",component="apiserver",dry_run="",group="runctl.dev",resource="trainingjobs",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="GET",version="v1"} 9
"#;
        let before = ServerRequests::parse(
            r#"apiserver_request_total{code="201",group="",resource="configmaps",subresource="",verb="POST"} 2"#,
        );
        let (all, failed) = ServerRequests::parse(text).since(&before).writes();
        assert_eq!(
            all,
            BTreeMap::from([
                ("APPLY trainingjobs.runctl.dev/status".to_string(), 4),
                ("POST configmaps".to_string(), 5),
            ])
        );
        assert_eq!(
            failed,
            BTreeMap::from([("409 APPLY trainingjobs.runctl.dev/status".to_string(), 1)])
        );
    }
}
