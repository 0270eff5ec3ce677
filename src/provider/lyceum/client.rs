//! HTTP transport for Lyceum's API: Bearer key, per-request timeout, bounded retries with
//! exponential backoff for calls that are safe to repeat (never for creates), and classified,
//! secret-free errors.

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::api::{
    Availability, CreateVmRequest, LogLine, Logs, Pricing, RunList, RunRecord, RunStarted,
    StartRunRequest, VmList, VmRecord,
};
use super::errors::{self, Failure};
use crate::provider::ProviderError;

/// Longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Transport settings.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Base URL ending in `/api/v2/external`.
    pub base_url: String,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts of a repeatable call (at least 1).
    pub attempts: u32,
    /// First backoff delay; doubles per attempt.
    pub backoff: Duration,
}

/// What an abort did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Abort {
    /// Lyceum accepted it.
    Accepted,
    /// No such run.
    NotFound,
    /// Lyceum refused it (e.g. the run already finished).
    Refused(String),
}

/// A Lyceum API client for one API key.
pub struct Client {
    http: reqwest::Client,
    settings: ClientSettings,
    api_key: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.settings.base_url)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

enum Answer {
    Ok(String),
    Status(u16, String, Option<Duration>),
}

impl Client {
    /// A client; fails only if the TLS backend cannot be set up.
    pub fn new(settings: ClientSettings, api_key: String) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("runctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ProviderError::retryable_from("failed to build the Lyceum HTTP client", e)
            })?;
        let mut settings = settings;
        settings.base_url = settings.base_url.trim_end_matches('/').to_string();
        Ok(Self {
            http,
            settings,
            api_key,
        })
    }

    /// The API key (for scrubbing messages).
    pub fn secret(&self) -> &str {
        &self.api_key
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        what: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<Answer, Failure> {
        let url = format!("{}{path}", self.settings.base_url);
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(&self.api_key)
            .query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.scrubbed(errors::transport(what, &e)))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp
            .text()
            .await
            .map_err(|e| self.scrubbed(errors::transport(what, &e)))?;
        if (200..300).contains(&status) {
            Ok(Answer::Ok(text))
        } else {
            Ok(Answer::Status(status, text, retry_after))
        }
    }

    fn scrubbed(&self, f: Failure) -> Failure {
        Failure {
            error: errors::scrub_error(f.error, &[&self.api_key]),
            ambiguous: f.ambiguous,
        }
    }

    fn decode<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, Failure> {
        serde_json::from_str(text).map_err(|e| errors::unexpected(what, &e))
    }

    /// One call, no retries; `Ok(None)` for 404 when `absent_ok`.
    async fn once<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        absent_ok: bool,
    ) -> Result<Option<T>, Failure> {
        let what = format!("{method} {}", path_template(path));
        match self.send(method, &what, path, query, body).await? {
            Answer::Ok(text) => Self::decode(&what, &text).map(Some),
            Answer::Status(404, _, _) if absent_ok => Ok(None),
            Answer::Status(status, text, retry_after) => {
                Err(self.scrubbed(errors::classify(&what, status, &text, retry_after)))
            }
        }
    }

    /// A repeatable call, retried with backoff on transient errors and throttling.
    async fn repeatable<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        absent_ok: bool,
    ) -> Result<Option<T>, Failure> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self
                .once(method.clone(), path, query, body, absent_ok)
                .await
            {
                Err(f) if attempt < self.settings.attempts.max(1) && transient(&f.error) => {
                    let backoff = self
                        .settings
                        .backoff
                        .saturating_mul(1 << (attempt - 1).min(16));
                    tokio::time::sleep(f.error.retry_after().unwrap_or(backoff).min(MAX_BACKOFF))
                        .await;
                }
                other => return other,
            }
        }
    }

    /// Every VM, terminated ones included.
    pub async fn list_vms(&self) -> Result<Vec<VmRecord>, ProviderError> {
        let q: Vec<(&str, String)> = [
            "include_provisioning",
            "include_ready",
            "include_failed",
            "include_terminated",
        ]
        .into_iter()
        .map(|k| (k, "true".to_string()))
        .collect();
        let list: Option<VmList> = self
            .repeatable(Method::GET, "/vms/list", &q, None::<&()>, false)
            .await?;
        Ok(list.unwrap_or_default().vms)
    }

    /// One VM; `None` when Lyceum does not know it.
    pub async fn vm(&self, id: &str) -> Result<Option<VmRecord>, ProviderError> {
        Ok(self
            .repeatable(
                Method::GET,
                &format!("/vms/{id}/status"),
                &[],
                None::<&()>,
                true,
            )
            .await?)
    }

    /// Creates a VM (never retried).
    pub async fn create_vm(&self, req: &CreateVmRequest) -> Result<VmRecord, Failure> {
        let vm: Option<VmRecord> = self
            .once(Method::POST, "/vms/create", &[], Some(req), false)
            .await?;
        vm.ok_or_else(|| Failure {
            error: ProviderError::retryable("Lyceum POST /vms/create answered nothing"),
            ambiguous: true,
        })
    }

    /// Deletes a VM; false when Lyceum does not know it.
    pub async fn delete_vm(&self, id: &str) -> Result<bool, ProviderError> {
        let r: Option<serde_json::Value> = self
            .repeatable(
                Method::DELETE,
                &format!("/vms/{id}"),
                &[],
                None::<&()>,
                true,
            )
            .await?;
        Ok(r.is_some())
    }

    /// Every run the account lists.
    pub async fn list_runs(&self) -> Result<Vec<RunRecord>, ProviderError> {
        let list: Option<RunList> = self
            .repeatable(Method::GET, "/workloads/list", &[], None::<&()>, false)
            .await?;
        Ok(list.map(RunList::into_vec).unwrap_or_default())
    }

    /// One run; `None` when Lyceum does not know it.
    pub async fn run(&self, id: &str) -> Result<Option<RunRecord>, ProviderError> {
        Ok(self
            .repeatable(
                Method::GET,
                &format!("/execution/{id}"),
                &[],
                None::<&()>,
                true,
            )
            .await?)
    }

    /// Starts a run (never retried).
    pub async fn start_run(&self, req: &StartRunRequest) -> Result<RunStarted, Failure> {
        let r: Option<RunStarted> = self
            .once(
                Method::POST,
                "/execution/image/start",
                &[],
                Some(req),
                false,
            )
            .await?;
        r.ok_or_else(|| Failure {
            error: ProviderError::retryable("Lyceum run start answered nothing"),
            ambiguous: true,
        })
    }

    /// Aborts a run (a hard stop).
    pub async fn abort_run(&self, id: &str) -> Result<Abort, ProviderError> {
        let path = format!("/workloads/abort/{id}");
        match self
            .repeatable::<serde_json::Value, ()>(Method::POST, &path, &[], None, true)
            .await
        {
            Ok(Some(_)) => Ok(Abort::Accepted),
            Ok(None) => Ok(Abort::NotFound),
            Err(Failure {
                error: ProviderError::InvalidSpec { message },
                ..
            }) => Ok(Abort::Refused(message)),
            Err(f) => Err(f.error),
        }
    }

    /// The last `limit` log lines of a run from the last `hours` hours.
    pub async fn run_logs(
        &self,
        id: &str,
        limit: u32,
        hours: u32,
    ) -> Result<Vec<LogLine>, ProviderError> {
        let q = [
            ("limit", limit.clamp(1, 10_000).to_string()),
            ("hours", hours.clamp(1, 168).to_string()),
        ];
        let logs: Option<Logs> = self
            .repeatable(
                Method::GET,
                &format!("/logs/execution/{id}"),
                &q,
                None::<&()>,
                false,
            )
            .await?;
        Ok(logs.unwrap_or_default().logs)
    }

    /// `/pricing`.
    pub async fn pricing(&self) -> Result<Pricing, ProviderError> {
        let p: Option<Pricing> = self
            .repeatable(Method::GET, "/pricing", &[], None::<&()>, false)
            .await?;
        Ok(p.unwrap_or_default())
    }

    /// `/vms/availability`.
    pub async fn availability(&self) -> Result<Availability, ProviderError> {
        let a: Option<Availability> = self
            .repeatable(Method::GET, "/vms/availability", &[], None::<&()>, false)
            .await?;
        Ok(a.unwrap_or_default())
    }
}

/// Worth repeating unchanged: transient failures and throttling (not capacity, not 404).
fn transient(e: &ProviderError) -> bool {
    matches!(
        e,
        ProviderError::Retryable { .. } | ProviderError::RateLimited { .. }
    )
}

/// A path with ids replaced by placeholders, for messages (`/vms/{id}/status`).
fn path_template(path: &str) -> String {
    let mut prev = "";
    let mut out = Vec::new();
    for part in path.split('/') {
        let is_id = match prev {
            "vms" => !matches!(part, "create" | "list" | "availability"),
            "execution" => !matches!(part, "image" | "streaming"),
            "abort" => true,
            _ => false,
        };
        out.push(if is_id { "{id}" } else { part });
        prev = part;
    }
    out.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_hide_ids() {
        assert_eq!(path_template("/vms/abc/status"), "/vms/{id}/status");
        assert_eq!(path_template("/vms/create"), "/vms/create");
        assert_eq!(path_template("/execution/e1"), "/execution/{id}");
        assert_eq!(
            path_template("/execution/image/start"),
            "/execution/image/start"
        );
        assert_eq!(
            path_template("/workloads/abort/e1"),
            "/workloads/abort/{id}"
        );
        assert_eq!(path_template("/logs/execution/e1"), "/logs/execution/{id}");
    }

    #[test]
    fn only_transient_errors_are_repeated() {
        assert!(transient(&ProviderError::retryable("x")));
        assert!(transient(&ProviderError::RateLimited {
            message: "x".into(),
            retry_after: None
        }));
        assert!(!transient(&ProviderError::Capacity {
            message: "x".into()
        }));
        assert!(!transient(&ProviderError::NotFound {
            message: "x".into()
        }));
        assert!(!transient(&ProviderError::Authentication {
            message: "x".into()
        }));
    }
}
