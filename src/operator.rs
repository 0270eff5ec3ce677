//! The operator process: preflight checks, the HTTP endpoints, leader election, and the
//! controllers, which run only while this replica holds the Lease. `runctl run` and
//! `runctl demo` both start exactly this.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, ListParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::callback::{self, CallbackState, Reports};
use crate::config::OperatorConfig;
use crate::controller::backoff::BackoffConfig;
use crate::controller::reaper::{Reaper, ReaperConfig, ReaperMetrics};
use crate::controller::training_job::{self, TrainingJobConfig};
use crate::controller::{Context, ControllerConfig, cloud_resource};
use crate::crd::{CloudResource, TrainingJob};
use crate::logs::sink::LogSink;
use crate::metrics::Metrics;
use crate::provider::ProviderRegistry;
use crate::runtime::http::{self, HttpState};
use crate::runtime::leader::{LeaderElector, LeaseConfig};

/// Why the operator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The CRDs are not installed.
    #[error(
        "the runctl CRDs are not installed in this cluster ({0}); install them with `kubectl apply -f crds/` (or `runctl crd | kubectl apply -f -`)"
    )]
    CrdsMissing(String),
    /// The API server cannot be reached.
    #[error("cannot reach the Kubernetes API server: {0}")]
    ClusterUnreachable(#[source] kube::Error),
    /// The HTTP endpoints could not start.
    #[error("failed to start the metrics and health endpoints: {0}")]
    Http(String),
    /// The job callback endpoint could not start (address in use, TLS files that do not load).
    #[error("failed to start the job callback endpoint: {0}")]
    Callback(String),
}

/// Checks that the cluster answers and both CRDs are installed, by listing (one item of) each
/// kind where the controllers will: in the watched namespace when there is one, so an operator
/// with namespaced RBAC needs no cluster-wide grant for it.
pub async fn preflight(
    client: &Client,
    watch_namespace: Option<&str>,
) -> Result<(), OperatorError> {
    async fn probe<K>(client: &Client, namespace: Option<&str>) -> Result<(), OperatorError>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(OperatorError::CrdsMissing(format!(
                "{}.{} not served",
                K::plural(&()),
                K::group(&())
            ))),
            Err(e) => Err(OperatorError::ClusterUnreachable(e)),
        }
    }
    probe::<CloudResource>(client, watch_namespace).await?;
    probe::<TrainingJob>(client, watch_namespace).await?;
    Ok(())
}

/// Controller settings from the operator configuration.
pub fn controller_config(config: &OperatorConfig, instance: &str) -> ControllerConfig {
    let poll = Duration::from_secs(config.poll_interval_seconds.max(1));
    ControllerConfig {
        installation: config.installation_id.clone(),
        poll_interval: poll,
        transition_poll_interval: poll.min(Duration::from_secs(5)),
        cost_refresh_interval: poll.max(Duration::from_secs(config.cost_refresh_seconds)),
        resync_interval: poll.max(Duration::from_secs(config.resync_interval_seconds)),
        backoff: BackoffConfig {
            base: Duration::from_secs(config.backoff.base_seconds.max(1)),
            max: Duration::from_secs(config.backoff.max_seconds.max(1)),
        },
        account_retry: crate::controller::retry::AccountRetry {
            interval: Duration::from_secs(config.backoff.account_retry_seconds),
            recheck: Duration::from_secs(config.backoff.credentials_recheck_seconds.max(1)),
        },
        concurrency: config.reconcile_concurrency,
        watch_namespace: config.watch_namespace.clone(),
        machine_classes: config.watch_namespace.is_none(),
        shard: config.shard(),
        instance: instance.to_string(),
    }
}

/// A running operator's moving parts, for tests and the demo.
pub struct Operator {
    /// Kubernetes client.
    pub client: Client,
    /// Providers.
    pub registry: Arc<ProviderRegistry>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Controller settings.
    pub controllers: ControllerConfig,
    /// Lease settings; `None` runs without leader election.
    pub lease: Option<LeaseConfig>,
    /// Where to serve metrics and health; `None` serves nothing.
    pub http_addr: Option<SocketAddr>,
    /// Orphan reaper settings; `None` runs no reaper.
    pub reaper: Option<ReaperConfig>,
    /// TrainingJob settings.
    pub jobs: TrainingJobConfig,
    /// Where to serve the job callback endpoint; `None` serves nothing (reports are then
    /// never received, and attempts end as MachineLost).
    pub callback_addr: Option<SocketAddr>,
    /// The certificate and key the callback endpoint serves HTTPS with; `None`: plain HTTP.
    pub callback_tls: Option<callback::TlsFiles>,
}

impl Operator {
    /// Builds an operator from configuration.
    pub fn from_config(
        client: Client,
        config: &OperatorConfig,
        registry: Arc<ProviderRegistry>,
        identity: &str,
    ) -> Result<Self, OperatorError> {
        let http_addr = config
            .metrics_socket_addr()
            .map_err(|e| OperatorError::Http(e.to_string()))?;
        let callback_addr = config
            .callback_socket_addr()
            .map_err(|e| OperatorError::Http(e.to_string()))?;
        let lease = config
            .leader_election
            .enabled
            .then(|| config.lease_config(identity));
        Ok(Self {
            client,
            registry,
            metrics: Arc::new(Metrics::new()),
            controllers: controller_config(config, identity),
            lease,
            http_addr: Some(http_addr),
            reaper: config.reaper_config(),
            jobs: config.training_job_config(),
            callback_addr: Some(callback_addr),
            callback_tls: config.callback_tls_files(),
        })
    }

    /// Runs until `shutdown` is cancelled: preflight, endpoints, leader election, controllers.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), OperatorError> {
        preflight(&self.client, self.controllers.watch_namespace.as_deref()).await?;
        self.announce_providers();
        let ready = Arc::new(AtomicBool::new(false));
        self.serve_http(&ready, &shutdown).await?;
        let (leader_tx, mut leader_rx) = watch::channel(self.lease.is_none());
        // Every replica serves the callback endpoint: it verifies a report's token and
        // persists an exit report in the attempt's CloudResource before it answers, so a standby
        // accepts reports as well as the leader, whose controller reads them from the API (and,
        // for reports it received itself, from `reports` at once). Heartbeats and progress are
        // persisted only by a standby, at most once per `costRefreshSeconds` per attempt.
        let reports = Arc::new(Reports::new());
        // Workload output is kept by the leader only (a standby answers chunks with 421).
        let logs = LogSink::new(
            self.client.clone(),
            self.metrics.clone(),
            crate::logs::sink::FOLLOWED_WRITE_INTERVAL,
        );
        logs.set_leading(false);
        logs.set_shard(self.controllers.shard);
        self.serve_callback(&reports, &logs, &shutdown).await?;
        let election = self.elect(leader_tx, &shutdown);
        ready.store(true, Ordering::SeqCst);
        let reaper_metrics = self
            .reaper
            .as_ref()
            .map(|_| Arc::new(ReaperMetrics::new(&self.metrics)));
        loop {
            let leading = tokio::select! {
                _ = shutdown.cancelled() => false,
                r = leader_rx.wait_for(|l| *l) => r.is_ok(),
            };
            if !leading {
                break;
            }
            let lost = self
                .lead(
                    &reports,
                    &logs,
                    reaper_metrics.as_ref(),
                    &mut leader_rx,
                    &shutdown,
                )
                .await;
            if !lost {
                break;
            }
            warn!("lost leadership: controllers stopped; waiting to lead again");
        }
        election.stop().await;
        info!("stopped");
        Ok(())
    }

    /// Says which providers TrainingJobs may be placed on (a warning when none is enabled).
    fn announce_providers(&self) {
        let enabled = self.registry.config().enabled_kinds();
        if enabled.is_empty() {
            warn!(
                "no provider is enabled (providers.<name>.enabled): TrainingJobs fail ProviderNotEnabled and rent nothing"
            );
        } else {
            let enabled = crate::controller::training_job::offers::enabled_list(&enabled);
            info!(%enabled, "providers TrainingJobs may be placed on");
        }
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` (ready once `ready` is set), when configured.
    async fn serve_http(
        &self,
        ready: &Arc<AtomicBool>,
        shutdown: &CancellationToken,
    ) -> Result<(), OperatorError> {
        let Some(addr) = self.http_addr else {
            return Ok(());
        };
        let router = http::router(HttpState::new(self.metrics.clone(), ready.clone()));
        let bound = http::serve(addr, router, shutdown.clone())
            .await
            .map_err(|e| OperatorError::Http(e.to_string()))?;
        info!(%bound, "serving /metrics, /healthz and /readyz");
        Ok(())
    }

    /// Serves the job callback endpoint (over TLS when configured), when configured.
    async fn serve_callback(
        &self,
        reports: &Arc<Reports>,
        logs: &Arc<LogSink>,
        shutdown: &CancellationToken,
    ) -> Result<(), OperatorError> {
        let Some(addr) = self.callback_addr else {
            return Ok(());
        };
        let router = callback::router(CallbackState::with_sink_every(
            self.client.clone(),
            reports.clone(),
            logs.clone(),
            self.controllers.cost_refresh_interval,
        ));
        let bound = match self.callback_tls.clone() {
            Some(tls) => callback::serve_tls(addr, router, tls, shutdown.clone()).await,
            None => callback::serve(addr, router, shutdown.clone()).await,
        }
        .map_err(|e| OperatorError::Callback(e.to_string()))?;
        let tls = self.callback_tls.is_some();
        info!(%bound, tls, "serving the job callback endpoint");
        Ok(())
    }

    /// Starts leader election through the Lease, or, without one, keeps this replica the leader.
    fn elect(&self, leader_tx: watch::Sender<bool>, shutdown: &CancellationToken) -> Election {
        match self.lease.clone() {
            Some(lease) => {
                info!(lease = %lease.name, namespace = %lease.namespace, identity = %lease.identity, "leader election enabled");
                let elector = LeaderElector::new(self.client.clone(), lease)
                    .with_metrics(self.metrics.clone());
                Election::Lease(tokio::spawn(elector.run(leader_tx, shutdown.clone())))
            }
            None => Election::AlwaysLeader(leader_tx),
        }
    }

    /// One term as the leader: starts the controllers (and the reaper), waits until the
    /// leadership is lost or the operator shuts down, and stops them. Returns whether the
    /// leadership was lost (this replica may lead again).
    async fn lead(
        &self,
        reports: &Arc<Reports>,
        logs: &Arc<LogSink>,
        reaper_metrics: Option<&Arc<ReaperMetrics>>,
        leader_rx: &mut watch::Receiver<bool>,
        shutdown: &CancellationToken,
    ) -> bool {
        info!("leading: starting controllers");
        self.metrics.set_leader(true);
        let term = shutdown.child_token();
        logs.set_leading(true);
        let ctx = Arc::new(
            Context::new(
                self.client.clone(),
                self.registry.clone(),
                self.metrics.clone(),
                self.controllers.clone(),
            )
            .with_logs(logs.clone()),
        );
        let running = self.start_controllers(ctx, reports, reaper_metrics, &term);
        // The elector's sender closes only when it stops, which it does on shutdown.
        let lost = tokio::select! {
            _ = shutdown.cancelled() => false,
            r = leader_rx.wait_for(|l| !*l) => r.is_ok(),
        };
        term.cancel();
        running.stopped().await;
        self.metrics.set_leader(false);
        logs.set_leading(false);
        lost
    }

    /// Spawns the reaper (when configured), the CloudResource, MachineClass (when cluster-wide)
    /// and TrainingJob controllers, each stopping when `term` is cancelled.
    fn start_controllers(
        &self,
        ctx: Arc<Context>,
        reports: &Arc<Reports>,
        reaper_metrics: Option<&Arc<ReaperMetrics>>,
        term: &CancellationToken,
    ) -> Running {
        let until = |t: &CancellationToken| {
            let stop = t.clone();
            async move { stop.cancelled().await }
        };
        // The cluster-wide duties (the reaper, the MachineClass controller) are shard 0's.
        let cluster_duties = ctx.config.shard.runs_cluster_duties();
        let reaper = match (&self.reaper, reaper_metrics) {
            (Some(config), Some(metrics)) if cluster_duties => {
                let reaper = Arc::new(Reaper::new(ctx.clone(), config.clone(), metrics.clone()));
                Some(tokio::spawn(reaper.run(until(term))))
            }
            _ => None,
        };
        let machines = tokio::spawn(cloud_resource::run(ctx.clone(), until(term)));
        let classes = (ctx.config.machine_classes && cluster_duties).then(|| {
            tokio::spawn(crate::controller::machine_class::run(
                ctx.clone(),
                until(term),
            ))
        });
        let jobs = tokio::spawn(training_job::run(
            ctx,
            self.jobs.clone(),
            reports.clone(),
            until(term),
        ));
        Running {
            machines,
            jobs,
            classes,
            reaper,
        }
    }
}

/// A replica's leader election: the elector's task, or, without a Lease, the sender that keeps
/// this replica the leader for as long as it runs.
enum Election {
    /// The elector's task.
    Lease(JoinHandle<()>),
    /// Held, never read: while it lives, the receiver sees this replica leading.
    AlwaysLeader(#[allow(dead_code)] watch::Sender<bool>),
}

impl Election {
    /// Waits a moment for the elector to release the Lease (it stops on shutdown).
    async fn stop(self) {
        if let Self::Lease(elector) = self {
            let _ = tokio::time::timeout(Duration::from_secs(5), elector).await;
        }
    }
}

/// The tasks of one leadership term.
struct Running {
    machines: JoinHandle<()>,
    jobs: JoinHandle<()>,
    classes: Option<JoinHandle<()>>,
    reaper: Option<JoinHandle<()>>,
}

impl Running {
    /// Waits until every task has stopped (after their term was cancelled).
    async fn stopped(self) {
        let _ = self.machines.await;
        let _ = self.jobs.await;
        if let Some(classes) = self.classes {
            let _ = classes.await;
        }
        if let Some(r) = self.reaper {
            let _ = r.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_settings_from_the_configuration() {
        let config = OperatorConfig::default();
        let c = controller_config(&config, "x");
        assert_eq!(c.cost_refresh_interval, Duration::from_secs(1200));
        assert_eq!(c.resync_interval, Duration::from_secs(60));
        assert!(c.machine_classes, "cluster-wide by default");
        let scoped = OperatorConfig {
            watch_namespace: Some("ml".into()),
            ..OperatorConfig::default()
        };
        assert!(
            !controller_config(&scoped, "x").machine_classes,
            "no cluster-scoped classes when watching one namespace"
        );
    }
}
