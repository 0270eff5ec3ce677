//! Watch streams: newline-delimited JSON events with `Content-Type: application/json`.
//!
//! A watch resumes after its resourceVersion from the per-resource history (410 Expired when
//! that history was compacted), or starts with synthetic ADDED events for the current objects
//! (no resourceVersion, "0", or `sendInitialEvents=true`, which ends the initial batch with a
//! bookmark annotated `k8s.io/initial-events-end`). It sends periodic BOOKMARKs when asked,
//! ends after `timeoutSeconds`, on server shutdown, and when faults expire all watches.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::resources::ResourceType;
use crate::selectors::Selector;
use crate::server::{App, Presenter};
use crate::store::{Event, EventKind};

/// What a watch asked for.
pub(crate) struct WatchRequest {
    pub rt: Arc<ResourceType>,
    pub namespace: Option<String>,
    pub selector: Selector,
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub send_initial: bool,
    pub timeout: Option<Duration>,
    pub presenter: Presenter,
}

impl WatchRequest {
    fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| obj["metadata"]["namespace"].as_str() == Some(ns))
            && self.selector.matches(obj)
    }

    fn line(&self, kind: &str, obj: &Value) -> Bytes {
        let mut out = serde_json::to_vec(
            &json!({"type": kind, "object": self.presenter.present(&self.rt, obj)}),
        )
        .unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }

    /// The line for `event` as this watch sees it, if any.
    fn render(&self, event: &Event) -> Option<Bytes> {
        let now = self.matches(&event.object);
        let before = event.old.as_deref().is_some_and(|o| self.matches(o));
        let kind = match (event.kind, before, now) {
            (EventKind::Added, _, true) => "ADDED",
            (EventKind::Deleted, _, true) => "DELETED",
            (EventKind::Modified, true, true) => "MODIFIED",
            (EventKind::Modified, false, true) => "ADDED",
            (EventKind::Modified, true, false) => "DELETED",
            _ => return None,
        };
        let as_stored = self.presenter == Presenter::Full
            && event.object["apiVersion"].as_str() == Some(self.rt.api_version().as_str());
        if !as_stored {
            return Some(self.line(kind, &event.object));
        }
        let object = event.object_json();
        let mut out = Vec::with_capacity(object.len() + 32);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        out.extend_from_slice(object);
        out.extend_from_slice(b"}\n");
        Some(Bytes::from(out))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": metadata});
        let mut out =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }
}

fn expired_line(message: String) -> Bytes {
    let mut out = serde_json::to_vec(
        &json!({"type": "ERROR", "object": ApiError::expired(message).status_json()}),
    )
    .unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Where a watch starts.
struct Start {
    initial: Vec<Arc<Value>>,
    backlog: Vec<Arc<Event>>,
    rx: broadcast::Receiver<Arc<Event>>,
    rv: u64,
    /// Subscribed before the stream starts, so an expiry right after the request counts.
    expiry: tokio::sync::watch::Receiver<u64>,
}

/// Open a watch stream.
pub(crate) fn start(app: Arc<App>, request: WatchRequest) -> Result<Response, ApiError> {
    let requested = match request.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?,
        ),
    };
    let (tx, out) = mpsc::channel::<Bytes>(256);
    let mut expiry = app.faults.expiry();
    expiry.borrow_and_update();
    let start = {
        let mut store = app.store.lock();
        let current = store.rv;
        let collection = store.collection(&request.rt.storage_key());
        match requested {
            Some(rv) if rv < collection.compacted_rv && !request.send_initial => {
                let message = format!(
                    "too old resource version: {rv} ({})",
                    collection.compacted_rv
                );
                drop(store);
                let _ = tx.try_send(expired_line(message));
                return Ok(stream_response(out));
            }
            Some(rv) if !request.send_initial => Start {
                initial: Vec::new(),
                backlog: collection.events_after(rv),
                rx: collection.tx.subscribe(),
                rv,
                expiry,
            },
            _ => {
                let initial = collection
                    .in_namespace(request.namespace.as_deref())
                    .filter(|o| request.matches(o))
                    .cloned()
                    .collect();
                Start {
                    initial,
                    backlog: Vec::new(),
                    rx: collection.tx.subscribe(),
                    rv: current,
                    expiry,
                }
            }
        }
    };
    let open = app.stats.watch_open();
    tokio::spawn(async move {
        let _open = open;
        run(app, request, start, tx).await;
    });
    Ok(stream_response(out))
}

enum Step {
    Continue,
    Stop,
}

async fn deliver(
    request: &WatchRequest,
    tx: &mpsc::Sender<Bytes>,
    event: &Event,
    last_rv: &mut u64,
) -> Step {
    if event.rv <= *last_rv {
        return Step::Continue;
    }
    *last_rv = event.rv;
    let Some(line) = request.render(event) else {
        return Step::Continue;
    };
    if tx.send(line).await.is_err() {
        Step::Stop
    } else {
        Step::Continue
    }
}

async fn run(app: Arc<App>, request: WatchRequest, start: Start, tx: mpsc::Sender<Bytes>) {
    let Start {
        initial,
        backlog,
        mut rx,
        rv,
        mut expiry,
    } = start;
    let mut shutdown = app.shutdown.clone();
    let deadline = request.timeout.map(|t| Instant::now() + t);
    let mut last_rv = rv;
    for obj in &initial {
        if tx.send(request.line("ADDED", obj)).await.is_err() {
            return;
        }
    }
    if request.send_initial && tx.send(request.bookmark(rv, true)).await.is_err() {
        return;
    }
    for event in &backlog {
        if let Step::Stop = deliver(&request, &tx, event, &mut last_rv).await {
            return;
        }
    }
    let mut ticker = tokio::time::interval(app.bookmark_interval);
    ticker.tick().await;
    let too_slow = |rv: u64| {
        expired_line(format!(
            "the watch fell behind and was expired at resource version {rv}"
        ))
    };
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Ok(event) => {
                    if let Step::Stop = deliver(&request, &tx, &event, &mut last_rv).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = tx.send(too_slow(last_rv)).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ticker.tick(), if request.bookmarks => {
                let current = app.store.lock().rv;
                loop {
                    match rx.try_recv() {
                        Ok(event) => {
                            if let Step::Stop = deliver(&request, &tx, &event, &mut last_rv).await {
                                return;
                            }
                        }
                        Err(broadcast::error::TryRecvError::Empty) => break,
                        Err(broadcast::error::TryRecvError::Lagged(_)) => {
                            let _ = tx.send(too_slow(last_rv)).await;
                            return;
                        }
                        Err(broadcast::error::TryRecvError::Closed) => return,
                    }
                }
                last_rv = last_rv.max(current);
                if tx.send(request.bookmark(last_rv, false)).await.is_err() {
                    return;
                }
            },
            _ = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } else { std::future::pending::<()>().await } } => return,
            changed = expiry.changed() => {
                if changed.is_ok() {
                    let _ = tx.send(expired_line(format!("too old resource version: {last_rv} (expired by fault injection)"))).await;
                }
                return;
            },
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
        }
    }
}
