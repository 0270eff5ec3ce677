//! HTTP transport for RunPod REST v2: base URL, Bearer API key, timeouts, the client-side rate
//! limiter, and retries with backoff for idempotent calls. Creates are never retried here: the
//! provider lists first, because a create whose answer was lost may have made a pod.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use super::api::{CreatePod, GpuCatalog, GpuEntry, Pod, PodList};
use super::errors::{classify, scrub};
use super::ratelimit::{Limiter, exhausted_wait, parse_ratelimit, parse_retry_after};
use crate::provider::ProviderError;

/// Transport settings.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// REST v2 base URL, e.g. `https://api.runpod.io/v2`.
    pub base_url: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Extra attempts of idempotent calls after a 5xx or network error.
    pub max_retries: u32,
    /// First backoff; doubles per attempt.
    pub retry_base: Duration,
    /// Longest rate-limit hold slept through before failing fast.
    pub max_rate_limit_wait: Duration,
}

/// A failed call, with whether the request may have taken effect.
#[derive(Debug)]
pub struct CallError {
    /// The classified error.
    pub error: ProviderError,
    /// True after a timeout, a dropped connection or a 5xx: the server may have acted.
    pub ambiguous: bool,
}

impl From<ProviderError> for CallError {
    fn from(error: ProviderError) -> Self {
        Self {
            error,
            ambiguous: false,
        }
    }
}

/// Result of a DELETE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// 204: the pod is being removed.
    Accepted,
    /// 404: no such pod.
    NotFound,
    /// 409: the pod's status allows no removal (it is already terminated).
    Conflict,
}

/// The RunPod API client of one account.
pub struct Client {
    http: reqwest::Client,
    base: String,
    api_key: String,
    limiter: Limiter,
    settings: ClientSettings,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `settings` authenticating with `api_key`.
    pub fn new(settings: ClientSettings, api_key: &str) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!("runctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::InvalidSpec {
                message: format!("cannot build the RunPod HTTP client: {e}"),
            })?;
        Ok(Self {
            http,
            base: settings.base_url.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            limiter: Limiter::new(settings.max_rate_limit_wait),
            settings,
        })
    }

    /// The REST v2 base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The rate limiter (tests and diagnostics).
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// `GET /pods`: every pod of the account.
    pub async fn list_pods(&self) -> Result<Vec<Pod>, ProviderError> {
        let (status, body) = self
            .call(Method::GET, "/pods", None, true)
            .await
            .map_err(|e| e.error)?;
        self.expect_ok::<PodList>(status, &body).map(|l| l.pods)
    }

    /// `GET /pods/{id}`; `None` on 404.
    pub async fn get_pod(&self, id: &str) -> Result<Option<Pod>, ProviderError> {
        let path = format!("/pods/{}", encode(id));
        let (status, body) = self
            .call(Method::GET, &path, None, true)
            .await
            .map_err(|e| e.error)?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.expect_ok::<Pod>(status, &body).map(Some)
    }

    /// `POST /pods`, once.
    pub async fn create_pod(&self, req: &CreatePod, secrets: &[&str]) -> Result<Pod, CallError> {
        let body = serde_json::to_vec(req).map_err(|e| ProviderError::InvalidSpec {
            message: format!("cannot encode the create body: {e}"),
        })?;
        let (status, resp) = self.call(Method::POST, "/pods", Some(body), false).await?;
        if !status.is_success() {
            return Err(CallError {
                error: self.classify(status, &resp, None, secrets),
                ambiguous: false,
            });
        }
        // The pod exists now; an unreadable answer is ambiguous, not a failure to create.
        serde_json::from_slice(&resp).map_err(|e| CallError {
            error: ProviderError::retryable(format!("unreadable create answer from RunPod: {e}")),
            ambiguous: true,
        })
    }

    /// `DELETE /pods/{id}`.
    pub async fn delete_pod(&self, id: &str) -> Result<Deleted, ProviderError> {
        let path = format!("/pods/{}", encode(id));
        let (status, body) = self
            .call(Method::DELETE, &path, None, true)
            .await
            .map_err(|e| e.error)?;
        match status {
            s if s.is_success() => Ok(Deleted::Accepted),
            StatusCode::NOT_FOUND => Ok(Deleted::NotFound),
            StatusCode::CONFLICT => Ok(Deleted::Conflict),
            s => Err(self.classify(s, &body, None, &[])),
        }
    }

    /// `GET /catalog/gpus`.
    pub async fn gpu_catalog(&self) -> Result<Vec<GpuEntry>, ProviderError> {
        let (status, body) = self
            .call(Method::GET, "/catalog/gpus", None, true)
            .await
            .map_err(|e| e.error)?;
        self.expect_ok::<GpuCatalog>(status, &body).map(|c| c.gpus)
    }

    fn expect_ok<T: DeserializeOwned>(
        &self,
        status: StatusCode,
        body: &[u8],
    ) -> Result<T, ProviderError> {
        if !status.is_success() {
            return Err(self.classify(status, body, None, &[]));
        }
        serde_json::from_slice(body).map_err(|e| {
            ProviderError::retryable(format!("unreadable answer from RunPod ({status}): {e}"))
        })
    }

    fn classify(
        &self,
        status: StatusCode,
        body: &[u8],
        retry_after: Option<Duration>,
        extra: &[&str],
    ) -> ProviderError {
        let mut secrets: Vec<&str> = extra.to_vec();
        secrets.push(&self.api_key);
        classify(status.as_u16(), body, retry_after, &secrets)
    }

    /// One call with the limiter; idempotent calls retry 5xx and network errors with backoff.
    /// Answers other than 429 and (after retries) 5xx are returned for the caller to read.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        idempotent: bool,
    ) -> Result<(StatusCode, Vec<u8>), CallError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            self.limiter
                .admit()
                .await
                .map_err(|left| ProviderError::RateLimited {
                    message: format!(
                        "holding RunPod calls back for {}s as its rate limit asked",
                        left.as_secs().max(1)
                    ),
                    retry_after: Some(left),
                })?;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.api_key);
            if let Some(b) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    self.note_limits(&headers);
                    match resp.bytes().await {
                        Ok(b) => Ok((status, b.to_vec(), headers)),
                        Err(e) => Err((
                            format!("reading the answer of {method} {path} failed"),
                            e,
                            true,
                        )),
                    }
                }
                Err(e) => {
                    let sent = !e.is_connect();
                    Err((
                        format!(
                            "{method} {path} failed{}",
                            if e.is_timeout() { " (timeout)" } else { "" }
                        ),
                        e,
                        sent,
                    ))
                }
            };
            let retry = idempotent && attempt < self.settings.max_retries;
            match outcome {
                Ok((status, bytes, headers)) if status == StatusCode::TOO_MANY_REQUESTS => {
                    let retry_after = headers
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    self.limiter
                        .hold(retry_after.unwrap_or(Duration::from_secs(1)));
                    return Err(self.classify(status, &bytes, retry_after, &[]).into());
                }
                Ok((status, bytes, headers)) if status.is_server_error() => {
                    if !retry {
                        let retry_after = headers
                            .get(RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(parse_retry_after);
                        return Err(CallError {
                            error: self.classify(status, &bytes, retry_after, &[]),
                            ambiguous: true,
                        });
                    }
                }
                Ok((status, bytes, _)) => return Ok((status, bytes)),
                Err((message, e, sent)) => {
                    if !retry {
                        let message = scrub(&message, &[&self.api_key]);
                        return Err(CallError {
                            error: ProviderError::retryable_from(message, e),
                            ambiguous: sent,
                        });
                    }
                }
            }
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt += 1;
        }
    }

    fn note_limits(&self, headers: &HeaderMap) {
        let windows = headers
            .get("ratelimit")
            .and_then(|v| v.to_str().ok())
            .map(parse_ratelimit)
            .unwrap_or_default();
        if let Some(wait) = exhausted_wait(&windows) {
            self.limiter.hold(wait);
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .settings
            .retry_base
            .saturating_mul(2u32.saturating_pow(attempt.min(6)));
        let jitter = rand::random_range(0..=base.as_millis().min(1000) as u64 / 4 + 1);
        base + Duration::from_millis(jitter)
    }
}

/// Percent-encodes a path segment (pod ids are alphanumeric, but never trust input).
fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
