//! The simulated reporting wrapper: what runctl's `WRAPPER_SCRIPT` does on a real machine, done
//! by the simulated cloud for every machine whose workload asks for reporting. While a machine is
//! `Running` it posts heartbeats to `RUNCTL_REPORT_URL` every `heartbeat_interval_seconds`
//! (times `SimConfig::heartbeat_ms_per_second` simulated milliseconds), and when a timed workload
//! ends it posts the exit report (the same JSON bodies as the wrapper) just before the machine
//! ends. It also ships what the workload prints ([`super::output`]) to `<url>/logs?offset=<n>`
//! every `LOG_INTERVAL_SECONDS` (and its last lines before the exit report), as the shell wrapper
//! does. One background task per cloud drives every machine, with one shared HTTP client and at
//! most `SimConfig::report_concurrency` requests in flight. The bearer token is never logged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use tracing::debug;

use super::clock::SimMillis;
use super::cloud::SimCloud;
use super::store::Record;
use super::timeline::Phase;
use crate::provider::ResourceState;

/// Longest wait between two tries of an exit report, in seconds (times
/// `SimConfig::heartbeat_ms_per_second` simulated milliseconds): like the shell wrapper, the
/// wait doubles from 1 s up to this, and tries go on until the report is acknowledged, refused
/// for good (401, 403, 404, 410) or the workload's `report_grace_seconds` have passed since the
/// first try, so that a callback endpoint that answers 429 or 503 to a burst of exits gets the
/// reports later instead of never.
pub const EXIT_RETRY_MAX_SECONDS: u64 = 30;

/// Seconds between two chunks of output, as the shell wrapper's default (times
/// `SimConfig::heartbeat_ms_per_second` simulated milliseconds).
pub const LOG_INTERVAL_SECONDS: u64 = 5;
/// Lines of output shipped per chunk at most.
pub const LOG_CHUNK_LINES: usize = 200;

/// The wait before exit report try `attempts + 1`, in seconds: 1, 2, 4 … capped.
pub fn exit_retry_seconds(attempts: u32) -> u64 {
    1u64.checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u64::MAX)
        .min(EXIT_RETRY_MAX_SECONDS)
}

/// How the wrapper takes an answer of the callback endpoint, as the shell wrapper does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 2xx.
    Acknowledged,
    /// 401, 403, 404, 410: the attempt is over or its token is gone; not tried again.
    Refused,
    /// Anything else, or no answer: tried again.
    Retry,
}

impl Answer {
    /// The answer an HTTP status means.
    pub fn of(status: u16) -> Self {
        match status {
            200..=299 => Self::Acknowledged,
            401 | 403 | 404 | 410 => Self::Refused,
            _ => Self::Retry,
        }
    }
}

/// What the wrapper knows about one machine between ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Track {
    /// Simulated instant of the next heartbeat (0: at once).
    pub next_heartbeat: SimMillis,
    /// The exit report was acknowledged (or given up on).
    pub exit_done: bool,
    /// Exit reports tried so far.
    pub exit_attempts: u32,
    /// Simulated instant of the first exit report try (0: not tried yet).
    pub first_exit: SimMillis,
    /// Simulated milliseconds the exit report is retried for (the workload's grace).
    pub exit_grace_ms: u64,
    /// Simulated instant before which the exit report is not tried again (0: at once).
    pub next_exit: SimMillis,
    /// Lines of output acknowledged.
    pub log_lines: u64,
    /// Bytes of output acknowledged (the stream offset of the next chunk).
    pub log_offset: u64,
    /// Simulated instant of the next chunk of output (0: at once).
    pub next_log: SimMillis,
    /// The callback refused output for good (the attempt has ended).
    pub log_done: bool,
    /// The exit report was acknowledged: no output is shipped after it.
    pub exit_acknowledged: bool,
}

/// Kind of report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `POST <url>/heartbeat` with `{"kind":"heartbeat"}`.
    Heartbeat,
    /// `POST <url>/exit` with `{"kind":"exit","exitCode":<code>}`.
    Exit(i32),
    /// `POST <url>/logs?offset=<n>` with the output as the body.
    Logs,
}

impl Kind {
    /// The path segment after the callback URL.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Heartbeat => "heartbeat",
            Kind::Exit(_) => "exit",
            Kind::Logs => "logs",
        }
    }

    /// The JSON body, as the shell wrapper sends it.
    pub fn body(self) -> String {
        match self {
            Kind::Heartbeat => r#"{"kind":"heartbeat"}"#.to_string(),
            Kind::Exit(code) => format!(r#"{{"kind":"exit","exitCode":{code}}}"#),
            Kind::Logs => String::new(),
        }
    }
}

/// One report to send.
pub struct Post {
    /// Machine sequence number.
    pub num: u64,
    /// Report kind.
    pub kind: Kind,
    url: String,
    token: String,
    body: String,
    /// Lines of output in the body (logs).
    lines: u64,
}

impl std::fmt::Debug for Post {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Post")
            .field("num", &self.num)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// What the wrapper of one machine should send now, from its record, its track and the time:
/// the exit report once the workload has ended (or is due to end within `lead_ms`), else a
/// heartbeat when the machine runs, one is due and no exit report was tried (the shell
/// wrapper's heartbeats end with the workload: none between exit report retries or after the
/// exit was reported). Pure, for table tests.
pub fn due(rec: &Record, track: &Track, now: SimMillis, lead_ms: u64) -> Option<Kind> {
    let status = rec.status(now);
    if !track.exit_done && now >= track.next_exit {
        if let Some(code) = status.exit_code.filter(|_| status.state.is_final()) {
            return Some(Kind::Exit(code));
        }
        let seg = rec.current();
        if let Phase::Launch {
            provision_ms,
            running_ms,
            run: Some(run),
        } = seg.phase
        {
            let exit_at = seg
                .at
                .saturating_add(running_ms.max(provision_ms))
                .saturating_add(run.run_ms);
            if status.state == ResourceState::Running && now.saturating_add(lead_ms) >= exit_at {
                return Some(Kind::Exit(run.exit_code));
            }
        }
    }
    let workload_runs = !track.exit_done && track.exit_attempts == 0;
    (workload_runs && status.state == ResourceState::Running && now >= track.next_heartbeat)
        .then_some(Kind::Heartbeat)
}

/// The chunk of output of `rec` due now: lines not yet acknowledged, printed by `upto`, when its
/// interval has passed or `flush` (its exit is reported now); none once the exit report was
/// acknowledged.
fn output_due(
    rec: &Record,
    track: &mut Track,
    now: SimMillis,
    upto: SimMillis,
    flush: bool,
    step_ms: u64,
    ms_per_second: u64,
) -> Option<(String, u64)> {
    let w = rec.workload.as_ref()?;
    // Nothing after the exit report was acknowledged: the shell wrapper ships the last chunks
    // once, before its exit report, and never again. (After an exit report given up on, the
    // sim goes on shipping what is left: tests that compress time past the callback's rate
    // limits get their output that way; the shell wrapper would have ended.)
    if track.log_done
        || track.exit_acknowledged
        || w.env
            .get(crate::provider::workload::ENV_SHIP_LOGS)
            .is_some_and(|v| v == "no")
        || (!flush && now < track.next_log)
    {
        return None;
    }
    track.next_log = now.saturating_add(LOG_INTERVAL_SECONDS.saturating_mul(ms_per_second.max(1)));
    let lines = super::output::lines(rec, track.log_lines, upto, step_ms, LOG_CHUNK_LINES);
    if lines.is_empty() {
        return None;
    }
    let n = lines.len() as u64;
    let mut body = lines.join("\n");
    body.push('\n');
    Some((body, n))
}

/// Collects the reports due now and updates the tracks (heartbeats are rescheduled when
/// collected; exits are marked done when acknowledged). Tracks of machines the cloud forgot
/// are dropped. Chunks of output come first, so the last lines precede the exit report.
pub(super) fn collect<'a>(
    records: impl Iterator<Item = &'a Record>,
    tracks: &mut HashMap<u64, Track>,
    now: SimMillis,
    lead_ms: u64,
    ms_per_second: u64,
) -> Vec<Post> {
    let mut posts = Vec::new();
    let mut seen = HashSet::new();
    for rec in records {
        let Some(reporting) = rec.workload.as_ref().and_then(|w| w.reporting.as_ref()) else {
            continue;
        };
        let interval_ms = u64::from(reporting.heartbeat_interval_seconds.max(1))
            .saturating_mul(ms_per_second.max(1));
        seen.insert(rec.num);
        let track = tracks.entry(rec.num).or_default();
        track.exit_grace_ms =
            u64::from(reporting.report_grace_seconds).saturating_mul(ms_per_second.max(1));
        let kind = due(rec, track, now, lead_ms);
        let base = reporting.callback_url.trim_end_matches('/');
        let upto = match kind {
            Some(Kind::Exit(_)) => now.saturating_add(lead_ms),
            _ => now,
        };
        if let Some((body, lines)) = output_due(
            rec,
            track,
            now,
            upto,
            matches!(kind, Some(Kind::Exit(_))),
            interval_ms,
            ms_per_second,
        ) {
            posts.push(Post {
                num: rec.num,
                kind: Kind::Logs,
                url: format!("{base}/logs?offset={}", track.log_offset),
                token: reporting.token.clone(),
                body,
                lines,
            });
        }
        let Some(kind) = kind else {
            continue;
        };
        if kind == Kind::Heartbeat {
            track.next_heartbeat = now.saturating_add(interval_ms);
        }
        posts.push(Post {
            num: rec.num,
            kind,
            url: format!("{base}/{}", kind.path()),
            token: reporting.token.clone(),
            body: kind.body(),
            lines: 0,
        });
    }
    tracks.retain(|num, _| seen.contains(num));
    posts
}

/// Starts the cloud's wrapper task unless it runs already; it stops when the cloud is dropped.
/// Must be called inside a tokio runtime.
pub fn ensure_started(cloud: &Arc<SimCloud>) {
    if !cloud.config().reporting || !cloud.claim_reporter() {
        return;
    }
    let weak = Arc::downgrade(cloud);
    tokio::spawn(run(weak));
}

async fn run(cloud: Weak<SimCloud>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "sim wrapper: cannot build an HTTP client; reports are off");
            return;
        }
    };
    let mut tracks: HashMap<u64, Track> = HashMap::new();
    loop {
        let Some(c) = cloud.upgrade() else { return };
        let tick = Duration::from_millis(c.config().report_tick_ms.max(1));
        let concurrency = c.config().report_concurrency.max(1);
        let ms_per_second = c.config().heartbeat_ms_per_second.max(1);
        let posts = c.due_reports(&mut tracks);
        let now = c.now();
        drop(c);
        let (logs, reports): (Vec<Post>, Vec<Post>) =
            posts.into_iter().partition(|p| p.kind == Kind::Logs);
        let mut results = send(&client, logs, concurrency).await;
        results.extend(send(&client, reports, concurrency).await);
        for (num, kind, answer, lines, bytes) in results {
            let ok = answer == Answer::Acknowledged;
            if let (Kind::Logs, Some(t)) = (kind, tracks.get_mut(&num)) {
                match answer {
                    Answer::Acknowledged => {
                        t.log_lines += lines;
                        t.log_offset += bytes;
                    }
                    Answer::Refused => t.log_done = true,
                    Answer::Retry => t.next_log = 0,
                }
            }
            if let (Kind::Exit(_), Some(t)) = (kind, tracks.get_mut(&num)) {
                t.exit_attempts += 1;
                t.exit_acknowledged |= answer == Answer::Acknowledged;
                if t.first_exit == 0 {
                    t.first_exit = now.max(1);
                }
                let past_grace = now.saturating_sub(t.first_exit) >= t.exit_grace_ms;
                t.exit_done = answer != Answer::Retry || past_grace;
                t.next_exit = now.saturating_add(
                    exit_retry_seconds(t.exit_attempts).saturating_mul(ms_per_second),
                );
                // A refusal (410: the attempt already ended, its outcome recorded from what the
                // provider reported; 401: its token is gone) loses nothing; an answer that never
                // came within the grace does.
                if answer == Answer::Retry && t.exit_done {
                    tracing::warn!(
                        machine = num,
                        attempts = t.exit_attempts,
                        "sim wrapper: exit report not acknowledged within the report grace; gave up as the shell wrapper does"
                    );
                    if let Some(c) = cloud.upgrade() {
                        c.count_exit_report_given_up();
                    }
                } else if answer == Answer::Refused {
                    debug!(
                        machine = num,
                        "sim wrapper: exit report refused for good (the attempt has ended)"
                    );
                }
            }
            if !ok {
                debug!(
                    machine = num,
                    kind = kind.path(),
                    "sim wrapper: report not acknowledged"
                );
            }
        }
        tokio::time::sleep(tick).await;
    }
}

/// Sends `posts`, at most `concurrency` at once: (machine, kind, answer, lines, bytes) each.
async fn send(
    client: &reqwest::Client,
    posts: Vec<Post>,
    concurrency: usize,
) -> Vec<(u64, Kind, Answer, u64, u64)> {
    futures::stream::iter(posts)
        .map(|p| {
            let client = client.clone();
            async move {
                let content_type = if p.kind == Kind::Logs {
                    "application/octet-stream"
                } else {
                    "application/json"
                };
                let bytes = p.body.len() as u64;
                let answer = client
                    .post(&p.url)
                    .bearer_auth(&p.token)
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(p.body)
                    .send()
                    .await
                    .map_or(Answer::Retry, |r| Answer::of(r.status().as_u16()));
                (p.num, p.kind, answer, p.lines, bytes)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::sim::timeline::{Segment, WorkloadRun};

    fn record(run: Option<WorkloadRun>) -> Record {
        Record {
            num: 1,
            name: "m".into(),
            installation: "i".into(),
            region: "r".into(),
            owner_uid: None,
            attempt: None,
            tags: Default::default(),
            machine_type: "sim.cpu".into(),
            spot: false,
            price_per_hour: 0.1,
            created: 0,
            run,
            workload: None,
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
    fn what_is_due_when() {
        let timed = record(Some(WorkloadRun {
            run_ms: 1000,
            exit_code: 3,
        }));
        let endless = record(None);
        let fresh = Track::default();
        let later = Track {
            next_heartbeat: 500,
            ..Track::default()
        };
        let exited = Track {
            exit_done: true,
            ..Track::default()
        };
        let cases = [
            (&endless, fresh, 50, None, "booting: nothing"),
            (
                &endless,
                fresh,
                100,
                Some(Kind::Heartbeat),
                "running: first heartbeat at once",
            ),
            (&endless, later, 400, None, "next heartbeat not yet due"),
            (
                &endless,
                later,
                500,
                Some(Kind::Heartbeat),
                "next heartbeat due",
            ),
            (
                &timed,
                later,
                1000,
                Some(Kind::Exit(3)),
                "exit within the lead, before the end",
            ),
            (
                &timed,
                fresh,
                1200,
                Some(Kind::Exit(3)),
                "ended without a report: report now",
            ),
            (&timed, exited, 1200, None, "ended and reported"),
            (
                &timed,
                Track {
                    exit_attempts: 1,
                    next_exit: 1300,
                    ..Track::default()
                },
                1200,
                None,
                "exit report refused: not again before the retry wait",
            ),
            (
                &timed,
                Track {
                    exit_attempts: 1,
                    next_exit: 1300,
                    ..Track::default()
                },
                1300,
                Some(Kind::Exit(3)),
                "exit report refused: again after the retry wait",
            ),
            (
                &timed,
                exited,
                1050,
                None,
                "reported, still running: no heartbeat after the exit report",
            ),
            (
                &endless,
                Track {
                    exit_attempts: 1,
                    next_exit: 1300,
                    next_heartbeat: 500,
                    ..Track::default()
                },
                600,
                None,
                "no heartbeat between exit report retries",
            ),
        ];
        for (rec, track, now, want, what) in cases {
            assert_eq!(due(rec, &track, now, 100), want, "{what}");
        }
    }

    #[test]
    fn no_output_is_shipped_after_an_acknowledged_exit_report() {
        let mut rec = record(Some(WorkloadRun {
            run_ms: 1000,
            exit_code: 0,
        }));
        rec.workload = Some(crate::provider::Workload {
            image: "train:1".into(),
            ..Default::default()
        });
        let mut open = Track::default();
        assert!(
            output_due(&rec, &mut open, 1200, 1200, true, 100, 1).is_some(),
            "the last lines go with the exit report"
        );
        let mut given_up = Track {
            exit_done: true,
            ..Track::default()
        };
        assert!(
            output_due(&rec, &mut given_up, 1200, 1200, false, 100, 1).is_some(),
            "after an exit report given up on, what is left still goes"
        );
        let mut acknowledged = Track {
            exit_done: true,
            exit_acknowledged: true,
            ..Track::default()
        };
        assert_eq!(
            output_due(&rec, &mut acknowledged, 1200, 1200, true, 100, 1),
            None,
            "the shell wrapper ships nothing after its exit report"
        );
    }

    #[test]
    fn bodies_match_the_shell_wrapper() {
        assert_eq!(Kind::Heartbeat.body(), r#"{"kind":"heartbeat"}"#);
        assert_eq!(Kind::Exit(7).body(), r#"{"kind":"exit","exitCode":7}"#);
        assert_eq!(Kind::Exit(7).path(), "exit");
    }

    #[test]
    fn answers_and_exit_retry_waits_follow_the_shell_wrapper() {
        assert_eq!(Answer::of(200), Answer::Acknowledged);
        for refused in [401, 403, 404, 410] {
            assert_eq!(Answer::of(refused), Answer::Refused, "{refused}");
        }
        for retried in [400, 429, 500, 503] {
            assert_eq!(Answer::of(retried), Answer::Retry, "{retried}");
        }
        let waits: Vec<u64> = (1..=7).map(exit_retry_seconds).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30]);
    }
}
