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
use super::errors::{self, Failure};
use super::ids::{Kind, MachineId, ownership};
use super::machine::{belongs_to, claim, from_run, from_vm};
use super::pricing::{PriceCache, Prices};
use super::request::{self, Plan};
use super::state::{run_is_terminal, vm_is_terminal};
use crate::provider::{
    Capabilities, Machine, MachineSpec, PriceQuote, Provider, ProviderError, ProviderKind,
    ResourceKey, Termination,
};

/// GPU profiles the reference documents (used until prices have been fetched).
const DOCUMENTED_PROFILES: [&str; 3] = ["a100", "h100", "l40s"];

/// One Lyceum account (API key).
pub struct LyceumProvider {
    client: Client,
    installation: String,
    default_run_timeout: u32,
    prices: PriceCache,
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
            default_run_timeout: config.default_run_timeout_seconds,
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

    fn ended_by_us(&self, id: &str) -> bool {
        self.ended.lock().contains(id)
    }

    /// Current prices: the cache, else fetched from `/pricing` and `/vms/availability` (one of
    /// them suffices), else stale cached prices.
    async fn prices(&self) -> Result<Prices, ProviderError> {
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

    fn vm_machine(&self, vm: &super::api::VmRecord, prices: Option<&Prices>) -> Machine {
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

    fn run_machine(&self, run: &super::api::RunRecord, prices: Option<&Prices>) -> Machine {
        let id = MachineId::run(&run.execution_id).to_string();
        let price = Self::price_of(prices, Kind::Run, run.execution_type.as_deref(), 1, false);
        from_run(run, self.ended_by_us(&id), price)
    }

    /// True when a run's metadata does not name another installation.
    fn ours(&self, installation: Option<&str>) -> bool {
        installation.is_none_or(|i| i == self.installation)
    }

    /// Machines of one kind, as listed, that are runctl's and not another installation's.
    async fn listed(&self, kind: Kind) -> Result<Vec<Machine>, ProviderError> {
        let prices = self.prices().await.ok();
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

    /// The machines of `key` among those listed, the live ones first (oldest first), then the
    /// ended ones (newest first).
    fn matches(machines: Vec<Machine>, key: &ResourceKey) -> Vec<Machine> {
        let mut found: Vec<Machine> = machines
            .into_iter()
            .filter(|m| belongs_to(m, key))
            .map(|m| claim(m, key))
            .collect();
        let mut live: Vec<Machine> = found.iter().filter(|m| m.is_billable()).cloned().collect();
        found.retain(|m| !m.is_billable());
        live.sort_by_key(|m| m.launch_time);
        found.sort_by_key(|m| std::cmp::Reverse(m.launch_time));
        live.extend(found);
        live
    }

    /// Finds the machine of `key` of one kind; duplicates beyond the oldest live one are
    /// terminated when `clean_duplicates`.
    async fn find(
        &self,
        key: &ResourceKey,
        kind: Kind,
        clean_duplicates: bool,
    ) -> Result<Option<Machine>, ProviderError> {
        let mut found = Self::matches(self.listed(kind).await?, key).into_iter();
        let first = found.next();
        if clean_duplicates && first.as_ref().is_some_and(Machine::is_billable) {
            for dup in found.filter(Machine::is_billable) {
                tracing::warn!(machine = %dup.id, name = ?dup.name, "terminating a duplicate Lyceum machine of one create attempt");
                if let Err(e) = self.terminate(&dup.id).await {
                    tracing::warn!(machine = %dup.id, error = %e, "could not terminate a duplicate Lyceum machine");
                }
            }
        }
        Ok(first)
    }

    /// After a create failed in a way that may have made a machine: list again and adopt it.
    async fn recover(
        &self,
        key: &ResourceKey,
        kind: Kind,
        failure: Failure,
        secrets: &[&str],
    ) -> Result<Machine, ProviderError> {
        let error = errors::scrub_error(failure.error, secrets);
        if !failure.ambiguous {
            return Err(error);
        }
        match self.find(key, kind, true).await {
            Ok(Some(m)) => {
                tracing::info!(machine = %m.id, "adopted the Lyceum machine of a create whose answer was lost");
                Ok(m)
            }
            Ok(None) if kind == Kind::Run => Err(self.unnamed_runs_warning(error).await),
            Ok(None) => Err(error),
            Err(list_error) => Err(ProviderError::retryable(format!(
                "{error}; whether it made a machine is unknown, and listing failed too: {list_error}"
            ))),
        }
    }

    /// Adds a warning to `error` when Lyceum lists runs without a name: if its list does not
    /// carry `run_name` (undocumented), runctl cannot see whether the lost create made a run.
    async fn unnamed_runs_warning(&self, error: ProviderError) -> ProviderError {
        let unnamed = match self.client.list_runs().await {
            Ok(runs) => runs
                .iter()
                .filter(|r| r.run_name.is_none() && !run_is_terminal(&r.status))
                .count(),
            Err(_) => 0,
        };
        if unnamed == 0 {
            return error;
        }
        tracing::warn!(
            unnamed,
            "Lyceum lists live runs without run_name; a lost create may have made a run runctl cannot see"
        );
        ProviderError::retryable(format!(
            "{error}; Lyceum lists {unnamed} live run(s) without a run_name, so runctl cannot rule out that the lost create made one (check the Lyceum console)"
        ))
    }

    async fn observe_id(&self, mid: &MachineId) -> Result<Option<Machine>, ProviderError> {
        let prices = self.prices().await.ok();
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

    async fn max_price_check(&self, spec: &MachineSpec) -> Result<(), ProviderError> {
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
            spot: true,
            stop_resume: false,
            workload: true,
            bare_machine: true,
            gpu_types,
        }
    }

    async fn create(
        &self,
        key: &ResourceKey,
        spec: &MachineSpec,
    ) -> Result<Machine, ProviderError> {
        let plan = request::plan(key, spec, self.default_run_timeout)?;
        let kind = match plan {
            Plan::Run(_) => Kind::Run,
            Plan::Vm(_) => Kind::Vm,
        };
        if let Some(m) = self.find(key, kind, true).await? {
            return Ok(m);
        }
        self.max_price_check(spec).await?;
        let prices = self.prices.any();
        match &plan {
            Plan::Run(req) => {
                let env_values: Vec<String> = spec
                    .workload
                    .iter()
                    .flat_map(|w| w.full_env().into_values())
                    .collect();
                let mut secrets: Vec<&str> = env_values.iter().map(String::as_str).collect();
                secrets.push(self.client.secret());
                tracing::info!(name = %req.run_name, execution_type = %req.execution_type, timeout = req.timeout, "starting a Lyceum run");
                match self.client.start_run(req).await {
                    Ok(started) => {
                        let record = super::api::RunRecord {
                            execution_id: started.execution_id,
                            run_name: Some(req.run_name.clone()),
                            status: if started.status.is_empty() {
                                "pending".into()
                            } else {
                                started.status
                            },
                            execution_type: Some(req.execution_type.clone()),
                            ..Default::default()
                        };
                        Ok(claim(self.run_machine(&record, prices.as_ref()), key))
                    }
                    Err(f) => self.recover(key, kind, f, &secrets).await,
                }
            }
            Plan::Vm(req) => {
                tracing::info!(name = %req.display_name, profile = %req.hardware_profile, gpus = req.instance_specs.gpu_count, "creating a Lyceum VM");
                match self.client.create_vm(req).await {
                    Ok(mut vm) => {
                        if vm.label().is_none() {
                            vm.display_name = Some(req.display_name.clone());
                        }
                        Ok(claim(self.vm_machine(&vm, prices.as_ref()), key))
                    }
                    Err(f) => self.recover(key, kind, f, &[self.client.secret()]).await,
                }
            }
        }
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
}
