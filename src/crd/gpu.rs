//! One GPU vocabulary for every provider: what a TrainingJob's `placement.gpu` names, so that
//! `auto` compares like with like. Each provider module maps these names to its own machines
//! (EC2 instance types, RunPod GPU ids, Lyceum profiles, sim types); `docs/providers/gpus.md`
//! has the table and its sources.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A GPU model, named by chip and memory where the chip comes in several sizes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum GpuModel {
    /// NVIDIA B200 (memory per GPU as sold varies by system: UNCERTAIN).
    #[serde(rename = "B200")]
    B200,
    /// NVIDIA H200, 141 GB.
    #[serde(rename = "H200-141GB")]
    H200,
    /// NVIDIA H100, 80 GB (SXM or PCIe).
    #[serde(rename = "H100-80GB")]
    H100,
    /// NVIDIA A100, 80 GB (SXM or PCIe).
    #[serde(rename = "A100-80GB")]
    A100x80,
    /// NVIDIA A100, 40 GB.
    #[serde(rename = "A100-40GB")]
    A100x40,
    /// NVIDIA L40S, 48 GB.
    #[serde(rename = "L40S")]
    L40S,
    /// NVIDIA RTX A6000, 48 GB.
    #[serde(rename = "RTX-A6000")]
    RtxA6000,
    /// NVIDIA L4, 24 GB.
    #[serde(rename = "L4")]
    L4,
    /// NVIDIA A10G, 24 GB (AWS's A10 variant).
    #[serde(rename = "A10G")]
    A10G,
    /// NVIDIA GeForce RTX 4090, 24 GB.
    #[serde(rename = "RTX-4090")]
    Rtx4090,
    /// NVIDIA T4, 16 GB.
    #[serde(rename = "T4")]
    T4,
}

impl GpuModel {
    /// Every model, largest first.
    pub const ALL: [GpuModel; 11] = [
        Self::B200,
        Self::H200,
        Self::H100,
        Self::A100x80,
        Self::A100x40,
        Self::L40S,
        Self::RtxA6000,
        Self::L4,
        Self::A10G,
        Self::Rtx4090,
        Self::T4,
    ];

    /// The name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::B200 => "B200",
            Self::H200 => "H200-141GB",
            Self::H100 => "H100-80GB",
            Self::A100x80 => "A100-80GB",
            Self::A100x40 => "A100-40GB",
            Self::L40S => "L40S",
            Self::RtxA6000 => "RTX-A6000",
            Self::L4 => "L4",
            Self::A10G => "A10G",
            Self::Rtx4090 => "RTX-4090",
            Self::T4 => "T4",
        }
    }

    /// GPU memory in GB.
    pub fn memory_gb(self) -> u32 {
        match self {
            Self::B200 => 180,
            Self::H200 => 141,
            Self::H100 | Self::A100x80 => 80,
            Self::A100x40 => 40,
            Self::L40S | Self::RtxA6000 => 48,
            Self::L4 | Self::A10G | Self::Rtx4090 => 24,
            Self::T4 => 16,
        }
    }
}

impl std::fmt::Display for GpuModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The GPUs (and host size) a job needs, in the provider-neutral vocabulary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuNeed {
    /// GPU model, e.g. `A100-80GB`, `H100-80GB`, `L40S`.
    pub model: GpuModel,
    /// GPUs per machine (1 to 16). Only machines with exactly this many are offered.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 16))]
    pub count: u32,
    /// Least vCPUs of the machine. Providers that do not say how many a machine has (RunPod,
    /// Lyceum, sim) are not offered when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub min_vcpus: Option<u32>,
    /// Least memory (RAM) of the machine in GiB; as `minVcpus`, only where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65536))]
    pub min_memory_gib: Option<u32>,
}

fn one() -> u32 {
    1
}

impl GpuNeed {
    /// Whether the need sets a host-size floor.
    pub fn has_floors(&self) -> bool {
        self.min_vcpus.is_some() || self.min_memory_gib.is_some()
    }

    /// Whether a machine of `vcpus` and `memory_gib` meets the floors.
    pub fn fits(&self, vcpus: u32, memory_gib: u32) -> bool {
        self.min_vcpus.is_none_or(|m| vcpus >= m)
            && self.min_memory_gib.is_none_or(|m| memory_gib >= m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde() {
        for m in GpuModel::ALL {
            let v = serde_json::to_value(m).unwrap();
            assert_eq!(v, serde_json::json!(m.as_str()));
            assert_eq!(serde_json::from_value::<GpuModel>(v).unwrap(), m);
        }
        let need: GpuNeed =
            serde_json::from_value(serde_json::json!({"model": "A100-80GB"})).unwrap();
        assert_eq!((need.model, need.count), (GpuModel::A100x80, 1));
        assert!(!need.has_floors());
    }

    #[test]
    fn floors() {
        let need = GpuNeed {
            model: GpuModel::A10G,
            count: 1,
            min_vcpus: Some(8),
            min_memory_gib: Some(32),
        };
        assert!(need.fits(8, 32) && !need.fits(4, 64) && !need.fits(16, 16));
    }
}
