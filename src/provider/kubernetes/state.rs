//! A Pod as a machine (pure): its phase and conditions as runctl's normalized state, its
//! container's exit code, its price from the configuration.
//!
//! | Pod | state | reason |
//! |---|---|---|
//! | being deleted | Terminating | Terminating |
//! | Pending, not on a node, within `scheduleTimeoutSeconds` | Starting | Provisioning |
//! | Pending, not on a node after it | Error | Unschedulable (the attempt ends for lack of capacity) |
//! | Pending on a node (pulling the image) | Starting | Booting |
//! | Running | Running | Running |
//! | Succeeded | Terminated | Completed (exit 0) |
//! | Failed, `DeadlineExceeded` | Error | TimedOut |
//! | Failed, evicted or preempted (the node took it back) | Error | CapacityLost |
//! | Failed otherwise | Error | WorkloadFailed (the container's exit code) |
//! | Unknown (the node stopped answering) | Unknown | UnrecognizedStatus |

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::KubernetesConfig;
use super::pod::{CONTAINER, machine_id};
use crate::provider::identity::{TAG_ATTEMPT, TAG_OWNER_UID};
use crate::provider::{Machine, ResourceState, reasons};

/// Pod failure reasons that mean the node, not the workload, ended the Pod.
const RECLAIMED: [&str; 5] = [
    "Evicted",
    "Preempting",
    "Shutdown",
    "NodeShutdown",
    "Terminated",
];

/// The machine a Pod is, at `now`.
pub fn machine(pod: &Pod, config: &KubernetesConfig, now: Timestamp) -> Machine {
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let id = machine_id(meta.namespace.as_deref().unwrap_or_default(), &name);
    let status = pod.status.clone().unwrap_or_default();
    let container = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER);
    let exit_code = container.and_then(exit_code);
    let created = meta.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    let (state, reason, message) = if meta.deletion_timestamp.is_some()
        && !matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
    {
        (ResourceState::Terminating, reasons::TERMINATING, None)
    } else {
        match status.phase.as_deref() {
            Some("Running") => (ResourceState::Running, reasons::RUNNING, None),
            Some("Succeeded") => (ResourceState::Terminated, reasons::COMPLETED, None),
            Some("Failed") => failed(status.reason.as_deref(), status.message.clone()),
            Some("Unknown") => (
                ResourceState::Unknown,
                reasons::UNRECOGNIZED,
                Some("the Pod's node stopped answering (phase Unknown)".to_string()),
            ),
            _ => pending(pod, container, created, config, now),
        }
    };
    let spec = pod.spec.as_ref();
    let gpus = spec
        .and_then(|s| s.containers.first())
        .and_then(|c| c.resources.as_ref()?.limits.as_ref())
        .and_then(|l| l.get(&config.gpu_resource))
        .and_then(|q| q.0.parse::<u32>().ok())
        .unwrap_or(0);
    let gpu_type = spec
        .and_then(|s| s.node_selector.as_ref())
        .and_then(|s| s.get(&config.gpu_product_label))
        .cloned();
    let labels = meta.labels.clone().unwrap_or_default();
    let mut m = Machine::new(id, state, reason);
    m.name = Some(name);
    m.owner_uid = labels.get(TAG_OWNER_UID).cloned();
    m.attempt = labels.get(TAG_ATTEMPT).and_then(|a| a.parse().ok());
    m.message = message;
    m.machine_type = Some(format!(
        "{} x{gpus}",
        gpu_type.as_deref().unwrap_or(&config.gpu_resource)
    ));
    m.private_address = status.pod_ip.clone();
    m.launch_time = status.start_time.as_ref().map(|t| t.0);
    m.price_per_hour = Some(config.price(gpu_type.as_deref(), gpus));
    m.price_source = Some(super::PRICE_SOURCE);
    m.exit_code = exit_code.or(match reason {
        r if r == reasons::COMPLETED => Some(0),
        _ => None,
    });
    m
}

/// The exit code of a terminated container.
fn exit_code(c: &ContainerStatus) -> Option<i32> {
    c.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

fn failed(
    reason: Option<&str>,
    message: Option<String>,
) -> (ResourceState, &'static str, Option<String>) {
    match reason {
        Some("DeadlineExceeded") => (ResourceState::Error, reasons::TIMED_OUT, message),
        Some(r) if RECLAIMED.contains(&r) => {
            (ResourceState::Error, reasons::CAPACITY_LOST, message)
        }
        _ => (ResourceState::Error, reasons::WORKLOAD_FAILED, message),
    }
}

fn pending(
    pod: &Pod,
    container: Option<&ContainerStatus>,
    created: Timestamp,
    config: &KubernetesConfig,
    now: Timestamp,
) -> (ResourceState, &'static str, Option<String>) {
    let status = pod.status.as_ref();
    let scheduled_condition = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    let on_node = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some())
        || scheduled_condition.is_some_and(|c| c.status == "True");
    if on_node {
        let waiting = container
            .and_then(|c| c.state.as_ref()?.waiting.as_ref())
            .map(|w| {
                let why = w.reason.as_deref().unwrap_or("Waiting");
                match &w.message {
                    Some(m) => format!("{why}: {m}"),
                    None => why.to_string(),
                }
            });
        return (ResourceState::Starting, reasons::BOOTING, waiting);
    }
    let why = scheduled_condition
        .and_then(|c| c.message.clone())
        .unwrap_or_else(|| "waiting for the scheduler".into());
    let timeout = Duration::from_secs(config.schedule_timeout_seconds);
    let waited = now.duration_since(created).unsigned_abs();
    if waited >= timeout {
        return (
            ResourceState::Error,
            reasons::UNSCHEDULABLE,
            Some(format!(
                "not scheduled onto a node within {} s (providers.kubernetes.scheduleTimeoutSeconds): {why}",
                timeout.as_secs()
            )),
        );
    }
    (ResourceState::Starting, reasons::PROVISIONING, Some(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        let mut base = serde_json::json!({
            "metadata": {
                "name": "runctl-j-a1", "namespace": "ns",
                "creationTimestamp": "2026-12-04T10:00:00Z",
                "labels": {"runctl.dev/owner-uid": "u1", "runctl.dev/attempt": "3"}
            },
            "spec": {
                "containers": [{"name": "workload", "image": "i",
                    "resources": {"limits": {"nvidia.com/gpu": "2"}}}],
                "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"}
            }
        });
        merge(&mut base, v);
        serde_json::from_value(base).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn config() -> KubernetesConfig {
        KubernetesConfig {
            price_per_gpu_hour: 1.5,
            schedule_timeout_seconds: 60,
            ..Default::default()
        }
    }

    fn seen(v: serde_json::Value, now: &str) -> (ResourceState, &'static str, Option<i32>) {
        let m = machine(&pod(v), &config(), at(now));
        (m.state, m.reason, m.exit_code)
    }

    #[test]
    fn states_from_phase_and_conditions() {
        use ResourceState::*;
        let t0 = "2026-12-04T10:00:30Z";
        let late = "2026-12-04T10:01:01Z";
        let unsched = serde_json::json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}});
        let cases = [
            (
                "pending, no scheduler yet",
                serde_json::json!({"status": {"phase": "Pending"}}),
                t0,
                (Starting, reasons::PROVISIONING, None),
            ),
            (
                "unschedulable within the timeout",
                unsched.clone(),
                t0,
                (Starting, reasons::PROVISIONING, None),
            ),
            (
                "unschedulable past the timeout",
                unsched,
                late,
                (Error, reasons::UNSCHEDULABLE, None),
            ),
            (
                "pulling on a node",
                serde_json::json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Pending",
                "containerStatuses": [{"name": "workload", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ContainerCreating"}}}]}}),
                late,
                (Starting, reasons::BOOTING, None),
            ),
            (
                "running",
                serde_json::json!({"status": {"phase": "Running"}}),
                late,
                (Running, reasons::RUNNING, None),
            ),
            (
                "succeeded",
                serde_json::json!({"status": {"phase": "Succeeded"}}),
                late,
                (Terminated, reasons::COMPLETED, Some(0)),
            ),
            (
                "failed with a code",
                serde_json::json!({"status": {"phase": "Failed",
                "containerStatuses": [{"name": "workload", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 3}}}]}}),
                late,
                (Error, reasons::WORKLOAD_FAILED, Some(3)),
            ),
            (
                "deadline",
                serde_json::json!({"status": {"phase": "Failed", "reason": "DeadlineExceeded"}}),
                late,
                (Error, reasons::TIMED_OUT, None),
            ),
            (
                "evicted",
                serde_json::json!({"status": {"phase": "Failed", "reason": "Evicted"}}),
                late,
                (Error, reasons::CAPACITY_LOST, None),
            ),
            (
                "node lost",
                serde_json::json!({"status": {"phase": "Unknown"}}),
                late,
                (Unknown, reasons::UNRECOGNIZED, None),
            ),
            (
                "being deleted",
                serde_json::json!({"metadata": {"deletionTimestamp": "2026-12-04T10:00:40Z"}, "status": {"phase": "Running"}}),
                late,
                (Terminating, reasons::TERMINATING, None),
            ),
        ];
        for (what, v, now, want) in cases {
            assert_eq!(seen(v, now), want, "{what}");
        }
    }

    #[test]
    fn identity_address_and_price() {
        let m = machine(
            &pod(serde_json::json!({"status": {"phase": "Running", "podIP": "10.1.2.3"}})),
            &config(),
            at("2026-12-04T10:00:30Z"),
        );
        assert_eq!(m.id, "ns/runctl-j-a1");
        assert_eq!(m.owner_uid.as_deref(), Some("u1"));
        assert_eq!(m.attempt, Some(3));
        assert_eq!(m.private_address.as_deref(), Some("10.1.2.3"));
        assert_eq!(m.machine_type.as_deref(), Some("NVIDIA-L4 x2"));
        assert_eq!(m.price_per_hour, Some(3.0));
        assert_eq!(m.price_source, Some(super::super::PRICE_SOURCE));
    }
}
