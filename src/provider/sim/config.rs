//! Simulator settings (`providers.sim` in the operator configuration) and the price table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::provider::MachineSpec;

/// Spot machines cost this share of the on-demand price.
pub const SPOT_FACTOR: f64 = 0.4;

/// Simulator settings. Every field has a default, so a partial configuration is valid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SimConfig {
    /// Offer the simulated cloud to TrainingJobs. Only `true` enables it (the demo, the
    /// benchmark and the tests set it): a production operator never places a job on machines
    /// that do no work. A section without it does not enable the simulator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// URL of a simulated cloud served by another process (`http://HOST:PORT`, see
    /// `sim::server`): the operator's sim provider calls it over HTTP instead of keeping the
    /// cloud in its own process, so that the machines outlive an operator restart and several
    /// operator processes (replicas, the scale benchmark) share one cloud. The served cloud runs
    /// on the server's settings; here only `region` and `prices` (the GPU types offered) apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The default simulated region (a provider built without a region uses it).
    pub region: String,
    /// Milliseconds from create until the machine exists: `Starting/Provisioning` until then,
    /// `Starting/Booting` afterwards.
    pub provision_ms: u64,
    /// Milliseconds from create until `Running` (at least `provision_ms`).
    pub boot_ms: u64,
    /// Added latency of every API call in milliseconds (a real sleep, also with a manual clock).
    pub api_latency_ms: u64,
    /// Price per hour (USD, on demand) by machine type: an instance type such as `sim.h100`,
    /// a GPU type such as `h100` (multiplied by the GPU count), or `<gpu> x<count>`.
    pub prices: BTreeMap<String, f64>,
    /// Price per hour of types missing from `prices`.
    pub default_price: f64,
    /// Seed of the simulator's random choices (boot jitter).
    pub seed: u64,
    /// Drive the simulated clock by hand with `SimCloud::advance` instead of real time.
    pub manual_clock: bool,
    /// Milliseconds a terminated machine stays `Terminating` before it is `Terminated`.
    pub terminate_ms: u64,
    /// Milliseconds an ended machine stays listed and observable; then it is forgotten, as EC2
    /// forgets terminated instances.
    pub retain_ms: u64,
    /// Up to this many milliseconds, drawn from the seeded generator, are added to each
    /// machine's provisioning, so that many machines do not all change state at once.
    pub jitter_ms: u64,
    /// Run the reporting wrapper for workloads that ask for reporting (heartbeats and the exit
    /// report to the callback endpoint). Off: machines never report (as if the image had no
    /// `curl`), so a job can be tested for a lost machine.
    pub reporting: bool,
    /// Simulated milliseconds per second of a workload's heartbeat interval (1000: real time;
    /// tests and the benchmark shrink it).
    pub heartbeat_ms_per_second: u64,
    /// Milliseconds between two passes of the wrapper task over all machines; an exit report is
    /// sent up to this long before the machine ends.
    pub report_tick_ms: u64,
    /// Most reports in flight at once.
    pub report_concurrency: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            endpoint: None,
            region: "sim-1".into(),
            provision_ms: 200,
            boot_ms: 1000,
            api_latency_ms: 0,
            prices: default_prices(),
            default_price: 1.0,
            seed: 1,
            manual_clock: false,
            terminate_ms: 500,
            retain_ms: 3_600_000,
            jitter_ms: 0,
            reporting: true,
            heartbeat_ms_per_second: 1000,
            report_tick_ms: 100,
            report_concurrency: 64,
        }
    }
}

/// The built-in price table (USD per hour, on demand).
pub fn default_prices() -> BTreeMap<String, f64> {
    [
        ("sim.cpu", 0.1),
        ("sim.gpu-small", 0.5),
        ("sim.a100", 2.0),
        ("sim.h100", 3.5),
        ("sim.8xh100", 28.0),
        ("a100", 2.0),
        ("h100", 3.5),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl SimConfig {
    /// On-demand price per hour of the machine `spec` describes: the machine type's entry,
    /// else the GPU type's entry times the GPU count, else `default_price`.
    pub fn on_demand_price(&self, spec: &MachineSpec) -> f64 {
        if let Some(p) = self.prices.get(&spec.machine_type()) {
            return *p;
        }
        if spec.instance_type.is_none()
            && let Some(p) = spec.gpu_type.as_ref().and_then(|g| self.prices.get(g))
        {
            return p * f64::from(spec.gpu_count.max(1));
        }
        self.default_price
    }

    /// Price per hour the machine is rented at: on demand, or [`SPOT_FACTOR`] of it for spot.
    pub fn price(&self, spec: &MachineSpec) -> f64 {
        let on_demand = self.on_demand_price(spec);
        if spec.spot {
            on_demand * SPOT_FACTOR
        } else {
            on_demand
        }
    }

    /// Milliseconds from create until `Running`.
    pub fn running_ms(&self) -> u64 {
        self.boot_ms.max(self.provision_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(instance: Option<&str>, gpu: Option<&str>, count: u32, spot: bool) -> MachineSpec {
        MachineSpec {
            instance_type: instance.map(str::to_string),
            gpu_type: gpu.map(str::to_string),
            gpu_count: count,
            spot,
            ..MachineSpec::default()
        }
    }

    #[test]
    fn prices_by_type_gpu_and_default() {
        let mut cfg = SimConfig::default();
        cfg.prices.insert("h100 x8".into(), 25.0);
        let cases = [
            (spec(Some("sim.h100"), None, 0, false), 3.5),
            (spec(Some("sim.h100"), None, 0, true), 3.5 * SPOT_FACTOR),
            (spec(Some("sim.gpu-small"), Some("h100"), 4, false), 0.5),
            (spec(None, Some("a100"), 1, false), 2.0),
            (spec(None, Some("a100"), 4, false), 8.0),
            (spec(None, Some("a100"), 0, false), 2.0),
            (spec(None, Some("h100"), 8, false), 25.0),
            (spec(Some("unknown"), None, 0, false), 1.0),
            (spec(None, None, 0, true), SPOT_FACTOR),
        ];
        for (s, want) in cases {
            assert!(
                (cfg.price(&s) - want).abs() < 1e-9,
                "{s:?}: {} != {want}",
                cfg.price(&s)
            );
        }
    }

    #[test]
    fn partial_config_keeps_defaults() {
        let cfg: SimConfig =
            serde_json::from_str(r#"{"manualClock": true, "terminateMs": 7}"#).expect("parse");
        assert!(cfg.manual_clock);
        assert_eq!(cfg.terminate_ms, 7);
        assert_eq!(cfg.boot_ms, SimConfig::default().boot_ms);
        assert_eq!(cfg.prices["sim.a100"], 2.0);
    }

    #[test]
    fn running_is_never_before_provisioned() {
        let cfg = SimConfig {
            provision_ms: 300,
            boot_ms: 100,
            ..SimConfig::default()
        };
        assert_eq!(cfg.running_ms(), 300);
    }
}
