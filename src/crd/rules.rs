//! The CEL rules the providers contribute to the CRDs, generated from their descriptors
//! ([`crate::provider::descriptor`]): what a provider needs of a placement (an instance type, a
//! GPU type), spot, regions, its own settings block, multi-node jobs, and the rules a provider
//! module declares itself ([`Descriptor::cel`]). The rules that concern no provider stay on the
//! CRD types (`#[x_kube(validation = ...)]`); [`super::all`] adds these to the generated CRDs,
//! so a new provider's rules come with its descriptor and `runctl crd` writes them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, ValidationRule,
};

use crate::provider::descriptor::{ALL, Constraint, Descriptor, Sizing};

/// Where in a CRD's schema a set of rules goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A CloudResource's `spec`.
    CloudResource,
    /// A TrainingJob's `spec`.
    TrainingJob,
    /// A TrainingJob's `spec.placement`.
    Placement,
    /// A MachineClass's `spec`.
    MachineClass,
}

impl Target {
    /// The CRD the target belongs to, by kind.
    fn kind(self) -> &'static str {
        match self {
            Self::CloudResource => "CloudResource",
            Self::TrainingJob | Self::Placement => "TrainingJob",
            Self::MachineClass => "MachineClass",
        }
    }

    /// The path of properties from the root schema to the target.
    fn path(self) -> &'static [&'static str] {
        match self {
            Self::Placement => &["spec", "placement"],
            _ => &["spec"],
        }
    }
}

/// Every target, for [`add_to`].
const TARGETS: [Target; 4] = [
    Target::CloudResource,
    Target::TrainingJob,
    Target::Placement,
    Target::MachineClass,
];

/// A generated rule.
fn rule(rule: String, message: String, field: Option<&str>) -> ValidationRule {
    ValidationRule {
        rule,
        message: Some(message),
        field_path: field.map(str::to_string),
        ..ValidationRule::default()
    }
}

/// A provider's rule, holding only while the object names the provider.
fn guarded(d: &Descriptor, c: &Constraint) -> ValidationRule {
    rule(
        format!("self.provider != '{}' || ({})", d.kind.as_str(), c.rule),
        c.message.to_string(),
        c.field,
    )
}

/// The rules the descriptors give for `target`, in the registry's order.
pub fn for_target(target: Target) -> Vec<ValidationRule> {
    match target {
        Target::CloudResource => ALL.iter().flat_map(|d| cloud_resource(d)).collect(),
        Target::Placement => ALL.iter().flat_map(|d| placement(d)).collect(),
        Target::MachineClass => ALL.iter().flat_map(|d| machine_class(d)).collect(),
        Target::TrainingJob => multi_node(),
    }
}

/// A CloudResource naming `d`: what it sizes machines by, spot, its own rules; and its
/// settings block with no other provider.
fn cloud_resource(d: &Descriptor) -> Vec<ValidationRule> {
    let name = d.kind.as_str();
    let when = format!("self.provider != '{name}' || ");
    let ex = d.machine_example;
    let mut rules = match d.sizing {
        Sizing::InstanceType => vec![rule(
            format!("{when}has(self.instanceType)"),
            format!("provider {name} needs spec.instanceType, e.g. {ex}"),
            Some(".instanceType"),
        )],
        Sizing::GpuType => vec![rule(
            format!("{when}has(self.gpuType)"),
            format!("provider {name} needs spec.gpuType, e.g. {ex}"),
            Some(".gpuType"),
        )],
        Sizing::GpuCount => vec![rule(
            format!("{when}!has(self.instanceType)"),
            format!("provider {name} places by gpuType (e.g. {ex}) and gpuCount, not instanceType"),
            Some(".instanceType"),
        )],
        Sizing::Either => vec![],
    };
    if !d.spot {
        rules.push(rule(
            format!("{when}!self.spot"),
            format!("provider {name} has no spot machines; set spot: false"),
            Some(".spot"),
        ));
    }
    rules.extend(options_block(d));
    rules.extend(d.cel.cloud_resource.iter().map(|c| guarded(d, c)));
    rules
}

/// A TrainingJob placement naming `d`.
fn placement(d: &Descriptor) -> Vec<ValidationRule> {
    let name = d.kind.as_str();
    let when = format!("self.provider != '{name}' || ");
    let ex = d.machine_example;
    let mut rules = match d.sizing {
        Sizing::InstanceType => vec![rule(
            format!("{when}has(self.instanceType) || has(self.gpu)"),
            format!(
                "placement.provider {name} needs placement.instanceType (e.g. {ex}) or placement.gpu"
            ),
            Some(".instanceType"),
        )],
        Sizing::GpuType => vec![rule(
            format!("{when}has(self.gpuType) || has(self.gpu)"),
            format!(
                "placement.provider {name} needs placement.gpuType (e.g. {ex}) or placement.gpu"
            ),
            Some(".gpuType"),
        )],
        Sizing::GpuCount => vec![rule(
            format!("{when}!has(self.instanceType)"),
            format!(
                "placement.provider {name} places by gpuType (e.g. {ex}) and gpuCount, or placement.gpu, not instanceType"
            ),
            Some(".instanceType"),
        )],
        Sizing::Either => vec![],
    };
    if !d.spot {
        rules.push(rule(
            format!("{when}self.capacityType != 'spot'"),
            format!(
                "placement.provider {name} has no spot machines; use capacityType onDemand or spotWithFallback"
            ),
            Some(".capacityType"),
        ));
    }
    rules.extend(d.cel.placement.iter().map(|c| guarded(d, c)));
    rules
}

/// A MachineClass naming `d`: regions only where it has them, its settings block.
fn machine_class(d: &Descriptor) -> Vec<ValidationRule> {
    let name = d.kind.as_str();
    let mut rules = Vec::new();
    if !d.regions {
        rules.push(rule(
            format!("self.provider != '{name}' || !has(self.regions)"),
            format!(
                "provider {name} has no regions runctl can choose; leave spec.regions out and place with the class's {name} settings"
            ),
            Some(".regions"),
        ));
    }
    rules.extend(options_block(d));
    rules
}

/// `spec.<provider>` (the provider's own settings) only with that provider.
fn options_block(d: &Descriptor) -> Option<ValidationRule> {
    let name = d.kind.as_str();
    d.options.then(|| {
        rule(
            format!("!has(self.{name}) || self.provider == '{name}'"),
            format!("spec.{name} is only valid with provider {name}"),
            Some(&format!(".{name}")),
        )
    })
}

/// Multi-node jobs only on providers whose machines reach each other.
fn multi_node() -> Vec<ValidationRule> {
    let names = crate::provider::descriptor::multi_node_names();
    let list = names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let many = "!has(self.nodes) || self.nodes <= 1";
    vec![
        rule(
            format!("{many} || self.placement.provider in [{list}, 'auto']"),
            format!(
                "spec.nodes above 1 (a multi-node job) needs placement.provider {} or auto: the other providers' machines cannot reach each other",
                names.join(", ")
            ),
            Some(".nodes"),
        ),
        rule(
            format!(
                "{many} || !has(self.placement.allowedProviders) || self.placement.allowedProviders.exists(p, p in [{list}])"
            ),
            format!(
                "spec.nodes above 1 (a multi-node job) needs {} among placement.allowedProviders",
                either(&names)
            ),
            Some(".nodes"),
        ),
    ]
}

/// `a, b or c`.
fn either(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Adds the generated rules to `crd` (one of [`super::all`]'s), after the rules of its types.
pub fn add_to(crd: &mut CustomResourceDefinition) {
    for target in TARGETS {
        if crd.spec.names.kind != target.kind() {
            continue;
        }
        for version in &mut crd.spec.versions {
            let schema = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
                .expect("a generated CRD has a schema");
            let props = at(schema, target.path());
            props
                .x_kubernetes_validations
                .get_or_insert_with(Vec::new)
                .extend(for_target(target));
        }
    }
}

/// The schema at `path` (property names from `schema`).
fn at<'a>(schema: &'a mut JSONSchemaProps, path: &[&str]) -> &'a mut JSONSchemaProps {
    path.iter().fold(schema, |s, name| {
        s.properties
            .as_mut()
            .and_then(|p| p.get_mut(*name))
            .unwrap_or_else(|| panic!("the CRD schema has a property {name}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ProviderKind;

    #[test]
    fn every_provider_rule_is_guarded_by_its_provider() {
        for target in [Target::CloudResource, Target::Placement] {
            for r in for_target(target) {
                assert!(
                    r.rule.contains("self.provider"),
                    "{target:?}: {} names no provider",
                    r.rule
                );
            }
        }
    }

    #[test]
    fn sizing_spot_and_settings_follow_the_descriptors() {
        let rules = for_target(Target::CloudResource);
        let has = |s: &str| rules.iter().any(|r| r.rule == s);
        assert!(has("self.provider != 'aws' || has(self.instanceType)"));
        assert!(has("self.provider != 'runpod' || has(self.gpuType)"));
        assert!(has("self.provider != 'runpod' || !self.spot"));
        assert!(!has("self.provider != 'aws' || !self.spot"));
        assert!(has("!has(self.aws) || self.provider == 'aws'"));
        assert!(!rules.iter().any(|r| r.rule.contains("has(self.sim)")));
        assert!(has(
            "self.provider != 'lyceum' || (!has(self.gpuCount) || self.gpuCount in [1, 2, 4, 8])"
        ));
    }

    #[test]
    fn multi_node_lists_the_providers_that_place_machines_together() {
        let rules = for_target(Target::TrainingJob);
        let together: Vec<&str> = ProviderKind::ALL
            .into_iter()
            .filter(|k| k.multi_node())
            .map(ProviderKind::as_str)
            .collect();
        for name in &together {
            assert!(rules[0].rule.contains(&format!("'{name}'")));
        }
        assert_eq!(either(&["a"]), "a");
        assert_eq!(either(&["a", "b", "c"]), "a, b or c");
    }
}
