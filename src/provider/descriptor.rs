//! One descriptor per provider: what runctl knows of a provider without building it (whether it
//! has regions, how a placement sizes its machines, spot, multi-node, where its workloads report
//! from, its GPU vocabulary table). Each provider's module holds its `DESCRIPTOR`;
//! [`ALL`] is the one line per provider; placement, offers, the GPU vocabulary and the
//! capabilities read it instead of matching on the provider.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::gpus::Shape;
use super::registry::{BuildContext, ProvidersConfig, Section};
use super::{Provider, ProviderError};
use crate::crd::ProviderKind;

/// How a provider is built from a [`BuildContext`].
pub type Build =
    for<'a> fn(&'a BuildContext<'a>) -> BoxFuture<'a, Result<Arc<dyn Provider>, ProviderError>>;

/// The glue of a provider module's descriptor: `section` and `section_mut` (its field of
/// [`ProvidersConfig`]) and `build_boxed` (its `build`, `sync` or `async`).
macro_rules! glue {
    ($field:ident, sync) => {
        $crate::provider::descriptor::glue!(@section $field);
        fn build_boxed<'a>(
            ctx: &'a $crate::provider::registry::BuildContext<'a>,
        ) -> futures::future::BoxFuture<
            'a,
            Result<std::sync::Arc<dyn $crate::provider::Provider>, $crate::provider::ProviderError>,
        > {
            Box::pin(std::future::ready(build(ctx)))
        }
    };
    ($field:ident, async) => {
        $crate::provider::descriptor::glue!(@section $field);
        fn build_boxed<'a>(
            ctx: &'a $crate::provider::registry::BuildContext<'a>,
        ) -> futures::future::BoxFuture<
            'a,
            Result<std::sync::Arc<dyn $crate::provider::Provider>, $crate::provider::ProviderError>,
        > {
            Box::pin(build(ctx))
        }
    };
    (@section $field:ident) => {
        fn section(
            c: &$crate::provider::registry::ProvidersConfig,
        ) -> &dyn $crate::provider::registry::Section {
            &c.$field
        }
        fn section_mut(
            c: &mut $crate::provider::registry::ProvidersConfig,
        ) -> &mut dyn $crate::provider::registry::Section {
            &mut c.$field
        }
    };
}
pub(crate) use glue;

/// How a placement names the provider's machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizing {
    /// By instance type (`placement.instanceType`: EC2).
    InstanceType,
    /// By GPU type and count (`placement.gpuType`, `gpuCount`: RunPod, Lyceum).
    GpuType,
    /// Either (the simulator).
    Either,
    /// By GPU count, the GPU type optional (`placement.gpuType` narrows it: the cluster's own
    /// nodes, where any free GPU will do).
    GpuCount,
}

impl Sizing {
    /// Whether an offer must name an instance type or a GPU type.
    pub fn needs_machine_type(self) -> bool {
        self != Self::GpuCount
    }
}

/// What runctl knows of a provider without building it.
#[derive(Debug)]
pub struct Descriptor {
    /// The provider.
    pub kind: ProviderKind,
    /// Machines are placed in regions (`placement.regions`, a MachineClass's regions).
    pub regions: bool,
    /// How a placement names its machines.
    pub sizing: Sizing,
    /// Spot (interruptible) machines can be rented.
    pub spot: bool,
    /// The machines of one job reach each other on a private network (multi-node jobs).
    pub multi_node: bool,
    /// Its machines run outside the cluster and report through the callback URL.
    pub reports_from_outside: bool,
    /// Its workloads report through the callback endpoint at all (heartbeats, progress, exit);
    /// without, the provider's own status says how the workload went.
    pub reports: bool,
    /// An ended machine stays as an object until it is deleted (a finished Pod): releasing
    /// one deletes it even when it was seen terminated.
    pub ended_machines_stay: bool,
    /// The cluster's own machines, already paid for: `auto` places a job there first while it
    /// has room, and bursts to the cheapest rented offer when it has none.
    pub in_cluster: bool,
    /// Its machines in the GPU vocabulary (`placement.gpu`), from its `gpus.rs`.
    pub gpu_shapes: &'static [Shape],
    /// Its section of the operator's configuration (`providers.<name>`).
    pub section: fn(&ProvidersConfig) -> &dyn Section,
    /// The same, to change.
    pub section_mut: fn(&mut ProvidersConfig) -> &mut dyn Section,
    /// How an instance is built.
    pub build: Build,
}

/// Every provider's descriptor, in [`ProviderKind::ALL`] order: one line per provider.
pub const ALL: [&Descriptor; 5] = [
    &super::aws::DESCRIPTOR,
    &super::runpod::DESCRIPTOR,
    &super::lyceum::DESCRIPTOR,
    &super::sim::DESCRIPTOR,
    &super::kubernetes::DESCRIPTOR,
];

/// The descriptor of `kind`.
pub fn of(kind: ProviderKind) -> &'static Descriptor {
    ALL.into_iter()
        .find(|d| d.kind == kind)
        .expect("every provider has a descriptor (descriptor::ALL)")
}

/// The providers whose machines reach each other (multi-node jobs), as named in manifests.
pub fn multi_node_names() -> Vec<&'static str> {
    ALL.into_iter()
        .filter(|d| d.multi_node)
        .map(|d| d.kind.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_one_descriptor_in_order() {
        let kinds: Vec<ProviderKind> = ALL.iter().map(|d| d.kind).collect();
        assert_eq!(kinds, ProviderKind::ALL);
        for kind in ProviderKind::ALL {
            assert_eq!(of(kind).kind, kind);
        }
    }
}
