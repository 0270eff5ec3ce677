//! The callback endpoint's side of the logs: chunks of output the reporting wrapper posts to
//! `POST /callback/<ns>/<job>/<attempt>/logs?offset=<n>` are merged by stream offset into a
//! bounded tail per attempt, kept in the memory of the leader only, and written into the
//! attempt's ConfigMap ([`super::stored`]):
//!
//! - once when the attempt ends: with its exit report (which also publishes the `AttemptFailed`
//!   event of a failed attempt, marked in the same write), else when the CloudResource
//!   controller releases the attempt ([`LogSink::ended`]);
//! - while someone follows the job ([`super::follow`]): at once when the request arrives, then
//!   as chunks arrive, at most once per [`FOLLOWED_WRITE_INTERVAL`] per attempt;
//! - output that arrives after the end was written, as it comes (at most once per
//!   [`FOLLOWED_WRITE_INTERVAL`]). A chunk sent again (its bytes held already) writes nothing,
//!   nor does a release that brings nothing the stored, complete output lacks.
//!
//! A running attempt that prints while nobody follows it costs no write. Only the replica that
//! holds the Lease keeps output: a standby answers a chunk with [`Received::NotLeader`] (HTTP
//! 421), and the wrapper sends it again, reaching the leader through the Service; so one replica
//! holds each attempt's whole tail, and the end (which the leader sees through the
//! CloudResource even when a standby got the exit report) writes all of it. The part of the tail
//! a leader held and had not written is lost when the leadership moves (the new leader starts
//! from what the ConfigMap holds, and marks the gap as skipped). Secret values are scrubbed before
//! anything is written. Memory per attempt is bounded: the tail itself ([`MAX_BYTES`]) and at most
//! as much again of chunks not yet merged into it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use parking_lot::Mutex;
use tokio::sync::broadcast;
use tracing::{debug, warn};

use super::context::{self, AttemptContext};
use super::failure;
use super::stored::{self, Stored};
use super::tail::MAX_BYTES;
use crate::callback::AttemptId;
use crate::metrics::Metrics;
use crate::runtime::shard::Shard;

/// Default: while a job is followed, each of its attempts' ConfigMaps is written at most this
/// often. The wrapper sends a chunk every 5 s, so each chunk is written as it arrives; the cost
/// is bounded by the number of jobs being watched, not by the number running.
pub const FOLLOWED_WRITE_INTERVAL: Duration = Duration::from_secs(2);
/// Attempts that sent nothing for this long are forgotten (what they hold is written first).
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// `runctl.dev/log-source` of output the wrapper shipped.
pub const SOURCE: &str = "wrapper";
/// Received bytes kept unmerged at most; beyond them they are merged into the tail.
const MERGE_BYTES: usize = MAX_BYTES;
/// Received chunks kept unmerged at most.
const MERGE_CHUNKS: usize = 64;

/// What became of a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Kept (and written, or to be written).
    Accepted,
    /// The attempt's CloudResource is gone: the attempt has ended; stop sending.
    Gone,
    /// Its context could not be read now; try again.
    Unavailable,
    /// This replica does not lead: send it again (the Service routes it to another replica).
    NotLeader,
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
    /// The scrubbed tail as a write now would store it (held-back bytes excepted).
    base: Stored,
    /// Chunks not merged into `base` yet (or partly: a possible secret's start held back).
    pending: Vec<Chunk>,
    /// The ConfigMap's metadata as last read or written (its resourceVersion saves a read).
    cached: Option<ConfigMap>,
    /// Chunks received, and how many of them the last write held.
    changes: u64,
    written: u64,
    last_write: Option<Instant>,
    scheduled: bool,
    seen: Option<Instant>,
}

impl Entry {
    fn pending_bytes(&self) -> usize {
        self.pending.iter().map(|c| c.bytes.len()).sum()
    }

    /// Merges the pending chunks into the tail (with `last`, the held-back end too); returns the
    /// bytes the sender skipped.
    /// Whether the bytes at stream offsets `offset..offset + len` are held already: merged into
    /// the tail, or an identical chunk waiting to be.
    fn holds(&self, offset: u64, len: usize) -> bool {
        let end = offset + len as u64;
        (self.context.is_some() && end <= self.base.tail.end())
            || self
                .pending
                .iter()
                .any(|c| c.offset == offset && c.bytes.len() == len)
    }

    fn merge_pending(&mut self, ctx: &AttemptContext, last: bool) -> u64 {
        if self.pending.is_empty() && !last {
            return 0;
        }
        let skipped = write_chunks(&mut self.base, &self.pending, ctx, last);
        let end = self.base.tail.end();
        if last {
            self.pending.clear();
        } else {
            // Bytes held back (the possible start of a secret) are merged next time.
            self.pending
                .retain(|c| c.offset + c.bytes.len() as u64 > end);
        }
        skipped
    }
}

/// What a write ends with.
#[derive(Clone, Debug, Default)]
struct Ending {
    /// The attempt's output is complete.
    last: bool,
    /// The attempt failed so: publish the `AttemptFailed` event (once).
    failure: Option<String>,
}

/// Per-attempt output received by this replica, and the jobs followed now.
pub struct LogSink {
    client: Client,
    metrics: Arc<Metrics>,
    interval: Duration,
    leading: AtomicBool,
    /// The namespaces whose jobs this replica's controllers reconcile when it leads.
    shard: Mutex<Shard>,
    attempts: Mutex<HashMap<AttemptId, Entry>>,
    /// Followed jobs (namespace, name): until when.
    follows: Mutex<HashMap<(String, String), Timestamp>>,
    follow_started: broadcast::Sender<(String, String)>,
}

impl LogSink {
    /// A sink writing with `client`, at most every `interval` per attempt while followed. It
    /// keeps output as the leader until [`set_leading`](Self::set_leading) says otherwise.
    pub fn new(client: Client, metrics: Arc<Metrics>, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            client,
            metrics,
            interval,
            leading: AtomicBool::new(true),
            shard: Mutex::new(Shard::WHOLE),
            attempts: Mutex::new(HashMap::new()),
            follows: Mutex::new(HashMap::new()),
            follow_started: broadcast::channel(256).0,
        })
    }

    /// Whether this replica keeps output (it holds the Lease). A replica that stops leading
    /// forgets what it held.
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
        if !leading {
            self.attempts.lock().clear();
            self.follows.lock().clear();
        }
    }

    /// Whether this replica keeps output.
    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// Sets the shard this replica's controllers reconcile (the whole cluster by default).
    pub fn set_shard(&self, shard: Shard) {
        *self.shard.lock() = shard;
    }

    /// Whether this replica's controllers reconcile the jobs of `namespace` now: it leads, and
    /// the namespace is its shard's. Reports for another shard's jobs (a machine started before
    /// its namespace moved to another shard still reports to its old one) are to be persisted
    /// as a standby persists them, for the shard that owns the job to read.
    pub fn reconciles(&self, namespace: &str) -> bool {
        self.leading() && self.shard.lock().owns(namespace)
    }

    /// Records job `job`'s follow request (its [`super::follow::FOLLOW_ANNOTATION`]): live until
    /// `until`, or not followed. A request that starts a follow writes what the job's attempts
    /// hold at once, and is announced to [`subscribe_follows`](Self::subscribe_follows).
    pub fn follow(self: &Arc<Self>, namespace: &str, job: &str, until: Option<Timestamp>) {
        let now = Timestamp::now();
        let key = (namespace.to_string(), job.to_string());
        let started = {
            let mut follows = self.follows.lock();
            let before = follows.get(&key).is_some_and(|u| *u > now);
            match until.filter(|u| *u > now) {
                Some(u) => {
                    follows.insert(key.clone(), u);
                    !before
                }
                None => {
                    follows.remove(&key);
                    false
                }
            }
        };
        if !started || !self.leading() {
            return;
        }
        let _ = self.follow_started.send(key);
        let ids: Vec<AttemptId> = self
            .attempts
            .lock()
            .keys()
            .filter(|id| id.namespace == namespace && id.job == job)
            .cloned()
            .collect();
        for id in ids {
            let sink = self.clone();
            tokio::spawn(async move {
                sink.flush(&id, Ending::default()).await;
            });
        }
    }

    /// Whether job `job` is followed now.
    pub fn followed(&self, namespace: &str, job: &str) -> bool {
        let now = Timestamp::now();
        let mut follows = self.follows.lock();
        let key = (namespace.to_string(), job.to_string());
        match follows.get(&key) {
            Some(u) if *u > now => true,
            Some(_) => {
                follows.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Jobs (namespace, name) whose follow just started.
    pub fn subscribe_follows(&self) -> broadcast::Receiver<(String, String)> {
        self.follow_started.subscribe()
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
        if !self.leading() {
            return Received::NotLeader;
        }
        let now = Instant::now();
        if let Err(answer) = self.know(id, token, now).await {
            return answer;
        }
        self.metrics.log_bytes_received(SOURCE, bytes.len() as u64);
        let followed = self.followed(&id.namespace, &id.job);
        if self.keep(id, offset, bytes, followed, now) {
            self.flush(id, Ending::default()).await;
        }
        Received::Accepted
    }

    /// Makes sure this replica holds attempt `id`'s context, reading it (and what an earlier
    /// leader wrote of its output) the first time; the answer to the chunk when it cannot.
    async fn know(
        self: &Arc<Self>,
        id: &AttemptId,
        token: &str,
        now: Instant,
    ) -> Result<(), Received> {
        let known = {
            let mut map = self.attempts.lock();
            if map.len() > 64 && !map.contains_key(id) {
                self.forget_idle(&mut map, now);
            }
            map.get(id).is_some_and(|e| e.context.is_some())
        };
        if known {
            return Ok(());
        }
        match read_attempt(&self.client, id, token).await {
            Ok(Some((c, cm))) => {
                let mut map = self.attempts.lock();
                let e = map.entry(id.clone()).or_default();
                if e.context.is_none() {
                    e.context = Some(Arc::new(c));
                    if let Some((cm, s)) = cm {
                        e.base = s;
                        e.cached = Some(metadata_only(cm));
                    }
                }
                Ok(())
            }
            Ok(None) => Err(Received::Gone),
            Err(e) => {
                debug!(namespace = %id.namespace, job = %id.job, attempt = id.attempt, error = %e, "log chunk: attempt context unreadable");
                Err(Received::Unavailable)
            }
        }
    }

    /// Keeps the chunk (merging what is held unmerged when it grows past its bounds); returns
    /// whether the attempt's output is to be written now. A write due later is scheduled; none
    /// is while nobody follows the job and its end was not written yet.
    fn keep(
        self: &Arc<Self>,
        id: &AttemptId,
        offset: u64,
        bytes: &[u8],
        followed: bool,
        now: Instant,
    ) -> bool {
        let mut map = self.attempts.lock();
        let e = map.entry(id.clone()).or_default();
        e.seen = Some(now);
        if e.holds(offset, bytes.len()) {
            // A chunk sent again (its answer was lost, or came too late for the sender): what
            // it brings is held already, so it changes nothing and costs no write.
            return false;
        }
        e.changes += 1;
        e.pending.push(Chunk {
            offset,
            bytes: bytes.to_vec(),
            at: Timestamp::now().as_second(),
        });
        if (e.pending_bytes() > MERGE_BYTES || e.pending.len() > MERGE_CHUNKS)
            && let Some(ctx) = e.context.clone()
        {
            let skipped = e.merge_pending(&ctx, false);
            self.metrics.log_bytes_dropped("skipped", skipped);
        }
        // Output after the attempt's end was written (late chunks) is written as it comes too.
        if !followed && !e.base.last {
            return false;
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
            self.flush_after(id.clone(), wait);
        }
        due
    }

    /// Writes what attempt `id` holds after `wait`, in a task.
    fn flush_after(self: &Arc<Self>, id: AttemptId, wait: Duration) {
        let sink = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if let Some(e) = sink.attempts.lock().get_mut(&id) {
                e.scheduled = false;
            }
            sink.flush(&id, Ending::default()).await;
        });
    }

    /// The attempt's exit was reported to this replica: as the leader, writes its output a last
    /// time and, when the workload failed (not stopped for a reclaim), marks and publishes its
    /// last lines as an event. A standby holds none of the output: the leader writes it when
    /// it sees the attempt end ([`ended`](Self::ended)).
    pub async fn finish(self: &Arc<Self>, id: &AttemptId, exit_code: i32, interrupted: bool) {
        self.ended(id, Some((exit_code, interrupted))).await;
    }

    /// The CloudResource controller released attempt `id` (nothing more comes): writes what this
    /// replica holds of it, marked complete, and forgets the attempt; an attempt that ended with
    /// `exit` (code, interrupted) failed gets its `AttemptFailed` event, from what is stored when
    /// this replica held nothing.
    pub async fn ended(self: &Arc<Self>, id: &AttemptId, exit: Option<(i32, bool)>) {
        if !self.leading() {
            return;
        }
        let failure = exit.and_then(|(code, interrupted)| failure_of(Some(code), interrupted));
        if self.attempts.lock().contains_key(id) {
            self.flush(
                id,
                Ending {
                    last: true,
                    failure,
                },
            )
            .await;
            self.attempts.lock().remove(id);
        } else if let Some(why) = failure {
            report_stored(&self.client, id, &why).await;
        }
    }

    /// Forgets attempts idle for [`FORGET_AFTER`] (ended ones whose end this replica did not
    /// see); what they held and did not write is written first.
    fn forget_idle(self: &Arc<Self>, map: &mut HashMap<AttemptId, Entry>, now: Instant) {
        let idle: Vec<AttemptId> = map
            .iter()
            .filter(|(_, e)| {
                e.seen
                    .is_some_and(|s| now.saturating_duration_since(s) >= FORGET_AFTER)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            let unwritten = map.get(&id).is_some_and(|e| e.changes != e.written);
            if unwritten {
                let sink = self.clone();
                tokio::spawn(async move {
                    sink.flush(&id, Ending::default()).await;
                    sink.attempts.lock().remove(&id);
                });
            } else {
                map.remove(&id);
            }
        }
    }

    /// Writes what attempt `id` holds, when it holds something unwritten or `ending` says more.
    /// Returns the ConfigMap as written; `None` when this replica knows nothing of the attempt,
    /// has nothing new, or the write failed (the output stays for the next try).
    async fn flush(self: &Arc<Self>, id: &AttemptId, ending: Ending) -> Option<ConfigMap> {
        let (ctx, snapshot, cached, changes) = {
            let mut map = self.attempts.lock();
            let e = map.get_mut(id)?;
            let ctx = e.context.clone()?;
            // Marked complete already (written so, or read so from an earlier write).
            let complete = e.base.last;
            let skipped = e.merge_pending(&ctx, ending.last);
            self.metrics.log_bytes_dropped("skipped", skipped);
            let nothing_new = e.changes == e.written;
            if nothing_new && (!ending.last || (complete && ending.failure.is_none())) {
                return None;
            }
            (ctx, e.base.clone(), e.cached.clone(), e.changes)
        };
        let mut mark = false;
        let result = stored::update(&self.client, &ctx.target, cached, |s| {
            let mut changed = merge(s, &snapshot);
            mark = ending.failure.is_some() && !s.failure_event && !s.tail.text().is_empty();
            if mark {
                s.failure_event = true;
                changed = true;
            }
            changed
        })
        .await;
        {
            let mut map = self.attempts.lock();
            match &result {
                Ok(cm) => {
                    if let Some(e) = map.get_mut(id) {
                        e.cached = Some(metadata_only(cm.clone()));
                        e.written = changes;
                        e.last_write = Some(Instant::now());
                    }
                }
                Err(err) => {
                    debug!(namespace = %id.namespace, job = %id.job, attempt = id.attempt, error = %err, "log ConfigMap not written; kept for the next write");
                    if ending.last {
                        self.metrics
                            .log_bytes_dropped("unwritable", snapshot.tail.text().len() as u64);
                    }
                    if let Some(e) = map.get_mut(id) {
                        e.cached = None;
                    }
                }
            }
        }
        let cm = result.ok()?;
        if mark
            && let Some(why) = &ending.failure
            && let Err(e) = failure::publish_stored(&self.client, &ctx.target, &cm, why).await
        {
            warn!(namespace = %id.namespace, job = %id.job, attempt = id.attempt, error = %e, "failed to publish the failed attempt's last lines");
        }
        Some(cm)
    }
}

/// Attempt `id`'s context (`token` scrubbed too) and its log ConfigMap as an earlier leader
/// wrote it; `None` when the attempt's CloudResource is gone.
async fn read_attempt(
    client: &Client,
    id: &AttemptId,
    token: &str,
) -> Result<Option<(AttemptContext, Option<(ConfigMap, Stored)>)>, String> {
    let Some(c) = context::read(client, &id.namespace, &id.job, id.attempt, &[token])
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    // What an earlier leader wrote is where this one goes on from.
    let cm = stored::read(client, &id.namespace, &id.job, id.attempt)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some((c, cm)))
}

/// Why an attempt that ended with `code` failed, if it did (a reclaim is no failure).
fn failure_of(code: Option<i32>, interrupted: bool) -> Option<String> {
    code.filter(|c| *c != 0 && !interrupted)
        .map(|c| format!("exited with code {c}"))
}

/// Publishes the `AttemptFailed` event of `id` from what its ConfigMap holds.
async fn report_stored(client: &Client, id: &AttemptId, why: &str) {
    // The event goes to the ConfigMap's owner; a missing ConfigMap is not created.
    let target = stored::Target {
        namespace: id.namespace.clone(),
        job: id.job.clone(),
        attempt: id.attempt,
        owner: None,
    };
    if let Err(e) = failure::report_once(client, &target, why, false).await {
        warn!(namespace = %id.namespace, job = %id.job, attempt = id.attempt, error = %e, "failed to publish the failed attempt's last lines");
    }
}

/// `cm` without its data: enough to write over it (its resourceVersion and annotations).
fn metadata_only(mut cm: ConfigMap) -> ConfigMap {
    cm.data = None;
    cm
}

/// Puts the tail this replica holds (`held`) into the stored one `s`, unless `s` already reaches
/// further (written by someone else since); returns whether `s` changed.
fn merge(s: &mut Stored, held: &Stored) -> bool {
    let mut changed = false;
    if held.tail.end() >= s.tail.end() && held.tail != s.tail {
        s.tail = held.tail.clone();
        changed = true;
    }
    if s.source != SOURCE && !s.tail.text().is_empty() {
        s.source = SOURCE.into();
        changed = true;
    }
    if held.last && !s.last {
        s.last = true;
        changed = true;
    }
    changed
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
    fn chunks_are_kept_merged_in_memory_with_a_secrets_start_held_back() {
        let c = ctx(&["hf_SECRETTOKEN"]);
        let mut e = Entry {
            pending: vec![chunk(0, "step 1\n"), chunk(7, "token hf_SEC")],
            ..Default::default()
        };
        assert_eq!(e.merge_pending(&c, false), 0);
        assert_eq!(e.base.tail.text(), b"step 1\ntoken ");
        assert_eq!(
            e.pending.len(),
            1,
            "the chunk with the held-back bytes stays"
        );
        e.pending.push(chunk(19, "RETTOKEN\n"));
        e.merge_pending(&c, false);
        assert_eq!(e.base.tail.text(), b"step 1\ntoken ***\n");
        assert!(e.pending.is_empty());
        e.pending.push(chunk(28, "bye hf_"));
        e.merge_pending(&c, true);
        assert_eq!(e.base.tail.text(), b"step 1\ntoken ***\nbye hf_");
        assert!(e.base.last && e.pending.is_empty());
    }

    #[test]
    fn a_chunk_sent_again_is_held_already() {
        let c = ctx(&[]);
        let mut e = Entry {
            context: Some(Arc::new(c.clone())),
            pending: vec![chunk(0, "step 1\n")],
            ..Default::default()
        };
        assert!(e.holds(0, 7), "the same chunk waiting to be merged");
        assert!(!e.holds(7, 7), "the next chunk");
        e.merge_pending(&c, true);
        assert!(e.holds(0, 7), "merged into the tail (the end was written)");
        assert!(e.holds(3, 4), "a part of the tail");
        assert!(!e.holds(3, 8), "reaches past the tail");
    }

    #[test]
    fn the_held_tail_replaces_the_stored_one_unless_that_reaches_further() {
        let c = ctx(&[]);
        let mut held = Stored::default();
        write_chunks(&mut held, &[chunk(0, "a\nb\n")], &c, false);
        let mut stored = Stored::default();
        assert!(merge(&mut stored, &held), "an empty ConfigMap takes it");
        assert_eq!(stored.tail, held.tail);
        assert_eq!(stored.source, SOURCE);
        assert!(!merge(&mut stored, &held), "nothing new: no write");
        let mut further = stored.clone();
        write_chunks(&mut further, &[chunk(4, "c\n")], &c, false);
        let mut ahead = further.clone();
        assert!(!merge(&mut ahead, &held), "written further by someone else");
        assert_eq!(ahead.tail, further.tail);
        held.last = true;
        assert!(merge(&mut ahead, &held), "the end is marked");
        assert!(ahead.last && ahead.tail == further.tail);
        stored.failure_event = true;
        let mut next = held.clone();
        write_chunks(&mut next, &[chunk(4, "c\nd\n")], &c, false);
        assert!(merge(&mut stored, &next));
        assert!(
            stored.failure_event,
            "annotations of other writers are kept"
        );
        assert_eq!(stored.tail.text(), b"a\nb\nc\nd\n");
    }

    #[test]
    fn a_failure_is_an_exit_with_a_code_other_than_zero_and_no_reclaim() {
        assert_eq!(
            failure_of(Some(3), false).as_deref(),
            Some("exited with code 3")
        );
        assert_eq!(failure_of(Some(0), false), None);
        assert_eq!(failure_of(Some(143), true), None);
        assert_eq!(failure_of(None, false), None);
    }

    #[test]
    fn skipped_output_is_counted() {
        let c = ctx(&[]);
        let mut s = Stored::default();
        assert_eq!(write_chunks(&mut s, &[chunk(100, "x\n")], &c, false), 100);
    }
}
