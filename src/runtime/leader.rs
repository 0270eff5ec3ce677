//! Leader election through a `coordination.k8s.io/v1` Lease, so that only one replica of the
//! operator talks to providers at a time.
//!
//! The rules (after client-go's leader election):
//! - A missing Lease is created naming us. A Lease held by another identity is taken over only
//!   when it has expired (`renewTime + leaseDurationSeconds < now`) or was released (no holder);
//!   a takeover bumps `leaseTransitions`.
//! - Every write is a replace carrying the resourceVersion we read, so of two concurrent writers
//!   one gets 409 Conflict and loses.
//! - A leader that cannot renew steps down after [`LeaseConfig::renew_deadline`], which is
//!   shorter than the lease duration: it stops leading before anyone else may take over.
//! - On shutdown the leader releases the Lease (clears `holderIdentity`) so a standby takes over
//!   at once instead of waiting for expiry.
//!
//! [`decide`] and [`desired_spec`] are pure; [`LeaderElector`] only needs a `kube::Client`.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

mod decide;

pub use decide::{Action, decide, desired_spec};

/// Where the Lease lives, who we are, and the timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a Lease stays valid after its last renewal (written as `leaseDurationSeconds`,
    /// whole seconds, at least 1).
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_interval: Duration,
    /// How often a standby tries to acquire, and a leader retries a failed renewal.
    pub retry_interval: Duration,
}

impl LeaseConfig {
    /// How long a leader keeps leading without a successful renewal: the lease duration less one
    /// renew interval (but at least half the lease duration), so it steps down before the Lease
    /// can expire for the other replicas.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration
            .saturating_sub(self.renew_interval)
            .max(self.lease_duration / 2)
    }

    /// `leaseDurationSeconds` as written to the Lease.
    pub fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs())
            .unwrap_or(i32::MAX)
            .max(1)
    }
}

/// The identity of this replica: `POD_NAME`, else `HOSTNAME`, else a random one.
pub fn default_identity() -> String {
    ["POD_NAME", "HOSTNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| format!("runctl-{}", uuid::Uuid::new_v4()))
}

/// Errors of one acquire, renew or release attempt.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// A Lease API call failed.
    #[error("failed to {operation} lease {namespace}/{name}")]
    Api {
        /// `get`, `create` or `replace`.
        operation: &'static str,
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        name: String,
        /// The API error (boxed: it is large).
        #[source]
        source: Box<kube::Error>,
    },
    /// The attempt took longer than it may.
    #[error("lease {namespace}/{name} call timed out after {after:?}")]
    Timeout {
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        name: String,
        /// The time allowed.
        after: Duration,
    },
}

/// Runs leader election for one replica.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    metrics: Option<Arc<Metrics>>,
}

impl LeaderElector {
    /// An elector for the Lease `config.namespace/config.name`.
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            metrics: None,
        }
    }

    /// Also reports leadership as `runctl_leader`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    fn api_error(&self, operation: &'static str) -> impl FnOnce(kube::Error) -> LeaderError + '_ {
        move |source| LeaderError::Api {
            operation,
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source: Box::new(source),
        }
    }

    /// One attempt: reads the Lease and creates, renews or takes it over as [`decide`] says.
    /// `Ok(true)` when we hold the Lease afterwards; `Ok(false)` when another replica holds it or
    /// won a concurrent write.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaderError> {
        let current = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(self.api_error("get"))?;
        let now = Timestamp::now();
        let action = decide(current.as_ref(), now, &self.config.identity);
        let spec = desired_spec(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &action,
            now,
            &self.config.identity,
            self.config.lease_duration_seconds(),
        );
        let Some(spec) = spec else {
            if let Action::Wait { holder } = &action {
                tracing::trace!(%holder, lease = %self.config.name, "lease held by another replica");
            }
            return Ok(false);
        };
        let (operation, result) = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                (
                    "create",
                    self.api.create(&PostParams::default(), &lease).await,
                )
            }
            Some(mut lease) => {
                // Keeps metadata.resourceVersion: a concurrent writer makes this a 409.
                lease.spec = Some(spec);
                let result = self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await;
                ("replace", result)
            }
        };
        match result {
            Ok(_) => {
                if let Action::TakeOver { previous } = &action {
                    tracing::info!(previous = previous.as_deref().unwrap_or(""), lease = %self.config.name, "took over lease");
                }
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
                tracing::debug!(lease = %self.config.name, "lost a concurrent lease write");
                Ok(false)
            }
            Err(source) => Err(self.api_error(operation)(source)),
        }
    }

    /// Clears `holderIdentity` if we hold the Lease, so that a standby takes over at once.
    /// `Ok(true)` when it released the Lease.
    pub async fn release(&self) -> Result<bool, LeaderError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(self.api_error("get"))?
        else {
            return Ok(false);
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(false);
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            // Someone else wrote it meanwhile: it is no longer ours to release.
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(false),
            Err(source) => Err(self.api_error("replace")(source)),
        }
    }

    fn publish(&self, is_leader: &watch::Sender<bool>, leading: bool) {
        is_leader.send_if_modified(|v| std::mem::replace(v, leading) != leading);
        if let Some(m) = &self.metrics {
            m.set_leader(leading);
        }
    }

    fn timeout_error(&self, after: Duration) -> LeaderError {
        LeaderError::Timeout {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            after,
        }
    }

    /// Campaigns and renews until `shutdown`, keeping `is_leader` up to date; on shutdown it
    /// sets `is_leader` to false, then releases the Lease if it names us.
    pub async fn run(self, is_leader: watch::Sender<bool>, shutdown: CancellationToken) {
        let deadline = self.config.renew_deadline();
        // When the last successful acquire or renew started; `Some` while leading.
        let mut renewed_at: Option<Instant> = None;
        self.publish(&is_leader, false);
        loop {
            if renewed_at.is_some_and(|t| t.elapsed() >= deadline) {
                tracing::warn!(lease = %self.config.name, ?deadline, "could not renew the lease in time; stepping down");
                renewed_at = None;
                self.publish(&is_leader, false);
            }
            let started = Instant::now();
            // A leader's attempt may not outlive its deadline; a standby's is bounded by the lease.
            let allowed = match renewed_at {
                Some(t) => deadline.saturating_sub(t.elapsed()),
                None => self.config.lease_duration,
            };
            let attempt = tokio::select! {
                () = shutdown.cancelled() => break,
                r = tokio::time::timeout(allowed, self.try_acquire_or_renew()) => {
                    r.unwrap_or_else(|_| Err(self.timeout_error(allowed)))
                }
            };
            let succeeded = attempt.is_ok();
            match attempt {
                Ok(true) => {
                    if renewed_at.is_none() {
                        tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                    }
                    renewed_at = Some(started);
                }
                Ok(false) => {
                    if renewed_at.take().is_some() {
                        tracing::warn!(lease = %self.config.name, "lost the lease to another replica");
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, source = ?std::error::Error::source(&error).map(ToString::to_string), "lease attempt failed");
                }
            }
            self.publish(&is_leader, renewed_at.is_some());
            let wait = match renewed_at {
                Some(_) if succeeded => self.config.renew_interval.min(deadline / 2),
                // Retry a failed renewal, but wake up no later than the deadline.
                Some(t) => self
                    .config
                    .retry_interval
                    .min(deadline.saturating_sub(t.elapsed())),
                None => self.config.retry_interval,
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        self.publish(&is_leader, false);
        // Also when we stepped down but the Lease may still name us: release() checks the holder.
        let allowed = self.config.retry_interval.max(Duration::from_secs(1));
        match tokio::time::timeout(allowed, self.release()).await {
            Ok(Ok(true)) => tracing::info!(lease = %self.config.name, "released the lease"),
            Ok(Ok(false)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "failed to release the lease; it will expire"),
            Err(_) => {
                tracing::warn!(error = %self.timeout_error(allowed), "failed to release the lease; it will expire")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_before_expiry() {
        let cfg = |lease, renew| LeaseConfig {
            namespace: "ns".into(),
            name: "l".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(lease),
            renew_interval: Duration::from_secs(renew),
            retry_interval: Duration::from_secs(2),
        };
        assert_eq!(cfg(15, 5).renew_deadline(), Duration::from_secs(10));
        assert_eq!(cfg(10, 9).renew_deadline(), Duration::from_secs(5));
        for (l, r) in [(15, 5), (1, 1), (60, 1), (2, 30)] {
            assert!(
                cfg(l, r).renew_deadline() < cfg(l, r).lease_duration,
                "{l}/{r}"
            );
        }
        assert_eq!(cfg(0, 1).lease_duration_seconds(), 1);
        assert_eq!(cfg(15, 5).lease_duration_seconds(), 15);
    }
}
