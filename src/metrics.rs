//! Prometheus metrics of the operator, kept in runctl's own registry (not the process-global
//! one) and served as text on `/metrics`.
//!
//! Every metric is named `runctl_*`. Label values are taken only from `&'static str`, so the
//! number of series stays bounded: callers pass reasons, states and provider names from static
//! tables, never from user input or error messages. `docs/metrics.md` lists every metric.

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::Mutex;
use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramTimer, HistogramVec, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::provider::ProviderError;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `result` label of a successful reconcile.
pub const RESULT_SUCCESS: &str = "success";
/// `result` label of a failed reconcile.
pub const RESULT_ERROR: &str = "error";
/// `outcome` label of a provider call that succeeded.
pub const OUTCOME_SUCCESS: &str = "success";

const RECONCILE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const PROVIDER_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The `outcome` label of a provider call: `success`, or the error's static reason.
pub fn outcome_of<T>(result: &Result<T, ProviderError>) -> &'static str {
    match result {
        Ok(_) => OUTCOME_SUCCESS,
        Err(e) => e.reason(),
    }
}

/// The operator's metrics. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    reconcile_duration: HistogramVec,
    reconciles: IntCounterVec,
    reconcile_errors: IntCounterVec,
    provider_calls: IntCounterVec,
    provider_duration: HistogramVec,
    objects: IntGaugeVec,
    /// The `(provider, state)` series currently set for each kind of `runctl_objects`.
    object_series: Mutex<BTreeMap<&'static str, BTreeSet<(&'static str, &'static str)>>>,
    cost_per_hour: GaugeVec,
    accrued_cost: GaugeVec,
    cost_total: CounterVec,
    leader: IntGauge,
    events: IntCounterVec,
    events_dropped: IntCounterVec,
    log_bytes: IntCounterVec,
    log_bytes_dropped: IntCounterVec,
}

/// Times one reconcile; records `runctl_reconcile_duration_seconds` when dropped.
#[must_use = "the timer records when dropped; bind it to a variable for the reconcile's length"]
pub struct ReconcileTimer {
    // prometheus' timer observes on drop unless it was stopped explicitly.
    timer: HistogramTimer,
}

impl ReconcileTimer {
    /// Stops the timer now and returns the observed seconds.
    pub fn finish(self) -> f64 {
        self.timer.stop_and_record()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconcile_duration = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "runctl_reconcile_duration_seconds",
                    "Duration of one reconcile, by controller.",
                )
                .buckets(RECONCILE_BUCKETS.to_vec()),
                &["controller"],
            ),
        );
        let reconciles = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "runctl_reconciles_total",
                    "Reconciles finished, by controller and result.",
                ),
                &["controller", "result"],
            ),
        );
        let reconcile_errors = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "runctl_reconcile_errors_total",
                    "Failed reconciles, by controller and error reason.",
                ),
                &["controller", "reason"],
            ),
        );
        let provider_calls = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "runctl_provider_api_calls_total",
                    "Calls to provider APIs, by provider, operation and outcome.",
                ),
                &["provider", "operation", "outcome"],
            ),
        );
        let provider_duration = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "runctl_provider_api_duration_seconds",
                    "Duration of provider API calls.",
                )
                .buckets(PROVIDER_BUCKETS.to_vec()),
                &["provider", "operation"],
            ),
        );
        let objects = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "runctl_objects",
                    "Objects managed by the operator, by kind, provider and state.",
                ),
                &["kind", "provider", "state"],
            ),
        );
        let cost_per_hour = register(
            &registry,
            GaugeVec::new(
                Opts::new(
                    "runctl_cost_per_hour_usd",
                    "Current spend rate of running machines in USD per hour.",
                ),
                &["provider"],
            ),
        );
        let accrued_cost = register(
            &registry,
            GaugeVec::new(
                Opts::new(
                    "runctl_accrued_cost_usd",
                    "Cost accrued by the machines currently tracked, in USD, live (status holds it as of its last write).",
                ),
                &["provider"],
            ),
        );
        let cost_total = register(
            &registry,
            CounterVec::new(
                Opts::new(
                    "runctl_cost_usd_total",
                    "Spend of the machines this replica's controller followed, in USD: every \
                     increase of a CloudResource's accrued cost it wrote, so ended and deleted \
                     machines keep counting.",
                ),
                &["provider", "namespace"],
            ),
        );
        let leader = register(
            &registry,
            IntGauge::new(
                "runctl_leader",
                "1 while this replica holds the leader lease, else 0.",
            ),
        );
        let events = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "runctl_events_total",
                    "Kubernetes events published, by reason.",
                ),
                &["reason"],
            ),
        );
        let events_dropped = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "runctl_events_dropped_total",
                    "Kubernetes events not written, by why: queue_full (the publisher fell behind) or write_failed.",
                ),
                &["why"],
            ),
        );
        let log_bytes = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "runctl_log_bytes_received_total",
                    "Bytes of workload output received for the attempts' log tails, by source: wrapper (the reporting wrapper's chunks) or lyceum (pulled from the provider's log API).",
                ),
                &["source"],
            ),
        );
        let log_bytes_dropped = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "runctl_log_bytes_dropped_total",
                    "Bytes of workload output not stored, by reason: skipped (the sender skipped ahead to its newest output), overflow (more arrived than fits while the API could not be written), unwritable (the attempt's log ConfigMap could not be written).",
                ),
                &["reason"],
            ),
        );
        let build_info = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "runctl_build_info",
                    "Always 1; labelled with the runctl version.",
                ),
                &["version"],
            ),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        Self {
            registry,
            reconcile_duration,
            reconciles,
            reconcile_errors,
            provider_calls,
            provider_duration,
            objects,
            object_series: Mutex::new(BTreeMap::new()),
            cost_per_hour,
            accrued_cost,
            cost_total,
            leader,
            events,
            events_dropped,
            log_bytes,
            log_bytes_dropped,
        }
    }

    /// Starts timing a reconcile of `controller`; the duration is recorded when the guard drops.
    pub fn reconcile_timer(&self, controller: &'static str) -> ReconcileTimer {
        ReconcileTimer {
            timer: self
                .reconcile_duration
                .with_label_values(&[controller])
                .start_timer(),
        }
    }

    /// Counts a successful reconcile.
    pub fn reconcile_ok(&self, controller: &'static str) {
        self.reconciles
            .with_label_values(&[controller, RESULT_SUCCESS])
            .inc();
    }

    /// Counts a failed reconcile and its reason.
    pub fn reconcile_error(&self, controller: &'static str, reason: &'static str) {
        self.reconciles
            .with_label_values(&[controller, RESULT_ERROR])
            .inc();
        self.reconcile_errors
            .with_label_values(&[controller, reason])
            .inc();
    }

    /// Records one provider API call: its outcome (see [`outcome_of`]) and duration.
    pub fn provider_call(
        &self,
        provider: &'static str,
        operation: &'static str,
        outcome: &'static str,
        seconds: f64,
    ) {
        self.provider_calls
            .with_label_values(&[provider, operation, outcome])
            .inc();
        self.provider_duration
            .with_label_values(&[provider, operation])
            .observe(seconds.max(0.0));
    }

    /// Sets the object counts of one kind; series of that kind absent from `counts` are removed.
    pub fn set_objects(&self, kind: &'static str, counts: &[(&'static str, &'static str, i64)]) {
        let mut series = self.object_series.lock();
        let previous = series.remove(kind).unwrap_or_default();
        let mut current = BTreeSet::new();
        for &(provider, state, count) in counts {
            // Duplicate (provider, state) pairs add up.
            if current.insert((provider, state)) {
                self.objects
                    .with_label_values(&[kind, provider, state])
                    .set(count);
            } else {
                self.objects
                    .with_label_values(&[kind, provider, state])
                    .add(count);
            }
        }
        for (provider, state) in previous.difference(&current) {
            // The series was registered by an earlier call, so removal cannot fail.
            let _ = self.objects.remove_label_values(&[kind, provider, state]);
        }
        series.insert(kind, current);
    }

    /// Adds `usd` of spend (an increase of a machine's accrued cost that was written to its
    /// status) to the spend counter.
    pub fn add_cost(&self, provider: &'static str, namespace: &str, usd: f64) {
        if usd.is_finite() && usd > 0.0 {
            self.cost_total
                .with_label_values(&[provider, namespace])
                .inc_by(usd);
        }
    }

    /// Sets the spend rate and the accrued cost of one provider.
    pub fn set_spend(&self, provider: &'static str, per_hour: f64, accrued: f64) {
        self.cost_per_hour
            .with_label_values(&[provider])
            .set(per_hour);
        self.accrued_cost
            .with_label_values(&[provider])
            .set(accrued);
    }

    /// Records whether this replica is the leader.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Counts a published Kubernetes event.
    pub fn event_published(&self, reason: &'static str) {
        self.events.with_label_values(&[reason]).inc();
    }

    /// Counts an event that was not written (`queue_full` or `write_failed`).
    pub fn event_dropped(&self, why: &'static str) {
        self.events_dropped.with_label_values(&[why]).inc();
    }

    /// Counts `bytes` of workload output received from `source` (`wrapper`, `lyceum`).
    pub fn log_bytes_received(&self, source: &'static str, bytes: u64) {
        self.log_bytes.with_label_values(&[source]).inc_by(bytes);
    }

    /// Counts `bytes` of workload output not stored (`skipped`, `overflow`, `unwritable`).
    pub fn log_bytes_dropped(&self, reason: &'static str, bytes: u64) {
        self.log_bytes_dropped
            .with_label_values(&[reason])
            .inc_by(bytes);
    }

    /// The registry, for callers that register metrics of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric in the Prometheus text exposition format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let families = self.registry.gather();
        let mut buf = Vec::new();
        // Encoding gathered families into a Vec fails only on a malformed family, which the
        // registry's own validation rules out; a failure yields what was written so far.
        let _ = TextEncoder::new().encode(&families, &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Registers a metric built from constant options; both steps fail only on a programming error
/// (bad name, duplicate), which the unit tests catch.
fn register<M>(registry: &Registry, metric: prometheus::Result<M>) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let metric = metric.expect("metric options are constant and valid");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique within runctl's registry");
    metric
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn reconcile_metrics_are_encoded_with_their_labels() {
        let m = Metrics::new();
        {
            let _t = m.reconcile_timer("cloudresource");
        }
        m.reconcile_ok("cloudresource");
        m.reconcile_ok("cloudresource");
        m.reconcile_error("trainingjob", "ProviderUnavailable");
        let text = m.encode();
        assert_eq!(
            line_value(
                &text,
                r#"runctl_reconciles_total{controller="cloudresource",result="success"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"runctl_reconciles_total{controller="trainingjob",result="error"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"runctl_reconcile_errors_total{controller="trainingjob",reason="ProviderUnavailable"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"runctl_reconcile_duration_seconds_count{controller="cloudresource"}"#
            ),
            Some(1.0)
        );
        assert!(text.contains("# TYPE runctl_reconcile_duration_seconds histogram"));
    }

    #[test]
    fn finished_timer_records_once() {
        let m = Metrics::new();
        let t = m.reconcile_timer("cloudresource");
        assert!(t.finish() >= 0.0);
        let text = m.encode();
        assert_eq!(
            line_value(
                &text,
                r#"runctl_reconcile_duration_seconds_count{controller="cloudresource"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn provider_calls_count_by_outcome() {
        let m = Metrics::new();
        let ok: Result<(), ProviderError> = Ok(());
        let err: Result<(), ProviderError> = Err(ProviderError::Capacity {
            message: "none".into(),
        });
        m.provider_call("aws", "create", outcome_of(&ok), 0.2);
        m.provider_call("aws", "create", outcome_of(&err), 0.1);
        m.provider_call("aws", "create", outcome_of(&err), 0.1);
        let text = m.encode();
        assert_eq!(
            line_value(
                &text,
                r#"runctl_provider_api_calls_total{operation="create",outcome="success",provider="aws"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"runctl_provider_api_calls_total{operation="create",outcome="InsufficientCapacity",provider="aws"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"runctl_provider_api_duration_seconds_count{operation="create",provider="aws"}"#
            ),
            Some(3.0)
        );
    }

    #[test]
    fn set_objects_replaces_the_kind_series() {
        let m = Metrics::new();
        m.set_objects(
            "CloudResource",
            &[("aws", "Running", 3), ("sim", "Starting", 1)],
        );
        m.set_objects("TrainingJob", &[("aws", "Running", 2)]);
        m.set_objects(
            "CloudResource",
            &[
                ("aws", "Running", 1),
                ("aws", "Running", 1),
                ("runpod", "Stopped", 4),
            ],
        );
        let text = m.encode();
        assert_eq!(
            line_value(
                &text,
                r#"runctl_objects{kind="CloudResource",provider="aws",state="Running"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"runctl_objects{kind="CloudResource",provider="runpod",state="Stopped"}"#
            ),
            Some(4.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"runctl_objects{kind="CloudResource",provider="sim""#
            ),
            None,
            "stale series kept"
        );
        assert_eq!(
            line_value(
                &text,
                r#"runctl_objects{kind="TrainingJob",provider="aws",state="Running"}"#
            ),
            Some(2.0)
        );
        m.set_objects("CloudResource", &[]);
        let text = m.encode();
        assert!(!text.contains(r#"kind="CloudResource""#));
        assert!(text.contains(r#"kind="TrainingJob""#));
    }

    #[test]
    fn the_spend_counter_only_grows() {
        let m = Metrics::new();
        m.add_cost("sim", "ml", 1.5);
        m.add_cost("sim", "ml", -3.0);
        m.add_cost("sim", "ml", f64::NAN);
        m.add_cost("sim", "ml", 0.25);
        assert_eq!(
            line_value(
                &m.encode(),
                r#"runctl_cost_usd_total{namespace="ml",provider="sim"}"#
            ),
            Some(1.75)
        );
    }

    #[test]
    fn spend_leader_events_and_build_info() {
        let m = Metrics::new();
        m.set_spend("runpod", 2.5, 10.25);
        m.set_leader(true);
        m.event_published("Created");
        m.event_published("Created");
        let text = m.encode();
        assert_eq!(
            line_value(&text, r#"runctl_cost_per_hour_usd{provider="runpod"}"#),
            Some(2.5)
        );
        assert_eq!(
            line_value(&text, r#"runctl_accrued_cost_usd{provider="runpod"}"#),
            Some(10.25)
        );
        assert_eq!(line_value(&text, "runctl_leader "), Some(1.0));
        assert_eq!(
            line_value(&text, r#"runctl_events_total{reason="Created"}"#),
            Some(2.0)
        );
        assert!(text.contains(r#"runctl_build_info{version=""#));
        m.set_leader(false);
        assert_eq!(line_value(&m.encode(), "runctl_leader "), Some(0.0));
    }

    #[test]
    fn registries_are_independent() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.event_published("Created");
        assert!(!b.encode().contains("runctl_events_total{"));
        assert!(
            a.encode()
                .lines()
                .all(|l| l.is_empty() || l.starts_with('#') || l.starts_with("runctl_"))
        );
    }

    #[test]
    fn every_metric_is_documented() {
        let m = Metrics::new();
        drop(m.reconcile_timer("cloudresource"));
        m.reconcile_ok("cloudresource");
        m.reconcile_error("cloudresource", "NotFound");
        m.provider_call("sim", "list", OUTCOME_SUCCESS, 0.1);
        m.set_objects("CloudResource", &[("sim", "Running", 1)]);
        m.set_spend("sim", 1.0, 2.0);
        m.set_leader(true);
        m.event_published("MachineCreated");
        let doc = include_str!("../docs/metrics.md");
        let families = m.registry().gather();
        assert_eq!(families.len(), 11, "every metric has a sample");
        for family in families {
            assert!(
                doc.contains(&format!("`{}`", family.name())),
                "{} missing from docs/metrics.md",
                family.name()
            );
        }
    }
}
