//! The benchmark's own view of the objects, from two watches (what a user's `kubectl get -w`
//! sees): when each CloudResource first showed each state, the last phase (and reason) each
//! TrainingJob showed, which objects were deleted, and how often a watch had to list again
//! (after a 410 Gone the watcher relists everything: at 10,000 objects a memory spike).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use jiff::Timestamp;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use runctl::crd::CloudResource;
use runctl::crd::training_job::{JobPhase, TrainingJob};
use runctl::provider::ResourceState;

/// The last phase a job showed, with its reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobOutcome {
    /// Phase.
    pub phase: JobPhase,
    /// `status.reason`.
    pub reason: Option<String>,
    /// `status.message`.
    pub message: Option<String>,
}

/// What the watches saw, filled by background tasks until the token is cancelled.
#[derive(Clone, Default)]
pub struct Seen {
    states: Arc<Mutex<HashMap<(String, ResourceState), Timestamp>>>,
    jobs: Arc<Mutex<HashMap<String, JobOutcome>>>,
    deleted_jobs: Arc<Mutex<HashSet<String>>>,
    deleted_crs: Arc<Mutex<HashSet<String>>>,
    job_lists: Arc<AtomicU64>,
    cr_lists: Arc<AtomicU64>,
}

impl Seen {
    /// Starts both watches, in every namespace (the benchmark's cluster holds its objects only).
    pub fn start(client: Client, stop: CancellationToken) -> Self {
        let seen = Self::default();
        let crs: Api<CloudResource> = Api::all(client.clone());
        let (s, d) = (seen.clone(), seen.clone());
        follow(
            crs,
            stop.clone(),
            seen.cr_lists.clone(),
            move |cr: &CloudResource| {
                // Only the states the figures use (latency to Running and to Terminated, the
                // count of Running): the driver's bookkeeping counts in the operator's RSS.
                if let Some(state) = cr.status.as_ref().and_then(|st| st.state)
                    && matches!(state, ResourceState::Running | ResourceState::Terminated)
                {
                    s.states
                        .lock()
                        .entry((cr.name_any(), state))
                        .or_insert_with(Timestamp::now);
                }
            },
            move |cr| {
                // Gone means its machine is gone (its finalizer is removed only then): the
                // machine's end is known in the cluster, also where no status said Terminated
                // (a deleted object's controller writes none before letting it go).
                d.states
                    .lock()
                    .entry((cr.name_any(), ResourceState::Terminated))
                    .or_insert_with(Timestamp::now);
                d.deleted_crs.lock().insert(cr.name_any());
            },
        );
        let jobs: Api<TrainingJob> = Api::all(client);
        let (s, d) = (seen.clone(), seen.clone());
        follow(
            jobs,
            stop,
            seen.job_lists.clone(),
            move |job: &TrainingJob| {
                let Some(status) = job.status.as_ref() else {
                    return;
                };
                let Some(phase) = status.phase else { return };
                let mut jobs = s.jobs.lock();
                // A final phase never changes; a stale event must not overwrite it.
                if jobs
                    .get(&job.name_any())
                    .is_some_and(|o| o.phase.is_terminal())
                {
                    return;
                }
                jobs.insert(
                    job.name_any(),
                    JobOutcome {
                        phase,
                        reason: status.reason.clone(),
                        message: status.message.clone(),
                    },
                );
            },
            move |job| {
                d.deleted_jobs.lock().insert(job.name_any());
            },
        );
        seen
    }

    /// TrainingJobs and CloudResources seen deleted.
    pub fn deleted(&self) -> (usize, usize) {
        (
            self.deleted_jobs.lock().len(),
            self.deleted_crs.lock().len(),
        )
    }

    /// CloudResources seen in `state`.
    pub fn count(&self, state: ResourceState) -> usize {
        self.states
            .lock()
            .keys()
            .filter(|(_, s)| *s == state)
            .count()
    }

    /// When CloudResource `name` was first seen in `state`.
    pub fn first(&self, name: &str, state: ResourceState) -> Option<Timestamp> {
        self.states.lock().get(&(name.to_string(), state)).copied()
    }

    /// The last phase each job showed.
    pub fn outcomes(&self) -> HashMap<String, JobOutcome> {
        self.jobs.lock().clone()
    }

    /// Jobs by the last phase they showed.
    pub fn phases(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for o in self.jobs.lock().values() {
            *out.entry(format!("{:?}", o.phase)).or_default() += 1;
        }
        out
    }

    /// Full lists the watches of TrainingJobs and of CloudResources made so far (each starts
    /// with one; more are relists after a 410 or a broken stream).
    pub fn lists(&self) -> (u64, u64) {
        (
            self.job_lists.load(Ordering::Relaxed),
            self.cr_lists.load(Ordering::Relaxed),
        )
    }

    /// Jobs seen in a final phase.
    pub fn finished(&self) -> usize {
        self.jobs
            .lock()
            .values()
            .filter(|o| o.phase.is_terminal())
            .count()
    }
}

/// Watches `api` until `stop`, counting each (re)list in `lists` and calling `applied` for every
/// added or changed object (those of a relist included) and `deleted` for every deletion event.
fn follow<K>(
    api: Api<K>,
    stop: CancellationToken,
    lists: Arc<AtomicU64>,
    applied: impl Fn(&K) + Send + 'static,
    deleted: impl Fn(&K) + Send + 'static,
) where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default());
        futures::pin_mut!(stream);
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                n = stream.next() => n,
            };
            match next {
                Some(Ok(Event::Apply(obj) | Event::InitApply(obj))) => applied(&obj),
                Some(Ok(Event::Delete(obj))) => deleted(&obj),
                Some(Ok(Event::Init)) => {
                    lists.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Event::InitDone) | Err(_)) => {}
                None => return,
            }
        }
    });
}
