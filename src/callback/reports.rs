//! In-memory store of what workloads reported through the callback endpoint, per attempt, read
//! by the TrainingJob controller of the same process (which copies it into the job's status).
//! Exit reports wake the controller at once; heartbeats and progress are picked up at its next
//! poll. Exit reports are also persisted in the attempt's CloudResource status at once
//! ([`super::persist`]), which is what survives restarts and reaches the leader from a standby;
//! heartbeats and progress only when this replica is a standby (the leader's own are read from
//! here: see [`persist_due`]). Attempts that have not reported for an hour are forgotten (a
//! standby's controller never forgets them for it).

use std::collections::HashMap;

use jiff::Timestamp;
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use crate::attempt::AttemptId;
use crate::crd::cloud_resource::WorkloadReport;
use crate::crd::training_job::Progress;

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
    /// The heartbeat time found in the attempt's CloudResource (`status.report`), written by a
    /// replica that received the heartbeat as a standby (or by an earlier leader). Such a replica
    /// writes again within the persist interval while heartbeats keep reaching it, so the attempt
    /// counts as alive until this time plus that interval ([`alive_since`]).
    pub stored_heartbeat: Option<Timestamp>,
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
            stored_heartbeat: stored.last_heartbeat_time.as_ref().map(|t| t.0),
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
        a.stored_heartbeat = b.stored_heartbeat;
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

fn elapsed(since: Timestamp, now: Timestamp) -> std::time::Duration {
    std::time::Duration::try_from(now.duration_since(since)).unwrap_or_default()
}

/// Whether a report of an attempt is written into its CloudResource now, from what this replica
/// wrote of the attempt before (`persisted`):
///
/// - an exit always, on every replica (the wrapper gets 200 only once it is in the API, so an
///   exit never lives only in one process's memory);
/// - on the leader nothing else: its TrainingJob controller reads the heartbeats and progress it
///   received from memory, and a replica that becomes leader grants every running attempt a
///   heartbeat grace from that moment ([`alive_since`]) instead of reading old heartbeats back;
/// - on a standby (whose memory no controller reads) the first report of the attempt at once,
///   then a heartbeat or progress at most once per `interval` (`costRefreshSeconds`): the
///   leader counts such a heartbeat as alive for `interval` more ([`alive_since`]).
///
/// So a running attempt whose reports reach the leader costs no periodic write at all.
pub fn persist_due(
    persisted: &Persisted,
    exit: bool,
    leading: bool,
    now: Timestamp,
    interval: std::time::Duration,
) -> bool {
    if exit {
        return true;
    }
    if leading {
        return false;
    }
    persisted
        .heartbeat
        .is_none_or(|t| elapsed(t, now) >= interval)
}

/// Since when a running attempt counts as alive for the heartbeat timeout, or `None` when no
/// heartbeat ever came (the timeout then does not apply). The latest of:
///
/// - `last`: the last heartbeat this replica received (merged with the persisted one), or the
///   one the job's status shows;
/// - `stored` plus `interval`: a heartbeat a standby persisted; that standby writes again
///   within `interval` while heartbeats keep reaching it ([`persist_due`]), so any heartbeat it
///   received and did not write came before this;
/// - `leader_since`: when this process became the leader; heartbeats the earlier leader
///   received are in no memory this process reads (the leader does not persist them), so each
///   running attempt gets a full timeout from then.
pub fn alive_since(
    last: Option<Timestamp>,
    stored: Option<Timestamp>,
    interval: std::time::Duration,
    leader_since: Option<Timestamp>,
) -> Option<Timestamp> {
    let last = last.max(stored)?;
    let vouched = stored.map(|t| {
        jiff::SignedDuration::try_from(interval)
            .ok()
            .and_then(|d| t.checked_add(d).ok())
            .unwrap_or(Timestamp::MAX)
    });
    Some(
        [vouched, leader_since]
            .into_iter()
            .flatten()
            .fold(last, std::cmp::max),
    )
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

    /// The fields of attempt `id` to write into the API now, if any, marked as written, when
    /// [`persist_due`] says so: an exit (with everything else); on a standby also the heartbeat,
    /// and progress that changed.
    pub fn due_for_persisting(
        &self,
        id: &AttemptId,
        exit: bool,
        leading: bool,
        now: Timestamp,
        interval: std::time::Duration,
    ) -> Option<WorkloadReport> {
        let mut map = self.by_attempt.lock();
        let r = map.get_mut(id)?;
        if !persist_due(&r.persisted, exit, leading, now, interval) {
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
    fn persisting_is_due_for_exits_and_a_standby_s_reports_at_most_once_per_interval() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        let every = std::time::Duration::from_secs(1200);
        let never = Persisted::default();
        let wrote = |s: i64| Persisted {
            heartbeat: Some(at(s)),
            progress: None,
        };
        // (what this replica wrote before, exit, leading, now, due, why)
        #[rustfmt::skip]
        let cases = [
            (&never, true, true, at(0), true, "the leader writes an exit"),
            (&never, true, false, at(0), true, "a standby writes an exit"),
            (&wrote(0), true, false, at(1), true, "an exit right after a write"),
            (&never, false, true, at(0), false, "the leader: no heartbeat write"),
            (&wrote(0), false, true, at(5000), false, "the leader: never on a timer"),
            (&never, false, false, at(0), true, "a standby: its first at once"),
            (&wrote(0), false, false, at(1199), false, "a standby: not within the interval"),
            (&wrote(0), false, false, at(1200), true, "a standby: once the interval passed"),
        ];
        for (persisted, exit, leading, now, due, why) in cases {
            assert_eq!(
                persist_due(persisted, exit, leading, now, every),
                due,
                "{why}"
            );
        }
    }

    #[test]
    fn heartbeats_stay_alive_from_the_latest_of_memory_a_standby_s_write_and_leadership() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let at = |s: i64| Some(t0 + jiff::SignedDuration::from_secs(s));
        let every = std::time::Duration::from_secs(1200);
        // (last heartbeat, stored heartbeat, leader since, alive since, why)
        #[rustfmt::skip]
        let cases = [
            (None, None, at(0), None, "no heartbeat ever: no timeout"),
            (at(50), None, None, at(50), "the last one this leader received"),
            (at(50), None, at(10), at(50), "received after it became leader"),
            (at(50), None, at(900), at(900), "a new leader grants a grace"),
            (None, at(30), None, at(1230), "a standby's write vouches for the interval"),
            (at(2000), at(30), None, at(2000), "a later heartbeat in memory"),
            (at(40), at(30), at(5000), at(5000), "leadership later than both"),
        ];
        for (last, stored, leader, want, why) in cases {
            assert_eq!(alive_since(last, stored, every, leader), want, "{why}");
        }
    }

    #[test]
    fn a_standby_writes_its_first_report_then_once_per_interval_and_the_leader_only_exits() {
        let r = Reports::new();
        let every = std::time::Duration::from_secs(1200);
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        let due = |exit: bool, leading: bool, t: Timestamp| {
            r.due_for_persisting(&id(1), exit, leading, t, every)
        };
        assert_eq!(due(false, false, t0), None, "nothing recorded yet");
        r.record(id(1), Report::Heartbeat, t0);
        assert_eq!(
            due(false, true, t0),
            None,
            "the leader keeps heartbeats in memory"
        );
        let first = due(false, false, t0).expect("a standby writes its first heartbeat at once");
        assert_eq!(first.last_heartbeat_time, Some(Time(t0)));
        r.record(id(1), Report::Heartbeat, at(30));
        assert_eq!(due(false, false, at(30)), None);
        let p = |step| {
            Report::Progress(Progress {
                step: Some(step),
                ..Default::default()
            })
        };
        r.record(id(1), p(7), at(31));
        assert_eq!(
            due(false, false, at(31)),
            None,
            "progress waits for the next write"
        );
        r.record(id(1), Report::Heartbeat, at(1200));
        let later = due(false, false, at(1200)).expect("an interval later");
        assert_eq!(later.progress.and_then(|p| p.step), Some(7));
        r.record(id(1), Report::Heartbeat, at(2400));
        assert_eq!(
            due(false, false, at(2400)).expect("heartbeat").progress,
            None,
            "unchanged progress is not written again"
        );
        r.record(id(1), p(8), at(2401));
        r.record(id(1), exit(4), at(2402));
        let e = due(true, true, at(2402)).expect("an exit is always written");
        assert_eq!(
            (e.exit_code, e.interrupted, e.progress.and_then(|p| p.step)),
            (Some(4), Some(false), Some(8))
        );
        r.persist_failed(&id(1));
        r.record(id(1), Report::Heartbeat, at(2403));
        assert!(
            due(false, false, at(2403)).is_some(),
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
            m.stored_heartbeat,
            Some(t(20)),
            "kept apart for alive_since"
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
