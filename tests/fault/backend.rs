//! The providers the fault harness runs against (the simulated cloud, the RunPod and Lyceum
//! stand-ins, moto's EC2 behind runctl's EC2 proxy), each with its fault knobs mapped from
//! [`ProviderFault`] and a view of every machine it ever made.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use runctl::crd::CloudResource;
use runctl::provider::identity::TAG_OWNER_UID;
use runctl::provider::registry::{Credentials, ProviderKey};
use runctl::provider::sim::{SimFault, SimOp};
use runctl::provider::{Machine, Provider, ProviderKind, ProvidersConfig, ResourceState};
use runctl_standins::aws::{Ec2Fault, Ec2Proxy, MotoServer};
use runctl_standins::lyceum::{self as ly, LyceumStandin};
use runctl_standins::runpod::{self as rp, RunPodStandin};

use super::scenario::{Op, ProviderFault};
use crate::support::{Backend as ApiBackend, TestEnv, fast_sim};

/// Which provider a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// `sim`.
    Sim,
    /// RunPod against its REST v2 stand-in.
    RunPod,
    /// Lyceum AI container runs against its stand-in.
    Lyceum,
    /// AWS EC2 against moto behind the EC2 fault proxy.
    Aws,
}

impl BackendKind {
    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sim => "sim",
            Self::RunPod => "runpod",
            Self::Lyceum => "lyceum",
            Self::Aws => "aws",
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
    aws: Option<AwsParts>,
    checker: Arc<dyn Provider>,
}

const RUNPOD_TIMEOUT_MS: u64 = 400;
/// How long the EC2 proxy shows a new instance as `pending`.
const AWS_PENDING_MS: u64 = 300;
/// The region every AWS run uses.
const AWS_REGION: &str = "us-east-1";

/// The EC2 side of an AWS backend: the run's own proxy and a client that reads moto directly
/// (past the proxy and its faults).
struct AwsParts {
    proxy: Ec2Proxy,
    direct: aws_sdk_ec2::Client,
}

/// What outlives one run: moto, which takes a second or two to start, is started once per
/// test function and reset before each run. Runs on a fixture are therefore sequential.
pub struct Fixture {
    /// Which provider.
    pub kind: BackendKind,
    moto: Option<(MotoServer, String)>,
}

impl Fixture {
    /// Starts what the runs of `kind` share (moto and its default AMI for AWS, nothing else
    /// for the others).
    pub async fn start(kind: BackendKind) -> Self {
        let moto = match kind {
            BackendKind::Aws => {
                let moto = MotoServer::start().await.unwrap_or_else(|e| panic!("{e}"));
                let ami = amazon_ami(&direct_client(&moto.url())).await;
                Some((moto, ami))
            }
            _ => None,
        };
        Self { kind, moto }
    }

    /// Whether runs may share this fixture at the same time (not when they share moto, which
    /// is reset between runs).
    pub fn parallel_runs(&self) -> bool {
        self.moto.is_none()
    }

    /// A fresh backend for one run (moto reset first).
    pub async fn backend(&self) -> Backend {
        match &self.moto {
            None => Backend::start(self.kind).await,
            Some((moto, ami)) => {
                moto.reset().await.expect("reset moto");
                Backend::start_aws(moto, ami).await
            }
        }
    }
}

fn direct_client(url: &str) -> aws_sdk_ec2::Client {
    use aws_sdk_ec2::config::{BehaviorVersion, Credentials as AwsCredentials, Region};
    aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(AWS_REGION))
            .endpoint_url(url)
            .credentials_provider(AwsCredentials::new(
                "testing", "testing", None, None, "test",
            ))
            .build(),
    )
}

/// The first of moto's Amazon-owned images.
async fn amazon_ami(client: &aws_sdk_ec2::Client) -> String {
    let images = client
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .expect("moto images");
    images
        .images()
        .first()
        .and_then(|i| i.image_id())
        .expect("an AMI")
        .to_string()
}

impl Backend {
    /// Starts an AWS backend: a new EC2 proxy in front of `moto`, the API server, and the AWS
    /// provider pointed at the proxy.
    pub async fn start_aws(moto: &MotoServer, ami: &str) -> Self {
        let proxy = Ec2Proxy::start(&moto.url()).await.expect("start proxy");
        proxy.hold_pending(Duration::from_millis(AWS_PENDING_MS));
        let mut providers = ProvidersConfig {
            sim: fast_sim(),
            ..ProvidersConfig::default()
        };
        providers.aws.endpoint_url = Some(proxy.url());
        providers.aws.default_ami_id = Some(ami.to_string());
        providers.aws.max_attempts = 1;
        // On-demand prices from the embedded table: these tests inject EC2's faults, and no
        // call may leave the machine for AWS's Price List API (tests/provider_aws_prices.rs
        // covers it against its stand-in).
        providers.aws.pricing.enabled = false;
        let env = TestEnv::start_on(ApiBackend::InProcess, providers).await;
        let (key_id, secret) = ("AKIATESTING", "testing-secret");
        env.secret(
            "aws",
            &[("accessKeyId", key_id), ("secretAccessKey", secret)],
        )
        .await;
        let creds = Credentials::new(BTreeMap::from([
            ("accessKeyId".to_string(), key_id.to_string()),
            ("secretAccessKey".to_string(), secret.to_string()),
        ]));
        let key = ProviderKey {
            kind: ProviderKind::Aws,
            region: Some(AWS_REGION.into()),
            credentials: Some("checker".into()),
        };
        let checker = env
            .registry()
            .get(&key, Some(&creds))
            .await
            .expect("AWS checker provider");
        Self {
            kind: BackendKind::Aws,
            env,
            standin: None,
            lyceum: None,
            aws: Some(AwsParts {
                proxy,
                direct: direct_client(&moto.url()),
            }),
            checker,
        }
    }

    /// Starts the API server and the provider (AWS needs a [`Fixture`]).
    pub async fn start(kind: BackendKind) -> Self {
        match kind {
            BackendKind::Aws => panic!("AWS backends are made by a Fixture (shared moto)"),
            BackendKind::Sim => {
                let env = TestEnv::start_on(
                    ApiBackend::InProcess,
                    ProvidersConfig {
                        sim: fast_sim(),
                        ..ProvidersConfig::default()
                    },
                )
                .await;
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
                    aws: None,
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
                let env = TestEnv::start_on(ApiBackend::InProcess, providers.clone()).await;
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
                    aws: None,
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
                let env = TestEnv::start_on(ApiBackend::InProcess, providers).await;
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
                    aws: None,
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
            BackendKind::Aws => serde_json::json!({
                "provider": "aws", "instanceType": "g5.xlarge", "region": AWS_REGION,
                "credentialsSecretRef": {"name": "aws"},
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
        if let Some(aws) = &self.aws {
            // The proxy has no "act, then answer 5xx": a create whose answer never arrives is
            // the same puzzle for the operator, so both map to a lost response. A hang past
            // the client timeout is a lost response too.
            let proxy = &aws.proxy;
            match fault {
                ProviderFault::LoseCreateResponse | ProviderFault::ErrorAfterCreate => {
                    proxy.lose_next_response("RunInstances")
                }
                ProviderFault::ServerError(op) => {
                    proxy.fail_next(ec2_action(op), Ec2Fault::InternalError)
                }
                ProviderFault::RateLimitedRetryAfter(op) | ProviderFault::RateLimited(op) => {
                    proxy.fail_next(ec2_action(op), Ec2Fault::RequestLimitExceeded)
                }
                ProviderFault::Capacity => {
                    proxy.fail_next("RunInstances", Ec2Fault::InsufficientInstanceCapacity)
                }
                ProviderFault::Timeout(op) => proxy.lose_next_response(ec2_action(op)),
            }
            return;
        }
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
        if let Some(aws) = &self.aws {
            return aws.proxy.forwarded("RunInstances").len() as u64;
        }
        if let Some(ly) = &self.lyceum {
            return u64::from(ly.calls("POST /execution/image/start"));
        }
        match &self.standin {
            None => self.env.sim.stats().calls(SimOp::Create),
            Some(s) => s.calls(rp::Op::Create),
        }
    }

    /// Every machine the provider ever made (ended and deleted ones included).
    pub async fn all_machines(&self) -> Vec<Seen> {
        if let Some(aws) = &self.aws {
            return ec2_machines(&aws.direct).await;
        }
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

fn ec2_action(op: Op) -> &'static str {
    match op {
        Op::Create => "RunInstances",
        Op::Observe | Op::List => "DescribeInstances",
        Op::Terminate => "TerminateInstances",
    }
}

/// Every instance moto knows, read past the proxy (no faults, no pending hold). A failed read
/// (moto busy) counts as an empty sample; the final checks retry until they converge.
async fn ec2_machines(client: &aws_sdk_ec2::Client) -> Vec<Seen> {
    use aws_sdk_ec2::types::InstanceStateName as S;
    let Ok(out) = client.describe_instances().send().await else {
        return Vec::new();
    };
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            let state = i.state().and_then(|s| s.name()).cloned();
            Seen {
                id: i.instance_id().unwrap_or_default().to_string(),
                owner: i
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some(TAG_OWNER_UID))
                    .and_then(|t| t.value())
                    .map(str::to_string),
                billable: matches!(
                    state,
                    Some(S::Pending | S::Running | S::ShuttingDown | S::Stopping)
                ),
                terminating: matches!(state, Some(S::ShuttingDown | S::Stopping)),
            }
        })
        .collect()
}

fn rp_op(op: Op) -> rp::Op {
    match op {
        Op::Create => rp::Op::Create,
        Op::Observe => rp::Op::Get,
        Op::List => rp::Op::List,
        Op::Terminate => rp::Op::Delete,
    }
}
