//! RunPod's dead-man switch: what ends a pod, and so its spend, when no operator is left.
//!
//! RunPod's REST v2 takes no termination deadline (its create body has no such field, and an
//! unknown field is a 422), and a pod whose container exits only becomes `EXITED`, where its disk
//! keeps billing until someone deletes the pod. So the pod deletes itself: runctl runs the
//! workload under its wrapper ([`WRAPPER_SCRIPT`](crate::provider::workload::WRAPPER_SCRIPT))
//! with `RUNCTL_RUNPOD_API_URL` set, and with `RUNCTL_DEADLINE` (launch plus
//! `maxLifetimeSeconds`) when the CloudResource has a lifetime. The wrapper deletes its own pod
//! (`DELETE /pods/$RUNPOD_POD_ID`) with the pod-scoped `RUNPOD_API_KEY` RunPod puts into every
//! pod, once the workload ended and its exit was reported, once the deadline passed, or once the
//! operator stopped acknowledging heartbeats. runctl never hands the account's API key to a pod.
//!
//! That the pod-scoped key may delete its pod over REST v2 comes from RunPod's documentation of
//! the key ("limited in scope to only the pod") and of `runpodctl remove pod $RUNPOD_POD_ID`
//! inside a pod, not from a test against RunPod: a wrong guess shows as a pod that stays
//! `EXITED` after its container ended. The wrapper logs why, and [`Tracker`] turns it into the
//! machine's message and a warning (see `docs/providers/runpod.md`, "Dead-man switch").

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::api::Pod;
use crate::provider::ProviderError;
use crate::provider::workload::{
    ENV_DEADLINE, ENV_RUNPOD_API_KEY, ENV_RUNPOD_API_URL, ENV_RUNPOD_POD_ID, Workload,
};

/// How long an armed pod may read `EXITED` before runctl calls its self-delete failed: the
/// wrapper deletes the pod right after the container's last report, so a pod still `EXITED` a
/// minute later did not delete itself.
pub const SELF_DELETE_OVERDUE: Duration = Duration::from_secs(60);
/// Pods the tracker remembers at most; the oldest are forgotten first.
const TRACKED_CAP: usize = 10_000;

/// How a pod starts its workload.
#[derive(Clone, PartialEq, Eq)]
pub struct Launch {
    /// The argv (the wrapper's when armed or reporting).
    pub argv: Vec<String>,
    /// The workload's env plus the wrapper's settings (secret values possible).
    pub env: BTreeMap<String, String>,
    /// True when the wrapper will delete its own pod.
    pub armed: bool,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Env values may be Secret values: names only.
        f.debug_struct("Launch")
            .field("argv_words", &self.argv.len())
            .field("env_names", &self.env.keys().collect::<Vec<_>>())
            .field("armed", &self.armed)
            .finish()
    }
}

/// The argv and env of a pod for `workload`: wrapped, and armed to delete its own pod, when the
/// workload reports (a TrainingJob's) or has a lifetime to enforce; the image's own command runs
/// unwrapped when the workload names none and does not report (runctl cannot wrap a command it
/// does not know). `api_url` is RunPod's REST v2 base URL; `now` the create time, from which the
/// deadline counts (the pod's `createdAt`, which the controller's lifetime limit counts from).
pub fn launch(
    workload: &Workload,
    max_lifetime_seconds: Option<i64>,
    api_url: &str,
    now: Timestamp,
) -> Result<Launch, ProviderError> {
    for name in [ENV_RUNPOD_POD_ID, ENV_RUNPOD_API_KEY] {
        if workload.env.contains_key(name) {
            return Err(ProviderError::InvalidSpec {
                message: format!(
                    "workload env {name} is RunPod's own (it names the pod and its pod-scoped key, with which runctl's wrapper deletes the pod): remove it"
                ),
            });
        }
    }
    let lifetime = max_lifetime_seconds.filter(|s| *s > 0);
    let command = workload.command_line();
    let armed = workload.reporting.is_some() || (lifetime.is_some() && !command.is_empty());
    let mut env = workload.full_env();
    env.remove(ENV_RUNPOD_API_URL);
    env.remove(ENV_DEADLINE);
    if !armed {
        return Ok(Launch {
            argv: command,
            env,
            armed,
        });
    }
    env.insert(
        ENV_RUNPOD_API_URL.into(),
        api_url.trim_end_matches('/').into(),
    );
    if let Some(secs) = lifetime {
        env.insert(
            ENV_DEADLINE.into(),
            now.as_second().saturating_add(secs).to_string(),
        );
    }
    Ok(Launch {
        argv: workload.wrapped_argv(),
        env,
        armed,
    })
}

/// True when `pod` runs runctl's wrapper armed to delete it.
pub fn is_armed(pod: &Pod) -> bool {
    pod.env_value(ENV_RUNPOD_API_URL).is_some()
}

/// The message of an armed pod that reads `EXITED`, by whether its self-delete is overdue.
pub fn exited_message(overdue: bool) -> String {
    if overdue {
        format!(
            "RunPod status EXITED for {}s or more: the container ended but the pod did not delete itself as runctl's wrapper should have (the pod's log has a 'runctl-wrapper:' line saying why); its disk bills until the pod is deleted",
            SELF_DELETE_OVERDUE.as_secs()
        )
    } else {
        "RunPod status EXITED: the container ended; runctl's wrapper deletes its own pod when it is done".into()
    }
}

/// The message of an armed pod that is gone without runctl deleting it.
pub const SELF_DELETED: &str = "the pod is gone and runctl did not delete it: runctl's wrapper deletes its own pod when the workload has ended, its lifetime deadline has passed, or the operator stopped answering";

/// What runctl saw of one armed pod.
#[derive(Clone, Copy, Debug)]
struct Seen {
    first: Instant,
    exited_since: Option<Instant>,
    warned: bool,
}

/// The armed pods this process has seen: which pods delete themselves (a pod that vanishes then
/// ended itself rather than disappeared), since when each reads `EXITED`, and whether the
/// overdue self-delete was warned about. In memory: after an operator restart a pod that deleted
/// itself before it was seen again reads as disappeared.
#[derive(Debug, Default)]
pub struct Tracker {
    pods: HashMap<String, Seen>,
}

/// What the tracker says about a listed armed pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Replacement message, for an `EXITED` pod.
    pub message: Option<String>,
    /// True the first time the pod's self-delete is overdue: warn once.
    pub warn: bool,
}

impl Tracker {
    /// Notes a listed armed pod with `status` at `now`.
    pub fn saw(&mut self, id: &str, status: &str, now: Instant) -> Verdict {
        if !self.pods.contains_key(id) && self.pods.len() >= TRACKED_CAP {
            let oldest = self
                .pods
                .iter()
                .min_by_key(|(_, s)| s.first)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                self.pods.remove(&oldest);
            }
        }
        let seen = self.pods.entry(id.to_string()).or_insert(Seen {
            first: now,
            exited_since: None,
            warned: false,
        });
        if status != "EXITED" {
            seen.exited_since = None;
            return Verdict {
                message: None,
                warn: false,
            };
        }
        let since = *seen.exited_since.get_or_insert(now);
        let overdue = now.saturating_duration_since(since) >= SELF_DELETE_OVERDUE;
        let warn = overdue && !seen.warned;
        seen.warned |= overdue;
        Verdict {
            message: Some(exited_message(overdue)),
            warn,
        }
    }

    /// True when `id` was seen armed: gone without runctl's delete, it deleted itself.
    pub fn armed(&self, id: &str) -> bool {
        self.pods.contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::workload::{ENV_REPORT_TOKEN, Reporting};

    fn workload() -> Workload {
        Workload {
            image: "img".into(),
            command: vec!["python".into()],
            args: vec!["train.py".into()],
            env: BTreeMap::from([("HF_TOKEN".into(), "s3cret".into())]),
            reporting: None,
        }
    }

    fn reporting() -> Reporting {
        Reporting {
            callback_url: "https://op/cb".into(),
            token: "tok".into(),
            heartbeat_interval_seconds: 30,
            self_terminate_after_seconds: 1800,
            report_grace_seconds: 90,
        }
    }

    const URL: &str = "https://api.runpod.io/v2/";

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("time")
    }

    #[test]
    fn a_plain_workload_without_a_lifetime_runs_as_is() {
        let l = launch(&workload(), None, URL, at(1_000)).expect("launch");
        assert!(!l.armed);
        assert_eq!(l.argv, vec!["python", "train.py"]);
        assert!(!l.env.contains_key(ENV_RUNPOD_API_URL) && !l.env.contains_key(ENV_DEADLINE));
    }

    #[test]
    fn a_lifetime_wraps_and_arms_with_a_deadline_from_create() {
        let l = launch(&workload(), Some(3_600), URL, at(1_000)).expect("launch");
        assert!(l.armed);
        assert_eq!(&l.argv[..2], &["/bin/sh", "-c"]);
        assert_eq!(&l.argv[3..], &["runctl-wrapper", "python", "train.py"]);
        assert_eq!(l.env[ENV_DEADLINE], "4600");
        assert_eq!(l.env[ENV_RUNPOD_API_URL], "https://api.runpod.io/v2");
        assert!(!l.env.contains_key(ENV_REPORT_TOKEN), "no reporting asked");
        assert!(
            !l.env.contains_key(ENV_RUNPOD_API_KEY),
            "runctl never hands a key to the pod"
        );
    }

    #[test]
    fn a_reporting_workload_is_armed_with_or_without_a_lifetime() {
        let mut w = workload();
        w.reporting = Some(reporting());
        let l = launch(&w, None, URL, at(0)).expect("launch");
        assert!(l.armed && !l.env.contains_key(ENV_DEADLINE));
        assert_eq!(l.env[ENV_REPORT_TOKEN], "tok");
        let l = launch(&w, Some(600), URL, at(10)).expect("launch");
        assert_eq!(l.env[ENV_DEADLINE], "610");
    }

    #[test]
    fn the_image_command_cannot_be_wrapped_and_zero_lifetimes_are_none() {
        let mut w = workload();
        w.command.clear();
        w.args.clear();
        let l = launch(&w, Some(600), URL, at(0)).expect("launch");
        assert!(!l.armed && l.argv.is_empty());
        let l = launch(&workload(), Some(0), URL, at(0)).expect("launch");
        assert!(!l.armed);
    }

    #[test]
    fn user_set_wrapper_settings_never_arm_a_pod() {
        let mut w = workload();
        w.env
            .insert(ENV_RUNPOD_API_URL.into(), "https://evil".into());
        w.env.insert(ENV_DEADLINE.into(), "1".into());
        let l = launch(&w, None, URL, at(0)).expect("launch");
        assert!(!l.env.contains_key(ENV_RUNPOD_API_URL) && !l.env.contains_key(ENV_DEADLINE));
        let l = launch(&w, Some(60), URL, at(0)).expect("launch");
        assert_eq!(
            (
                l.env[ENV_RUNPOD_API_URL].as_str(),
                l.env[ENV_DEADLINE].as_str()
            ),
            ("https://api.runpod.io/v2", "60")
        );
    }

    #[test]
    fn runpods_own_variables_are_refused_without_printing_values() {
        for name in [ENV_RUNPOD_POD_ID, ENV_RUNPOD_API_KEY] {
            let mut w = workload();
            w.env.insert(name.into(), "rpa_ACCOUNTKEY".into());
            let e = launch(&w, None, URL, at(0)).expect_err(name);
            assert_eq!(e.reason(), "InvalidSpec");
            assert!(
                e.message().contains(name) && !e.message().contains("rpa_ACCOUNTKEY"),
                "{e}"
            );
        }
    }

    #[test]
    fn an_exited_armed_pod_is_overdue_after_a_minute_and_warned_once() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        assert_eq!(
            t.saw("p", "RUNNING", t0),
            Verdict {
                message: None,
                warn: false
            }
        );
        assert!(t.armed("p") && !t.armed("q"));
        let v = t.saw("p", "EXITED", t0 + Duration::from_secs(5));
        assert!(
            !v.warn
                && v.message
                    .as_deref()
                    .is_some_and(|m| m.contains("deletes its own pod"))
        );
        let v = t.saw("p", "EXITED", t0 + Duration::from_secs(65));
        assert!(
            v.warn
                && v.message
                    .as_deref()
                    .is_some_and(|m| m.contains("did not delete itself"))
        );
        let v = t.saw("p", "EXITED", t0 + Duration::from_secs(90));
        assert!(!v.warn, "warned once");
        // Restarted (RUNNING again), then EXITED anew: the clock starts over.
        t.saw("p", "RUNNING", t0 + Duration::from_secs(100));
        let v = t.saw("p", "EXITED", t0 + Duration::from_secs(101));
        assert!(
            v.message
                .as_deref()
                .is_some_and(|m| m.contains("deletes its own pod"))
        );
    }

    #[test]
    fn the_tracker_is_bounded() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        for i in 0..TRACKED_CAP + 5 {
            t.saw(
                &format!("p{i}"),
                "RUNNING",
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(t.pods.len(), TRACKED_CAP);
        assert!(!t.armed("p0") && t.armed(&format!("p{}", TRACKED_CAP + 4)));
    }
}
