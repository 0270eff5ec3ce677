//! Pure status computation for CloudResources: from the previous status and an observation
//! (or an error) to the next status, with `Ready` and `Synced` conditions.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::cloud_resource::{
    CloudResourceStatus, Failure, FailureClass, PendingCreate, ResourceState,
};
use crate::crd::condition::{self, NewCondition};
use crate::provider::{Machine, ProviderError, pricing, reasons};

/// Synced reason of a successful reconcile.
pub const RECONCILE_SUCCESS: &str = "ReconcileSuccess";
/// State reason of a machine runctl recorded and the provider no longer knows.
pub const DISAPPEARED: &str = reasons::DISAPPEARED;

/// Sets `Ready` from the state and `Synced` from the reconcile outcome.
fn set_conditions(
    s: &mut CloudResourceStatus,
    generation: i64,
    now: Timestamp,
    synced: Result<(), (&str, String)>,
) {
    // A step that succeeded supersedes the last failure.
    if synced.is_ok() {
        s.failure = None;
    }
    let (ready_status, ready_reason) = match s.state {
        Some(ResourceState::Running) => (condition::TRUE, reasons::RUNNING),
        None => (condition::FALSE, "Pending"),
        Some(state) => (condition::FALSE, state.as_str()),
    };
    let ready_reason = s.reason.clone().unwrap_or_else(|| ready_reason.to_string());
    let ready_message = match (&s.state, &s.message) {
        (_, Some(m)) => m.clone(),
        (Some(st), None) => format!("machine is {}", st.as_str()),
        (None, None) => "no machine yet".to_string(),
    };
    condition::set(
        &mut s.conditions,
        NewCondition {
            type_: condition::READY,
            status: ready_status,
            reason: &ready_reason,
            message: ready_message,
        },
        Some(generation),
        now,
    );
    let (st, reason, message) = match synced {
        Ok(()) => (
            condition::TRUE,
            RECONCILE_SUCCESS.to_string(),
            "in sync with the provider".to_string(),
        ),
        Err((reason, message)) => (condition::FALSE, reason.to_string(), message),
    };
    condition::set(
        &mut s.conditions,
        NewCondition {
            type_: condition::SYNCED,
            status: st,
            reason: &reason,
            message,
        },
        Some(generation),
        now,
    );
}

/// Status after recording a create intent.
pub fn intent(
    prev: &CloudResourceStatus,
    intent: PendingCreate,
    generation: i64,
    now: Timestamp,
) -> CloudResourceStatus {
    let mut s = prev.clone();
    s.pending_create = Some(intent);
    s.state = Some(ResourceState::Starting);
    s.reason = Some(reasons::PROVISIONING.to_string());
    s.message = Some("create intent recorded; requesting a machine".to_string());
    s.observed_generation = Some(generation);
    set_conditions(&mut s, generation, now, Ok(()));
    s
}

/// Status from an observed (or just created) machine.
pub fn track(
    prev: &CloudResourceStatus,
    m: &Machine,
    quoted_per_hour: Option<f64>,
    price_source: Option<&str>,
    generation: i64,
    now: Timestamp,
) -> CloudResourceStatus {
    let mut s = prev.clone();
    s.provider_id = Some(m.id.clone());
    s.state = Some(m.state);
    s.reason = Some(m.reason.to_string());
    s.message = m.message.clone();
    if m.machine_type.is_some() {
        s.machine_type = m.machine_type.clone();
    }
    if m.public_address.is_some() {
        s.public_address = m.public_address.clone();
    }
    if m.private_address.is_some() {
        s.private_address = m.private_address.clone();
    }
    if let Some(l) = m.launch_time {
        s.launch_time = Some(Time(l));
    }
    // A stopped machine (RunPod `EXITED`, a stopped EC2 instance) bills no compute and runs no
    // workload: its end time is when it was first seen stopped (what is left is storage).
    if m.state.workload_ended() && s.end_time.is_none() {
        s.end_time = Some(Time(now));
    }
    if let Some(p) = m.price_per_hour.filter(|p| *p > 0.0) {
        let per_hour = pricing::round_cents(p);
        // A machine price without a label of its own keeps the label it already has when it is
        // the same price (a create answer labelled by the quote, then the same price in a list
        // answer, which carries no label: relabelling it would cost a status write, and the job's
        // write that follows, for no news).
        let same_price = prev.cost_per_hour == Some(per_hour) && prev.price_source.is_some();
        let source = match m.price_source.or(price_source) {
            Some(source) => source.to_string(),
            None if same_price => prev.price_source.clone().unwrap_or_default(),
            None => "provider-reported".to_string(),
        };
        s.cost_per_hour = Some(per_hour);
        s.price_source = Some(source);
    } else if let Some(p) = quoted_per_hour {
        s.cost_per_hour = Some(pricing::round_cents(p));
        s.price_source = price_source.map(str::to_string);
    }
    let launch = s
        .launch_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| s.pending_create.as_ref().map(|i| i.since.0));
    let accrued = pricing::accrued_cost(
        m.billed,
        s.cost_per_hour,
        launch,
        s.end_time.as_ref().map(|t| t.0),
        now,
    );
    if accrued.is_some() {
        s.accrued_cost = accrued;
    }
    if m.exit_code.is_some() {
        s.exit_code = m.exit_code;
    }
    s.observed_generation = Some(generation);
    s.last_observed_time = Some(Time(now));
    set_conditions(&mut s, generation, now, Ok(()));
    s
}

/// Status when a recorded machine is no longer known to the provider.
pub fn lost(prev: &CloudResourceStatus, generation: i64, now: Timestamp) -> CloudResourceStatus {
    let mut s = prev.clone();
    let (state, reason, message) = if prev.state == Some(ResourceState::Terminating) {
        (
            ResourceState::Terminated,
            reasons::TERMINATED,
            "machine terminated".to_string(),
        )
    } else {
        (
            ResourceState::Error,
            DISAPPEARED,
            "the provider no longer knows this machine; it was deleted outside runctl".to_string(),
        )
    };
    s.state = Some(state);
    s.reason = Some(reason.to_string());
    s.message = Some(message);
    if s.end_time.is_none() {
        s.end_time = Some(Time(now));
    }
    if let (Some(p), Some(l)) = (s.cost_per_hour, s.launch_time.as_ref()) {
        s.accrued_cost = pricing::accrued_cost(
            None,
            Some(p),
            Some(l.0),
            s.end_time.as_ref().map(|t| t.0),
            now,
        );
    }
    s.observed_generation = Some(generation);
    s.last_observed_time = Some(Time(now));
    set_conditions(&mut s, generation, now, Ok(()));
    s
}

/// Status when runctl asked the provider to terminate the machine.
pub fn terminating(
    prev: &CloudResourceStatus,
    reason: &str,
    generation: i64,
    now: Timestamp,
) -> CloudResourceStatus {
    let mut s = prev.clone();
    if !s.state.is_some_and(ResourceState::is_final) {
        s.state = Some(ResourceState::Terminating);
        s.reason = Some(reason.to_string());
        s.message = Some("termination requested".to_string());
    }
    s.observed_generation = Some(generation);
    set_conditions(&mut s, generation, now, Ok(()));
    s
}

/// Status after a failed provider call: the typed failure (class, reason, the credentials
/// version in use) for the retry policy, and `Synced` False. A create failure that only a change
/// outside runctl's retries can fix (terminal or account) marks the object Error.
pub fn failed(
    prev: &CloudResourceStatus,
    err: &ProviderError,
    creating: bool,
    credentials: Option<&str>,
    generation: i64,
    now: Timestamp,
) -> CloudResourceStatus {
    let mut s = prev.clone();
    if creating && prev.provider_id.is_none() {
        if err.is_terminal() {
            s.state = Some(ResourceState::Error);
        } else if s.state.is_none() {
            s.state = Some(ResourceState::Starting);
        }
        s.reason = Some(err.reason().to_string());
        s.message = Some(err.message().to_string());
    }
    s.observed_generation = Some(generation);
    set_conditions(
        &mut s,
        generation,
        now,
        Err((err.reason(), err.to_string())),
    );
    s.failure = Some(Failure {
        class: err.class(),
        reason: err.reason().to_string(),
        generation,
        credentials: credentials.map(str::to_string),
        time: Time(now),
    });
    s
}

/// Status after a failure that is not the provider's (credentials Secret missing…): retried
/// with backoff.
pub fn blocked(
    prev: &CloudResourceStatus,
    reason: &str,
    message: String,
    generation: i64,
    now: Timestamp,
) -> CloudResourceStatus {
    let mut s = prev.clone();
    s.observed_generation = Some(generation);
    set_conditions(&mut s, generation, now, Err((reason, message)));
    s.failure = Some(Failure {
        class: FailureClass::Retryable,
        reason: reason.to_string(),
        generation,
        credentials: None,
        time: Time(now),
    });
    s
}

/// The accrued cost now: the written figure plus, for a machine that may still bill, its rate
/// since that write (status holds the cost as of its last write, at most `costRefreshSeconds`
/// old; metrics show this live figure).
pub fn live_accrued(s: &CloudResourceStatus, now: Timestamp) -> f64 {
    let written = s.accrued_cost.unwrap_or(0.0);
    match (s.state, s.cost_per_hour, &s.last_observed_time) {
        (Some(state), Some(rate), Some(at)) if !state.is_final() => {
            written + crate::provider::cost_for(rate, now.duration_since(at.0).as_secs_f64())
        }
        _ => written,
    }
}

/// True when `next` differs from `prev`, as stored (times in whole seconds), in anything but the
/// fields that move with the clock (accrued cost, last observation time), or when those are
/// older than `refresh`.
pub fn worth_writing(
    prev: &CloudResourceStatus,
    next: &CloudResourceStatus,
    refresh: Duration,
    now: Timestamp,
) -> bool {
    let strip = |s: &CloudResourceStatus| {
        let mut s = s.clone();
        s.accrued_cost = None;
        s.last_observed_time = None;
        // Not this controller's to write.
        s.report = None;
        s
    };
    if !crate::controller::stored::same_when_stored(&strip(prev), &strip(next)) {
        return true;
    }
    if prev.accrued_cost == next.accrued_cost {
        return false;
    }
    match &prev.last_observed_time {
        None => true,
        Some(t) => now.duration_since(t.0).as_secs_f64() >= refresh.as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn now() -> Timestamp {
        "2026-11-23T12:00:00Z".parse().unwrap()
    }

    fn running() -> Machine {
        let mut m = Machine::new("i-1", ResourceState::Running, reasons::RUNNING);
        m.launch_time = Some(now() - SignedDuration::from_hours(1));
        m.machine_type = Some("g5.xlarge".into());
        m
    }

    #[test]
    fn the_live_accrued_cost_adds_the_rate_since_the_last_write() {
        let s = track(
            &CloudResourceStatus::default(),
            &running(),
            Some(1.2),
            None,
            1,
            now(),
        );
        let written = s.accrued_cost.unwrap();
        let later = now() + SignedDuration::from_mins(30);
        assert!((live_accrued(&s, later) - (written + 0.6)).abs() < 1e-9);
        let mut ended = s.clone();
        ended.state = Some(ResourceState::Terminated);
        assert_eq!(live_accrued(&ended, later), written);
    }

    #[test]
    fn tracking_a_running_machine_sets_cost_and_ready() {
        let s = track(
            &CloudResourceStatus::default(),
            &running(),
            Some(1.006),
            Some("ec2-on-demand-table"),
            3,
            now(),
        );
        assert_eq!(s.state, Some(ResourceState::Running));
        assert_eq!(s.cost_per_hour, Some(1.006));
        assert_eq!(s.accrued_cost, Some(1.006));
        assert_eq!(s.observed_generation, Some(3));
        assert!(condition::is_true(&s.conditions, condition::READY));
        assert!(condition::is_true(&s.conditions, condition::SYNCED));
        assert_eq!(s.price_source.as_deref(), Some("ec2-on-demand-table"));
    }

    #[test]
    fn the_price_source_is_where_the_machines_price_comes_from() {
        // The provider client says where the machine's price comes from (AWS: the Price List
        // API, the embedded table, the spot price history): that wins over the quote's label.
        let mut m = running();
        m.price_per_hour = Some(1.123);
        m.price_source = Some("aws-price-list");
        let s = track(
            &CloudResourceStatus::default(),
            &m,
            Some(1.006),
            Some("ec2-on-demand-table"),
            1,
            now(),
        );
        assert_eq!(
            (s.cost_per_hour, s.price_source.as_deref()),
            (Some(1.123), Some("aws-price-list"))
        );
        // A machine price without a source keeps the quote's label, or the label it had when the
        // price is the same, else it is "provider-reported".
        m.price_source = None;
        let s = track(&s, &m, None, None, 1, now());
        assert_eq!(s.price_source.as_deref(), Some("aws-price-list"));
        m.price_per_hour = Some(1.5);
        let s = track(&s, &m, None, None, 1, now());
        assert_eq!(
            (s.cost_per_hour, s.price_source.as_deref()),
            (Some(1.5), Some("provider-reported"))
        );
    }

    #[test]
    fn provider_billed_figure_wins() {
        let mut m = running();
        m.billed = Some(0.42);
        let s = track(
            &CloudResourceStatus::default(),
            &m,
            Some(5.0),
            None,
            1,
            now(),
        );
        assert_eq!(s.accrued_cost, Some(0.42));
    }

    #[test]
    fn a_stopped_machine_gets_an_end_time() {
        let mut m = running();
        m.state = ResourceState::Stopped;
        let s = track(
            &CloudResourceStatus::default(),
            &m,
            Some(2.0),
            None,
            1,
            now(),
        );
        assert_eq!(s.end_time.map(|t| t.0), Some(now()));
    }

    #[test]
    fn a_final_state_freezes_the_end_time() {
        let mut m = running();
        m.state = ResourceState::Terminated;
        let s1 = track(
            &CloudResourceStatus::default(),
            &m,
            Some(2.0),
            None,
            1,
            now(),
        );
        let later = now() + SignedDuration::from_hours(3);
        let s2 = track(&s1, &m, Some(2.0), None, 1, later);
        assert_eq!(s2.end_time, s1.end_time);
        assert_eq!(
            s2.accrued_cost,
            Some(2.0),
            "cost stops accruing once the machine ended"
        );
    }

    #[test]
    fn terminal_create_errors_mark_error_retryable_ones_do_not() {
        let prev = CloudResourceStatus::default();
        let t = failed(
            &prev,
            &ProviderError::InvalidSpec {
                message: "bad AMI".into(),
            },
            true,
            None,
            1,
            now(),
        );
        assert_eq!(t.state, Some(ResourceState::Error));
        assert_eq!(t.reason.as_deref(), Some("InvalidSpec"));
        let f = t.failure.as_ref().expect("typed failure");
        assert_eq!(
            (f.class, f.reason.as_str()),
            (FailureClass::Terminal, "InvalidSpec")
        );
        let m = Machine::new("i-1", ResourceState::Starting, reasons::PROVISIONING);
        assert_eq!(
            track(&t, &m, None, None, 2, now()).failure,
            None,
            "a step that succeeded clears the failure"
        );
        let c = failed(
            &prev,
            &ProviderError::Capacity {
                message: "none".into(),
            },
            true,
            None,
            1,
            now(),
        );
        assert_eq!(c.state, Some(ResourceState::Starting));
        let synced = condition::get(&c.conditions, condition::SYNCED).unwrap();
        assert_eq!(
            (synced.status.as_str(), synced.reason.as_str()),
            ("False", "InsufficientCapacity")
        );
    }

    #[test]
    fn a_vanished_machine_is_error_unless_we_were_terminating_it() {
        let prev = CloudResourceStatus {
            state: Some(ResourceState::Running),
            ..Default::default()
        };
        assert_eq!(lost(&prev, 1, now()).state, Some(ResourceState::Error));
        let prev = CloudResourceStatus {
            state: Some(ResourceState::Terminating),
            ..Default::default()
        };
        assert_eq!(lost(&prev, 1, now()).state, Some(ResourceState::Terminated));
    }

    #[test]
    fn clock_only_changes_are_written_at_most_every_refresh() {
        let s1 = track(
            &CloudResourceStatus::default(),
            &running(),
            Some(1.0),
            None,
            1,
            now(),
        );
        let t2 = now() + SignedDuration::from_secs(10);
        let s2 = track(&s1, &running(), Some(1.0), None, 1, t2);
        assert!(!worth_writing(&s1, &s2, Duration::from_secs(60), t2));
        let t3 = now() + SignedDuration::from_secs(90);
        let s3 = track(&s1, &running(), Some(1.0), None, 1, t3);
        assert!(worth_writing(&s1, &s3, Duration::from_secs(60), t3));
        let mut stopped = running();
        stopped.state = ResourceState::Stopped;
        let s4 = track(&s1, &stopped, Some(1.0), None, 1, t2);
        assert!(worth_writing(&s1, &s4, Duration::from_secs(60), t2));
        assert!(!worth_writing(
            &s1,
            &s1.clone(),
            Duration::from_secs(60),
            t3
        ));
    }
}
