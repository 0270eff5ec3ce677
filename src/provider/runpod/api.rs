//! RunPod REST v2 wire types: the `Pod` object (only the fields runctl reads), the create body,
//! the GPU catalog and problem+json errors. Env values may be secrets, so no type here prints
//! them in `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A pod's environment. `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Env(pub BTreeMap<String, Value>);

impl Env {
    /// The value of `name` when it is a string.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// `Pod` as returned by `GET /v2/pods`, `GET /v2/pods/{id}` and `POST /v2/pods`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    /// Pod id.
    pub id: String,
    /// Name (not unique).
    #[serde(default)]
    pub name: Option<String>,
    /// `PROVISIONING`, `STARTING`, `RUNNING`, `EXITED`, `ERROR`, `TERMINATED`.
    #[serde(default)]
    pub status: Option<String>,
    /// Environment (runctl's owner markers live here).
    #[serde(default)]
    pub env: Option<Env>,
    /// USD per hour; 0.0 once `EXITED` or `TERMINATED`.
    #[serde(default)]
    pub cost: Option<f64>,
    /// Null until the container is up.
    #[serde(default)]
    pub runtime: Option<Runtime>,
    /// Creation time (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
    /// GPU type and count.
    #[serde(default)]
    pub gpu: Option<PodGpu>,
    /// `SECURE` or `COMMUNITY`.
    #[serde(default)]
    pub cloud: Option<String>,
    /// Data center the pod runs in.
    #[serde(default)]
    pub data_center_id: Option<String>,
}

impl Pod {
    /// An env value of the pod.
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env.as_ref().and_then(|e| e.get(name))
    }

    /// `createdAt` parsed, if it parses.
    pub fn created(&self) -> Option<jiff::Timestamp> {
        self.created_at.as_deref().and_then(|s| s.parse().ok())
    }
}

/// `Pod.gpu`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct PodGpu {
    /// GPU type id.
    #[serde(default)]
    pub id: Option<String>,
    /// Count.
    #[serde(default)]
    pub count: Option<u32>,
}

/// `Pod.runtime` (only ports are read).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Runtime {
    /// Port mappings.
    #[serde(default)]
    pub ports: Option<Vec<RuntimePort>>,
}

/// One `runtime.ports[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct RuntimePort {
    /// Container port.
    #[serde(default)]
    pub private: Option<u16>,
    /// Public port.
    #[serde(default)]
    pub public: Option<u16>,
    /// Public IP.
    #[serde(default)]
    pub ip: Option<String>,
}

/// `GET /v2/pods`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodList {
    /// Every pod of the account.
    #[serde(default)]
    pub pods: Vec<Pod>,
}

/// `POST /v2/pods` body. Only fields the v2 schema has: extra fields are a 422.
#[derive(Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatePod {
    /// Deterministic name.
    pub name: String,
    /// Image.
    pub image: String,
    /// GPU type and count.
    pub gpu: GpuRequest,
    /// `SECURE` or `COMMUNITY`.
    pub cloud: &'static str,
    /// Allowed data centers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub data_center_ids: Vec<String>,
    /// The command line, shell-quoted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    /// Container disk in GB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<u32>,
    /// Exposed ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Volume: `{persistent:{size,path}}` or `{network:[{volumeId,path}]}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<serde_json::Value>,
    /// Environment (secret values possible).
    pub env: BTreeMap<String, String>,
}

impl fmt::Debug for CreatePod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatePod")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("gpu", &self.gpu)
            .field("cloud", &self.cloud)
            .field("data_center_ids", &self.data_center_ids)
            .field("disk", &self.disk)
            .field("ports", &self.ports)
            .field("mounts", &self.mounts)
            .field("env_names", &self.env.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// `CreatePod.gpu`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GpuRequest {
    /// GPU type id.
    pub id: String,
    /// Count.
    pub count: u32,
}

/// `GET /v2/catalog/gpus`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct GpuCatalog {
    /// GPU types.
    #[serde(default)]
    pub gpus: Vec<GpuEntry>,
}

/// One catalog GPU type.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct GpuEntry {
    /// GPU type id.
    pub id: String,
    /// Per-GPU-hour prices.
    #[serde(default)]
    pub price: Option<GpuPrice>,
}

/// `price` of a catalog entry, USD per GPU-hour.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct GpuPrice {
    /// Secure Cloud.
    #[serde(default)]
    pub secure: Option<f64>,
    /// Community Cloud.
    #[serde(default)]
    pub community: Option<f64>,
}

/// An `application/problem+json` error body.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Problem {
    /// Short title.
    #[serde(default)]
    pub title: Option<String>,
    /// HTTP status.
    #[serde(default)]
    pub status: Option<u16>,
    /// Human detail (the only capacity signal).
    #[serde(default)]
    pub detail: Option<String>,
    /// Validation errors.
    #[serde(default)]
    pub errors: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_parses_the_recorded_shape_and_debug_hides_env_values() {
        let raw = r#"{"id":"abc","name":"runctl-x-1234abcd-a1","status":"RUNNING","runtime":null,
            "env":{"RUNCTL_OWNER":"uid","TOKEN":"s3cret"},"cost":2.69,"createdAt":"2026-08-20T10:00:00Z",
            "gpu":{"id":"NVIDIA H100 80GB HBM3","count":1},"ssh":{"proxy":null,"direct":null},
            "actions":["stop","restart","terminate"],"globalNetworking":{"enabled":false}}"#;
        let pod: Pod = serde_json::from_str(raw).expect("pod");
        assert_eq!(pod.env_value("RUNCTL_OWNER"), Some("uid"));
        assert!(pod.runtime.is_none());
        assert!(pod.created().is_some());
        let dbg = format!("{pod:?}");
        assert!(!dbg.contains("s3cret") && dbg.contains("TOKEN"), "{dbg}");
    }

    #[test]
    fn create_body_skips_empty_fields_and_debug_hides_env() {
        let body = CreatePod {
            name: "n".into(),
            image: "i".into(),
            gpu: GpuRequest {
                id: "g".into(),
                count: 2,
            },
            cloud: "SECURE",
            data_center_ids: vec![],
            args: None,
            disk: None,
            ports: vec![],
            mounts: None,
            env: BTreeMap::from([("K".to_string(), "hidden-value".to_string())]),
        };
        let v = serde_json::to_value(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"name":"n","image":"i","gpu":{"id":"g","count":2},"cloud":"SECURE","env":{"K":"hidden-value"}})
        );
        assert!(!format!("{body:?}").contains("hidden-value"));
    }
}
