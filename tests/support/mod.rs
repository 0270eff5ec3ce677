//! Test bed for controller tests: the in-process API test server with runctl's CRDs installed,
//! a simulated cloud, and the real operator code started against them over HTTP.
#![allow(dead_code)]

pub mod builders;
pub mod jobs;

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
use tokio_util::sync::CancellationToken;

/// The API server, a client, and the simulated cloud.
pub struct TestEnv {
    pub server: ApiServer,
    pub client: Client,
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
        concurrency: 8,
        watch_namespace: None,
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
        let server = ApiServer::start().await.expect("start API test server");
        let client = server.client();
        install_crds(&client).await;
        let sim = Arc::new(SimCloud::new(providers.sim.clone()));
        Self {
            server,
            client,
            sim,
            providers,
        }
    }

    /// Creates a Secret in `default` with string data.
    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        use k8s_openapi::api::core::v1::Secret;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), "default");
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

    /// A provider registry bound to this environment's simulated cloud.
    pub fn registry(&self) -> Arc<ProviderRegistry> {
        Arc::new(ProviderRegistry::with_sim(
            "test",
            self.providers.clone(),
            self.sim.clone(),
        ))
    }

    /// Starts the CloudResource controller (the same code `runctl run` runs).
    pub fn start_controller(&self, config: ControllerConfig) -> Running {
        let ctx = Arc::new(Context::new(
            self.client.clone(),
            self.registry(),
            Arc::new(Metrics::new()),
            config,
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
