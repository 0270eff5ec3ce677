//! MachineClasses: the shared cache every controller reads ([`store`]), whether an object may
//! use a class and what the class adds to its machine ([`usage`], pure), and the controller that
//! checks each class against its provider and writes its `Ready` condition.
//!
//! Reconcile: observe (the class, its credentials Secret) → check (per region, the provider's
//! [`verify`](crate::provider::Provider::verify): AMI, subnet, security groups, key pair on AWS;
//! a listing on the others, which proves the credentials) → one status write. A class is checked
//! again when it changes and every [`RECHECK`].

pub mod store;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tracing::{debug, warn};

use super::cloud_resource::provider_instance;
use super::{Context, FIELD_MANAGER};
use crate::crd::ProviderKind;
use crate::crd::condition::{self, NewCondition};
use crate::crd::machine_class::MachineClass;
use crate::provider::{ErrorClass, MachineSpec, ProviderError};

pub use store::Classes;
pub use usage::ClassRefusal;

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "machineclass";
/// How often a Ready class is checked again (credentials expire, AMIs are deregistered).
pub const RECHECK: Duration = Duration::from_secs(30 * 60);
/// How soon a class whose check could not run (throttling, network) is checked again.
const RETRY: Duration = Duration::from_secs(60);

/// The outcome of a check: the `Ready` condition's status, reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// CamelCase reason.
    pub reason: &'static str,
    /// For humans.
    pub message: String,
}

impl Verdict {
    fn new(status: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Reconcile errors, named after the failed step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing status failed.
    #[error("failed to write status: {0}")]
    WriteStatus(#[source] kube::Error),
}

/// The regions a class is checked in: its own, else the provider's default (providers with
/// regions), else one check without a region.
fn regions_to_check(class: &MachineClass, ctx: &Context) -> Vec<Option<String>> {
    let kind = class.spec.provider;
    match ctx.registry.config().default_region(kind) {
        None => vec![None],
        Some(default) => class
            .spec
            .allowed_regions()
            .map(|r| r.into_iter().map(Some).collect())
            .unwrap_or_else(|| vec![Some(default)]),
    }
}

/// Checks the class against its provider, region by region.
async fn check(class: &MachineClass, ctx: &Context) -> Verdict {
    let kind = class.spec.provider;
    if !ctx.registry.config().enabled(kind) {
        return Verdict::new(
            condition::FALSE,
            "ProviderNotEnabled",
            format!(
                "{kind} is not enabled in this operator's configuration (providers.{kind}.enabled)"
            ),
        );
    }
    let secret = usage::credentials_or_default(
        class.spec.credentials_secret_ref.as_ref().map(|r| r.key()),
        kind,
        ctx.registry.config(),
    );
    let mut problems = vec![];
    let mut checked = vec![];
    for region in regions_to_check(class, ctx) {
        let (_, provider) =
            match provider_instance(ctx, kind, region.clone(), secret.clone(), false).await {
                Ok(p) => p,
                Err(e) => {
                    return Verdict::new(condition::FALSE, "CredentialsUnavailable", e.to_string());
                }
            };
        let mut spec = MachineSpec {
            region: region.clone(),
            ..Default::default()
        };
        usage::apply(&class.spec, &mut spec);
        match provider.verify(&spec).await {
            Ok(missing) => problems.extend(missing),
            Err(e) => return failed_check(kind, region.as_deref(), &e),
        }
        checked.push(region.unwrap_or_else(|| kind.to_string()));
    }
    if problems.is_empty() {
        Verdict::new(
            condition::TRUE,
            "Verified",
            format!(
                "settings and credentials checked against {kind} ({})",
                checked.join(", ")
            ),
        )
    } else {
        Verdict::new(condition::FALSE, "InvalidSettings", problems.join("; "))
    }
}

/// The verdict of a check the provider answered with an error.
fn failed_check(kind: ProviderKind, region: Option<&str>, e: &ProviderError) -> Verdict {
    let place = region.map(|r| format!(" in {r}")).unwrap_or_default();
    match e.class() {
        ErrorClass::Account => Verdict::new(
            condition::FALSE,
            "CredentialsRejected",
            format!("{kind} rejected the credentials{place}: {e}"),
        ),
        _ => Verdict::new(
            condition::UNKNOWN,
            "CheckFailed",
            format!("could not check the class against {kind}{place}: {e}"),
        ),
    }
}

async fn reconcile(class: Arc<MachineClass>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = class.name_any();
    let generation = class.metadata.generation;
    let verdict = check(&class, &ctx).await;
    let now = Timestamp::now();
    let before = class.status.clone().unwrap_or_default();
    let mut next = before.clone();
    let changed = condition::set(
        &mut next.conditions,
        NewCondition {
            type_: condition::READY,
            status: verdict.status,
            reason: verdict.reason,
            message: verdict.message.clone(),
        },
        generation,
        now,
    );
    next.observed_generation = generation;
    next.last_checked = Some(Time(now));
    let api: Api<MachineClass> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({
        "apiVersion": "runctl.dev/v1alpha1",
        "kind": "MachineClass",
        "status": next,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::WriteStatus)?;
    let was_ready = condition::get(&before.conditions, condition::READY).map(|c| c.status.clone());
    if changed && was_ready.as_deref() != Some(verdict.status) {
        let type_ = if verdict.status == condition::TRUE {
            EventType::Normal
        } else {
            EventType::Warning
        };
        ctx.publish(
            class.as_ref(),
            type_,
            verdict.reason,
            "Check",
            verdict.message,
        )
        .await;
    }
    debug!(class = %name, ready = verdict.status, reason = verdict.reason, "checked");
    Ok(Action::requeue(if verdict.status == condition::UNKNOWN {
        RETRY
    } else {
        RECHECK
    }))
}

fn error_policy(class: Arc<MachineClass>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error(CONTROLLER, "StatusWriteFailed");
    warn!(class = %class.name_any(), error = %err, "reconcile failed");
    Action::requeue(RETRY)
}

/// Runs the MachineClass controller until `shutdown` completes (only where the operator may
/// read cluster-scoped objects, and in shard 0 of a split cluster; classes are cluster-scoped,
/// so its watch is not filtered by shard).
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<MachineClass> = Api::all(ctx.client.clone());
    let (store, events) = super::cached_watch(
        api,
        watcher::Config::default(),
        crate::runtime::shard::Shard::WHOLE,
    );
    Controller::for_stream(events, store)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, "controller event");
            }
        })
        .await;
}
