//! Samples the operator process's resident memory every second during a run and keeps the
//! highest sample of each phase, so that the report can say when the peak happened.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::measure::{self, Process};

/// The phases of a run, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// The benchmark creates the jobs.
    Apply,
    /// Machines are created and boot until every status shows Running.
    Provisioning,
    /// Everything runs; nothing changes.
    Steady,
    /// The workloads exit and the jobs end.
    Completion,
    /// TTL deletion of jobs and CloudResources.
    Deletion,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 5] = [
        Phase::Apply,
        Phase::Provisioning,
        Phase::Steady,
        Phase::Completion,
        Phase::Deletion,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Apply => "apply",
            Phase::Provisioning => "provisioning",
            Phase::Steady => "steady",
            Phase::Completion => "completion",
            Phase::Deletion => "deletion",
        }
    }
}

/// Highest RSS sample (KiB) per phase; 0 for a phase without a sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhasePeaks(pub [u64; 5]);

impl PhasePeaks {
    /// Records a sample taken in `phase`.
    pub fn record(&mut self, phase: Phase, kib: u64) {
        let slot = &mut self.0[phase as usize];
        *slot = (*slot).max(kib);
    }

    /// The phase with the highest sample (the earliest on a tie), if any sample was taken.
    pub fn peak(&self) -> Option<(Phase, u64)> {
        Phase::ALL
            .iter()
            .map(|p| (*p, self.0[*p as usize]))
            .filter(|(_, k)| *k > 0)
            .fold(None, |best, (p, k)| match best {
                Some((_, b)) if b >= k => best,
                _ => Some((p, k)),
            })
    }
}

/// A running sampler of this process.
pub struct Sampler {
    state: Arc<Mutex<(Phase, PhasePeaks)>>,
    task: JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling every `every`, in [`Phase::Apply`].
    pub fn start(every: Duration) -> Self {
        let state = Arc::new(Mutex::new((Phase::Apply, PhasePeaks::default())));
        let s = state.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let kib = measure::rss_kib(Process::This).0;
                let mut st = s.lock();
                let phase = st.0;
                st.1.record(phase, kib);
            }
        });
        Sampler { state, task }
    }

    /// Moves to `phase`, taking one sample of the phase that ends.
    pub fn enter(&self, phase: Phase) {
        let kib = measure::rss_kib(Process::This).0;
        let mut st = self.state.lock();
        let ended = st.0;
        st.1.record(ended, kib);
        st.0 = phase;
    }

    /// Stops sampling (with one last sample) and returns the peaks.
    pub fn finish(self) -> PhasePeaks {
        let kib = measure::rss_kib(Process::This).0;
        let mut st = self.state.lock();
        let phase = st.0;
        st.1.record(phase, kib);
        st.1
    }
}

impl Drop for Sampler {
    /// A run that fails stops sampling too.
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_phase() {
        let mut p = PhasePeaks::default();
        assert_eq!(p.peak(), None);
        p.record(Phase::Apply, 10);
        p.record(Phase::Steady, 30);
        p.record(Phase::Steady, 20);
        p.record(Phase::Deletion, 30);
        assert_eq!(p.0, [10, 0, 30, 0, 30]);
        assert_eq!(p.peak(), Some((Phase::Steady, 30)), "earliest on a tie");
    }
}
