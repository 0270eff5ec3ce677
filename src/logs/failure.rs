//! The last lines of a failed attempt in an event on its TrainingJob (reason `AttemptFailed`),
//! so `kubectl describe tj` shows why it failed. The lines come from the stored (scrubbed) tail,
//! at most [`LINES`] of them and [`MAX_NOTE`] bytes in all (an event's note holds 1 KiB). The
//! event is published once per attempt, by whichever learns of the failure first: the leader on
//! the exit report (marked in the same write as the attempt's last output), or the CloudResource
//! controller on a machine that ended with a non-zero exit code or on the attempt's release; the
//! ConfigMap's `runctl.dev/log-failure-event` annotation says it was.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::PostParams;
use kube::{Api, Client};

use super::stored::{self, StoreError, Target};
use super::tail::Tail;
use kube::runtime::events::EventType;

use crate::controller::events::{Pending, Reporter, new_event};

/// Event reason.
pub const REASON: &str = "AttemptFailed";
/// Lines of output in the event at most.
pub const LINES: usize = 10;
/// Bytes of the event's note at most.
pub const MAX_NOTE: usize = 1000;

/// The note: what ended the attempt, then its last lines (none when it printed nothing).
pub fn note(attempt: u32, why: &str, tail: &Tail) -> String {
    let head = format!("attempt {attempt} {why}");
    let room = MAX_NOTE.saturating_sub(head.len() + 20);
    let lines = tail.last_lines(LINES, room);
    if lines.is_empty() {
        format!("{head}; it printed nothing")
    } else {
        format!("{head}; its last lines:\n{lines}")
    }
}

/// The event about `owner` (a TrainingJob in `namespace`).
pub fn event(namespace: &str, owner: &OwnerReference, note: String, now: Timestamp) -> Event {
    let pending = Pending {
        regarding: ObjectReference {
            api_version: Some(owner.api_version.clone()),
            kind: Some(owner.kind.clone()),
            name: Some(owner.name.clone()),
            namespace: Some(namespace.to_string()),
            uid: Some(owner.uid.clone()),
            ..Default::default()
        },
        type_: EventType::Warning,
        reason: REASON,
        action: "Exit",
        note,
    };
    let reporter = Reporter {
        controller: "runctl".into(),
        instance: std::env::var("POD_NAME").unwrap_or_else(|_| "runctl".into()),
    };
    new_event(&pending, &reporter, now)
}

/// Writes the event.
pub async fn publish(client: &Client, namespace: &str, event: &Event) -> Result<(), kube::Error> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), event).await.map(|_| ())
}

/// Why the event could not be published.
#[derive(Debug, thiserror::Error)]
pub enum FailureError {
    /// Marking the ConfigMap failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the event failed.
    #[error("failed to publish the AttemptFailed event: {0}")]
    Publish(#[source] kube::Error),
}

/// What [`report_once`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reported {
    /// Published the event now.
    Published,
    /// Nothing to do: published before, or the attempt printed nothing (or has no job).
    Nothing,
    /// The output's end has not been written yet (with `complete`): try again later.
    NotYet,
}

/// Publishes the `AttemptFailed` event of attempt `target` (which `why` ended) unless it was
/// published already or the attempt printed nothing; with `complete`, only once the output's end
/// was written (a machine seen ended before its wrapper's last chunk arrived). Marks its
/// ConfigMap first, so the event is published once.
pub async fn report_once(
    client: &Client,
    target: &Target,
    why: &str,
    complete: bool,
) -> Result<Reported, FailureError> {
    let mut outcome = Reported::Nothing;
    let cm = stored::update(client, target, None, |s| {
        outcome = if s.failure_event || s.tail.text().is_empty() {
            Reported::Nothing
        } else if complete && !s.last {
            Reported::NotYet
        } else {
            Reported::Published
        };
        s.failure_event |= outcome == Reported::Published;
        outcome == Reported::Published
    })
    .await?;
    if outcome != Reported::Published {
        return Ok(outcome);
    }
    publish_stored(client, target, &cm, why).await
}

/// Publishes the event of attempt `target` (which `why` ended) with the last lines `cm` (its
/// ConfigMap, already marked) holds: for a writer that marked it in its own write.
pub async fn publish_stored(
    client: &Client,
    target: &Target,
    cm: &ConfigMap,
    why: &str,
) -> Result<Reported, FailureError> {
    let owner = cm
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.iter().find(|o| o.kind == "TrainingJob"));
    let Some(owner) = owner else {
        return Ok(Reported::Nothing);
    };
    let note = note(target.attempt, why, &stored::Stored::of(cm).tail);
    let event = event(&target.namespace, owner, note, Timestamp::now());
    publish(client, &target.namespace, &event)
        .await
        .map_err(FailureError::Publish)?;
    Ok(Reported::Published)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_holds_the_last_lines_within_an_events_limit() {
        let mut t = Tail::new();
        let mut off = 0;
        for i in 0..30 {
            let l = format!("line {i}\n");
            t.append(off, l.as_bytes(), 0);
            off += l.len() as u64;
        }
        t.append(off, b"Traceback: boom", 0);
        let n = note(2, "exited with code 3", &t);
        assert!(
            n.starts_with("attempt 2 exited with code 3; its last lines:\nline 21\n"),
            "{n}"
        );
        assert!(n.ends_with("Traceback: boom"), "{n}");
        let mut long = Tail::new();
        long.append(0, &vec![b'x'; 5000], 0);
        assert!(note(1, "exited with code 1", &long).len() <= MAX_NOTE);
        assert_eq!(
            note(1, "exited with code 1", &Tail::new()),
            "attempt 1 exited with code 1; it printed nothing"
        );
    }
}
