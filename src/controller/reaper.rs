//! The orphan reaper: finds machines this installation made whose CloudResource is gone (an
//! object deleted while the operator was down with its finalizer removed by hand, a namespace
//! wiped, a crash in an unforeseen place) and terminates them.
//!
//! Safety rules, in order:
//! 1. Each pass lists the machines first, then the creation records and the live objects, so a
//!    machine listed has its record and object written before they are read. When the records or
//!    the objects cannot be listed, the pass does nothing ("live set unknown"); a provider whose
//!    list fails is skipped.
//! 2. Only a billable machine whose owner is not live *and* for which runctl holds a creation
//!    record (`cloud_resource::record`) is an orphan; look-alike machines are never touched.
//! 3. An orphan is terminated only after it was seen as one for the whole grace period.
//! 4. When more than `max_orphan_fraction` of the billable fleet looks orphaned, the pass
//!    deletes nothing and raises the alert (`runctl_reaper_halted` = 1 and the `Halted`
//!    condition in the `runctl-reaper` ConfigMap).
//! 5. Dry-run mode reports what it would terminate and terminates nothing.
//!
//! The pure decisions are in [`plan`].

pub mod plan;

use super::training_job::success_record;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams};
use parking_lot::Mutex;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};
use tracing::{info, warn};

use super::cloud_resource::{self, record};
use super::fleet::metered;
use super::{Context, FIELD_MANAGER};
use crate::crd::{CloudResource, ProviderKind};
use crate::metrics::Metrics;
use crate::provider::registry::ProviderKey;
use crate::provider::{Machine, Provider, Termination};
use plan::Verdict;

/// Name of the ConfigMap holding the reaper's last report and its `Halted` condition.
pub const STATUS_CONFIGMAP: &str = "runctl-reaper";

/// Reaper settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ReaperConfig {
    /// Time between passes.
    pub interval: Duration,
    /// How long a machine must look orphaned before it is terminated (and how old a record must
    /// be before it is removed).
    pub grace: Duration,
    /// Report only; terminate nothing.
    pub dry_run: bool,
    /// Halt when more than this fraction of the billable fleet looks orphaned.
    pub max_orphan_fraction: f64,
    /// Namespace of the `runctl-reaper` status ConfigMap (the operator's); none: not written.
    pub status_namespace: Option<String>,
}

impl Default for ReaperConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            grace: Duration::from_secs(900),
            dry_run: false,
            max_orphan_fraction: 1.0 / 3.0,
            status_namespace: None,
        }
    }
}

/// Why a pass did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    /// The live CloudResources could not be listed: the live set is unknown.
    #[error("cannot list CloudResources, the live set is unknown: {0}")]
    ListObjects(#[source] kube::Error),
    /// The creation records could not be listed.
    #[error("cannot list creation records: {0}")]
    ListRecords(#[source] kube::Error),
}

/// What one pass saw and did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassReport {
    /// Billable machines listed (the fleet).
    pub fleet: usize,
    /// Machines whose CloudResource exists.
    pub owned: usize,
    /// Look-alike machines without a creation record (left alone).
    pub untracked: Vec<String>,
    /// Orphans found this pass (ids).
    pub orphans: Vec<String>,
    /// Orphans terminated this pass (in dry-run mode: that would have been).
    pub reaped: Vec<String>,
    /// Orphans still within their grace period.
    pub waiting: Vec<String>,
    /// True when the pass halted for too many orphans.
    pub halted: bool,
    /// Provider instances whose list failed (skipped).
    pub skipped: Vec<String>,
    /// Creation records removed.
    pub records_removed: usize,
    /// Success records (`recreatePolicy: SkipIfSucceeded`) removed after their retention.
    pub success_records_expired: usize,
    /// Dry-run pass.
    pub dry_run: bool,
}

/// The reaper's Prometheus metrics; register once per metrics registry.
pub struct ReaperMetrics {
    orphans: IntGaugeVec,
    reaped: IntCounterVec,
    halted: IntGauge,
    passes: IntCounterVec,
}

impl ReaperMetrics {
    /// Creates the metrics in `metrics`' registry (a failed registration is logged; the metric
    /// then works but is not exported).
    pub fn new(metrics: &Metrics) -> Self {
        let this = Self {
            orphans: IntGaugeVec::new(
                Opts::new(
                    "runctl_reaper_orphans",
                    "Machines that looked orphaned in the last reaper pass",
                ),
                &["provider"],
            )
            .expect("valid metric"),
            reaped: IntCounterVec::new(
                Opts::new(
                    "runctl_reaper_reaped_total",
                    "Orphaned machines the reaper terminated",
                ),
                &["provider", "dry_run"],
            )
            .expect("valid metric"),
            halted: IntGauge::new(
                "runctl_reaper_halted",
                "1 while the reaper is halted because too much of the fleet looks orphaned",
            )
            .expect("valid metric"),
            passes: IntCounterVec::new(
                Opts::new("runctl_reaper_passes_total", "Reaper passes by outcome"),
                &["outcome"],
            )
            .expect("valid metric"),
        };
        let registry = metrics.registry();
        for c in [
            Box::new(this.orphans.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(this.reaped.clone()),
            Box::new(this.halted.clone()),
            Box::new(this.passes.clone()),
        ] {
            if let Err(e) = registry.register(c) {
                warn!(error = %e, "reaper metric not registered");
            }
        }
        this
    }
}

/// A provider instance as a creation record names it: provider, region, Secret (namespace, name).
type InstanceRef = (ProviderKind, Option<String>, Option<(String, String)>);

/// One provider instance and what its list returned.
struct Listed {
    key: ProviderKey,
    provider: Arc<dyn Provider>,
    machines: Option<Vec<Machine>>,
}

/// A machine the pass found orphaned: which listing it came from, and its creation record.
struct Orphan {
    /// Index into the pass's listings.
    listed: usize,
    machine: Machine,
    token: String,
    namespace: String,
}

/// What classifying a pass's listings found besides the report's counts.
#[derive(Default)]
struct Found {
    orphans: Vec<Orphan>,
    /// (provider, owner UID, attempt) of every billable machine.
    billable_owners: HashSet<(ProviderKind, String, u32)>,
}

/// The reaper; keeps when each orphan was first seen across passes.
pub struct Reaper {
    ctx: Arc<Context>,
    config: ReaperConfig,
    metrics: Arc<ReaperMetrics>,
    first_seen: Mutex<HashMap<(ProviderKind, String), Instant>>,
    last: Mutex<Option<PassReport>>,
}

impl Reaper {
    /// A reaper using the controllers' context (client, registry, installation, namespace).
    pub fn new(ctx: Arc<Context>, config: ReaperConfig, metrics: Arc<ReaperMetrics>) -> Self {
        Self {
            ctx,
            config,
            metrics,
            first_seen: Mutex::new(HashMap::new()),
            last: Mutex::new(None),
        }
    }

    /// The last complete pass.
    pub fn last_report(&self) -> Option<PassReport> {
        self.last.lock().clone()
    }

    /// Runs passes every interval until `shutdown` completes.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.config.interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.pass().await {
                warn!(error = %e, "reaper pass skipped");
            }
        }
    }

    /// One pass: list, classify, terminate due orphans (or halt), remove stale records.
    pub async fn pass(&self) -> Result<PassReport, ReaperError> {
        let result = self.pass_inner().await;
        let outcome = match &result {
            Ok(r) if r.halted => "halted",
            Ok(_) => "ok",
            Err(ReaperError::ListObjects(_)) => "objects_unknown",
            Err(ReaperError::ListRecords(_)) => "records_unknown",
        };
        self.metrics.passes.with_label_values(&[outcome]).inc();
        if let Ok(r) = &result {
            *self.last.lock() = Some(r.clone());
            self.write_status(r).await;
        }
        result
    }

    async fn pass_inner(&self) -> Result<PassReport, ReaperError> {
        let ctx = &self.ctx;
        let ns = ctx.config.watch_namespace.as_deref();
        let installation = ctx.config.installation.as_str();
        // 1. Machines first, from every instance known by records or already built.
        let early = record::list(&ctx.client, ns, installation)
            .await
            .map_err(ReaperError::ListRecords)?;
        let listed = self.list_machines(&early).await;
        // 2. Then records and live objects, fresh.
        let records = record::list(&ctx.client, ns, installation)
            .await
            .map_err(ReaperError::ListRecords)?;
        let live = self.live_objects(ns).await?;
        // 3. Classify.
        let mut report = PassReport {
            dry_run: self.config.dry_run,
            ..PassReport::default()
        };
        let found = self.classify(&listed, &live, &records, &mut report);
        // 4. Halt, or terminate due orphans.
        let now = Instant::now();
        self.track_first_seen(&listed, &found.orphans, now);
        report.halted = plan::must_halt(
            found.orphans.len(),
            report.fleet,
            self.config.max_orphan_fraction,
        );
        self.metrics.halted.set(i64::from(report.halted));
        if report.halted {
            warn!(
                orphans = found.orphans.len(),
                fleet = report.fleet,
                "reaper halted: too much of the fleet looks orphaned; nothing is deleted until a human checks"
            );
            return Ok(report);
        }
        for orphan in &found.orphans {
            self.terminate_if_due(&listed[orphan.listed], orphan, now, &mut report)
                .await;
        }
        if !self.config.dry_run {
            // 5. Records whose object and machine are both gone.
            self.forget_stale_records(
                &listed,
                &records,
                &live,
                &found.billable_owners,
                &mut report,
            )
            .await;
            // 6. Success records past their retention (they stand for nothing any more).
            match success_record::remove_expired(&ctx.client, ns, Timestamp::now()).await {
                Ok(n) => report.success_records_expired = n,
                Err(e) => warn!(error = %e, "reaper: expired success records not removed"),
            }
        }
        if !report.reaped.is_empty() || !report.untracked.is_empty() {
            info!(
                reaped = report.reaped.len(),
                waiting = report.waiting.len(),
                untracked = report.untracked.len(),
                dry_run = self.config.dry_run,
                "reaper pass"
            );
        }
        Ok(report)
    }

    /// Lists the machines of every provider instance the records name (or already built); an
    /// instance whose list fails is skipped this pass.
    async fn list_machines(&self, records: &[record::CreationRecord]) -> Vec<Listed> {
        let mut listed = vec![];
        for (key, provider) in self.instances(records).await {
            let list = provider.list();
            let machines = metered(&self.ctx.metrics, provider.as_ref(), "list", list).await;
            if let Err(e) = &machines {
                warn!(provider = %key.kind, region = ?key.region, error = %e, "reaper: list failed; provider skipped this pass");
            }
            listed.push(Listed {
                key,
                provider,
                machines: machines.ok(),
            });
        }
        listed
    }

    /// UIDs of the CloudResources that exist.
    async fn live_objects(&self, ns: Option<&str>) -> Result<HashSet<String>, ReaperError> {
        let api: Api<CloudResource> = match ns {
            Some(ns) => Api::namespaced(self.ctx.client.clone(), ns),
            None => Api::all(self.ctx.client.clone()),
        };
        // Metadata only, page by page: the UIDs are all the pass needs, and a full list of
        // every CloudResource (10,000 with their managed fields) was the operator's memory peak.
        let api = &api;
        let uids = crate::runtime::paged::collect(
            ListParams::default(),
            |p| async move { api.list_metadata(&p).await },
            |o| o.metadata.uid,
        )
        .await
        .map_err(ReaperError::ListObjects)?;
        Ok(uids.into_iter().collect())
    }

    /// Classifies every listed machine once (fleet, owned, untracked, orphans) into `report`,
    /// and sets the orphan gauges.
    fn classify(
        &self,
        listed: &[Listed],
        live: &HashSet<String>,
        records: &[record::CreationRecord],
        report: &mut PassReport,
    ) -> Found {
        let idx = plan::index(records);
        let mut found = Found::default();
        let mut seen = HashSet::new();
        let mut orphan_counts: BTreeMap<ProviderKind, i64> = BTreeMap::new();
        for (i, l) in listed.iter().enumerate() {
            let Some(machines) = &l.machines else {
                let region = l.key.region.as_deref().unwrap_or("-");
                report.skipped.push(format!("{}/{region}", l.key.kind));
                continue;
            };
            let count = orphan_counts.entry(l.key.kind).or_default();
            for m in machines {
                if !seen.insert((l.key.kind, m.id.clone())) {
                    continue;
                }
                if m.is_billable() {
                    report.fleet += 1;
                    if let (Some(uid), Some(attempt)) = (&m.owner_uid, m.attempt) {
                        found
                            .billable_owners
                            .insert((l.key.kind, uid.clone(), attempt));
                    }
                }
                match plan::classify(m, l.key.kind, live, &idx) {
                    Verdict::Ended | Verdict::Terminating => {}
                    Verdict::Owned => report.owned += 1,
                    Verdict::Untracked => report.untracked.push(m.id.clone()),
                    Verdict::Orphan { token, namespace } => {
                        report.orphans.push(m.id.clone());
                        *count += 1;
                        found.orphans.push(Orphan {
                            listed: i,
                            machine: m.clone(),
                            token,
                            namespace,
                        });
                    }
                }
            }
        }
        for (kind, n) in &orphan_counts {
            self.metrics
                .orphans
                .with_label_values(&[kind.as_str()])
                .set(*n);
        }
        found
    }

    /// Remembers when each orphan was first seen (and forgets machines no longer orphaned).
    fn track_first_seen(&self, listed: &[Listed], orphans: &[Orphan], now: Instant) {
        let key = |o: &Orphan| (listed[o.listed].key.kind, o.machine.id.clone());
        let mut first = self.first_seen.lock();
        first.retain(|k, _| orphans.iter().any(|o| key(o) == *k));
        for o in orphans {
            first.entry(key(o)).or_insert(now);
        }
    }

    /// Terminates an orphan whose grace has passed (or says it would, in a dry run).
    async fn terminate_if_due(
        &self,
        l: &Listed,
        o: &Orphan,
        now: Instant,
        report: &mut PassReport,
    ) {
        let m = &o.machine;
        let since = self
            .first_seen
            .lock()
            .get(&(l.key.kind, m.id.clone()))
            .copied()
            .unwrap_or(now);
        if !plan::grace_passed(now.duration_since(since), self.config.grace) {
            report.waiting.push(m.id.clone());
            return;
        }
        let dry = if self.config.dry_run { "true" } else { "false" };
        let reaped = self
            .metrics
            .reaped
            .with_label_values(&[l.key.kind.as_str(), dry]);
        if self.config.dry_run {
            info!(provider = %l.key.kind, machine = %m.id, "reaper (dry run): would terminate orphaned machine");
            reaped.inc();
            report.reaped.push(m.id.clone());
            return;
        }
        warn!(provider = %l.key.kind, machine = %m.id, owner = ?m.owner_uid, "reaper: terminating orphaned machine");
        let ctx = &self.ctx;
        let terminate = l.provider.terminate(&m.id);
        match metered(&ctx.metrics, l.provider.as_ref(), "terminate", terminate).await {
            Ok(outcome) => {
                reaped.inc();
                report.reaped.push(m.id.clone());
                ctx.fleet.invalidate(&l.key);
                if outcome == Termination::Gone
                    && let Err(e) =
                        record::forget(&ctx.client, &ctx.records, &o.namespace, &o.token).await
                {
                    warn!(error = %e, "reaper: creation record not removed; next pass will");
                }
            }
            Err(e) => {
                warn!(provider = %l.key.kind, machine = %m.id, error = %e, "reaper: terminate failed; next pass retries")
            }
        }
    }

    /// Removes creation records whose object and machine are both gone (judged only for
    /// providers whose every instance listed).
    async fn forget_stale_records(
        &self,
        listed: &[Listed],
        records: &[record::CreationRecord],
        live: &HashSet<String>,
        billable_owners: &HashSet<(ProviderKind, String, u32)>,
        report: &mut PassReport,
    ) {
        let ok_kinds: HashSet<ProviderKind> = listed
            .iter()
            .filter(|l| l.machines.is_some())
            .map(|l| l.key.kind)
            .collect();
        let failed_kinds: HashSet<ProviderKind> = listed
            .iter()
            .filter(|l| l.machines.is_none())
            .map(|l| l.key.kind)
            .collect();
        let ctx = &self.ctx;
        for r in records {
            let listed_ok = ok_kinds.contains(&r.provider) && !failed_kinds.contains(&r.provider);
            let age = Timestamp::now().duration_since(r.created_at).unsigned_abs();
            let grace = self.config.grace;
            if !plan::record_is_stale(r, live, billable_owners, listed_ok, age, grace) {
                continue;
            }
            match record::forget(&ctx.client, &ctx.records, &r.namespace, &r.token).await {
                Ok(()) => report.records_removed += 1,
                Err(e) => warn!(error = %e, "reaper: stale creation record not removed"),
            }
        }
    }

    /// Provider instances to list: those named by creation records plus those already built.
    async fn instances(
        &self,
        records: &[record::CreationRecord],
    ) -> Vec<(ProviderKey, Arc<dyn Provider>)> {
        let mut out: Vec<(ProviderKey, Arc<dyn Provider>)> = Vec::new();
        let mut wanted: Vec<InstanceRef> = Vec::new();
        for r in records {
            let secret = r
                .credentials
                .as_deref()
                .and_then(|c| c.split_once('/'))
                .map(|(a, b)| (a.to_string(), b.to_string()));
            let w = (r.provider, r.region.clone(), secret);
            if !wanted.contains(&w) {
                wanted.push(w);
            }
        }
        for (kind, region, secret) in wanted {
            match cloud_resource::provider_instance(&self.ctx, kind, region, secret, false).await {
                Ok((key, p)) => out.push((key, p)),
                Err(e) => {
                    warn!(provider = %kind, error = %e, "reaper: provider instance unavailable; skipped")
                }
            }
        }
        for (key, p) in self.ctx.registry.instances() {
            if !out.iter().any(|(k, _)| *k == key) {
                out.push((key, p));
            }
        }
        out
    }

    /// Writes the report and the `Halted` condition to the status ConfigMap, when configured.
    async fn write_status(&self, r: &PassReport) {
        let Some(ns) = &self.config.status_namespace else {
            return;
        };
        let (status, reason, message) = if r.halted {
            (
                "True",
                "TooManyOrphans",
                format!(
                    "{} of {} billable machines look orphaned (more than {:.0}%): nothing is deleted until someone checks",
                    r.orphans.len(),
                    r.fleet,
                    self.config.max_orphan_fraction * 100.0
                ),
            )
        } else {
            (
                "False",
                "WithinLimits",
                format!(
                    "{} of {} billable machines look orphaned",
                    r.orphans.len(),
                    r.fleet
                ),
            )
        };
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(STATUS_CONFIGMAP.into()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([
                ("halted".to_string(), status.to_string()),
                ("reason".to_string(), reason.to_string()),
                ("message".to_string(), message),
                ("lastPass".to_string(), Timestamp::now().to_string()),
                ("fleet".to_string(), r.fleet.to_string()),
                ("orphans".to_string(), r.orphans.join(",")),
                ("reaped".to_string(), r.reaped.join(",")),
                ("untracked".to_string(), r.untracked.join(",")),
                ("dryRun".to_string(), r.dry_run.to_string()),
            ])),
            ..Default::default()
        };
        let mut value = serde_json::to_value(&cm).unwrap_or_default();
        if let Some(o) = value.as_object_mut() {
            o.insert("apiVersion".into(), "v1".into());
            o.insert("kind".into(), "ConfigMap".into());
        }
        let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), ns);
        if let Err(e) = api
            .patch(
                STATUS_CONFIGMAP,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&value),
            )
            .await
        {
            warn!(error = %e, "reaper: status ConfigMap not written");
        }
    }
}
