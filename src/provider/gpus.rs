//! The machines each provider offers for a [`GpuNeed`] (the provider-neutral GPU vocabulary of
//! `placement.gpu`): one table per provider, in its module (`<provider>/gpus.rs`), and the pure
//! choice among them here. `docs/providers/gpus.md` has the tables and their sources.

use crate::crd::{GpuModel, GpuNeed, ProviderKind};

/// One machine a provider rents with a model's GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// The provider's name: an instance type (EC2) or a GPU type (RunPod id, Lyceum profile,
    /// sim GPU type).
    pub name: &'static str,
    /// True when `name` is an instance type (the machine's size is fixed), false for a GPU type
    /// rented in any [`counts`](Self::counts).
    pub instance_type: bool,
    /// The GPU model.
    pub model: GpuModel,
    /// GPU counts the shape comes in.
    pub counts: &'static [u32],
    /// vCPUs and memory (GiB) of the machine, where the provider publishes them (instance
    /// types); per GPU count they are not known for GPU types.
    pub size: Option<(u32, u32)>,
}

impl Shape {
    /// A GPU type rented in any of `counts` (RunPod ids, Lyceum profiles, sim GPU types, the
    /// cluster's GPU product labels), whose machine size is not published.
    pub const fn gpu_type(name: &'static str, model: GpuModel, counts: &'static [u32]) -> Self {
        Self {
            name,
            instance_type: false,
            model,
            counts,
            size: None,
        }
    }
}

/// What a provider's placement fields get for one equivalent machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Equivalent {
    /// Instance type (EC2, sim types).
    pub instance_type: Option<String>,
    /// GPU type (RunPod id, Lyceum profile, sim GPU type).
    pub gpu_type: Option<String>,
    /// GPU count for a GPU type.
    pub gpu_count: Option<u32>,
}

/// The provider's table (its descriptor's).
fn shapes(kind: ProviderKind) -> &'static [Shape] {
    super::descriptor::of(kind).gpu_shapes
}

/// The machines of `kind` that match `need`: the model, exactly `need.count` GPUs, and the
/// size floors. Instance types: only the smallest that fits (fewest vCPUs, then memory), so
/// that `auto` compares the cheapest fitting machine of each provider. `Err` says why none.
pub fn equivalents(kind: ProviderKind, need: &GpuNeed) -> Result<Vec<Equivalent>, String> {
    let of_model: Vec<&Shape> = shapes(kind)
        .iter()
        .filter(|s| s.model == need.model)
        .collect();
    if of_model.is_empty() {
        return Err(format!("{kind} has no {} machine", need.model));
    }
    let counted: Vec<&&Shape> = of_model
        .iter()
        .filter(|s| s.counts.contains(&need.count))
        .collect();
    if counted.is_empty() {
        let mut counts: Vec<u32> = of_model
            .iter()
            .flat_map(|s| s.counts.iter().copied())
            .collect();
        counts.sort_unstable();
        counts.dedup();
        let counts: Vec<String> = counts.iter().map(u32::to_string).collect();
        return Err(format!(
            "{kind} has {} machines with {} GPUs, not {}",
            need.model,
            counts.join(", "),
            need.count
        ));
    }
    if need.has_floors() && counted.iter().any(|s| s.size.is_none()) {
        return Err(format!(
            "{kind} does not publish the vCPUs and memory of its {} machines: minVcpus and minMemoryGiB cannot be checked there",
            need.model
        ));
    }
    let mut types: Vec<&Shape> = counted
        .iter()
        .filter(|s| s.instance_type)
        .filter(|s| s.size.is_some_and(|(c, m)| need.fits(c, m)))
        .map(|s| **s)
        .collect();
    types.sort_by_key(|s| s.size);
    let mut out: Vec<Equivalent> = types
        .first()
        .map(|s| Equivalent {
            instance_type: Some(s.name.to_string()),
            gpu_type: None,
            gpu_count: None,
        })
        .into_iter()
        .collect();
    out.extend(
        counted
            .iter()
            .filter(|s| !s.instance_type)
            .map(|s| Equivalent {
                instance_type: None,
                gpu_type: Some(s.name.to_string()),
                gpu_count: Some(need.count),
            }),
    );
    if out.is_empty() {
        return Err(format!(
            "no {kind} {} machine with {} GPUs has {}",
            need.model,
            need.count,
            floors(need)
        ));
    }
    Ok(out)
}

fn floors(need: &GpuNeed) -> String {
    let mut parts = vec![];
    if let Some(c) = need.min_vcpus {
        parts.push(format!("{c} vCPUs"));
    }
    if let Some(m) = need.min_memory_gib {
        parts.push(format!("{m} GiB of memory"));
    }
    parts.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(model: GpuModel, count: u32) -> GpuNeed {
        GpuNeed {
            model,
            count,
            min_vcpus: None,
            min_memory_gib: None,
        }
    }

    fn names(e: &[Equivalent]) -> Vec<String> {
        e.iter()
            .map(|e| match (&e.instance_type, &e.gpu_type) {
                (Some(t), _) => t.clone(),
                (None, Some(g)) => format!("{g} x{}", e.gpu_count.unwrap_or(1)),
                _ => "-".into(),
            })
            .collect()
    }

    #[test]
    fn one_a100_80gb_on_each_provider() {
        let n = need(GpuModel::A100x80, 1);
        assert_eq!(
            names(&equivalents(ProviderKind::Runpod, &n).unwrap()),
            ["NVIDIA A100 80GB PCIe x1", "NVIDIA A100-SXM4-80GB x1"]
        );
        assert_eq!(
            names(&equivalents(ProviderKind::Lyceum, &n).unwrap()),
            ["a100 x1"]
        );
        assert_eq!(
            names(&equivalents(ProviderKind::Sim, &n).unwrap()),
            ["a100 x1"]
        );
        // EC2 has A100-80GB only eight at a time.
        assert_eq!(
            equivalents(ProviderKind::Aws, &n).unwrap_err(),
            "aws has A100-80GB machines with 8 GPUs, not 1"
        );
        let eight = need(GpuModel::A100x80, 8);
        assert_eq!(
            names(&equivalents(ProviderKind::Aws, &eight).unwrap()),
            ["p4de.24xlarge"]
        );
        assert_eq!(
            equivalents(ProviderKind::Lyceum, &eight).unwrap_err(),
            "lyceum has A100-80GB machines with 1 GPUs, not 8"
        );
    }

    #[test]
    fn instance_types_the_smallest_that_fits() {
        let mut n = need(GpuModel::A10G, 1);
        assert_eq!(
            names(&equivalents(ProviderKind::Aws, &n).unwrap()),
            ["g5.xlarge"]
        );
        n.min_vcpus = Some(16);
        assert_eq!(
            names(&equivalents(ProviderKind::Aws, &n).unwrap()),
            ["g5.4xlarge"]
        );
        n.min_memory_gib = Some(200);
        assert_eq!(
            names(&equivalents(ProviderKind::Aws, &n).unwrap()),
            ["g5.16xlarge"]
        );
        n.min_vcpus = Some(1000);
        assert_eq!(
            equivalents(ProviderKind::Aws, &n).unwrap_err(),
            "no aws A10G machine with 1 GPUs has 1000 vCPUs and 200 GiB of memory"
        );
        let four = need(GpuModel::L40S, 4);
        assert_eq!(
            names(&equivalents(ProviderKind::Aws, &four).unwrap()),
            ["g6e.12xlarge"]
        );
    }

    #[test]
    fn floors_are_refused_where_sizes_are_unknown() {
        let mut n = need(GpuModel::H100, 2);
        assert_eq!(
            names(&equivalents(ProviderKind::Runpod, &n).unwrap()),
            ["NVIDIA H100 80GB HBM3 x2", "NVIDIA H100 PCIe x2"]
        );
        n.min_vcpus = Some(32);
        assert!(
            equivalents(ProviderKind::Runpod, &n)
                .unwrap_err()
                .contains("cannot be checked")
        );
        assert_eq!(
            equivalents(ProviderKind::Lyceum, &need(GpuModel::T4, 1)).unwrap_err(),
            "lyceum has no T4 machine"
        );
    }

    #[test]
    fn every_model_has_a_machine_somewhere() {
        for m in GpuModel::ALL {
            let somewhere = ProviderKind::ALL
                .into_iter()
                .any(|k| shapes(k).iter().any(|s| s.model == m));
            assert!(somewhere, "{m}");
        }
    }
}
