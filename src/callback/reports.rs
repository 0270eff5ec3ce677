//! In-memory store of what workloads reported through the callback endpoint, per attempt, read
//! by the TrainingJob controller of the same process (which copies it into the job's status).
//! Exit reports wake the controller at once; heartbeats and progress are picked up at its next
//! poll.

use std::collections::HashMap;

use jiff::Timestamp;
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

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
}

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
        }
    }

    /// Records a report received at `now`. The first exit code of an attempt is kept.
    pub fn record(&self, id: AttemptId, report: Report, now: Timestamp) {
        let is_exit = matches!(report, Report::Exit { .. });
        let id_for_wakeup = id.clone();
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
}
