//! The callback endpoint's side of the logs: chunks of output the reporting wrapper posts to
//! `POST /callback/<ns>/<job>/<attempt>/logs?offset=<n>` are kept in memory per attempt and
//! written into the attempt's ConfigMap ([`super::stored`]) at once for the first chunk, then at
//! most once per [`DEFAULT_WRITE_INTERVAL`] per attempt and replica (a write is scheduled for
//! chunks that arrive in between), and a last time with the attempt's exit report, which also
//! publishes the `AttemptFailed` event of a failed attempt. Secret values are scrubbed before
//! anything is written. Memory per attempt is bounded ([`MAX_PENDING`]); attempts idle for
//! [`FORGET_AFTER`] are forgotten.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use parking_lot::Mutex;
use tracing::{debug, warn};

use super::context::{self, AttemptContext};
use super::failure;
use super::stored::{self, Stored};
use super::tail::MAX_BYTES;
use crate::callback::AttemptId;
use crate::metrics::Metrics;

/// Default: an attempt's ConfigMap is written at most this often per replica.
pub const DEFAULT_WRITE_INTERVAL: Duration = Duration::from_secs(10);
/// Bytes of received, unwritten output kept per attempt; older chunks are dropped beyond it.
pub const MAX_PENDING: usize = 2 * MAX_BYTES;
/// Attempts that sent nothing for this long are forgotten (their output is in the API).
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// `runctl.dev/log-source` of output the wrapper shipped.
pub const SOURCE: &str = "wrapper";

/// What became of a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Kept (and written, or to be written).
    Accepted,
    /// The attempt's CloudResource is gone: the attempt has ended; stop sending.
    Gone,
    /// Its context could not be read now; try again.
    Unavailable,
}

#[derive(Clone, Debug)]
struct Chunk {
    offset: u64,
    bytes: Vec<u8>,
    at: i64,
}

#[derive(Default)]
struct Entry {
    context: Option<Arc<AttemptContext>>,
    pending: Vec<Chunk>,
    cached: Option<ConfigMap>,
    last_write: Option<Instant>,
    scheduled: bool,
    seen: Option<Instant>,
}

impl Entry {
    fn pending_bytes(&self) -> usize {
        self.pending.iter().map(|c| c.bytes.len()).sum()
    }
}

/// Per-attempt output received by this replica.
pub struct LogSink {
    client: Client,
    metrics: Arc<Metrics>,
    interval: Duration,
    attempts: Mutex<HashMap<AttemptId, Entry>>,
}

impl LogSink {
    /// A sink writing with `client` at most every `interval` per attempt.
    pub fn new(client: Client, metrics: Arc<Metrics>, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            client,
            metrics,
            interval,
            attempts: Mutex::new(HashMap::new()),
        })
    }

    /// Takes the chunk of attempt `id` that starts at stream offset `offset`; `token` (the one
    /// the report presented) is scrubbed with the workload's Secret values.
    pub async fn receive(
        self: &Arc<Self>,
        id: &AttemptId,
        offset: u64,
        bytes: &[u8],
        token: &str,
    ) -> Received {
        let now = Instant::now();
        let known = {
            let mut map = self.attempts.lock();
            if map.len() > 64 && !map.contains_key(id) {
                map.retain(|_, e| {
                    e.seen
                        .is_none_or(|s| now.saturating_duration_since(s) < FORGET_AFTER)
                });
            }
            map.get(id).and_then(|e| e.context.clone())
        };
        if known.is_none() {
            match context::read(&self.client, &id.namespace, &id.job, id.attempt, &[token]).await {
                Ok(Some(c)) => {
                    self.attempts.lock().entry(id.clone()).or_default().context = Some(Arc::new(c));
                }
                Ok(None) => return Received::Gone,
                Err(e) => {
                    debug!(namespace = %id.namespace, job = %id.job, attempt = id.attempt, error = %e, "log chunk: attempt context unreadable");
                    return Received::Unavailable;
                }
            }
        }
        self.metrics.log_bytes_received(SOURCE, bytes.len() as u64);
        let due = {
            let mut map = self.attempts.lock();
            let e = map.entry(id.clone()).or_default();
            e.seen = Some(now);
            e.pending.push(Chunk {
                offset,
                bytes: bytes.to_vec(),
                at: Timestamp::now().as_second(),
            });
            let mut over = e.pending_bytes().saturating_sub(MAX_PENDING);
            while over > 0 && e.pending.len() > 1 {
                let c = e.pending.remove(0);
                self.metrics
                    .log_bytes_dropped("overflow", c.bytes.len() as u64);
                over = over.saturating_sub(c.bytes.len());
            }
            let due = e
                .last_write
                .is_none_or(|t| now.saturating_duration_since(t) >= self.interval);
            if !due && !e.scheduled {
                e.scheduled = true;
                let wait = e.last_write.map_or(Duration::ZERO, |t| {
                    self.interval
                        .saturating_sub(now.saturating_duration_since(t))
                });
                let sink = self.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    if let Some(e) = sink.attempts.lock().get_mut(&id) {
                        e.scheduled = false;
                    }
                    sink.flush(&id, false).await;
                });
            }
            due
        };
        if due {
            self.flush(id, false).await;
        }
        Received::Accepted
    }

    /// The attempt's exit was reported: writes what is pending a last time and, when the
    /// workload failed (not stopped for a reclaim), publishes its last lines as an event.
    pub async fn finish(self: &Arc<Self>, id: &AttemptId, exit_code: i32, interrupted: bool) {
        let ctx = self.attempts.lock().get(id).and_then(|e| e.context.clone());
        self.flush(id, true).await;
        self.attempts.lock().remove(id);
        if exit_code == 0 || interrupted {
            return;
        }
        let target = match ctx {
            Some(c) => c.target.clone(),
            None => stored::Target {
                namespace: id.namespace.clone(),
                job: id.job.clone(),
                attempt: id.attempt,
                owner: None,
            },
        };
        if let Err(e) = failure::report_once(
            &self.client,
            &target,
            &format!("exited with code {exit_code}"),
            false,
        )
        .await
        {
            warn!(namespace = %id.namespace, job = %id.job, attempt = id.attempt, error = %e, "failed to publish the failed attempt's last lines");
        }
    }

    /// Writes what attempt `id` has pending (with `last`, marks the output complete even with
    /// nothing pending). Returns the ConfigMap as written; `None` when this replica knows nothing
    /// of the attempt or the write failed (the chunks stay pending for the next try).
    async fn flush(self: &Arc<Self>, id: &AttemptId, last: bool) -> Option<ConfigMap> {
        let (ctx, chunks, cached) = {
            let mut map = self.attempts.lock();
            let e = map.get_mut(id)?;
            let ctx = e.context.clone()?;
            (ctx, std::mem::take(&mut e.pending), e.cached.clone())
        };
        if chunks.is_empty() && !last {
            return None;
        }
        let mut skipped = 0;
        let result = stored::update(&self.client, &ctx.target, cached, |s| {
            skipped = write_chunks(s, &chunks, &ctx, last);
            true
        })
        .await;
        let mut map = self.attempts.lock();
        let e = map.entry(id.clone()).or_default();
        match result {
            Ok(cm) => {
                self.metrics.log_bytes_dropped("skipped", skipped);
                let end = Stored::of(&cm).tail.end();
                // Bytes held back (the possible start of a secret) are written next time.
                let mut keep: Vec<Chunk> = chunks
                    .into_iter()
                    .filter(|c| c.offset + c.bytes.len() as u64 > end)
                    .collect();
                keep.append(&mut e.pending);
                e.pending = keep;
                e.cached = Some(cm.clone());
                e.last_write = Some(Instant::now());
                Some(cm)
            }
            Err(err) => {
                debug!(namespace = %id.namespace, job = %id.job, attempt = id.attempt, error = %err, "log ConfigMap not written; kept for the next write");
                if last {
                    let lost: usize = chunks.iter().map(|c| c.bytes.len()).sum();
                    self.metrics.log_bytes_dropped("unwritable", lost as u64);
                } else {
                    let mut keep = chunks;
                    keep.append(&mut e.pending);
                    e.pending = keep;
                }
                e.cached = None;
                None
            }
        }
    }
}

/// Applies `chunks` to the stored output, holds back a possible secret's start (unless `last`),
/// scrubs; returns the bytes skipped by the sender.
fn write_chunks(s: &mut Stored, chunks: &[Chunk], ctx: &AttemptContext, last: bool) -> u64 {
    let mut skipped = 0;
    for c in chunks {
        skipped += s.tail.append(c.offset, &c.bytes, c.at).skipped;
    }
    if !last {
        let held = ctx.scrubber.hold_back(s.tail.text());
        s.tail.truncate_end(held);
    }
    s.tail.map_text(|t| ctx.scrubber.scrub(t));
    s.source = SOURCE.into();
    s.last |= last;
    skipped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::scrub::Scrubber;
    use crate::logs::stored::Target;

    fn ctx(secrets: &[&str]) -> AttemptContext {
        AttemptContext {
            target: Target {
                namespace: "ml".into(),
                job: "j".into(),
                attempt: 1,
                owner: None,
            },
            scrubber: Scrubber::new(secrets.iter().copied()),
        }
    }

    fn chunk(offset: u64, text: &str) -> Chunk {
        Chunk {
            offset,
            bytes: text.as_bytes().to_vec(),
            at: 7,
        }
    }

    #[test]
    fn secrets_split_across_chunks_are_never_written() {
        let c = ctx(&["hf_SECRETTOKEN"]);
        let mut s = Stored::default();
        write_chunks(&mut s, &[chunk(0, "token is hf_SECR")], &c, false);
        assert_eq!(
            s.tail.text(),
            b"token is ",
            "the possible start is held back"
        );
        assert_eq!(s.tail.end(), 9);
        write_chunks(
            &mut s,
            &[chunk(0, "token is hf_SECR"), chunk(16, "ETTOKEN ok\n")],
            &c,
            false,
        );
        assert_eq!(s.tail.text(), b"token is *** ok\n");
        assert_eq!(s.tail.end(), 27);
        assert_eq!(s.source, SOURCE);
        write_chunks(&mut s, &[chunk(27, "bye hf_")], &c, true);
        assert_eq!(
            s.tail.text(),
            b"token is *** ok\nbye hf_",
            "the end is written"
        );
        assert!(s.last);
    }

    #[test]
    fn skipped_output_is_counted() {
        let c = ctx(&[]);
        let mut s = Stored::default();
        assert_eq!(write_chunks(&mut s, &[chunk(100, "x\n")], &c, false), 100);
    }
}
