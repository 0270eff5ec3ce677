//! The Lyceum [`Provider`]: create with adoption (Lyceum has no idempotency key), batched
//! observe and list over `/vms/list` and `/workloads/list`, idempotent terminate (abort a run,
//! delete a VM), and cached prices.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::LyceumConfig;
use super::api::LogLine;
use super::client::{Abort, Client, ClientSettings};
use super::ids::{Kind, MachineId, ownership};
use super::machine::{claim, from_run, from_vm};
use super::pricing::{PriceCache, Prices};
use super::request;
use super::state::{run_is_terminal, vm_is_terminal};
use crate::provider::{
    Capabilities, Machine, MachineSpec, PriceQuote, Provider, ProviderError, ProviderKind,
    ResourceKey, Termination,
};

/// GPU profiles the reference documents (used until prices have been fetched).
const DOCUMENTED_PROFILES: [&str; 3] = ["a100", "h100", "l40s"];

/// One Lyceum account (API key).
pub struct LyceumProvider {
    pub(super) client: Client,
    installation: String,
    pub(super) bounds: request::Bounds,
    pub(super) prices: PriceCache,
    /// Ids (`run:…`, `vm:…`) this process asked Lyceum to end.
    ended: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for LyceumProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LyceumProvider")
            .field("client", &self.client)
            .field("installation", &self.installation)
            .finish()
    }
}

impl LyceumProvider {
    /// A provider for `installation` using `api_key`.
    pub fn new(
        config: &LyceumConfig,
        installation: &str,
        api_key: &str,
    ) -> Result<Self, ProviderError> {
        let settings = ClientSettings {
            base_url: config.base_url.clone(),
            timeout: Duration::from_secs(config.request_timeout_seconds.max(1)),
            attempts: config.request_attempts.max(1),
            backoff: Duration::from_millis(config.retry_backoff_ms),
        };
        Ok(Self {
            client: Client::new(settings, api_key.to_string())?,
            installation: installation.to_string(),
            bounds: request::Bounds {
                default_run_timeout: config.default_run_timeout_seconds,
                require_vm_max_lifetime: config.require_vm_max_lifetime,
            },
            prices: PriceCache::new(Duration::from_secs(config.price_cache_seconds)),
            ended: Mutex::new(HashSet::new()),
        })
    }

    /// The last `limit` log lines of a run (`run:<id>`) from the last `hours` hours.
    pub async fn run_logs(
        &self,
        id: &str,
        limit: u32,
        hours: u32,
    ) -> Result<Vec<LogLine>, ProviderError> {
        let mid = MachineId::parse(id)?;
        if mid.kind != Kind::Run {
            return Err(ProviderError::InvalidSpec {
                message: format!("{id} is a VM; Lyceum keeps logs for runs only"),
            });
        }
        self.client.run_logs(&mid.raw, limit, hours).await
    }

    pub(super) fn ended_by_us(&self, id: &str) -> bool {
        self.ended.lock().contains(id)
    }

    /// Current prices: the cache, else fetched from `/pricing` and `/vms/availability` (one of
    /// them suffices), else stale cached prices.
    pub(super) async fn prices(&self) -> Result<Prices, ProviderError> {
        if let Some(p) = self.prices.fresh() {
            return Ok(p);
        }
        let (pricing, availability) =
            tokio::join!(self.client.pricing(), self.client.availability());
        let mut prices = Prices::default();
        let mut first_error = None;
        match pricing {
            Ok(p) => prices.add_pricing(&p),
            Err(e) => first_error = Some(e),
        }
        match availability {
            Ok(a) => prices.add_availability(&a),
            Err(e) => first_error = first_error.or(Some(e)),
        }
        match first_error {
            Some(e) if prices.groups.is_empty() && prices.variants.is_empty() => {
                self.prices.any().ok_or(e)
            }
            _ => {
                self.prices.store(prices.clone());
                Ok(prices)
            }
        }
    }

    /// Prices to decorate listed machines with: cached ones (even stale), else a fetch at most
    /// once per [`PriceCache::RETRY_AFTER_FAILURE`], so a broken `/pricing` never slows lists.
    async fn prices_for_listing(&self) -> Option<Prices> {
        if let Some(p) = self.prices.fresh() {
            return Some(p);
        }
        if !self.prices.may_fetch() {
            return self.prices.any();
        }
        match self.prices().await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "could not fetch Lyceum prices; machines are listed without them");
                self.prices.fetch_failed();
                None
            }
        }
    }

    /// Price of a listed machine, if known; never fails the caller.
    fn price_of(
        prices: Option<&Prices>,
        kind: Kind,
        hardware: Option<&str>,
        gpu_count: u32,
        spot: bool,
    ) -> Option<f64> {
        let profile = request::profile(hardware?);
        prices?
            .quote(kind, &profile, gpu_count, spot)
            .ok()
            .map(|q| q.per_hour)
    }

    pub(super) fn vm_machine(&self, vm: &super::api::VmRecord, prices: Option<&Prices>) -> Machine {
        let id = MachineId::vm(&vm.vm_id).to_string();
        let spot = vm
            .instance_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("spot"));
        let price = Self::price_of(
            prices,
            Kind::Vm,
            vm.hardware_profile.as_deref(),
            vm.gpu_count.unwrap_or(1),
            spot,
        );
        from_vm(vm, self.ended_by_us(&id), price)
    }

    pub(super) fn run_machine(
        &self,
        run: &super::api::RunRecord,
        prices: Option<&Prices>,
    ) -> Machine {
        let id = MachineId::run(&run.execution_id).to_string();
        let price = Self::price_of(prices, Kind::Run, run.execution_type.as_deref(), 1, false);
        from_run(run, self.ended_by_us(&id), price)
    }

    /// True when a run's metadata does not name another installation.
    fn ours(&self, installation: Option<&str>) -> bool {
        installation.is_none_or(|i| i == self.installation)
    }

    /// Machines of one kind, as listed, that are runctl's and not another installation's.
    pub(super) async fn listed(&self, kind: Kind) -> Result<Vec<Machine>, ProviderError> {
        let prices = self.prices_for_listing().await;
        match kind {
            Kind::Vm => Ok(self
                .client
                .list_vms()
                .await?
                .iter()
                .filter(|vm| ownership(vm.label(), None).is_some())
                .map(|vm| self.vm_machine(vm, prices.as_ref()))
                .collect()),
            Kind::Run => Ok(self
                .client
                .list_runs()
                .await?
                .iter()
                .filter(|r| {
                    ownership(r.run_name.as_deref(), r.metadata.as_ref())
                        .is_some_and(|o| self.ours(o.installation.as_deref()))
                })
                .map(|r| self.run_machine(r, prices.as_ref()))
                .collect()),
        }
    }

    async fn observe_id(&self, mid: &MachineId) -> Result<Option<Machine>, ProviderError> {
        let prices = self.prices_for_listing().await;
        match mid.kind {
            Kind::Vm => {
                let listed = self
                    .client
                    .list_vms()
                    .await?
                    .into_iter()
                    .find(|v| v.vm_id == mid.raw);
                let vm = match listed {
                    Some(v) => Some(v),
                    None => self.client.vm(&mid.raw).await?,
                };
                Ok(vm.map(|v| self.vm_machine(&v, prices.as_ref())))
            }
            Kind::Run => {
                let listed = self
                    .client
                    .list_runs()
                    .await?
                    .into_iter()
                    .find(|r| r.execution_id == mid.raw);
                let run = match listed {
                    Some(r) => Some(r),
                    None => self.client.run(&mid.raw).await?,
                };
                Ok(run.map(|r| self.run_machine(&r, prices.as_ref())))
            }
        }
    }

    pub(super) async fn max_price_check(&self, spec: &MachineSpec) -> Result<(), ProviderError> {
        let Some(max) = spec.max_price_per_hour else {
            return Ok(());
        };
        let quote = self.price(spec).await?;
        if quote.per_hour > max {
            return Err(ProviderError::Capacity {
                message: format!(
                    "Lyceum's price {:.4} USD/h is above maxPricePerHour {max:.4} (Lyceum takes no bids)",
                    quote.per_hour
                ),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for LyceumProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Lyceum
    }

    fn capabilities(&self) -> Capabilities {
        let gpu_types = self
            .prices
            .any()
            .map(|p| p.profiles())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DOCUMENTED_PROFILES.iter().map(|p| p.to_string()).collect());
        Capabilities {
            spot: super::DESCRIPTOR.spot,
            stop_resume: false,
            workload: true,
            bare_machine: true,
            gpu_types,
            multi_node: super::DESCRIPTOR.multi_node,
        }
    }

    async fn create(
        &self,
        key: &ResourceKey,
        spec: &MachineSpec,
    ) -> Result<Machine, ProviderError> {
        self.create_or_adopt(key, spec).await
    }

    async fn observe(
        &self,
        key: &ResourceKey,
        known_id: Option<&str>,
    ) -> Result<Option<Machine>, ProviderError> {
        if let Some(id) = known_id {
            let mid = MachineId::parse(id)?;
            return Ok(self.observe_id(&mid).await?.map(|m| claim(m, key)));
        }
        let (runs, vms) = tokio::join!(
            self.find(key, Kind::Run, false),
            self.find(key, Kind::Vm, false)
        );
        let mut found: Vec<Machine> = [runs?, vms?].into_iter().flatten().collect();
        found.sort_by_key(|m| !m.is_billable());
        Ok(found.into_iter().next())
    }

    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        let (runs, vms) = tokio::join!(self.listed(Kind::Run), self.listed(Kind::Vm));
        let mut all = runs?;
        all.extend(vms?);
        Ok(all)
    }

    async fn terminate(&self, id: &str) -> Result<Termination, ProviderError> {
        let mid = MachineId::parse(id)?;
        match mid.kind {
            Kind::Run => {
                let Some(run) = self.client.run(&mid.raw).await? else {
                    return Ok(Termination::Gone);
                };
                if run_is_terminal(&run.status) {
                    return Ok(Termination::Gone);
                }
                self.ended.lock().insert(id.to_string());
                match self.client.abort_run(&mid.raw).await? {
                    Abort::Accepted => Ok(Termination::InProgress),
                    Abort::NotFound => Ok(Termination::Gone),
                    Abort::Refused(message) => match self.client.run(&mid.raw).await? {
                        Some(r) if !run_is_terminal(&r.status) => {
                            Err(ProviderError::retryable(message))
                        }
                        _ => Ok(Termination::Gone),
                    },
                }
            }
            Kind::Vm => {
                let Some(vm) = self.client.vm(&mid.raw).await? else {
                    return Ok(Termination::Gone);
                };
                // A failed VM may keep its status after our DELETE; once asked, it counts as gone.
                if vm.status.eq_ignore_ascii_case("terminated")
                    || (vm_is_terminal(&vm.status) && self.ended_by_us(id))
                {
                    return Ok(Termination::Gone);
                }
                self.ended.lock().insert(id.to_string());
                match self.client.delete_vm(&mid.raw).await {
                    Ok(true) => Ok(Termination::InProgress),
                    Ok(false) => Ok(Termination::Gone),
                    Err(ProviderError::InvalidSpec { .. }) if vm_is_terminal(&vm.status) => {
                        Ok(Termination::Gone)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn price(&self, spec: &MachineSpec) -> Result<PriceQuote, ProviderError> {
        let kind = request::mode(spec)?;
        let profile = request::profile(spec.gpu_type.as_deref().unwrap_or_default());
        if profile.is_empty() {
            return Err(ProviderError::InvalidSpec {
                message: "provider lyceum needs spec.gpuType".into(),
            });
        }
        self.prices()
            .await?
            .quote(kind, &profile, spec.gpu_count.max(1), spec.spot)
    }

    /// A run's log (`GET /logs/execution/{id}`, the last week); VMs keep none.
    async fn logs(
        &self,
        id: &str,
        limit: u32,
    ) -> Result<Option<Vec<crate::provider::LogLine>>, ProviderError> {
        if MachineId::parse(id)?.kind != Kind::Run {
            return Ok(None);
        }
        let lines = self.run_logs(id, limit, 168).await?;
        Ok(Some(
            lines
                .into_iter()
                .map(|l| crate::provider::LogLine {
                    time: l.timestamp.as_deref().and_then(parse_time),
                    message: l.message,
                })
                .collect(),
        ))
    }
}

/// A Lyceum timestamp: RFC 3339, or a date and time without an offset (taken as UTC).
fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse::<jiff::Timestamp>().ok().or_else(|| {
        s.parse::<jiff::civil::DateTime>()
            .ok()
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .map(|z| z.timestamp())
    })
}
