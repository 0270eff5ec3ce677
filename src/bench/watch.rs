//! The benchmark's own view of status changes: when each CloudResource first showed each state,
//! and which TrainingJobs succeeded, from two watches (what a user's `kubectl get -w` sees).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use jiff::Timestamp;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::crd::CloudResource;
use crate::crd::training_job::{JobPhase, TrainingJob};
use crate::provider::ResourceState;

/// First sightings, filled by background watches until the token is cancelled.
#[derive(Clone, Default)]
pub struct Seen {
    states: Arc<Mutex<HashMap<(String, ResourceState), Timestamp>>>,
    succeeded: Arc<Mutex<HashSet<String>>>,
}

impl Seen {
    /// Starts both watches in `namespace`.
    pub fn start(client: Client, namespace: &str, stop: CancellationToken) -> Self {
        let seen = Self::default();
        let crs: Api<CloudResource> = Api::namespaced(client.clone(), namespace);
        let s = seen.clone();
        let token = stop.clone();
        tokio::spawn(async move {
            let stream = watcher(crs, watcher::Config::default()).applied_objects();
            futures::pin_mut!(stream);
            loop {
                let next = tokio::select! {
                    _ = token.cancelled() => return,
                    n = stream.next() => n,
                };
                match next {
                    Some(Ok(cr)) => {
                        if let Some(state) = cr.status.as_ref().and_then(|st| st.state) {
                            s.states
                                .lock()
                                .entry((cr.name_any(), state))
                                .or_insert_with(Timestamp::now);
                        }
                    }
                    Some(Err(_)) => {}
                    None => return,
                }
            }
        });
        let jobs: Api<TrainingJob> = Api::namespaced(client, namespace);
        let s = seen.clone();
        tokio::spawn(async move {
            let stream = watcher(jobs, watcher::Config::default()).applied_objects();
            futures::pin_mut!(stream);
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => return,
                    n = stream.next() => n,
                };
                match next {
                    Some(Ok(job)) => {
                        if job.status.as_ref().and_then(|st| st.phase) == Some(JobPhase::Succeeded)
                        {
                            s.succeeded.lock().insert(job.name_any());
                        }
                    }
                    Some(Err(_)) => {}
                    None => return,
                }
            }
        });
        seen
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
