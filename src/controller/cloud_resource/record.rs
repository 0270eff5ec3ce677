//! Creation records: one ConfigMap per create attempt, written before the provider's create call
//! and kept after the CloudResource is gone. The orphan reaper deletes a machine only when it
//! holds such a record, so a machine made outside runctl that merely carries look-alike tags is
//! never touched.
//!
//! A record lives in its CloudResource's namespace, is named after the attempt's idempotency
//! token (`runctl-creation-<token>`), and is removed when the machine is gone, when the object is
//! released with `deletionPolicy: Orphan`, or by the reaper once neither object nor machine is
//! left.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};

use crate::crd::ProviderKind;

/// Label on every creation record (value `true`).
pub const RECORD_LABEL: &str = "runctl.dev/creation-record";
/// Prefix of a record's name; the token follows.
pub const NAME_PREFIX: &str = "runctl-creation-";

/// What runctl knew when it asked a provider for a machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreationRecord {
    /// Installation that made the call.
    pub installation: String,
    /// Namespace of the CloudResource (and of the record).
    pub namespace: String,
    /// Name of the CloudResource.
    pub name: String,
    /// UID of the CloudResource.
    pub uid: String,
    /// Create attempt.
    pub attempt: u32,
    /// Idempotency token of the attempt.
    pub token: String,
    /// Deterministic machine name of the attempt.
    pub machine_name: String,
    /// Provider.
    pub provider: ProviderKind,
    /// Region, for providers with regions.
    pub region: Option<String>,
    /// Credentials Secret as `namespace/name`, when one was used.
    pub credentials: Option<String>,
    /// When the record was written.
    pub created_at: Timestamp,
}

impl CreationRecord {
    /// Name of the record of `token`.
    pub fn object_name(token: &str) -> String {
        format!("{NAME_PREFIX}{token}")
    }

    /// The record as a ConfigMap.
    pub fn to_configmap(&self) -> ConfigMap {
        let mut data = BTreeMap::from([
            ("installation".to_string(), self.installation.clone()),
            ("namespace".to_string(), self.namespace.clone()),
            ("name".to_string(), self.name.clone()),
            ("uid".to_string(), self.uid.clone()),
            ("attempt".to_string(), self.attempt.to_string()),
            ("token".to_string(), self.token.clone()),
            ("machineName".to_string(), self.machine_name.clone()),
            ("provider".to_string(), self.provider.as_str().to_string()),
            ("createdAt".to_string(), self.created_at.to_string()),
        ]);
        if let Some(r) = &self.region {
            data.insert("region".into(), r.clone());
        }
        if let Some(c) = &self.credentials {
            data.insert("credentials".into(), c.clone());
        }
        record_configmap(
            Self::object_name(&self.token),
            &self.namespace,
            RECORD_LABEL,
            data,
        )
    }

    /// Reads a record back; `None` when the ConfigMap is not a complete record.
    pub fn from_configmap(cm: &ConfigMap) -> Option<Self> {
        let data = cm.data.as_ref()?;
        let get = |k: &str| data.get(k).cloned();
        let provider = serde_json::from_value(serde_json::Value::String(get("provider")?)).ok()?;
        Some(Self {
            installation: get("installation")?,
            namespace: get("namespace")?,
            name: get("name")?,
            uid: get("uid")?,
            attempt: get("attempt")?.parse().ok()?,
            token: get("token")?,
            machine_name: get("machineName")?,
            provider,
            region: get("region"),
            credentials: get("credentials"),
            created_at: get("createdAt")?.parse().ok()?,
        })
    }
}

/// A record of runctl's as a ConfigMap: `name` in `namespace`, labelled `label=true` and
/// managed by runctl, holding `data` (creation records here, success records of jobs).
pub fn record_configmap(
    name: String,
    namespace: &str,
    label: &str,
    data: BTreeMap<String, String>,
) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (label.to_string(), "true".to_string()),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "runctl".to_string(),
                ),
            ])),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

/// How many records [`Written`] remembers before it starts over (each costs one more POST then).
const MAX_REMEMBERED: usize = 10_000;

/// The records this process wrote, or found written (a 409), by namespace and token: a create
/// retried for the same attempt (capacity, rate limits, a lost answer) does not POST its record
/// again. Records removed through [`forget`] are forgotten here too.
#[derive(Debug, Default)]
pub struct Written {
    known: parking_lot::Mutex<HashSet<(String, String)>>,
}

impl Written {
    /// Whether the record of `token` in `namespace` is known to exist.
    pub fn knows(&self, namespace: &str, token: &str) -> bool {
        self.known
            .lock()
            .contains(&(namespace.to_string(), token.to_string()))
    }

    fn remember(&self, namespace: &str, token: &str) {
        let mut known = self.known.lock();
        if known.len() >= MAX_REMEMBERED {
            known.clear();
        }
        known.insert((namespace.to_string(), token.to_string()));
    }

    fn forget(&self, namespace: &str, token: &str) {
        self.known
            .lock()
            .remove(&(namespace.to_string(), token.to_string()));
    }
}

/// Writes `record` unless it exists already (known to `written`, or answered 409
/// `AlreadyExists`). Must succeed before the create call it records.
pub async fn ensure(
    client: &Client,
    written: &Written,
    record: &CreationRecord,
) -> Result<(), kube::Error> {
    if written.knows(&record.namespace, &record.token) {
        return Ok(());
    }
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &record.namespace);
    match api
        .create(&PostParams::default(), &record.to_configmap())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {}
        Err(e) => return Err(e),
    }
    written.remember(&record.namespace, &record.token);
    Ok(())
}

/// Removes the record of `token`; a missing record is fine.
pub async fn forget(
    client: &Client,
    written: &Written,
    namespace: &str,
    token: &str,
) -> Result<(), kube::Error> {
    // Forgotten first: should the delete fail after all, the next ensure writes it again.
    written.forget(namespace, token);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api
        .delete(
            &CreationRecord::object_name(token),
            &DeleteParams::default(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Every record of `installation`, in `namespace` or in all namespaces.
pub async fn list(
    client: &Client,
    namespace: Option<&str>,
    installation: &str,
) -> Result<Vec<CreationRecord>, kube::Error> {
    let api: Api<ConfigMap> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let api = &api;
    crate::runtime::paged::collect(
        ListParams::default().labels(&format!("{RECORD_LABEL}=true")),
        |p| async move { api.list(&p).await },
        |c| CreationRecord::from_configmap(&c).filter(|r| r.installation == installation),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CreationRecord {
        CreationRecord {
            installation: "prod".into(),
            namespace: "ml".into(),
            name: "train".into(),
            uid: "u-1".into(),
            attempt: 2,
            token: "rc-abc".into(),
            machine_name: "runctl-train-u1-a2".into(),
            provider: ProviderKind::Runpod,
            region: None,
            credentials: Some("ml/runpod".into()),
            created_at: "2026-11-23T12:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn round_trips_through_a_configmap() {
        let r = record();
        let cm = r.to_configmap();
        assert_eq!(cm.metadata.name.as_deref(), Some("runctl-creation-rc-abc"));
        assert_eq!(CreationRecord::from_configmap(&cm), Some(r.clone()));
        let with_region = CreationRecord {
            region: Some("eu".into()),
            credentials: None,
            ..r
        };
        assert_eq!(
            CreationRecord::from_configmap(&with_region.to_configmap()),
            Some(with_region)
        );
    }

    /// Issue 17, item 6: every create retry POSTed the record again (answered 409).
    #[tokio::test]
    async fn a_record_is_written_once_per_create_intent() {
        use runctl_apiserver::{ApiServer, Verb, WriteFault};
        let server = ApiServer::start().await.expect("API test server");
        let client = server.client();
        let posts = || server.stats().count(Verb::Create, "configmaps");
        let r = CreationRecord {
            namespace: "default".into(),
            ..record()
        };
        let written = Written::default();
        for _ in 0..3 {
            ensure(&client, &written, &r).await.expect("ensure");
        }
        assert_eq!(posts(), 1, "retries of the same attempt write nothing");
        // Another process (a restart) learns it from one 409 AlreadyExists.
        let restarted = Written::default();
        for _ in 0..3 {
            ensure(&client, &restarted, &r).await.expect("ensure");
        }
        assert_eq!(posts(), 2);
        // A removed record is written again should its attempt create again.
        forget(&client, &written, "default", &r.token)
            .await
            .expect("forget");
        assert!(!written.knows("default", &r.token));
        ensure(&client, &written, &r).await.expect("ensure");
        assert_eq!(posts(), 3);
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        assert!(
            api.get_opt(&CreationRecord::object_name(&r.token))
                .await
                .unwrap()
                .is_some()
        );
        // A 409 that is not AlreadyExists proves nothing: an error, and nothing remembered.
        let other = CreationRecord {
            token: "rc-other".into(),
            ..r.clone()
        };
        server
            .faults()
            .fail_writes(WriteFault::conflict(1).on_verb(Verb::Create));
        ensure(&client, &written, &other)
            .await
            .expect_err("an injected conflict");
        assert!(!written.knows("default", "rc-other"));
        ensure(&client, &written, &other).await.expect("ensure");
        assert!(
            api.get_opt(&CreationRecord::object_name("rc-other"))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn incomplete_or_foreign_configmaps_are_not_records() {
        let mut cm = record().to_configmap();
        if let Some(d) = cm.data.as_mut() {
            d.insert("attempt".into(), "x".into());
        }
        assert_eq!(CreationRecord::from_configmap(&cm), None);
        let mut cm = record().to_configmap();
        if let Some(d) = cm.data.as_mut() {
            d.insert("provider".into(), "gcp".into());
        }
        assert_eq!(CreationRecord::from_configmap(&cm), None);
        assert_eq!(CreationRecord::from_configmap(&ConfigMap::default()), None);
    }
}
