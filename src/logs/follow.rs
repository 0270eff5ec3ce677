//! Live output on request. Without a reader, an attempt's output is written into the API once,
//! when the attempt ends ([`super::sink`], [`super::pull`]): a running job that prints costs no
//! write. A reader asks for live output by setting [`FOLLOW_ANNOTATION`] on the job to the
//! current time (`runctl logs -f` does, and renews it every [`FOLLOW_RENEW`] while it follows);
//! while the newest request is younger than [`FOLLOW_WINDOW`], the leader writes that job's
//! output as it arrives (at most every [`super::sink::FOLLOWED_WRITE_INTERVAL`] per attempt) and
//! pulls a provider's log (Lyceum) every [`super::pull::PULL_INTERVAL`]. The cost of live output
//! is bounded by the number of people watching, not by the number of jobs.
//!
//! The window is measured from the time in the annotation, so the CLI's and the operator's clocks
//! should agree within a few seconds (a request from a clock far behind expires early, and the
//! next renewal asks again).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// The annotation on a TrainingJob that asks for its output live: an RFC 3339 time.
pub const FOLLOW_ANNOTATION: &str = "runctl.dev/logs-follow";
/// How long one request keeps the output live.
pub const FOLLOW_WINDOW: Duration = Duration::from_secs(60);
/// How often `runctl logs -f` renews its request.
pub const FOLLOW_RENEW: Duration = Duration::from_secs(30);

/// The JSON merge patch (`Patch::Merge`) that asks for live output as of `now`: it sets
/// [`FOLLOW_ANNOTATION`] and touches nothing else.
pub fn follow_patch(now: Timestamp) -> serde_json::Value {
    serde_json::json!({"metadata": {"annotations": {FOLLOW_ANNOTATION: now.to_string()}}})
}

/// Until when a request with annotation value `value` keeps the output live (`None` when the
/// value is not a time). A request dated in the future counts from `now`, so a fast clock cannot
/// keep a job live for longer than one window.
pub fn until(value: &str, now: Timestamp) -> Option<Timestamp> {
    let at: Timestamp = value.trim().parse().ok()?;
    let window = SignedDuration::try_from(FOLLOW_WINDOW).ok()?;
    at.min(now).checked_add(window).ok()
}

/// Whether the job whose annotation value is `value` is followed at `now`.
pub fn followed(value: Option<&str>, now: Timestamp) -> bool {
    value.and_then(|v| until(v, now)).is_some_and(|u| u > now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_keeps_the_output_live_for_one_window() {
        let now: Timestamp = "2025-01-01T12:00:00Z".parse().unwrap();
        let patch = follow_patch(now);
        let v = patch["metadata"]["annotations"][FOLLOW_ANNOTATION]
            .as_str()
            .unwrap();
        assert_eq!(v, "2025-01-01T12:00:00Z");
        assert!(followed(Some(v), now));
        let later = now.checked_add(SignedDuration::from_secs(59)).unwrap();
        assert!(followed(Some(v), later));
        let expired = now.checked_add(SignedDuration::from_secs(60)).unwrap();
        assert!(!followed(Some(v), expired));
        assert!(!followed(None, now));
        assert!(!followed(Some("yesterday"), now));
        let future = "2025-01-01T13:00:00Z";
        assert_eq!(
            until(future, now),
            Some(now.checked_add(SignedDuration::from_secs(60)).unwrap()),
            "a request from the future counts from now"
        );
    }
}
