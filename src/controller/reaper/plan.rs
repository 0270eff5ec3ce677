//! Pure decisions of the orphan reaper: which listed machine is whose, when an orphan may be
//! terminated, when to halt, and which creation records may go. No I/O here.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::controller::cloud_resource::record::CreationRecord;
use crate::crd::ProviderKind;
use crate::provider::{Machine, ResourceState};

/// What the reaper makes of one listed machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Ended: nothing bills, nothing to do.
    Ended,
    /// Its CloudResource exists.
    Owned,
    /// Looks like ours (tags, name) but runctl holds no creation record: never touched.
    Untracked,
    /// An orphan already winding down.
    Terminating,
    /// Its CloudResource is gone and runctl holds its creation record.
    Orphan {
        /// Token of the creation record.
        token: String,
        /// Namespace of the record.
        namespace: String,
    },
}

/// Creation records indexed by provider, owner UID and attempt.
pub type RecordIndex<'a> = HashMap<(ProviderKind, &'a str, u32), &'a CreationRecord>;

/// Indexes records for [`classify`].
pub fn index(records: &[CreationRecord]) -> RecordIndex<'_> {
    records
        .iter()
        .map(|r| ((r.provider, r.uid.as_str(), r.attempt), r))
        .collect()
}

/// Classifies a machine listed by a `kind` provider against the live objects and the records.
pub fn classify(
    m: &Machine,
    kind: ProviderKind,
    live: &HashSet<String>,
    records: &RecordIndex<'_>,
) -> Verdict {
    if !m.is_billable() {
        return Verdict::Ended;
    }
    let Some(uid) = m.owner_uid.as_deref() else {
        return Verdict::Untracked;
    };
    if live.contains(uid) {
        return Verdict::Owned;
    }
    let Some(attempt) = m.attempt else {
        return Verdict::Untracked;
    };
    match records.get(&(kind, uid, attempt)) {
        None => Verdict::Untracked,
        Some(_) if m.state == ResourceState::Terminating => Verdict::Terminating,
        Some(r) => Verdict::Orphan {
            token: r.token.clone(),
            namespace: r.namespace.clone(),
        },
    }
}

/// True when more than `max_fraction` of the billable fleet looks orphaned: something is wrong
/// (an emptied namespace, a lost CRD, the wrong cluster), and a human must look before anything
/// is deleted.
pub fn must_halt(orphans: usize, fleet: usize, max_fraction: f64) -> bool {
    orphans > 0 && orphans as f64 > fleet as f64 * max_fraction
}

/// True once an orphan has been seen as one for the whole grace period.
pub fn grace_passed(seen_for: Duration, grace: Duration) -> bool {
    seen_for >= grace
}

/// True when a record may be removed: its object is gone, no billable machine of it was listed
/// by a provider whose list succeeded, and it is older than the grace period.
pub fn record_is_stale(
    record: &CreationRecord,
    live: &HashSet<String>,
    billable_owners: &HashSet<(ProviderKind, String, u32)>,
    listed_ok: bool,
    age: Duration,
    grace: Duration,
) -> bool {
    listed_ok
        && !live.contains(&record.uid)
        && !billable_owners.contains(&(record.provider, record.uid.clone(), record.attempt))
        && age >= grace
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::reasons;

    fn record(uid: &str, attempt: u32, provider: ProviderKind) -> CreationRecord {
        CreationRecord {
            installation: "test".into(),
            namespace: "default".into(),
            name: "x".into(),
            uid: uid.into(),
            attempt,
            token: format!("rc-{uid}-{attempt}"),
            machine_name: "runctl-x".into(),
            provider,
            region: None,
            credentials: None,
            created_at: "2026-11-23T12:00:00Z".parse().unwrap(),
        }
    }

    fn machine(owner: Option<&str>, attempt: Option<u32>, state: ResourceState) -> Machine {
        let mut m = Machine::new("m-1", state, reasons::RUNNING);
        m.owner_uid = owner.map(String::from);
        m.attempt = attempt;
        m
    }

    #[test]
    fn classification_table() {
        let records = vec![
            record("gone", 1, ProviderKind::Sim),
            record("live", 1, ProviderKind::Sim),
        ];
        let idx = index(&records);
        let live: HashSet<String> = ["live".to_string()].into();
        let orphan = Verdict::Orphan {
            token: "rc-gone-1".into(),
            namespace: "default".into(),
        };
        let cases = [
            (
                machine(Some("gone"), Some(1), ResourceState::Running),
                ProviderKind::Sim,
                orphan.clone(),
            ),
            (
                machine(Some("gone"), Some(1), ResourceState::Starting),
                ProviderKind::Sim,
                orphan,
            ),
            (
                machine(Some("gone"), Some(1), ResourceState::Terminating),
                ProviderKind::Sim,
                Verdict::Terminating,
            ),
            (
                machine(Some("gone"), Some(1), ResourceState::Terminated),
                ProviderKind::Sim,
                Verdict::Ended,
            ),
            (
                machine(Some("gone"), Some(1), ResourceState::Error),
                ProviderKind::Sim,
                Verdict::Ended,
            ),
            // Same owner and attempt on another provider: not what the record is about.
            (
                machine(Some("gone"), Some(1), ResourceState::Running),
                ProviderKind::Runpod,
                Verdict::Untracked,
            ),
            // Another attempt than the recorded one: no record.
            (
                machine(Some("gone"), Some(2), ResourceState::Running),
                ProviderKind::Sim,
                Verdict::Untracked,
            ),
            (
                machine(Some("gone"), None, ResourceState::Running),
                ProviderKind::Sim,
                Verdict::Untracked,
            ),
            (
                machine(Some("live"), Some(1), ResourceState::Running),
                ProviderKind::Sim,
                Verdict::Owned,
            ),
            (
                machine(Some("live"), Some(7), ResourceState::Running),
                ProviderKind::Sim,
                Verdict::Owned,
            ),
            // Look-alike tags without a record.
            (
                machine(Some("stranger"), Some(1), ResourceState::Running),
                ProviderKind::Sim,
                Verdict::Untracked,
            ),
            (
                machine(None, None, ResourceState::Running),
                ProviderKind::Sim,
                Verdict::Untracked,
            ),
        ];
        for (m, kind, want) in cases {
            assert_eq!(classify(&m, kind, &live, &idx), want, "{m:?} on {kind}");
        }
    }

    #[test]
    fn halts_above_a_third() {
        let third = 1.0 / 3.0;
        let cases = [
            (0, 0, false),
            (0, 10, false),
            (1, 4, false),
            (1, 3, false),
            (2, 6, false),
            (1, 2, true),
            (3, 8, true),
            (1, 1, true),
            (1, 0, true),
        ];
        for (orphans, fleet, halt) in cases {
            assert_eq!(
                must_halt(orphans, fleet, third),
                halt,
                "{orphans} of {fleet}"
            );
        }
    }

    #[test]
    fn grace_and_stale_records() {
        let g = Duration::from_secs(60);
        assert!(!grace_passed(Duration::from_secs(59), g));
        assert!(grace_passed(Duration::from_secs(60), g));
        let r = record("gone", 1, ProviderKind::Sim);
        let none = HashSet::new();
        let live: HashSet<String> = ["gone".to_string()].into();
        let billing: HashSet<_> = [(ProviderKind::Sim, "gone".to_string(), 1)].into();
        let old = Duration::from_secs(120);
        assert!(record_is_stale(&r, &none, &HashSet::new(), true, old, g));
        assert!(
            !record_is_stale(&r, &none, &HashSet::new(), false, old, g),
            "provider list failed"
        );
        assert!(
            !record_is_stale(&r, &live, &HashSet::new(), true, old, g),
            "object alive"
        );
        assert!(
            !record_is_stale(&r, &none, &billing, true, old, g),
            "machine still bills"
        );
        assert!(
            !record_is_stale(&r, &none, &HashSet::new(), true, Duration::from_secs(1), g),
            "too young"
        );
    }
}
