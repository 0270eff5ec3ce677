//! Placement offers: which (provider, machine type, region, spot) combinations a job's
//! placement allows ([`candidates`], pure), their prices and capabilities from each provider
//! through the registry ([`collect`]), and the ranking by price within `maxHourlyPrice`
//! ([`rank`], pure).

use crate::controller::Context;
use crate::controller::cloud_resource::provider_instance;
use crate::controller::machine_class::{ClassRefusal, usage};
use crate::crd::ProviderKind;
use crate::crd::training_job::{CapacityType, Offer, Placement, PlacementStatus, RejectedOffer};
use crate::provider::descriptor::{self, Sizing};
use crate::provider::{Availability, MachineSpec, Provider};

/// Rejection: the placement names no machine type this provider understands.
pub const NO_MACHINE_TYPE: &str = "NoMachineType";
/// Rejection: the provider has no spot machines.
pub const NO_SPOT: &str = "NoSpot";
/// Rejection: the provider client could not be set up (credentials, configuration).
pub const PROVIDER_UNAVAILABLE: &str = "ProviderUnavailable";
/// Rejection: the price could not be looked up.
pub const PRICE_UNAVAILABLE: &str = "PriceUnavailable";
/// Rejection: dearer than `maxHourlyPrice`.
pub const ABOVE_MAX_HOURLY_PRICE: &str = "AboveMaxHourlyPrice";
/// Rejection: the operator's configuration does not enable the provider
/// (`providers.<name>.enabled`).
pub const PROVIDER_NOT_ENABLED: &str = "ProviderNotEnabled";
/// Rejection: the provider has no machine equivalent to `placement.gpu`.
pub const NO_EQUIVALENT_MACHINE: &str = "NoEquivalentMachine";
/// Rejection: the machine class allows none of the placement's regions.
pub const REGION_NOT_IN_CLASS: &str = "RegionNotInMachineClass";
/// Rejection: the cluster's own nodes have no room for the machine now (`auto` bursts to the
/// rented offers).
pub const NO_FREE_CAPACITY: &str = "NoFreeCapacity";
/// Rejection reason: a multi-node job (`spec.nodes > 1`) on a provider whose machines cannot
/// reach each other.
pub const NO_MULTI_NODE: &str = "NoMultiNode";

fn reject(offer: Offer, reason: &str, message: impl Into<String>) -> RejectedOffer {
    RejectedOffer {
        offer,
        reason: reason.into(),
        message: Some(message.into()),
    }
}

fn has_regions(kind: ProviderKind) -> bool {
    descriptor::of(kind).regions
}

/// The machine a placement asks `kind` for: instance type, GPU type and count.
fn machine_of(p: &Placement, kind: ProviderKind) -> (Option<String>, Option<String>, Option<u32>) {
    match descriptor::of(kind).sizing {
        Sizing::InstanceType => (p.instance_type.clone(), None, None),
        Sizing::GpuType | Sizing::GpuCount => (None, p.gpu_type.clone(), p.gpu_count),
        Sizing::Either => (p.instance_type.clone(), p.gpu_type.clone(), p.gpu_count),
    }
}

/// The machines a placement asks `kind` for: with `placement.gpu`, the provider's equivalents
/// of the need (or why it has none); else its own instance type, GPU type and count.
#[allow(clippy::type_complexity)]
fn machines_of(
    p: &Placement,
    kind: ProviderKind,
) -> Result<Vec<(Option<String>, Option<String>, Option<u32>)>, String> {
    let Some(need) = &p.gpu else {
        return Ok(vec![machine_of(p, kind)]);
    };
    Ok(crate::provider::gpus::equivalents(kind, need)?
        .into_iter()
        .map(|e| (e.instance_type, e.gpu_type, e.gpu_count))
        .collect())
}

/// An offer of `kind` with the placement's own machine fields, for a rejection.
fn placeholder(p: &Placement, kind: ProviderKind) -> Offer {
    let (instance_type, gpu_type, gpu_count) = machine_of(p, kind);
    Offer {
        provider: kind,
        instance_type,
        gpu_type,
        gpu_count: gpu_count.or(p.gpu.as_ref().map(|g| g.count)),
        region: None,
        spot: p.capacity_type == CapacityType::Spot,
        price_per_hour: None,
        machine_class: None,
    }
}

/// The rejection of a provider the operator's configuration does not enable.
fn not_enabled(p: &Placement, kind: ProviderKind, enabled: &[ProviderKind]) -> RejectedOffer {
    reject_not_enabled(placeholder(p, kind), enabled)
}

/// Rejects `offer` because its provider is not among the `enabled` ones.
pub fn reject_not_enabled(offer: Offer, enabled: &[ProviderKind]) -> RejectedOffer {
    let kind = offer.provider;
    reject(
        offer,
        PROVIDER_NOT_ENABLED,
        format!(
            "{kind} is not enabled in this operator's configuration (providers.{kind}.enabled); enabled: {}",
            enabled_list(enabled)
        ),
    )
}

/// `aws, runpod`, or `none`.
pub fn enabled_list(enabled: &[ProviderKind]) -> String {
    if enabled.is_empty() {
        return "none".into();
    }
    enabled
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every offer the placement allows on the `enabled` providers, before prices, and those
/// rejected outright. `auto` without `allowedProviders` compares the enabled providers only; a
/// provider the placement names (fixed, or in `allowedProviders`) that is not enabled is
/// rejected `ProviderNotEnabled`.
///
/// With `classes` (the placement's `machineClasses`, already checked for use), the offers are
/// those of each class instead: its provider, and its regions (those of the placement's
/// `regions` the class allows, in the placement's order, when both name regions).
pub fn candidates(
    p: &Placement,
    enabled: &[ProviderKind],
    classes: Option<&[ClassChoice]>,
) -> (Vec<Offer>, Vec<RejectedOffer>) {
    let spots: &[bool] = match p.capacity_type {
        CapacityType::OnDemand => &[false],
        CapacityType::Spot => &[true],
        CapacityType::SpotWithFallback => &[true, false],
    };
    let (mut offers, mut rejected) = (vec![], vec![]);
    for (kind, class) in named(p, enabled, classes) {
        if !enabled.contains(&kind) {
            rejected.push(not_enabled(p, kind, enabled));
            continue;
        }
        let mut offer = placeholder(p, kind);
        offer.machine_class = class.map(|c| c.name.clone());
        let machines = match machines_of(p, kind) {
            Ok(m) => m,
            Err(why) => {
                rejected.push(reject(offer, NO_EQUIVALENT_MACHINE, why));
                continue;
            }
        };
        (offer.instance_type, offer.gpu_type, offer.gpu_count) = machines[0].clone();
        let regions = match regions_of(p, kind, class) {
            Ok(regions) => regions,
            Err(why) => {
                rejected.push(reject(offer, REGION_NOT_IN_CLASS, why));
                continue;
            }
        };
        for (instance_type, gpu_type, gpu_count) in &machines {
            for region in &regions {
                for &spot in spots {
                    let offer = Offer {
                        instance_type: instance_type.clone(),
                        gpu_type: gpu_type.clone(),
                        gpu_count: *gpu_count,
                        region: region.clone(),
                        spot,
                        ..offer.clone()
                    };
                    match refusal(&offer) {
                        Some((reason, why)) => rejected.push(reject(offer, reason, why)),
                        None => offers.push(offer),
                    }
                }
            }
        }
    }
    (offers, rejected)
}

/// The providers a placement names, each with its machine class: the classes', else the
/// fixed provider, else `allowedProviders`, else every enabled one.
fn named<'a>(
    p: &Placement,
    enabled: &[ProviderKind],
    classes: Option<&'a [ClassChoice]>,
) -> Vec<(ProviderKind, Option<&'a ClassChoice>)> {
    match classes {
        Some(classes) => classes.iter().map(|c| (c.provider, Some(c))).collect(),
        None => match (p.provider.fixed(), &p.allowed_providers) {
            (Some(k), _) => vec![(k, None)],
            (None, Some(allowed)) => allowed.iter().map(|k| (*k, None)).collect(),
            (None, None) => enabled.iter().map(|k| (*k, None)).collect(),
        },
    }
}

/// The regions an offer of `kind` may use (`None`: the provider has none, or the default);
/// `Err` when the class allows none of the placement's.
fn regions_of(
    p: &Placement,
    kind: ProviderKind,
    class: Option<&ClassChoice>,
) -> Result<Vec<Option<String>>, String> {
    let class_regions = class.and_then(|c| c.regions.as_ref());
    let regions: Vec<Option<String>> = match (has_regions(kind), class_regions) {
        (false, _) => vec![None],
        (true, None) if p.regions.is_empty() => vec![None],
        (true, None) => p.regions.iter().cloned().map(Some).collect(),
        (true, Some(allowed)) if p.regions.is_empty() => {
            allowed.iter().cloned().map(Some).collect()
        }
        (true, Some(allowed)) => p
            .regions
            .iter()
            .filter(|r| allowed.contains(r))
            .cloned()
            .map(Some)
            .collect(),
    };
    match class {
        Some(c) if regions.is_empty() => Err(format!(
            "MachineClass {} allows none of placement.regions ({}); it allows {}",
            c.name,
            p.regions.join(", "),
            class_regions.map(|r| r.join(", ")).unwrap_or_default()
        )),
        _ => Ok(regions),
    }
}

/// Why the provider cannot take an offer at all: no machine type where it needs one, or spot
/// where it has none.
fn refusal(offer: &Offer) -> Option<(&'static str, String)> {
    let kind = offer.provider;
    let d = descriptor::of(kind);
    if offer.instance_type.is_none() && offer.gpu_type.is_none() && d.sizing.needs_machine_type() {
        let need = match d.sizing {
            Sizing::InstanceType => "instanceType",
            _ => "gpuType",
        };
        return Some((
            NO_MACHINE_TYPE,
            format!("{kind} needs placement.{need} or placement.gpu"),
        ));
    }
    (offer.spot && !d.spot).then(|| (NO_SPOT, format!("{kind} offers no spot machines")))
}

/// Ranks priced offers and rejects those above `maxHourlyPrice`: the cluster's own machines
/// first (already paid for; only offered while they have room), then the rented ones cheapest
/// first. Offers without a price are kept last when `allow_unpriced` (a fixed provider), else
/// rejected (auto compares prices).
pub fn rank(
    offers: Vec<Offer>,
    mut rejected: Vec<RejectedOffer>,
    max_hourly_price: Option<f64>,
    allow_unpriced: bool,
) -> PlacementStatus {
    let mut kept = vec![];
    for o in offers {
        match (o.price_per_hour, max_hourly_price) {
            (Some(price), Some(max)) if price > max => rejected.push(reject(
                o,
                ABOVE_MAX_HOURLY_PRICE,
                format!("{price:.4} USD/h is above maxHourlyPrice {max}"),
            )),
            (None, _) if !allow_unpriced => {
                rejected.push(reject(o, PRICE_UNAVAILABLE, "no price to compare"))
            }
            _ => kept.push(o),
        }
    }
    let rented = |o: &Offer| !descriptor::of(o.provider).in_cluster;
    kept.sort_by(|a, b| {
        rented(a)
            .cmp(&rented(b))
            .then_with(|| match (a.price_per_hour, b.price_per_hour) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
    });
    PlacementStatus {
        chosen: None,
        remaining: kept,
        rejected,
    }
}

/// The machine spec used for a price quote.
pub fn quote_spec(o: &Offer, region: Option<String>) -> MachineSpec {
    MachineSpec {
        instance_type: o.instance_type.clone(),
        gpu_type: o.gpu_type.clone(),
        gpu_count: o.gpu_count.unwrap_or(1),
        region,
        spot: o.spot,
        ..Default::default()
    }
}

/// The provider instance an offer is priced with: the class's credentials, else the
/// operator's default (Secrets read through the context's cache).
async fn provider(
    ctx: &Context,
    kind: ProviderKind,
    region: Option<String>,
    class: Option<&ClassChoice>,
) -> Result<std::sync::Arc<dyn Provider>, String> {
    let secret = usage::credentials_or_default(
        class.and_then(|c| c.credentials.clone()),
        kind,
        ctx.registry.config(),
    );
    provider_instance(ctx, kind, region, secret, false)
        .await
        .map(|(_, p)| p)
        .map_err(|e| e.to_string())
}

/// A MachineClass as a placement uses it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassChoice {
    /// Name of the class.
    pub name: String,
    /// Its provider.
    pub provider: ProviderKind,
    /// Its regions, in order of preference (`None`: any).
    pub regions: Option<Vec<String>>,
    /// Its credentials Secret (namespace, name), if it names one.
    pub credentials: Option<(String, String)>,
}

/// The placement's classes, each checked for use by a job in `namespace`; the first refusal
/// refuses the job. `Ok(None)` when the placement names no class.
async fn classes(
    ctx: &Context,
    p: &Placement,
    namespace: &str,
) -> Result<Option<Vec<ClassChoice>>, ClassRefusal> {
    let Some(names) = &p.machine_classes else {
        return Ok(None);
    };
    let mut out = vec![];
    for name in names {
        let class = ctx.classes.get(name).await?;
        let wanted = p.provider.fixed().unwrap_or(class.spec.provider);
        usage::check_use(&class, namespace, wanted)?;
        out.push(ClassChoice {
            name: name.clone(),
            provider: class.spec.provider,
            regions: class.spec.allowed_regions(),
            credentials: class.spec.credentials_secret_ref.as_ref().map(|r| r.key()),
        });
    }
    Ok(Some(out))
}

/// Collects prices and capabilities for every candidate on the providers the operator's
/// configuration enables (of the placement's machine classes, when it names some), and ranks
/// them; a job of several `nodes` only on providers that place machines together. A class the
/// job in `namespace` may not use refuses the whole placement.
pub async fn collect(
    ctx: &Context,
    p: &Placement,
    nodes: u32,
    namespace: &str,
) -> Result<PlacementStatus, ClassRefusal> {
    let enabled = ctx.registry.config().enabled_kinds();
    let classes = classes(ctx, p, namespace).await?;
    let (offers, mut rejected) = candidates(p, &enabled, classes.as_deref());
    let mut priced = vec![];
    for mut o in offers {
        if nodes > 1 && !o.provider.multi_node() {
            let msg = format!(
                "{} cannot run a job of {nodes} nodes: its machines do not reach each other ({} can)",
                o.provider,
                descriptor::multi_node_names().join(", ")
            );
            rejected.push(reject(o, NO_MULTI_NODE, msg));
            continue;
        }
        let class = classes
            .iter()
            .flatten()
            .find(|c| Some(&c.name) == o.machine_class.as_ref());
        let region = o.region.clone().or_else(|| {
            class
                .and_then(|c| c.regions.as_ref()?.first().cloned())
                .or_else(|| ctx.registry.config().default_region(o.provider))
        });
        let prov = match provider(ctx, o.provider, region.clone(), class).await {
            Ok(prov) => prov,
            Err(e) => {
                rejected.push(reject(o, PROVIDER_UNAVAILABLE, e));
                continue;
            }
        };
        if o.spot && !prov.capabilities().spot {
            let msg = format!("{} offers no spot machines", o.provider);
            rejected.push(reject(o, NO_SPOT, msg));
            continue;
        }
        let spec = quote_spec(&o, region);
        // Where the provider can tell (the cluster's own nodes), an offer without room now is
        // not taken by `auto`; a fixed provider waits for room instead.
        if p.provider.fixed().is_none() {
            match prov.availability(&spec).await {
                Ok(Availability::Full(why)) => {
                    rejected.push(reject(o, NO_FREE_CAPACITY, why));
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    rejected.push(reject(o, PROVIDER_UNAVAILABLE, e.to_string()));
                    continue;
                }
            }
        }
        match prov.price(&spec).await {
            Ok(q) => {
                o.price_per_hour = Some(crate::provider::pricing::round_cents(q.per_hour));
                priced.push(o);
            }
            Err(e) if p.provider.fixed().is_some() => {
                tracing::debug!(error = %e, "price lookup failed; the fixed provider is used unpriced");
                priced.push(o);
            }
            Err(e) => rejected.push(reject(o, PRICE_UNAVAILABLE, e.to_string())),
        }
    }
    Ok(rank(
        priced,
        rejected,
        p.max_hourly_price,
        p.provider.fixed().is_some(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(v: serde_json::Value) -> Placement {
        serde_json::from_value(v).unwrap()
    }

    const ALL: &[ProviderKind] = &ProviderKind::ALL;

    #[test]
    fn candidates_per_provider_region_and_capacity_type() {
        let (offers, rejected) = candidates(
            &placement(serde_json::json!({
                "provider": "auto", "gpuType": "a100", "gpuCount": 2, "regions": ["r1", "r2"], "capacityType": "spotWithFallback"
            })),
            ALL,
            None,
        );
        let names: Vec<String> = offers
            .iter()
            .map(|o| {
                format!(
                    "{}:{}:{}",
                    o.provider,
                    o.region.as_deref().unwrap_or("-"),
                    o.spot
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                "runpod:-:false",
                "lyceum:-:true",
                "lyceum:-:false",
                "sim:r1:true",
                "sim:r1:false",
                "sim:r2:true",
                "sim:r2:false",
                "kubernetes:-:false"
            ]
        );
        let why: Vec<(String, &str)> = rejected
            .iter()
            .map(|r| (r.offer.provider.to_string(), r.reason.as_str()))
            .collect();
        assert_eq!(
            why,
            [
                ("aws".into(), NO_MACHINE_TYPE),
                ("aws".into(), NO_MACHINE_TYPE),
                ("aws".into(), NO_MACHINE_TYPE),
                ("aws".into(), NO_MACHINE_TYPE),
                ("runpod".into(), NO_SPOT),
                ("kubernetes".into(), NO_SPOT)
            ]
        );
        assert_eq!(offers[0].gpu_count, Some(2));
    }

    #[test]
    fn fixed_provider_and_allowed_list() {
        let (offers, rejected) = candidates(
            &placement(serde_json::json!({"provider": "aws", "instanceType": "g5.xlarge"})),
            ALL,
            None,
        );
        assert_eq!((offers.len(), rejected.len()), (1, 0));
        assert_eq!(offers[0].instance_type.as_deref(), Some("g5.xlarge"));
        let (offers, _) = candidates(
            &placement(
                serde_json::json!({"provider": "auto", "instanceType": "x", "allowedProviders": ["sim"]}),
            ),
            ALL,
            None,
        );
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].provider, ProviderKind::Sim);
    }

    #[test]
    fn auto_compares_only_the_enabled_providers() {
        let auto = placement(serde_json::json!({
            "provider": "auto", "instanceType": "g5.xlarge", "gpuType": "a100", "capacityType": "spotWithFallback"
        }));
        // The operator enables AWS and Lyceum: sim and RunPod are neither offered nor listed.
        let (offers, rejected) =
            candidates(&auto, &[ProviderKind::Aws, ProviderKind::Lyceum], None);
        let providers: Vec<ProviderKind> = offers.iter().map(|o| o.provider).collect();
        assert_eq!(
            providers,
            [
                ProviderKind::Aws,
                ProviderKind::Aws,
                ProviderKind::Lyceum,
                ProviderKind::Lyceum
            ]
        );
        assert!(rejected.is_empty(), "{rejected:?}");
        // Nothing enabled: no candidate at all.
        assert_eq!(candidates(&auto, &[], None), (vec![], vec![]));
    }

    #[test]
    fn a_named_provider_that_is_not_enabled_is_rejected() {
        let enabled = [ProviderKind::Aws];
        let (offers, rejected) = candidates(
            &placement(serde_json::json!({"provider": "sim", "instanceType": "sim.a100"})),
            &enabled,
            None,
        );
        assert!(offers.is_empty());
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].reason, PROVIDER_NOT_ENABLED);
        assert_eq!(rejected[0].offer.provider, ProviderKind::Sim);
        assert_eq!(
            rejected[0].message.as_deref(),
            Some(
                "sim is not enabled in this operator's configuration (providers.sim.enabled); enabled: aws"
            )
        );
        // allowedProviders: the enabled ones are offered, the others rejected with the reason.
        let (offers, rejected) = candidates(
            &placement(serde_json::json!({
                "provider": "auto", "instanceType": "g5.xlarge", "allowedProviders": ["sim", "aws"]
            })),
            &enabled,
            None,
        );
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].provider, ProviderKind::Aws);
        assert_eq!(
            rejected
                .iter()
                .map(|r| (r.offer.provider, r.reason.as_str()))
                .collect::<Vec<_>>(),
            [(ProviderKind::Sim, PROVIDER_NOT_ENABLED)]
        );
        assert_eq!(enabled_list(&[]), "none");
    }

    fn class(name: &str, provider: ProviderKind, regions: Option<&[&str]>) -> ClassChoice {
        ClassChoice {
            name: name.into(),
            provider,
            regions: regions.map(|r| r.iter().map(|s| s.to_string()).collect()),
            credentials: None,
        }
    }

    #[test]
    fn classes_bring_their_provider_and_regions() {
        let auto = placement(serde_json::json!({
            "provider": "auto", "instanceType": "g5.xlarge", "gpuType": "a100",
            "machineClasses": ["team-aws", "team-lyceum"]
        }));
        let classes = [
            class(
                "team-aws",
                ProviderKind::Aws,
                Some(&["us-west-2", "us-east-1"]),
            ),
            class("team-lyceum", ProviderKind::Lyceum, None),
        ];
        let (offers, rejected) = candidates(&auto, ALL, Some(&classes));
        let names: Vec<String> = offers
            .iter()
            .map(|o| {
                format!(
                    "{}:{}:{}",
                    o.machine_class.as_deref().unwrap_or("-"),
                    o.provider,
                    o.region.as_deref().unwrap_or("-")
                )
            })
            .collect();
        // Only the classes' providers, each in the class's regions in the class's order.
        assert_eq!(
            names,
            [
                "team-aws:aws:us-west-2",
                "team-aws:aws:us-east-1",
                "team-lyceum:lyceum:-"
            ]
        );
        assert!(rejected.is_empty());

        // The placement's regions narrow the class's, in the placement's order.
        let narrowed = placement(serde_json::json!({
            "provider": "aws", "instanceType": "g5.xlarge", "regions": ["eu-west-1", "us-east-1"],
            "machineClasses": ["team-aws"]
        }));
        let (offers, _) = candidates(&narrowed, ALL, Some(&classes[..1]));
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].region.as_deref(), Some("us-east-1"));

        // None left: rejected with both lists.
        let elsewhere = placement(serde_json::json!({
            "provider": "aws", "instanceType": "g5.xlarge", "regions": ["eu-west-1"],
            "machineClasses": ["team-aws"]
        }));
        let (offers, rejected) = candidates(&elsewhere, ALL, Some(&classes[..1]));
        assert!(offers.is_empty());
        assert_eq!(rejected[0].reason, REGION_NOT_IN_CLASS);
        assert_eq!(
            rejected[0].message.as_deref(),
            Some(
                "MachineClass team-aws allows none of placement.regions (eu-west-1); it allows us-west-2, us-east-1"
            )
        );

        // A class of a provider the operator does not enable is rejected like the provider.
        let (_, rejected) = candidates(&auto, &[ProviderKind::Aws], Some(&classes));
        assert_eq!(rejected[0].reason, PROVIDER_NOT_ENABLED);
    }

    #[test]
    fn one_gpu_need_is_offered_by_each_provider_in_its_own_names() {
        let need = |count: u32| {
            placement(serde_json::json!({
                "provider": "auto", "gpu": {"model": "A100-80GB", "count": count}
            }))
        };
        let (offers, rejected) = candidates(&need(1), ALL, None);
        let names: Vec<String> = offers
            .iter()
            .map(|o| {
                format!(
                    "{}:{}:{}",
                    o.provider,
                    o.instance_type
                        .as_deref()
                        .or(o.gpu_type.as_deref())
                        .unwrap_or("-"),
                    o.gpu_count.unwrap_or(0)
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                "runpod:NVIDIA A100 80GB PCIe:1",
                "runpod:NVIDIA A100-SXM4-80GB:1",
                "lyceum:a100:1",
                "sim:a100:1",
                "kubernetes:NVIDIA-A100-SXM4-80GB:1"
            ]
        );
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            (rejected[0].offer.provider, rejected[0].reason.as_str()),
            (ProviderKind::Aws, NO_EQUIVALENT_MACHINE)
        );
        assert_eq!(
            rejected[0].message.as_deref(),
            Some("aws has A100-80GB machines with 8 GPUs, not 1")
        );
        // Ranked by price against the same need: the cheapest equivalent first.
        let prices = [3.0, 2.5, 1.9, 2.0];
        let priced = offers
            .into_iter()
            .zip(prices)
            .map(|(o, p)| Offer {
                price_per_hour: Some(p),
                ..o
            })
            .collect();
        let ranked = rank(priced, rejected, None, false);
        let order: Vec<ProviderKind> = ranked.remaining.iter().map(|o| o.provider).collect();
        assert_eq!(
            order,
            [
                ProviderKind::Lyceum,
                ProviderKind::Sim,
                ProviderKind::Runpod,
                ProviderKind::Runpod
            ]
        );

        // Eight: EC2's p4de.24xlarge joins; Lyceum runs take one GPU.
        let (offers, rejected) = candidates(&need(8), ALL, None);
        assert!(
            offers
                .iter()
                .any(|o| o.instance_type.as_deref() == Some("p4de.24xlarge"))
        );
        assert_eq!(
            rejected
                .iter()
                .map(|r| (r.offer.provider, r.reason.as_str()))
                .collect::<Vec<_>>(),
            [(ProviderKind::Lyceum, NO_EQUIVALENT_MACHINE)]
        );
    }

    #[test]
    fn ranking() {
        let o = |p: Option<f64>, spot| Offer {
            provider: ProviderKind::Sim,
            instance_type: Some("t".into()),
            gpu_type: None,
            gpu_count: None,
            region: None,
            spot,
            price_per_hour: p,
            machine_class: None,
        };
        let ranked = rank(
            vec![
                o(Some(3.0), false),
                o(None, false),
                o(Some(1.0), true),
                o(Some(9.0), false),
            ],
            vec![],
            Some(5.0),
            true,
        );
        let prices: Vec<Option<f64>> = ranked.remaining.iter().map(|o| o.price_per_hour).collect();
        assert_eq!(prices, [Some(1.0), Some(3.0), None]);
        assert_eq!(ranked.rejected.len(), 1);
        assert_eq!(ranked.rejected[0].reason, ABOVE_MAX_HOURLY_PRICE);
        let auto = rank(
            vec![o(None, false), o(Some(2.0), false)],
            vec![],
            None,
            false,
        );
        assert_eq!(auto.remaining.len(), 1);
        assert_eq!(auto.rejected[0].reason, PRICE_UNAVAILABLE);
    }
}
