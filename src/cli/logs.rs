//! `runctl logs tj/NAME [-f] [--attempt N] [--since D] [--tail N]`: the workload's output, as
//! the operator keeps it in each attempt's ConfigMap `<job>-a<N>-log` ([`crate::logs`]): the
//! last 500 lines (64 KiB) of the attempt, from the provider's log API (Lyceum runs) or shipped
//! by the reporting wrapper. The CLI reads that ConfigMap and the job, so it needs no provider
//! credentials.
//!
//! The operator writes a running attempt's output only while someone follows the job
//! ([`crate::logs::follow`]), else once when the attempt ends. With `-f` the CLI asks for live
//! output (a merge patch of the job's `runctl.dev/logs-follow` annotation, renewed every
//! [`FOLLOW_RENEW`]; it needs `patch` on trainingjobs, else it says so and shows the output as
//! written), reads both every second and prints new lines until the attempt has ended, then says
//! how it ended on standard error and exits 0. Without `-f`, a running attempt nobody follows
//! shows what was written, with a hint on standard error.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::{CliError, Cluster, Out};
use crate::crd::TrainingJob;
use crate::crd::training_job::Attempt;
use crate::logs::follow::{self, FOLLOW_ANNOTATION, FOLLOW_RENEW, follow_patch};
use crate::logs::stored::{self, Stored};

/// How often `-f` reads the ConfigMap and the job.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// After the attempt ended, how long `-f` waits for the operator's last write (the leader writes
/// it with the exit report, or when it releases the attempt).
pub const LAST_WRITE_WAIT: Duration = Duration::from_secs(15);

/// Flags of `logs`.
#[derive(clap::Args, Debug, Clone)]
pub struct LogsArgs {
    /// The job: NAME or tj/NAME.
    pub job: String,
    /// Keep streaming until the attempt ends.
    #[arg(short, long)]
    pub follow: bool,
    /// The attempt (default: the latest).
    #[arg(long)]
    pub attempt: Option<u32>,
    /// Only lines printed within this long (e.g. 30s, 10m, 1h30m, 2d).
    #[arg(long)]
    pub since: Option<String>,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
}

/// Parses `--since`: numbers with a unit each (`s`, `m`, `h`, `d`), e.g. `1h30m`.
pub fn parse_since(s: &str) -> Result<SignedDuration, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "--since {s:?}: expected a duration such as 30s, 10m, 1h30m or 2d"
        ))
    };
    let mut total: i64 = 0;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit: i64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: i64 = num.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || s.trim().is_empty() {
        return Err(bad());
    }
    Ok(SignedDuration::from_secs(total))
}

/// The lines of `stored` to print: those with a stream-wide index from `from` on, started at or
/// after `since` (unix second), the last `tail` of them; with `complete_only`, an incomplete last
/// line is left for later. Returns the text and the index of the next line to print.
pub fn select(
    stored: &Stored,
    from: u64,
    since: Option<i64>,
    tail: Option<usize>,
    complete_only: bool,
) -> (String, u64) {
    let first = stored.tail.first_line();
    let mut picked: Vec<(u64, &[u8])> = stored
        .tail
        .lines()
        .enumerate()
        .map(|(i, (t, l))| (first + i as u64, t, l))
        .filter(|(i, t, l)| {
            *i >= from && since.is_none_or(|s| *t >= s) && (!complete_only || l.ends_with(b"\n"))
        })
        .map(|(i, _, l)| (i, l))
        .collect();
    let next = picked.last().map_or(from.max(first), |(i, _)| i + 1);
    if let Some(n) = tail {
        picked.drain(..picked.len().saturating_sub(n));
    }
    let bytes: Vec<u8> = picked.iter().flat_map(|(_, l)| l.iter().copied()).collect();
    (String::from_utf8_lossy(&bytes).into_owned(), next)
}

/// The attempt `wanted`, else the latest one.
pub fn pick(job: &TrainingJob, wanted: Option<u32>) -> Option<&Attempt> {
    let attempts = job.status.as_ref().map(|s| s.attempts.as_slice())?;
    match wanted {
        Some(n) => attempts.iter().find(|a| a.index == n),
        None => attempts.iter().max_by_key(|a| a.index),
    }
}

/// How an ended attempt ended: `Completed (exit 0)`, `MachineLost`.
pub fn ending(a: &Attempt) -> String {
    let reason = a.reason.as_deref().unwrap_or("ended");
    match a.exit_code {
        Some(c) => format!("{reason} (exit {c})"),
        None => reason.to_string(),
    }
}

fn note(text: &str) {
    eprintln!("{text}");
}

/// Whether someone asked for `job`'s output live within the window, as of now.
pub fn is_followed(job: &TrainingJob) -> bool {
    follow::followed(
        job.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(FOLLOW_ANNOTATION))
            .map(String::as_str),
        Timestamp::now(),
    )
}

/// What asking for live output came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveRequest {
    /// Asked.
    Asked,
    /// Not allowed to patch the job.
    Forbidden,
    /// Failed for now (tried again at the next renewal).
    Failed,
}

/// Asks the operator for `name`'s output live (sets [`FOLLOW_ANNOTATION`] to now).
pub async fn request_live(cluster: &Cluster, name: &str) -> LiveRequest {
    let api: Api<TrainingJob> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    match api
        .patch(
            name,
            &PatchParams::apply(super::control::FIELD_MANAGER),
            &Patch::Merge(follow_patch(Timestamp::now())),
        )
        .await
    {
        Ok(_) => LiveRequest::Asked,
        Err(kube::Error::Api(s)) if s.code == 403 => LiveRequest::Forbidden,
        Err(e) => {
            tracing::debug!(error = %e, "asking for live output failed");
            LiveRequest::Failed
        }
    }
}

/// Prints the job's logs.
pub async fn run(cluster: &Cluster, args: &LogsArgs, out: &mut Out) -> Result<(), CliError> {
    let since = args
        .since
        .as_deref()
        .map(parse_since)
        .transpose()?
        .map(|d| (out.now - d).as_second());
    let job = super::target::fetch_job(cluster, &args.job).await?;
    let name = job.metadata.name.clone().unwrap_or_default();
    let Some((job, attempt)) = wait_for_attempt(cluster, args, job, &name, out).await? else {
        return Ok(());
    };
    out.progress_done();
    let mut stream = Stream {
        cluster,
        args,
        name,
        attempt,
        since,
        next: None,
        printed_any: false,
        ended_at: None,
        asked: None,
    };
    stream.run(job, out).await
}

/// The attempt to show: the one asked for, else the latest (waiting for the first with `-f`),
/// with the job as last read; `None` when there is none to show (said on standard error).
async fn wait_for_attempt(
    cluster: &Cluster,
    args: &LogsArgs,
    mut job: TrainingJob,
    name: &str,
    out: &mut Out,
) -> Result<Option<(TrainingJob, u32)>, CliError> {
    loop {
        if let Some(index) = pick(&job, args.attempt).map(|a| a.index) {
            return Ok(Some((job, index)));
        }
        if let Some(n) = args.attempt
            && job.status.as_ref().is_some_and(|s| !s.attempts.is_empty())
        {
            return Err(CliError::Usage(format!(
                "tj/{name} has no attempt {n}; `runctl describe tj/{name}` lists its attempts"
            )));
        }
        let finished = job
            .status
            .as_ref()
            .and_then(|s| s.completion_time.as_ref())
            .is_some();
        if !args.follow || finished {
            note(&format!(
                "tj/{name} has not started an attempt: no logs yet"
            ));
            return Ok(None);
        }
        out.progress(&format!("waiting for the first attempt of tj/{name}"));
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        job = super::target::fetch_job(cluster, &args.job).await?;
    }
}

/// The output of one attempt being printed: what was printed so far and, with `-f`, the live
/// output request and when the attempt was seen ended.
struct Stream<'a> {
    cluster: &'a Cluster,
    args: &'a LogsArgs,
    name: String,
    attempt: u32,
    /// `--since` as a unix second.
    since: Option<i64>,
    /// The stream-wide index of the next line to print; `None` before the first read.
    next: Option<u64>,
    printed_any: bool,
    /// When the attempt was first seen ended.
    ended_at: Option<Instant>,
    /// `-f`: when live output was last asked for (`Some(None)`: not allowed).
    asked: Option<Option<Instant>>,
}

impl Stream<'_> {
    /// Reads the ConfigMap (and with `-f` the job) every [`FOLLOW_INTERVAL`] and prints new
    /// lines until the output is complete: at once without `-f`, else once the attempt ended
    /// and its last write came (or [`LAST_WRITE_WAIT`] passed).
    async fn run(&mut self, mut job: TrainingJob, out: &mut Out) -> Result<(), CliError> {
        loop {
            let ended = pick(&job, Some(self.attempt))
                .and_then(|a| a.end_time.as_ref())
                .is_some();
            if self.args.follow && !ended {
                self.ask_live().await;
            }
            let stored = self.read().await?;
            let waited = self
                .ended_at
                .is_some_and(|t| t.elapsed() >= LAST_WRITE_WAIT);
            let complete =
                !self.args.follow || (ended && (stored.as_ref().is_some_and(|s| s.last) || waited));
            if let Some(s) = &stored {
                self.print(s, complete, out)?;
            }
            if complete {
                self.conclude(&job, ended, stored.as_ref());
                return Ok(());
            }
            if ended && self.ended_at.is_none() {
                self.ended_at = Some(Instant::now());
            }
            tokio::time::sleep(FOLLOW_INTERVAL).await;
            job = match super::target::fetch_job(self.cluster, &self.args.job).await {
                Ok(j) => j,
                Err(CliError::NotFound { .. }) => {
                    note(&format!("tj/{} was deleted", self.name));
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
        }
    }

    /// Asks for live output when it is due (every [`FOLLOW_RENEW`]), unless not allowed.
    async fn ask_live(&mut self) {
        if self.asked == Some(None) {
            return;
        }
        let due = self
            .asked
            .flatten()
            .is_none_or(|t| t.elapsed() >= FOLLOW_RENEW);
        if !due {
            return;
        }
        self.asked = match request_live(self.cluster, &self.name).await {
            LiveRequest::Asked => Some(Some(Instant::now())),
            LiveRequest::Forbidden => {
                note(&format!(
                    "[runctl: not allowed to patch tj/{}, so its output cannot be asked for live: \
                     showing it as the operator writes it, when the attempt ends]",
                    self.name
                ));
                Some(None)
            }
            // Tried again at the next read.
            LiveRequest::Failed => self.asked,
        };
    }

    /// The attempt's output as the operator wrote it, if it wrote any.
    async fn read(&self) -> Result<Option<Stored>, CliError> {
        let (client, ns) = (&self.cluster.client, &self.cluster.namespace);
        match stored::read(client, ns, &self.name, self.attempt).await {
            Ok(read) => Ok(read.map(|(_, s)| s)),
            Err(e) => Err(CliError::api(
                format!(
                    "get ConfigMap {}",
                    crate::attempt::log_configmap_name(&self.name, self.attempt)
                ),
                e,
            )),
        }
    }

    /// Prints the lines of `s` not printed yet (the first time, those `--since` and `--tail`
    /// select); an incomplete last line only when the output is `complete`.
    fn print(&mut self, s: &Stored, complete: bool, out: &mut Out) -> Result<(), CliError> {
        let from = self.next.unwrap_or(0);
        if self.next.is_some_and(|n| n < s.tail.first_line()) {
            note(&format!(
                "[runctl: {} lines were not shown (printed faster than read)]",
                s.tail.first_line() - from
            ));
        }
        let first = self.next.is_none();
        let tail = if first { self.args.tail } else { None };
        let since = if first { self.since } else { None };
        let (text, n) = select(s, from, since, tail, !complete);
        if !text.is_empty() {
            out.write(&text)?;
            if complete && !text.ends_with('\n') {
                out.write("\n")?;
            }
            self.printed_any = true;
        }
        self.next = Some(n);
        Ok(())
    }

    /// The notes on standard error once the output is printed: that there was none, that a
    /// running attempt's output is written only at its end or while followed, how a followed
    /// attempt ended.
    fn conclude(&self, job: &TrainingJob, ended: bool, stored: Option<&Stored>) {
        let (attempt, name) = (self.attempt, &self.name);
        if !self.printed_any && stored.is_none_or(|s| s.tail.text().is_empty()) {
            note(&format!(
                "no output from attempt {attempt} of tj/{name}{}",
                if ended { "" } else { " yet" }
            ));
        }
        if !self.args.follow && !ended && !stored.is_some_and(|s| s.last) && !is_followed(job) {
            note(&format!(
                "[runctl: attempt {attempt} is running: its output is written when it ends, \
                 or live while someone follows it: runctl logs -f tj/{name}]"
            ));
        }
        if self.args.follow
            && let Some(a) = pick(job, Some(attempt))
        {
            note(&format!("attempt {attempt} ended: {}", ending(a)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::tail::Tail;

    #[test]
    fn since_takes_units() {
        assert_eq!(parse_since("30s").unwrap(), SignedDuration::from_secs(30));
        assert_eq!(
            parse_since("1h30m").unwrap(),
            SignedDuration::from_secs(5400)
        );
        assert_eq!(
            parse_since("2d").unwrap(),
            SignedDuration::from_secs(172_800)
        );
        for bad in ["", "10", "5x", "m", "1h 30m", "-5m"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }

    fn stored() -> Stored {
        let mut t = Tail::new();
        t.append(0, b"a\nb\n", 100);
        t.append(4, b"c\nd", 200);
        Stored {
            tail: t,
            ..Default::default()
        }
    }

    #[test]
    fn selection_by_index_time_and_count() {
        let s = stored();
        assert_eq!(select(&s, 0, None, None, false), ("a\nb\nc\nd".into(), 4));
        assert_eq!(select(&s, 0, None, None, true), ("a\nb\nc\n".into(), 3));
        assert_eq!(select(&s, 3, None, None, false), ("d".into(), 4));
        assert_eq!(select(&s, 0, Some(150), None, true), ("c\n".into(), 3));
        assert_eq!(select(&s, 0, None, Some(2), true), ("b\nc\n".into(), 3));
        assert_eq!(select(&s, 4, None, None, true), (String::new(), 4));
    }

    #[test]
    fn attempts_and_endings() {
        let job: TrainingJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "j"},
            "spec": {"placement": {"provider": "sim", "instanceType": "sim.a100"}, "workload": {"image": "x"}},
            "status": {"attempts": [
                {"index": 1, "provider": "sim", "cloudResource": "j-a1", "reason": "SpotInterrupted"},
                {"index": 2, "provider": "sim", "cloudResource": "j-a2", "reason": "ExitCode", "exitCode": 3}
            ]}
        }))
        .unwrap();
        assert_eq!(pick(&job, None).map(|a| a.index), Some(2));
        assert_eq!(pick(&job, Some(1)).map(|a| a.index), Some(1));
        assert!(pick(&job, Some(3)).is_none());
        assert_eq!(ending(pick(&job, None).unwrap()), "ExitCode (exit 3)");
        assert_eq!(ending(pick(&job, Some(1)).unwrap()), "SpotInterrupted");
    }
}
