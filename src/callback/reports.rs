//! In-memory store of what workloads reported through the callback endpoint, per attempt, read
//! by the TrainingJob controller of the same process (which copies it into the job's status).
//! Exit reports wake the controller at once; heartbeats and progress are picked up at its next
//! poll. This is the fast path only: every report is also persisted in the attempt's
//! CloudResource status ([`super::persist`]), which is what survives restarts and reaches the
//! leader from a standby. Attempts that have not reported for an hour are forgotten (a standby's
//! controller never forgets them for it).

use std::collections::HashMap;

use jiff::Timestamp;
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::cloud_resource::WorkloadReport;
use crate::crd::training_job::Progress;

/// Identifies one attempt of one job.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId {
    /// Namespace of the job.
    pub namespace: String,
    /// Name of the job.
    pub job: String,
    /// Attempt number.
    pub attempt: u32,
}

/// What one attempt's workload reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttemptReport {
    /// When the last heartbeat (or any report) arrived.
    pub last_heartbeat: Option<Timestamp>,
    /// Last progress report.
    pub progress: Option<Progress>,
    /// Exit code, once reported.
    pub exit_code: Option<i32>,
    /// The wrapper ended the workload because the provider announced it would reclaim the
    /// machine (the spot instance-action notice), so the exit is an interruption.
    pub interrupted: bool,
    /// What of this attempt this replica has persisted in the API.
    pub persisted: Persisted,
}

impl AttemptReport {
    /// The report persisted in a CloudResource's status.
    pub fn of_stored(stored: &WorkloadReport) -> Self {
        Self {
            last_heartbeat: stored.last_heartbeat_time.as_ref().map(|t| t.0),
            progress: stored.progress.clone(),
            exit_code: stored.exit_code,
            interrupted: stored.interrupted.unwrap_or(false),
            persisted: Persisted::default(),
        }
    }

    /// What this replica received merged with what any replica persisted: the exit code known
    /// to either (this replica's first), the later heartbeat, the newer progress.
    pub fn merged(local: Option<Self>, stored: Option<Self>) -> Option<Self> {
        let (mut a, b) = match (local, stored) {
            (Some(a), Some(b)) => (a, b),
            (a, b) => return a.or(b),
        };
        if a.exit_code.is_none() && b.exit_code.is_some() {
            a.exit_code = b.exit_code;
            a.interrupted = b.interrupted;
        }
        a.last_heartbeat = a.last_heartbeat.max(b.last_heartbeat);
        let time = |p: &Option<Progress>| p.as_ref().and_then(|p| p.time.as_ref()).map(|t| t.0);
        if time(&b.progress) > time(&a.progress) {
            a.progress = b.progress;
        }
        Some(a)
    }
}

/// What of one attempt's reports this replica has written into the API.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Persisted {
    /// When a heartbeat was last written.
    pub heartbeat: Option<Timestamp>,
    /// The progress last written.
    pub progress: Option<Progress>,
}

/// A report as received.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    /// Alive.
    Heartbeat,
    /// Progress.
    Progress(Progress),
    /// The workload exited; `interrupted` when the wrapper stopped it for a reclaim notice.
    Exit {
        /// Exit code.
        code: i32,
        /// Stopped for the provider's reclaim notice.
        interrupted: bool,
    },
}

/// Reports by attempt, plus a wake-up signal for exit reports.
#[derive(Debug)]
pub struct Reports {
    by_attempt: Mutex<HashMap<AttemptId, AttemptReport>>,
    token_digests: Mutex<HashMap<AttemptId, [u8; 32]>>,
    exits: watch::Sender<u64>,
    exit_ids: broadcast::Sender<AttemptId>,
    recorded: Mutex<u64>,
}

/// Attempts whose last report is older than this are forgotten.
const FORGET_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);
/// The store is swept for such attempts once per this many reports.
const SWEEP_EVERY: u64 = 1024;

/// Exit reports a subscriber may fall behind by before it is told it lagged.
pub const EXIT_BACKLOG: usize = 4096;

impl Default for Reports {
    fn default() -> Self {
        Self::new()
    }
}

impl Reports {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            by_attempt: Mutex::new(HashMap::new()),
            token_digests: Mutex::new(HashMap::new()),
            exits: watch::channel(0).0,
            exit_ids: broadcast::channel(EXIT_BACKLOG).0,
            recorded: Mutex::new(0),
        }
    }

    /// Records a report received at `now`. The first exit code of an attempt is kept.
    pub fn record(&self, id: AttemptId, report: Report, now: Timestamp) {
        let is_exit = matches!(report, Report::Exit { .. });
        let id_for_wakeup = id.clone();
        self.sweep(now);
        {
            let mut map = self.by_attempt.lock();
            let entry = map.entry(id).or_default();
            entry.last_heartbeat = Some(now);
            match report {
                Report::Heartbeat => {}
                Report::Progress(p) => entry.progress = Some(p),
                Report::Exit { code, interrupted } => {
                    if entry.exit_code.is_none() {
                        entry.exit_code = Some(code);
                        entry.interrupted = interrupted;
                    }
                }
            }
        }
        if is_exit {
            self.exits.send_modify(|n| *n += 1);
            // No subscriber (no controller running) is fine: the report is stored.
            let _ = self.exit_ids.send(id_for_wakeup);
        }
    }

    /// Forgets attempts that have not reported for [`FORGET_AFTER`], once per [`SWEEP_EVERY`]
    /// reports: their reports are in the API.
    fn sweep(&self, now: Timestamp) {
        {
            let mut n = self.recorded.lock();
            *n += 1;
            if !n.is_multiple_of(SWEEP_EVERY) {
                return;
            }
        }
        let fresh = |t: &Option<Timestamp>| {
            t.is_some_and(|t| {
                std::time::Duration::try_from(now.duration_since(t)).unwrap_or_default()
                    < FORGET_AFTER
            })
        };
        let mut by_attempt = self.by_attempt.lock();
        by_attempt.retain(|_, r| fresh(&r.last_heartbeat));
        self.token_digests
            .lock()
            .retain(|id, _| by_attempt.contains_key(id));
    }

    /// The fields of attempt `id` to write into the API now, if any, marked as written: an exit
    /// always (with everything else); otherwise the heartbeat, and progress that changed, when
    /// no heartbeat was written for `interval`.
    pub fn due_for_persisting(
        &self,
        id: &AttemptId,
        exit: bool,
        now: Timestamp,
        interval: std::time::Duration,
    ) -> Option<WorkloadReport> {
        let mut map = self.by_attempt.lock();
        let r = map.get_mut(id)?;
        let heartbeat_due = r.persisted.heartbeat.is_none_or(|t| {
            std::time::Duration::try_from(now.duration_since(t)).unwrap_or_default() >= interval
        });
        if !exit && !heartbeat_due {
            return None;
        }
        let mut body = WorkloadReport {
            last_heartbeat_time: Some(Time(now)),
            ..Default::default()
        };
        if r.progress != r.persisted.progress {
            body.progress = r.progress.clone();
        }
        if exit {
            body.exit_code = r.exit_code;
            body.interrupted = Some(r.interrupted);
            body.exit_time = Some(Time(now));
        }
        r.persisted = Persisted {
            heartbeat: Some(now),
            progress: r.progress.clone(),
        };
        Some(body)
    }

    /// Marks attempt `id` as not persisted (a write failed): the next report writes again.
    pub fn persist_failed(&self, id: &AttemptId) {
        if let Some(r) = self.by_attempt.lock().get_mut(id) {
            r.persisted = Persisted::default();
        }
    }

    /// The reports of one attempt.
    pub fn get(&self, id: &AttemptId) -> Option<AttemptReport> {
        self.by_attempt.lock().get(id).cloned()
    }

    /// Forgets one attempt (its outcome is in the job's status).
    pub fn forget(&self, id: &AttemptId) {
        self.by_attempt.lock().remove(id);
        self.token_digests.lock().remove(id);
    }

    /// Forgets every attempt of a job (the job is gone).
    pub fn forget_job(&self, namespace: &str, job: &str) {
        self.by_attempt
            .lock()
            .retain(|k, _| !(k.namespace == namespace && k.job == job));
        self.token_digests
            .lock()
            .retain(|k, _| !(k.namespace == namespace && k.job == job));
    }

    /// The cached token digest of an attempt.
    pub fn token_digest(&self, id: &AttemptId) -> Option<[u8; 32]> {
        self.token_digests.lock().get(id).copied()
    }

    /// Caches the token digest of an attempt (read from its Secret).
    pub fn cache_token_digest(&self, id: AttemptId, digest: [u8; 32]) {
        self.token_digests.lock().insert(id, digest);
    }

    /// A receiver that changes on every exit report.
    pub fn subscribe_exits(&self) -> watch::Receiver<u64> {
        self.exits.subscribe()
    }

    /// The attempt of every exit report from now on (to reconcile just that job). A subscriber
    /// that falls more than [`EXIT_BACKLOG`] reports behind gets `Lagged`.
    pub fn subscribe_exit_ids(&self) -> broadcast::Receiver<AttemptId> {
        self.exit_ids.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(attempt: u32) -> AttemptId {
        AttemptId {
            namespace: "ns".into(),
            job: "j".into(),
            attempt,
        }
    }

    fn exit(code: i32) -> Report {
        Report::Exit {
            code,
            interrupted: false,
        }
    }

    #[test]
    fn keeps_the_first_exit_and_signals_it() {
        let r = Reports::new();
        let mut rx = r.subscribe_exits();
        let now = Timestamp::now();
        r.record(id(1), Report::Heartbeat, now);
        assert!(!rx.has_changed().unwrap());
        r.record(
            id(1),
            Report::Progress(Progress {
                percent: Some(50.0),
                ..Default::default()
            }),
            now,
        );
        r.record(id(1), exit(3), now);
        r.record(id(1), exit(0), now);
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        let got = r.get(&id(1)).unwrap();
        assert_eq!(got.exit_code, Some(3));
        assert_eq!(got.progress.unwrap().percent, Some(50.0));
        assert!(r.get(&id(2)).is_none());
        r.forget_job("ns", "j");
        assert!(r.get(&id(1)).is_none());
    }

    #[test]
    fn heartbeats_are_persisted_once_a_minute_and_exits_always() {
        let r = Reports::new();
        let minute = std::time::Duration::from_secs(60);
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        let due = |exit: bool, t: Timestamp| r.due_for_persisting(&id(1), exit, t, minute);
        assert_eq!(due(false, t0), None, "nothing recorded yet");
        r.record(id(1), Report::Heartbeat, t0);
        let first = due(false, t0).expect("the first heartbeat is written at once");
        assert_eq!(first.last_heartbeat_time, Some(Time(t0)));
        r.record(id(1), Report::Heartbeat, at(30));
        assert_eq!(due(false, at(30)), None);
        let p = |step| {
            Report::Progress(Progress {
                step: Some(step),
                ..Default::default()
            })
        };
        r.record(id(1), p(7), at(31));
        assert_eq!(
            due(false, at(31)),
            None,
            "progress waits for the next write"
        );
        r.record(id(1), Report::Heartbeat, at(60));
        let later = due(false, at(60)).expect("a minute later");
        assert_eq!(later.progress.and_then(|p| p.step), Some(7));
        r.record(id(1), Report::Heartbeat, at(121));
        assert_eq!(
            due(false, at(121)).expect("heartbeat").progress,
            None,
            "unchanged progress is not written again"
        );
        r.record(id(1), p(8), at(122));
        r.record(id(1), exit(4), at(123));
        let e = due(true, at(123)).expect("an exit is always written");
        assert_eq!(
            (e.exit_code, e.interrupted, e.progress.and_then(|p| p.step)),
            (Some(4), Some(false), Some(8))
        );
        r.persist_failed(&id(1));
        r.record(id(1), Report::Heartbeat, at(124));
        assert!(
            due(false, at(124)).is_some(),
            "after a failed write the next report writes again"
        );
    }

    #[test]
    fn local_and_stored_reports_merge() {
        let t = |s: i64| Timestamp::from_second(1_000_000 + s).unwrap();
        let progress = |step, s| Progress {
            step: Some(step),
            time: Some(Time(t(s))),
            ..Default::default()
        };
        let local = AttemptReport {
            last_heartbeat: Some(t(10)),
            progress: Some(progress(1, 10)),
            ..Default::default()
        };
        let stored = AttemptReport::of_stored(&WorkloadReport {
            last_heartbeat_time: Some(Time(t(20))),
            progress: Some(progress(2, 20)),
            exit_code: Some(0),
            interrupted: Some(true),
            exit_time: Some(Time(t(20))),
        });
        let m = AttemptReport::merged(Some(local.clone()), Some(stored.clone())).unwrap();
        assert_eq!(
            (
                m.exit_code,
                m.interrupted,
                m.last_heartbeat,
                m.progress.and_then(|p| p.step)
            ),
            (Some(0), true, Some(t(20)), Some(2)),
            "a standby's persisted exit reaches the leader"
        );
        assert_eq!(
            AttemptReport::merged(None, Some(stored.clone())),
            Some(stored)
        );
        assert_eq!(
            AttemptReport::merged(Some(local.clone()), None),
            Some(local)
        );
        assert_eq!(AttemptReport::merged(None, None), None);
    }
}
