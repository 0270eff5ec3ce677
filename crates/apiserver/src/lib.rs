//! In-process Kubernetes API test server.
//!
//! [`ApiServer::start`] binds `127.0.0.1:0` and serves enough of the Kubernetes API over real
//! HTTP for kube-rs clients (typed and dynamic `Api`, kube-runtime `Controller`, `watcher`,
//! `finalizer()`, `Recorder`, server-side apply, Lease-based leader election) and for
//! `kubectl` pointed at [`ApiServer::kubeconfig_yaml`]. It knows nothing of runctl's types:
//! custom kinds come from the CustomResourceDefinitions a test installs.
//!
//! ```no_run
//! use runctl_apiserver::{ApiServer, Verb, WriteFault};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let server = ApiServer::start().await?;
//! let client = server.client(); // default namespace "default"
//! // The next status patch of a CloudResource answers 409, as a lost race would.
//! server.faults().fail_writes(WriteFault::conflict(1).on_resource("cloudresources").on_verb(Verb::Patch));
//! // ... run the operator against `client` ...
//! let writes = server.stats().writes();
//! # let _ = (client, writes);
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Implemented conventions
//! - Storage in memory with one global, monotonically increasing resourceVersion; every object
//!   carries `resourceVersion`, `uid`, `creationTimestamp` (and `generation` for custom
//!   resources and CRDs). Lists carry `kind: <Kind>List`, `apiVersion` and
//!   `metadata.resourceVersion`.
//! - Built-in kinds (JSON only): core v1 namespaces (`default`, `kube-system`, `kube-public`,
//!   `kube-node-lease` exist), secrets (`stringData` folded into `data`), configmaps, events,
//!   services, serviceaccounts, pods; `events.k8s.io/v1` events; `coordination.k8s.io/v1` leases;
//!   `apiextensions.k8s.io/v1` customresourcedefinitions. Creating or applying a CRD serves its
//!   versions (with `/status` when declared) and marks it `NamesAccepted` and `Established`.
//! - Verbs: get, list (label selectors with `=`, `==`, `!=`, `in`, `notin`, existence; field
//!   selectors on any dotted path; `limit`/`continue` ignored, all items returned), watch,
//!   create (`generateName`, 409 `AlreadyExists`, 404 for a missing namespace), update (409
//!   `Conflict` on a stale resourceVersion; custom resources need one), delete (finalizers hold
//!   the object with `deletionTimestamp`, no new finalizers afterwards, `uid`/`resourceVersion`
//!   preconditions), deletecollection, and `dryRun=All`.
//! - Namespace deletion: the namespace turns `Terminating` (no new objects: 403), its objects
//!   are deleted with finalizers honoured, and it disappears once empty.
//! - Garbage collection through `ownerReferences`: background (dependents whose owners are all
//!   gone are deleted, finalizers honoured), `Orphan`, and `Foreground` (the owner keeps the
//!   `foregroundDeletion` finalizer until no dependent with `blockOwnerDeletion` remains).
//! - PATCH: merge, JSON patch (`test` of a missing path compares against null), strategic merge
//!   for built-ins (a merge patch where finalizers, ownerReferences and conditions merge by
//!   value or key, with the `$patch` and `$deleteFromPrimitiveList` directives; other lists are
//!   replaced; 415 for custom resources), and server-side apply:
//!   creates when missing, records `managedFields` per `fieldManager`, removes fields the same
//!   manager stopped applying, 409 on fields another manager owns with a different value unless
//!   `force=true`. Lists merge as the schema says (`x-kubernetes-list-type` `map` by its keys,
//!   `set` by value, otherwise atomic); `metadata.finalizers` is a set and
//!   `metadata.ownerReferences` a map by `uid`. Non-apply writes take ownership of the fields
//!   they change.
//! - Status subresource isolation both ways; `generation` bumps only when something outside
//!   `metadata` and (subresource) `status` changes; a write that changes nothing keeps the
//!   resourceVersion and emits no event.
//! - Watch: resume from a resourceVersion, 410 `Expired` ERROR event for one older than the
//!   bounded history, periodic BOOKMARKs, `timeoutSeconds`, `sendInitialEvents=true` with the
//!   `k8s.io/initial-events-end` bookmark, selectors (an object leaving the selection is seen as
//!   DELETED), newline-delimited JSON with `Content-Type: application/json`. Watchers too slow
//!   for the per-watch buffer are expired with 410 and relist.
//! - Custom resource admission: pruning of unknown fields (except under
//!   `x-kubernetes-preserve-unknown-fields`), `default:`, types, `required`, `enum`,
//!   minimum/maximum, lengths, `pattern`, item counts, and CEL `x-kubernetes-validations`
//!   including `oldSelf` transition rules; 422 `Invalid` with `details.causes[]` worded like the
//!   real apiserver's. `fieldValidation=Strict` turns pruned unknown fields into a 400
//!   (`Warn` is treated as `Ignore`: no `Warning` headers are sent).
//! - Errors are `metav1.Status` with the standard reasons (NotFound, AlreadyExists, Conflict,
//!   Invalid, Expired, BadRequest, Forbidden, MethodNotAllowed, UnsupportedMediaType for
//!   protobuf bodies).
//! - Discovery (`/api`, `/api/v1`, `/apis`, `/apis/<group>[/<version>]` with short names,
//!   categories and subresources), `/version`, minimal `/openapi/v2` and `/openapi/v3`,
//!   `PartialObjectMetadata` responses when asked for in `Accept`.
//! - [`Faults`] (failed writes, expired watches, latency) and [`RequestStats`] for tests and
//!   benchmarks; the counts are also served as JSON at `GET /_runctl/stats` (reset with
//!   `POST /_runctl/stats/reset`) for a server in a child process ([`ChildApiServer`],
//!   [`serve_until_stdin_closes`], [`RemoteApiServer`]).
//!
//! # Not implemented
//! Authentication and authorization (every request is allowed), admission webhooks, API
//! aggregation, protobuf and Table output (JSON objects and lists are returned instead),
//! aggregated discovery, version conversion beyond rewriting `apiVersion` (all versions of a
//! CRD share one storage), list pagination, `resourceVersionMatch` on lists (lists always
//! return the latest state), strategic-merge keys of built-in lists beyond the three above
//! (e.g. containers by name), `x-kubernetes-map-type: atomic` maps, validation ratcheting,
//! graceful deletion of pods, `Warning` headers, and the asynchrony of the real garbage
//! collector and namespace controller (here dependents and namespace contents are deleted
//! within the request that deletes their owner).

mod crds;
mod delete;
mod discovery;
mod error;
mod faults;
mod fieldpath;
mod gc;
mod managed;
mod namespaces;
mod patch;
mod remote;
mod resources;
mod schema;
mod selectors;
mod server;
mod stats;
mod store;
mod verbs;
mod watch;
mod write;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

pub use error::Error;
pub use faults::{FaultKind, Faults, WriteFault};
pub use remote::{ChildApiServer, RemoteApiServer, serve_until_stdin_closes};
pub use stats::{RequestStats, Verb};

use server::App;
use store::{Store, StoreLimits};

/// Tunables; [`ServerConfig::default`] suits most tests.
#[derive(Clone, Copy, Debug)]
pub struct ServerConfig {
    /// Watch events kept per resource for resumption; older resourceVersions get 410.
    pub watch_history: usize,
    /// Events buffered per watch before a slow watcher is expired with 410.
    pub watch_buffer: usize,
    /// Interval between BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            watch_history: 10_000,
            watch_buffer: 16_384,
            bookmark_interval: Duration::from_secs(5),
        }
    }
}

/// A running test API server; shut down on [`ApiServer::shutdown`] or drop.
pub struct ApiServer {
    addr: SocketAddr,
    client: kube::Client,
    faults: Arc<Faults>,
    stats: Arc<stats::StatsRecorder>,
    stop: signal::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Start with default settings on `127.0.0.1:0`.
    pub async fn start() -> Result<ApiServer, Error> {
        Self::start_with(ServerConfig::default()).await
    }

    /// Start with `config` on `127.0.0.1:0`.
    pub async fn start_with(config: ServerConfig) -> Result<ApiServer, Error> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(Error::Bind)?;
        let addr = listener.local_addr().map_err(Error::Bind)?;
        let (stop, stopped) = signal::channel(false);
        let mut store = Store::new(StoreLimits {
            history: config.watch_history,
            channel: config.watch_buffer.max(16),
        });
        seed(&mut store);
        let faults = Arc::new(Faults::default());
        let stats = Arc::new(stats::StatsRecorder::default());
        let app = Arc::new(App {
            store: Mutex::new(store),
            faults: faults.clone(),
            stats: stats.clone(),
            bookmark_interval: config.bookmark_interval,
            shutdown: stopped.clone(),
        });
        let mut until = stopped;
        let serve = axum::serve(listener, server::router(app)).with_graceful_shutdown(async move {
            let _ = until.wait_for(|stop| *stop).await;
        });
        let task = tokio::spawn(async move {
            if let Err(error) = serve.await {
                tracing::warn!(%error, "test API server stopped with an error");
            }
        });
        let client = remote::client_for(&format!("http://{addr}"))?;
        Ok(ApiServer {
            addr,
            client,
            faults,
            stats,
            stop,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this server with default namespace `default`.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A kubeconfig pointing at this server (no credentials), for `kubectl --kubeconfig`.
    pub fn kubeconfig_yaml(&self) -> String {
        remote::kubeconfig_for(&self.url())
    }

    /// Request counts so far.
    pub fn stats(&self) -> RequestStats {
        self.stats.snapshot()
    }

    /// Reset the request counts to zero.
    pub fn reset_stats(&self) {
        self.stats.reset();
    }

    /// Fault switches (off by default).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Stop serving: watches end and the listener closes.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The namespaces every cluster has.
fn seed(store: &mut Store) {
    let Some(rt) = store.registry.get("", "v1", "namespaces") else {
        return;
    };
    let now = server::now();
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let ctx = write::WriteCtx {
            rt: &rt,
            namespace: "",
            manager: "kube-apiserver",
            now: &now,
            dry_run: false,
            scope: managed::Scope::Main {
                exclude_status: true,
            },
            strict: false,
        };
        let ns = json!({"metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]}});
        if let Err(error) = write::create(store, &ctx, ns, None) {
            tracing::warn!(name, message = %error.message, "failed to seed namespace");
        }
    }
}
