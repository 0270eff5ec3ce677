//! An attempt's tail as the Kubernetes API holds it: the ConfigMap `<job>-a<N>-log`, labelled
//! `runctl.dev/job` and `runctl.dev/attempt` and owned by the job (so the garbage collector
//! removes it with the job, and it outlives the attempt's CloudResource). Any replica and the CLI
//! read it; writes are read-modify-write with the resourceVersion, so two replicas that received
//! chunks of the same attempt merge them instead of overwriting each other.
//!
//! Data keys: `log` (the text), `times` (`<unix second> <lines>` runs: when each line of `log`
//! started). Annotations: `runctl.dev/log-offset` (stream offset of the end of `log`),
//! `runctl.dev/log-first-line` (stream-wide index of its first line), `runctl.dev/log-skipped`
//! (bytes that never arrived), `runctl.dev/log-source` (`wrapper` or the provider), `runctl.dev/log-final`
//! (`true` once the attempt's end was written) and `runctl.dev/log-cursor` (where a provider
//! pull left off).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::tail::Tail;
use crate::attempt::log_configmap_name;
use crate::controller::training_job::view::{LABEL_ATTEMPT, LABEL_JOB};

/// Data key of the text.
pub const KEY_LOG: &str = "log";
/// Data key of the line start times.
pub const KEY_TIMES: &str = "times";
/// Annotation: stream offset of the end of the text.
pub const ANN_OFFSET: &str = "runctl.dev/log-offset";
/// Annotation: stream-wide index of the first kept line.
pub const ANN_FIRST_LINE: &str = "runctl.dev/log-first-line";
/// Annotation: bytes of output that never arrived.
pub const ANN_SKIPPED: &str = "runctl.dev/log-skipped";
/// Annotation: where the output came from (`wrapper`, `lyceum`).
pub const ANN_SOURCE: &str = "runctl.dev/log-source";
/// Annotation: `true` once the attempt's end was written.
pub const ANN_FINAL: &str = "runctl.dev/log-final";
/// Annotation: where a provider pull left off.
pub const ANN_CURSOR: &str = "runctl.dev/log-cursor";
/// Annotation: `true` once the failed attempt's `AttemptFailed` event was published.
pub const ANN_FAILURE_EVENT: &str = "runctl.dev/log-failure-event";

/// Writes tried at most per update (each conflict re-reads).
const TRIES: usize = 4;

/// Why the tail could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The API server refused or failed a request.
    #[error("failed to write the attempt's log ConfigMap {name}: {source}")]
    Api {
        /// ConfigMap name.
        name: String,
        /// The answer.
        #[source]
        source: kube::Error,
    },
    /// Other writers kept changing it.
    #[error("the attempt's log ConfigMap {0} kept changing under the write")]
    Contended(String),
}

/// One attempt's stored output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// The tail.
    pub tail: Tail,
    /// Where the output came from.
    pub source: String,
    /// The attempt's end was written.
    pub last: bool,
    /// Where a provider pull left off.
    pub cursor: Option<String>,
    /// The failed attempt's event was published.
    pub failure_event: bool,
}

impl Stored {
    /// Reads what a ConfigMap holds (missing or malformed parts read as empty).
    pub fn of(cm: &ConfigMap) -> Self {
        let data = cm.data.clone().unwrap_or_default();
        let ann = cm.metadata.annotations.clone().unwrap_or_default();
        let num = |k: &str| ann.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let text = data.get(KEY_LOG).cloned().unwrap_or_default().into_bytes();
        let starts = decode_times(data.get(KEY_TIMES).map_or("", String::as_str));
        Self {
            tail: Tail::from_parts(
                text,
                starts,
                num(ANN_OFFSET),
                num(ANN_FIRST_LINE),
                num(ANN_SKIPPED),
            ),
            source: ann.get(ANN_SOURCE).cloned().unwrap_or_default(),
            last: ann.get(ANN_FINAL).is_some_and(|v| v == "true"),
            cursor: ann.get(ANN_CURSOR).cloned(),
            failure_event: ann.get(ANN_FAILURE_EVENT).is_some_and(|v| v == "true"),
        }
    }

    /// Writes this into `cm`'s data and annotations (the rest of `cm` is kept).
    pub fn put(&self, cm: &mut ConfigMap) {
        cm.data = Some(BTreeMap::from([
            (
                KEY_LOG.to_string(),
                String::from_utf8_lossy(self.tail.text()).into_owned(),
            ),
            (KEY_TIMES.to_string(), encode_times(self.tail.starts())),
        ]));
        let ann = cm.metadata.annotations.get_or_insert_with(BTreeMap::new);
        ann.insert(ANN_OFFSET.into(), self.tail.end().to_string());
        ann.insert(ANN_FIRST_LINE.into(), self.tail.first_line().to_string());
        ann.insert(ANN_SKIPPED.into(), self.tail.skipped().to_string());
        ann.insert(ANN_SOURCE.into(), self.source.clone());
        if self.last {
            ann.insert(ANN_FINAL.into(), "true".into());
        }
        if self.failure_event {
            ann.insert(ANN_FAILURE_EVENT.into(), "true".into());
        }
        match &self.cursor {
            Some(c) => {
                ann.insert(ANN_CURSOR.into(), c.clone());
            }
            None => {
                ann.remove(ANN_CURSOR);
            }
        }
    }
}

/// `<unix second> <lines>` runs, one per line of text.
pub fn encode_times(starts: impl Iterator<Item = i64>) -> String {
    let mut out = String::new();
    let mut run: Option<(i64, usize)> = None;
    for t in starts {
        run = match run {
            Some((r, n)) if r == t => Some((r, n + 1)),
            Some((r, n)) => {
                out.push_str(&format!("{r} {n}\n"));
                Some((t, 1))
            }
            None => Some((t, 1)),
        };
    }
    if let Some((r, n)) = run {
        out.push_str(&format!("{r} {n}\n"));
    }
    out
}

/// The line start times of [`encode_times`]' text; malformed runs are skipped, and a run longer
/// than the tail can hold is cut.
pub fn decode_times(text: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(Ok(t)), Some(Ok(n))) = (
            parts.next().map(str::parse::<i64>),
            parts.next().map(str::parse::<usize>),
        ) else {
            continue;
        };
        let room = (super::tail::MAX_LINES * 2).saturating_sub(out.len());
        out.extend(std::iter::repeat_n(t, n.min(room)));
    }
    out
}

/// Who an attempt's ConfigMap is for: its namespace, job, attempt and owner.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// Namespace.
    pub namespace: String,
    /// Job name.
    pub job: String,
    /// Attempt number.
    pub attempt: u32,
    /// The owner (the TrainingJob), so the ConfigMap goes with it.
    pub owner: Option<OwnerReference>,
}

impl Target {
    /// The ConfigMap's name.
    pub fn name(&self) -> String {
        log_configmap_name(&self.job, self.attempt)
    }

    fn fresh(&self) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([
                    (LABEL_JOB.to_string(), self.job.clone()),
                    (LABEL_ATTEMPT.to_string(), self.attempt.to_string()),
                ])),
                owner_references: self.owner.clone().map(|o| vec![o]),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// Reads the ConfigMap of `target`, applies `change` to what it holds and writes it back with
/// the resourceVersion read (creating it when missing), re-reading on a conflict. `cached` is the
/// ConfigMap as last written by this process: tried first, which saves the read when nobody else
/// wrote since. `change` returns false when there is nothing to write. Returns what is stored.
pub async fn update(
    client: &Client,
    target: &Target,
    cached: Option<ConfigMap>,
    mut change: impl FnMut(&mut Stored) -> bool,
) -> Result<ConfigMap, StoreError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &target.namespace);
    let name = target.name();
    let api_err = |source| StoreError::Api {
        name: name.clone(),
        source,
    };
    let mut current = cached;
    for _ in 0..TRIES {
        let cm = match current.take() {
            Some(cm) => Some(cm),
            None => api.get_opt(&name).await.map_err(api_err)?,
        };
        let exists = cm.is_some();
        let mut cm = cm.unwrap_or_else(|| target.fresh());
        let mut stored = Stored::of(&cm);
        if !change(&mut stored) {
            return Ok(cm);
        }
        stored.put(&mut cm);
        let written = if exists {
            api.replace(&name, &PostParams::default(), &cm).await
        } else {
            api.create(&PostParams::default(), &cm).await
        };
        match written {
            Ok(cm) => return Ok(cm),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(api_err(e)),
        }
    }
    Err(StoreError::Contended(name))
}

/// Reads the ConfigMap of attempt `attempt` of `job`, if any.
pub async fn read(
    client: &Client,
    namespace: &str,
    job: &str,
    attempt: u32,
) -> Result<Option<(ConfigMap, Stored)>, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .get_opt(&log_configmap_name(job, attempt))
        .await?
        .map(|cm| {
            let s = Stored::of(&cm);
            (cm, s)
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_as_runs() {
        let starts = [5, 5, 5, 9, 5];
        let enc = encode_times(starts.iter().copied());
        assert_eq!(enc, "5 3\n9 1\n5 1\n");
        assert_eq!(decode_times(&enc), starts.to_vec());
        assert_eq!(decode_times("x y\n7 2\n"), vec![7, 7]);
        assert_eq!(decode_times("1 99999999999").len(), 1000, "bounded");
        assert_eq!(encode_times(std::iter::empty()), "");
    }

    #[test]
    fn a_configmap_round_trips() {
        let mut tail = Tail::new();
        tail.append(0, b"hello\nworld\n", 100);
        tail.append(40, b"again\n", 101);
        let s = Stored {
            tail,
            source: "wrapper".into(),
            last: true,
            cursor: Some("abc".into()),
            failure_event: true,
        };
        let target = Target {
            namespace: "ml".into(),
            job: "bert".into(),
            attempt: 2,
            owner: None,
        };
        let mut cm = target.fresh();
        s.put(&mut cm);
        assert_eq!(cm.metadata.name.as_deref(), Some("bert-a2-log"));
        assert_eq!(cm.metadata.labels.as_ref().unwrap()[LABEL_ATTEMPT], "2");
        assert_eq!(Stored::of(&cm), s);
        assert_eq!(Stored::of(&ConfigMap::default()), Stored::default());
    }
}
