//! From Lyceum's VM and run records to runctl [`Machine`]s (pure): ids, states, ownership,
//! addresses, launch time, billed cost and exit code.

use super::api::{self, RunRecord, VmRecord};
use super::ids::{MachineId, ownership};
use super::state::{VmFacts, exit_code, run_state, vm_state};
use crate::provider::{Machine, ResourceKey};

/// A VM as a machine; `deleted_by_us` when this process asked Lyceum to delete it.
pub fn from_vm(vm: &VmRecord, deleted_by_us: bool, price_per_hour: Option<f64>) -> Machine {
    let spot = vm
        .instance_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("spot"));
    let address = vm.ip_address.clone().filter(|a| !a.trim().is_empty());
    let (state, reason) = vm_state(VmFacts {
        status: &vm.status,
        spot,
        has_address: address.is_some(),
        deleted_by_us,
    });
    let mut m = Machine::new(MachineId::vm(&vm.vm_id).to_string(), state, reason);
    m.name = vm.label().map(str::to_string);
    if let Some(o) = ownership(m.name.as_deref(), None) {
        m.owner_uid = o.owner_uid;
        m.attempt = o.attempt;
    }
    let ready_without_address = vm.status.eq_ignore_ascii_case("ready") && address.is_none();
    m.message = Some(if ready_without_address {
        "Lyceum VM status: ready (no address yet)".to_string()
    } else {
        format!("Lyceum VM status: {}", vm.status)
    });
    m.machine_type = vm.hardware_profile.as_ref().map(|p| match vm.gpu_count {
        Some(n) if n > 1 => format!("{p} x{n}"),
        _ => p.clone(),
    });
    m.public_address = address;
    m.launch_time = vm.created_at.as_deref().and_then(api::timestamp);
    m.price_per_hour = price_per_hour;
    m.billed = vm.billed.as_ref().and_then(|b| api::number(b).ok());
    m.spot = spot;
    m
}

/// A run as a machine; `aborted_by_us` when this process aborted it.
pub fn from_run(run: &RunRecord, aborted_by_us: bool, price_per_hour: Option<f64>) -> Machine {
    let (state, reason) = run_state(&run.status, run.return_code, aborted_by_us);
    let mut m = Machine::new(MachineId::run(&run.execution_id).to_string(), state, reason);
    m.name = run.run_name.clone().filter(|n| !n.is_empty());
    if let Some(o) = ownership(m.name.as_deref(), run.metadata.as_ref()) {
        m.owner_uid = o.owner_uid;
        m.attempt = o.attempt;
    }
    let errors = run
        .system_errors
        .as_ref()
        .filter(|e| !e.is_null() && e.as_array().is_none_or(|a| !a.is_empty()))
        .map(|e| format!("; system errors: {e}"))
        .unwrap_or_default();
    let code = run
        .return_code
        .map(|c| format!(" (return code {c})"))
        .unwrap_or_default();
    m.message = Some(format!("Lyceum run status: {}{code}{errors}", run.status));
    m.machine_type = run.execution_type.clone();
    m.launch_time = run
        .job_start
        .as_deref()
        .or(run.created_at.as_deref())
        .and_then(api::timestamp);
    m.price_per_hour = price_per_hour;
    m.billed = run.billed.as_ref().and_then(|b| api::number(b).ok());
    m.exit_code = exit_code(run.return_code);
    m
}

/// True when `m` carries `key`'s deterministic name and no owner that contradicts it.
pub fn belongs_to(m: &Machine, key: &ResourceKey) -> bool {
    m.name.as_deref() == Some(key.machine_name().as_str())
        && m.owner_uid.as_deref().is_none_or(|u| u == key.uid)
}

/// Fills the owner of a machine found under `key`'s name (VM names hold only part of the UID).
pub fn claim(mut m: Machine, key: &ResourceKey) -> Machine {
    if belongs_to(&m, key) {
        m.owner_uid.get_or_insert_with(|| key.uid.clone());
        m.attempt.get_or_insert(key.attempt);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{ResourceState, reasons};
    use serde_json::json;

    fn key() -> ResourceKey {
        ResourceKey {
            installation: "prod".into(),
            namespace: "ml".into(),
            name: "train".into(),
            uid: "6f1c2a9e-1111".into(),
            attempt: 2,
        }
    }

    #[test]
    fn vm_record_to_machine() {
        let vm: VmRecord = serde_json::from_value(json!({
            "vm_id": "v1", "display_name": key().machine_name(), "status": "ready", "instance_type": "spot",
            "ip_address": "203.0.113.9:22022", "hardware_profile": "h100", "gpu_count": 2, "billed": "1.25",
            "created_at": "2026-11-23T10:00:00"
        }))
        .expect("vm");
        let m = claim(from_vm(&vm, false, Some(4.0)), &key());
        assert_eq!(m.id, "vm:v1");
        assert_eq!(
            (m.state, m.reason),
            (ResourceState::Running, reasons::RUNNING)
        );
        assert_eq!(m.public_address.as_deref(), Some("203.0.113.9:22022"));
        assert_eq!(m.machine_type.as_deref(), Some("h100 x2"));
        assert_eq!(
            (m.billed, m.price_per_hour, m.spot),
            (Some(1.25), Some(4.0), true)
        );
        assert_eq!(
            (m.owner_uid.as_deref(), m.attempt),
            (Some("6f1c2a9e-1111"), Some(2))
        );
        assert!(m.launch_time.is_some());
    }

    #[test]
    fn ready_vm_without_address_is_still_booting() {
        let vm = VmRecord {
            vm_id: "v".into(),
            status: "ready".into(),
            ..VmRecord::default()
        };
        let m = from_vm(&vm, false, None);
        assert_eq!((m.state, m.public_address), (ResourceState::Starting, None));
        assert!(
            m.message
                .as_deref()
                .is_some_and(|s| s.contains("no address"))
        );
    }

    #[test]
    fn run_record_to_machine() {
        let run: RunRecord = serde_json::from_value(json!({
            "execution_id": "e1", "run_name": key().machine_name(), "status": "completed", "return_code": 3,
            "execution_type": "gpu.a100", "billed": 0.5, "metadata": {"runctl.dev/owner-uid": "6f1c2a9e-1111"}
        }))
        .expect("run");
        let m = from_run(&run, false, None);
        assert_eq!(m.id, "run:e1");
        assert_eq!(
            (m.state, m.reason, m.exit_code),
            (ResourceState::Error, reasons::WORKLOAD_FAILED, Some(3))
        );
        assert_eq!(m.owner_uid.as_deref(), Some("6f1c2a9e-1111"));
        assert!(belongs_to(&m, &key()));
        let mut other = key();
        other.uid = "6f1c2a9e-9999".into();
        assert!(
            !belongs_to(&m, &other),
            "metadata owner wins over a name collision"
        );
    }
}
