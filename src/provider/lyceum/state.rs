//! Pure mapping of Lyceum VM and run statuses to runctl's normalized states (reference,
//! section 4), table-tested for every status the reference lists.

use crate::provider::{ResourceState, reasons};

/// Run statuses after which a run never changes again.
pub const RUN_TERMINAL: [&str; 8] = [
    "completed",
    "failed",
    "failed_user",
    "system_failure",
    "failed_system",
    "cancelled",
    "aborted",
    "timeout",
];

/// VM statuses after which a VM never runs again (Lyceum has no resume, so `stopped` counts).
pub const VM_TERMINAL: [&str; 4] = ["stopped", "terminated", "failed", "error"];

/// True when a run in `status` is over.
pub fn run_is_terminal(status: &str) -> bool {
    RUN_TERMINAL.contains(&status.to_ascii_lowercase().as_str())
}

/// True when a VM in `status` is over.
pub fn vm_is_terminal(status: &str) -> bool {
    VM_TERMINAL.contains(&status.to_ascii_lowercase().as_str())
}

/// What the mapping of a VM needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmFacts<'a> {
    /// Lyceum's status.
    pub status: &'a str,
    /// `instance_type == "spot"`.
    pub spot: bool,
    /// `ip_address` is set.
    pub has_address: bool,
    /// This process asked Lyceum to delete the VM.
    pub deleted_by_us: bool,
}

/// Normalized state and reason of a VM.
///
/// `running` counts as booting (the CLI labels it "VM is starting"), and `ready` without an
/// address too: only `ready` with an address is Running. A `terminated` spot VM that runctl did
/// not delete was reclaimed (Lyceum gives no other marker).
pub fn vm_state(f: VmFacts<'_>) -> (ResourceState, &'static str) {
    let status = f.status.to_ascii_lowercase();
    match status.as_str() {
        "terminated" if f.spot && !f.deleted_by_us => {
            (ResourceState::Error, reasons::SPOT_INTERRUPTED)
        }
        "terminated" => (ResourceState::Terminated, reasons::TERMINATED),
        "failed" | "error" => (ResourceState::Error, reasons::PROVIDER_FAILURE),
        _ if f.deleted_by_us => (ResourceState::Terminating, reasons::TERMINATING),
        "pending" => (ResourceState::Starting, reasons::PROVISIONING),
        "provisioning" | "running" => (ResourceState::Starting, reasons::BOOTING),
        "ready" if f.has_address => (ResourceState::Running, reasons::RUNNING),
        "ready" => (ResourceState::Starting, reasons::BOOTING),
        "stopped" => (ResourceState::Stopped, reasons::STOPPED),
        _ => (ResourceState::Unknown, reasons::UNRECOGNIZED),
    }
}

/// Normalized state and reason of a run with `return_code`; `aborted_by_us` when this process
/// aborted it and Lyceum has not caught up yet.
pub fn run_state(
    status: &str,
    return_code: Option<i64>,
    aborted_by_us: bool,
) -> (ResourceState, &'static str) {
    let status = status.to_ascii_lowercase();
    match status.as_str() {
        "completed" if return_code.is_none_or(|c| c == 0) => {
            (ResourceState::Terminated, reasons::COMPLETED)
        }
        "completed" | "failed" | "failed_user" => (ResourceState::Error, reasons::WORKLOAD_FAILED),
        "system_failure" | "failed_system" => (ResourceState::Error, reasons::PROVIDER_FAILURE),
        "timeout" => (ResourceState::Error, reasons::TIMED_OUT),
        "cancelled" | "aborted" => (ResourceState::Terminated, reasons::TERMINATED),
        _ if aborted_by_us => (ResourceState::Terminating, reasons::TERMINATING),
        "pending" | "queued" => (ResourceState::Starting, reasons::PROVISIONING),
        "starting" => (ResourceState::Starting, reasons::BOOTING),
        "running" => (ResourceState::Running, reasons::RUNNING),
        _ => (ResourceState::Unknown, reasons::UNRECOGNIZED),
    }
}

/// The exit code runctl reports for a run: Lyceum's `return_code` when it fits an `i32`.
pub fn exit_code(return_code: Option<i64>) -> Option<i32> {
    return_code.and_then(|c| i32::try_from(c).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResourceState::*;

    #[test]
    fn vm_statuses() {
        let f = |status, spot, has_address, deleted_by_us| {
            vm_state(VmFacts {
                status,
                spot,
                has_address,
                deleted_by_us,
            })
        };
        let cases = [
            (
                f("pending", false, false, false),
                (Starting, reasons::PROVISIONING),
            ),
            (
                f("provisioning", false, false, false),
                (Starting, reasons::BOOTING),
            ),
            (
                f("running", false, true, false),
                (Starting, reasons::BOOTING),
            ),
            (f("ready", false, true, false), (Running, reasons::RUNNING)),
            (f("READY", false, true, false), (Running, reasons::RUNNING)),
            (
                f("ready", false, false, false),
                (Starting, reasons::BOOTING),
            ),
            (
                f("stopped", false, true, false),
                (Stopped, reasons::STOPPED),
            ),
            (
                f("terminated", false, false, false),
                (Terminated, reasons::TERMINATED),
            ),
            (
                f("terminated", false, false, true),
                (Terminated, reasons::TERMINATED),
            ),
            (
                f("terminated", true, false, false),
                (Error, reasons::SPOT_INTERRUPTED),
            ),
            (
                f("terminated", true, false, true),
                (Terminated, reasons::TERMINATED),
            ),
            (
                f("failed", false, false, false),
                (Error, reasons::PROVIDER_FAILURE),
            ),
            (
                f("error", false, false, true),
                (Error, reasons::PROVIDER_FAILURE),
            ),
            (
                f("ready", false, true, true),
                (Terminating, reasons::TERMINATING),
            ),
            (
                f("stopped", false, false, true),
                (Terminating, reasons::TERMINATING),
            ),
            (
                f("hibernating", false, false, false),
                (Unknown, reasons::UNRECOGNIZED),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn run_statuses() {
        let cases = [
            ("pending", None, false, (Starting, reasons::PROVISIONING)),
            ("queued", None, false, (Starting, reasons::PROVISIONING)),
            ("starting", None, false, (Starting, reasons::BOOTING)),
            ("running", None, false, (Running, reasons::RUNNING)),
            (
                "completed",
                Some(0),
                false,
                (Terminated, reasons::COMPLETED),
            ),
            ("completed", None, false, (Terminated, reasons::COMPLETED)),
            (
                "completed",
                Some(3),
                false,
                (Error, reasons::WORKLOAD_FAILED),
            ),
            ("failed", Some(1), false, (Error, reasons::WORKLOAD_FAILED)),
            (
                "failed_user",
                None,
                false,
                (Error, reasons::WORKLOAD_FAILED),
            ),
            (
                "system_failure",
                None,
                false,
                (Error, reasons::PROVIDER_FAILURE),
            ),
            (
                "failed_system",
                None,
                false,
                (Error, reasons::PROVIDER_FAILURE),
            ),
            ("cancelled", None, false, (Terminated, reasons::TERMINATED)),
            ("aborted", None, true, (Terminated, reasons::TERMINATED)),
            ("timeout", None, false, (Error, reasons::TIMED_OUT)),
            ("running", None, true, (Terminating, reasons::TERMINATING)),
            ("paused", None, false, (Unknown, reasons::UNRECOGNIZED)),
        ];
        for (status, code, ours, want) in cases {
            assert_eq!(
                run_state(status, code, ours),
                want,
                "{status} {code:?} {ours}"
            );
        }
    }

    #[test]
    fn terminal_sets_and_exit_codes() {
        assert!(RUN_TERMINAL.iter().all(|s| run_is_terminal(s)));
        assert!(!run_is_terminal("running"));
        assert!(
            vm_is_terminal("Terminated") && vm_is_terminal("stopped") && !vm_is_terminal("ready")
        );
        assert_eq!(exit_code(Some(137)), Some(137));
        assert_eq!(exit_code(Some(i64::MAX)), None);
    }
}
