//! What the TrainingJob controller needs to know of one of its CloudResources, read from the
//! object (spec, labels, status) without any I/O.

use jiff::Timestamp;

use crate::callback::AttemptReport;
use crate::crd::cloud_resource::{CloudResource, CloudResourceStatus, Failure, ResourceState};
use crate::crd::{DeletionPolicy, ProviderKind};

/// Label on every CloudResource of a job: the job's name.
pub const LABEL_JOB: &str = "runctl.dev/job";
/// Label on every CloudResource of a job: the attempt number.
pub const LABEL_ATTEMPT: &str = "runctl.dev/attempt";
/// Label on the CloudResources of a multi-node attempt's other machines: the node's rank
/// (absent on rank 0).
pub const LABEL_RANK: &str = "runctl.dev/node-rank";

/// One CloudResource of a job, reduced to what the plan uses.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineView {
    /// Object name (`<job>-a<N>`).
    pub name: String,
    /// Attempt number (from the label).
    pub attempt: u32,
    /// Node rank in a multi-node attempt (0: the attempt's first machine, the one that reports).
    pub rank: u32,
    /// When the CloudResource was created.
    pub created: Option<Timestamp>,
    /// The machine's address on the provider's private network.
    pub private_address: Option<String>,
    /// Provider.
    pub provider: ProviderKind,
    /// Machine type as rented, else as requested.
    pub machine_type: Option<String>,
    /// Region requested.
    pub region: Option<String>,
    /// Spot requested.
    pub spot: bool,
    /// Machine state.
    pub state: Option<ResourceState>,
    /// State reason.
    pub reason: Option<String>,
    /// State message.
    pub message: Option<String>,
    /// A provider id is recorded (the machine was created).
    pub has_machine: bool,
    /// Price per hour.
    pub cost_per_hour: Option<f64>,
    /// Accrued cost as the CloudResource controller last wrote it.
    pub accrued_cost: Option<f64>,
    /// Launch time.
    pub launch_time: Option<Timestamp>,
    /// When the machine was seen ended.
    pub end_time: Option<Timestamp>,
    /// The object is being deleted.
    pub deleting: bool,
    /// `spec.deletionPolicy` is `Orphan`: deleting the object would leave the machine running.
    pub orphan: bool,
    /// Exit code the provider itself reported for the machine's workload (Lyceum runs).
    pub exit_code: Option<i32>,
    /// The CloudResource controller's last failure, typed (read through the retry policy).
    pub failure: Option<Failure>,
    /// What the workload reported, as persisted by the callback endpoint of any replica.
    pub report: Option<AttemptReport>,
}

impl MachineView {
    /// Reads a CloudResource of a job; `None` when it lacks the attempt label.
    pub fn of(cr: &CloudResource) -> Option<Self> {
        let labels = cr.metadata.labels.as_ref()?;
        let attempt = labels.get(LABEL_ATTEMPT)?.parse().ok()?;
        let none = CloudResourceStatus::default();
        let status = cr.status.as_ref().unwrap_or(&none);
        let requested = match (&cr.spec.instance_type, &cr.spec.gpu_type) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(g)) => Some(match cr.spec.gpu_count {
                Some(n) if n > 1 => format!("{g} x{n}"),
                _ => g.clone(),
            }),
            (None, None) => None,
        };
        let rank = match labels.get(LABEL_RANK) {
            Some(r) => r.parse().ok()?,
            None => 0,
        };
        Some(Self {
            name: cr.metadata.name.clone().unwrap_or_default(),
            attempt,
            rank,
            created: cr.metadata.creation_timestamp.as_ref().map(|t| t.0),
            private_address: status.private_address.clone(),
            provider: cr.spec.provider,
            machine_type: status.machine_type.clone().or(requested),
            region: cr.spec.region.clone(),
            spot: cr.spec.spot,
            state: status.state,
            reason: status.reason.clone(),
            message: status.message.clone(),
            has_machine: status.provider_id.is_some(),
            cost_per_hour: status.cost_per_hour,
            accrued_cost: status.accrued_cost,
            launch_time: status.launch_time.as_ref().map(|t| t.0),
            end_time: status.end_time.as_ref().map(|t| t.0),
            deleting: cr.metadata.deletion_timestamp.is_some(),
            orphan: cr.spec.deletion_policy == DeletionPolicy::Orphan,
            exit_code: status.exit_code,
            failure: status.failure.clone(),
            report: status.report.as_ref().map(AttemptReport::of_stored),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cr(labels: serde_json::Value, status: serde_json::Value) -> CloudResource {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource",
            "metadata": {"name": "j-a2", "labels": labels},
            "spec": {"provider": "runpod", "gpuType": "H100", "gpuCount": 2},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn reads_attempt_state_and_failure() {
        let v = MachineView::of(&cr(
            serde_json::json!({"runctl.dev/job": "j", "runctl.dev/attempt": "2"}),
            serde_json::json!({
                "state": "Starting", "reason": "InsufficientCapacity",
                "conditions": [{"type": "Synced", "status": "False", "reason": "InsufficientCapacity", "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                "failure": {"class": "Capacity", "reason": "InsufficientCapacity", "generation": 1, "time": "2026-01-01T00:00:00Z"}
            }),
        ))
        .unwrap();
        assert_eq!(v.attempt, 2);
        assert_eq!(v.machine_type.as_deref(), Some("H100 x2"));
        assert_eq!(
            v.failure.map(|f| f.class),
            Some(crate::crd::cloud_resource::FailureClass::Capacity)
        );
        assert!(!v.has_machine && !v.deleting && !v.orphan);
        assert_eq!(v.state, Some(ResourceState::Starting));
    }

    #[test]
    fn reads_the_deletion_policy() {
        let mut c = cr(
            serde_json::json!({"runctl.dev/job": "j", "runctl.dev/attempt": "1"}),
            serde_json::json!({}),
        );
        c.spec.deletion_policy = DeletionPolicy::Orphan;
        assert!(MachineView::of(&c).unwrap().orphan);
    }

    #[test]
    fn objects_without_the_attempt_label_are_not_attempts() {
        assert!(
            MachineView::of(&cr(
                serde_json::json!({"runctl.dev/job": "j"}),
                serde_json::json!({})
            ))
            .is_none()
        );
        assert!(
            MachineView::of(&cr(
                serde_json::json!({"runctl.dev/attempt": "x"}),
                serde_json::json!({})
            ))
            .is_none()
        );
    }
}
