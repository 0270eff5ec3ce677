//! The TrainingJob controller: turns a job into one CloudResource per attempt and follows the
//! workload to a truthful outcome. It never talks to clouds: it applies and deletes
//! CloudResources (server-side apply, controller ownerReferences) and reads their status, and
//! reads the workload's reports from the callback endpoint ([`crate::callback`]).
//!
//! Each reconcile: observe (the job, its CloudResources from the in-memory index of the
//! controller's CloudResource watch, `machines.rs`, the attempt's reports) → plan
//! (pure, `plan.rs`; asks for offers from the providers' `price()` when an attempt is to start)
//! → act (token Secret, apply or delete CloudResources, delete the job after its TTL) → write
//! status (server-side apply, field manager `runctl`, only when something changed).
//!
//! Delete path (finalizer `runctl.dev/cloudresources`): delete every CloudResource and token
//! Secret of the job and keep the job until the CloudResources are gone (their own finalizer
//! waits for the machines), so deleting a job at any phase leaves no machine behind (with
//! `deletionPolicy: Orphan`, none but the open attempt's).
//!
//! A user's retry request (the `runctl.dev/retry` annotation, `retry_request.rs`) is planned like
//! any other input: the attempt it ends is released like every ended attempt, and the plan's
//! typed decision names the event.
//!
//! Every attempt the job ends itself is released with its machine terminated, whatever the
//! job's `deletionPolicy`: `Orphan` on an attempt's CloudResource is set to `Delete` before the
//! release, so that deadline, budget, suspend and retries never leave a machine billing.

pub mod conditions;
pub mod gang;
pub mod machines;
pub mod offers;
pub mod outcome;
mod pass;
pub mod plan;
pub mod resources;
pub mod retry_request;
pub mod success_record;
pub mod view;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config as ControllerRuntimeConfig, Controller};
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use super::backoff::BackoffConfig;
use super::cloud_resource::spec::read_secret;
use super::{Context, FIELD_MANAGER};
use crate::callback::{AttemptId, Reports, token};
use crate::crd::cloud_resource::CloudResource;
use crate::crd::training_job::{JobPhase, Offer, TrainingJob, TrainingJobStatus};
use machines::{JobKey, MachineIndex};
use plan::Settings;
use resources::ReportingSettings;
use view::{LABEL_JOB, MachineView};

/// Finalizer that keeps a job until its CloudResources are gone.
pub const FINALIZER: &str = "runctl.dev/cloudresources";
/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "trainingjob";

/// TrainingJob controller settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingJobConfig {
    /// How workloads report back (callback URL base, heartbeat, self-termination).
    pub reporting: ReportingSettings,
    /// How long after a machine ended its exit report may still arrive before the attempt is
    /// `MachineLost`.
    pub report_grace: Duration,
    /// How long a machine may take to reach Running before its attempt ends `StartTimeout`.
    pub start_timeout: Option<Duration>,
    /// How long a running attempt may go without a heartbeat, once heartbeats have arrived,
    /// before it ends `HeartbeatsStopped`.
    pub heartbeat_timeout: Option<Duration>,
    /// Wait before a retried attempt, doubling per failure of the same class.
    pub retry: BackoffConfig,
    /// How `reporting.callback_base_url` is judged before a cloud machine is rented.
    pub callback_check: crate::callback::reach::ReachCheck,
}

impl Default for TrainingJobConfig {
    /// The settings of the operator configuration's defaults (`jobs` section): one source for
    /// every default value.
    fn default() -> Self {
        crate::config::OperatorConfig::default().training_job_config()
    }
}

/// How long a reconcile waits for the CloudResource watch's first list before it backs off.
const MACHINES_LISTED_WAIT: Duration = Duration::from_secs(30);

/// Reconcile errors, named after the failed step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CloudResource watch has not listed yet (its API calls fail or are slow).
    #[error("the CloudResources have not been listed yet")]
    MachinesNotListed,
    /// The object lacks namespace or name.
    #[error("object has no namespace")]
    MissingMetadata,
    /// Reading the job failed.
    #[error("failed to read the job: {0}")]
    Get(#[source] kube::Error),
    /// Listing the job's CloudResources failed.
    #[error("failed to list the job's CloudResources: {0}")]
    List(#[source] kube::Error),
    /// Creating or reading the attempt's token Secret failed.
    #[error("failed to create the attempt's callback token Secret: {0}")]
    TokenSecret(#[source] kube::Error),
    /// Reading the data-source credentials Secret failed.
    #[error("failed to read the data-source credentials Secret: {0}")]
    DataCredentials(#[source] super::cloud_resource::spec::SecretError),
    /// Applying a CloudResource failed.
    #[error("failed to apply CloudResource {name}: {source}")]
    Apply {
        /// Object name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Setting `deletionPolicy: Delete` on an ended attempt's CloudResource before its release
    /// failed.
    #[error(
        "failed to set deletionPolicy Delete on CloudResource {name} before releasing it: {source}"
    )]
    TerminateOnRelease {
        /// Object name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Deleting a CloudResource, Secret or the job failed.
    #[error("failed to delete {what}: {source}")]
    Delete {
        /// What.
        what: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Reading the success record of an earlier job of the same name failed.
    #[error("failed to read the success record of an earlier job: {0}")]
    ReadSuccessRecord(#[source] kube::Error),
    /// Writing the job's success record failed.
    #[error("failed to write the job's success record: {0}")]
    WriteSuccessRecord(#[source] kube::Error),
    /// Writing status failed.
    #[error("failed to write status: {0}")]
    WriteStatus(#[source] kube::Error),
    /// The finalizer bookkeeping failed.
    #[error("finalizer bookkeeping failed: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// Adding the finalizer failed.
    #[error("failed to add the finalizer: {0}")]
    AddFinalizer(#[source] kube::Error),
    /// Not an error: CloudResources are still being deleted; check again after the delay.
    #[error("CloudResources still being deleted")]
    StillReleasing(Duration),
}

impl Error {
    /// Static reason for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingMetadata => "MissingMetadata",
            Self::MachinesNotListed => "MachinesNotListed",
            Self::Get(_) => "GetFailed",
            Self::List(_) => "ListFailed",
            Self::TokenSecret(_) => "TokenSecretFailed",
            Self::DataCredentials(e) => e.reason(),
            Self::Apply { .. } => "ApplyFailed",
            Self::Delete { .. } => "DeleteFailed",
            Self::TerminateOnRelease { .. } => "ReleaseFailed",
            Self::ReadSuccessRecord(_) => "SuccessRecordReadFailed",
            Self::WriteSuccessRecord(_) => "SuccessRecordWriteFailed",
            Self::WriteStatus(_) => "StatusWriteFailed",
            Self::Finalizer(_) | Self::AddFinalizer(_) => "FinalizerFailed",
            Self::StillReleasing(_) => "Releasing",
        }
    }

    fn flatten(e: finalizer::Error<Error>) -> Self {
        match e {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
            other => Self::Finalizer(Box::new(other)),
        }
    }
}

/// What every TrainingJob reconcile gets.
pub struct JobContext {
    /// The shared controller context (client, registry, events, backoff).
    pub ctx: Arc<Context>,
    /// TrainingJob settings.
    pub config: TrainingJobConfig,
    /// Callback reports (filled by the callback endpoint of this process).
    pub reports: Arc<Reports>,
    /// Every job's CloudResources, from the controller's watch.
    pub machines: Arc<MachineIndex>,
    /// The resourceVersion of each job as this controller last read or wrote it: a cached job of
    /// that version holds every status write of ours, so it needs no fresh read.
    pub known_versions: Mutex<HashMap<JobKey, String>>,
    /// When this controller started, which is when its process became the leader: heartbeats
    /// the earlier leader received are in no memory it reads, so running attempts get a full
    /// heartbeat timeout from then ([`plan::Settings::leader_since`]).
    pub leader_since: jiff::Timestamp,
}

impl JobContext {
    /// A context with an empty index.
    pub fn new(ctx: Arc<Context>, config: TrainingJobConfig, reports: Arc<Reports>) -> Self {
        Self {
            ctx,
            config,
            reports,
            machines: Arc::new(MachineIndex::new()),
            known_versions: Mutex::new(HashMap::new()),
            leader_since: jiff::Timestamp::now(),
        }
    }

    fn remember_version(&self, job: &JobKey, version: Option<&String>) {
        let mut known = self.known_versions.lock();
        match version {
            Some(v) => {
                known.insert(job.clone(), v.clone());
            }
            None => {
                known.remove(job);
            }
        }
    }
}

fn api_error_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// The job's CloudResources: from the index, plus a direct read of each one this controller
/// applied that the watch has not shown yet.
async fn machines_of(jc: &JobContext, key: &JobKey) -> Result<Vec<MachineView>, Error> {
    // Right after a start (or a new leader), the CloudResource watch may not have listed yet:
    // an empty index would make a running attempt look deleted, and the job would end it as
    // lost and start another machine. Plan only on a complete list.
    if !jc.machines.is_listed()
        && tokio::time::timeout(MACHINES_LISTED_WAIT, jc.machines.listed())
            .await
            .is_err()
    {
        return Err(Error::MachinesNotListed);
    }
    let lookup = jc.machines.lookup(key);
    let mut views = lookup.views;
    if lookup.missing.is_empty() {
        return Ok(views);
    }
    let api: Api<CloudResource> = Api::namespaced(jc.ctx.client.clone(), &key.namespace);
    for name in lookup.missing {
        match api.get_opt(&name).await.map_err(Error::List)? {
            Some(cr) => {
                if let Some((_, v)) = machines::owned_view(&cr)
                    && !views.iter().any(|w| w.name == v.name)
                {
                    views.push(v);
                }
            }
            None => jc.machines.forget_expected(key, &name),
        }
    }
    views.sort_by_key(|v| v.attempt);
    Ok(views)
}

async fn data_credential_keys(
    ctx: &Context,
    job: &TrainingJob,
    ns: &str,
) -> Result<Vec<String>, Error> {
    let Some(secret) = job
        .spec
        .workload
        .data_source
        .as_ref()
        .and_then(|d| d.credentials_secret_ref.as_ref())
    else {
        return Ok(vec![]);
    };
    let (data, _) = read_secret(&ctx.client, ns, &secret.name)
        .await
        .map_err(Error::DataCredentials)?;
    Ok(data.into_keys().collect())
}

/// The plan's settings under the operator's configuration (also what `runctl plan` plans with).
pub fn plan_settings(ctx: &Context, config: &TrainingJobConfig) -> Settings {
    Settings {
        poll_interval: ctx.config.poll_interval,
        resync: ctx.config.resync_interval,
        report_grace: config.report_grace,
        start_timeout: config.start_timeout,
        heartbeat_timeout: config.heartbeat_timeout,
        retry: config.retry,
        callback: crate::callback::reach::judge(
            Some(config.reporting.callback_base_url.as_str()),
            config.callback_check,
        ),
        enabled_providers: ctx.registry.config().enabled_kinds(),
        report_refresh: ctx.config.cost_refresh_interval,
        leader_since: None,
    }
}

/// Creates the token Secret (once, where the workload reports) and applies the attempt's
/// CloudResource.
async fn start(
    job: &TrainingJob,
    jc: &JobContext,
    ns: &str,
    attempt: u32,
    offer: &Offer,
    max_lifetime_seconds: Option<i64>,
) -> Result<(), Error> {
    let ctx = &jc.ctx;
    // A workload that sends no reports (the cluster's own Pods) needs no token.
    if crate::provider::descriptor::of(offer.provider).reports {
        token_secret(job, jc, ns, attempt).await?;
    }
    let keys = data_credential_keys(ctx, job, ns).await?;
    apply_attempt(job, jc, ns, attempt, offer, max_lifetime_seconds, &keys).await
}

/// Creates the attempt's callback token Secret, once.
async fn token_secret(
    job: &TrainingJob,
    jc: &JobContext,
    ns: &str,
    attempt: u32,
) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(jc.ctx.client.clone(), ns);
    // Create without reading first: an existing Secret (a start retried after a lost status
    // write) answers 409 and keeps its token, which a running workload may already hold.
    let value = token::generate();
    let secret = resources::token_secret(job, attempt, &value);
    match secrets.create(&PostParams::default(), &secret).await {
        // This process made the token: keep its digest, so that the workload's reports are
        // verified without reading the Secret back (a burst of exit reports would otherwise
        // cost one Secret read each).
        Ok(_) => jc.reports.cache_token_digest(
            AttemptId {
                namespace: ns.to_string(),
                job: job.name_any(),
                attempt,
            },
            token::digest(&value),
        ),
        Err(e) if api_error_code(&e) == Some(409) => {}
        Err(e) => return Err(Error::TokenSecret(e)),
    }
    Ok(())
}

/// Applies the attempt's CloudResource (its token Secret made before, where one is needed).
async fn apply_attempt(
    job: &TrainingJob,
    jc: &JobContext,
    ns: &str,
    attempt: u32,
    offer: &Offer,
    max_lifetime_seconds: Option<i64>,
    keys: &[String],
) -> Result<(), Error> {
    let ctx = &jc.ctx;
    let mut cr = resources::cloud_resource(job, attempt, offer, &jc.config.reporting, keys);
    cr.spec.max_lifetime_seconds = max_lifetime_seconds;
    let cr_name = cr.name_any();
    let api: Api<CloudResource> = Api::namespaced(ctx.client.clone(), ns);
    api.patch(
        &cr_name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&cr),
    )
    .await
    .map_err(|source| Error::Apply {
        name: cr_name.clone(),
        source,
    })?;
    jc.machines
        .expect(&JobKey::new(ns, job.name_any()), &cr_name);
    info!(job = %job.name_any(), namespace = %ns, attempt, provider = %offer.provider, cloud_resource = %cr_name, "attempt started");
    Ok(())
}

/// Applies the other nodes of a multi-node attempt: copies of its rank 0 CloudResource (read
/// back, so they are of the very offer, class and lifetime rank 0 was) with their rank and rank
/// 0's address. Names are deterministic: a repeated apply changes nothing.
async fn start_nodes(
    job: &TrainingJob,
    jc: &JobContext,
    ns: &str,
    attempt: u32,
    ranks: &[u32],
    master_addr: &str,
) -> Result<(), Error> {
    let api: Api<CloudResource> = Api::namespaced(jc.ctx.client.clone(), ns);
    let rank0_name = resources::cloud_resource_name(&job.name_any(), attempt);
    let rank0 = api.get(&rank0_name).await.map_err(|source| Error::Apply {
        name: rank0_name.clone(),
        source,
    })?;
    for &rank in ranks {
        let cr = resources::node_cloud_resource(job, &rank0, attempt, rank, master_addr);
        let name = cr.name_any();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&cr),
        )
        .await
        .map_err(|source| Error::Apply {
            name: name.clone(),
            source,
        })?;
        jc.machines.expect(&JobKey::new(ns, job.name_any()), &name);
    }
    info!(job = %job.name_any(), namespace = %ns, attempt, ?ranks, "nodes of the attempt started");
    Ok(())
}

async fn delete_ignoring_missing<K>(api: &Api<K>, name: &str) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(e) if api_error_code(&e) == Some(404) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes deleting the CloudResource `name` terminate its machine: sets `deletionPolicy:
/// Delete` on it (JSON merge patch; the policy may change at any time). For an attempt the job
/// ended itself (outcome, retry, suspend, deadline, budget): a machine orphaned then would bill
/// on past `maxTotalCost` and `activeDeadlineSeconds`. A job's `deletionPolicy: Orphan` applies
/// only to the attempt still open when the job itself is deleted.
async fn terminate_on_release(crs: &Api<CloudResource>, name: &str) -> Result<(), Error> {
    let patch = serde_json::json!({"spec": {"deletionPolicy": "Delete"}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match crs.patch(name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(e) if api_error_code(&e) == Some(404) => Ok(()),
        Err(source) => Err(Error::TerminateOnRelease {
            name: name.to_string(),
            source,
        }),
    }
}

/// Deletes an ended attempt's CloudResource, terminating its machine whatever the job's
/// `deletionPolicy` (`orphan`: the object says `Orphan`), and its token Secret.
async fn release(
    ctx: &Context,
    ns: &str,
    job: &str,
    name: &str,
    attempt: u32,
    orphan: bool,
) -> Result<(), Error> {
    let crs: Api<CloudResource> = Api::namespaced(ctx.client.clone(), ns);
    if orphan {
        terminate_on_release(&crs, name).await?;
    }
    delete_ignoring_missing(&crs, name)
        .await
        .map_err(|source| Error::Delete {
            what: format!("CloudResource {name}"),
            source,
        })?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = crate::attempt::token_secret_name(job, attempt);
    delete_ignoring_missing(&secrets, &secret)
        .await
        .map_err(|source| Error::Delete {
            what: format!("Secret {secret}"),
            source,
        })
}

/// Writes the job's status and remembers the version it made.
async fn write_status(
    jc: &JobContext,
    api: &Api<TrainingJob>,
    key: &JobKey,
    status: &TrainingJobStatus,
) -> Result<(), Error> {
    let patch = serde_json::json!({"apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob", "status": status});
    let written = api
        .patch_status(
            &key.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::WriteStatus)?;
    jc.remember_version(key, written.metadata.resource_version.as_ref());
    Ok(())
}

async fn cleanup(job: Arc<TrainingJob>, jc: &JobContext) -> Result<Action, Error> {
    let ctx = &jc.ctx;
    let ns = job.namespace().ok_or(Error::MissingMetadata)?;
    let name = job.name_any();
    let key = JobKey::new(ns.clone(), name.clone());
    let machines = machines_of(jc, &key).await?;
    // Each attempt's token Secret goes with its CloudResource, by name (no list: a label list
    // scans every Secret of the namespace), once: an attempt whose CloudResource is already being
    // deleted was released with its Secret, and the passes that wait for the CloudResources to go
    // delete nothing again. A Secret of an attempt with no CloudResource (a start that failed
    // after the Secret) is owned by the job, so the garbage collector removes it with the job.
    let crs: Api<CloudResource> = Api::namespaced(ctx.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let ended = |attempt: u32| {
        job.status.as_ref().is_some_and(|s| {
            s.attempts
                .iter()
                .any(|a| a.index == attempt && a.end_time.is_some())
        })
    };
    for v in machines.iter().filter(|v| !v.deleting) {
        // `deletionPolicy: Orphan` keeps the machine of the attempt the job was running; the
        // machines of attempts it had already ended are terminated.
        if v.orphan && ended(v.attempt) {
            terminate_on_release(&crs, &v.name).await?;
        }
        delete_ignoring_missing(&crs, &v.name)
            .await
            .map_err(|source| Error::Delete {
                what: format!("CloudResource {}", v.name),
                source,
            })?;
        jc.machines.released(&key, &v.name);
        let n = crate::attempt::token_secret_name(&name, v.attempt);
        delete_ignoring_missing(&secrets, &n)
            .await
            .map_err(|source| Error::Delete {
                what: format!("Secret {n}"),
                source,
            })?;
    }
    if !machines.is_empty() {
        debug!(job = %name, namespace = %ns, remaining = machines.len(), "waiting for CloudResources to be deleted");
        return Err(Error::StillReleasing(ctx.config.transition_poll_interval));
    }
    jc.reports.forget_job(&ns, &name);
    jc.machines.forget_job(&key);
    jc.remember_version(&key, None);
    // No event: the job is gone a moment later, and its events with it.
    Ok(Action::await_change())
}

async fn reconcile(job: Arc<TrainingJob>, jc: Arc<JobContext>) -> Result<Action, Error> {
    let ctx = &jc.ctx;
    let _timer = ctx.metrics.reconcile_timer(CONTROLLER);
    let ns = job.namespace().ok_or(Error::MissingMetadata)?;
    let api: Api<TrainingJob> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = job.uid().unwrap_or_default();
    // A reader's request for live output (`runctl logs -f`): the output sink writes this job's
    // output as it arrives while the request is fresh.
    ctx.logs.follow(
        &ns,
        &job.name_any(),
        job.annotations()
            .get(crate::logs::follow::FOLLOW_ANNOTATION)
            .and_then(|v| crate::logs::follow::until(v, jiff::Timestamp::now())),
    );
    // Add the finalizer and go on in the same reconcile (see `controller::finalizers`); the
    // patched object is fresh, so planning needs no read of it.
    let before = job.metadata.resource_version.clone();
    let job = match super::finalizers::ensure(&api, job, FINALIZER).await {
        Ok(o) => o,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
        Err(e) => return Err(Error::AddFinalizer(e)),
    };
    if job.metadata.resource_version != before {
        jc.remember_version(
            &JobKey::new(ns.clone(), job.name_any()),
            job.metadata.resource_version.as_ref(),
        );
    }
    let result = finalizer(&api, FINALIZER, job, |event| async {
        match event {
            FinalizerEvent::Apply(j) => pass::apply(j, &jc).await,
            FinalizerEvent::Cleanup(j) => cleanup(j, &jc).await,
        }
    })
    .await
    .map_err(Error::flatten);
    if result.is_ok() {
        ctx.backoff.success(&uid);
        ctx.metrics.reconcile_ok(CONTROLLER);
    }
    result
}

fn error_policy(job: Arc<TrainingJob>, err: &Error, jc: Arc<JobContext>) -> Action {
    if let Error::StillReleasing(after) = err {
        return Action::requeue(*after);
    }
    jc.ctx.metrics.reconcile_error(CONTROLLER, err.reason());
    let delay = jc.ctx.backoff.failure(&job.uid().unwrap_or_default(), None);
    warn!(name = %job.name_any(), namespace = ?job.namespace(), reason = err.reason(), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Runs the TrainingJob controller until `shutdown` completes. `reports` must be the store the
/// callback endpoint of this process fills ([`crate::callback::CallbackState::new`]).
///
/// Triggers: the jobs' own watch; each CloudResource event reconciles its owner (and updates the
/// [`MachineIndex`] first); each exit report reconciles its job. Should the exit subscription
/// fall behind, every job is reconciled once (the reports themselves are never lost).
pub async fn run(
    ctx: Arc<Context>,
    config: TrainingJobConfig,
    reports: Arc<Reports>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (jobs, crs): (Api<TrainingJob>, Api<CloudResource>) = match &ctx.config.watch_namespace {
        Some(ns) => (
            Api::namespaced(ctx.client.clone(), ns),
            Api::namespaced(ctx.client.clone(), ns),
        ),
        None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
    };
    let (lagged_tx, lagged_rx) = tokio::sync::watch::channel(0u64);
    let exit_refs = futures::stream::unfold(
        (reports.subscribe_exit_ids(), lagged_tx),
        |(mut rx, lagged)| async move {
            use tokio::sync::broadcast::error::RecvError;
            let next = match rx.recv().await {
                Ok(id) => Some(ObjectRef::<TrainingJob>::new(&id.job).within(&id.namespace)),
                Err(RecvError::Lagged(n)) => {
                    warn!(
                        missed = n,
                        "fell behind exit reports; reconciling every job"
                    );
                    lagged.send_modify(|c| *c += 1);
                    None
                }
                Err(RecvError::Closed) => return None,
            };
            Some((next, (rx, lagged)))
        },
    )
    .filter_map(futures::future::ready);
    let lagged = futures::stream::unfold(lagged_rx, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    });
    let config_rt = ControllerRuntimeConfig::default().concurrency(ctx.config.concurrency);
    let jc = Arc::new(JobContext::new(ctx.clone(), config, reports));
    let index = jc.machines.clone();
    // A CloudResource event wakes its job only when what the job sees of it changed.
    let shard = ctx.config.shard;
    let cr_events = watcher(crs, watcher::Config::default().labels(LABEL_JOB))
        .default_backoff()
        .try_filter(move |event| {
            futures::future::ready(super::in_shard(&shard, event) && index.apply(event))
        })
        .touched_objects();
    let (store, job_events) =
        super::cached_watch(jobs, watcher::Config::default(), ctx.config.shard);
    let controller = Controller::for_stream(job_events, store);
    let gauges = tokio::spawn(publish_gauges(controller.store(), ctx.clone()));
    controller
        .owns_stream(cr_events)
        .reconcile_on(exit_refs)
        .reconcile_all_on(lagged)
        .with_config(config_rt)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, jc)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, "controller event");
            }
        })
        .await;
    gauges.abort();
}

/// Rows of the objects gauge: TrainingJobs by provider and phase, from the controller's cache.
pub fn gauge_rows(jobs: &[Arc<TrainingJob>]) -> Vec<(&'static str, &'static str, i64)> {
    let mut counts: BTreeMap<(&'static str, &'static str), i64> = BTreeMap::new();
    for job in jobs {
        let status = job.status.as_ref();
        let provider = status
            .and_then(|s| s.provider)
            .map_or("none", |p| p.as_str());
        let phase = status
            .and_then(|s| s.phase)
            .map_or("Pending", JobPhase::as_str);
        *counts.entry((provider, phase)).or_default() += 1;
    }
    counts.into_iter().map(|((p, s), n)| (p, s, n)).collect()
}

async fn publish_gauges(store: kube::runtime::reflector::Store<TrainingJob>, ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(ctx.config.poll_interval.max(Duration::from_secs(1)));
    loop {
        tick.tick().await;
        ctx.metrics
            .set_objects("TrainingJob", &gauge_rows(&store.state()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauge_rows_count_jobs_by_provider_and_phase() {
        let job = |phase: Option<JobPhase>| {
            let spec = serde_json::from_value(serde_json::json!({
                "placement": {"provider": "sim", "instanceType": "t"}, "workload": {"image": "x"}
            }))
            .unwrap();
            let mut j = TrainingJob::new("j", spec);
            j.status = phase.map(|p| TrainingJobStatus {
                phase: Some(p),
                provider: Some(crate::crd::ProviderKind::Sim),
                ..Default::default()
            });
            Arc::new(j)
        };
        let rows = gauge_rows(&[
            job(None),
            job(Some(JobPhase::Running)),
            job(Some(JobPhase::Running)),
        ]);
        assert_eq!(rows, vec![("none", "Pending", 1), ("sim", "Running", 2)]);
    }
}
