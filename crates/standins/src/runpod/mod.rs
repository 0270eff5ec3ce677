//! A stand-in for RunPod's REST API v2 (`/v2/pods`, `/v2/pods/{id}`, `/v2/pods/{id}/action`,
//! `/v2/catalog/gpus`), served in-process on 127.0.0.1 for tests.
//!
//! It follows runctl's provider reference (section 1.2 and the stand-in checklist): Bearer auth
//! (401), 201 + `PROVISIONING` on create, `{"pods":[…]}` lists, problem+json errors, 422 for
//! unknown create fields, 400 with the "no longer any instances" detail for capacity, 409 for
//! actions the pod's status does not allow, 204 for terminate and DELETE and 404 after DELETE,
//! `RUNNING` before `runtime` is set, `cost` 0.0 once `EXITED`/`TERMINATED`, and 429 with
//! `Retry-After` plus `RateLimit`/`RateLimit-Policy` headers on every authenticated answer.
//!
//! Every pod gets a pod-scoped API key, as RunPod puts `RUNPOD_API_KEY` into every pod: it may
//! read its own pod and (by default, see [`PodKeys`]) act on and delete it, and nothing else
//! (403). With [`RunPodStandin::run_containers`] the stand-in runs each pod's container (its
//! `args` under `/bin/sh`) on the test machine with `RUNPOD_POD_ID` and that key, so runctl's
//! wrapper on a pod really runs and can delete its own pod.
//!
//! Not served: `PATCH /v2/pods/{id}` and logs (runctl uses neither). A `TERMINATED` pod stays
//! listed until it is deleted.
//!
//! ```no_run
//! # async fn demo() {
//! use runctl_standins::runpod::{Fault, Op, RunPodStandin};
//! let rp = RunPodStandin::start().await;
//! rp.push_fault(Op::Create, Fault::Capacity);
//! let base_url = rp.url(); // e.g. http://127.0.0.1:41234/v2
//! # let _ = base_url;
//! # }
//! ```

mod containers;
mod faults;
mod model;
mod server;
mod state;

#[cfg(test)]
mod pod_tests;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use jiff::Timestamp;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::task::JoinHandle;

pub use faults::{Fault, Op, RateLimits, Window};
pub use model::{GpuType, Phase, PodRecord, Progression, Timings, default_catalog};
pub use state::{BAD_ACTION_ERROR, CAPACITY_DETAIL, PodKeys, Refusal};

use server::Shared;
use state::AccountState;

/// The API key a stand-in accepts unless told otherwise.
pub const DEFAULT_API_KEY: &str = "rpa_STANDIN0000000000000000000000";

/// A running stand-in server. Dropping it stops the server.
pub struct RunPodStandin {
    state: Shared,
    addr: SocketAddr,
    task: JoinHandle<()>,
    containers: Mutex<Option<JoinHandle<()>>>,
}

impl RunPodStandin {
    /// Starts a stand-in on 127.0.0.1 with an ephemeral port and [`DEFAULT_API_KEY`].
    pub async fn start() -> Self {
        Self::start_with_key(DEFAULT_API_KEY).await
    }

    /// Starts a stand-in accepting `api_key`.
    ///
    /// # Panics
    /// When no loopback port can be bound (a broken test machine).
    pub async fn start_with_key(api_key: &str) -> Self {
        let state: Shared = Arc::new(Mutex::new(AccountState::new(api_key.to_string())));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let app = server::router(state.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "runpod stand-in stopped");
            }
        });
        Self {
            state,
            addr,
            task,
            containers: Mutex::new(None),
        }
    }

    /// Base URL including `/v2`, e.g. `http://127.0.0.1:41234/v2`.
    pub fn url(&self) -> String {
        format!("http://{}/v2", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The accepted API key.
    pub fn api_key(&self) -> String {
        self.state.lock().api_key.clone()
    }

    /// Sets how pods progress (auto timings or manual).
    pub fn set_progression(&self, p: Progression) {
        self.state.lock().progression = p;
    }

    /// Queues a one-shot fault for the next call of `op`.
    pub fn push_fault(&self, op: Op, fault: Fault) {
        self.state.lock().faults.push((op, fault));
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// Free GPUs of `gpu_id` (`None`: unlimited). Creating beyond it is a capacity 400.
    pub fn set_capacity(&self, gpu_id: &str, free: Option<u32>) {
        let mut st = self.state.lock();
        match free {
            Some(n) => st.capacity.insert(gpu_id.to_string(), n),
            None => st.capacity.remove(gpu_id),
        };
    }

    /// Replaces the rate-limit windows.
    pub fn set_rate_limits(&self, limits: RateLimits) {
        self.state.lock().limits = limits;
    }

    /// Replaces the GPU catalog.
    pub fn set_catalog(&self, catalog: Vec<GpuType>) {
        self.state.lock().catalog = catalog;
    }

    /// Moves a pod to `phase` by hand (it stops auto-progressing). False for an unknown pod.
    pub fn set_phase(&self, id: &str, phase: Phase) -> bool {
        self.state.lock().set_phase(id, phase)
    }

    /// Makes a pod's container exit with `code`: the pod becomes `EXITED` with `cost` 0.0. The
    /// code is kept in the stand-in's truth only; RunPod's API does not report it.
    pub fn exit_container(&self, id: &str, code: i32) -> bool {
        let mut st = self.state.lock();
        if !st.set_phase(id, Phase::Exited) {
            return false;
        }
        if let Some(p) = st.pods.get_mut(id) {
            p.exit_code = Some(code);
        }
        true
    }

    /// Deletes a pod behind the client's back (it 404s from now on).
    pub fn vanish(&self, id: &str) -> bool {
        self.state.lock().remove(id)
    }

    /// Creates a pod directly from a create body (as another client would), optionally with a
    /// given `createdAt`. Returns the id, or the refusal the API would have answered.
    pub fn seed_pod(&self, body: &Value, created_at: Option<Timestamp>) -> Result<String, Refusal> {
        let raw = body.to_string();
        self.state
            .lock()
            .create(raw.as_bytes(), created_at)
            .map(|p| p.id)
    }

    /// Pods the API still knows (listed), with their truth.
    pub fn pods(&self) -> Vec<PodRecord> {
        let mut st = self.state.lock();
        st.advance(std::time::Instant::now());
        st.pods.values().cloned().collect()
    }

    /// One listed pod.
    pub fn pod(&self, id: &str) -> Option<PodRecord> {
        self.pods().into_iter().find(|p| p.id == id)
    }

    /// Pods deleted so far (by DELETE or [`RunPodStandin::vanish`]).
    pub fn removed(&self) -> Vec<PodRecord> {
        self.state.lock().removed.clone()
    }

    /// Pods that are neither terminated nor deleted and whose env has `key=value`.
    pub fn live_pods_with_env(&self, key: &str, value: &str) -> usize {
        self.pods()
            .iter()
            .filter(|p| p.is_live() && p.env.get(key).map(String::as_str) == Some(value))
            .count()
    }

    /// Every `User-Agent` the stand-in was called with ("" for a call without one).
    pub fn user_agents(&self) -> Vec<String> {
        self.state.lock().user_agents.iter().cloned().collect()
    }

    /// Authenticated calls of `op` so far (refused ones included, 401s not).
    pub fn calls(&self, op: Op) -> u64 {
        let st = self.state.lock();
        if op == Op::Any {
            return st.calls.values().sum();
        }
        st.calls.get(&op).copied().unwrap_or(0)
    }

    /// Accepted create bodies, in order.
    pub fn create_bodies(&self) -> Vec<Value> {
        self.state.lock().create_bodies.clone()
    }

    /// Runs every pod's container from now on (see the module docs), with `path` as its `PATH`
    /// (the test machine's when `None`). Needs a Tokio runtime.
    pub fn run_containers(&self, path: Option<String>) {
        {
            let mut st = self.state.lock();
            st.containers.enabled = true;
            st.containers.path = path;
        }
        let mut task = self.containers.lock();
        if task.is_none() {
            *task = Some(tokio::spawn(containers::supervise(self.state.clone())));
        }
    }

    /// Sets what pods' own keys may do (and whether pods get one).
    pub fn set_pod_keys(&self, keys: PodKeys) {
        self.state.lock().pod_keys = keys;
    }

    /// The pod-scoped key of a listed pod (`RUNPOD_API_KEY` inside it).
    pub fn pod_api_key(&self, id: &str) -> Option<String> {
        self.state
            .lock()
            .pods
            .get(id)
            .map(|p| p.pod_api_key.clone())
    }

    /// True when the pod was deleted with its own pod-scoped key.
    pub fn deleted_by_itself(&self, id: &str) -> bool {
        self.state.lock().self_deleted.contains(id)
    }

    /// What a pod's container printed (stdout and stderr), when containers run.
    pub fn container_log(&self, id: &str) -> String {
        self.state.lock().logs.get(id).cloned().unwrap_or_default()
    }
}

impl Drop for RunPodStandin {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(task) = self.containers.lock().take() {
            task.abort();
        }
        for pid in self.state.lock().container_pids.values() {
            containers::kill_group(Some(*pid));
        }
    }
}
