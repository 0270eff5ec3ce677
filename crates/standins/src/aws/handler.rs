//! Request handling of the EC2 proxy: injected faults, ClientToken idempotency for
//! RunInstances, DescribeInstances rewritten with the proxy's truth, everything else forwarded
//! to moto, and answers dropped on request.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;

use super::proxy::{Shared, Truth};
use super::{query, xml};

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

/// Handles one call to the proxy.
pub(super) async fn handle(
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
        t.user_agents.insert(
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
        );
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
