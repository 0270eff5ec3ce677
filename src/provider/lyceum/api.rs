//! Lyceum's wire types (`/api/v2/external`), read leniently: every field the reference does not
//! promise is optional, numbers may arrive as JSON numbers or strings, and timestamps with or
//! without an offset.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /vms/create` body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CreateVmRequest {
    /// SSH public key installed for user `lyceum`.
    pub user_public_key: String,
    /// `a100`, `h100`, `cpu`…
    pub hardware_profile: String,
    /// `on-demand` or `spot`.
    pub instance_type: String,
    /// Sizing; only the GPU count is set.
    pub instance_specs: InstanceSpecs,
    /// Deterministic name (runctl's `machine_name()`).
    pub display_name: String,
}

/// `instance_specs` of a VM create.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InstanceSpecs {
    /// GPUs: 1, 2, 4 or 8.
    pub gpu_count: u32,
}

/// `POST /execution/image/start` body. Its Debug output leaves out the environment.
#[derive(Clone, PartialEq, Serialize)]
pub struct StartRunRequest {
    /// Image reference.
    pub docker_image_ref: String,
    /// Command and arguments (the reporting wrapper included).
    pub docker_run_cmd: Vec<String>,
    /// `K=V` lines. Holds secret values.
    pub docker_run_env: String,
    /// `gpu.a100`, `gpu.h100`, `gpu.l40s` or `cpu`.
    pub execution_type: String,
    /// Seconds until Lyceum ends the run with `timeout` (its default is 60).
    pub timeout: u64,
    /// Deterministic name (runctl's `machine_name()`).
    pub run_name: String,
    /// Labels.
    pub labels: Vec<String>,
    /// Ownership metadata (runctl's ownership tags).
    pub metadata: BTreeMap<String, String>,
}

impl std::fmt::Debug for StartRunRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartRunRequest")
            .field("docker_image_ref", &self.docker_image_ref)
            .field("execution_type", &self.execution_type)
            .field("timeout", &self.timeout)
            .field("run_name", &self.run_name)
            .field("docker_run_env", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A VM as `/vms/create`, `/vms/list` and `/vms/{id}/status` report it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct VmRecord {
    /// `vm_id`.
    pub vm_id: String,
    /// `display_name` (the CLI's field).
    #[serde(default)]
    pub display_name: Option<String>,
    /// `name` (older docs' field).
    #[serde(default)]
    pub name: Option<String>,
    /// Raw status.
    #[serde(default)]
    pub status: String,
    /// `on-demand` or `spot`.
    #[serde(default)]
    pub instance_type: Option<String>,
    /// `ip`, `host:port` or null (also while `ready`).
    #[serde(default)]
    pub ip_address: Option<String>,
    /// Hardware profile.
    #[serde(default)]
    pub hardware_profile: Option<String>,
    /// GPU count.
    #[serde(default)]
    pub gpu_count: Option<u32>,
    /// Accrued cost (number or string).
    #[serde(default)]
    pub billed: Option<Value>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
}

impl VmRecord {
    /// The name runctl gave it: `display_name`, else `name`.
    pub fn label(&self) -> Option<&str> {
        self.display_name
            .as_deref()
            .or(self.name.as_deref())
            .filter(|n| !n.is_empty())
    }
}

/// `GET /vms/list`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct VmList {
    /// VMs, terminated ones included when asked for.
    #[serde(default)]
    pub vms: Vec<VmRecord>,
}

/// A run as `/execution/{id}` and `/workloads/list` report it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct RunRecord {
    /// `execution_id`.
    #[serde(alias = "id")]
    pub execution_id: String,
    /// `run_name`.
    #[serde(default, alias = "name")]
    pub run_name: Option<String>,
    /// Raw status.
    #[serde(default)]
    pub status: String,
    /// Execution type.
    #[serde(default)]
    pub execution_type: Option<String>,
    /// Exit code once finished.
    #[serde(default)]
    pub return_code: Option<i64>,
    /// Accrued cost (number or string).
    #[serde(default)]
    pub billed: Option<Value>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Start of the job.
    #[serde(default)]
    pub job_start: Option<String>,
    /// Ownership metadata as sent.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, Value>>,
    /// Provider-side errors.
    #[serde(default)]
    pub system_errors: Option<Value>,
}

/// `GET /workloads/list`: a bare array (tolerating an object wrapper).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RunList {
    /// The documented bare array.
    Bare(Vec<RunRecord>),
    /// `{"workloads": [...]}` or `{"executions": [...]}`.
    Wrapped {
        /// The runs.
        #[serde(alias = "executions")]
        workloads: Vec<RunRecord>,
    },
}

impl RunList {
    /// The runs.
    pub fn into_vec(self) -> Vec<RunRecord> {
        match self {
            Self::Bare(v) | Self::Wrapped { workloads: v } => v,
        }
    }
}

/// `POST /execution/image/start` answer.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct RunStarted {
    /// The run's id.
    pub execution_id: String,
    /// Initial status.
    #[serde(default)]
    pub status: String,
}

/// `GET /pricing`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Pricing {
    /// Price entries.
    #[serde(default)]
    pub prices: Vec<PriceEntry>,
}

/// One `/pricing` entry.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct PriceEntry {
    /// Meter, e.g. `vm_running`.
    #[serde(default)]
    pub meter_slug: String,
    /// Grouping, e.g. `{"hardware_profile": "on-demand.a100.1x"}`.
    #[serde(default)]
    pub group_by: BTreeMap<String, Value>,
    /// Price per hour (a string on the wire).
    #[serde(default)]
    pub unit_price_per_hour: Option<Value>,
}

/// `GET /vms/availability`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Availability {
    /// Variants on offer.
    #[serde(default)]
    pub available_instance_variants: Vec<Variant>,
}

/// One variant of `/vms/availability`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Variant {
    /// Hardware profile.
    #[serde(default)]
    pub hardware_profile: String,
    /// `on-demand` or `spot`.
    #[serde(default)]
    pub instance_type: String,
    /// Price per hour (string or number).
    #[serde(default)]
    pub price_per_hour: Option<Value>,
    /// GPU counts on offer.
    #[serde(default)]
    pub available_gpus_per_instance: Vec<u32>,
}

/// `GET /logs/execution/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Logs {
    /// Lines.
    #[serde(default)]
    pub logs: Vec<LogLine>,
}

/// One log line.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct LogLine {
    /// When.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Text.
    #[serde(default)]
    pub message: String,
    /// Level.
    #[serde(default)]
    pub level: Option<String>,
}

/// A money or count figure sent as a number or a string; `Err` describes what was wrong.
pub fn number(v: &Value) -> Result<f64, String> {
    let n = match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("{n} is not a finite number"))?,
        Value::String(s) => {
            let t = s.trim().trim_start_matches('$').trim();
            t.parse::<f64>()
                .map_err(|_| format!("{s:?} is not a number"))?
        }
        other => return Err(format!("{other} is not a number")),
    };
    if !n.is_finite() || n < 0.0 {
        return Err(format!("{n} is not a non-negative finite number"));
    }
    Ok(n)
}

/// A timestamp in RFC 3339, or without an offset (read as UTC, as Python APIs often send).
pub fn timestamp(s: &str) -> Option<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    let civil: jiff::civil::DateTime = s.trim_end_matches('Z').parse().ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_parse_carefully() {
        let cases = [
            (json!(1.5), Ok(1.5)),
            (json!("2.99"), Ok(2.99)),
            (json!(" $3.10 "), Ok(3.1)),
            (json!("0"), Ok(0.0)),
            (json!("abc"), Err(())),
            (json!("-1"), Err(())),
            (json!("NaN"), Err(())),
            (json!("inf"), Err(())),
            (json!(null), Err(())),
            (json!([1]), Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(number(&input).map_err(|_| ()), want, "{input}");
        }
    }

    #[test]
    fn timestamps_with_and_without_offset() {
        let a = timestamp("2026-11-23T10:00:00Z").expect("rfc3339");
        assert_eq!(timestamp("2026-11-23T10:00:00.000000"), Some(a));
        assert_eq!(timestamp("2026-11-23T11:00:00+01:00"), Some(a));
        assert_eq!(timestamp("yesterday"), None);
    }

    #[test]
    fn run_list_accepts_bare_and_wrapped() {
        let bare: RunList =
            serde_json::from_value(json!([{"execution_id": "e1", "status": "running"}]))
                .expect("bare");
        assert_eq!(bare.into_vec()[0].execution_id, "e1");
        let wrapped: RunList =
            serde_json::from_value(json!({"workloads": [{"id": "e2"}]})).expect("wrapped");
        assert_eq!(wrapped.into_vec()[0].execution_id, "e2");
    }

    #[test]
    fn run_request_debug_hides_env() {
        let r = StartRunRequest {
            docker_image_ref: "img".into(),
            docker_run_cmd: vec![],
            docker_run_env: "TOKEN=s3cr3t".into(),
            execution_type: "gpu.a100".into(),
            timeout: 60,
            run_name: "n".into(),
            labels: vec![],
            metadata: BTreeMap::new(),
        };
        assert!(!format!("{r:?}").contains("s3cr3t"));
    }
}
