//! Machine ids that say which kind of Lyceum compute they name (`run:<execution_id>`,
//! `vm:<vm_id>`), and ownership read back from names and run metadata.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::provider::ProviderError;
use crate::provider::identity::{
    NAME_PREFIX, TAG_ATTEMPT, TAG_INSTALLATION, TAG_OWNER_UID, attempt_from_name,
};

/// Which kind of Lyceum compute backs a machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A container run (`/execution/image/start`).
    Run,
    /// A VM (`/vms/create`).
    Vm,
}

/// A runctl machine id for Lyceum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineId {
    /// Run or VM.
    pub kind: Kind,
    /// Lyceum's own id (`execution_id` or `vm_id`).
    pub raw: String,
}

impl MachineId {
    /// A run's id.
    pub fn run(raw: impl Into<String>) -> Self {
        Self {
            kind: Kind::Run,
            raw: raw.into(),
        }
    }

    /// A VM's id.
    pub fn vm(raw: impl Into<String>) -> Self {
        Self {
            kind: Kind::Vm,
            raw: raw.into(),
        }
    }

    /// Parses `run:<id>` or `vm:<id>`.
    pub fn parse(id: &str) -> Result<Self, ProviderError> {
        let parsed = match id.split_once(':') {
            Some(("run", raw)) if !raw.is_empty() => Some(Self::run(raw)),
            Some(("vm", raw)) if !raw.is_empty() => Some(Self::vm(raw)),
            _ => None,
        };
        parsed.ok_or_else(|| ProviderError::InvalidSpec {
            message: format!(
                "{id:?} is not a Lyceum machine id (expected run:<execution_id> or vm:<vm_id>)"
            ),
        })
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Run => write!(f, "run:{}", self.raw),
            Kind::Vm => write!(f, "vm:{}", self.raw),
        }
    }
}

/// Who a Lyceum machine belongs to, as far as the provider tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Installation, from run metadata (VMs carry none).
    pub installation: Option<String>,
    /// Full owner UID, from run metadata (VMs' names hold only its first 8 characters).
    pub owner_uid: Option<String>,
    /// Attempt, from metadata or the name.
    pub attempt: Option<u32>,
}

/// True when `name` has the shape of runctl's deterministic names (`runctl-…-a<N>`).
pub fn is_runctl_name(name: &str) -> bool {
    name.starts_with(&format!("{NAME_PREFIX}-")) && attempt_from_name(name).is_some()
}

/// Ownership of a machine named `name` with run `metadata` (if any). `None` when the machine is
/// not runctl's: its name lacks runctl's shape and its metadata no owner.
pub fn ownership(
    name: Option<&str>,
    metadata: Option<&BTreeMap<String, Value>>,
) -> Option<Ownership> {
    let meta = |k: &str| {
        metadata
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let owner_uid = meta(TAG_OWNER_UID);
    let named = name.filter(|n| is_runctl_name(n));
    if owner_uid.is_none() && named.is_none() {
        return None;
    }
    let attempt = meta(TAG_ATTEMPT)
        .and_then(|a| a.parse().ok())
        .or_else(|| named.and_then(attempt_from_name));
    Some(Ownership {
        installation: meta(TAG_INSTALLATION),
        owner_uid,
        attempt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        for id in ["run:abc-123", "vm:9f0e"] {
            assert_eq!(MachineId::parse(id).expect("parse").to_string(), id);
        }
        assert_eq!(MachineId::parse("vm:x").expect("vm").kind, Kind::Vm);
        for bad in ["abc", "run:", "pod:1", ""] {
            let err = MachineId::parse(bad).expect_err(bad);
            assert!(err.is_terminal());
        }
    }

    #[test]
    fn ownership_from_metadata_and_names() {
        let meta: BTreeMap<String, Value> = BTreeMap::from([
            (TAG_OWNER_UID.to_string(), json!("6f1c2a9e-1111")),
            (TAG_INSTALLATION.to_string(), json!("prod")),
            (TAG_ATTEMPT.to_string(), json!("2")),
        ]);
        let o = ownership(Some("runctl-x-6f1c2a9e-a2"), Some(&meta)).expect("owned");
        assert_eq!(o.owner_uid.as_deref(), Some("6f1c2a9e-1111"));
        assert_eq!(o.installation.as_deref(), Some("prod"));
        assert_eq!(o.attempt, Some(2));
        let by_name = ownership(Some("runctl-x-6f1c2a9e-a3"), None).expect("named");
        assert_eq!(
            by_name,
            Ownership {
                installation: None,
                owner_uid: None,
                attempt: Some(3)
            }
        );
        assert_eq!(ownership(Some("my-notebook"), None), None);
        assert_eq!(ownership(None, None), None);
        assert_eq!(ownership(Some("runctl-no-attempt"), None), None);
    }
}
