//! Test bed for controller tests: an API server with runctl's CRDs installed, a simulated cloud,
//! and the real operator code started against them over HTTP.
//!
//! `RUNCTL_TEST_BACKEND` picks the API server: `inprocess` (the default) is runctl's in-process
//! API test server, one per test; `real` is a real etcd + kube-apiserver + kube-controller-manager
//! (crates/envtest), one per test binary, with a namespace per test and the controllers watching
//! only that namespace. `scripts/test.sh` runs the controller scenarios on both.
#![allow(dead_code)]

pub mod builders;
pub mod jobs;
#[cfg(feature = "aws")]
pub mod moto;
pub mod snapshot;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, PostParams};
use runctl::controller::backoff::BackoffConfig;
use runctl::controller::{Context, ControllerConfig};
use runctl::metrics::Metrics;
use runctl::provider::sim::{SimCloud, SimConfig};
use runctl::provider::{ProviderRegistry, ProvidersConfig};
use runctl_apiserver::ApiServer;
use runctl_envtest::ControlPlane;
use tokio_util::sync::CancellationToken;

/// The environment variable that selects the API server backend.
pub const BACKEND_ENV: &str = "RUNCTL_TEST_BACKEND";

/// Which API server the tests talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// runctl's in-process API test server (crates/apiserver).
    InProcess,
    /// A real etcd + kube-apiserver + kube-controller-manager (crates/envtest).
    Real,
}

/// The backend `RUNCTL_TEST_BACKEND` names (`inprocess` when unset).
pub fn backend() -> Backend {
    match std::env::var(BACKEND_ENV).as_deref() {
        Ok("real") => Backend::Real,
        Ok("inprocess") | Ok("") | Err(_) => Backend::InProcess,
        Ok(other) => panic!("{BACKEND_ENV}={other:?}: expected `inprocess` or `real`"),
    }
}

/// The API server, a client, the namespace the test works in, and the simulated cloud.
pub struct TestEnv {
    /// The in-process API test server, when that is the backend.
    pub server: Option<ApiServer>,
    /// The real control plane, when that is the backend.
    pub plane: Option<&'static ControlPlane>,
    pub client: Client,
    /// The test's namespace: `default` in-process, a fresh namespace on the real control plane.
    pub ns: String,
    pub sim: Arc<SimCloud>,
    pub providers: ProvidersConfig,
}

/// Fast simulator timings for tests.
pub fn fast_sim() -> SimConfig {
    // The sim's reporting wrapper is off: these tests play the workload's side themselves.
    SimConfig {
        provision_ms: 50,
        boot_ms: 300,
        reporting: false,
        ..SimConfig::default()
    }
}

/// Controller settings with short intervals for tests.
pub fn test_controller_config(instance: &str) -> ControllerConfig {
    ControllerConfig {
        installation: "test".into(),
        poll_interval: Duration::from_millis(500),
        transition_poll_interval: Duration::from_millis(200),
        cost_refresh_interval: Duration::from_secs(1),
        resync_interval: Duration::from_secs(1),
        backoff: BackoffConfig {
            base: Duration::from_millis(200),
            max: Duration::from_secs(2),
        },
        account_retry: Default::default(),
        concurrency: 8,
        watch_namespace: None,
        machine_classes: true,
        shard: Default::default(),
        instance: instance.into(),
    }
}

impl TestEnv {
    /// Starts the API server, installs the CRDs and creates a simulated cloud.
    pub async fn start(sim: SimConfig) -> Self {
        Self::start_with(ProvidersConfig {
            sim,
            ..ProvidersConfig::default()
        })
        .await
    }

    /// Like [`start`](Self::start) with a full provider configuration (real providers pointed
    /// at their stand-ins).
    pub async fn start_with(providers: ProvidersConfig) -> Self {
        Self::start_on(backend(), providers).await
    }

    /// Like [`start_with`](Self::start_with) on the given backend, whatever
    /// `RUNCTL_TEST_BACKEND` says (tests that only make sense on one of them).
    ///
    /// Every provider whose `enabled` the test left unset is enabled, the simulated cloud
    /// included (the tests point the clouds at stand-ins), but the cluster's own GPUs
    /// (`kubernetes`), which a test enables itself; a test of disabled providers sets
    /// `enabled: Some(false)`.
    pub async fn start_on(backend: Backend, mut providers: ProvidersConfig) -> Self {
        // The cluster's own GPUs are no stand-in cloud: only the tests of that provider enable
        // it.
        providers.kubernetes.enabled.get_or_insert(false);
        providers.enable_unset();
        let sim = Arc::new(SimCloud::new(providers.sim.clone()));
        match backend {
            Backend::InProcess => {
                let server = ApiServer::start().await.expect("start API test server");
                let client = server.client();
                install_crds(&client).await;
                Self {
                    server: Some(server),
                    plane: None,
                    client,
                    ns: "default".into(),
                    sim,
                    providers,
                }
            }
            Backend::Real => {
                let plane = runctl_envtest::shared().await;
                let client = plane.client().await.expect("admin client");
                ensure_crds_on(plane).await;
                let ns = plane
                    .create_namespace("test")
                    .await
                    .expect("create the test's namespace");
                Self {
                    server: None,
                    plane: Some(plane),
                    client,
                    ns,
                    sim,
                    providers,
                }
            }
        }
    }

    /// The in-process API test server; panics on the real control plane (for tests of the
    /// test server's fault injection and request counts, which only it has).
    pub fn server(&self) -> &ApiServer {
        self.server.as_ref().expect(
            "this test needs the in-process API test server (RUNCTL_TEST_BACKEND=inprocess)",
        )
    }

    /// Whether the backend is the real control plane.
    pub fn is_real(&self) -> bool {
        self.plane.is_some()
    }

    /// An `Api` for a namespaced kind in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The controller settings a test asked for, scoped to the test's namespace on the real
    /// control plane (where other tests' objects share the cluster).
    pub fn scoped(&self, mut config: ControllerConfig) -> ControllerConfig {
        if self.is_real() {
            config.watch_namespace = Some(self.ns.clone());
        }
        config
    }

    /// Creates a Secret in the test's namespace with string data.
    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        use k8s_openapi::api::core::v1::Secret;
        let api: Api<Secret> = self.api();
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            k8s_openapi::ByteString(v.as_bytes().to_vec()),
                        )
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        api.create(&PostParams::default(), &secret)
            .await
            .expect("create Secret");
    }

    /// Creates Secret `name` with `data` in the test's namespace and makes it the operator-wide
    /// default credentials of the RunPod or Lyceum provider (what TrainingJobs' machines use);
    /// controllers started afterwards see it.
    pub async fn default_credentials(
        &mut self,
        kind: runctl::crd::ProviderKind,
        name: &str,
        data: &[(&str, &str)],
    ) {
        use runctl::crd::ProviderKind;
        use runctl::provider::registry::NamespacedSecretRef;
        self.secret(name, data).await;
        let secret = Some(NamespacedSecretRef {
            namespace: self.ns.clone(),
            name: name.into(),
        });
        match kind {
            ProviderKind::Runpod => self.providers.runpod.credentials_secret = secret,
            ProviderKind::Lyceum => self.providers.lyceum.credentials_secret = secret,
            other => panic!("no default credentials Secret for {other} in the test bed"),
        }
    }

    /// A provider registry bound to this environment's simulated cloud.
    pub fn registry(&self) -> Arc<ProviderRegistry> {
        Arc::new(
            ProviderRegistry::with_sim("test", self.providers.clone(), self.sim.clone())
                .with_client(self.client.clone()),
        )
    }

    /// Starts the CloudResource controller (the same code `runctl run` runs).
    pub fn start_controller(&self, config: ControllerConfig) -> Running {
        self.start_controller_as(self.client.clone(), config)
    }

    /// Like [`start_controller`](Self::start_controller), with the controller making every API
    /// call through `client` (e.g. a ServiceAccount's, whose RBAC the real API server enforces).
    pub fn start_controller_as(&self, client: Client, config: ControllerConfig) -> Running {
        let ctx = Arc::new(Context::new(
            client,
            self.registry(),
            Arc::new(Metrics::new()),
            self.scoped(config),
        ));
        let token = CancellationToken::new();
        let stop = token.clone();
        let handle = tokio::spawn(runctl::controller::cloud_resource::run(
            ctx.clone(),
            async move { stop.cancelled().await },
        ));
        Running { token, handle, ctx }
    }
}

impl TestEnv {
    /// Starts the MachineClass controller (checks classes, writes their `Ready` condition).
    pub fn start_class_controller(&self, config: ControllerConfig) -> Running {
        let ctx = Arc::new(Context::new(
            self.client.clone(),
            self.registry(),
            Arc::new(Metrics::new()),
            self.scoped(config),
        ));
        let token = CancellationToken::new();
        let stop = token.clone();
        let handle = tokio::spawn(runctl::controller::machine_class::run(
            ctx.clone(),
            async move { stop.cancelled().await },
        ));
        Running { token, handle, ctx }
    }
}

/// A running controller.
pub struct Running {
    pub token: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
    pub ctx: Arc<Context>,
}

impl Running {
    /// Stops the controller and waits until it has stopped.
    pub async fn stop(self) {
        self.token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle).await;
    }

    /// Stops the controller at once, abandoning reconciles in flight (a crash).
    pub fn kill(self) {
        self.handle.abort();
    }
}

/// Installs runctl's CRDs on the real control plane once per test binary (server-side apply,
/// so a CRD left by an earlier run is updated), and waits until both are Established.
pub async fn ensure_crds_on(plane: &'static ControlPlane) {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            let client = plane.client().await.expect("admin client");
            let api: Api<CustomResourceDefinition> = Api::all(client);
            for crd in runctl::crd::all() {
                let name = crd.metadata.name.clone().expect("CRD name");
                api.patch(
                    &name,
                    &kube::api::PatchParams::apply("runctl-tests").force(),
                    &kube::api::Patch::Apply(&crd),
                )
                .await
                .unwrap_or_else(|e| panic!("the real API server refused CRD {name}: {e}"));
                eventually(60, &format!("CRD {name} to be Established"), || {
                    let api = api.clone();
                    let name = name.clone();
                    async move {
                        let crd = api.get(&name).await.ok()?;
                        crd.status?
                            .conditions?
                            .iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                            .then_some(())
                    }
                })
                .await;
            }
        })
        .await;
}

/// Installs runctl's CRDs.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in runctl::crd::all() {
        api.create(&PostParams::default(), &crd)
            .await
            .expect("install CRD");
    }
}

/// Polls `check` until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
