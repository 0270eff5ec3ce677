//! Credentials Secrets, read at most once per `max_age` per Secret.
//!
//! Every CloudResource reconcile needs its provider instance, and the instance is keyed by the
//! credentials Secret's `namespace/name@resourceVersion`; reading the Secret on every reconcile
//! cost one GET per object per resync. The operator may only `get` Secrets (no list or watch:
//! `charts/runctl/templates/rbac.yaml`), so there is no watch to invalidate a cache with and no
//! conditional GET either. The cache therefore keeps each Secret for `max_age`
//! (`backoff.credentialsRecheckSeconds`, the interval the retry policy already uses to look at a
//! credentials Secret): a rotated Secret is picked up within that time. Callers that must see
//! the Secret as it is now (an object whose last failure was the account's, which the retry
//! policy retries as soon as the Secret changed) ask for a fresh read.
//!
//! Reads are single-flight per Secret: concurrent reconciles of objects that share a Secret wait
//! for one GET. Failed reads are not cached.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use parking_lot::Mutex;

use super::cloud_resource::spec::{SecretError, read_secret};

/// How many Secrets the cache holds before it drops the ones it read longest ago.
const MAX_ENTRIES: usize = 1024;

/// A Secret as read: its string data and resourceVersion.
#[derive(Clone)]
struct Entry {
    data: BTreeMap<String, String>,
    version: String,
    read_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Entry>>>;

/// Credentials Secrets by `(namespace, name)`.
pub struct SecretCache {
    max_age: Duration,
    slots: Mutex<HashMap<(String, String), Slot>>,
}

impl std::fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretCache")
            .field("max_age", &self.max_age)
            .field("secrets", &self.slots.lock().len())
            .finish()
    }
}

impl SecretCache {
    /// A cache whose entries serve for `max_age`.
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The Secret's data and resourceVersion: from the cache when it was read less than
    /// `max_age` ago, else from the API server. With `fresh`, only a read that started after this
    /// call will do (a concurrent caller's read counts).
    pub async fn get(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
        fresh: bool,
    ) -> Result<(BTreeMap<String, String>, String), SecretError> {
        let asked = Instant::now();
        let slot = self.slot(namespace, name);
        let mut entry = slot.lock().await;
        if let Some(e) = entry.as_ref() {
            let usable = if fresh {
                e.read_at >= asked
            } else {
                e.read_at.elapsed() < self.max_age
            };
            if usable {
                return Ok((e.data.clone(), e.version.clone()));
            }
        }
        let read_at = Instant::now();
        match read_secret(client, namespace, name).await {
            Ok((data, version)) => {
                *entry = Some(Entry {
                    data: data.clone(),
                    version: version.clone(),
                    read_at,
                });
                Ok((data, version))
            }
            Err(e) => {
                *entry = None;
                Err(e)
            }
        }
    }

    /// Forgets the Secret: the next read goes to the API server.
    pub fn invalidate(&self, namespace: &str, name: &str) {
        self.slots
            .lock()
            .remove(&(namespace.to_string(), name.to_string()));
    }

    fn slot(&self, namespace: &str, name: &str) -> Slot {
        let mut slots = self.slots.lock();
        let key = (namespace.to_string(), name.to_string());
        if !slots.contains_key(&key) && slots.len() >= MAX_ENTRIES {
            // Keep the Secrets in use: a slot being read, or read within max_age.
            let max_age = self.max_age;
            slots.retain(|_, s| {
                s.try_lock().map_or(true, |e| {
                    e.as_ref().is_some_and(|e| e.read_at.elapsed() < max_age)
                })
            });
        }
        slots.entry(key).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Secret;
    use kube::Api;
    use kube::api::{Patch, PatchParams, PostParams};
    use runctl_apiserver::{ApiServer, Verb};

    async fn server_with_secret() -> (ApiServer, Api<Secret>) {
        let server = ApiServer::start().await.expect("API test server");
        let api: Api<Secret> = Api::namespaced(server.client(), "default");
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "creds"}, "stringData": {"apiKey": "one"}
        }))
        .unwrap();
        api.create(&PostParams::default(), &secret).await.unwrap();
        (server, api)
    }

    fn gets(server: &ApiServer) -> u64 {
        server.stats().count(Verb::Get, "secrets")
    }

    #[tokio::test]
    async fn a_secret_is_read_once_per_max_age_and_fresh_reads_see_changes() {
        let (server, api) = server_with_secret().await;
        let client = server.client();
        let cache = SecretCache::new(Duration::from_millis(400));
        let (data, v1) = cache.get(&client, "default", "creds", false).await.unwrap();
        assert_eq!(data["apiKey"], "one");
        for _ in 0..10 {
            assert_eq!(
                cache
                    .get(&client, "default", "creds", false)
                    .await
                    .unwrap()
                    .1,
                v1
            );
        }
        assert_eq!(gets(&server), 1, "one read for eleven lookups");
        let patch = serde_json::json!({"stringData": {"apiKey": "two"}});
        api.patch("creds", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let (_, cached) = cache.get(&client, "default", "creds", false).await.unwrap();
        assert_eq!(cached, v1, "within max_age the cached version serves");
        let (data, v2) = cache.get(&client, "default", "creds", true).await.unwrap();
        assert!(
            v2 != v1 && data["apiKey"] == "two",
            "a fresh read sees the change"
        );
        assert_eq!(gets(&server), 2);
        tokio::time::sleep(Duration::from_millis(450)).await;
        cache.get(&client, "default", "creds", false).await.unwrap();
        assert_eq!(gets(&server), 3, "read again after max_age");
        cache.invalidate("default", "creds");
        cache.get(&client, "default", "creds", false).await.unwrap();
        assert_eq!(gets(&server), 4, "read again after invalidate");
    }

    #[tokio::test]
    async fn concurrent_lookups_share_one_read_and_failures_are_not_cached() {
        let (server, _api) = server_with_secret().await;
        let client = server.client();
        let cache = Arc::new(SecretCache::new(Duration::from_secs(60)));
        let lookups: Vec<_> = (0..20)
            .map(|_| {
                let (cache, client) = (cache.clone(), client.clone());
                tokio::spawn(async move { cache.get(&client, "default", "creds", false).await })
            })
            .collect();
        for l in lookups {
            l.await.unwrap().unwrap();
        }
        assert_eq!(gets(&server), 1, "single flight");
        for _ in 0..2 {
            let err = cache
                .get(&client, "default", "missing", false)
                .await
                .expect_err("no such Secret");
            assert_eq!(err.reason(), "SecretNotFound");
        }
        assert_eq!(
            gets(&server),
            3,
            "a missing Secret is looked for every time"
        );
    }
}
