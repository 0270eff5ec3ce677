//! Types shared by both kinds: provider names, workload, env and Secret references.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::provider::descriptor::ProviderKind;

impl ProviderKind {
    /// Whether the provider's machines run outside the cluster and report through the callback
    /// endpoint (every provider but the in-process simulator).
    pub fn reports_from_outside(self) -> bool {
        crate::provider::descriptor::of(self).reports_from_outside
    }

    /// Whether the provider places the machines of one job on a private network where they
    /// reach each other (multi-node jobs): EC2 instances in one subnet do, the simulator does;
    /// RunPod pods and Lyceum runs have no network between machines of one account.
    pub fn multi_node(self) -> bool {
        crate::provider::descriptor::of(self).multi_node
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown provider {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A reference to a key of a Secret in the object's own namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as the object.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(max = 253))]
    pub key: String,
}

/// A reference to a whole Secret in the object's own namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret, in the same namespace as the object.
    #[schemars(length(max = 253))]
    pub name: String,
}

/// Where an environment variable's value comes from when it is not literal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    /// A key of a Secret in the object's namespace. The value is read only when the machine is
    /// created and is passed to the machine directly; it never appears in status, events or logs.
    pub secret_key_ref: SecretKeyRef,
}

/// One environment variable of the workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("an env entry needs exactly one of value or valueFrom"))]
pub struct EnvVar {
    /// Variable name, a C identifier such as `LEARNING_RATE`.
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z_][A-Za-z0-9_]*$')").message("env names must be C identifiers such as MY_VAR"))]
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32768))]
    pub value: Option<String>,
    /// Value taken from a Secret when the machine is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// Progress and completion reporting: when set, runctl wraps the command with its reporting
/// wrapper, which sends heartbeats and the exit code to the operator's callback endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportingSpec {
    /// Callback URL of the operator for this attempt (HTTPS in production).
    #[schemars(length(max = 2048))]
    pub callback_url: String,
    /// Secret key holding the per-attempt bearer token the wrapper presents.
    pub token_secret_ref: SecretKeyRef,
    /// Seconds between heartbeats sent by the wrapper.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval_seconds: u32,
    /// If the operator has not acknowledged a heartbeat for this long, the wrapper stops the
    /// workload and powers the machine off, so spend stays bounded without a control plane.
    #[serde(default = "default_orphan_timeout")]
    pub self_terminate_after_seconds: u32,
    /// Seconds after the workload ended during which the wrapper keeps retrying its exit report
    /// (with backoff) until the operator acknowledges it.
    #[serde(default = "default_report_grace")]
    pub report_grace_seconds: u32,
}

fn default_heartbeat() -> u32 {
    30
}
fn default_orphan_timeout() -> u32 {
    1800
}
fn default_report_grace() -> u32 {
    90
}

/// The container the machine runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Container image reference, e.g. `ghcr.io/acme/train:1.4`.
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.size() > 0 && !self.contains(' ')").message("image must be a non-empty image reference without spaces"))]
    pub image: String,
    /// Entrypoint override; the image's entrypoint when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub command: Vec<String>,
    /// Arguments to the entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 512), inner(length(max = 16384)))]
    pub args: Vec<String>,
    /// Environment variables; values from Secrets are resolved at create time only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub env: Vec<EnvVar>,
    /// Reporting wrapper settings, set by the TrainingJob controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting: Option<ReportingSpec>,
}

/// What happens to the machine when its object is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Terminate the machine, wait until it is gone, then release the object.
    #[default]
    Delete,
    /// Release the object and leave the machine running (it keeps billing).
    Orphan,
}

/// Extra tags or labels put on the machine, in addition to runctl's ownership tags.
pub type Tags = BTreeMap<String, String>;
