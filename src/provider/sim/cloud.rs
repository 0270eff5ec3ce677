//! `SimCloud`: the shared simulated cloud. It holds every machine of every installation and
//! region, answers the provider's calls, and gives tests the knobs of a real cloud's bad days
//! (fault injection, capacity limits, spot interruptions, vanishing machines) plus inspection.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::provider::{
    Machine, MachineSpec, ProviderError, ResourceKey, ResourceState, Termination,
};

use super::clock::{SimClock, SimMillis};
use super::config::SimConfig;
use super::fault::{FaultQueue, SimFault, SimOp};
use super::store::{OwnerKey, Record, Store, parse_id};
use super::timeline::{self, End, Phase, Segment, Status};

/// Why a test's event could not be applied to a machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// No such machine (never made, vanished, or forgotten after retention).
    #[error("no simulated machine {id}")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The event does not apply in the machine's current state.
    #[error("cannot {action} simulated machine {id} while it is {state:?}")]
    WrongState {
        /// The machine.
        id: String,
        /// What was asked.
        action: &'static str,
        /// Its state.
        state: ResourceState,
    },
    /// Only spot machines can be interrupted.
    #[error("simulated machine {id} is not a spot machine")]
    NotSpot {
        /// The machine.
        id: String,
    },
}

/// Counters of what the simulated API was asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Calls per operation, failed ones included.
    pub calls: BTreeMap<SimOp, u64>,
    /// Create calls that made a machine.
    pub machines_created: u64,
    /// Create calls that returned an existing machine for the same key.
    pub duplicates_prevented: u64,
    /// Calls that met an injected fault.
    pub faults_injected: u64,
    /// Creates refused for capacity (limits or spot price), injected faults not counted.
    pub capacity_rejections: u64,
    /// Exit reports the simulated wrapper gave up on: not acknowledged within the workload's
    /// report grace (a report refused because its attempt had ended is not counted).
    pub exit_reports_given_up: u64,
}

impl SimStats {
    /// Calls of one operation.
    pub fn calls(&self, op: SimOp) -> u64 {
        self.calls.get(&op).copied().unwrap_or(0)
    }
}

/// A snapshot of one simulated machine, for tests and the demo.
#[derive(Clone, Debug, PartialEq)]
pub struct SimMachine {
    /// Id (`sim-<n>`).
    pub id: String,
    /// Deterministic name.
    pub name: String,
    /// Installation it is tagged with.
    pub installation: String,
    /// Region.
    pub region: String,
    /// Owner UID tag.
    pub owner_uid: Option<String>,
    /// Attempt tag.
    pub attempt: Option<u32>,
    /// Every tag.
    pub tags: BTreeMap<String, String>,
    /// Machine type.
    pub machine_type: String,
    /// Spot machine.
    pub spot: bool,
    /// Price per hour as rented.
    pub price_per_hour: f64,
    /// Create time.
    pub created_at: Timestamp,
    /// State now.
    pub state: ResourceState,
    /// Reason now.
    pub reason: &'static str,
    /// Workload exit code, once it exited.
    pub exit_code: Option<i32>,
    /// Every state so far with the simulated instant it began.
    pub timeline: Vec<Status>,
    /// Put there by [`SimCloud::insert_foreign`], not by a create call.
    pub foreign: bool,
}

/// A machine runctl did not create through this installation's provider, for garbage-collector
/// tests: tagged for another installation, or tagged like ours with no creation record.
#[derive(Clone, Debug, PartialEq)]
pub struct ForeignMachine {
    /// Installation tag.
    pub installation: String,
    /// Region; the configured default when absent.
    pub region: Option<String>,
    /// Owner UID tag, if any.
    pub owner_uid: Option<String>,
    /// Attempt tag, if any.
    pub attempt: Option<u32>,
    /// Name; `foreign-<n>` when absent.
    pub name: Option<String>,
    /// Machine type (priced from the table).
    pub machine_type: String,
    /// Extra tags.
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug)]
pub(super) struct Inner {
    store: Store,
    faults: FaultQueue,
    stats: SimStats,
    capacity: HashMap<String, u32>,
    rng: StdRng,
}

/// The simulated cloud, shared (in an `Arc`) by every sim provider instance.
#[derive(Debug)]
pub struct SimCloud {
    config: SimConfig,
    clock: SimClock,
    inner: Mutex<Inner>,
    reporter: AtomicBool,
}

impl SimCloud {
    /// A new, empty simulated cloud.
    pub fn new(config: SimConfig) -> Self {
        let clock = if config.manual_clock {
            SimClock::manual()
        } else {
            SimClock::real()
        };
        let inner = Inner {
            store: Store::default(),
            faults: FaultQueue::default(),
            stats: SimStats::default(),
            capacity: HashMap::new(),
            rng: StdRng::seed_from_u64(config.seed),
        };
        Self {
            config,
            clock,
            inner: Mutex::new(inner),
            reporter: AtomicBool::new(false),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Simulated milliseconds since the cloud was made.
    pub fn now(&self) -> SimMillis {
        self.clock.now()
    }

    /// The wall-clock time of a simulated instant (e.g. a timeline entry's `since`).
    pub fn timestamp(&self, at: SimMillis) -> Timestamp {
        self.clock.timestamp(at)
    }

    /// Moves a manual clock forward; false (nothing happens) with a real clock.
    pub fn advance(&self, by: Duration) -> bool {
        self.clock.advance(by)
    }

    // ---- fault injection and events ----

    /// Makes the next `times` calls of `op` fail with `fault` (after faults queued before).
    pub fn fail_next(&self, op: SimOp, fault: SimFault, times: u32) {
        self.inner.lock().faults.push(op, fault, times);
    }

    /// Drops every fault queued with [`fail_next`](Self::fail_next).
    pub fn clear_faults(&self) {
        self.inner.lock().faults.clear();
    }

    /// Limits the machines of `machine_type` that may bill at once (`None`: no limit); a create
    /// beyond it fails with a capacity error.
    pub fn set_capacity(&self, machine_type: &str, limit: Option<u32>) {
        let mut inner = self.inner.lock();
        match limit {
            Some(n) => inner.capacity.insert(machine_type.to_string(), n),
            None => inner.capacity.remove(machine_type),
        };
    }

    /// Finishes provisioning and booting now: a starting machine is `Running` (a timed workload
    /// starts its run now). A running machine stays as it is.
    pub fn boot(&self, id: &str) -> Result<(), SimError> {
        self.event(id, "boot", |rec, status| match status.state {
            ResourceState::Starting => Decision::Begin(Phase::Launch {
                provision_ms: 0,
                running_ms: 0,
                run: rec.run,
            }),
            ResourceState::Running => Decision::Nothing,
            _ => Decision::WrongState,
        })
    }

    /// Stops a starting or running machine (as if stopped outside runctl).
    pub fn stop(&self, id: &str) -> Result<(), SimError> {
        self.event(id, "stop", |_, status| match status.state {
            ResourceState::Starting | ResourceState::Running => Decision::Begin(Phase::Stopped),
            _ => Decision::WrongState,
        })
    }

    /// Starts a stopped machine again: it boots (no provisioning) and then runs.
    pub fn start(&self, id: &str) -> Result<(), SimError> {
        let booting = self
            .config
            .running_ms()
            .saturating_sub(self.config.provision_ms);
        self.event(id, "start", |rec, status| match status.state {
            ResourceState::Stopped => Decision::Begin(Phase::Launch {
                provision_ms: 0,
                running_ms: booting,
                run: rec.run,
            }),
            _ => Decision::WrongState,
        })
    }

    /// Reclaims a spot machine: it ends as `Error`/`SpotInterrupted`.
    pub fn interrupt(&self, id: &str) -> Result<(), SimError> {
        self.event(id, "interrupt", |rec, status| match status.state {
            _ if !rec.spot => Decision::NotSpot,
            ResourceState::Starting | ResourceState::Running | ResourceState::Stopped => {
                Decision::Begin(Phase::Ended(End::interrupted()))
            }
            _ => Decision::WrongState,
        })
    }

    /// The provider fails the machine: it ends as `Error`/`ProviderFailure`.
    pub fn fail(&self, id: &str) -> Result<(), SimError> {
        self.event(id, "fail", |_, _| {
            Decision::Begin(Phase::Ended(End::provider_failure()))
        })
    }

    /// The running workload exits with `code`, and the machine powers off: 0 ends it as
    /// `Terminated`/`Completed`, anything else as `Error`/`WorkloadFailed`.
    pub fn exit(&self, id: &str, code: i32) -> Result<(), SimError> {
        self.event(id, "exit the workload of", |_, status| match status.state {
            ResourceState::Running => Decision::Begin(Phase::Ended(End::exit(code))),
            _ => Decision::WrongState,
        })
    }

    /// Removes a machine entirely, in any state, as if deleted outside runctl.
    pub fn vanish(&self, id: &str) -> Result<(), SimError> {
        let num = self.find(id)?;
        self.inner
            .lock()
            .store
            .remove(num)
            .map(|_| ())
            .ok_or_else(|| SimError::NotFound { id: id.to_string() })
    }

    /// Adds a running machine that no create call made; returns its id.
    pub fn insert_foreign(&self, foreign: ForeignMachine) -> String {
        let now = self.now();
        let mut inner = self.inner.lock();
        let num = inner.store.next_num();
        let spec = MachineSpec {
            instance_type: Some(foreign.machine_type.clone()),
            ..MachineSpec::default()
        };
        let rec = Record {
            num,
            name: foreign.name.unwrap_or_else(|| format!("foreign-{num}")),
            tags: Record::tags_with_owner(
                &foreign.tags,
                &foreign.installation,
                foreign.owner_uid.as_deref(),
                foreign.attempt,
            ),
            installation: foreign.installation,
            region: foreign.region.unwrap_or_else(|| self.config.region.clone()),
            owner_uid: foreign.owner_uid,
            attempt: foreign.attempt,
            machine_type: foreign.machine_type,
            spot: false,
            price_per_hour: self.config.price(&spec),
            created: now,
            run: None,
            workload: None,
            foreign: true,
            segments: vec![Segment {
                at: now,
                phase: Phase::Launch {
                    provision_ms: 0,
                    running_ms: 0,
                    run: None,
                },
            }],
        };
        let id = rec.id();
        inner.store.insert(rec);
        id
    }

    // ---- inspection ----

    /// Every machine still known (ended ones until their retention passes), oldest first.
    pub fn machines(&self) -> Vec<SimMachine> {
        let now = self.now();
        let mut inner = self.inner.lock();
        inner.store.prune(now, self.config.retain_ms);
        inner
            .store
            .all()
            .into_iter()
            .map(|r| self.snapshot(r, now))
            .collect()
    }

    /// One machine, if known.
    pub fn machine(&self, id: &str) -> Option<SimMachine> {
        let now = self.now();
        let num = parse_id(id)?;
        let mut inner = self.inner.lock();
        let rec = inner.store.get_mut(num, now, self.config.retain_ms)?;
        Some(self.snapshot(rec, now))
    }

    /// The workload machine `id` received at create (env values included), for tests that
    /// check what reached the machine.
    pub fn workload(&self, id: &str) -> Option<crate::provider::Workload> {
        let num = parse_id(id)?;
        let now = self.now();
        let retain = self.config.retain_ms;
        self.inner
            .lock()
            .store
            .get_mut(num, now, retain)
            .and_then(|r| r.workload.clone())
    }

    /// Machines of owner `uid` that still bill (any installation and region).
    pub fn live_count(&self, owner_uid: &str) -> usize {
        self.inner.lock().store.live_of_owner(owner_uid, self.now())
    }

    /// Machines that still bill.
    pub fn live_total(&self) -> usize {
        let now = self.now();
        self.inner
            .lock()
            .store
            .all()
            .into_iter()
            .filter(|r| !r.status(now).state.is_final())
            .count()
    }

    /// What the simulated API was asked so far.
    pub fn stats(&self) -> SimStats {
        self.inner.lock().stats.clone()
    }

    /// Forgets every machine, pending fault, capacity limit and counter, and reseeds; the clock
    /// keeps its time.
    pub fn reset(&self) {
        let mut inner = self.inner.lock();
        inner.store = Store::default();
        inner.faults.clear();
        inner.stats = SimStats::default();
        inner.capacity.clear();
        inner.rng = StdRng::seed_from_u64(self.config.seed);
    }

    // ---- the simulated reporting wrapper ----

    /// Counts an exit report the wrapper gave up on.
    pub(super) fn count_exit_report_given_up(&self) {
        self.inner.lock().stats.exit_reports_given_up += 1;
    }

    /// True for the one caller that gets to start the wrapper task.
    pub(super) fn claim_reporter(&self) -> bool {
        !self.reporter.swap(true, Ordering::SeqCst)
    }

    /// The reports the wrappers of all machines should send now (see [`super::wrapper`]).
    pub(super) fn due_reports(
        &self,
        tracks: &mut HashMap<u64, super::wrapper::Track>,
    ) -> Vec<super::wrapper::Post> {
        let now = self.now();
        let inner = self.inner.lock();
        super::wrapper::collect(
            inner.store.iter(),
            tracks,
            now,
            self.config.report_tick_ms,
            self.config.heartbeat_ms_per_second,
        )
    }

    // ---- the provider's calls ----

    /// Runs one API call: latency, counting, injected faults, then `f` under the lock.
    pub(super) async fn call<T>(
        &self,
        op: SimOp,
        f: impl FnOnce(&Self, &mut Inner, SimMillis) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        if self.config.api_latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.config.api_latency_ms)).await;
        }
        let now = self.now();
        let mut inner = self.inner.lock();
        *inner.stats.calls.entry(op).or_default() += 1;
        let fault = inner.faults.take(op);
        if let Some(fault) = fault {
            inner.stats.faults_injected += 1;
            if !fault.takes_effect() {
                return Err(fault.error(op));
            }
        }
        let result = f(self, &mut inner, now);
        match fault {
            Some(fault) => Err(fault.error(op)),
            None => result,
        }
    }

    /// `create` for a provider bound to `installation` and `region`.
    pub(super) async fn create(
        &self,
        installation: &str,
        region: &str,
        key: &ResourceKey,
        spec: &MachineSpec,
    ) -> Result<Machine, ProviderError> {
        let owner = OwnerKey {
            installation: installation.to_string(),
            region: region.to_string(),
            uid: key.uid.clone(),
            attempt: key.attempt,
        };
        self.call(SimOp::Create, |cloud, inner, now| {
            validate(region, spec)?;
            let run = timeline::workload_run(spec.workload.as_ref())
                .map_err(|message| ProviderError::InvalidSpec { message })?;
            let retain = cloud.config.retain_ms;
            if let Some(rec) = inner.store.by_key(&owner, now, retain) {
                if rec.machine_type != spec.machine_type() || rec.spot != spec.spot {
                    return Err(ProviderError::InvalidSpec {
                        message: format!(
                            "sim: create token of {} reused with different parameters (IdempotentParameterMismatch)",
                            rec.id()
                        ),
                    });
                }
                let machine = rec.to_machine(now, &cloud.clock);
                inner.stats.duplicates_prevented += 1;
                return Ok(machine);
            }
            if let Err(e) = cloud.check_capacity(inner, spec, now) {
                inner.stats.capacity_rejections += 1;
                return Err(e);
            }
            let jitter = cloud.jitter(inner);
            let num = inner.store.next_num();
            let rec = cloud.new_record(num, Placement { installation, region, key }, spec, run, jitter, now);
            let machine = rec.to_machine(now, &cloud.clock);
            inner.store.insert(rec);
            inner.stats.machines_created += 1;
            Ok(machine)
        })
        .await
    }

    /// `observe` for a provider bound to `installation` and `region`.
    pub(super) async fn observe(
        &self,
        installation: &str,
        region: &str,
        key: &ResourceKey,
        known_id: Option<&str>,
    ) -> Result<Option<Machine>, ProviderError> {
        let owner = OwnerKey {
            installation: installation.to_string(),
            region: region.to_string(),
            uid: key.uid.clone(),
            attempt: key.attempt,
        };
        self.call(SimOp::Observe, |cloud, inner, now| {
            let store = &mut inner.store;
            let retain = cloud.config.retain_ms;
            let rec = match known_id {
                Some(id) => parse_id(id)
                    .and_then(|n| store.get_mut(n, now, retain))
                    .filter(|r| r.region == region),
                None => store.by_key(&owner, now, retain),
            };
            Ok(rec.map(|r| r.to_machine(now, &cloud.clock)))
        })
        .await
    }

    /// `list` for a provider bound to `installation` and `region`.
    pub(super) async fn list(
        &self,
        installation: &str,
        region: &str,
    ) -> Result<Vec<Machine>, ProviderError> {
        self.call(SimOp::List, |cloud, inner, now| {
            let store = &mut inner.store;
            let recs = store.scope(installation, region, now, cloud.config.retain_ms);
            Ok(recs
                .into_iter()
                .map(|r| r.to_machine(now, &cloud.clock))
                .collect())
        })
        .await
    }

    /// `terminate` for a provider bound to `region`.
    pub(super) async fn terminate(
        &self,
        region: &str,
        id: &str,
    ) -> Result<Termination, ProviderError> {
        self.call(SimOp::Terminate, |cloud, inner, now| {
            let store = &mut inner.store;
            let Some(rec) =
                parse_id(id).and_then(|n| store.get_mut(n, now, cloud.config.retain_ms))
            else {
                return Ok(Termination::Gone);
            };
            if rec.region != region {
                return Ok(Termination::Gone);
            }
            let status = rec.status(now);
            match status.state {
                s if s.is_final() => return Ok(Termination::Gone),
                ResourceState::Terminating => return Ok(Termination::InProgress),
                _ => {}
            }
            let seg = Segment {
                at: now,
                phase: Phase::Terminating {
                    duration_ms: cloud.config.terminate_ms,
                },
            };
            rec.segments.push(seg);
            Ok(if rec.status(now).state.is_final() {
                Termination::Gone
            } else {
                Termination::InProgress
            })
        })
        .await
    }

    // ---- helpers ----

    fn check_capacity(
        &self,
        inner: &mut Inner,
        spec: &MachineSpec,
        now: SimMillis,
    ) -> Result<(), ProviderError> {
        let price = self.config.price(spec);
        if spec.spot
            && let Some(max) = spec.max_price_per_hour
            && max < price
        {
            return Err(ProviderError::Capacity {
                message: format!(
                    "sim: spot price {price:.4}/h of {} is above the maximum {max:.4}/h",
                    spec.machine_type()
                ),
            });
        }
        let machine_type = spec.machine_type();
        if let Some(&limit) = inner.capacity.get(&machine_type)
            && inner.store.live_of_type(&machine_type, now) >= limit as usize
        {
            return Err(ProviderError::Capacity {
                message: format!("sim: insufficient capacity for {machine_type} (limit {limit})"),
            });
        }
        Ok(())
    }

    fn jitter(&self, inner: &mut Inner) -> u64 {
        match self.config.jitter_ms {
            0 => 0,
            max => inner.rng.random_range(0..=max),
        }
    }

    fn new_record(
        &self,
        num: u64,
        at: Placement<'_>,
        spec: &MachineSpec,
        run: Option<timeline::WorkloadRun>,
        jitter: u64,
        now: SimMillis,
    ) -> Record {
        let phase = Phase::Launch {
            provision_ms: self.config.provision_ms + jitter,
            running_ms: self.config.running_ms() + jitter,
            run,
        };
        let mut tags = Record::tags_with_owner(
            &spec.tags,
            at.installation,
            Some(&at.key.uid),
            Some(at.key.attempt),
        );
        tags.extend(at.key.tags());
        Record {
            num,
            name: at.key.machine_name(),
            installation: at.installation.to_string(),
            region: at.region.to_string(),
            owner_uid: Some(at.key.uid.clone()),
            attempt: Some(at.key.attempt),
            tags,
            machine_type: spec.machine_type(),
            spot: spec.spot,
            price_per_hour: self.config.price(spec),
            created: now,
            run,
            workload: spec.workload.clone(),
            foreign: false,
            segments: vec![Segment { at: now, phase }],
        }
    }

    fn snapshot(&self, r: &Record, now: SimMillis) -> SimMachine {
        let s = r.status(now);
        SimMachine {
            id: r.id(),
            name: r.name.clone(),
            installation: r.installation.clone(),
            region: r.region.clone(),
            owner_uid: r.owner_uid.clone(),
            attempt: r.attempt,
            tags: r.tags.clone(),
            machine_type: r.machine_type.clone(),
            spot: r.spot,
            price_per_hour: r.price_per_hour,
            created_at: self.clock.timestamp(r.created),
            state: s.state,
            reason: s.reason,
            exit_code: s.exit_code,
            timeline: timeline::timeline(&r.segments, now),
            foreign: r.foreign,
        }
    }

    fn find(&self, id: &str) -> Result<u64, SimError> {
        parse_id(id).ok_or_else(|| SimError::NotFound { id: id.to_string() })
    }

    /// Applies a test event: `decide` sees the machine and its state now.
    fn event(
        &self,
        id: &str,
        action: &'static str,
        decide: impl FnOnce(&Record, Status) -> Decision,
    ) -> Result<(), SimError> {
        let num = self.find(id)?;
        let now = self.now();
        let mut inner = self.inner.lock();
        let rec = inner
            .store
            .get_mut(num, now, self.config.retain_ms)
            .ok_or_else(|| SimError::NotFound { id: id.to_string() })?;
        let status = rec.status(now);
        let decision = if status.state.is_final() {
            Decision::WrongState
        } else {
            decide(rec, status)
        };
        match decision {
            Decision::Begin(phase) => rec.segments.push(Segment { at: now, phase }),
            Decision::Nothing => {}
            Decision::WrongState => {
                return Err(SimError::WrongState {
                    id: id.to_string(),
                    action,
                    state: status.state,
                });
            }
            Decision::NotSpot => return Err(SimError::NotSpot { id: id.to_string() }),
        }
        Ok(())
    }
}

/// Where a new machine goes and whose it is.
struct Placement<'a> {
    installation: &'a str,
    region: &'a str,
    key: &'a ResourceKey,
}

/// What a test event does to a machine.
enum Decision {
    /// A new phase starts now.
    Begin(Phase),
    /// Already so.
    Nothing,
    /// The event does not apply in this state.
    WrongState,
    /// Only spot machines are interrupted.
    NotSpot,
}

/// Checks what the simulated API would reject before it looks at existing machines.
fn validate(region: &str, spec: &MachineSpec) -> Result<(), ProviderError> {
    if let Some(r) = &spec.region
        && r != region
    {
        return Err(ProviderError::InvalidSpec {
            message: format!(
                "sim: machine spec asks for region {r} but this provider serves {region}"
            ),
        });
    }
    if spec
        .max_price_per_hour
        .is_some_and(|p| !p.is_finite() || p < 0.0)
    {
        return Err(ProviderError::InvalidSpec {
            message: "sim: maxPricePerHour must be a non-negative number".into(),
        });
    }
    Ok(())
}
