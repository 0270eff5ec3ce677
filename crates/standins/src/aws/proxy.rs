//! The fault-injecting EC2 proxy's public face: start it, set its knobs (faults, lost
//! responses, pending phase, invisibility, instance endings) and read its truth. The request
//! handling is in [`super::handler`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use parking_lot::Mutex;

use super::handler;

/// An error the proxy answers instead of forwarding, in EC2's XML error format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ec2Fault {
    /// Throttling: 503 `RequestLimitExceeded`.
    RequestLimitExceeded,
    /// No capacity: 500 `InsufficientInstanceCapacity` (EC2's status for it is uncertain).
    InsufficientInstanceCapacity,
    /// Server error: 500 `InternalError`.
    InternalError,
    /// Server unavailable: 503 `Unavailable`.
    Unavailable,
    /// Bad credentials: 401 `AuthFailure`.
    AuthFailure,
    /// Not permitted: 403 `UnauthorizedOperation`.
    UnauthorizedOperation,
    /// Quota: 400 `VcpuLimitExceeded`.
    VcpuLimitExceeded,
    /// Any other error.
    Custom {
        /// HTTP status.
        status: u16,
        /// EC2 error code.
        code: String,
        /// Message.
        message: String,
    },
}

impl Ec2Fault {
    /// HTTP status, code and message.
    pub fn parts(&self) -> (u16, String, String) {
        let (s, c, m) = match self {
            Self::RequestLimitExceeded => (503, "RequestLimitExceeded", "Request limit exceeded."),
            Self::InsufficientInstanceCapacity => (
                500,
                "InsufficientInstanceCapacity",
                "We currently do not have sufficient capacity in the Availability Zone you requested.",
            ),
            Self::InternalError => (500, "InternalError", "An internal error has occurred."),
            Self::Unavailable => (
                503,
                "Unavailable",
                "The server is overloaded and can't handle the request.",
            ),
            Self::AuthFailure => (
                401,
                "AuthFailure",
                "AWS was not able to validate the provided access credentials",
            ),
            Self::UnauthorizedOperation => (
                403,
                "UnauthorizedOperation",
                "You are not authorized to perform this operation.",
            ),
            Self::VcpuLimitExceeded => (
                400,
                "VcpuLimitExceeded",
                "You have requested more vCPU capacity than your current vCPU limit allows.",
            ),
            Self::Custom {
                status,
                code,
                message,
            } => return (*status, code.clone(), message.clone()),
        };
        (s, c.to_string(), m.to_string())
    }
}

/// How a provider-side ending happens upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The instance is terminated.
    Terminate,
    /// The instance is stopped.
    Stop,
}

/// What the proxy knows and has been told.
#[derive(Default)]
pub(super) struct Truth {
    /// Queued faults by action.
    pub(super) faults: HashMap<String, VecDeque<Ec2Fault>>,
    /// Answers to drop by action.
    pub(super) lose: HashMap<String, u32>,
    /// (region, ClientToken) → (fingerprint, original RunInstances answer).
    pub(super) tokens: HashMap<(String, String), (String, Bytes)>,
    /// Launch time by instance id.
    pub(super) launched: HashMap<String, Instant>,
    /// Region by instance id.
    pub(super) regions: HashMap<String, String>,
    /// State-reason override (code, message) by instance id.
    pub(super) reasons: HashMap<String, (String, String)>,
    /// Calls that reached moto: action and parameters.
    pub(super) forwarded: Vec<(String, BTreeMap<String, String>)>,
    /// How long new instances show as pending.
    pub(super) hold_pending: Duration,
    /// How long new instances stay invisible.
    pub(super) invisible_after_launch: Duration,
    /// Every `User-Agent` header seen ("" for none).
    pub(super) user_agents: BTreeSet<String>,
}

/// State shared by the proxy's handle and its server.
pub(super) struct Shared {
    pub(super) upstream: String,
    pub(super) http: reqwest::Client,
    pub(super) truth: Mutex<Truth>,
    /// RunInstances calls are handled one at a time (token check, forward, record).
    pub(super) run_lock: tokio::sync::Mutex<()>,
}

/// The proxy, listening on 127.0.0.1; stops on drop.
pub struct Ec2Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Ec2Proxy {
    /// Starts a proxy in front of `upstream` (moto's URL) on a free port of 127.0.0.1.
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            truth: Mutex::new(Truth::default()),
            run_lock: tokio::sync::Mutex::new(()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .fallback(handler::handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// The proxy's base URL (the EC2 endpoint for clients).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// moto's base URL.
    pub fn upstream(&self) -> &str {
        &self.shared.upstream
    }

    /// Answers the next call of `action` with `fault` (queued; one call each).
    pub fn fail_next(&self, action: &str, fault: Ec2Fault) {
        self.shared
            .truth
            .lock()
            .faults
            .entry(action.to_string())
            .or_default()
            .push_back(fault);
    }

    /// Forwards the next call of `action`, then drops the connection before the answer is read.
    pub fn lose_next_response(&self, action: &str) {
        *self
            .shared
            .truth
            .lock()
            .lose
            .entry(action.to_string())
            .or_default() += 1;
    }

    /// Shows instances launched from now on as `pending` for `d` after their launch.
    pub fn hold_pending(&self, d: Duration) {
        self.shared.truth.lock().hold_pending = d;
    }

    /// Hides instances from DescribeInstances for `d` after their launch (an instance id query
    /// answers `InvalidInstanceID.NotFound`), as EC2's eventual consistency may.
    pub fn invisible_after_launch(&self, d: Duration) {
        self.shared.truth.lock().invisible_after_launch = d;
    }

    /// Ends instance `id` at moto (terminate or stop) and reports `reason_code` (e.g.
    /// `Server.SpotInstanceTermination`) as its state reason from then on.
    pub async fn end_instance(
        &self,
        id: &str,
        ending: Ending,
        reason_code: &str,
    ) -> Result<(), String> {
        let action = match ending {
            Ending::Terminate => "TerminateInstances",
            Ending::Stop => "StopInstances",
        };
        let region = self
            .shared
            .truth
            .lock()
            .regions
            .get(id)
            .cloned()
            .unwrap_or_else(|| "us-east-1".into());
        let res = self
            .shared
            .http
            .post(format!("{}/", self.shared.upstream))
            .header(header::AUTHORIZATION, auth_header(&region))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!(
                "Action={action}&Version=2016-11-15&InstanceId.1={id}"
            ))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!(
                "moto answered {} to {action}: {}",
                res.status(),
                res.text().await.unwrap_or_default()
            ));
        }
        let message = format!("{reason_code}: set by runctl's EC2 proxy");
        self.shared
            .truth
            .lock()
            .reasons
            .insert(id.to_string(), (reason_code.to_string(), message));
        Ok(())
    }

    /// Every call of `action` that reached moto, with its parameters.
    pub fn forwarded(&self, action: &str) -> Vec<BTreeMap<String, String>> {
        self.shared
            .truth
            .lock()
            .forwarded
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Every `User-Agent` the proxy was called with ("" for a call without one).
    pub fn user_agents(&self) -> Vec<String> {
        self.shared
            .truth
            .lock()
            .user_agents
            .iter()
            .cloned()
            .collect()
    }

    /// Instance ids launched through the proxy.
    pub fn launched(&self) -> Vec<String> {
        self.shared.truth.lock().launched.keys().cloned().collect()
    }

    /// Forgets the proxy's own state (tokens, faults, overrides, records). A call to moto's
    /// `POST /moto-api/reset` through the proxy does this too.
    pub fn reset(&self) {
        *self.shared.truth.lock() = Truth::default();
    }

    /// Resets moto and the proxy.
    pub async fn reset_all(&self) -> Result<(), String> {
        self.reset();
        let r = self
            .shared
            .http
            .post(format!("{}/moto-api/reset", self.shared.upstream))
            .send()
            .await;
        r.map_err(|e| e.to_string())?
            .error_for_status()
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl Drop for Ec2Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A SigV4-shaped header naming the region (moto reads the region from it, checks nothing else).
pub(super) fn auth_header(region: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/ec2/aws4_request, SignedHeaders=host, Signature=0"
    )
}
