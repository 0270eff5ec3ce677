//! Whether the cluster has room for a machine now (pure): a node that matches the Pod's node
//! selector, tolerates none of its taints away, is Ready and schedulable, and has as many of
//! the GPU resource free (allocatable minus what the Pods bound to it request) as the machine
//! asks for. GPUs that Pods of this installation wait for, not yet on a node, count as taken,
//! so two jobs placed at once do not both count on the same free GPU.
//!
//! This is what `auto` reads to put in-cluster offers first; the scheduler still decides, and
//! an attempt it cannot place ends after `scheduleTimeoutSeconds`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Room {
    /// A node has the GPUs free.
    Free {
        /// The node with the most free GPUs.
        node: String,
        /// Its free GPUs.
        free: u64,
    },
    /// None has; why, for the rejected offer.
    Full(String),
}

/// What a Pod asks of a node.
pub struct Ask<'a> {
    /// GPUs.
    pub gpus: u64,
    /// The extended resource name.
    pub resource: &'a str,
    /// Labels the node must carry.
    pub node_selector: &'a BTreeMap<String, String>,
    /// Taints the Pod tolerates.
    pub tolerations: &'a [Toleration],
}

/// Room for `ask` on `nodes`, given the cluster's non-final `pods`; `pending_ours` GPUs are
/// asked for by this installation's Pods not yet on a node.
pub fn room(ask: &Ask<'_>, nodes: &[Node], pods: &[Pod], pending_ours: u64) -> Room {
    let mut used: BTreeMap<&str, u64> = BTreeMap::new();
    for pod in pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        *used.entry(node).or_default() += requested(pod, ask.resource);
    }
    let mut best: Option<(String, u64)> = None;
    let (mut matching, mut with_gpus) = (0, 0);
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if !fits(node, ask) {
            continue;
        }
        matching += 1;
        let allocatable = quantity(
            node.status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref())
                .and_then(|a| a.get(ask.resource))
                .map(|q| q.0.as_str()),
        );
        if allocatable > 0 {
            with_gpus += 1;
        }
        let free = allocatable.saturating_sub(used.get(name).copied().unwrap_or(0));
        if best.as_ref().is_none_or(|(_, f)| free > *f) {
            best = Some((name.to_string(), free));
        }
    }
    match best {
        // Pods of ours waiting for a node may land on this one: only what is left after them
        // counts.
        Some((node, free)) if free >= ask.gpus + pending_ours => Room::Free { node, free },
        Some((node, free)) if free >= ask.gpus => Room::Full(format!(
            "the most free {} on one node is {free} (node {node}), and Pods of this installation waiting for a node ask for {pending_ours}",
            ask.resource
        )),
        Some((node, free)) => Room::Full(format!(
            "no Ready node has {} {} free: the most on one node is {free} (node {node}); {matching} nodes match the node selector, {with_gpus} of them have {}",
            ask.gpus, ask.resource, ask.resource
        )),
        None => Room::Full(format!(
            "no Ready, schedulable node matches the node selector {} with the Pod's tolerations",
            selector_text(ask.node_selector)
        )),
    }
}

/// GPUs a Pod requests.
pub fn requested(pod: &Pod, resource: &str) -> u64 {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .filter_map(|c| {
            let r = c.resources.as_ref()?;
            r.requests
                .as_ref()
                .and_then(|q| q.get(resource))
                .or_else(|| r.limits.as_ref()?.get(resource))
        })
        .map(|q| quantity(Some(q.0.as_str())))
        .sum()
}

/// An integer quantity (extended resources are whole numbers); 0 when absent or not one.
fn quantity(q: Option<&str>) -> u64 {
    q.and_then(|q| q.parse().ok()).unwrap_or(0)
}

/// Whether a Pod with `ask` may go to `node` at all.
fn fits(node: &Node, ask: &Ask<'_>) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selected = ask
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let spec = node.spec.clone().unwrap_or_default();
    let schedulable = spec.unschedulable != Some(true);
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let tolerated = spec
        .taints
        .iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| ask.tolerations.iter().any(|tol| tolerates(tol, t)));
    selected && schedulable && ready && tolerated
}

/// Kubernetes' toleration matching.
fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if tol.effect.as_deref().is_some_and(|e| e != taint.effect) {
        return false;
    }
    match tol.key.as_deref() {
        None | Some("") => tol.operator.as_deref() == Some("Exists"),
        Some(key) if key != taint.key => false,
        Some(_) => match tol.operator.as_deref() {
            Some("Exists") => true,
            _ => {
                tol.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
            }
        },
    }
}

fn selector_text(s: &BTreeMap<String, String>) -> String {
    if s.is_empty() {
        return "(none)".into();
    }
    s.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, gpus: u32, labels: serde_json::Value, extra: serde_json::Value) -> Node {
        let mut v = serde_json::json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {},
            "status": {
                "allocatable": {"nvidia.com/gpu": gpus.to_string()},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        });
        if let serde_json::Value::Object(e) = extra {
            for (k, x) in e {
                v[k.as_str()] = x;
            }
        }
        serde_json::from_value(v).unwrap()
    }

    fn pod_on(node: &str, gpus: u32) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("p-{node}-{gpus}")},
            "spec": {"nodeName": node, "containers": [{"name": "c",
                "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}}}]}
        }))
        .unwrap()
    }

    fn ask<'a>(gpus: u64, sel: &'a BTreeMap<String, String>, tol: &'a [Toleration]) -> Ask<'a> {
        Ask {
            gpus,
            resource: "nvidia.com/gpu",
            node_selector: sel,
            tolerations: tol,
        }
    }

    #[test]
    fn free_gpus_are_allocatable_minus_bound_requests() {
        let none = BTreeMap::new();
        let nodes = [
            node("a", 8, serde_json::json!({}), serde_json::json!({})),
            node("b", 4, serde_json::json!({}), serde_json::json!({})),
        ];
        let pods = [pod_on("a", 7), pod_on("b", 1)];
        assert_eq!(
            room(&ask(2, &none, &[]), &nodes, &pods, 0),
            Room::Free {
                node: "b".into(),
                free: 3
            }
        );
        assert!(matches!(
            room(&ask(4, &none, &[]), &nodes, &pods, 0),
            Room::Full(_)
        ));
        // Two GPUs asked for by our own Pods not yet placed leave one.
        assert!(matches!(
            room(&ask(2, &none, &[]), &nodes, &pods, 2),
            Room::Full(_)
        ));
    }

    #[test]
    fn selector_readiness_cordon_and_taints() {
        let sel = BTreeMap::from([(
            "nvidia.com/gpu.product".to_string(),
            "NVIDIA-L4".to_string(),
        )]);
        let l4 = serde_json::json!({"nvidia.com/gpu.product": "NVIDIA-L4"});
        let not_ready = serde_json::json!({"status": {"allocatable": {"nvidia.com/gpu": "8"},
            "conditions": [{"type": "Ready", "status": "False"}]}});
        let cordoned = serde_json::json!({"spec": {"unschedulable": true}});
        let tainted = serde_json::json!({"spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}});
        let nodes = [
            node("other", 8, serde_json::json!({}), serde_json::json!({})),
            node("down", 8, l4.clone(), not_ready),
            node("cordoned", 8, l4.clone(), cordoned),
            node("tainted", 8, l4, tainted),
        ];
        let Room::Full(why) = room(&ask(1, &sel, &[]), &nodes, &[], 0) else {
            panic!("no node fits without the toleration")
        };
        assert!(why.contains("nvidia.com/gpu.product=NVIDIA-L4"), "{why}");
        let tol = [Toleration {
            key: Some("gpu".into()),
            operator: Some("Equal".into()),
            value: Some("yes".into()),
            effect: Some("NoSchedule".into()),
            toleration_seconds: None,
        }];
        assert_eq!(
            room(&ask(1, &sel, &tol), &nodes, &[], 0),
            Room::Free {
                node: "tainted".into(),
                free: 8
            }
        );
    }
}
