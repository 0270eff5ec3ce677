//! The fault-injection harness: runs the real CloudResource controller against the API test
//! server and a provider, kills and restarts it at randomized points while provider and API
//! server faults fire, then waits for convergence and checks runctl's promises:
//! no duplicate machine, no orphaned machine, at most one billable machine per CloudResource at
//! any moment (sampled throughout the run), and every object's status matching the provider.
//!
//! Everything random comes from the run's seed ([`scenario::Scenario::from_seed`]); a failing
//! run prints its seed, and `RUNCTL_FAULT_SEED=<seed> RUNCTL_FAULT_RUNS=1` replays it.

#![allow(dead_code)]

pub mod backend;
pub mod scenario;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DeleteParams, PostParams};
use parking_lot::Mutex;
use runctl::crd::CloudResource;
use runctl::crd::cloud_resource::ResourceState;
use runctl_apiserver::WriteFault;

use crate::support::{Running, test_controller_config};
use backend::{Backend, BackendKind, Fixture};
use scenario::{ApiFault, KillPoint, Scenario};

/// How long the final, fault-free operator gets to converge.
const CONVERGE_SECS: u64 = 45;
/// Longest wait for a kill point before killing anyway.
const KILL_POINT_SECS: u64 = 4;

/// What one run found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Faults injected (provider, API server, kills, deletes while down).
    pub faults: usize,
    /// Operator kills.
    pub kills: usize,
    /// Machines made beyond one per CloudResource.
    pub duplicates: usize,
    /// Billable machines without a live CloudResource after convergence.
    pub orphans: usize,
    /// Every broken promise, in words.
    pub violations: Vec<String>,
}

/// Totals over many runs.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Runs.
    pub runs: usize,
    /// Faults injected.
    pub faults: usize,
    /// Operator kills.
    pub kills: usize,
    /// Duplicates found.
    pub duplicates: usize,
    /// Orphans found.
    pub orphans: usize,
    /// Failed runs (seed, violations).
    pub failed: Vec<(u64, Vec<String>)>,
}

impl Summary {
    fn add(&mut self, o: Outcome) {
        self.runs += 1;
        self.faults += o.faults;
        self.kills += o.kills;
        self.duplicates += o.duplicates;
        self.orphans += o.orphans;
        if !o.violations.is_empty() {
            self.failed.push((o.seed, o.violations));
        }
    }

    /// One line for logs and docs.
    pub fn line(&self, backend: &str) -> String {
        format!(
            "{backend}: runs={} faults_injected={} operator_kills={} duplicates={} orphans={} failed_runs={}",
            self.runs,
            self.faults,
            self.kills,
            self.duplicates,
            self.orphans,
            self.failed.len()
        )
    }
}

/// Runs `seeds` with up to `parallel` runs at once (one at a time when the runs share moto)
/// and sums them up.
pub async fn run_many(
    kind: BackendKind,
    seeds: impl Iterator<Item = u64>,
    parallel: usize,
) -> Summary {
    let fixture = Fixture::start(kind).await;
    let parallel = if fixture.parallel_runs() { parallel } else { 1 };
    let mut summary = Summary::default();
    let fixture = &fixture;
    let mut outcomes = futures::stream::iter(seeds)
        .map(|seed| run(fixture, seed))
        .buffer_unordered(parallel.max(1));
    while let Some(o) = outcomes.next().await {
        if !o.violations.is_empty() {
            eprintln!("FAILED {} seed {}: {:?}", kind.name(), o.seed, o.violations);
        }
        summary.add(o);
        if summary.runs % 50 == 0 {
            eprintln!("{}", summary.line(kind.name()));
        }
    }
    summary
}

/// One run of the scenario of `seed`, on a fresh backend from `fixture`.
pub async fn run(fixture: &Fixture, seed: u64) -> Outcome {
    let scenario = Scenario::from_seed(seed, fixture.kind.timeouts());
    let backend = Arc::new(fixture.backend().await);
    let api: Api<CloudResource> = Api::namespaced(backend.env.client.clone(), "default");
    let mut outcome = Outcome {
        seed,
        faults: scenario.fault_count(),
        kills: scenario.lifetimes.len(),
        ..Outcome::default()
    };

    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = tokio::spawn(watch_billing(
        backend.clone(),
        stop.clone(),
        violations.clone(),
    ));

    let mut uids = BTreeMap::new();
    for i in 0..scenario.objects {
        let name = format!("obj-{i}");
        match api
            .create(&PostParams::default(), &backend.manifest(&name))
            .await
        {
            Ok(cr) => {
                uids.insert(name, cr.metadata.uid.unwrap_or_default());
            }
            Err(e) => violations
                .lock()
                .push(format!("creating {name} failed: {e}")),
        }
    }
    let mut deleted = BTreeSet::new();

    for (n, life) in scenario.lifetimes.iter().enumerate() {
        for f in &life.provider_faults {
            backend.inject(*f);
        }
        let mut side_tasks = Vec::new();
        for f in &life.api_faults {
            let faults = backend.env.server().faults();
            match *f {
                ApiFault::Conflicts(k) => {
                    faults.fail_writes(WriteFault::conflict(k).on_resource("cloudresources"))
                }
                ApiFault::ServerErrors(k) => {
                    faults.fail_writes(WriteFault::server_error(k).on_resource("cloudresources"))
                }
                ApiFault::Latency(ms) => faults.set_latency(Duration::from_millis(ms)),
                ApiFault::ExpireWatchesAfter(ms) => {
                    let b = backend.clone();
                    side_tasks.push(tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        b.env.server().faults().expire_watches();
                    }));
                }
            }
        }
        let creates_before = backend.create_calls();
        let op = backend
            .env
            .start_controller(test_controller_config(&format!("life-{n}")));
        if let Some((i, ms)) = life.delete_during {
            let name = format!("obj-{i}");
            deleted.insert(name.clone());
            let api = api.clone();
            side_tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let _ = api.delete(&name, &DeleteParams::default()).await;
            }));
        }
        wait_kill_point(&backend, &api, life.kill, creates_before).await;
        tokio::time::sleep(Duration::from_millis(life.kill_jitter_ms)).await;
        kill(op);
        for t in side_tasks {
            t.abort();
        }
        backend.env.server().faults().clear();
        if let Some(i) = life.delete_while_down {
            let name = format!("obj-{i}");
            deleted.insert(name.clone());
            let _ = api.delete(&name, &DeleteParams::default()).await;
        }
    }
    // A delete sent during a lifetime may have been cut short by the kill: send it again.
    for name in &deleted {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }

    backend.clear_faults();
    backend.env.server().faults().clear();
    let last = backend
        .env
        .start_controller(test_controller_config("final"));
    let mut last_problems = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(CONVERGE_SECS);
    let converged = loop {
        match check(&backend, &api, &deleted).await {
            Ok(()) => break true,
            Err(p) => last_problems = p,
        }
        if tokio::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    last.stop().await;
    stop.store(true, Ordering::SeqCst);
    let _ = monitor.await;

    let mut v = std::mem::take(&mut *violations.lock());
    if !converged {
        v.push(format!(
            "did not converge within {CONVERGE_SECS}s: {last_problems:?}"
        ));
    }
    // Duplicates: more than one machine ever made for one object (no scenario starts a new
    // attempt, so one machine per object is the whole truth).
    let mut per_owner: HashMap<String, usize> = HashMap::new();
    for m in backend.all_machines().await {
        if let Some(o) = m.owner {
            *per_owner.entry(o).or_default() += 1;
        }
    }
    for (name, uid) in &uids {
        let n = per_owner.get(uid).copied().unwrap_or(0);
        if n > 1 {
            outcome.duplicates += n - 1;
            v.push(format!("{name} ({uid}) got {n} machines"));
        }
        // A converged, undeleted object runs on a machine, so the provider's records must show
        // it: this guards the counts above against a blind view of the provider.
        if n == 0 && converged && !deleted.contains(name) {
            v.push(format!(
                "{name} ({uid}) runs, but no provider record shows its machine"
            ));
        }
    }
    let live: BTreeSet<String> = match api.list(&Default::default()).await {
        Ok(l) => l.items.into_iter().filter_map(|o| o.metadata.uid).collect(),
        Err(e) => {
            v.push(format!("listing objects failed: {e}"));
            BTreeSet::new()
        }
    };
    for m in backend.all_machines().await {
        if m.billable && !m.terminating && !m.owner.as_ref().is_some_and(|o| live.contains(o)) {
            outcome.orphans += 1;
            v.push(format!("orphaned machine {} of owner {:?}", m.id, m.owner));
        }
    }
    outcome.violations = v;
    outcome
}

fn kill(op: Running) {
    op.kill();
}

/// Waits until the kill point is reached (bounded).
async fn wait_kill_point(
    backend: &Backend,
    api: &Api<CloudResource>,
    point: KillPoint,
    creates_before: u64,
) {
    if let KillPoint::After(ms) = point {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(KILL_POINT_SECS);
    while tokio::time::Instant::now() < deadline {
        let reached = match point {
            KillPoint::CreateCalled => backend.create_calls() > creates_before,
            KillPoint::IntentRecorded | KillPoint::IdRecorded => {
                match api.list(&Default::default()).await {
                    Ok(l) => l.items.iter().any(|o| {
                        let s = o.status.clone().unwrap_or_default();
                        match point {
                            KillPoint::IntentRecorded => {
                                s.pending_create.is_some() && s.provider_id.is_none()
                            }
                            _ => s.provider_id.is_some(),
                        }
                    }),
                    Err(_) => false,
                }
            }
            KillPoint::After(_) => true,
        };
        if reached {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Samples the provider throughout the run: never two billable machines for one owner.
async fn watch_billing(
    backend: Arc<Backend>,
    stop: Arc<AtomicBool>,
    violations: Arc<Mutex<Vec<String>>>,
) {
    while !stop.load(Ordering::SeqCst) {
        let mut per_owner: HashMap<String, Vec<String>> = HashMap::new();
        for m in backend.all_machines().await {
            if let (true, Some(o)) = (m.billable, m.owner) {
                per_owner.entry(o).or_default().push(m.id);
            }
        }
        for (owner, ids) in per_owner {
            if ids.len() > 1 {
                let msg = format!(
                    "owner {owner} had {} billable machines at once: {ids:?}",
                    ids.len()
                );
                let mut v = violations.lock();
                if !v.contains(&msg) {
                    v.push(msg);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The converged state: deleted objects are gone, every other object is Running on exactly the
/// machine the provider reports for it, and nothing else bills.
async fn check(
    backend: &Backend,
    api: &Api<CloudResource>,
    deleted: &BTreeSet<String>,
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let objects = api
        .list(&Default::default())
        .await
        .map_err(|e| vec![format!("list objects: {e}")])?
        .items;
    let machines = backend
        .list()
        .await
        .map_err(|e| vec![format!("list machines: {e}")])?;
    let by_id: HashMap<&str, _> = machines.iter().map(|m| (m.id.as_str(), m)).collect();
    let mut live = BTreeSet::new();
    for o in &objects {
        let name = o.metadata.name.clone().unwrap_or_default();
        let uid = o.metadata.uid.clone().unwrap_or_default();
        if deleted.contains(&name) {
            problems.push(format!("{name} not deleted yet"));
            continue;
        }
        live.insert(uid.clone());
        let s = o.status.clone().unwrap_or_default();
        let Some(id) = s.provider_id.as_deref() else {
            problems.push(format!(
                "{name} has no provider id: {:?}/{:?}",
                s.state, s.reason
            ));
            continue;
        };
        match by_id.get(id) {
            None => problems.push(format!("{name}: provider does not list {id}")),
            Some(m) => {
                if m.owner_uid.as_deref() != Some(uid.as_str()) {
                    problems.push(format!("{name}: machine {id} belongs to {:?}", m.owner_uid));
                }
                if m.state != ResourceState::Running || s.state != Some(ResourceState::Running) {
                    problems.push(format!(
                        "{name}: status {:?} vs provider {:?}",
                        s.state, m.state
                    ));
                }
            }
        }
    }
    for m in backend.all_machines().await {
        if m.billable && !m.terminating && !m.owner.as_ref().is_some_and(|o| live.contains(o)) {
            problems.push(format!(
                "machine {} of {:?} bills without a live object",
                m.id, m.owner
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
