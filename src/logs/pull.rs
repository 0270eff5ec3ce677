//! Output from a provider's own log API (Lyceum runs), pulled by the CloudResource controller
//! (the only part of runctl that talks to clouds, with the operator's credentials: users need
//! none) into the same per-attempt ConfigMap the wrapper's chunks go to: once when the machine is
//! seen ended, once before it is terminated, and while someone follows the job
//! ([`super::follow`]) at most once per [`PULL_INTERVAL`] per machine (a followed machine is
//! revisited that often). A running machine nobody follows is not pulled: its output costs no
//! write until it ends. Each pull reads the last [`PULL_LINES`] lines; the ConfigMap's cursor (the
//! fingerprints of the last lines taken) says where the new ones start.
//!
//! The same controller tells the wrapper's output sink ([`super::sink`]) when an attempt is
//! released ([`released`]), so the leader writes what it holds of it even when a standby
//! received the exit report (or none came).

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::ResourceExt;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use super::context;
use super::failure;
use super::stored;
use crate::callback::AttemptId;
use crate::controller::Context;
use crate::controller::training_job::view::{LABEL_ATTEMPT, LABEL_JOB, LABEL_RANK};
use crate::crd::CloudResource;
use crate::provider::{LogLine, Machine, Provider};

/// A running machine's log is pulled at most this often.
pub const PULL_INTERVAL: Duration = Duration::from_secs(15);
/// Lines read per pull.
pub const PULL_LINES: u32 = 500;
/// How long after a machine was seen ended the `AttemptFailed` event waits for the wrapper's
/// last output when its exit report did not come first (the leader writes it with the exit
/// report, or when the attempt is released).
pub const LATE_EVENT: Duration = Duration::from_secs(12);
/// Lines the cursor fingerprints.
const CURSOR_LINES: usize = 3;

/// Per machine (CloudResource uid): the last pull, and whether the last one was done.
static PULLS: LazyLock<Mutex<HashMap<String, (Instant, bool)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn fingerprint(l: &LogLine) -> String {
    let mut h = Sha256::new();
    h.update(l.time.map(|t| t.to_string()).unwrap_or_default());
    h.update([0]);
    h.update(l.message.as_bytes());
    h.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The lines of `lines` after the ones `cursor` fingerprints (all of them when it matches none),
/// and the cursor after them.
pub fn new_lines<'a>(
    lines: &'a [LogLine],
    cursor: Option<&str>,
) -> (&'a [LogLine], Option<String>) {
    let prints: Vec<String> = lines.iter().map(fingerprint).collect();
    let start = cursor
        .map(|c| c.split('.').collect::<Vec<_>>())
        .filter(|c| !c.is_empty())
        .and_then(|c| {
            // The longest end of the cursor found, its last occurrence (the oldest of the lines
            // it fingerprints may have left the provider's window).
            (1..=c.len()).rev().find_map(|k| {
                let want = &c[c.len() - k..];
                (k..=prints.len())
                    .rev()
                    .find(|&end| prints[end - k..end].iter().zip(want).all(|(a, b)| a == b))
            })
        })
        .unwrap_or(0);
    let next = if prints.is_empty() {
        cursor.map(str::to_string)
    } else {
        Some(prints[prints.len().saturating_sub(CURSOR_LINES)..].join("."))
    };
    (&lines[start..], next)
}

/// Whether a pull of machine `uid` is due: `last` (the machine ended or is about to be
/// terminated) once, otherwise every [`PULL_INTERVAL`].
fn due(uid: &str, last: bool, now: Instant) -> bool {
    let mut pulls = PULLS.lock();
    if pulls.len() > 10_000 {
        pulls.retain(|_, (t, _)| now.saturating_duration_since(*t) < Duration::from_secs(3600));
    }
    match pulls.get(uid) {
        Some((_, true)) => false,
        Some((t, false)) if !last && now.saturating_duration_since(*t) < PULL_INTERVAL => false,
        _ => {
            pulls.insert(uid.to_string(), (now, last));
            true
        }
    }
}

/// Pulls the log of `cr`'s machine `machine` (an attempt of a TrainingJob) when due; `last`
/// when it has ended or is about to be terminated. Failures are logged, never returned: the
/// output is a convenience, the machine's lifecycle is not.
pub async fn pull(
    ctx: &Context,
    cr: &CloudResource,
    provider: &dyn Provider,
    machine: &str,
    last: bool,
) {
    let labels = cr.labels();
    let (Some(job), Some(attempt)) = (
        labels.get(LABEL_JOB),
        labels
            .get(LABEL_ATTEMPT)
            .and_then(|a| a.parse::<u32>().ok()),
    ) else {
        return;
    };
    if !last && !followed(ctx, cr) {
        return;
    }
    let uid = cr.uid().unwrap_or_default();
    if !due(&uid, last, Instant::now()) {
        return;
    }
    let lines = match provider.logs(machine, PULL_LINES).await {
        Ok(Some(lines)) => lines,
        Ok(None) => return,
        Err(e) => {
            debug!(name = %cr.name_any(), error = %e, "provider log pull failed");
            if last {
                PULLS.lock().remove(&uid);
            }
            return;
        }
    };
    let actx = match context::of_cloud_resource(&ctx.client, cr, job, attempt, &[]).await {
        Ok(c) => c,
        Err(e) => {
            debug!(name = %cr.name_any(), error = %e, "log pull: attempt context unreadable");
            return;
        }
    };
    let source = provider.kind().as_str().to_string();
    let now = Timestamp::now().as_second();
    let mut received = 0;
    let result = stored::update(&ctx.client, &actx.target, None, |s| {
        let (new, cursor) = new_lines(&lines, s.cursor.as_deref());
        if new.is_empty() && (s.last || !last) {
            return false;
        }
        received = 0;
        for l in new {
            received += l.message.len() as u64 + 1;
            s.tail
                .push_line(&l.message, l.time.map_or(now, |t| t.as_second()));
        }
        s.tail.map_text(|t| actx.scrubber.scrub(t));
        s.cursor = cursor;
        s.source = source.clone();
        s.last |= last;
        true
    })
    .await;
    if let Err(e) = result {
        warn!(name = %cr.name_any(), error = %e, "log pull not stored");
        return;
    }
    ctx.metrics
        .log_bytes_received(provider.kind().as_str(), received);
}

/// [`pull`] after an observation of `m`: while it runs, and a last time once it has ended;
/// then, for a machine that ended with a non-zero exit code, the `AttemptFailed` event.
pub async fn observed(ctx: &Context, cr: &CloudResource, provider: &dyn Provider, m: &Machine) {
    let last = m.state.is_final();
    // The wrapper's output the leader holds is written with the exit report, or when the attempt
    // is released ([`released`]) if none comes: once, not also here, where the exit report is
    // usually a moment away.
    pull(ctx, cr, provider, &m.id, last).await;
    if let (true, Some(code)) = (last, m.exit_code.filter(|c| *c != 0)) {
        failed(ctx, cr, code).await;
    }
}

/// The attempt of `cr` is released (its CloudResource is being deleted): the leader writes the
/// wrapper's output it holds a last time, with the `AttemptFailed` event when the attempt failed
/// (by the exit report the CloudResource keeps, else the machine's exit code).
pub async fn released(ctx: &Context, cr: &CloudResource) {
    let Some(id) = attempt_of(cr) else {
        return;
    };
    let status = cr.status.as_ref();
    let report = status.and_then(|s| s.report.as_ref());
    let exit = match report.and_then(|r| r.exit_code) {
        Some(code) => Some((code, report.and_then(|r| r.interrupted).unwrap_or(false))),
        None => status.and_then(|s| s.exit_code).map(|c| (c, false)),
    };
    ctx.logs.ended(&id, exit).await;
}

/// Whether the job of `cr` is followed now.
pub fn followed(ctx: &Context, cr: &CloudResource) -> bool {
    match (cr.namespace(), cr.labels().get(LABEL_JOB)) {
        (Some(ns), Some(job)) => ctx.logs.followed(&ns, job),
        _ => false,
    }
}

/// The attempt whose output `cr` carries: an attempt of a TrainingJob, its rank 0 (the other
/// ranks ship none).
fn attempt_of(cr: &CloudResource) -> Option<AttemptId> {
    let labels = cr.labels();
    if labels.get(LABEL_RANK).is_some_and(|r| r != "0") {
        return None;
    }
    Some(AttemptId {
        namespace: cr.namespace()?,
        job: labels.get(LABEL_JOB)?.clone(),
        attempt: labels.get(LABEL_ATTEMPT)?.parse().ok()?,
    })
}

/// Publishes the `AttemptFailed` event of `cr`'s attempt, whose machine ended with `code`,
/// unless the exit report's did already. When the wrapper's last output has not been written yet
/// (the machine was seen ended first), once more after [`LATE_EVENT`] with what is there by then.
async fn failed(ctx: &Context, cr: &CloudResource, code: i32) {
    let Some(target) = target_of(cr) else {
        return;
    };
    let why = format!("exited with code {code}");
    match failure::report_once(&ctx.client, &target, &why, true).await {
        Ok(failure::Reported::NotYet) => {
            let client = ctx.client.clone();
            tokio::spawn(async move {
                tokio::time::sleep(LATE_EVENT).await;
                if let Err(e) = failure::report_once(&client, &target, &why, false).await {
                    warn!(job = %target.job, attempt = target.attempt, error = %e, "failed to publish the failed attempt's last lines");
                }
            });
        }
        Ok(_) => {}
        Err(e) => {
            warn!(name = %cr.name_any(), error = %e, "failed to publish the failed attempt's last lines")
        }
    }
}

/// The ConfigMap target of `cr`, an attempt of a TrainingJob.
fn target_of(cr: &CloudResource) -> Option<stored::Target> {
    let labels = cr.labels();
    Some(stored::Target {
        namespace: cr.namespace()?,
        job: labels.get(LABEL_JOB)?.clone(),
        attempt: labels.get(LABEL_ATTEMPT)?.parse().ok()?,
        owner: context::job_owner(cr),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: i64, m: &str) -> LogLine {
        LogLine {
            time: Some(Timestamp::from_second(t).unwrap()),
            message: m.into(),
        }
    }

    #[test]
    fn a_pull_takes_the_lines_after_the_cursor() {
        let first = vec![line(1, "pulling"), line(2, "step"), line(3, "step")];
        let (new, cursor) = new_lines(&first, None);
        assert_eq!(new.len(), 3);
        let cursor = cursor.expect("a cursor");
        let second = vec![
            line(2, "step"),
            line(3, "step"),
            line(4, "step"),
            line(5, "done"),
        ];
        let (new, next) = new_lines(&second, Some(&cursor));
        assert_eq!(new, &second[2..]);
        let (again, same) = new_lines(&second, next.as_deref());
        assert!(again.is_empty());
        assert_eq!(same, next);
        let later = [line(9, "far later")];
        let (gap, _) = new_lines(&later, Some(&cursor));
        assert_eq!(gap.len(), 1, "no overlap: every line is new");
        let (none, kept) = new_lines(&[], Some(&cursor));
        assert!(none.is_empty());
        assert_eq!(kept.as_deref(), Some(cursor.as_str()));
    }

    #[test]
    fn pulls_are_throttled_and_the_last_is_once() {
        let t0 = Instant::now();
        let uid = format!("test-{}", rand::random::<u64>());
        assert!(due(&uid, false, t0));
        assert!(!due(&uid, false, t0 + Duration::from_secs(1)));
        assert!(due(&uid, false, t0 + PULL_INTERVAL));
        assert!(due(&uid, true, t0 + PULL_INTERVAL), "the last pull at once");
        assert!(!due(&uid, true, t0 + PULL_INTERVAL * 2), "once");
    }
}
