//! The providers the fault harness runs against (the simulated cloud, the RunPod stand-in), each
//! with its fault knobs mapped from [`ProviderFault`] and a view of every machine it ever made.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use runctl::crd::CloudResource;
use runctl::provider::registry::{Credentials, ProviderKey};
use runctl::provider::sim::{SimFault, SimOp};
use runctl::provider::{Machine, Provider, ProviderKind, ProvidersConfig, ResourceState};
use runctl_standins::lyceum::{self as ly, LyceumStandin};
use runctl_standins::runpod::{self as rp, RunPodStandin};

use super::scenario::{Op, ProviderFault};
use crate::support::{TestEnv, fast_sim};

/// Which provider a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// `sim`.
    Sim,
    /// RunPod against its REST v2 stand-in.
    RunPod,
    /// Lyceum AI container runs against its stand-in.
    Lyceum,
}

impl BackendKind {
    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sim => "sim",
            Self::RunPod => "runpod",
            Self::Lyceum => "lyceum",
        }
    }

    /// Whether the backend can hang a call past the client timeout.
    pub fn timeouts(self) -> bool {
        self != Self::Sim
    }
}

/// One machine as the provider's own records know it, ended and deleted ones included.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Provider id.
    pub id: String,
    /// Owner UID from tags or env marker.
    pub owner: Option<String>,
    /// Still billing.
    pub billable: bool,
    /// Winding down.
    pub terminating: bool,
}

/// A running backend plus the API test environment.
pub struct Backend {
    /// Which one.
    pub kind: BackendKind,
    /// API server, client, simulated cloud.
    pub env: TestEnv,
    standin: Option<RunPodStandin>,
    lyceum: Option<LyceumStandin>,
    checker: Arc<dyn Provider>,
}

const RUNPOD_TIMEOUT_MS: u64 = 400;

impl Backend {
    /// Starts the API server and the provider.
    pub async fn start(kind: BackendKind) -> Self {
        match kind {
            BackendKind::Sim => {
                let env = TestEnv::start(fast_sim()).await;
                let checker: Arc<dyn Provider> = Arc::new(runctl::provider::sim::SimProvider::new(
                    env.sim.clone(),
                    "test",
                    "sim-1",
                ));
                Self {
                    kind,
                    env,
                    standin: None,
                    lyceum: None,
                    checker,
                }
            }
            BackendKind::RunPod => {
                let standin = RunPodStandin::start().await;
                let mut providers = ProvidersConfig {
                    sim: fast_sim(),
                    ..ProvidersConfig::default()
                };
                providers.runpod.base_url = standin.url();
                providers.runpod.request_timeout_millis = Some(RUNPOD_TIMEOUT_MS);
                providers.runpod.retry_base_millis = 10;
                providers.runpod.max_rate_limit_wait_millis = 300;
                providers.runpod.list_cache_millis = 100;
                let env = TestEnv::start_with(providers.clone()).await;
                env.secret("runpod", &[("apiKey", &standin.api_key())])
                    .await;
                let registry = env.registry();
                let creds =
                    Credentials::new(BTreeMap::from([("apiKey".to_string(), standin.api_key())]));
                let key = ProviderKey {
                    kind: ProviderKind::Runpod,
                    region: None,
                    credentials: Some("checker".into()),
                };
                let checker = registry
                    .get(&key, Some(&creds))
                    .await
                    .expect("RunPod checker provider");
                Self {
                    kind,
                    env,
                    standin: Some(standin),
                    lyceum: None,
                    checker,
                }
            }
            BackendKind::Lyceum => {
                let standin = LyceumStandin::start().await;
                standin.set_step(Duration::from_millis(50));
                let mut providers = ProvidersConfig {
                    sim: fast_sim(),
                    ..ProvidersConfig::default()
                };
                providers.lyceum.base_url = standin.url();
                providers.lyceum.request_timeout_seconds = 1;
                providers.lyceum.retry_backoff_ms = 10;
                let env = TestEnv::start_with(providers).await;
                env.secret("lyceum", &[("apiKey", standin.api_key())]).await;
                let registry = env.registry();
                let creds = Credentials::new(BTreeMap::from([(
                    "apiKey".to_string(),
                    standin.api_key().to_string(),
                )]));
                let key = ProviderKey {
                    kind: ProviderKind::Lyceum,
                    region: None,
                    credentials: Some("checker".into()),
                };
                let checker = registry
                    .get(&key, Some(&creds))
                    .await
                    .expect("Lyceum checker provider");
                Self {
                    kind,
                    env,
                    standin: None,
                    lyceum: Some(standin),
                    checker,
                }
            }
        }
    }

    /// The manifest of object `name`.
    pub fn manifest(&self, name: &str) -> CloudResource {
        let spec = match self.kind {
            BackendKind::Sim => serde_json::json!({"provider": "sim", "instanceType": "sim.a100"}),
            BackendKind::RunPod => serde_json::json!({
                "provider": "runpod", "gpuType": "NVIDIA L40S", "gpuCount": 1,
                "credentialsSecretRef": {"name": "runpod"},
                "workload": {"image": "ghcr.io/acme/train:1", "command": ["python", "train.py"]}
            }),
            BackendKind::Lyceum => serde_json::json!({
                "provider": "lyceum", "gpuType": "a100", "gpuCount": 1,
                "credentialsSecretRef": {"name": "lyceum"},
                "workload": {"image": "ghcr.io/acme/train:1", "command": ["python", "train.py"]}
            }),
        };
        serde_json::from_value(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec
        }))
        .expect("valid CloudResource")
    }

    /// Queues one provider fault.
    pub fn inject(&self, fault: ProviderFault) {
        if let Some(ly) = &self.lyceum {
            // The Lyceum stand-in's faults hit the next create call.
            ly.push_fault(match fault {
                ProviderFault::LoseCreateResponse => ly::Fault::DropAfterCreate,
                ProviderFault::ErrorAfterCreate => ly::Fault::ServerErrorAfterCreate,
                ProviderFault::ServerError(_) => ly::Fault::ServerError,
                ProviderFault::RateLimitedRetryAfter(_) | ProviderFault::RateLimited(_) => {
                    ly::Fault::RateLimit
                }
                ProviderFault::Capacity => ly::Fault::Capacity,
                ProviderFault::Timeout(_) => ly::Fault::Delay(Duration::from_millis(1500)),
            });
            return;
        }
        match (&self.standin, self.kind) {
            (None, _) => {
                let sim = &self.env.sim;
                let (op, f) = match fault {
                    ProviderFault::LoseCreateResponse | ProviderFault::ErrorAfterCreate => {
                        (SimOp::Create, SimFault::LoseResponse)
                    }
                    ProviderFault::ServerError(op) => (sim_op(op), SimFault::ServerError),
                    ProviderFault::RateLimitedRetryAfter(op) => (
                        sim_op(op),
                        SimFault::RateLimited {
                            retry_after: Some(Duration::from_millis(300)),
                        },
                    ),
                    ProviderFault::RateLimited(op) => {
                        (sim_op(op), SimFault::RateLimited { retry_after: None })
                    }
                    ProviderFault::Capacity => (SimOp::Create, SimFault::Capacity),
                    ProviderFault::Timeout(op) => (sim_op(op), SimFault::LoseResponse),
                };
                sim.fail_next(op, f, 1);
            }
            (Some(standin), _) => {
                let (op, f) = match fault {
                    ProviderFault::LoseCreateResponse => {
                        (rp::Op::Create, rp::Fault::DropAfterCreate)
                    }
                    ProviderFault::ErrorAfterCreate => {
                        (rp::Op::Create, rp::Fault::ErrorAfterCreate(502))
                    }
                    ProviderFault::ServerError(op) => (rp_op(op), rp::Fault::Status(503)),
                    ProviderFault::RateLimitedRetryAfter(op) => (
                        rp_op(op),
                        rp::Fault::RateLimited {
                            retry_after_secs: 1,
                        },
                    ),
                    ProviderFault::RateLimited(op) => (rp_op(op), rp::Fault::Status(429)),
                    ProviderFault::Capacity => (rp::Op::Create, rp::Fault::Capacity),
                    ProviderFault::Timeout(Op::Create) => {
                        (rp::Op::Create, rp::Fault::HangAfterCreate)
                    }
                    ProviderFault::Timeout(op) => (
                        rp_op(op),
                        rp::Fault::Delay(Duration::from_millis(RUNPOD_TIMEOUT_MS * 2)),
                    ),
                };
                standin.push_fault(op, f);
            }
        }
    }

    /// Drops every queued provider fault.
    pub fn clear_faults(&self) {
        self.env.sim.clear_faults();
        // The Lyceum stand-in has no clear knob: a queued create fault (all retryable) is
        // consumed by the final operator's next create.
        if let Some(s) = &self.standin {
            s.clear_faults();
        }
    }

    /// Create calls the provider has seen.
    pub fn create_calls(&self) -> u64 {
        if let Some(ly) = &self.lyceum {
            return u64::from(ly.calls("POST /execution/image/start"));
        }
        match &self.standin {
            None => self.env.sim.stats().calls(SimOp::Create),
            Some(s) => s.calls(rp::Op::Create),
        }
    }

    /// Every machine the provider ever made (ended and deleted ones included).
    pub fn all_machines(&self) -> Vec<Seen> {
        if let Some(ly) = &self.lyceum {
            return ly
                .runs()
                .into_iter()
                .map(|r| Seen {
                    owner: r
                        .metadata
                        .get("runctl.dev/owner-uid")
                        .and_then(|v| v.as_str())
                        .map(str::to_string),
                    billable: r.is_live(),
                    terminating: false,
                    id: r.id,
                })
                .collect();
        }
        match &self.standin {
            None => self
                .env
                .sim
                .machines()
                .into_iter()
                .map(|m| Seen {
                    id: m.id,
                    owner: m.owner_uid,
                    billable: !m.state.is_final(),
                    terminating: m.state == ResourceState::Terminating,
                })
                .collect(),
            Some(s) => {
                let owner = |p: &rp::PodRecord| p.env.get("RUNCTL_OWNER").cloned();
                let mut out: Vec<Seen> = s
                    .pods()
                    .iter()
                    .map(|p| Seen {
                        id: p.id.clone(),
                        owner: owner(p),
                        billable: p.phase.bills(),
                        terminating: false,
                    })
                    .collect();
                out.extend(s.removed().iter().map(|p| Seen {
                    id: p.id.clone(),
                    owner: owner(p),
                    billable: false,
                    terminating: false,
                }));
                out
            }
        }
    }

    /// The provider's normalized view of this installation's machines.
    pub async fn list(&self) -> Result<Vec<Machine>, String> {
        self.checker.list().await.map_err(|e| e.to_string())
    }
}

fn sim_op(op: Op) -> SimOp {
    match op {
        Op::Create => SimOp::Create,
        Op::Observe => SimOp::Observe,
        Op::List => SimOp::List,
        Op::Terminate => SimOp::Terminate,
    }
}

fn rp_op(op: Op) -> rp::Op {
    match op {
        Op::Create => rp::Op::Create,
        Op::Observe => rp::Op::Get,
        Op::List => rp::Op::List,
        Op::Terminate => rp::Op::Delete,
    }
}
