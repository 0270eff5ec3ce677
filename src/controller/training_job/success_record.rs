//! Success records (`recreatePolicy: SkipIfSucceeded`): when such a job succeeds, a small
//! ConfigMap `runctl-succeeded-<job>` in its namespace keeps the spec's digest and the outcome
//! for [`RETENTION`], with no owner, so it outlives the job. A job created later with the same
//! name and spec (Argo CD or Flux re-creating it after `ttlSecondsAfterFinished` deleted it)
//! finishes at once from the record instead of training again. See `docs/gitops.md`.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use sha2::{Digest, Sha256};

use crate::controller::cloud_resource::record::record_configmap;
use crate::crd::training_job::{PreviousSuccess, RecreatePolicy, TrainingJobSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Label on every success record (value `true`).
pub const RECORD_LABEL: &str = "runctl.dev/success-record";
/// Prefix of a record's name; the job's name follows.
pub const NAME_PREFIX: &str = "runctl-succeeded-";
/// How long a record stands for its job.
pub const RETENTION: SignedDuration = SignedDuration::from_hours(30 * 24);

/// A job's success, as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct SuccessRecord {
    /// The job's name.
    pub job: String,
    /// The job's UID.
    pub uid: String,
    /// [`spec_digest`] of the job's spec.
    pub spec_digest: String,
    /// When it succeeded.
    pub completion_time: Timestamp,
    /// Its attempts.
    pub attempt_count: u32,
    /// Its cost (USD).
    pub accrued_cost: Option<f64>,
}

/// The record's object name for `job` (names too long for the prefix are cut and hashed).
pub fn object_name(job: &str) -> String {
    let name = format!("{NAME_PREFIX}{job}");
    if name.len() <= 253 {
        return name;
    }
    let digest = hex::encode(&Sha256::digest(job.as_bytes())[..6]);
    format!("{NAME_PREFIX}{}-{digest}", &job[..200])
}

/// A digest of what the job would train: the spec without the fields that say nothing about
/// the training (TTL, suspend, the policy itself).
pub fn spec_digest(spec: &TrainingJobSpec) -> String {
    let mut s = spec.clone();
    s.ttl_seconds_after_finished = None;
    s.suspend = false;
    s.recreate_policy = RecreatePolicy::default();
    let bytes = serde_json::to_vec(&s).expect("a spec always serializes");
    hex::encode(&Sha256::digest(&bytes)[..16])
}

impl SuccessRecord {
    /// Whether the record stands for a job with `spec` at `now`.
    pub fn stands_for(&self, spec: &TrainingJobSpec, now: Timestamp) -> bool {
        self.spec_digest == spec_digest(spec) && !self.expired(now)
    }

    /// Whether the retention has passed at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        now >= self.completion_time + RETENTION
    }

    /// What the re-created job's status says of it.
    pub fn previous(&self) -> PreviousSuccess {
        PreviousSuccess {
            uid: self.uid.clone(),
            completion_time: Time(self.completion_time),
            attempt_count: self.attempt_count,
            accrued_cost: self.accrued_cost,
        }
    }

    /// The record as a ConfigMap in `namespace`.
    pub fn to_configmap(&self, namespace: &str) -> ConfigMap {
        let mut data = BTreeMap::from([
            ("job".to_string(), self.job.clone()),
            ("uid".to_string(), self.uid.clone()),
            ("specDigest".to_string(), self.spec_digest.clone()),
            (
                "completionTime".to_string(),
                self.completion_time.to_string(),
            ),
            ("attemptCount".to_string(), self.attempt_count.to_string()),
        ]);
        if let Some(c) = self.accrued_cost {
            data.insert("accruedCost".into(), format!("{c}"));
        }
        record_configmap(object_name(&self.job), namespace, RECORD_LABEL, data)
    }

    /// Reads a record back; `None` when the ConfigMap is not a complete record.
    pub fn from_configmap(cm: &ConfigMap) -> Option<Self> {
        let data = cm.data.as_ref()?;
        let get = |k: &str| data.get(k).cloned();
        Some(Self {
            job: get("job")?,
            uid: get("uid")?,
            spec_digest: get("specDigest")?,
            completion_time: get("completionTime")?.parse().ok()?,
            attempt_count: get("attemptCount")?.parse().ok()?,
            accrued_cost: get("accruedCost").and_then(|c| c.parse().ok()),
        })
    }
}

/// The record of `job` in `namespace`, if there is one.
pub async fn read(
    client: &Client,
    namespace: &str,
    job: &str,
) -> Result<Option<SuccessRecord>, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .get_opt(&object_name(job))
        .await?
        .as_ref()
        .and_then(SuccessRecord::from_configmap))
}

/// Deletes the success records (in `namespace`, or every namespace) that no longer stand for a
/// job at `now`; returns how many. A record that does not parse is left alone.
pub async fn remove_expired(
    client: &Client,
    namespace: Option<&str>,
    now: Timestamp,
) -> Result<usize, kube::Error> {
    let api: Api<ConfigMap> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let listed = api
        .list(&ListParams::default().labels(&format!("{RECORD_LABEL}=true")))
        .await?;
    let mut removed = 0;
    for cm in &listed.items {
        let (Some(ns), Some(name), Some(r)) = (
            cm.metadata.namespace.as_deref(),
            cm.metadata.name.as_deref(),
            SuccessRecord::from_configmap(cm),
        ) else {
            continue;
        };
        if r.expired(now) {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => removed += 1,
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// Writes `record` in `namespace`, replacing a record of an earlier job of the same name.
pub async fn write(
    client: &Client,
    namespace: &str,
    record: &SuccessRecord,
) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = record.to_configmap(namespace);
    match api.create(&PostParams::default(), &cm).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // An earlier job's record (or ours, written before a lost answer): replace it.
            match api
                .delete(&object_name(&record.job), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
            api.create(&PostParams::default(), &cm).await.map(drop)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TrainingJobSpec {
        serde_json::from_value(serde_json::json!({
            "placement": {"provider": "sim", "instanceType": "sim.a100"},
            "workload": {"image": "train:1"},
            "recreatePolicy": "SkipIfSucceeded"
        }))
        .unwrap()
    }

    fn record() -> SuccessRecord {
        SuccessRecord {
            job: "resnet".into(),
            uid: "u-1".into(),
            spec_digest: spec_digest(&spec()),
            completion_time: "2026-12-01T10:00:00Z".parse().unwrap(),
            attempt_count: 2,
            accrued_cost: Some(3.25),
        }
    }

    #[test]
    fn round_trips_through_a_configmap() {
        let r = record();
        let cm = r.to_configmap("ml");
        assert_eq!(cm.metadata.name.as_deref(), Some("runctl-succeeded-resnet"));
        assert_eq!(SuccessRecord::from_configmap(&cm), Some(r));
    }

    #[test]
    fn stands_for_the_same_training_within_the_retention() {
        let r = record();
        let soon: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        assert!(r.stands_for(&spec(), soon));
        // TTL and suspend say nothing about what is trained.
        let mut same = spec();
        same.ttl_seconds_after_finished = Some(60);
        same.suspend = true;
        assert!(r.stands_for(&same, soon));
        // Another image is another training.
        let mut other = spec();
        other.workload.image = "train:2".into();
        assert!(!r.stands_for(&other, soon));
        // Too old.
        let later: Timestamp = "2027-01-15T10:00:00Z".parse().unwrap();
        assert!(!r.stands_for(&spec(), later));
    }

    #[test]
    fn long_names_are_cut_and_hashed() {
        let long = "j".repeat(253);
        let name = object_name(&long);
        assert!(name.len() <= 253 && name.starts_with(NAME_PREFIX), "{name}");
        assert_ne!(name, object_name(&"j".repeat(252)));
    }
}
