//! `RemoteSim`: the sim provider of an operator whose configuration names a served simulated
//! cloud (`providers.sim.endpoint`): the [`Provider`] calls of one installation and region go by
//! HTTP to [`super::server`] in another process, which holds the [`super::SimCloud`] and runs its
//! reporting wrapper. It also reads what the served cloud shows (machines with their timelines,
//! counters) and makes its workloads exit. At most [`MAX_IN_FLIGHT`] requests (so connections)
//! at once.
//!
//! Two keep-alive HTTP clients: one for the small calls (create, observe, terminate, price) and
//! one, keeping a single idle connection, for the large answers (a list of every machine). A
//! connection keeps the read buffer its largest answer grew; with one pool, every pooled
//! connection that ever carried a list held one (about 9 MB at 10,000 machines, measured with
//! jemalloc's heap profile; see docs/benchmarks.md).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use crate::provider::sim::SimConfig;
use crate::provider::{
    Capabilities, Machine, MachineSpec, PriceQuote, Provider, ProviderError, ProviderKind,
    ResourceKey, Termination,
};

use super::wire::{
    Answer, CreateRequest, ExitAll, ObserveRequest, PriceRequest, Scope, Summary, TerminateRequest,
    WireKey, WireMachine, WireQuote, WireSimMachine, WireSpec, WireTermination,
};

/// Requests to the sim server in flight at once (and so its most connections).
pub const MAX_IN_FLIGHT: usize = 32;

/// A client of a served simulated cloud, bound to one installation and region.
#[derive(Clone)]
pub struct RemoteSim {
    url: String,
    http: reqwest::Client,
    /// For answers of every machine: one pooled connection holds their read buffer.
    bulk: reqwest::Client,
    permits: Arc<Semaphore>,
    scope: Arc<Scope>,
    gpu_types: Arc<Vec<String>>,
}

impl std::fmt::Debug for RemoteSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSim")
            .field("url", &self.url)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl RemoteSim {
    /// A client of the server at `url` (`http://127.0.0.1:PORT`) for `installation` in `region`;
    /// `config` gives the capabilities (the GPU types of its price table).
    pub fn new(
        url: &str,
        installation: &str,
        region: &str,
        config: &SimConfig,
    ) -> Result<Self, reqwest::Error> {
        let client = |idle: usize| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(idle)
                .pool_idle_timeout(Duration::from_secs(90))
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(60))
                .build()
        };
        Ok(RemoteSim {
            url: url.trim_end_matches('/').to_string(),
            http: client(MAX_IN_FLIGHT)?,
            bulk: client(1)?,
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            scope: Arc::new(Scope {
                installation: installation.to_string(),
                region: region.to_string(),
            }),
            gpu_types: Arc::new(config.prices.keys().cloned().collect()),
        })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ProviderError> {
        let unreachable = |e: reqwest::Error| {
            ProviderError::retryable_from("sim server unreachable", e.without_url())
        };
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| ProviderError::retryable_from("sim client closed", e))?;
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            return Err(ProviderError::retryable(format!(
                "sim server answered {status}"
            )));
        }
        response.json().await.map_err(|e| {
            ProviderError::retryable_from("sim server sent an unreadable answer", e.without_url())
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        client: &reqwest::Client,
        path: &str,
    ) -> Result<T, ProviderError> {
        self.send(client.get(format!("{}{path}", self.url))).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: &B,
    ) -> Result<T, ProviderError> {
        self.send(client.post(format!("{}{path}", self.url)).json(body))
            .await
    }

    /// A provider call: its answer, or its error as the server classified it.
    async fn call<B: Serialize, W: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<W, ProviderError> {
        self.call_with(&self.http, path, body).await
    }

    /// [`Self::call`] through `client`.
    async fn call_with<B: Serialize, W: DeserializeOwned>(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: &B,
    ) -> Result<W, ProviderError> {
        match self.post::<B, Answer<W>>(client, path, body).await? {
            Answer::Ok(v) => Ok(v),
            Answer::Err(e) => Err(e.into()),
        }
    }

    fn scope(&self) -> Scope {
        Scope::clone(&self.scope)
    }

    // ---- what the served cloud shows, and its workloads ----

    /// Every machine still known, with its timeline.
    pub async fn machines(&self) -> Result<Vec<WireSimMachine>, ProviderError> {
        self.get(&self.bulk, "/sim/machines").await
    }

    /// Counters and machines by state.
    pub async fn summary(&self) -> Result<Summary, ProviderError> {
        self.get(&self.http, "/sim/summary").await
    }

    /// Every running workload exits with `code`; returns how many did.
    pub async fn exit_all(&self, code: i32) -> Result<usize, ProviderError> {
        self.post(&self.http, "/sim/exit-all", &ExitAll { code })
            .await
    }
}

#[async_trait]
impl Provider for RemoteSim {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Sim
    }

    fn capabilities(&self) -> Capabilities {
        crate::provider::sim::provider::capabilities(Vec::clone(&self.gpu_types))
    }

    async fn create(
        &self,
        key: &ResourceKey,
        spec: &MachineSpec,
    ) -> Result<Machine, ProviderError> {
        let body = CreateRequest {
            scope: self.scope(),
            key: WireKey::from(key),
            spec: WireSpec::from(spec),
        };
        self.call::<_, WireMachine>("/provider/create", &body)
            .await
            .map(Machine::from)
    }

    async fn observe(
        &self,
        key: &ResourceKey,
        known_id: Option<&str>,
    ) -> Result<Option<Machine>, ProviderError> {
        let body = ObserveRequest {
            scope: self.scope(),
            key: WireKey::from(key),
            known_id: known_id.map(str::to_string),
        };
        self.call::<_, Option<WireMachine>>("/provider/observe", &body)
            .await
            .map(|m| m.map(Machine::from))
    }

    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        self.call_with::<_, Vec<WireMachine>>(&self.bulk, "/provider/list", &*self.scope)
            .await
            .map(|ms| ms.into_iter().map(Machine::from).collect())
    }

    async fn terminate(&self, id: &str) -> Result<Termination, ProviderError> {
        let body = TerminateRequest {
            scope: self.scope(),
            id: id.to_string(),
        };
        self.call::<_, WireTermination>("/provider/terminate", &body)
            .await
            .map(Termination::from)
    }

    async fn price(&self, spec: &MachineSpec) -> Result<PriceQuote, ProviderError> {
        let body = PriceRequest {
            scope: self.scope(),
            spec: WireSpec::from(spec),
        };
        self.call::<_, WireQuote>("/provider/price", &body)
            .await
            .map(PriceQuote::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderRegistry;
    use crate::provider::ResourceState;
    use crate::provider::registry::{ProviderKey, ProvidersConfig};
    use crate::provider::sim::{SimCloud, SimFault, SimOp};

    use super::super::server::SimServer;

    fn key(uid: &str) -> ResourceKey {
        ResourceKey {
            installation: "bench".into(),
            namespace: "default".into(),
            name: format!("job-{uid}-a1"),
            uid: uid.into(),
            attempt: 1,
        }
    }

    fn spec() -> MachineSpec {
        MachineSpec {
            instance_type: Some("sim.a100".into()),
            gpu_count: 1,
            ..MachineSpec::default()
        }
    }

    #[tokio::test]
    async fn provider_calls_round_trip_over_http() {
        let config = SimConfig {
            provision_ms: 0,
            boot_ms: 0,
            terminate_ms: 0,
            ..SimConfig::default()
        };
        let cloud = Arc::new(SimCloud::new(config.clone()));
        let server = SimServer::start(cloud.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let sim = RemoteSim::new(&server.url(), "bench", &config.region, &config).unwrap();

        // An operator configured with the endpoint builds its sim provider as a client of the
        // served cloud; its own in-process cloud stays empty.
        let mut providers = ProvidersConfig::default();
        providers.sim.endpoint = Some(server.url());
        let registry = ProviderRegistry::new("bench", providers);
        let pkey = ProviderKey {
            kind: ProviderKind::Sim,
            region: None,
            credentials: None,
        };
        let provider = registry.get(&pkey, None).await.unwrap();
        assert!(registry.sim().machines().is_empty());

        let made = provider.create(&key("u1"), &spec()).await.unwrap();
        let again = provider.create(&key("u1"), &spec()).await.unwrap();
        assert_eq!(made.id, again.id, "create stays idempotent");
        assert_eq!(
            cloud.machines().len(),
            1,
            "the machine is in the served cloud"
        );

        let seen = provider.observe(&key("u1"), None).await.unwrap().unwrap();
        assert_eq!(seen.id, made.id);
        assert_eq!(seen.state, ResourceState::Running);
        assert!(provider.observe(&key("u2"), None).await.unwrap().is_none());
        let listed = provider.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].owner_uid.as_deref(), Some("u1"));
        let quote = provider.price(&spec()).await.unwrap();
        assert_eq!(quote.per_hour, config.prices["sim.a100"]);

        assert_eq!(
            sim.summary()
                .await
                .unwrap()
                .in_state(ResourceState::Running),
            1
        );
        assert_eq!(sim.exit_all(0).await.unwrap(), 1);
        let machines = sim.machines().await.unwrap();
        assert_eq!(machines[0].exit_code, Some(0));
        assert!(
            machines[0].timeline.len() >= 2,
            "{:?}",
            machines[0].timeline
        );

        assert_eq!(
            provider.terminate(&made.id).await.unwrap(),
            Termination::Gone,
            "an ended machine is gone"
        );
        assert_eq!(sim.summary().await.unwrap().live_total, 0);

        // Errors keep their class.
        cloud.fail_next(SimOp::Create, SimFault::Capacity, 1);
        let err = provider.create(&key("u3"), &spec()).await.unwrap_err();
        assert!(matches!(err, ProviderError::Capacity { .. }), "{err}");
        assert_eq!(sim.summary().await.unwrap().calls(SimOp::Create), 3);

        server.shutdown().await;
        let err = provider.list().await.unwrap_err();
        assert!(err.is_retryable(), "an unreachable sim is retried: {err}");
    }
}
