//! `MachineClass`: how machines are set up and paid for, written once by a platform team.
//!
//! The pattern of Karpenter's `EC2NodeClass` or a `StorageClass`: a cluster-scoped object that
//! TrainingJobs (`placement.machineClasses`) and CloudResources (`spec.machineClass`) name. It
//! carries the provider, the regions machines may run in, the provider's machine settings (for
//! AWS an AMI, subnet, security groups and key pair per region, instance profile, root volume;
//! RunPod and Lyceum options), the credentials Secret (so teams pay with their own accounts) and
//! which namespaces may use it. The operator's configuration (`providers.<name>`) is the default
//! class of each provider: what an object that names no class gets.
//!
//! Its controller checks the settings and credentials against the provider and says so in the
//! `Ready` condition; see `docs/machine-classes.md`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cloud_resource::{KubernetesOptions, LyceumOptions, RunPodOptions};
use super::common::{ProviderKind, Tags};
pub use crate::provider::aws::options::{AwsClass, AwsRegionSettings};

/// A Secret in a given namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClassSecretRef {
    /// Namespace of the Secret.
    #[schemars(length(max = 63))]
    pub namespace: String,
    /// Name of the Secret.
    #[schemars(length(max = 253))]
    pub name: String,
}

impl ClassSecretRef {
    /// `(namespace, name)`.
    pub fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }
}

/// Settings of machines of a class.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "runctl.dev",
    version = "v1alpha1",
    kind = "MachineClass",
    plural = "machineclasses",
    shortname = "mclass",
    category = "runctl",
    status = "MachineClassStatus",
    doc = "How runctl sets up and pays for machines: provider, regions, machine settings, credentials and who may use them",
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Regions",
        type_ = "string",
        json_path = ".spec.regions",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.regions) || !has(self.aws) || !has(self.aws.regionSettings) || self.regions.all(r, r in self.aws.regionSettings)").message("every region in spec.regions needs an entry in aws.regionSettings (its AMI)").field_path(".regions"))]
pub struct MachineClassSpec {
    /// Provider of the class's machines, one of the names listed (docs/providers/; kubernetes
    /// is Pods on the cluster's own GPU nodes). Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("provider is immutable; create a new MachineClass"))]
    pub provider: ProviderKind,

    /// Regions machines of this class may run in, in order of preference (providers with
    /// regions). For aws, the regions of `aws.regionSettings` when absent; for sim any region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), inner(length(max = 32)), extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new("self.all(r, r.matches('^[a-z0-9-]{1,32}$'))").message("regions must be lower-case letters, digits and dashes, e.g. us-east-1"))]
    pub regions: Option<Vec<String>>,

    /// The Secret with the provider credentials machines of this class are paid with (keys as
    /// in a CloudResource's credentialsSecretRef). The operator's default credentials of the
    /// provider when absent. A CloudResource's own credentialsSecretRef takes precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<ClassSecretRef>,

    /// Namespaces whose TrainingJobs and CloudResources may use this class; every namespace
    /// when absent. Anything else naming the class is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), inner(length(max = 63)), extend("x-kubernetes-list-type" = "set"))]
    pub allowed_namespaces: Option<Vec<String>>,

    /// Tags (EC2 tags, or labels where the provider has them) on every machine of the class;
    /// an object's own tags win on a clash.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    #[schemars(extend("maxProperties" = 40, "additionalProperties" = {"type": "string", "maxLength": 256}))]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('runctl.dev/'))").message("tags under runctl.dev/ are reserved for runctl's ownership tags"))]
    pub tags: Tags,

    /// EC2 settings (provider aws only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsClass>,

    /// RunPod settings (provider runpod only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runpod: Option<RunPodOptions>,

    /// Lyceum settings (provider lyceum only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lyceum: Option<LyceumOptions>,

    /// Pod settings of the cluster's own GPU nodes (provider kubernetes only): node selector,
    /// tolerations, priority class, service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesOptions>,
}

/// What the controller found when it checked the class against the provider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineClassStatus {
    /// `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the settings and credentials were last checked against the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<Time>,
    /// `Ready`: the settings and credentials work (checked against the provider).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl MachineClassSpec {
    /// The regions machines of the class may run in; `None` for any region (and for providers
    /// without regions).
    pub fn allowed_regions(&self) -> Option<Vec<String>> {
        if let Some(r) = &self.regions {
            return Some(r.clone());
        }
        self.aws
            .as_ref()
            .and_then(|a| a.region_settings.as_ref())
            .map(|m| m.keys().cloned().collect())
    }

    /// Whether objects in `namespace` may use the class.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        self.allowed_namespaces
            .as_ref()
            .is_none_or(|list| list.iter().any(|n| n == namespace))
    }
}
