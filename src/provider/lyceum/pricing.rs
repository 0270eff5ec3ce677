//! Lyceum prices: parsed from `/pricing` (string prices per `vm_running` meter and
//! `<instance_type>.<profile>.<count>x` group) and `/vms/availability`, looked up per machine,
//! and cached. Parsing never panics; a price that does not parse is an error for that entry only.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::api::{self, Availability, Pricing};
use super::ids::Kind;
use crate::provider::{PriceQuote, ProviderError};

/// The `/pricing` meter of running VMs.
pub const VM_METER: &str = "vm_running";

/// Parsed prices: per `/pricing` group and per availability variant; `Err` holds why an entry
/// did not parse.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prices {
    /// `on-demand.a100.1x` → USD/h for the whole VM.
    pub groups: BTreeMap<String, Result<f64, String>>,
    /// (`a100`, `on-demand`) → USD/h as `/vms/availability` quotes it.
    pub variants: BTreeMap<(String, String), Result<f64, String>>,
}

/// The `/pricing` group of a VM.
pub fn group_key(spot: bool, profile: &str, gpu_count: u32) -> String {
    format!(
        "{}.{profile}.{gpu_count}x",
        if spot { "spot" } else { "on-demand" }
    )
}

impl Prices {
    /// Adds the `vm_running` entries of `/pricing`.
    pub fn add_pricing(&mut self, p: &Pricing) {
        for e in p.prices.iter().filter(|e| e.meter_slug == VM_METER) {
            let Some(group) = e.group_by.get("hardware_profile").and_then(|g| g.as_str()) else {
                continue;
            };
            let price = e
                .unit_price_per_hour
                .as_ref()
                .ok_or_else(|| "no unit_price_per_hour".to_string())
                .and_then(api::number);
            self.groups.insert(group.to_ascii_lowercase(), price);
        }
    }

    /// Adds the variants of `/vms/availability`.
    pub fn add_availability(&mut self, a: &Availability) {
        for v in &a.available_instance_variants {
            let price = v
                .price_per_hour
                .as_ref()
                .ok_or_else(|| "no price_per_hour".to_string())
                .and_then(api::number);
            self.variants.insert(
                (
                    v.hardware_profile.to_ascii_lowercase(),
                    v.instance_type.to_ascii_lowercase(),
                ),
                price,
            );
        }
    }

    /// Profiles with a price.
    pub fn profiles(&self) -> Vec<String> {
        let mut p: Vec<String> = self.variants.keys().map(|(p, _)| p.clone()).collect();
        p.extend(
            self.groups
                .keys()
                .filter_map(|g| g.split('.').nth(1).map(str::to_string)),
        );
        p.sort();
        p.dedup();
        p
    }

    /// The price of a machine. VMs: the exact `/pricing` group, else the availability price
    /// times the GPU count (an estimate: whether that figure is per GPU is not documented).
    /// Runs: the on-demand one-GPU VM price of the same hardware (an estimate: Lyceum publishes
    /// no run meter).
    pub fn quote(
        &self,
        kind: Kind,
        profile: &str,
        gpu_count: u32,
        spot: bool,
    ) -> Result<PriceQuote, ProviderError> {
        let bad = |what: &str, why: &str| {
            ProviderError::retryable(format!(
                "Lyceum returned an unreadable price for {what}: {why}"
            ))
        };
        let (group, estimate) = match kind {
            Kind::Vm => (group_key(spot, profile, gpu_count), false),
            Kind::Run => (group_key(false, profile, 1), true),
        };
        if let Some(p) = self.groups.get(&group) {
            let per_hour = p.clone().map_err(|why| bad(&group, &why))?;
            return Ok(PriceQuote {
                per_hour,
                estimate,
                source: if estimate {
                    "lyceum-pricing-vm-meter"
                } else {
                    "lyceum-pricing"
                },
            });
        }
        let instance_type = if spot && kind == Kind::Vm {
            "spot"
        } else {
            "on-demand"
        };
        if let Some(p) = self
            .variants
            .get(&(profile.to_string(), instance_type.to_string()))
        {
            let each = p
                .clone()
                .map_err(|why| bad(&format!("{profile} {instance_type}"), &why))?;
            let count = if kind == Kind::Vm {
                gpu_count.max(1)
            } else {
                1
            };
            return Ok(PriceQuote {
                per_hour: each * f64::from(count),
                estimate: true,
                source: "lyceum-availability",
            });
        }
        Err(ProviderError::InvalidSpec {
            message: format!(
                "Lyceum lists no price for hardware profile {profile:?} ({instance_type}, {gpu_count} GPU); profiles with prices: {}",
                self.profiles().join(", ")
            ),
        })
    }
}

/// Prices with their fetch time.
pub struct PriceCache {
    ttl: Duration,
    entry: Mutex<Option<(Instant, Prices)>>,
    failed_at: Mutex<Option<Instant>>,
}

impl PriceCache {
    /// How long listing waits before fetching prices again after a failed fetch.
    pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

    /// An empty cache keeping prices for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entry: Mutex::new(None),
            failed_at: Mutex::new(None),
        }
    }

    /// False shortly after a failed fetch.
    pub fn may_fetch(&self) -> bool {
        self.failed_at
            .lock()
            .is_none_or(|at| at.elapsed() >= Self::RETRY_AFTER_FAILURE)
    }

    /// Records a failed fetch.
    pub fn fetch_failed(&self) {
        *self.failed_at.lock() = Some(Instant::now());
    }

    /// The cached prices if still fresh.
    pub fn fresh(&self) -> Option<Prices> {
        let entry = self.entry.lock();
        entry
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, p)| p.clone())
    }

    /// The cached prices, however old.
    pub fn any(&self) -> Option<Prices> {
        self.entry.lock().as_ref().map(|(_, p)| p.clone())
    }

    /// Stores freshly fetched prices.
    pub fn store(&self, prices: Prices) {
        *self.entry.lock() = Some((Instant::now(), prices));
        *self.failed_at.lock() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prices() -> Prices {
        let pricing: Pricing = serde_json::from_value(json!({"prices": [
            {"meter_slug": "vm_running", "group_by": {"hardware_profile": "on-demand.a100.1x"}, "unit_price": "0.000525", "unit_price_per_hour": "1.89"},
            {"meter_slug": "vm_running", "group_by": {"hardware_profile": "on-demand.a100.2x"}, "unit_price_per_hour": "3.78"},
            {"meter_slug": "vm_running", "group_by": {"hardware_profile": "spot.h100.1x"}, "unit_price_per_hour": "n/a"},
            {"meter_slug": "storage_gb", "group_by": {"hardware_profile": "on-demand.a100.1x"}, "unit_price_per_hour": "9"},
            {"meter_slug": "vm_running", "group_by": {}, "unit_price_per_hour": "1"}
        ], "count": 5})).expect("pricing");
        let avail: Availability = serde_json::from_value(json!({"available_instance_variants": [
            {"hardware_profile": "h100", "instance_type": "on-demand", "price_per_hour": "2.99", "available_gpus_per_instance": [1, 2, 4, 8]},
            {"hardware_profile": "l40s", "instance_type": "on-demand", "price_per_hour": 1.19}
        ]})).expect("availability");
        let mut p = Prices::default();
        p.add_pricing(&pricing);
        p.add_availability(&avail);
        p
    }

    #[test]
    fn quotes() {
        let p = prices();
        let q = p.quote(Kind::Vm, "a100", 2, false).expect("a100 x2");
        assert_eq!(
            (q.per_hour, q.estimate, q.source),
            (3.78, false, "lyceum-pricing")
        );
        let q = p.quote(Kind::Run, "a100", 1, false).expect("run a100");
        assert_eq!((q.per_hour, q.estimate), (1.89, true));
        let q = p
            .quote(Kind::Vm, "h100", 4, false)
            .expect("h100 x4 from availability");
        assert_eq!(
            (q.per_hour, q.estimate, q.source),
            (2.99 * 4.0, true, "lyceum-availability")
        );
        let q = p
            .quote(Kind::Run, "l40s", 1, false)
            .expect("l40s numeric price");
        assert_eq!(q.per_hour, 1.19);
    }

    #[test]
    fn unreadable_and_missing_prices_are_classified() {
        let p = prices();
        let err = p.quote(Kind::Vm, "h100", 1, true).expect_err("n/a price");
        assert!(err.is_retryable() && err.message().contains("n/a"), "{err}");
        let err = p
            .quote(Kind::Vm, "b200", 1, false)
            .expect_err("unknown profile");
        assert!(err.is_terminal() && err.message().contains("a100"), "{err}");
        assert_eq!(p.profiles(), vec!["a100", "h100", "l40s"]);
    }

    #[test]
    fn cache_expires() {
        let c = PriceCache::new(Duration::ZERO);
        c.store(prices());
        assert!(c.fresh().is_none());
        assert!(c.any().is_some());
        let c = PriceCache::new(Duration::from_secs(600));
        assert!(c.may_fetch());
        c.fetch_failed();
        assert!(!c.may_fetch(), "no refetch right after a failure");
        c.store(prices());
        assert!(c.fresh().is_some());
        assert!(c.may_fetch());
    }
}
