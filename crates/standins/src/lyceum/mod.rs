//! A stand-in for Lyceum AI's HTTP API (`/api/v2/external`), served in-process on
//! 127.0.0.1 for tests. It follows runctl's provider reference (section 2): Bearer `lk_…`
//! keys, slow VM creation answering `pending` with a null address, the VM and run status
//! progressions, lists that include terminated machines, string prices, `{"detail": …}` errors
//! (FastAPI `HTTPValidationError` for 422), and capacity refusals as HTTP 500 "could not be
//! provisioned".
//!
//! ```no_run
//! # async fn demo() {
//! let lyceum = runctl_standins::lyceum::LyceumStandin::start().await;
//! let base_url = lyceum.url(); // http://127.0.0.1:PORT/api/v2/external
//! lyceum.push_fault(runctl_standins::lyceum::Fault::Capacity);
//! # }
//! ```

mod routes;
mod state;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::task::JoinHandle;

pub use state::{AddressStyle, DEFAULT_RUN_TIMEOUT_SECONDS, Fault, RUN_TERMINAL, VM_TERMINAL};

use routes::Shared;
use state::Store;

/// The API key the stand-in accepts unless told otherwise.
pub const DEFAULT_API_KEY: &str = "lk_standin_0123456789abcdef";

/// A VM as the stand-in holds it, for assertions.
#[derive(Clone, Debug, PartialEq)]
pub struct VmView {
    /// `vm_id`.
    pub id: String,
    /// `display_name`.
    pub display_name: String,
    /// Current status.
    pub status: String,
    /// `hardware_profile`.
    pub hardware_profile: String,
    /// `on-demand` or `spot`.
    pub instance_type: String,
    /// GPU count.
    pub gpu_count: u32,
    /// `user_public_key` as sent.
    pub user_public_key: String,
}

/// A run as the stand-in holds it, for assertions.
#[derive(Clone, Debug, PartialEq)]
pub struct RunView {
    /// `execution_id`.
    pub id: String,
    /// `run_name`.
    pub run_name: Option<String>,
    /// Current status.
    pub status: String,
    /// Return code, once set.
    pub return_code: Option<i64>,
    /// `execution_type`.
    pub execution_type: String,
    /// `docker_image_ref`.
    pub image: String,
    /// `docker_run_cmd`.
    pub cmd: Vec<String>,
    /// `docker_run_env` as sent (`K=V` lines).
    pub env: String,
    /// `timeout` in seconds.
    pub timeout_seconds: u64,
    /// `labels`.
    pub labels: Vec<String>,
    /// `metadata`.
    pub metadata: Value,
}

impl RunView {
    /// True while the run may still bill.
    pub fn is_live(&self) -> bool {
        !RUN_TERMINAL.contains(&self.status.as_str())
    }
}

impl VmView {
    /// True while the VM may still bill.
    pub fn is_live(&self) -> bool {
        !VM_TERMINAL.contains(&self.status.as_str())
    }
}

/// A running Lyceum stand-in. Stops when dropped.
pub struct LyceumStandin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl LyceumStandin {
    /// Starts a stand-in on 127.0.0.1 with a free port, accepting [`DEFAULT_API_KEY`].
    pub async fn start() -> Self {
        Self::start_with_key(DEFAULT_API_KEY).await
    }

    /// Starts a stand-in that accepts `api_key` (it must start with `lk_` to be accepted).
    pub async fn start_with_key(api_key: &str) -> Self {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            api_key: api_key.to_string(),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind 127.0.0.1:0 for the Lyceum stand-in");
        let addr = listener
            .local_addr()
            .expect("local address of the Lyceum stand-in");
        let app = routes::router(shared.clone());
        let task = tokio::spawn(async move {
            // Serving ends only when the task is aborted.
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// Base URL including `/api/v2/external`, as runctl's `baseUrl` expects.
    pub fn url(&self) -> String {
        format!("http://{}/api/v2/external", self.addr)
    }

    /// The accepted API key.
    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// Queues a one-shot fault for the next create call (VM or run).
    pub fn push_fault(&self, fault: Fault) {
        self.shared.store.lock().faults.push_back(fault);
    }

    /// Time per status step (default 50 ms). `Duration::MAX` freezes the progressions.
    pub fn set_step(&self, step: Duration) {
        self.shared.store.lock().knobs.step = step;
    }

    /// Delay of every create answer; the machine exists before the answer (default none).
    pub fn set_create_delay(&self, delay: Duration) {
        self.shared.store.lock().knobs.create_delay = delay;
    }

    /// Time between an accepted VM DELETE and the VM reading `terminated` (default none).
    pub fn set_delete_lag(&self, lag: Duration) {
        self.shared.store.lock().knobs.delete_lag = lag;
    }

    /// How VM addresses look (default a bare IP).
    pub fn set_address_style(&self, style: AddressStyle) {
        self.shared.store.lock().knobs.address_style = style;
    }

    /// While true, every create answers 402 (out of credits).
    pub fn set_out_of_credits(&self, out: bool) {
        self.shared.store.lock().knobs.out_of_credits = out;
    }

    /// Ends a run with `completed` and `return_code`; false for an unknown id.
    pub fn finish_run(&self, id: &str, return_code: i64) -> bool {
        self.shared
            .store
            .lock()
            .force_run(id, "completed", Some(return_code))
    }

    /// Fails a run (`failed`) with `return_code`; false for an unknown id.
    pub fn fail_run(&self, id: &str, return_code: i64) -> bool {
        self.shared
            .store
            .lock()
            .force_run(id, "failed", Some(return_code))
    }

    /// Sets a run's status (e.g. `running`, `failed_user`, `system_failure`, `cancelled`) with an
    /// optional return code; false for an unknown id.
    pub fn set_run_status(&self, id: &str, status: &str, return_code: Option<i64>) -> bool {
        self.shared.store.lock().force_run(id, status, return_code)
    }

    /// Appends a line to a run's output (what `GET /logs/execution/{id}` returns), as if its
    /// workload printed it; false for an unknown id.
    pub fn print_run(&self, id: &str, line: &str) -> bool {
        self.shared.store.lock().log_run(id, line)
    }

    /// Ends a run with `timeout`, as when its `timeout` passes; false for an unknown id.
    pub fn time_out_run(&self, id: &str) -> bool {
        self.shared.store.lock().force_run(id, "timeout", None)
    }

    /// Sets a VM's status (e.g. `ready`, `stopped`, `terminated`, `error`); false for an
    /// unknown id.
    pub fn set_vm_status(&self, id: &str, status: &str) -> bool {
        self.shared.store.lock().force_vm(id, status)
    }

    /// Removes a VM or run behind the client's back (it vanishes from lists, 404 afterwards).
    pub fn remove(&self, id: &str) -> bool {
        self.shared.store.lock().remove(id)
    }

    /// Every VM, terminated ones included.
    pub fn vms(&self) -> Vec<VmView> {
        let store = self.shared.store.lock();
        let now = std::time::Instant::now();
        store
            .vms
            .iter()
            .map(|v| VmView {
                id: v.id.clone(),
                display_name: v.display_name.clone(),
                status: v.status(now, &store.knobs),
                hardware_profile: v.hardware_profile.clone(),
                instance_type: v.instance_type.clone(),
                gpu_count: v.gpu_count,
                user_public_key: v.user_public_key.clone(),
            })
            .collect()
    }

    /// Every run, finished ones included.
    pub fn runs(&self) -> Vec<RunView> {
        let store = self.shared.store.lock();
        let now = std::time::Instant::now();
        store
            .runs
            .iter()
            .map(|r| {
                let (status, return_code) = r.status(now, &store.knobs);
                RunView {
                    id: r.id.clone(),
                    run_name: r.run_name.clone(),
                    status,
                    return_code,
                    execution_type: r.execution_type.clone(),
                    image: r.image.clone(),
                    cmd: r.cmd.clone(),
                    env: r.env.clone(),
                    timeout_seconds: r.timeout_seconds,
                    labels: r.labels.clone(),
                    metadata: r.metadata.clone(),
                }
            })
            .collect()
    }

    /// Every `User-Agent` the stand-in was called with ("" for a call without one).
    pub fn user_agents(&self) -> Vec<String> {
        self.shared
            .store
            .lock()
            .user_agents
            .iter()
            .cloned()
            .collect()
    }

    /// Requests served for `route`, e.g. `"POST /vms/create"` or `"GET /workloads/list"`.
    pub fn calls(&self, route: &str) -> u32 {
        self.shared
            .store
            .lock()
            .calls
            .get(route)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for LyceumStandin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
