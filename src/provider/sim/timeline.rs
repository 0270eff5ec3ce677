//! A simulated machine's life as pure data: phases that start at a simulated instant and run on
//! their own (provisioning, booting, running, a timed workload, termination), and the functions
//! that turn them into the state seen at any instant.

use crate::provider::workload::Workload;
use crate::provider::{ResourceState, reasons};

use super::clock::SimMillis;

/// Workload env: milliseconds the workload runs after the machine is `Running` before it exits.
pub const ENV_RUN_MS: &str = "RUNCTL_SIM_RUN_MS";
/// Workload env: the exit code of a timed workload (default 0).
pub const ENV_EXIT_CODE: &str = "RUNCTL_SIM_EXIT_CODE";

/// A workload that exits on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadRun {
    /// Milliseconds from `Running` until the workload exits.
    pub run_ms: u64,
    /// Its exit code.
    pub exit_code: i32,
}

/// Reads the simulator knobs from a workload's env. Errors name the variable, never its value.
pub fn workload_run(workload: Option<&Workload>) -> Result<Option<WorkloadRun>, String> {
    let Some(env) = workload.map(|w| &w.env) else {
        return Ok(None);
    };
    let Some(run) = env.get(ENV_RUN_MS) else {
        return Ok(None);
    };
    let run_ms = run
        .trim()
        .parse()
        .map_err(|_| format!("{ENV_RUN_MS} must be a whole number of milliseconds"))?;
    let exit_code = match env.get(ENV_EXIT_CODE) {
        Some(code) => code
            .trim()
            .parse()
            .map_err(|_| format!("{ENV_EXIT_CODE} must be an integer exit code"))?,
        None => 0,
    };
    Ok(Some(WorkloadRun { run_ms, exit_code }))
}

/// How a machine ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct End {
    /// `Terminated` or `Error`.
    pub state: ResourceState,
    /// Why.
    pub reason: &'static str,
    /// Exit code of the workload, when it exited.
    pub exit_code: Option<i32>,
}

impl End {
    /// The workload exited and the machine powered off: 0 completes, anything else failed.
    pub fn exit(code: i32) -> Self {
        if code == 0 {
            Self {
                state: ResourceState::Terminated,
                reason: reasons::COMPLETED,
                exit_code: Some(0),
            }
        } else {
            Self {
                state: ResourceState::Error,
                reason: reasons::WORKLOAD_FAILED,
                exit_code: Some(code),
            }
        }
    }

    /// Spot capacity was reclaimed.
    pub fn interrupted() -> Self {
        Self {
            state: ResourceState::Error,
            reason: reasons::SPOT_INTERRUPTED,
            exit_code: None,
        }
    }

    /// The provider failed the machine.
    pub fn provider_failure() -> Self {
        Self {
            state: ResourceState::Error,
            reason: reasons::PROVIDER_FAILURE,
            exit_code: None,
        }
    }

    /// Terminated on request.
    pub fn terminated() -> Self {
        Self {
            state: ResourceState::Terminated,
            reason: reasons::TERMINATED,
            exit_code: None,
        }
    }
}

/// One phase of a machine's life; it starts at a [`Segment`]'s instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Provisioning for `provision_ms`, booting until `running_ms`, then running; a timed
    /// workload ends the machine `run_ms` after that.
    Launch {
        /// Milliseconds of provisioning.
        provision_ms: u64,
        /// Milliseconds until running (≥ `provision_ms`).
        running_ms: u64,
        /// The workload's own end, if timed.
        run: Option<WorkloadRun>,
    },
    /// Stopped until something else happens.
    Stopped,
    /// Shutting down for `duration_ms`, then terminated.
    Terminating {
        /// Milliseconds until terminated.
        duration_ms: u64,
    },
    /// Ended.
    Ended(End),
}

/// A phase and the instant it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Start of the phase.
    pub at: SimMillis,
    /// The phase.
    pub phase: Phase,
}

/// A state and when it began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Normalized state.
    pub state: ResourceState,
    /// Reason (see [`reasons`]).
    pub reason: &'static str,
    /// Exit code of the workload, once it exited.
    pub exit_code: Option<i32>,
    /// When this state began.
    pub since: SimMillis,
}

impl Status {
    fn new(since: SimMillis, state: ResourceState, reason: &'static str) -> Self {
        Self {
            state,
            reason,
            exit_code: None,
            since,
        }
    }

    fn ended(since: SimMillis, end: End) -> Self {
        Self {
            state: end.state,
            reason: end.reason,
            exit_code: end.exit_code,
            since,
        }
    }
}

/// Every state a phase passes through on its own, in time order.
pub fn transitions(seg: Segment) -> Vec<Status> {
    let at = seg.at;
    match seg.phase {
        Phase::Launch {
            provision_ms,
            running_ms,
            run,
        } => {
            let running_at = at.saturating_add(running_ms.max(provision_ms));
            let mut v = vec![
                Status::new(at, ResourceState::Starting, reasons::PROVISIONING),
                Status::new(
                    at.saturating_add(provision_ms),
                    ResourceState::Starting,
                    reasons::BOOTING,
                ),
                Status::new(running_at, ResourceState::Running, reasons::RUNNING),
            ];
            if let Some(r) = run {
                v.push(Status::ended(
                    running_at.saturating_add(r.run_ms),
                    End::exit(r.exit_code),
                ));
            }
            v
        }
        Phase::Stopped => vec![Status::new(at, ResourceState::Stopped, reasons::STOPPED)],
        Phase::Terminating { duration_ms } => vec![
            Status::new(at, ResourceState::Terminating, reasons::TERMINATING),
            Status::ended(at.saturating_add(duration_ms), End::terminated()),
        ],
        Phase::Ended(end) => vec![Status::ended(at, end)],
    }
}

/// The state of a machine whose latest phase is `seg`, at `now` (≥ `seg.at`); the same as the
/// last of [`transitions`] begun by `now`, without allocating (a list asks this of every machine).
pub fn status_at(seg: Segment, now: SimMillis) -> Status {
    let at = seg.at;
    match seg.phase {
        Phase::Launch {
            provision_ms,
            running_ms,
            run,
        } => {
            let booting_at = at.saturating_add(provision_ms);
            let running_at = at.saturating_add(running_ms.max(provision_ms));
            let exit_at = run.map(|r| (running_at.saturating_add(r.run_ms), r.exit_code));
            match exit_at {
                Some((exit_at, code)) if now >= exit_at => Status::ended(exit_at, End::exit(code)),
                _ if now >= running_at => {
                    Status::new(running_at, ResourceState::Running, reasons::RUNNING)
                }
                _ if now >= booting_at => {
                    Status::new(booting_at, ResourceState::Starting, reasons::BOOTING)
                }
                _ => Status::new(at, ResourceState::Starting, reasons::PROVISIONING),
            }
        }
        Phase::Stopped => Status::new(at, ResourceState::Stopped, reasons::STOPPED),
        Phase::Terminating { duration_ms } => {
            let end = at.saturating_add(duration_ms);
            if now >= end {
                Status::ended(end, End::terminated())
            } else {
                Status::new(at, ResourceState::Terminating, reasons::TERMINATING)
            }
        }
        Phase::Ended(end) => Status::ended(at, end),
    }
}

/// The states a machine went through up to `now`, from its phases in order; states that lasted
/// no time and repeats of the same state are left out.
pub fn timeline(segments: &[Segment], now: SimMillis) -> Vec<Status> {
    let mut out: Vec<Status> = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let end = segments
            .get(i + 1)
            .map_or(now.saturating_add(1), |next| next.at);
        for s in transitions(*seg)
            .into_iter()
            .filter(|s| s.since < end && s.since <= now)
        {
            if out.last().is_some_and(|last| last.since == s.since) {
                out.pop();
            }
            if out
                .last()
                .is_some_and(|last| (last.state, last.reason) == (s.state, s.reason))
            {
                continue;
            }
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use ResourceState::*;

    fn launch(run: Option<WorkloadRun>) -> Phase {
        Phase::Launch {
            provision_ms: 100,
            running_ms: 300,
            run,
        }
    }

    #[test]
    fn status_table() {
        let ok = Some(WorkloadRun {
            run_ms: 1000,
            exit_code: 0,
        });
        let bad = Some(WorkloadRun {
            run_ms: 1000,
            exit_code: 7,
        });
        let cases: Vec<(Segment, SimMillis, ResourceState, &str, Option<i32>)> = vec![
            (
                Segment {
                    at: 0,
                    phase: launch(None),
                },
                0,
                Starting,
                reasons::PROVISIONING,
                None,
            ),
            (
                Segment {
                    at: 0,
                    phase: launch(None),
                },
                99,
                Starting,
                reasons::PROVISIONING,
                None,
            ),
            (
                Segment {
                    at: 0,
                    phase: launch(None),
                },
                100,
                Starting,
                reasons::BOOTING,
                None,
            ),
            (
                Segment {
                    at: 0,
                    phase: launch(None),
                },
                300,
                Running,
                reasons::RUNNING,
                None,
            ),
            (
                Segment {
                    at: 0,
                    phase: launch(None),
                },
                10_000_000,
                Running,
                reasons::RUNNING,
                None,
            ),
            (
                Segment {
                    at: 50,
                    phase: launch(ok),
                },
                1349,
                Running,
                reasons::RUNNING,
                None,
            ),
            (
                Segment {
                    at: 50,
                    phase: launch(ok),
                },
                1350,
                Terminated,
                reasons::COMPLETED,
                Some(0),
            ),
            (
                Segment {
                    at: 50,
                    phase: launch(bad),
                },
                1350,
                Error,
                reasons::WORKLOAD_FAILED,
                Some(7),
            ),
            (
                Segment {
                    at: 10,
                    phase: Phase::Stopped,
                },
                20,
                Stopped,
                reasons::STOPPED,
                None,
            ),
            (
                Segment {
                    at: 10,
                    phase: Phase::Terminating { duration_ms: 5 },
                },
                14,
                Terminating,
                reasons::TERMINATING,
                None,
            ),
            (
                Segment {
                    at: 10,
                    phase: Phase::Terminating { duration_ms: 5 },
                },
                15,
                Terminated,
                reasons::TERMINATED,
                None,
            ),
            (
                Segment {
                    at: 10,
                    phase: Phase::Terminating { duration_ms: 0 },
                },
                10,
                Terminated,
                reasons::TERMINATED,
                None,
            ),
            (
                Segment {
                    at: 10,
                    phase: Phase::Ended(End::interrupted()),
                },
                10,
                Error,
                reasons::SPOT_INTERRUPTED,
                None,
            ),
            (
                Segment {
                    at: 10,
                    phase: Phase::Ended(End::provider_failure()),
                },
                99,
                Error,
                reasons::PROVIDER_FAILURE,
                None,
            ),
        ];
        for (seg, now, state, reason, code) in cases {
            let s = status_at(seg, now);
            assert_eq!(
                (s.state, s.reason, s.exit_code),
                (state, reason, code),
                "{seg:?} at {now}"
            );
        }
    }

    #[test]
    fn status_agrees_with_transitions() {
        let run = |run_ms, exit_code| Some(WorkloadRun { run_ms, exit_code });
        let phases = [
            launch(None),
            launch(run(0, 0)),
            launch(run(400, 2)),
            Phase::Launch {
                provision_ms: 0,
                running_ms: 0,
                run: None,
            },
            Phase::Launch {
                provision_ms: 500,
                running_ms: 100,
                run: run(10, 0),
            },
            Phase::Stopped,
            Phase::Terminating { duration_ms: 0 },
            Phase::Terminating { duration_ms: 333 },
            Phase::Ended(End::interrupted()),
        ];
        for phase in phases {
            let seg = Segment { at: 40, phase };
            let all = transitions(seg);
            for now in 40..1500 {
                let want = all.iter().take_while(|s| s.since <= now).last().copied();
                assert_eq!(Some(status_at(seg, now)), want, "{phase:?} at {now}");
            }
        }
    }

    #[test]
    fn provisioning_longer_than_boot_skips_nothing() {
        let seg = Segment {
            at: 0,
            phase: Phase::Launch {
                provision_ms: 500,
                running_ms: 100,
                run: None,
            },
        };
        assert_eq!(status_at(seg, 499).reason, reasons::PROVISIONING);
        assert_eq!(status_at(seg, 500).state, Running);
    }

    #[test]
    fn timeline_joins_phases_and_drops_empty_states() {
        let segs = [
            Segment {
                at: 0,
                phase: launch(None),
            },
            Segment {
                at: 500,
                phase: Phase::Stopped,
            },
            Segment {
                at: 700,
                phase: Phase::Launch {
                    provision_ms: 0,
                    running_ms: 0,
                    run: None,
                },
            },
            Segment {
                at: 900,
                phase: Phase::Terminating { duration_ms: 50 },
            },
        ];
        let got: Vec<(SimMillis, ResourceState, &str)> = timeline(&segs, 10_000)
            .into_iter()
            .map(|s| (s.since, s.state, s.reason))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, Starting, reasons::PROVISIONING),
                (100, Starting, reasons::BOOTING),
                (300, Running, reasons::RUNNING),
                (500, Stopped, reasons::STOPPED),
                (700, Running, reasons::RUNNING),
                (900, Terminating, reasons::TERMINATING),
                (950, Terminated, reasons::TERMINATED),
            ]
        );
        assert_eq!(
            timeline(&segs[..1], 150).len(),
            2,
            "nothing from the future"
        );
    }

    #[test]
    fn workload_knobs() {
        let wl = |pairs: &[(&str, &str)]| Workload {
            image: "img".into(),
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..Workload::default()
        };
        assert_eq!(workload_run(None), Ok(None));
        assert_eq!(workload_run(Some(&wl(&[]))), Ok(None));
        assert_eq!(
            workload_run(Some(&wl(&[(ENV_RUN_MS, "250")]))),
            Ok(Some(WorkloadRun {
                run_ms: 250,
                exit_code: 0
            }))
        );
        assert_eq!(
            workload_run(Some(&wl(&[(ENV_RUN_MS, "5"), (ENV_EXIT_CODE, "-3")]))),
            Ok(Some(WorkloadRun {
                run_ms: 5,
                exit_code: -3
            }))
        );
        let err = workload_run(Some(&wl(&[(ENV_RUN_MS, "soon-s3cr3t")]))).expect_err("bad value");
        assert!(err.contains(ENV_RUN_MS) && !err.contains("s3cr3t"), "{err}");
        assert!(workload_run(Some(&wl(&[(ENV_RUN_MS, "5"), (ENV_EXIT_CODE, "x")]))).is_err());
    }
}
