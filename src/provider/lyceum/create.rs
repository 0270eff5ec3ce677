//! Create with adoption: Lyceum has no idempotency key, so `create` lists before creating,
//! creates once, and after an ambiguous failure lists again and adopts what the lost call made.
//! Live duplicates of one key are terminated, keeping the oldest.

use super::api::RunRecord;
use super::errors::{self, Failure};
use super::ids::Kind;
use super::machine::{belongs_to, claim};
use super::provider::LyceumProvider;
use super::request::{self, Plan};
use super::state::run_is_terminal;
use crate::provider::{Machine, MachineSpec, Provider, ProviderError, ResourceKey};

impl LyceumProvider {
    /// The machine of `key`: an existing one, else a new one.
    pub(super) async fn create_or_adopt(
        &self,
        key: &ResourceKey,
        spec: &MachineSpec,
    ) -> Result<Machine, ProviderError> {
        let plan = request::plan(key, spec, self.bounds)?;
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
                        let record = RunRecord {
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
                if spec.max_lifetime_seconds.is_none() {
                    tracing::warn!(name = %req.display_name, owner_uid = %key.uid, "creating a Lyceum VM without maxLifetimeSeconds (requireVmMaxLifetime is off): nothing but deleting its CloudResource ends it");
                }
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

    /// The machines of `key` among those listed, the live ones first (oldest first), then the
    /// ended ones (newest first).
    pub(super) fn matches(machines: Vec<Machine>, key: &ResourceKey) -> Vec<Machine> {
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
    pub(super) async fn find(
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
}
