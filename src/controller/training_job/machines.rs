//! The CloudResources of every job, kept in memory from the controller's CloudResource watch and
//! indexed by job, so that a reconcile finds its job's machines without a list request (a label
//! list scans every CloudResource on the API server: at 10,000 jobs, per reconcile).
//!
//! Only [`MachineView`]s are kept (a few hundred bytes each), and only of objects a TrainingJob
//! controls (ownerReference with `controller: true`, kind `TrainingJob`, the job's name); a copied
//! label alone does not make an object a job's.
//!
//! Read-your-writes: a CloudResource the controller has just applied may not have come through the
//! watch yet, and planning without it would call the attempt lost. [`MachineIndex::expect`]
//! remembers each applied name until the watch shows it; [`MachineIndex::lookup`] returns such names
//! as `missing`, and the reconcile reads them directly.

use std::collections::{BTreeSet, HashMap};

use kube::ResourceExt;
use kube::runtime::watcher;
use parking_lot::Mutex;

use super::view::{LABEL_JOB, MachineView};
use crate::crd::cloud_resource::CloudResource;

/// A job, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    /// The job's namespace.
    pub namespace: String,
    /// The job's name.
    pub name: String,
}

impl JobKey {
    /// Job `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// A job's views, sorted by name. Most jobs have one: a `Vec` grown one element at a time holds
/// it in one allocation of one view, where a `BTreeMap` would allocate a node for eleven (about 3
/// KiB per job at 10,000 jobs) and a `Vec`'s default growth room for four (about 1 KiB).
#[derive(Debug, Default)]
struct Views(Vec<MachineView>);

impl Views {
    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|v| v.name.as_str().cmp(name))
    }

    fn get(&self, name: &str) -> Option<&MachineView> {
        self.position(name).ok().map(|i| &self.0[i])
    }

    fn contains(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Inserts or replaces the view of `view.name`.
    fn insert(&mut self, view: MachineView) {
        match self.position(&view.name) {
            Ok(i) => self.0[i] = view,
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, view);
            }
        }
    }

    fn remove(&mut self, name: &str) -> bool {
        match self.position(name) {
            Ok(i) => {
                self.0.remove(i);
                true
            }
            Err(_) => false,
        }
    }
}

type ByJob = HashMap<JobKey, Views>;

/// What the index knows of one job.
#[derive(Debug, Default, PartialEq)]
pub struct Lookup {
    /// Views of the job's CloudResources, by attempt order of their names.
    pub views: Vec<MachineView>,
    /// Applied by this controller but not seen through the watch yet: read them directly.
    pub missing: Vec<String>,
}

#[derive(Default)]
struct Inner {
    by_job: ByJob,
    /// Objects of a relist in progress (between `Init` and `InitDone`).
    relist: Option<ByJob>,
    expected: HashMap<JobKey, BTreeSet<String>>,
    /// Deleted by this controller, until the watch shows them gone: they count as `deleting`
    /// even when an event from before the delete comes through after it (which would otherwise
    /// have the next pass release them again: a second delete of the object and of its token
    /// Secret).
    released: HashMap<JobKey, BTreeSet<String>>,
}

/// The index. Shared between the watch stream (writer) and reconciles (readers).
pub struct MachineIndex {
    inner: Mutex<Inner>,
    /// True once the watch's first list is complete: before it, a job whose CloudResources
    /// are not in the index yet would look as if they were gone.
    listed: tokio::sync::watch::Sender<bool>,
}

impl Default for MachineIndex {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            listed: tokio::sync::watch::Sender::new(false),
        }
    }
}

/// The job `cr` belongs to and its view, when a TrainingJob controls it.
pub fn owned_view(cr: &CloudResource) -> Option<(JobKey, MachineView)> {
    let job = cr.labels().get(LABEL_JOB)?;
    let controlled = cr
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.kind == "TrainingJob" && &o.name == job);
    if !controlled {
        return None;
    }
    let view = MachineView::of(cr)?;
    Some((
        JobKey::new(cr.namespace().unwrap_or_default(), job.clone()),
        view,
    ))
}

fn key_of(cr: &CloudResource) -> Option<JobKey> {
    Some(JobKey::new(
        cr.namespace().unwrap_or_default(),
        cr.labels().get(LABEL_JOB)?.clone(),
    ))
}

/// Inserts or updates `cr`; true when what the job sees of it changed.
fn insert(map: &mut ByJob, cr: &CloudResource) -> bool {
    let name = cr.name_any();
    match owned_view(cr) {
        Some((key, view)) => {
            let views = map.entry(key).or_default();
            if views.get(&name) == Some(&view) {
                return false;
            }
            views.insert(view);
            true
        }
        // No longer a job's (label or owner changed): drop what was known.
        None => match key_of(cr) {
            Some(key) => remove(map, &key, &name),
            None => false,
        },
    }
}

/// Removes one object; true when it was known.
fn remove(map: &mut ByJob, key: &JobKey, name: &str) -> bool {
    let Some(views) = map.get_mut(key) else {
        return false;
    };
    let was = views.remove(name);
    if views.0.is_empty() {
        map.remove(key);
    }
    was
}

impl MachineIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one watch event. Returns whether the event may matter to a job: false for an
    /// object whose view did not change (its controller's bookkeeping, a cost refresh that
    /// rounds the same), so that it does not wake the job.
    pub fn apply(&self, event: &watcher::Event<CloudResource>) -> bool {
        let mut inner = self.inner.lock();
        match event {
            watcher::Event::Apply(cr) => insert(&mut inner.by_job, cr),
            watcher::Event::Delete(cr) => {
                if let Some(key) = key_of(cr) {
                    remove(&mut inner.by_job, &key, &cr.name_any());
                }
                true
            }
            watcher::Event::Init => {
                inner.relist = Some(ByJob::new());
                true
            }
            watcher::Event::InitApply(cr) => {
                let relist = inner.relist.get_or_insert_with(ByJob::new);
                insert(relist, cr);
                true
            }
            watcher::Event::InitDone => {
                if let Some(fresh) = inner.relist.take() {
                    inner.by_job = fresh;
                }
                self.listed.send_replace(true);
                true
            }
        }
    }

    /// Waits until the watch's first list is in the index (at once afterwards).
    pub async fn listed(&self) {
        let mut rx = self.listed.subscribe();
        // The sender lives as long as the index, so the wait only ends with the list.
        let _ = rx.wait_for(|listed| *listed).await;
    }

    /// Whether the watch's first list is in the index.
    pub fn is_listed(&self) -> bool {
        *self.listed.borrow()
    }

    /// Remembers that CloudResource `name` of `job` was applied.
    pub fn expect(&self, job: &JobKey, name: &str) {
        self.inner
            .lock()
            .expected
            .entry(job.clone())
            .or_default()
            .insert(name.to_string());
    }

    /// Forgets an expectation (the object turned out to be gone).
    pub fn forget_expected(&self, job: &JobKey, name: &str) {
        let mut inner = self.inner.lock();
        if let Some(names) = inner.expected.get_mut(job) {
            names.remove(name);
            if names.is_empty() {
                inner.expected.remove(job);
            }
        }
    }

    /// Forgets everything expected of a job (it is gone).
    pub fn forget_job(&self, job: &JobKey) {
        let mut inner = self.inner.lock();
        inner.expected.remove(job);
        inner.released.remove(job);
    }

    /// Remembers that CloudResource `name` of `job` was deleted (the delete call succeeded).
    pub fn released(&self, job: &JobKey, name: &str) {
        self.inner
            .lock()
            .released
            .entry(job.clone())
            .or_default()
            .insert(name.to_string());
    }

    /// The job's CloudResources as the watch shows them, and the applied ones it does not show
    /// yet. Expectations the watch has met are dropped.
    pub fn lookup(&self, job: &JobKey) -> Lookup {
        let mut inner = self.inner.lock();
        let Inner {
            by_job,
            expected,
            released,
            ..
        } = &mut *inner;
        let known = by_job.get(job);
        let mut views: Vec<MachineView> = known.map(|v| v.0.clone()).unwrap_or_default();
        if let Some(names) = released.get_mut(job) {
            // Gone from the watch: forgotten.
            names.retain(|n| known.is_some_and(|k| k.contains(n)));
            for v in views.iter_mut().filter(|v| names.contains(&v.name)) {
                v.deleting = true;
            }
            if names.is_empty() {
                released.remove(job);
            }
        }
        let mut missing = Vec::new();
        if let Some(names) = expected.get_mut(job) {
            names.retain(|n| !known.is_some_and(|k| k.contains(n)));
            missing = names.iter().cloned().collect();
            if names.is_empty() {
                expected.remove(job);
            }
        }
        Lookup { views, missing }
    }

    /// Jobs with at least one CloudResource (for tests and gauges).
    pub fn jobs(&self) -> usize {
        self.inner.lock().by_job.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cr(name: &str, job: &str, attempt: u32, owner: Option<&str>) -> CloudResource {
        let owners = owner
            .map(|o| serde_json::json!([{"apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob", "name": o, "uid": "u", "controller": true}]))
            .unwrap_or(serde_json::json!([]));
        serde_json::from_value(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource",
            "metadata": {"name": name, "namespace": "ns", "ownerReferences": owners,
                "labels": {"runctl.dev/job": job, "runctl.dev/attempt": attempt.to_string()}},
            "spec": {"provider": "sim", "instanceType": "t"}
        }))
        .unwrap()
    }

    fn job(name: &str) -> JobKey {
        JobKey::new("ns", name)
    }

    fn names(l: &Lookup) -> Vec<&str> {
        l.views.iter().map(|v| v.name.as_str()).collect()
    }

    #[test]
    fn a_released_object_counts_as_deleting_until_the_watch_shows_it_gone() {
        let idx = MachineIndex::new();
        idx.apply(&watcher::Event::Apply(cr("j-a1", "j", 1, Some("j"))));
        idx.released(&job("j"), "j-a1");
        // An event from before the delete, coming through after it.
        idx.apply(&watcher::Event::Apply(cr("j-a1", "j", 1, Some("j"))));
        let l = idx.lookup(&job("j"));
        assert!(l.views[0].deleting, "not released a second time");
        idx.apply(&watcher::Event::Delete(cr("j-a1", "j", 1, Some("j"))));
        assert!(idx.lookup(&job("j")).views.is_empty());
        // Forgotten once gone: an object of that name made later is not taken as deleting.
        idx.apply(&watcher::Event::Apply(cr("j-a1", "j", 1, Some("j"))));
        assert!(!idx.lookup(&job("j")).views[0].deleting);
    }

    #[test]
    fn indexes_by_job_and_ignores_objects_the_job_does_not_control() {
        let idx = MachineIndex::new();
        idx.apply(&watcher::Event::Apply(cr("j-a1", "j", 1, Some("j"))));
        idx.apply(&watcher::Event::Apply(cr("j-a2", "j", 2, Some("j"))));
        idx.apply(&watcher::Event::Apply(cr("k-a1", "k", 1, Some("k"))));
        // A copied label without the owner, and an owner of another name.
        idx.apply(&watcher::Event::Apply(cr("fake", "j", 3, None)));
        idx.apply(&watcher::Event::Apply(cr("other", "j", 4, Some("x"))));
        assert_eq!(names(&idx.lookup(&job("j"))), vec!["j-a1", "j-a2"]);
        idx.apply(&watcher::Event::Delete(cr("j-a1", "j", 1, Some("j"))));
        assert_eq!(names(&idx.lookup(&job("j"))), vec!["j-a2"]);
        idx.apply(&watcher::Event::Delete(cr("j-a2", "j", 2, Some("j"))));
        assert!(idx.lookup(&job("j")).views.is_empty());
        // An update that changes nothing the job sees does not wake it.
        assert!(!idx.apply(&watcher::Event::Apply(cr("k-a1", "k", 1, Some("k")))));
        let mut running = cr("k-a1", "k", 1, Some("k"));
        running.status = Some(crate::crd::cloud_resource::CloudResourceStatus {
            state: Some(crate::crd::cloud_resource::ResourceState::Running),
            ..Default::default()
        });
        assert!(idx.apply(&watcher::Event::Apply(running)));
        assert_eq!(idx.jobs(), 1, "empty jobs are dropped");
    }

    #[test]
    fn a_job_with_one_machine_holds_room_for_one_view() {
        let idx = MachineIndex::new();
        idx.apply(&watcher::Event::Apply(cr("j-a1", "j", 1, Some("j"))));
        let inner = idx.inner.lock();
        assert_eq!(inner.by_job[&job("j")].0.capacity(), 1);
    }

    #[tokio::test]
    async fn the_index_is_listed_only_after_the_first_complete_list() {
        let idx = std::sync::Arc::new(MachineIndex::new());
        assert!(
            !idx.is_listed(),
            "an empty index before the list is no answer"
        );
        let waiter = tokio::spawn({
            let idx = idx.clone();
            async move { idx.listed().await }
        });
        idx.apply(&watcher::Event::Init);
        idx.apply(&watcher::Event::InitApply(cr("j-a1", "j", 1, Some("j"))));
        assert!(!idx.is_listed());
        assert!(!waiter.is_finished());
        idx.apply(&watcher::Event::InitDone);
        assert!(idx.is_listed());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the wait ends with the list")
            .unwrap();
        assert_eq!(names(&idx.lookup(&job("j"))), vec!["j-a1"]);
    }

    #[test]
    fn a_relist_replaces_everything_at_its_end() {
        let idx = MachineIndex::new();
        idx.apply(&watcher::Event::Apply(cr(
            "gone-a1",
            "gone",
            1,
            Some("gone"),
        )));
        idx.apply(&watcher::Event::Init);
        idx.apply(&watcher::Event::InitApply(cr("j-a1", "j", 1, Some("j"))));
        // Until the relist is complete, the old view stands.
        assert_eq!(names(&idx.lookup(&job("gone"))), vec!["gone-a1"]);
        idx.apply(&watcher::Event::InitDone);
        assert!(idx.lookup(&job("gone")).views.is_empty());
        assert_eq!(names(&idx.lookup(&job("j"))), vec!["j-a1"]);
    }

    #[test]
    fn applied_objects_are_missing_until_the_watch_shows_them() {
        let idx = MachineIndex::new();
        idx.expect(&job("j"), "j-a1");
        let l = idx.lookup(&job("j"));
        assert!(l.views.is_empty());
        assert_eq!(l.missing, vec!["j-a1".to_string()]);
        idx.apply(&watcher::Event::Apply(cr("j-a1", "j", 1, Some("j"))));
        let l = idx.lookup(&job("j"));
        assert_eq!(names(&l), vec!["j-a1"]);
        assert!(l.missing.is_empty(), "met expectations are dropped");
        // A later delete does not bring the expectation back.
        idx.apply(&watcher::Event::Delete(cr("j-a1", "j", 1, Some("j"))));
        assert_eq!(idx.lookup(&job("j")), Lookup::default());
        idx.expect(&job("j"), "j-a2");
        idx.forget_expected(&job("j"), "j-a2");
        assert_eq!(idx.lookup(&job("j")), Lookup::default());
    }
}
