//! TrainingJob test bed: the CloudResource controller, the TrainingJob controller and the
//! callback endpoint (on 127.0.0.1, a free port) started against a [`TestEnv`], plus a client
//! that plays the workload's side of the callback.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use runctl::callback::reach::ReachCheck;
use runctl::callback::{self, CallbackState, Reports};
use runctl::controller::backoff::BackoffConfig;
use runctl::controller::training_job::TrainingJobConfig;
use runctl::controller::training_job::resources::ReportingSettings;
use runctl::controller::{Context, ControllerConfig};
use runctl::crd::CloudResource;
use runctl::metrics::Metrics;
use tokio_util::sync::CancellationToken;

use super::{TestEnv, fast_sim};

/// TrainingJob settings with short waits for tests (the callback URL is filled in at start).
pub fn test_job_config() -> TrainingJobConfig {
    TrainingJobConfig {
        reporting: ReportingSettings {
            callback_base_url: String::new(),
            heartbeat_interval_seconds: 5,
            self_terminate_after_seconds: 600,
            report_grace_seconds: 1,
        },
        // The provider may show a machine ended before its wrapper's last chunk and exit report
        // arrive; on a loaded 2-core CI machine with the real API server they can take a few
        // seconds (0.8 s lost a job's last line under `runctl logs -f` once).
        report_grace: Duration::from_secs(3),
        start_timeout: None,
        heartbeat_timeout: None,
        retry: BackoffConfig {
            base: Duration::from_millis(200),
            max: Duration::from_secs(1),
        },
        // The stand-in machines run on this host and report to 127.0.0.1.
        callback_check: ReachCheck {
            allow_internal: true,
            ..Default::default()
        },
    }
}

/// A running operator: both controllers and the callback endpoint.
pub struct JobOperator {
    pub token: CancellationToken,
    pub handles: Vec<tokio::task::JoinHandle<()>>,
    pub ctx: Arc<Context>,
    pub reports: Arc<Reports>,
    /// `http://127.0.0.1:<port>` of the callback endpoint.
    pub callback_base: String,
}

impl JobOperator {
    /// Stops everything and waits.
    pub async fn stop(self) {
        self.token.cancel();
        for h in self.handles {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    }
}

impl TestEnv {
    /// Starts the CloudResource controller, the TrainingJob controller and the callback
    /// endpoint, wired the way the operator wires them.
    pub async fn start_training_job_controller(
        &self,
        config: ControllerConfig,
        jobs: TrainingJobConfig,
    ) -> JobOperator {
        self.start_training_job_controller_as(self.client.clone(), config, jobs)
            .await
    }

    /// Like [`start_training_job_controller`](Self::start_training_job_controller), with the
    /// controllers and the callback endpoint making every API call through `client` (e.g. a
    /// ServiceAccount's, whose RBAC the real API server enforces).
    pub async fn start_training_job_controller_as(
        &self,
        client: kube::Client,
        config: ControllerConfig,
        mut jobs: TrainingJobConfig,
    ) -> JobOperator {
        let ctx = Arc::new(Context::new(
            client.clone(),
            self.registry(),
            Arc::new(Metrics::new()),
            self.scoped(config),
        ));
        let token = CancellationToken::new();
        let reports = Arc::new(Reports::new());
        // The callback endpoint keeps workload output in the sink the controllers share.
        let router = callback::router(CallbackState::with_sink(
            client,
            reports.clone(),
            ctx.logs.clone(),
        ));
        let addr = callback::serve(
            "127.0.0.1:0".parse().expect("loopback address"),
            router,
            token.clone(),
        )
        .await
        .expect("bind the callback endpoint");
        let callback_base = format!("http://{addr}");
        jobs.reporting.callback_base_url = callback_base.clone();
        let stop = token.clone();
        let machines = tokio::spawn(runctl::controller::cloud_resource::run(
            ctx.clone(),
            async move { stop.cancelled().await },
        ));
        let stop = token.clone();
        let trainer = tokio::spawn(runctl::controller::training_job::run(
            ctx.clone(),
            jobs,
            reports.clone(),
            async move { stop.cancelled().await },
        ));
        JobOperator {
            token,
            handles: vec![machines, trainer],
            ctx,
            reports,
            callback_base,
        }
    }
}

impl TestEnv {
    /// Creates the callback token Secret of attempt `job`/`attempt` in the test's namespace, as
    /// the TrainingJob controller does; returns the token.
    pub async fn token_secret(&self, job: &str, attempt: u32) -> String {
        use runctl::callback::token;
        let good = token::generate();
        let meta = kube::api::ObjectMeta {
            name: Some(runctl::attempt::token_secret_name(job, attempt)),
            namespace: Some(self.ns.clone()),
            ..Default::default()
        };
        self.api::<Secret>()
            .create(&Default::default(), &token::secret(meta, &good))
            .await
            .expect("token Secret");
        good
    }
}

/// Plays the reporting wrapper of one attempt: the callback URL comes from the attempt's
/// CloudResource, the token from its Secret (what the machine gets in its env).
pub struct Workload {
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Workload {
    /// The workload of CloudResource `cr` in the test's namespace.
    pub async fn of(env: &TestEnv, cr: &str) -> Self {
        let crs: Api<CloudResource> = env.api();
        let cr = crs
            .get(cr)
            .await
            .expect("the attempt's CloudResource exists");
        let reporting = cr
            .spec
            .workload
            .and_then(|w| w.reporting)
            .expect("the CloudResource asks for reporting");
        let secrets: Api<Secret> = env.api();
        let secret = secrets
            .get(&reporting.token_secret_ref.name)
            .await
            .expect("token Secret");
        let token = runctl::callback::token::from_secret(&secret).expect("token in the Secret");
        Self {
            url: reporting.callback_url,
            token,
            http: reqwest::Client::new(),
        }
    }

    /// Posts a report with this attempt's token; returns the HTTP status.
    pub async fn post(&self, kind: &str, body: serde_json::Value) -> u16 {
        self.post_with(kind, body, Some(&self.token)).await
    }

    /// Posts a report with the given token (or none).
    pub async fn post_with(&self, kind: &str, body: serde_json::Value, token: Option<&str>) -> u16 {
        let mut req = self.http.post(format!("{}/{kind}", self.url)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
            .await
            .expect("callback request")
            .status()
            .as_u16()
    }

    /// Heartbeat.
    pub async fn heartbeat(&self) -> u16 {
        self.post("heartbeat", serde_json::json!({"kind": "heartbeat"}))
            .await
    }

    /// Exit with `code`.
    pub async fn exit(&self, code: i32) -> u16 {
        self.post(
            "exit",
            serde_json::json!({"kind": "exit", "exitCode": code}),
        )
        .await
    }
}

/// A test bed whose enabled providers are RunPod (a stand-in, with its key as the operator's
/// default credentials) and, with `sim`, the simulated cloud; AWS and Lyceum are disabled.
pub async fn runpod_env(sim: bool) -> (runctl_standins::runpod::RunPodStandin, TestEnv) {
    use runctl::provider::ProvidersConfig;
    let standin = runctl_standins::runpod::RunPodStandin::start().await;
    let mut providers = ProvidersConfig {
        sim: fast_sim(),
        ..ProvidersConfig::default()
    };
    providers.sim.enabled = Some(sim);
    providers.aws.enabled = Some(false);
    providers.lyceum.enabled = Some(false);
    providers.runpod.enabled = Some(true);
    providers.runpod.base_url = standin.url();
    providers.runpod.list_cache_millis = 100;
    let mut env = TestEnv::start_with(providers).await;
    env.default_credentials(
        runctl::crd::ProviderKind::Runpod,
        "runpod",
        &[("apiKey", &standin.api_key())],
    )
    .await;
    (standin, env)
}

/// Starts the operator with the test settings and creates `job` in the test's namespace.
pub async fn run_job(env: &TestEnv, job: &runctl::crd::training_job::TrainingJob) -> JobOperator {
    let op = env
        .start_training_job_controller(super::test_controller_config("op"), test_job_config())
        .await;
    let jobs: Api<runctl::crd::training_job::TrainingJob> = env.api();
    jobs.create(&kube::api::PostParams::default(), job)
        .await
        .expect("create job");
    op
}

/// Waits (up to 60 s) until the status of TrainingJob `name` in the test's namespace satisfies
/// `pred`; on timeout, panics with `what` and the last status seen.
pub async fn wait_job(
    env: &TestEnv,
    name: &str,
    what: &str,
    pred: impl Fn(&runctl::crd::training_job::TrainingJobStatus) -> bool,
) -> runctl::crd::training_job::TrainingJobStatus {
    let api: Api<runctl::crd::TrainingJob> = env.api();
    let last = std::sync::Mutex::new(None);
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        super::eventually(3600, &format!("{name}: {what}"), || {
            let (api, pred, last) = (api.clone(), &pred, &last);
            async move {
                let s = api.get_opt(name).await.ok().flatten()?.status?;
                *last.lock().expect("not poisoned") = Some(s.clone());
                pred(&s).then_some(s)
            }
        }),
    )
    .await;
    waited.unwrap_or_else(|_| {
        panic!(
            "timed out waiting for {name}: {what}; its last status: {:#?}",
            last.lock().expect("not poisoned")
        )
    })
}
