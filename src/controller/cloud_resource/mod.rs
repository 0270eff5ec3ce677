//! The CloudResource controller: the only part of runctl that talks to clouds.
//!
//! Apply path: observe → plan → act → write status.
//! 1. A new object first gets a create intent (token, attempt, deterministic name) written to
//!    status with server-side apply; only after that write succeeded is create called. A crash
//!    anywhere after the intent leads the next reconcile to look for the machine by owner and
//!    adopt it, and every provider's create is idempotent for the key, so a crash at any point
//!    ends with exactly one machine or none.
//! 2. Machines are observed through the fleet's batched snapshot (one list per provider account
//!    and region per poll interval).
//! 3. Terminal errors mark the object and wait for a spec change; others back off per object.
//!
//! Delete path (finalizer `runctl.dev/machine`): terminate and wait until gone, then release;
//! `deletionPolicy: Orphan` releases at once; an object whose create never happened is released
//! at once; one with an intent but no id is looked up by owner first.

pub mod plan;
pub mod record;
pub mod spec;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerRuntimeConfig, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tracing::{debug, info, warn};

use super::fleet::metered;
use super::machine_class::{self, ClassRefusal};
use super::retry::{self, CreateGate};
use super::{Context, FIELD_MANAGER};
use crate::crd::cloud_resource::{
    CloudResource, CloudResourceStatus, FailureClass, PendingCreate, ResourceState,
};
use crate::crd::machine_class::{MachineClass, MachineClassSpec};
use crate::provider::registry::{Credentials, ProviderKey};
use crate::provider::{Provider, ProviderError, ResourceKey, Termination};
use plan::{ApplyInput, ApplyPlan, CleanupPlan, Released};
use spec::SecretError;

/// Finalizer that keeps the object until its machine is gone.
pub const FINALIZER: &str = "runctl.dev/machine";
/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "cloudresource";

/// Reconcile errors, named after the failed step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object lacks namespace or uid.
    #[error("object has no namespace or uid")]
    MissingMetadata,
    /// Reading the credentials Secret failed.
    #[error("failed to read provider credentials: {0}")]
    Credentials(#[source] SecretError),
    /// Reading a Secret of the workload failed.
    #[error("failed to resolve the workload's Secrets: {0}")]
    Workload(#[source] SecretError),
    /// Building the provider client failed.
    #[error("failed to set up the provider client: {0}")]
    ProviderSetup(#[source] ProviderError),
    /// Observing the machine failed.
    #[error("failed to observe the machine: {0}")]
    Observe(#[source] ProviderError),
    /// Creating the machine failed.
    #[error("failed to create the machine: {0}")]
    Create(#[source] ProviderError),
    /// Terminating the machine failed.
    #[error("failed to terminate the machine: {0}")]
    Terminate(#[source] ProviderError),
    /// Writing status failed.
    #[error("failed to write status: {0}")]
    WriteStatus(#[source] kube::Error),
    /// Writing or removing the creation record failed.
    #[error("failed to write the creation record: {0}")]
    Record(#[source] kube::Error),
    /// Reading the latest status before a create failed.
    #[error("failed to read the latest status: {0}")]
    ReadStatus(#[source] kube::Error),
    /// The finalizer bookkeeping failed.
    #[error("finalizer bookkeeping failed: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// Adding the finalizer failed.
    #[error("failed to add the finalizer: {0}")]
    AddFinalizer(#[source] kube::Error),
    /// Not an error: the machine is still terminating; check again after the delay.
    #[error("machine still terminating")]
    StillTerminating(Duration),
    /// Not a new error: the last create failed less than the object's backoff ago; create
    /// after the delay (an error, so that the backoff keeps growing over failures).
    #[error("backing off after a failed create")]
    BackingOff(Duration),
}

impl Error {
    /// Static reason for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingMetadata => "MissingMetadata",
            Self::Credentials(e) | Self::Workload(e) => e.reason(),
            Self::ProviderSetup(e) | Self::Observe(e) | Self::Create(e) | Self::Terminate(e) => {
                e.reason()
            }
            Self::WriteStatus(_) => "StatusWriteFailed",
            Self::ReadStatus(_) => "StatusReadFailed",
            Self::Record(_) => "CreationRecordFailed",
            Self::Finalizer(_) | Self::AddFinalizer(_) => "FinalizerFailed",
            Self::StillTerminating(_) => "Terminating",
            Self::BackingOff(_) => "BackingOff",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::ProviderSetup(e) | Self::Observe(e) | Self::Create(e) | Self::Terminate(e) => {
                e.retry_after()
            }
            _ => None,
        }
    }

    fn flatten(e: finalizer::Error<Error>) -> Self {
        match e {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
            other => Self::Finalizer(Box::new(other)),
        }
    }
}

/// Everything the reconcile needs about one object.
struct Target {
    api: Api<CloudResource>,
    name: String,
    namespace: String,
    uid: String,
    generation: i64,
    provider: crate::crd::ProviderKind,
    status: CloudResourceStatus,
}

impl Target {
    fn of(cr: &CloudResource, ctx: &Context) -> Result<Self, Error> {
        let namespace = cr.namespace().ok_or(Error::MissingMetadata)?;
        let uid = cr.uid().ok_or(Error::MissingMetadata)?;
        Ok(Self {
            api: Api::namespaced(ctx.client.clone(), &namespace),
            name: cr.name_any(),
            namespace,
            uid,
            generation: cr.metadata.generation.unwrap_or(0),
            provider: cr.spec.provider,
            status: cr.status.clone().unwrap_or_default(),
        })
    }

    fn key(&self, ctx: &Context, attempt: u32) -> ResourceKey {
        ResourceKey {
            installation: ctx.config.installation.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            attempt,
        }
    }

    /// Its status after the failed provider call `e` (made with `pkey`'s credentials).
    fn failed(
        &self,
        e: &ProviderError,
        creating: bool,
        pkey: &ProviderKey,
        now: Timestamp,
    ) -> CloudResourceStatus {
        status::failed(
            &self.status,
            e,
            creating,
            pkey.credentials.as_deref(),
            self.generation,
            now,
        )
    }

    fn attempt(&self) -> u32 {
        self.status.pending_create.as_ref().map_or(1, |p| p.attempt)
    }

    /// Writes `next` with server-side apply when it is worth a write; remembers it as current.
    async fn write(&mut self, ctx: &Context, next: CloudResourceStatus) -> Result<(), Error> {
        if !status::worth_writing(
            &self.status,
            &next,
            ctx.config.cost_refresh_interval,
            Timestamp::now(),
        ) {
            return Ok(());
        }
        // The workload's report belongs to the callback endpoint: applying the cached copy would
        // take its fields over and could write back an older value.
        let mut owned = next.clone();
        owned.report = None;
        let patch = serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1",
            "kind": "CloudResource",
            "status": owned,
        });
        match self
            .api
            .patch_status(
                &self.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => {}
            // The object is gone (a reconcile from a cache that has not seen the deletion yet):
            // there is no status left to write.
            Err(kube::Error::Api(s)) if s.code == 404 => {
                debug!(name = %self.name, "object gone; status not written")
            }
            Err(e) => return Err(Error::WriteStatus(e)),
        }
        // Spend counts when it is written: each increase once, also for machines that end and
        // are deleted before the next look.
        let spent = next.accrued_cost.unwrap_or(0.0) - self.status.accrued_cost.unwrap_or(0.0);
        ctx.metrics
            .add_cost(self.provider.as_str(), &self.namespace, spent);
        self.status = next;
        Ok(())
    }
}

/// Resolves the provider instance (account and region) of an object. The credentials Secret
/// comes from the context's cache, except after an account failure: the retry policy compares
/// the Secret's version now with the one the failure was made with, so it is read as it is.
async fn provider_for(
    cr: &CloudResource,
    t: &Target,
    ctx: &Context,
    class: Option<&MachineClassSpec>,
) -> Result<(ProviderKey, Arc<dyn Provider>), Error> {
    let kind = cr.spec.provider;
    let region = region_of(cr, ctx, class);
    let secret = credentials_ref(cr, t, ctx, class);
    let fresh = t
        .status
        .failure
        .as_ref()
        .is_some_and(|f| f.class == FailureClass::Account);
    provider_instance(ctx, kind, region, secret, fresh).await
}

/// The provider instance of `kind` in `region` with the credentials in Secret `(namespace,
/// name)` (shared with the orphan reaper, which knows instances from creation records). The
/// Secret is read through the context's cache; `fresh` skips it.
pub async fn provider_instance(
    ctx: &Context,
    kind: crate::crd::ProviderKind,
    region: Option<String>,
    secret: Option<(String, String)>,
    fresh: bool,
) -> Result<(ProviderKey, Arc<dyn Provider>), Error> {
    let (credentials, cred_id) = match secret {
        None => (None, None),
        Some((ns, name)) => {
            let (data, rv) = ctx
                .secrets
                .get(&ctx.client, &ns, &name, fresh)
                .await
                .map_err(Error::Credentials)?;
            (
                Some(Credentials::new(data)),
                Some(format!("{ns}/{name}@{rv}")),
            )
        }
    };
    let key = ProviderKey {
        kind,
        region,
        credentials: cred_id,
    };
    let provider = ctx
        .registry
        .get(&key, credentials.as_ref())
        .await
        .map_err(Error::ProviderSetup)?;
    Ok((key, provider))
}

/// The region of an object: its own, else its class's first, else the operator's default (for
/// providers with regions).
fn region_of(
    cr: &CloudResource,
    ctx: &Context,
    class: Option<&MachineClassSpec>,
) -> Option<String> {
    let kind = cr.spec.provider;
    let default = class
        .and_then(machine_class::usage::default_region)
        .or_else(|| ctx.registry.config().default_region(kind));
    spec::region_for(&cr.spec, default)
}

/// The credentials Secret (namespace, name) of an object: the one its create intent recorded
/// (the account its machine lives in), else its own, else its class's, else the operator
/// default.
fn credentials_ref(
    cr: &CloudResource,
    t: &Target,
    ctx: &Context,
    class: Option<&MachineClassSpec>,
) -> Option<(String, String)> {
    if let Some(recorded) = t
        .status
        .pending_create
        .as_ref()
        .and_then(|p| p.credentials.as_deref())
    {
        return recorded
            .split_once('/')
            .map(|(ns, name)| (ns.to_string(), name.to_string()));
    }
    if let Some(own) = &cr.spec.credentials_secret_ref {
        return Some((t.namespace.clone(), own.name.clone()));
    }
    machine_class::usage::credentials_or_default(
        class
            .and_then(|c| c.credentials_secret_ref.as_ref())
            .map(|r| r.key()),
        cr.spec.provider,
        ctx.registry.config(),
    )
}

/// The class the object names, checked for use by the object: namespace, provider, region and
/// the class's own verdict. `Ok(None)` without a class.
async fn usable_class(
    cr: &CloudResource,
    t: &Target,
    ctx: &Context,
) -> Result<Option<Arc<MachineClass>>, ClassRefusal> {
    let Some(name) = &cr.spec.machine_class else {
        return Ok(None);
    };
    let class = ctx.classes.get(name).await?;
    machine_class::usage::check_use(&class, &t.namespace, cr.spec.provider)?;
    let region = region_of(cr, ctx, Some(&class.spec));
    machine_class::usage::check_region(name, &class.spec, region.as_deref())?;
    Ok(Some(class))
}

/// The class the object names, if it exists, for looking up and deleting its machine (no
/// checks: a class taken away must not strand a machine).
async fn known_class(cr: &CloudResource, ctx: &Context) -> Option<Arc<MachineClass>> {
    ctx.classes
        .get(cr.spec.machine_class.as_deref()?)
        .await
        .ok()
}

/// `namespace/name` of the credentials Secret a provider instance was built with.
fn secret_of(pkey: &ProviderKey) -> Option<String> {
    pkey.credentials
        .as_deref()
        .map(|c| c.split('@').next().unwrap_or(c).to_string())
}

/// The creation record of `key`'s attempt.
fn creation_record(t: &Target, pkey: &ProviderKey, key: &ResourceKey) -> record::CreationRecord {
    record::CreationRecord {
        installation: key.installation.clone(),
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        uid: t.uid.clone(),
        attempt: key.attempt,
        token: key.token(),
        machine_name: key.machine_name(),
        provider: pkey.kind,
        region: pkey.region.clone(),
        credentials: secret_of(pkey),
        created_at: Timestamp::now(),
    }
}

/// Removes the creation record of the object's current attempt, if it has one.
async fn forget_record(t: &Target, ctx: &Context) -> Result<(), Error> {
    match &t.status.pending_create {
        Some(intent) => record::forget(&ctx.client, &ctx.records, &t.namespace, &intent.token)
            .await
            .map_err(Error::Record),
        None => Ok(()),
    }
}

fn requeue_for(cr: &CloudResource, t: &Target, ctx: &Context) -> Action {
    let intervals = plan::RevisitIntervals {
        transition: ctx.config.transition_poll_interval,
        resync: ctx.config.resync_interval,
    };
    match plan::revisit(
        &t.status,
        cr.spec.max_lifetime_seconds,
        intervals,
        Timestamp::now(),
    ) {
        plan::Revisit::OnChange => {
            // The machine has ended: no more change detection for it.
            ctx.fleet.untrack(&t.uid);
            Action::await_change()
        }
        // A followed job's provider log is pulled every PULL_INTERVAL.
        plan::Revisit::After(d) if crate::logs::pull::followed(ctx, cr) => {
            Action::requeue(d.min(crate::logs::pull::PULL_INTERVAL))
        }
        plan::Revisit::After(d) => Action::requeue(d),
    }
}

/// Records a state transition a user acts on as an event: a machine that failed, whose state is
/// unknown or that stopped (runctl never stops one), and the end of a machine no TrainingJob
/// controls (a job's own events tell its machine's end). The steps on the way (`Starting`,
/// `Running`, `Stopping`, `Terminating`) are in status and write no event: at scale every event
/// is an API write (docs/benchmarks.md).
async fn announce(
    cr: &CloudResource,
    ctx: &Context,
    before: Option<ResourceState>,
    after: &CloudResourceStatus,
) {
    if before == after.state {
        return;
    }
    let Some(state) = after.state else { return };
    let (type_, reason) = match state {
        ResourceState::Error => (EventType::Warning, "MachineFailed"),
        ResourceState::Unknown => (EventType::Warning, "MachineStateUnknown"),
        ResourceState::Stopped => (EventType::Normal, "MachineStopped"),
        ResourceState::Terminated if !of_a_job(cr) => (EventType::Normal, "MachineTerminated"),
        ResourceState::Terminated
        | ResourceState::Running
        | ResourceState::Starting
        | ResourceState::Stopping
        | ResourceState::Terminating => return,
    };
    let note = format!(
        "{} ({}){}",
        state.as_str(),
        after.reason.as_deref().unwrap_or("-"),
        after
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    );
    ctx.publish(cr, type_, reason, "Observe", note).await;
}

/// True when a TrainingJob controls the object (its attempt's machine): the job's events and
/// conditions tell the machine's end and release, so the object's own would repeat them.
fn of_a_job(cr: &CloudResource) -> bool {
    cr.metadata.owner_references.as_ref().is_some_and(|refs| {
        refs.iter().any(|r| {
            r.controller == Some(true)
                && r.kind == "TrainingJob"
                && r.api_version.starts_with("runctl.dev/")
        })
    })
}

async fn apply(cr: Arc<CloudResource>, ctx: &Context) -> Result<Action, Error> {
    let mut t = Target::of(&cr, ctx)?;
    // Before the first create intent the object must be allowed its class; afterwards the
    // machine may exist and is followed whatever became of the class.
    let class = if t.status.pending_create.is_none() {
        match usable_class(&cr, &t, ctx).await {
            Ok(c) => c,
            Err(refusal) => return refused(&cr, &mut t, ctx, refusal).await,
        }
    } else {
        known_class(&cr, ctx).await
    };
    let class_spec = class.as_ref().map(|c| &c.spec);
    let (pkey, provider) = provider_or_blocked(&cr, &mut t, ctx, class_spec).await?;
    ctx.fleet
        .track(&pkey, &provider, &t.uid, ObjectRef::from_obj(cr.as_ref()));
    let rkey = t.key(ctx, t.attempt());
    let machine = observe_machine(&mut t, ctx, &pkey, provider.as_ref(), &rkey).await?;
    let now = Timestamp::now();
    let decision = plan::plan_apply(ApplyInput {
        generation: t.generation,
        status: &t.status,
        machine: machine.as_ref(),
        max_lifetime_seconds: cr.spec.max_lifetime_seconds,
        credentials: pkey.credentials.as_deref(),
        account_retry: ctx.config.account_retry,
        backoff: super::backoff::delay_for(ctx.config.backoff, ctx.backoff.failures(&t.uid).max(1)),
        now,
    });
    if matches!(decision, ApplyPlan::Create | ApplyPlan::RecordIntent { .. })
        && !status_is_current(&t).await?
    {
        debug!(name = %t.name, "cache behind our last status write; replanning shortly");
        return Ok(Action::requeue(Duration::from_millis(250)));
    }
    debug!(name = %t.name, namespace = %t.namespace, ?decision, "planned");
    let on = Machines {
        cr: &cr,
        ctx,
        pkey: &pkey,
        provider: provider.as_ref(),
        class: class_spec,
        now,
    };
    match decision {
        ApplyPlan::RecordIntent { attempt } => on.record_intent_and_create(&mut t, attempt).await,
        ApplyPlan::Create => {
            create(
                &cr,
                &mut t,
                ctx,
                &pkey,
                provider.as_ref(),
                &rkey,
                class_spec,
            )
            .await
        }
        ApplyPlan::Track => {
            let m = machine
                .as_ref()
                .expect("Track is planned only with a machine");
            on.track(&mut t, m).await
        }
        ApplyPlan::Terminate { reason } => on.terminate(&mut t, machine.as_ref(), reason).await,
        ApplyPlan::Wait { recheck } => {
            Ok(recheck.map_or_else(Action::await_change, Action::requeue))
        }
        ApplyPlan::BackOff { left } => Err(Error::BackingOff(left)),
        ApplyPlan::Done => Ok(Action::await_change()),
        ApplyPlan::Lost => {
            let before = t.status.state;
            t.write(ctx, status::lost(&t.status, t.generation, now))
                .await?;
            announce(&cr, ctx, before, &t.status).await;
            Ok(Action::await_change())
        }
    }
}

/// The provider instance of the object's account and region; when it cannot be built (the
/// credentials Secret is missing or unreadable) the object says so and the error is returned.
async fn provider_or_blocked(
    cr: &CloudResource,
    t: &mut Target,
    ctx: &Context,
    class: Option<&MachineClassSpec>,
) -> Result<(ProviderKey, Arc<dyn Provider>), Error> {
    match provider_for(cr, t, ctx, class).await {
        Ok(p) => Ok(p),
        Err(e) => {
            let now = Timestamp::now();
            let next = status::blocked(&t.status, e.reason(), e.to_string(), t.generation, now);
            t.write(ctx, next).await?;
            Err(e)
        }
    }
}

/// The object's machine from the fleet snapshot (or a direct observe), when the status says
/// one may exist; a failed observe is written as the object's failure and returned.
async fn observe_machine(
    t: &mut Target,
    ctx: &Context,
    pkey: &ProviderKey,
    provider: &dyn Provider,
    rkey: &ResourceKey,
) -> Result<Option<crate::provider::Machine>, Error> {
    if !plan::needs_observation(&t.status) {
        return Ok(None);
    }
    let id = t.status.provider_id.clone();
    match ctx.fleet.observe(pkey, provider, rkey, id.as_deref()).await {
        Ok(m) => Ok(m),
        Err(e) => {
            let next = t.failed(&e, false, pkey, Timestamp::now());
            t.write(ctx, next).await?;
            Err(Error::Observe(e))
        }
    }
}

/// Whether the cached status is the stored one. Read our own writes before a create call: the
/// cache may not have seen the status we wrote last (a terminal failure, an id), and planning
/// on a stale view would call create again. Creates are rare, so the extra read is cheap.
async fn status_is_current(t: &Target) -> Result<bool, Error> {
    let fresh = t
        .api
        .get_status(&t.name)
        .await
        .map_err(Error::ReadStatus)?
        .status
        .unwrap_or_default();
    Ok(fresh == t.status)
}

/// What the act steps of one pass share: the object, its provider instance and class.
struct Machines<'a> {
    cr: &'a Arc<CloudResource>,
    ctx: &'a Context,
    pkey: &'a ProviderKey,
    provider: &'a dyn Provider,
    class: Option<&'a MachineClassSpec>,
    now: Timestamp,
}

impl Machines<'_> {
    /// Writes the create intent (durable before the create call), then creates.
    async fn record_intent_and_create(
        &self,
        t: &mut Target,
        attempt: u32,
    ) -> Result<Action, Error> {
        let key = t.key(self.ctx, attempt);
        let intent = PendingCreate {
            token: key.token(),
            attempt,
            machine_name: key.machine_name(),
            since: Time(self.now),
            generation: t.generation,
            credentials: secret_of(self.pkey),
        };
        let next = status::intent(&t.status, intent, t.generation, self.now);
        t.write(self.ctx, next).await?;
        create(
            self.cr,
            t,
            self.ctx,
            self.pkey,
            self.provider,
            &key,
            self.class,
        )
        .await
    }

    /// Follows a running machine: its price when the provider gave none yet, the provider's
    /// own log (Lyceum runs, before an end is written), its status.
    async fn track(&self, t: &mut Target, m: &crate::provider::Machine) -> Result<Action, Error> {
        let (cr, ctx) = (self.cr, self.ctx);
        let (quote, source) = if t.status.cost_per_hour.is_none() && m.price_per_hour.is_none() {
            let spec = spec::build(&cr.spec, self.pkey.region.clone(), None);
            let price = self.provider.price(&spec);
            match metered(&ctx.metrics, self.provider, "price", price).await {
                Ok(q) => (Some(q.per_hour), Some(q.source)),
                Err(e) => {
                    warn!(name = %t.name, error = %e, "price lookup failed");
                    (None, None)
                }
            }
        } else {
            (None, None)
        };
        crate::logs::pull::observed(ctx, cr, self.provider, m).await;
        let before = t.status.state;
        let next = status::track(&t.status, m, quote, source, t.generation, self.now);
        t.write(ctx, next).await?;
        announce(cr, ctx, before, &t.status).await;
        Ok(requeue_for(cr, t, ctx))
    }

    /// Terminates a machine past `maxLifetimeSeconds`.
    async fn terminate(
        &self,
        t: &mut Target,
        machine: Option<&crate::provider::Machine>,
        reason: &'static str,
    ) -> Result<Action, Error> {
        let ctx = self.ctx;
        let id = t
            .status
            .provider_id
            .clone()
            .or_else(|| machine.map(|m| m.id.clone()));
        if let Some(id) = id {
            let call = self.provider.terminate(&id);
            metered(&ctx.metrics, self.provider, "terminate", call)
                .await
                .map_err(Error::Terminate)?;
            ctx.fleet.invalidate(self.pkey);
            let note = format!("terminating machine {id}: maxLifetimeSeconds reached");
            ctx.publish(
                self.cr.as_ref(),
                EventType::Normal,
                "MaxLifetimeExceeded",
                "Terminate",
                note,
            )
            .await;
        }
        let mut next = t.status.clone();
        if let Some(m) = machine {
            next = status::track(&next, m, None, None, t.generation, self.now);
        }
        t.write(
            ctx,
            status::terminating(&next, reason, t.generation, self.now),
        )
        .await?;
        Ok(Action::requeue(ctx.config.transition_poll_interval))
    }
}

/// Waits out a class the object may not use: says why in status (once) and an event, and looks
/// again when the class changes or after the resync interval.
async fn refused(
    cr: &CloudResource,
    t: &mut Target,
    ctx: &Context,
    refusal: ClassRefusal,
) -> Result<Action, Error> {
    let now = Timestamp::now();
    let next = status::blocked(
        &t.status,
        refusal.reason(),
        refusal.to_string(),
        t.generation,
        now,
    );
    let news = t.status.failure.as_ref().map(|f| f.reason.as_str()) != Some(refusal.reason());
    t.write(ctx, next).await?;
    if news {
        ctx.publish(
            cr,
            EventType::Warning,
            refusal.reason(),
            "Create",
            refusal.to_string(),
        )
        .await;
    }
    Ok(Action::requeue(ctx.config.resync_interval))
}

async fn create(
    cr: &CloudResource,
    t: &mut Target,
    ctx: &Context,
    pkey: &ProviderKey,
    provider: &dyn Provider,
    key: &ResourceKey,
    class: Option<&MachineClassSpec>,
) -> Result<Action, Error> {
    let spec = machine_spec(cr, t, ctx, pkey, class).await?;
    let quote = match metered(&ctx.metrics, provider, "price", provider.price(&spec)).await {
        Ok(q) => Some(q),
        // The provider's catalog does not know the machine (a RunPod GPU id, a Lyceum GPU
        // type): refused with the known names before any create call, not with the raw answer
        // of a create the provider rejects.
        Err(e) if e.class() == crate::provider::ErrorClass::Terminal => {
            return create_failed(cr, t, ctx, pkey, e, Timestamp::now()).await;
        }
        Err(e) => {
            warn!(name = %t.name, error = %e, "price lookup failed; cost will be filled in later");
            None
        }
    };
    // The creation record must be durable before the create call: the orphan reaper deletes
    // only machines it holds a record for.
    record::ensure(&ctx.client, &ctx.records, &creation_record(t, pkey, key))
        .await
        .map_err(Error::Record)?;
    info!(name = %t.name, namespace = %t.namespace, provider = %provider.kind(), machine = %spec.machine_type(), attempt = key.attempt, "creating machine");
    let result = metered(
        &ctx.metrics,
        provider,
        "create",
        provider.create(key, &spec),
    )
    .await;
    let now = Timestamp::now();
    let before = t.status.state;
    match result {
        Ok(m) => {
            ctx.fleet.mark_stale(pkey);
            let next = status::track(
                &t.status,
                &m,
                quote.as_ref().map(|q| q.per_hour),
                quote.as_ref().map(|q| q.source),
                t.generation,
                now,
            );
            t.write(ctx, next).await?;
            ctx.publish(
                cr,
                EventType::Normal,
                "MachineCreated",
                "Create",
                format!(
                    "{} machine {} ({}) for attempt {}",
                    provider.kind(),
                    m.id,
                    spec.machine_type(),
                    key.attempt
                ),
            )
            .await;
            announce(cr, ctx, before, &t.status).await;
            Ok(requeue_for(cr, t, ctx))
        }
        Err(e) => create_failed(cr, t, ctx, pkey, e, now).await,
    }
}

/// The machine to create: the spec with its Secret values resolved and the class's settings
/// applied; a workload whose Secrets cannot be read blocks the object (status says why).
async fn machine_spec(
    cr: &CloudResource,
    t: &mut Target,
    ctx: &Context,
    pkey: &ProviderKey,
    class: Option<&MachineClassSpec>,
) -> Result<crate::provider::MachineSpec, Error> {
    match spec::resolve(&ctx.client, &t.namespace, &cr.spec, pkey.region.clone()).await {
        Ok(mut s) => {
            if let Some(class) = class {
                machine_class::usage::apply(class, &mut s);
            }
            Ok(s)
        }
        Err(e) => {
            let err = Error::Workload(e);
            let now = Timestamp::now();
            let next = status::blocked(&t.status, err.reason(), err.to_string(), t.generation, now);
            t.write(ctx, next).await?;
            Err(err)
        }
    }
}

/// Records a failed create (or a machine the provider's catalog refused before any create call)
/// and waits as the retry policy says: failures retries cannot fix wait, the rest back off.
async fn create_failed(
    cr: &CloudResource,
    t: &mut Target,
    ctx: &Context,
    pkey: &ProviderKey,
    e: ProviderError,
    now: Timestamp,
) -> Result<Action, Error> {
    let next = t.failed(&e, true, pkey, now);
    t.write(ctx, next).await?;
    ctx.publish(cr, EventType::Warning, e.reason(), "Create", e.to_string())
        .await;
    match retry::create_gate(
        t.status.failure.as_ref(),
        t.generation,
        pkey.credentials.as_deref(),
        now,
        ctx.config.account_retry,
        // The failure just happened: the controller's error backoff spaces the next try.
        Duration::ZERO,
    ) {
        CreateGate::Wait { recheck } => {
            Ok(recheck.map_or_else(Action::await_change, Action::requeue))
        }
        CreateGate::Go | CreateGate::NewAttempt | CreateGate::BackOff { .. } => {
            Err(Error::Create(e))
        }
    }
}

async fn cleanup(cr: Arc<CloudResource>, ctx: &Context) -> Result<Action, Error> {
    let mut t = Target::of(&cr, ctx)?;
    // The attempt is released: the leader writes the wrapper's output it holds a last time.
    crate::logs::pull::released(ctx, &cr).await;
    // The delete path polls the machine itself until it is gone.
    ctx.fleet.untrack(&t.uid);
    let ended_stays = crate::provider::descriptor::of(cr.spec.provider).ended_machines_stay;
    let id = match plan::plan_cleanup(cr.spec.deletion_policy, &t.status, ended_stays) {
        CleanupPlan::Release(why) => return release(&cr, &t, ctx, why).await,
        CleanupPlan::Terminate { id } => Some(id),
        CleanupPlan::FindByOwner => None,
    };
    // One provider lookup (and credentials read) serves both the owner search and terminate.
    let class = known_class(&cr, ctx).await;
    let (pkey, provider) = provider_for(&cr, &t, ctx, class.as_ref().map(|c| &c.spec)).await?;
    let id = match id {
        Some(id) => id,
        None => match find_by_owner(&mut t, ctx, provider.as_ref()).await? {
            Some(id) => id,
            None => return release(&cr, &t, ctx, Released::NothingToDelete).await,
        },
    };
    // The last of the provider's own log (Lyceum runs) before the machine goes.
    crate::logs::pull::pull(ctx, &cr, provider.as_ref(), &id, true).await;
    let outcome = metered(
        &ctx.metrics,
        provider.as_ref(),
        "terminate",
        provider.terminate(&id),
    )
    .await;
    ctx.fleet.invalidate(&pkey);
    match outcome {
        Ok(Termination::Gone) => deleted(&cr, &mut t, ctx, &id).await,
        Ok(Termination::InProgress) => {
            let before = t.status.state;
            let next = status::terminating(&t.status, "Deleting", t.generation, Timestamp::now());
            t.write(ctx, next).await?;
            announce(&cr, ctx, before, &t.status).await;
            Err(Error::StillTerminating(ctx.config.transition_poll_interval))
        }
        Err(e) => {
            let next = t.failed(&e, false, &pkey, Timestamp::now());
            t.write(ctx, next).await?;
            let note = format!("terminating machine {id} failed: {e}");
            ctx.publish(cr.as_ref(), EventType::Warning, e.reason(), "Delete", note)
                .await;
            Err(Error::Terminate(e))
        }
    }
}

/// Lets a deleted object go without terminating anything: the machine is no longer runctl's,
/// so the reaper must not touch it either.
async fn release(
    cr: &CloudResource,
    t: &Target,
    ctx: &Context,
    why: Released,
) -> Result<Action, Error> {
    let note = match why {
        // MachineTerminated was announced when the machine was seen terminated.
        Released::AlreadyTerminated => None,
        Released::Orphaned => Some(format!(
            "deletionPolicy Orphan: machine {} left running",
            t.status.provider_id.as_deref().unwrap_or("-")
        )),
        // A job's attempt without a machine: the job's events tell why.
        Released::NothingToDelete if of_a_job(cr) => None,
        Released::NothingToDelete if t.status.pending_create.is_some() => {
            Some("no machine exists for the recorded create intent".to_string())
        }
        Released::NothingToDelete => Some("no machine was created".to_string()),
    };
    if why == Released::NothingToDelete && t.status.pending_create.is_some() {
        // The record may outlive this object: the reaper removes it if this fails.
        if let Err(e) = forget_record(t, ctx).await {
            warn!(name = %t.name, error = %e, "creation record not removed; the reaper will");
        }
    } else {
        forget_record(t, ctx).await?;
    }
    if let Some(note) = note {
        ctx.publish(cr, EventType::Normal, why.reason(), "Delete", note)
            .await;
    }
    Ok(Action::await_change())
}

/// A create intent without an id: the machine the create may have made, tracked in status, or
/// `None` when there is none to terminate.
async fn find_by_owner(
    t: &mut Target,
    ctx: &Context,
    provider: &dyn crate::provider::Provider,
) -> Result<Option<String>, Error> {
    let key = t.key(ctx, t.attempt());
    let found = metered(
        &ctx.metrics,
        provider,
        "observe",
        provider.observe(&key, None),
    )
    .await
    .map_err(Error::Observe)?;
    match found {
        Some(m) if m.is_billable() => {
            let next = status::track(&t.status, &m, None, None, t.generation, Timestamp::now());
            t.write(ctx, next).await?;
            Ok(Some(m.id))
        }
        _ => Ok(None),
    }
}

/// The machine of a deleted object is gone: the creation record goes, and the user hears of it.
/// Status says so only when another finalizer keeps the object: otherwise it goes as soon as its
/// finalizer is removed, right after, and a `Terminated` status would be seen by nobody but
/// watchers in that moment, for one API write per machine (a crash before the finalizer's removal
/// terminates again, which answers `Gone`).
async fn deleted(
    cr: &CloudResource,
    t: &mut Target,
    ctx: &Context,
    id: &str,
) -> Result<Action, Error> {
    if cr.finalizers().iter().any(|f| f != FINALIZER) {
        let now = Timestamp::now();
        let mut next = status::terminating(&t.status, "Deleted", t.generation, now);
        next.state = Some(ResourceState::Terminated);
        next.reason = Some("Deleted".into());
        next.message = Some("machine terminated because its CloudResource was deleted".into());
        if next.end_time.is_none() {
            next.end_time = Some(Time(now));
        }
        t.write(ctx, next).await?;
    }
    if let Err(e) = forget_record(t, ctx).await {
        warn!(name = %t.name, error = %e, "creation record not removed; the reaper will");
    }
    // A job's machine: the job's MachinesReleased condition tells it.
    if !of_a_job(cr) {
        let note = format!("machine {id} is gone");
        ctx.publish(cr, EventType::Normal, "MachineTerminated", "Delete", note)
            .await;
    }
    Ok(Action::await_change())
}

async fn reconcile(cr: Arc<CloudResource>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer(CONTROLLER);
    let ns = cr.namespace().ok_or(Error::MissingMetadata)?;
    let api: Api<CloudResource> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = cr.uid().unwrap_or_default();
    // Add the finalizer and go on in the same reconcile (see `controller::finalizers`); a job's
    // attempt is applied with it already (`training_job::resources`), so this writes only for
    // objects made without it.
    let cr = match super::finalizers::ensure(&api, cr, FINALIZER).await {
        Ok(o) => o,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
        Err(e) => return Err(Error::AddFinalizer(e)),
    };
    let result = finalizer(&api, FINALIZER, cr, |event| async {
        match event {
            FinalizerEvent::Apply(cr) => apply(cr, &ctx).await,
            FinalizerEvent::Cleanup(cr) => cleanup(cr, &ctx).await,
        }
    })
    .await;
    let result = match result {
        // Removing the finalizer of an object that is already gone: a reconcile from a cache
        // that had not seen the deletion yet. Nothing is left to do.
        Err(finalizer::Error::RemoveFinalizer(kube::Error::Api(s))) if s.code == 404 => {
            Ok(Action::await_change())
        }
        other => other.map_err(Error::flatten),
    };
    if result.is_ok() {
        ctx.backoff.success(&uid);
        ctx.metrics.reconcile_ok(CONTROLLER);
    }
    result
}

fn error_policy(cr: Arc<CloudResource>, err: &Error, ctx: Arc<Context>) -> Action {
    if let Error::StillTerminating(after) | Error::BackingOff(after) = err {
        return Action::requeue(*after);
    }
    ctx.metrics.reconcile_error(CONTROLLER, err.reason());
    let delay = ctx
        .backoff
        .failure(&cr.uid().unwrap_or_default(), err.retry_after());
    warn!(name = %cr.name_any(), namespace = ?cr.namespace(), reason = err.reason(), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Runs the CloudResource controller until `shutdown` completes.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<CloudResource> = match &ctx.config.watch_namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let config = ControllerRuntimeConfig::default().concurrency(ctx.config.concurrency);
    let (store, events) = super::cached_watch(api, watcher::Config::default(), ctx.config.shard);
    let mut controller = Controller::for_stream(events, store).with_config(config);
    if ctx.config.machine_classes {
        // A changed class wakes the objects waiting for it (not created yet).
        let objects = controller.store();
        controller = controller.watches(
            Api::<MachineClass>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |class| {
                objects
                    .state()
                    .into_iter()
                    .filter(|cr| {
                        cr.spec.machine_class.is_some()
                            && cr.spec.machine_class == class.metadata.name
                            && cr
                                .status
                                .as_ref()
                                .is_none_or(|s| s.pending_create.is_none())
                    })
                    .map(|cr| ObjectRef::from_obj(cr.as_ref()))
                    .collect::<Vec<_>>()
            },
        );
    }
    let gauges = tokio::spawn(publish_gauges(controller.store(), ctx.clone()));
    // One list per provider instance per poll interval; only objects whose machine changed are
    // reconciled.
    let (changed_tx, changed_rx) = tokio::sync::mpsc::channel::<ObjectRef<CloudResource>>(1024);
    // A job someone starts to follow: its running machines now, for their provider log.
    let follows = tokio::spawn(wake_followed(
        ctx.clone(),
        controller.store(),
        changed_tx.clone(),
    ));
    let refresher = tokio::spawn(refresh_fleet(ctx.clone(), changed_tx));
    let changed = futures::stream::unfold(changed_rx, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    controller
        .reconcile_on(changed)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, "controller event");
            }
        })
        .await;
    gauges.abort();
    refresher.abort();
    follows.abort();
}

/// Wakes the running CloudResources of each job whose follow starts ([`crate::logs::follow`]),
/// so their provider log is pulled now rather than at the next revisit.
async fn wake_followed(
    ctx: Arc<Context>,
    store: kube::runtime::reflector::Store<CloudResource>,
    changed: tokio::sync::mpsc::Sender<ObjectRef<CloudResource>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut rx = ctx.logs.subscribe_follows();
    loop {
        let (ns, job) = match rx.recv().await {
            Ok(k) => k,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let objects: Vec<ObjectRef<CloudResource>> = store
            .state()
            .into_iter()
            .filter(|cr| {
                cr.metadata.namespace.as_deref() == Some(ns.as_str())
                    && cr
                        .labels()
                        .get(crate::controller::training_job::view::LABEL_JOB)
                        == Some(&job)
                    && cr
                        .status
                        .as_ref()
                        .and_then(|s| s.state)
                        .is_some_and(|s| !s.is_final())
            })
            .map(|cr| ObjectRef::from_obj(cr.as_ref()))
            .collect();
        for o in objects {
            if changed.send(o).await.is_err() {
                return;
            }
        }
    }
}

/// Every poll interval: refresh the tracked provider instances' snapshots and wake the objects
/// whose machine changed.
async fn refresh_fleet(
    ctx: Arc<Context>,
    changed: tokio::sync::mpsc::Sender<ObjectRef<CloudResource>>,
) {
    let mut tick = tokio::time::interval(ctx.config.poll_interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for object in ctx.fleet.refresh_tracked().await {
            if changed.send(object).await.is_err() {
                return;
            }
        }
    }
}

/// Keeps the objects-by-state and spend gauges current from the controller's cache (no extra
/// API calls).
async fn publish_gauges(store: kube::runtime::reflector::Store<CloudResource>, ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(ctx.config.poll_interval.max(Duration::from_secs(1)));
    loop {
        tick.tick().await;
        let mut counts: std::collections::BTreeMap<(&'static str, &'static str), i64> =
            Default::default();
        let mut spend: std::collections::BTreeMap<&'static str, (f64, f64)> = Default::default();
        let now = Timestamp::now();
        for cr in store.state() {
            let provider = cr.spec.provider.as_str();
            let status = cr.status.as_ref();
            let state = status.and_then(|s| s.state);
            *counts
                .entry((provider, state.map_or("Pending", ResourceState::as_str)))
                .or_default() += 1;
            let entry = spend.entry(provider).or_default();
            if state.is_some_and(|s| !s.is_final()) {
                entry.0 += status.and_then(|s| s.cost_per_hour).unwrap_or(0.0);
            }
            entry.1 += status.map_or(0.0, |s| status::live_accrued(s, now));
        }
        let rows: Vec<(&'static str, &'static str, i64)> =
            counts.into_iter().map(|((p, s), n)| (p, s, n)).collect();
        ctx.metrics.set_objects("CloudResource", &rows);
        for (provider, (per_hour, accrued)) in spend {
            ctx.metrics.set_spend(provider, per_hour, accrued);
        }
    }
}
