//! The benchmark's own view of status changes: when each CloudResource first showed each state,
//! which TrainingJobs succeeded, and which objects were deleted, from two watches (what a user's
//! `kubectl get -w` sees).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use jiff::Timestamp;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::crd::CloudResource;
use crate::crd::training_job::{JobPhase, TrainingJob};
use crate::provider::ResourceState;

/// First sightings, filled by background watches until the token is cancelled.
#[derive(Clone, Default)]
pub struct Seen {
    states: Arc<Mutex<HashMap<(String, ResourceState), Timestamp>>>,
    succeeded: Arc<Mutex<HashSet<String>>>,
    deleted_jobs: Arc<Mutex<HashSet<String>>>,
    deleted_crs: Arc<Mutex<HashSet<String>>>,
}

impl Seen {
    /// Starts both watches in `namespace`.
    pub fn start(client: Client, namespace: &str, stop: CancellationToken) -> Self {
        let seen = Self::default();
        let crs: Api<CloudResource> = Api::namespaced(client.clone(), namespace);
        let (s, d) = (seen.clone(), seen.clone());
        follow(
            crs,
            stop.clone(),
            move |cr: &CloudResource| {
                if let Some(state) = cr.status.as_ref().and_then(|st| st.state) {
                    s.states
                        .lock()
                        .entry((cr.name_any(), state))
                        .or_insert_with(Timestamp::now);
                }
            },
            move |cr| {
                d.deleted_crs.lock().insert(cr.name_any());
            },
        );
        let jobs: Api<TrainingJob> = Api::namespaced(client, namespace);
        let (s, d) = (seen.clone(), seen.clone());
        follow(
            jobs,
            stop,
            move |job: &TrainingJob| {
                if job.status.as_ref().and_then(|st| st.phase) == Some(JobPhase::Succeeded) {
                    s.succeeded.lock().insert(job.name_any());
                }
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

    /// TrainingJobs seen succeeded.
    pub fn succeeded(&self) -> usize {
        self.succeeded.lock().len()
    }
}

/// Watches `api` until `stop`, calling `applied` for every added or changed object and `deleted`
/// for every deletion event.
fn follow<K>(
    api: Api<K>,
    stop: CancellationToken,
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
                Some(Ok(Event::Init | Event::InitDone) | Err(_)) => {}
                None => return,
            }
        }
    });
}
