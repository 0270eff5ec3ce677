//! Multi-node attempts (`spec.nodes > 1`), judged without I/O: an attempt's machines come up
//! together or not at all. Rank 0 is created first (the attempt's CloudResource `<job>-a<N>`);
//! once it runs and has a private address, the other ranks (`<job>-a<N>-r<R>`) are created with
//! that address as `MASTER_ADDR`. Rank 0's exit decides the attempt; another node that fails to
//! start, is lost, or does not reach Running within the start timeout ends the attempt, and the
//! release of an ended attempt takes every node.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::outcome::{Outcome, Seen, classify};
use super::view::MachineView;
use crate::crd::cloud_resource::ResourceState;

/// Where a multi-node attempt stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Gang {
    /// One machine, or every node running.
    Complete,
    /// Rank 0 is not yet running with a private address; the other ranks wait for it.
    WaitingForRank0,
    /// These ranks are to be created, with rank 0's private address.
    StartPeers {
        /// Missing ranks.
        ranks: Vec<u32>,
        /// Rank 0's private address (`MASTER_ADDR` of the others).
        master_addr: String,
    },
    /// Every node exists; `running` of them run.
    Starting {
        /// Nodes running (rank 0 included).
        running: u32,
    },
    /// A node other than rank 0 failed: the attempt ends with this outcome.
    Broken(Outcome),
}

/// What the judgement needs besides the machines.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a machine that ended may wait for rank 0's exit report.
    pub report_grace: Duration,
    /// How long a node may take to reach Running after its CloudResource was created.
    pub start_timeout: Option<Duration>,
}

/// Judges attempt machines: `rank0` and the other ranks' `peers` of an attempt of `nodes`
/// machines. Returns also when to look again (a grace or timeout running out), if ever.
pub fn assess(
    nodes: u32,
    rank0: Option<&MachineView>,
    peers: &[&MachineView],
    limits: Limits,
    now: Timestamp,
) -> (Gang, Option<Timestamp>) {
    if nodes <= 1 {
        return (Gang::Complete, None);
    }
    let mut wake: Option<Timestamp> = None;
    let mut soon = |t: Timestamp| wake = Some(wake.map_or(t, |w| w.min(t)));
    let mut running = u32::from(rank0.is_some_and(|v| v.state == Some(ResourceState::Running)));
    let mut ranks = peers.to_vec();
    ranks.sort_by_key(|v| v.rank);
    for v in ranks.iter().filter(|v| v.rank < nodes) {
        match classify(Some(v), None, limits.report_grace, now, false) {
            Seen::Ended(o) => return (Gang::Broken(on_node(v.rank, o)), None),
            Seen::AwaitingReport { until } => soon(until),
            Seen::Open if v.state == Some(ResourceState::Running) => running += 1,
            Seen::Open => {
                if let (Some(timeout), Some(created)) = (limits.start_timeout, v.created) {
                    let due =
                        created + SignedDuration::try_from(timeout).unwrap_or(SignedDuration::MAX);
                    if now >= due {
                        return (
                            Gang::Broken(Outcome::StartTimedOut {
                                message: format!(
                                    "node {} did not reach Running within {} s (jobs.startTimeoutSeconds); it was {}",
                                    v.rank,
                                    timeout.as_secs(),
                                    v.state.map_or("requested", ResourceState::as_str)
                                ),
                            }),
                            None,
                        );
                    }
                    soon(due);
                }
            }
        }
    }
    let missing: Vec<u32> = (1..nodes)
        .filter(|r| !peers.iter().any(|v| v.rank == *r))
        .collect();
    let gang = if !missing.is_empty() {
        match rank0.filter(|v| v.state == Some(ResourceState::Running)) {
            Some(v) => match &v.private_address {
                Some(addr) => Gang::StartPeers {
                    ranks: missing,
                    master_addr: addr.clone(),
                },
                None => Gang::WaitingForRank0,
            },
            None => Gang::WaitingForRank0,
        }
    } else if running == nodes {
        Gang::Complete
    } else {
        Gang::Starting { running }
    };
    (gang, wake)
}

/// The outcome of another node, told as that node's.
fn on_node(rank: u32, o: Outcome) -> Outcome {
    let tell = |m: String| format!("node {rank}: {m}");
    match o {
        Outcome::MachineLost { message } => Outcome::MachineLost {
            message: tell(message),
        },
        Outcome::NoCapacity { message } => Outcome::NoCapacity {
            message: tell(message),
        },
        Outcome::InvalidSpec { message } => Outcome::InvalidSpec {
            message: tell(message),
        },
        Outcome::StartTimedOut { message } => Outcome::StartTimedOut {
            message: tell(message),
        },
        Outcome::HeartbeatsStopped { message } => Outcome::HeartbeatsStopped {
            message: tell(message),
        },
        // A node's own exit (only providers that report one): the job's outcome is rank 0's,
        // so another node that ended first is a lost node.
        Outcome::Completed | Outcome::ExitCode(_) => Outcome::MachineLost {
            message: tell(format!(
                "its workload ended ({}) before rank 0's",
                o.message()
            )),
        },
        interrupted @ Outcome::Interrupted { .. } => interrupted,
    }
}

/// The attempt's machines' summed price per hour (`None` when none has a price).
pub fn price_per_hour(machines: &[&MachineView]) -> Option<f64> {
    machines
        .iter()
        .filter_map(|v| v.cost_per_hour)
        .fold(None, |sum, c| Some(sum.unwrap_or(0.0) + c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ProviderKind;
    use crate::crd::cloud_resource::{Failure, FailureClass};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn now() -> Timestamp {
        "2026-12-04T12:00:00Z".parse().unwrap()
    }

    fn node(rank: u32, state: ResourceState) -> MachineView {
        MachineView {
            name: if rank == 0 {
                "j-a1".into()
            } else {
                format!("j-a1-r{rank}")
            },
            attempt: 1,
            rank,
            created: Some(now() - SignedDuration::from_secs(30)),
            private_address: (state == ResourceState::Running).then(|| format!("10.0.0.{rank}")),
            provider: ProviderKind::Sim,
            machine_type: Some("sim.a100".into()),
            region: None,
            spot: false,
            state: Some(state),
            reason: Some(state.as_str().into()),
            message: None,
            has_machine: state != ResourceState::Starting,
            cost_per_hour: Some(2.0),
            accrued_cost: None,
            launch_time: None,
            end_time: None,
            deleting: false,
            orphan: false,
            exit_code: None,
            failure: None,
            report: None,
        }
    }

    fn limits() -> Limits {
        Limits {
            report_grace: Duration::from_secs(10),
            start_timeout: Some(Duration::from_secs(600)),
        }
    }

    #[test]
    fn one_machine_is_always_complete() {
        let r0 = node(0, ResourceState::Starting);
        assert_eq!(assess(1, Some(&r0), &[], limits(), now()).0, Gang::Complete);
    }

    #[test]
    fn the_other_ranks_start_once_rank_0_runs_with_an_address() {
        let starting = node(0, ResourceState::Starting);
        assert_eq!(
            assess(3, Some(&starting), &[], limits(), now()).0,
            Gang::WaitingForRank0
        );
        let mut no_addr = node(0, ResourceState::Running);
        no_addr.private_address = None;
        assert_eq!(
            assess(3, Some(&no_addr), &[], limits(), now()).0,
            Gang::WaitingForRank0
        );
        let r0 = node(0, ResourceState::Running);
        let r2 = node(2, ResourceState::Starting);
        assert_eq!(
            assess(3, Some(&r0), &[&r2], limits(), now()).0,
            Gang::StartPeers {
                ranks: vec![1],
                master_addr: "10.0.0.0".into()
            }
        );
    }

    #[test]
    fn running_counts_every_node_and_complete_needs_all() {
        let r0 = node(0, ResourceState::Running);
        let r1 = node(1, ResourceState::Starting);
        let r1_up = node(1, ResourceState::Running);
        assert_eq!(
            assess(2, Some(&r0), &[&r1], limits(), now()).0,
            Gang::Starting { running: 1 }
        );
        assert_eq!(
            assess(2, Some(&r0), &[&r1_up], limits(), now()).0,
            Gang::Complete
        );
    }

    #[test]
    fn a_node_without_capacity_breaks_the_attempt_as_a_capacity_failure() {
        let r0 = node(0, ResourceState::Running);
        let mut r1 = node(1, ResourceState::Starting);
        r1.failure = Some(Failure {
            class: FailureClass::Capacity,
            reason: "InsufficientCapacity".into(),
            generation: 1,
            credentials: None,
            time: Time(now()),
        });
        r1.message = Some("no capacity".into());
        let (gang, _) = assess(2, Some(&r0), &[&r1], limits(), now());
        let Gang::Broken(o) = gang else {
            panic!("{gang:?}")
        };
        assert_eq!(o.class(), Some(crate::crd::training_job::RetryOn::Capacity));
        assert_eq!(o.message(), "node 1: no capacity");
    }

    #[test]
    fn a_lost_node_breaks_the_attempt_after_the_report_grace() {
        let r0 = node(0, ResourceState::Running);
        let mut r1 = node(1, ResourceState::Terminated);
        r1.has_machine = true;
        r1.end_time = Some(now() - SignedDuration::from_secs(5));
        let (gang, wake) = assess(2, Some(&r0), &[&r1], limits(), now());
        assert_eq!(
            gang,
            Gang::Starting { running: 1 },
            "rank 0 may still report"
        );
        assert_eq!(wake, Some(now() + SignedDuration::from_secs(5)));
        r1.end_time = Some(now() - SignedDuration::from_secs(60));
        let (gang, _) = assess(2, Some(&r0), &[&r1], limits(), now());
        assert!(
            matches!(&gang, Gang::Broken(Outcome::MachineLost { message }) if message.starts_with("node 1: ")),
            "{gang:?}"
        );
    }

    #[test]
    fn a_node_that_does_not_come_up_in_time_breaks_the_attempt() {
        let r0 = node(0, ResourceState::Running);
        let mut r1 = node(1, ResourceState::Starting);
        let (gang, wake) = assess(2, Some(&r0), &[&r1], limits(), now());
        assert_eq!(gang, Gang::Starting { running: 1 });
        assert_eq!(wake, Some(now() + SignedDuration::from_secs(570)));
        r1.created = Some(now() - SignedDuration::from_secs(601));
        let (gang, _) = assess(2, Some(&r0), &[&r1], limits(), now());
        assert!(
            matches!(gang, Gang::Broken(Outcome::StartTimedOut { .. })),
            "{gang:?}"
        );
    }

    #[test]
    fn prices_add_up() {
        let (a, b) = (
            node(0, ResourceState::Running),
            node(1, ResourceState::Running),
        );
        assert_eq!(price_per_hour(&[&a, &b]), Some(4.0));
        assert_eq!(price_per_hour(&[]), None);
    }
}
