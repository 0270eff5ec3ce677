//! Standard `metav1.Condition` handling: set a condition, keeping `lastTransitionTime` stable
//! unless the status changes.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition type: the object has reached its desired state.
pub const READY: &str = "Ready";
/// Condition type: the last reconcile succeeded (the object is in sync with the provider).
pub const SYNCED: &str = "Synced";

/// Condition status strings.
pub const TRUE: &str = "True";
/// Condition status strings.
pub const FALSE: &str = "False";
/// Condition status strings.
pub const UNKNOWN: &str = "Unknown";

/// A condition to set, without its transition time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCondition<'a> {
    /// Condition type, e.g. `Ready`.
    pub type_: &'a str,
    /// `True`, `False` or `Unknown`.
    pub status: &'a str,
    /// CamelCase machine-readable reason.
    pub reason: &'a str,
    /// Human-readable message.
    pub message: String,
}

/// Upper bound of a condition message (longer provider messages are cut).
pub const MAX_MESSAGE: usize = 1024;

/// Sets `new` in `conditions`: `lastTransitionTime` changes only when the status changes.
/// Returns true when anything changed.
pub fn set(
    conditions: &mut Vec<Condition>,
    new: NewCondition<'_>,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let mut message = new.message;
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    let desired = |ltt: Time| Condition {
        type_: new.type_.to_string(),
        status: new.status.to_string(),
        reason: new.reason.to_string(),
        message: message.clone(),
        observed_generation: generation,
        last_transition_time: ltt,
    };
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            let ltt = if existing.status == new.status {
                existing.last_transition_time.clone()
            } else {
                Time(now)
            };
            let next = desired(ltt);
            if *existing == next {
                false
            } else {
                *existing = next;
                true
            }
        }
        None => {
            conditions.push(desired(Time(now)));
            true
        }
    }
}

/// Finds a condition by type.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition of that type has status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == TRUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(status: &'static str, reason: &'static str) -> NewCondition<'static> {
        NewCondition {
            type_: READY,
            status,
            reason,
            message: "m".into(),
        }
    }

    #[test]
    fn transition_time_only_moves_when_status_changes() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1 = t0 + jiff::SignedDuration::from_secs(10);
        let t2 = t1 + jiff::SignedDuration::from_secs(10);
        let mut cs = vec![];
        assert!(set(&mut cs, c(FALSE, "Provisioning"), Some(1), t0));
        assert!(set(&mut cs, c(FALSE, "Booting"), Some(1), t1));
        assert_eq!(cs[0].last_transition_time.0, t0);
        assert!(
            !set(&mut cs, c(FALSE, "Booting"), Some(1), t2),
            "same condition is a no-op"
        );
        assert!(set(&mut cs, c(TRUE, "Running"), Some(1), t2));
        assert_eq!(cs[0].last_transition_time.0, t2);
        assert!(is_true(&cs, READY));
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let mut cs = vec![];
        let msg = "é".repeat(MAX_MESSAGE);
        set(
            &mut cs,
            NewCondition {
                type_: SYNCED,
                status: FALSE,
                reason: "X",
                message: msg,
            },
            None,
            Timestamp::now(),
        );
        assert!(cs[0].message.len() <= MAX_MESSAGE + '…'.len_utf8());
    }
}
