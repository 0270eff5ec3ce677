//! RunPod's pod settings: the block of a CloudResource's (and a MachineClass's) spec named
//! `runpod`, re-exported by [`crate::crd::cloud_resource`].

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// RunPod cloud tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum RunPodCloud {
    /// RunPod's Secure Cloud (data centres; default).
    Secure,
    /// Community Cloud (cheaper, peer hosts).
    Community,
}

/// RunPod pod options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.volumeGb) && has(self.networkVolumeId))").message("a RunPod pod mounts either a new volume (volumeGb) or a network volume (networkVolumeId), not both"))]
pub struct RunPodOptions {
    /// SECURE (default) or COMMUNITY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<RunPodCloud>,
    /// Allowed data centre ids (`US-KS-2`…); any when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 64)))]
    pub data_center_ids: Vec<String>,
    /// Container disk in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub container_disk_gb: Option<u32>,
    /// Exposed ports such as `8888/http` or `22/tcp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 32)))]
    pub ports: Vec<String>,
    /// A persistent volume of this many GB, mounted at `volumeMountPath` (kept while the pod
    /// exists, deleted with it). Not with `networkVolumeId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65536))]
    pub volume_gb: Option<u32>,
    /// An existing RunPod network volume id, mounted at `volumeMountPath` (outlives the pod;
    /// pins the pod to the volume's data centre). Not with `volumeGb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub network_volume_id: Option<String>,
    /// Where the volume is mounted; `/workspace` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub volume_mount_path: Option<String>,
}

impl RunPodOptions {
    /// Fills what a machine's settings leave unset from its class's.
    pub fn fill_from_class(&mut self, class: &RunPodOptions) {
        use crate::provider::fill_unset as fill;
        fill(&mut self.cloud, class.cloud.as_ref());
        fill(
            &mut self.container_disk_gb,
            class.container_disk_gb.as_ref(),
        );
        if self.data_center_ids.is_empty() {
            self.data_center_ids = class.data_center_ids.clone();
        }
        if self.ports.is_empty() {
            self.ports = class.ports.clone();
        }
        // The volume as a whole: an object's own new or network volume is not mixed with the
        // class's other kind.
        if self.volume_gb.is_none() && self.network_volume_id.is_none() {
            self.volume_gb = class.volume_gb;
            self.network_volume_id = class.network_volume_id.clone();
            fill(
                &mut self.volume_mount_path,
                class.volume_mount_path.as_ref(),
            );
        }
    }
}
