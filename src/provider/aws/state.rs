//! Pure mapping from an EC2 instance state and state reason to runctl's normalized
//! [`ResourceState`] and reason (reference section 4).

use crate::provider::{ResourceState, reasons};

/// EC2 state reason: spot capacity reclaimed, instance terminated.
pub const SPOT_TERMINATION: &str = "Server.SpotInstanceTermination";
/// EC2 state reason: spot capacity reclaimed, instance stopped.
pub const SPOT_SHUTDOWN: &str = "Server.SpotInstanceShutdown";
/// EC2 state reason: EC2 ended the instance for lack of capacity.
pub const INSUFFICIENT_CAPACITY: &str = "Server.InsufficientInstanceCapacity";
/// EC2 state reason: EC2 failed the instance.
pub const SERVER_INTERNAL_ERROR: &str = "Server.InternalError";
/// EC2 state reason: terminated through the API or console.
pub const USER_INITIATED_SHUTDOWN: &str = "Client.UserInitiatedShutdown";
/// EC2 state reason: the instance powered itself off (runctl's UserData does so when the
/// workload ends) and InstanceInitiatedShutdownBehavior=terminate ended it.
pub const INSTANCE_INITIATED_SHUTDOWN: &str = "Client.InstanceInitiatedShutdown";
/// EC2 state reason: terminated (e.g. by an Auto Scaling or a console action).
pub const INSTANCE_TERMINATED: &str = "Client.InstanceTerminated";

/// Normalized state and reason of an instance from its state name (`pending`, `running`, …)
/// and its `StateReason.Code` (empty when EC2 gives none).
pub fn map_state(state_name: &str, reason_code: Option<&str>) -> (ResourceState, &'static str) {
    let reason_code = reason_code.filter(|c| !c.is_empty());
    match state_name {
        "pending" => (ResourceState::Starting, reasons::PROVISIONING),
        "running" => (ResourceState::Running, reasons::RUNNING),
        "shutting-down" => (ResourceState::Terminating, reasons::TERMINATING),
        "stopping" | "stopped" if reason_code == Some(SPOT_SHUTDOWN) => {
            (ResourceState::Error, reasons::SPOT_INTERRUPTED)
        }
        "stopping" => (ResourceState::Stopping, reasons::STOPPING),
        "stopped" => (ResourceState::Stopped, reasons::STOPPED),
        "terminated" => map_terminated(reason_code),
        _ => (ResourceState::Unknown, reasons::UNRECOGNIZED),
    }
}

/// A terminated instance, told apart by its state reason.
fn map_terminated(reason_code: Option<&str>) -> (ResourceState, &'static str) {
    match reason_code {
        None | Some(USER_INITIATED_SHUTDOWN) | Some(INSTANCE_TERMINATED) => {
            (ResourceState::Terminated, reasons::TERMINATED)
        }
        Some(INSTANCE_INITIATED_SHUTDOWN) => (ResourceState::Terminated, reasons::COMPLETED),
        Some(SPOT_TERMINATION) | Some(SPOT_SHUTDOWN) => {
            (ResourceState::Error, reasons::SPOT_INTERRUPTED)
        }
        Some(INSUFFICIENT_CAPACITY) => (ResourceState::Error, reasons::CAPACITY_LOST),
        Some(_) => (ResourceState::Error, reasons::PROVIDER_FAILURE),
    }
}

/// State name from the numeric state code (`code & 0xFF`), for answers that carry only a code.
pub fn state_name_from_code(code: i32) -> Option<&'static str> {
    match code & 0xFF {
        0 => Some("pending"),
        16 => Some("running"),
        32 => Some("shutting-down"),
        48 => Some("terminated"),
        64 => Some("stopping"),
        80 => Some("stopped"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResourceState::*;

    #[test]
    fn every_ec2_state_maps_as_the_reference_says() {
        let cases: &[(&str, Option<&str>, ResourceState, &str)] = &[
            ("pending", None, Starting, reasons::PROVISIONING),
            ("running", None, Running, reasons::RUNNING),
            ("running", Some(""), Running, reasons::RUNNING),
            (
                "shutting-down",
                Some(USER_INITIATED_SHUTDOWN),
                Terminating,
                reasons::TERMINATING,
            ),
            ("stopping", None, Stopping, reasons::STOPPING),
            (
                "stopping",
                Some("Client.UserInitiatedShutdown"),
                Stopping,
                reasons::STOPPING,
            ),
            (
                "stopped",
                Some("Client.UserInitiatedShutdown"),
                Stopped,
                reasons::STOPPED,
            ),
            (
                "stopped",
                Some(SPOT_SHUTDOWN),
                Error,
                reasons::SPOT_INTERRUPTED,
            ),
            (
                "stopping",
                Some(SPOT_SHUTDOWN),
                Error,
                reasons::SPOT_INTERRUPTED,
            ),
            (
                "terminated",
                Some(USER_INITIATED_SHUTDOWN),
                Terminated,
                reasons::TERMINATED,
            ),
            ("terminated", None, Terminated, reasons::TERMINATED),
            (
                "terminated",
                Some(INSTANCE_TERMINATED),
                Terminated,
                reasons::TERMINATED,
            ),
            (
                "terminated",
                Some(INSTANCE_INITIATED_SHUTDOWN),
                Terminated,
                reasons::COMPLETED,
            ),
            (
                "terminated",
                Some(SPOT_TERMINATION),
                Error,
                reasons::SPOT_INTERRUPTED,
            ),
            (
                "terminated",
                Some(SPOT_SHUTDOWN),
                Error,
                reasons::SPOT_INTERRUPTED,
            ),
            (
                "terminated",
                Some(INSUFFICIENT_CAPACITY),
                Error,
                reasons::CAPACITY_LOST,
            ),
            (
                "terminated",
                Some(SERVER_INTERNAL_ERROR),
                Error,
                reasons::PROVIDER_FAILURE,
            ),
            (
                "terminated",
                Some("Client.InternalError"),
                Error,
                reasons::PROVIDER_FAILURE,
            ),
            (
                "terminated",
                Some("Client.VolumeLimitExceeded"),
                Error,
                reasons::PROVIDER_FAILURE,
            ),
            (
                "terminated",
                Some("Client.InvalidSnapshot.NotFound"),
                Error,
                reasons::PROVIDER_FAILURE,
            ),
            ("hibernating", None, Unknown, reasons::UNRECOGNIZED),
            ("", None, Unknown, reasons::UNRECOGNIZED),
        ];
        for (name, code, state, reason) in cases {
            assert_eq!(map_state(name, *code), (*state, *reason), "{name} {code:?}");
        }
    }

    #[test]
    fn state_codes_use_the_low_byte() {
        assert_eq!(state_name_from_code(0), Some("pending"));
        assert_eq!(state_name_from_code(16), Some("running"));
        assert_eq!(state_name_from_code(32), Some("shutting-down"));
        assert_eq!(state_name_from_code(48), Some("terminated"));
        assert_eq!(state_name_from_code(64), Some("stopping"));
        assert_eq!(state_name_from_code(80), Some("stopped"));
        assert_eq!(state_name_from_code(256 + 16), Some("running"));
        assert_eq!(state_name_from_code(7), None);
    }
}
