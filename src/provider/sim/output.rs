//! What a simulated workload prints, so that a sim job has logs (`runctl logs`): a line when it
//! starts, its environment when `RUNCTL_SIM_PRINT_ENV=1` (as a careless `env` in a training
//! script would: the values runctl must scrub), one `step` line per heartbeat interval while it
//! runs, and its exit code when a timed workload ends. Line `i` and the simulated instant it is
//! printed at are a pure function of the machine's record, so the wrapper ships them by index.

use super::clock::SimMillis;
use super::store::Record;
use super::timeline::Phase;

/// Env var: `1` prints the workload's whole environment when it starts.
pub const ENV_PRINT_ENV: &str = "RUNCTL_SIM_PRINT_ENV";

/// When the workload of `rec` started running and, for a timed one, when it exits with which
/// code; `None` when it never launched.
fn span(rec: &Record) -> Option<(SimMillis, Option<(SimMillis, i32)>)> {
    let seg = rec
        .segments
        .iter()
        .rev()
        .find(|s| matches!(s.phase, Phase::Launch { .. }))?;
    let Phase::Launch {
        provision_ms,
        running_ms,
        run,
    } = seg.phase
    else {
        return None;
    };
    let start = seg.at.saturating_add(running_ms.max(provision_ms));
    Some((
        start,
        run.map(|r| (start.saturating_add(r.run_ms), r.exit_code)),
    ))
}

fn header(rec: &Record) -> Vec<String> {
    let Some(w) = &rec.workload else {
        return Vec::new();
    };
    let mut lines = vec![format!(
        "[sim] {} started on {}",
        if w.image.is_empty() {
            "workload"
        } else {
            &w.image
        },
        rec.machine_type
    )];
    if w.env.get(ENV_PRINT_ENV).is_some_and(|v| v == "1") {
        lines.extend(w.full_env().iter().map(|(k, v)| format!("{k}={v}")));
    }
    lines
}

/// Line `i` of `rec`'s output and the instant it is printed, when it exists; `step_ms` apart
/// for the step lines.
pub fn line(rec: &Record, i: u64, step_ms: u64) -> Option<(SimMillis, String)> {
    let (start, end) = span(rec)?;
    let header = header(rec);
    let h = header.len() as u64;
    if i < h {
        return usize::try_from(i)
            .ok()
            .and_then(|i| header.get(i).cloned())
            .map(|l| (start, l));
    }
    let step = i - h + 1;
    let at = start.saturating_add(step.saturating_mul(step_ms.max(1)));
    match end {
        Some((exit_at, code)) if at >= exit_at => {
            let steps = exit_at.saturating_sub(start).saturating_sub(1) / step_ms.max(1);
            (step == steps + 1).then(|| (exit_at, format!("[sim] exiting with code {code}")))
        }
        _ => Some((at, format!("[sim] step {step}"))),
    }
}

/// Lines `from..` printed by `upto`, at most `max` of them.
pub fn lines(rec: &Record, from: u64, upto: SimMillis, step_ms: u64, max: usize) -> Vec<String> {
    (from..)
        .map_while(|i| line(rec, i, step_ms).filter(|(at, _)| *at <= upto))
        .take(max)
        .map(|(_, l)| l)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Workload;
    use crate::provider::sim::timeline::{Segment, WorkloadRun};

    fn record(env: &[(&str, &str)]) -> Record {
        let run = Some(WorkloadRun {
            run_ms: 350,
            exit_code: 3,
        });
        Record {
            num: 1,
            name: "m".into(),
            installation: "i".into(),
            region: "r".into(),
            owner_uid: None,
            attempt: None,
            tags: Default::default(),
            machine_type: "sim.a100".into(),
            spot: false,
            price_per_hour: 0.1,
            created: 0,
            run,
            workload: Some(Workload {
                image: "train:1".into(),
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Workload::default()
            }),
            foreign: false,
            segments: vec![Segment {
                at: 0,
                phase: Phase::Launch {
                    provision_ms: 10,
                    running_ms: 100,
                    run,
                },
            }],
        }
    }

    #[test]
    fn a_timed_workload_starts_steps_and_exits() {
        let rec = record(&[]);
        assert!(lines(&rec, 0, 99, 100, 10).is_empty(), "not running yet");
        assert_eq!(
            lines(&rec, 0, 100, 100, 10),
            vec!["[sim] train:1 started on sim.a100"]
        );
        assert_eq!(
            lines(&rec, 0, 10_000, 100, 10),
            vec![
                "[sim] train:1 started on sim.a100",
                "[sim] step 1",
                "[sim] step 2",
                "[sim] step 3",
                "[sim] exiting with code 3",
            ]
        );
        assert_eq!(lines(&rec, 3, 10_000, 100, 1), vec!["[sim] step 3"]);
        assert!(
            lines(&rec, 5, 10_000, 100, 10).is_empty(),
            "nothing after the exit"
        );
    }

    #[test]
    fn the_environment_is_printed_when_asked() {
        let rec = record(&[(ENV_PRINT_ENV, "1"), ("API_KEY", "s3cr3t")]);
        let l = lines(&rec, 0, 100, 100, 10);
        assert_eq!(l[1..], ["API_KEY=s3cr3t", "RUNCTL_SIM_PRINT_ENV=1"]);
    }
}
