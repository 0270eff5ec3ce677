//! The JSON a served simulated cloud speaks over HTTP between its server ([`super::server`]) and
//! its clients ([`super::remote`], in the operators' processes): private wire forms of the
//! provider types, and the pure conversions both ways. Provider errors keep their class, message
//! and suggested wait.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::crd::cloud_resource::{AwsOptions, KubernetesOptions, LyceumOptions, RunPodOptions};
use crate::provider::sim::SimMachine;
use crate::provider::sim::provider::PRICE_SOURCE;
use crate::provider::workload::Reporting;
use crate::provider::{
    Machine, MachineSpec, PriceQuote, ProviderError, ResourceKey, ResourceState, Termination,
    Workload, reasons,
};

/// A provider call's answer: the value or the classified error.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Answer<T> {
    /// The call succeeded.
    Ok(T),
    /// The call failed.
    Err(WireError),
}

/// A [`ProviderError`] on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireError {
    /// The variant, as [`ProviderError::reason`] names it.
    pub reason: String,
    /// The provider's message.
    pub message: String,
    /// Suggested wait in milliseconds.
    pub retry_after_ms: Option<u64>,
}

impl From<&ProviderError> for WireError {
    fn from(e: &ProviderError) -> Self {
        WireError {
            reason: e.reason().to_string(),
            message: e.message().to_string(),
            retry_after_ms: e
                .retry_after()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

impl From<WireError> for ProviderError {
    fn from(w: WireError) -> Self {
        ProviderError::from_reason(
            &w.reason,
            w.message,
            w.retry_after_ms.map(Duration::from_millis),
        )
    }
}

/// Which provider instance of the cloud a call is for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    /// Installation id.
    pub installation: String,
    /// Region.
    pub region: String,
}

/// A [`ResourceKey`] on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireKey {
    pub installation: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub attempt: u32,
}

impl From<&ResourceKey> for WireKey {
    fn from(k: &ResourceKey) -> Self {
        WireKey {
            installation: k.installation.clone(),
            namespace: k.namespace.clone(),
            name: k.name.clone(),
            uid: k.uid.clone(),
            attempt: k.attempt,
        }
    }
}

impl From<WireKey> for ResourceKey {
    fn from(k: WireKey) -> Self {
        ResourceKey {
            installation: k.installation,
            namespace: k.namespace,
            name: k.name,
            uid: k.uid,
            attempt: k.attempt,
        }
    }
}

/// A workload's reporting settings on the wire (the token travels to the sim, as to a machine).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireReporting {
    pub callback_url: String,
    pub token: String,
    pub heartbeat_interval_seconds: u32,
    pub self_terminate_after_seconds: u32,
    pub report_grace_seconds: u32,
}

/// A [`Workload`] on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireWorkload {
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub reporting: Option<WireReporting>,
}

impl From<&Workload> for WireWorkload {
    fn from(w: &Workload) -> Self {
        WireWorkload {
            image: w.image.clone(),
            command: w.command.clone(),
            args: w.args.clone(),
            env: w.env.clone(),
            reporting: w.reporting.as_ref().map(|r| WireReporting {
                callback_url: r.callback_url.clone(),
                token: r.token.clone(),
                heartbeat_interval_seconds: r.heartbeat_interval_seconds,
                self_terminate_after_seconds: r.self_terminate_after_seconds,
                report_grace_seconds: r.report_grace_seconds,
            }),
        }
    }
}

impl From<WireWorkload> for Workload {
    fn from(w: WireWorkload) -> Self {
        Workload {
            image: w.image,
            command: w.command,
            args: w.args,
            env: w.env,
            reporting: w.reporting.map(|r| Reporting {
                callback_url: r.callback_url,
                token: r.token,
                heartbeat_interval_seconds: r.heartbeat_interval_seconds,
                self_terminate_after_seconds: r.self_terminate_after_seconds,
                report_grace_seconds: r.report_grace_seconds,
            }),
        }
    }
}

/// A [`MachineSpec`] on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireSpec {
    pub instance_type: Option<String>,
    pub gpu_type: Option<String>,
    pub gpu_count: u32,
    pub region: Option<String>,
    pub spot: bool,
    pub max_price_per_hour: Option<f64>,
    pub workload: Option<WireWorkload>,
    pub tags: BTreeMap<String, String>,
    pub max_lifetime_seconds: Option<i64>,
    pub aws: AwsOptions,
    pub runpod: RunPodOptions,
    pub lyceum: LyceumOptions,
    #[serde(default)]
    pub kubernetes: KubernetesOptions,
}

impl From<&MachineSpec> for WireSpec {
    fn from(s: &MachineSpec) -> Self {
        WireSpec {
            instance_type: s.instance_type.clone(),
            gpu_type: s.gpu_type.clone(),
            gpu_count: s.gpu_count,
            region: s.region.clone(),
            spot: s.spot,
            max_price_per_hour: s.max_price_per_hour,
            workload: s.workload.as_ref().map(WireWorkload::from),
            tags: s.tags.clone(),
            max_lifetime_seconds: s.max_lifetime_seconds,
            aws: s.aws.clone(),
            runpod: s.runpod.clone(),
            lyceum: s.lyceum.clone(),
            kubernetes: s.kubernetes.clone(),
        }
    }
}

impl From<WireSpec> for MachineSpec {
    fn from(s: WireSpec) -> Self {
        MachineSpec {
            instance_type: s.instance_type,
            gpu_type: s.gpu_type,
            gpu_count: s.gpu_count,
            region: s.region,
            spot: s.spot,
            max_price_per_hour: s.max_price_per_hour,
            workload: s.workload.map(Workload::from),
            tags: s.tags,
            max_lifetime_seconds: s.max_lifetime_seconds,
            aws: s.aws,
            runpod: s.runpod,
            lyceum: s.lyceum,
            kubernetes: s.kubernetes,
        }
    }
}

/// Every reason a machine may carry, to turn a wire string back into the static one.
const REASONS: [&str; 16] = [
    reasons::PROVISIONING,
    reasons::BOOTING,
    reasons::RUNNING,
    reasons::STOPPING,
    reasons::STOPPED,
    reasons::TERMINATING,
    reasons::TERMINATED,
    reasons::COMPLETED,
    reasons::WORKLOAD_FAILED,
    reasons::SPOT_INTERRUPTED,
    reasons::CAPACITY_LOST,
    reasons::PROVIDER_FAILURE,
    reasons::DISAPPEARED,
    reasons::TIMED_OUT,
    reasons::UNRECOGNIZED,
    reasons::UNSCHEDULABLE,
];

/// The static reason of a wire string; [`reasons::UNRECOGNIZED`] for one runctl does not know.
pub fn reason_of(s: &str) -> &'static str {
    REASONS
        .iter()
        .find(|r| **r == s)
        .copied()
        .unwrap_or(reasons::UNRECOGNIZED)
}

/// A [`Machine`] on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireMachine {
    pub id: String,
    pub name: Option<String>,
    pub owner_uid: Option<String>,
    pub attempt: Option<u32>,
    pub state: ResourceState,
    pub reason: String,
    pub message: Option<String>,
    pub machine_type: Option<String>,
    pub public_address: Option<String>,
    pub private_address: Option<String>,
    pub launch_time: Option<Timestamp>,
    pub price_per_hour: Option<f64>,
    pub billed: Option<f64>,
    pub exit_code: Option<i32>,
    pub spot: bool,
}

impl From<&Machine> for WireMachine {
    fn from(m: &Machine) -> Self {
        WireMachine {
            id: m.id.clone(),
            name: m.name.clone(),
            owner_uid: m.owner_uid.clone(),
            attempt: m.attempt,
            state: m.state,
            reason: m.reason.to_string(),
            message: m.message.clone(),
            machine_type: m.machine_type.clone(),
            public_address: m.public_address.clone(),
            private_address: m.private_address.clone(),
            launch_time: m.launch_time,
            price_per_hour: m.price_per_hour,
            billed: m.billed,
            exit_code: m.exit_code,
            spot: m.spot,
        }
    }
}

impl From<WireMachine> for Machine {
    fn from(m: WireMachine) -> Self {
        Machine {
            id: m.id,
            name: m.name,
            owner_uid: m.owner_uid,
            attempt: m.attempt,
            state: m.state,
            reason: reason_of(&m.reason),
            message: m.message,
            machine_type: m.machine_type,
            public_address: m.public_address,
            private_address: m.private_address,
            launch_time: m.launch_time,
            price_per_hour: m.price_per_hour,
            price_source: None,
            billed: m.billed,
            exit_code: m.exit_code,
            spot: m.spot,
        }
    }
}

/// A [`Termination`] on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WireTermination {
    InProgress,
    Gone,
}

impl From<Termination> for WireTermination {
    fn from(t: Termination) -> Self {
        match t {
            Termination::InProgress => WireTermination::InProgress,
            Termination::Gone => WireTermination::Gone,
        }
    }
}

impl From<WireTermination> for Termination {
    fn from(t: WireTermination) -> Self {
        match t {
            WireTermination::InProgress => Termination::InProgress,
            WireTermination::Gone => Termination::Gone,
        }
    }
}

/// A [`PriceQuote`] on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireQuote {
    pub per_hour: f64,
    pub estimate: bool,
    pub source: String,
}

impl From<&PriceQuote> for WireQuote {
    fn from(q: &PriceQuote) -> Self {
        WireQuote {
            per_hour: q.per_hour,
            estimate: q.estimate,
            source: q.source.to_string(),
        }
    }
}

impl From<WireQuote> for PriceQuote {
    fn from(q: WireQuote) -> Self {
        PriceQuote {
            per_hour: q.per_hour,
            estimate: q.estimate,
            // The sim quotes from one table only.
            source: PRICE_SOURCE,
        }
    }
}

/// `POST /provider/create`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequest {
    pub scope: Scope,
    pub key: WireKey,
    pub spec: WireSpec,
}

/// `POST /provider/observe`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObserveRequest {
    pub scope: Scope,
    pub key: WireKey,
    pub known_id: Option<String>,
}

/// `POST /provider/terminate`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminateRequest {
    pub scope: Scope,
    pub id: String,
}

/// `POST /provider/price`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceRequest {
    pub scope: Scope,
    pub spec: WireSpec,
}

/// One state of a machine's timeline with the wall-clock time it began.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireStatus {
    pub state: ResourceState,
    pub since: Timestamp,
}

/// What the driver reads of one simulated machine (`GET /sim/machines`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireSimMachine {
    pub id: String,
    pub name: String,
    pub owner_uid: Option<String>,
    pub attempt: Option<u32>,
    pub tags: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub state: ResourceState,
    pub reason: String,
    pub exit_code: Option<i32>,
    pub timeline: Vec<WireStatus>,
}

impl WireSimMachine {
    /// The wire form of a snapshot, with `timestamp` turning simulated instants into
    /// wall-clock times.
    pub fn of(m: &SimMachine, timestamp: impl Fn(u64) -> Timestamp) -> Self {
        WireSimMachine {
            id: m.id.clone(),
            name: m.name.clone(),
            owner_uid: m.owner_uid.clone(),
            attempt: m.attempt,
            tags: m.tags.clone(),
            created_at: m.created_at,
            state: m.state,
            reason: m.reason.to_string(),
            exit_code: m.exit_code,
            timeline: m
                .timeline
                .iter()
                .map(|s| WireStatus {
                    state: s.state,
                    since: timestamp(s.since),
                })
                .collect(),
        }
    }
}

/// Counters of the cloud (`GET /sim/summary`): cheap enough to poll.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Calls per operation (`Create`, `Observe`, `List`, `Terminate`, `Price`).
    pub calls: BTreeMap<String, u64>,
    /// Create calls that made a machine.
    pub machines_created: u64,
    /// Machines that still bill.
    pub live_total: usize,
    /// Known machines by state now.
    pub by_state: BTreeMap<ResourceState, usize>,
    /// Exit reports the simulated wrapper gave up on (must be 0).
    pub exit_reports_given_up: u64,
}

impl Summary {
    /// Calls of one operation.
    pub fn calls(&self, op: crate::provider::sim::SimOp) -> u64 {
        self.calls.get(&format!("{op:?}")).copied().unwrap_or(0)
    }

    /// Machines now in `state`.
    pub fn in_state(&self, state: ResourceState) -> usize {
        self.by_state.get(&state).copied().unwrap_or(0)
    }
}

/// `POST /sim/exit-all`: every running workload exits with `code`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitAll {
    pub code: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_class_message_and_wait() {
        let cases = vec![
            ProviderError::retryable("net"),
            ProviderError::RateLimited {
                message: "slow down".into(),
                retry_after: Some(Duration::from_millis(1500)),
            },
            ProviderError::Capacity {
                message: "none".into(),
            },
            ProviderError::Quota {
                message: "q".into(),
            },
            ProviderError::Authentication {
                message: "a".into(),
            },
            ProviderError::Billing {
                message: "b".into(),
            },
            ProviderError::InvalidSpec {
                message: "i".into(),
            },
            ProviderError::NotFound {
                message: "n".into(),
            },
        ];
        for e in cases {
            let json = serde_json::to_string(&WireError::from(&e)).expect("serialize");
            let back: ProviderError = serde_json::from_str::<WireError>(&json)
                .expect("deserialize")
                .into();
            assert_eq!(back.class(), e.class(), "{e}");
            assert_eq!(back.reason(), e.reason());
            assert_eq!(back.message(), e.message());
            assert_eq!(back.retry_after(), e.retry_after());
        }
    }

    #[test]
    fn reasons_map_back_to_the_static_ones() {
        for r in REASONS {
            assert_eq!(reason_of(r), r);
        }
        assert_eq!(reason_of("Melted"), reasons::UNRECOGNIZED);
    }

    #[test]
    fn spec_and_machine_round_trip() {
        let spec = MachineSpec {
            instance_type: Some("sim.a100".into()),
            gpu_count: 1,
            region: Some("sim-1".into()),
            workload: Some(Workload {
                image: "img".into(),
                env: BTreeMap::from([("K".into(), "v".into())]),
                reporting: Some(Reporting {
                    callback_url: "http://127.0.0.1:1".into(),
                    token: "t".into(),
                    heartbeat_interval_seconds: 30,
                    self_terminate_after_seconds: 600,
                    report_grace_seconds: 90,
                }),
                ..Workload::default()
            }),
            ..MachineSpec::default()
        };
        let json = serde_json::to_string(&WireSpec::from(&spec)).expect("serialize");
        let back: MachineSpec = serde_json::from_str::<WireSpec>(&json)
            .expect("deserialize")
            .into();
        assert_eq!(back, spec);

        let mut m = Machine::new("sim-1", ResourceState::Terminated, reasons::COMPLETED);
        m.exit_code = Some(0);
        m.launch_time = Some(Timestamp::UNIX_EPOCH);
        let json = serde_json::to_string(&WireMachine::from(&m)).expect("serialize");
        let back: Machine = serde_json::from_str::<WireMachine>(&json)
            .expect("deserialize")
            .into();
        assert_eq!(back, m);
    }
}
