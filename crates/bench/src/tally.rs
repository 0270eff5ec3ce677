//! The end-of-run tally of a benchmark run: latencies from the sim's machine timelines and the
//! benchmark's first sightings, the jobs that did not succeed (from their own statuses), and the
//! operator's share of the API requests.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use runctl_apiserver::Verb;

use runctl::crd::training_job::JobPhase;
use runctl::provider::ResourceState;
use runctl::provider::identity::TAG_OWNER;
use runctl::provider::sim::wire::WireSimMachine;

use super::count::Counts;
use super::report::{FailedJob, Latency};
use super::watch::JobOutcome;

/// Apply → create-call and provider-state → status latencies of the machines of `namespaces`:
/// `applied` gives when each job was applied, `first` when the benchmark first saw a
/// CloudResource in a state.
pub fn latencies(
    machines: &[WireSimMachine],
    namespaces: &[String],
    applied: &HashMap<String, Timestamp>,
    first: impl Fn(&str, ResourceState) -> Option<Timestamp>,
) -> (Latency, Latency) {
    let mut apply_to_create = Vec::new();
    let mut status_lag = Vec::new();
    let mut ours = 0;
    for m in machines {
        let Some(cr) = m
            .tags
            .get(TAG_OWNER)
            .and_then(|o| o.split_once('/'))
            .filter(|(ns, _)| namespaces.iter().any(|n| n == ns))
            .map(|(_, cr)| cr)
        else {
            continue;
        };
        ours += 1;
        let job = cr.strip_suffix("-a1").unwrap_or(cr);
        if let Some(at) = applied.get(job) {
            apply_to_create.push(ms_between(*at, m.created_at));
        }
        for s in &m.timeline {
            if matches!(s.state, ResourceState::Running | ResourceState::Terminated)
                && let Some(observed) = first(cr, s.state)
            {
                status_lag.push(ms_between(s.since, observed));
            }
        }
    }
    let why_empty = format!(
        "no samples: the sim knew {} machines at the end, {ours} of them the benchmark's",
        machines.len()
    );
    (
        Latency::of(&mut apply_to_create, &why_empty),
        Latency::of(&mut status_lag, &why_empty),
    )
}

fn ms_between(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64() * 1000.0
}

/// The jobs of `names` whose last phase seen was not Succeeded, by name, with what their status
/// said (no phase: never seen with one).
pub fn not_succeeded<'a>(
    names: impl Iterator<Item = &'a String>,
    outcomes: &HashMap<String, JobOutcome>,
) -> Vec<FailedJob> {
    let mut failed: Vec<FailedJob> = names
        .filter_map(|name| match outcomes.get(name) {
            Some(o) if o.phase == JobPhase::Succeeded => None,
            o => Some(FailedJob {
                name: name.clone(),
                phase: o.map(|o| format!("{:?}", o.phase)),
                reason: o.and_then(|o| o.reason.clone()),
                message: o.and_then(|o| o.message.clone()),
            }),
        })
        .collect();
    failed.sort_by(|a, b| a.name.cmp(&b.name));
    failed
}

/// The operator's requests of a run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Requests {
    /// Gets and lists.
    pub reads: u64,
    /// Every write verb.
    pub writes: u64,
    /// List requests by resource.
    pub lists: BTreeMap<String, u64>,
}

/// The operator's share of `stats`: everything but the driver's lists (`driver_lists` by
/// resource). Writes include the driver's job creates (the caller subtracts them).
pub fn operator_requests(stats: &Counts, driver_lists: &BTreeMap<String, u64>) -> Requests {
    let mut out = Requests::default();
    for (verb, resource, count) in stats.iter() {
        match verb {
            Verb::List => {
                let theirs = count.saturating_sub(driver_lists.get(resource).copied().unwrap_or(0));
                out.reads += theirs;
                if theirs > 0 {
                    out.lists.insert(resource.to_string(), theirs);
                }
            }
            Verb::Get => out.reads += count,
            Verb::Watch => {}
            _ => out.writes += count,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use runctl::provider::sim::wire::WireStatus;

    fn outcome(phase: JobPhase, reason: Option<&str>) -> JobOutcome {
        JobOutcome {
            phase,
            reason: reason.map(str::to_string),
            message: None,
        }
    }

    #[test]
    fn jobs_not_succeeded_with_their_reasons() {
        let names: Vec<String> = ["c", "a", "b", "d"].map(String::from).to_vec();
        let outcomes = HashMap::from([
            (
                "a".to_string(),
                outcome(JobPhase::Succeeded, Some("Completed")),
            ),
            (
                "b".to_string(),
                outcome(JobPhase::Failed, Some("MachineLost")),
            ),
            ("c".to_string(), outcome(JobPhase::Running, None)),
        ]);
        let failed = not_succeeded(names.iter(), &outcomes);
        let got: Vec<(&str, Option<&str>, Option<&str>)> = failed
            .iter()
            .map(|f| (f.name.as_str(), f.phase.as_deref(), f.reason.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("b", Some("Failed"), Some("MachineLost")),
                ("c", Some("Running"), None),
                ("d", None, None),
            ]
        );
    }

    #[test]
    fn latencies_of_the_benchmarks_machines_only() {
        let t0 = Timestamp::UNIX_EPOCH;
        let at = |ms: i64| t0 + jiff::SignedDuration::from_millis(ms);
        let machine = |owner: Option<&str>| WireSimMachine {
            id: "sim-1".into(),
            name: "m".into(),
            owner_uid: None,
            attempt: Some(1),
            tags: owner
                .map(|o| BTreeMap::from([(TAG_OWNER.to_string(), o.to_string())]))
                .unwrap_or_default(),
            created_at: at(100),
            state: ResourceState::Terminated,
            reason: "Completed".into(),
            exit_code: Some(0),
            timeline: vec![
                WireStatus {
                    state: ResourceState::Starting,
                    since: at(100),
                },
                WireStatus {
                    state: ResourceState::Running,
                    since: at(1000),
                },
            ],
        };
        let applied = HashMap::from([("j".to_string(), t0)]);
        let machines = [machine(Some("ns/j-a1")), machine(None)];
        let (create, lag) = latencies(&machines, &["ns".to_string()], &applied, |cr, state| {
            (cr == "j-a1" && state == ResourceState::Running).then(|| at(1250))
        });
        assert_eq!(
            create,
            Latency::Measured {
                p50: 100.0,
                p99: 100.0,
                samples: 1
            }
        );
        assert_eq!(
            lag,
            Latency::Measured {
                p50: 250.0,
                p99: 250.0,
                samples: 1
            }
        );
        let (create, _) = latencies(&machines[1..], &["ns".to_string()], &applied, |_, _| None);
        assert_eq!(
            create.to_string(),
            "n/a (no samples: the sim knew 1 machines at the end, 0 of them the benchmark's)"
        );
    }
}
