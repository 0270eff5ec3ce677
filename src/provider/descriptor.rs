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

/// A CEL rule a provider contributes to a CRD. `rule` holds while the object names the provider:
/// the generated rule is `self.provider != '<name>' || (<rule>)`, so a provider's rule never
/// constrains another provider's objects.
#[derive(Debug)]
pub struct Constraint {
    /// The CEL expression, on the object the rule is attached to.
    pub rule: &'static str,
    /// What a user reads when it fails.
    pub message: &'static str,
    /// The field the failure is reported at (`.gpuCount`), if one.
    pub field: Option<&'static str>,
}

/// The rules a provider contributes, by where they apply.
#[derive(Debug)]
pub struct Cel {
    /// On a CloudResource's spec.
    pub cloud_resource: &'static [Constraint],
    /// On a TrainingJob's placement.
    pub placement: &'static [Constraint],
}

impl Cel {
    /// No rules beyond the generated ones.
    pub const NONE: Cel = Cel {
        cloud_resource: &[],
        placement: &[],
    };
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
    /// A machine type as a user writes it (`g5.xlarge`, a RunPod GPU id), for the messages of
    /// the generated CEL rules.
    pub machine_example: &'static str,
    /// CloudResources, MachineClasses and machine specs carry a block of its own settings named
    /// after it (`spec.aws`); the generated rules refuse the block with another provider.
    pub options: bool,
    /// The admission rules only this provider needs, beyond what the flags above generate
    /// ([`crate::crd::rules`]).
    pub cel: Cel,
    /// Its section of the operator's configuration (`providers.<name>`).
    pub section: fn(&ProvidersConfig) -> &dyn Section,
    /// The same, to change.
    pub section_mut: fn(&mut ProvidersConfig) -> &mut dyn Section,
    /// How an instance is built.
    pub build: Build,
}

/// The registry of providers: from one line per provider (its variant and its module), the
/// [`ProviderKind`] enum (its manifest name is the module's), the [`PlacementProvider`] enum (the
/// same and `auto`) and [`ALL`], the descriptors in that order.
macro_rules! providers {
    ($($(#[$doc:meta])* $variant:ident => $module:ident,)*) => {
        /// A provider runctl places machines on: a cloud it rents from, the simulator, or the
        /// cluster's own GPU nodes.
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, schemars::JsonSchema,
        )]
        #[serde(rename_all = "lowercase")]
        pub enum ProviderKind {
            $($(#[$doc])* $variant,)*
        }

        /// Where a job may run: one provider, or the cheapest offer among those allowed.
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize,
            schemars::JsonSchema,
        )]
        #[serde(rename_all = "lowercase")]
        pub enum PlacementProvider {
            $($(#[$doc])* $variant,)*
            /// The cheapest offer among the allowed providers (free in-cluster GPUs first).
            Auto,
        }

        const COUNT: usize = [$(stringify!($module)),*].len();

        impl ProviderKind {
            /// Every provider, in the registry's order.
            pub const ALL: [ProviderKind; COUNT] = [$(Self::$variant),*];

            /// The lower-case name used in manifests, metric labels and tags: its module's.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($module),)*
                }
            }
        }

        impl PlacementProvider {
            /// The single provider, or `None` for `auto`.
            pub fn fixed(self) -> Option<ProviderKind> {
                match self {
                    $(Self::$variant => Some(ProviderKind::$variant),)*
                    Self::Auto => None,
                }
            }
        }

        /// Every provider's descriptor, in [`ProviderKind::ALL`] order.
        pub const ALL: [&Descriptor; COUNT] = [$(&super::$module::DESCRIPTOR),*];
    };
}

providers! {
    /// Amazon EC2 (on-demand and spot instances).
    Aws => aws,
    /// RunPod pods through REST API v2 (on-demand only).
    Runpod => runpod,
    /// Lyceum AI container runs and VMs.
    Lyceum => lyceum,
    /// runctl's deterministic simulated cloud, for demos and tests.
    Sim => sim,
    /// The cluster's own GPU nodes: the machine is a Pod in the job's namespace.
    Kubernetes => kubernetes,
}

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
            // The manifest name (serde) is the module's name (as_str).
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
            let placed: PlacementProvider =
                serde_json::from_value(serde_json::json!(kind.as_str())).unwrap();
            assert_eq!(placed.fixed(), Some(kind));
        }
    }
}
