//! The fault-injecting EC2 proxy: forwards EC2 query-protocol calls to moto and adds
//! ClientToken idempotency, a pending phase, launch-time invisibility, injected errors, lost
//! responses and provider-side instance endings.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use parking_lot::Mutex;

use super::{query, xml};

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

#[derive(Default)]
struct Truth {
    faults: HashMap<String, VecDeque<Ec2Fault>>,
    lose: HashMap<String, u32>,
    /// (region, ClientToken) → (fingerprint, original RunInstances answer).
    tokens: HashMap<(String, String), (String, Bytes)>,
    launched: HashMap<String, Instant>,
    regions: HashMap<String, String>,
    reasons: HashMap<String, (String, String)>,
    forwarded: Vec<(String, BTreeMap<String, String>)>,
    hold_pending: Duration,
    invisible_after_launch: Duration,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    truth: Mutex<Truth>,
    run_lock: tokio::sync::Mutex<()>,
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
        let app = Router::new().fallback(handle).with_state(shared.clone());
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
fn auth_header(region: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/ec2/aws4_request, SignedHeaders=host, Signature=0"
    )
}

/// An answer as forwarded or made up.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn xml(status: u16, body: String) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml;charset=UTF-8"),
        );
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers,
            body: body.into(),
        }
    }

    fn error(status: u16, code: &str, message: &str) -> Self {
        Self::xml(status, xml::error_body(code, message))
    }

    fn into_response(self, lose: bool) -> Response {
        let mut b = Response::builder().status(self.status);
        for (k, v) in &self.headers {
            if k != header::CONTENT_LENGTH
                && k != header::TRANSFER_ENCODING
                && k != header::CONNECTION
            {
                b = b.header(k, v);
            }
        }
        let body = if lose {
            // Promise the whole body, send half of it, then fail the stream: hyper aborts the
            // connection and the client sees a response that never completed.
            b = b.header(header::CONTENT_LENGTH, self.body.len());
            let half = self.body.slice(..self.body.len() / 2);
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(half),
                Err(std::io::Error::other(
                    "response dropped by runctl's EC2 proxy",
                )),
            ];
            Body::from_stream(futures::stream::iter(chunks))
        } else {
            Body::from(self.body)
        };
        b.body(body)
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path().starts_with("/moto-api/reset") {
        *s.truth.lock() = Truth::default();
        return forward(&s, &method, &uri, &headers, body)
            .await
            .into_response(false);
    }
    let params = query::params(uri.query(), &body);
    let action = params.get("Action").cloned().unwrap_or_default();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let region = query::region(auth).unwrap_or_else(|| "us-east-1".into());
    let (fault, lose) = {
        let mut t = s.truth.lock();
        let fault = t.faults.get_mut(&action).and_then(VecDeque::pop_front);
        let lose = match t.lose.get_mut(&action) {
            Some(n) if *n > 0 && fault.is_none() => {
                *n -= 1;
                true
            }
            _ => false,
        };
        (fault, lose)
    };
    if let Some(f) = fault {
        let (status, code, message) = f.parts();
        return Answer::error(status, &code, &message).into_response(false);
    }
    let answer = match action.as_str() {
        "RunInstances" => run_instances(&s, &method, &uri, &headers, body, &params, &region).await,
        "DescribeInstances" => describe_instances(&s, &method, &uri, &headers, body, &params).await,
        "TerminateInstances" | "StopInstances" if hidden_id(&s, &params).is_some() => {
            let id = hidden_id(&s, &params).unwrap_or_default();
            Answer::error(
                400,
                "InvalidInstanceID.NotFound",
                &format!("The instance ID '{id}' does not exist"),
            )
        }
        _ => {
            s.truth
                .lock()
                .forwarded
                .push((action.clone(), params.clone()));
            forward(&s, &method, &uri, &headers, body).await
        }
    };
    answer.into_response(lose)
}

async fn forward(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Answer {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = s
        .http
        .request(method.clone(), format!("{}{path}", s.upstream));
    for (k, v) in headers {
        if k != header::HOST && k != header::CONTENT_LENGTH && k != header::ACCEPT_ENCODING {
            req = req.header(k, v);
        }
    }
    match req.body(body).send().await {
        Ok(res) => {
            let status = res.status();
            let headers = res.headers().clone();
            match res.bytes().await {
                Ok(body) => Answer {
                    status,
                    headers,
                    body,
                },
                Err(e) => Answer::error(
                    502,
                    "InternalError",
                    &format!("proxy could not read moto's answer: {e}"),
                ),
            }
        }
        Err(e) => Answer::error(
            502,
            "InternalError",
            &format!("proxy could not reach moto: {e}"),
        ),
    }
}

/// RunInstances with EC2's ClientToken semantics.
async fn run_instances(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
    params: &BTreeMap<String, String>,
    region: &str,
) -> Answer {
    let _serial = s.run_lock.lock().await;
    let token = params.get("ClientToken").filter(|t| !t.is_empty()).cloned();
    let print = query::fingerprint(params);
    if let Some(t) = &token {
        let known = s
            .truth
            .lock()
            .tokens
            .get(&(region.to_string(), t.clone()))
            .cloned();
        if let Some((known_print, original)) = known {
            if known_print != print {
                return Answer::error(
                    400,
                    "IdempotentParameterMismatch",
                    "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).",
                );
            }
            return Answer::xml(200, String::from_utf8_lossy(&original).into_owned());
        }
    }
    s.truth
        .lock()
        .forwarded
        .push(("RunInstances".into(), params.clone()));
    let answer = forward(s, method, uri, headers, body).await;
    if answer.status.is_success() {
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        let nodes = xml::scan(&text);
        let mut t = s.truth.lock();
        for item in xml::instance_items(&nodes) {
            if let Some(id) = xml::child_text(&text, &nodes, item, "instanceId") {
                t.launched.insert(id.to_string(), Instant::now());
                t.regions.insert(id.to_string(), region.to_string());
            }
        }
        if let Some(tok) = token {
            t.tokens
                .insert((region.to_string(), tok), (print, answer.body.clone()));
        }
    }
    answer
}

/// DescribeInstances with pending phase, invisibility and state-reason overrides applied.
async fn describe_instances(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
    params: &BTreeMap<String, String>,
) -> Answer {
    let requested = query::instance_ids(params);
    {
        let t = s.truth.lock();
        if let Some(hidden) = requested.iter().find(|id| invisible(&t, id)) {
            return Answer::error(
                400,
                "InvalidInstanceID.NotFound",
                &format!("The instance ID '{hidden}' does not exist"),
            );
        }
    }
    s.truth
        .lock()
        .forwarded
        .push(("DescribeInstances".into(), params.clone()));
    let mut answer = forward(s, method, uri, headers, body).await;
    if !answer.status.is_success() {
        return answer;
    }
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    let rewritten = rewrite(&s.truth.lock(), &text);
    answer.body = rewritten.into();
    answer
}

/// The first instance id of a request that is still invisible.
fn hidden_id(s: &Shared, params: &BTreeMap<String, String>) -> Option<String> {
    let t = s.truth.lock();
    query::instance_ids(params)
        .into_iter()
        .find(|id| invisible(&t, id))
}

fn invisible(t: &Truth, id: &str) -> bool {
    t.launched
        .get(id)
        .is_some_and(|at| at.elapsed() < t.invisible_after_launch)
}

/// Applies the proxy's truth to a DescribeInstances answer.
fn rewrite(t: &Truth, text: &str) -> String {
    let nodes = xml::scan(text);
    let mut edits = vec![];
    for item in xml::instance_items(&nodes) {
        let Some(id) = xml::child_text(text, &nodes, item, "instanceId") else {
            continue;
        };
        if invisible(t, id) {
            edits.push((nodes[item].outer.clone(), String::new()));
            continue;
        }
        let state = xml::children(&nodes, item, "instanceState").next();
        let state_name = state.and_then(|st| xml::child_text(text, &nodes, st, "name"));
        if let (Some(st), Some("running")) = (state, state_name)
            && t.launched
                .get(id)
                .is_some_and(|at| at.elapsed() < t.hold_pending)
        {
            edits.push((
                nodes[st].outer.clone(),
                "<instanceState><code>0</code><name>pending</name></instanceState>".into(),
            ));
        }
        if let Some((code, message)) = t.reasons.get(id) {
            let replacement = format!(
                "<stateReason><code>{}</code><message>{}</message></stateReason>",
                xml::escape(code),
                xml::escape(message)
            );
            match xml::children(&nodes, item, "stateReason").next() {
                Some(r) => edits.push((nodes[r].outer.clone(), replacement)),
                None => {
                    let at = nodes[item].inner.end;
                    edits.push((at..at, replacement));
                }
            }
        }
    }
    xml::apply(text, edits)
}
