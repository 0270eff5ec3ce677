//! Where a `kubernetes` machine's Pod may run: the block of a CloudResource's (and a
//! MachineClass's) spec named `kubernetes`, re-exported by [`crate::crd::cloud_resource`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where the Pod of a `kubernetes` machine may run; the machine class's settings fill what is
/// absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesOptions {
    /// Node labels the Pod's node must carry (a Pod `nodeSelector`), on top of the GPU product
    /// label that `gpuType` selects.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 256}))]
    pub node_selector: BTreeMap<String, String>,
    /// Taints of GPU nodes the Pod tolerates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub tolerations: Vec<KubernetesToleration>,
    /// PriorityClass of the Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub priority_class_name: Option<String>,
    /// ServiceAccount the Pod runs as; the namespace's `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,
    /// CPU the workload container requests (a quantity, e.g. `8` or `7500m`); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: Option<String>,
    /// Memory the workload container requests and is limited to (a quantity, e.g. `64Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")
    )]
    pub memory: Option<String>,
    /// Size of `/dev/shm` in GiB (a memory-backed volume): PyTorch data loaders with workers
    /// need more than the container runtime's 64 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub shm_size_gi: Option<u32>,
    /// Secrets in the namespace to pull a private image with (`imagePullSecrets`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(max = 253)))]
    pub image_pull_secrets: Vec<String>,
}

/// A Pod toleration (the fields of the core `Toleration`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesToleration {
    /// Taint key; empty with operator Exists tolerates every taint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 317))]
    pub key: Option<String>,
    /// `Equal` (default) or `Exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<TolerationOperator>,
    /// Taint value (operator Equal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub value: Option<String>,
    /// The taint effect tolerated; every effect when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
}

/// How a toleration matches a taint's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TolerationOperator {
    /// The taint's value equals the toleration's.
    Equal,
    /// Any value.
    Exists,
}

/// A taint effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TaintEffect {
    /// New Pods are not scheduled on the node.
    NoSchedule,
    /// The scheduler avoids the node.
    PreferNoSchedule,
    /// Pods are evicted from the node.
    NoExecute,
}

impl TaintEffect {
    /// The name Kubernetes uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSchedule => "NoSchedule",
            Self::PreferNoSchedule => "PreferNoSchedule",
            Self::NoExecute => "NoExecute",
        }
    }
}

impl KubernetesOptions {
    /// Fills what a machine's settings leave unset from its class's (node selector entries one
    /// by one, the machine's own winning).
    pub fn fill_from_class(&mut self, class: &KubernetesOptions) {
        use crate::provider::fill_unset as fill;
        for (key, value) in &class.node_selector {
            self.node_selector
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        if self.tolerations.is_empty() {
            self.tolerations = class.tolerations.clone();
        }
        fill(
            &mut self.priority_class_name,
            class.priority_class_name.as_ref(),
        );
        fill(
            &mut self.service_account_name,
            class.service_account_name.as_ref(),
        );
        fill(&mut self.cpu, class.cpu.as_ref());
        fill(&mut self.memory, class.memory.as_ref());
        fill(&mut self.shm_size_gi, class.shm_size_gi.as_ref());
        if self.image_pull_secrets.is_empty() {
            self.image_pull_secrets = class.image_pull_secrets.clone();
        }
    }
}
