//! Pure mapping from RunPod REST v2 pod status to runctl's normalized state and reason
//! (reference section 4).

use crate::provider::{ResourceState, reasons};

/// The normalized state of a listed pod. `deleted_by_us`: runctl sent DELETE for this id.
pub fn map_status(
    status: &str,
    runtime_present: bool,
    deleted_by_us: bool,
) -> (ResourceState, &'static str) {
    if deleted_by_us && status != "TERMINATED" {
        return (ResourceState::Terminating, reasons::TERMINATING);
    }
    match status {
        "PROVISIONING" => (ResourceState::Starting, reasons::PROVISIONING),
        "STARTING" => (ResourceState::Starting, reasons::BOOTING),
        // RunPod reports RUNNING right after create while `runtime` is still null.
        "RUNNING" if !runtime_present => (ResourceState::Starting, reasons::BOOTING),
        "RUNNING" => (ResourceState::Running, reasons::RUNNING),
        // Stopped, or the container exited; RunPod reports no exit code. Storage still bills.
        "EXITED" => (ResourceState::Stopped, reasons::STOPPED),
        "ERROR" => (ResourceState::Error, reasons::WORKLOAD_FAILED),
        "TERMINATED" => (ResourceState::Terminated, reasons::TERMINATED),
        _ => (ResourceState::Unknown, reasons::UNRECOGNIZED),
    }
}

/// The normalized state of a pod that 404s (or left the list).
pub fn map_missing(deleted_by_us: bool) -> (ResourceState, &'static str) {
    if deleted_by_us {
        (ResourceState::Terminated, reasons::TERMINATED)
    } else {
        (ResourceState::Error, reasons::DISAPPEARED)
    }
}

/// A human message for a pod status.
pub fn status_message(status: &str, runtime_present: bool) -> String {
    match status {
        "RUNNING" if !runtime_present => "RunPod status RUNNING; the container runtime is not up yet".into(),
        "EXITED" => "RunPod status EXITED: the pod was stopped or its container exited (RunPod reports no exit code)"
            .into(),
        "ERROR" => "RunPod status ERROR: the container failed".into(),
        other => format!("RunPod status {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResourceState::*;

    #[test]
    fn every_v2_status_maps() {
        let cases = [
            (
                "PROVISIONING",
                false,
                false,
                Starting,
                reasons::PROVISIONING,
            ),
            ("STARTING", false, false, Starting, reasons::BOOTING),
            ("RUNNING", false, false, Starting, reasons::BOOTING),
            ("RUNNING", true, false, Running, reasons::RUNNING),
            ("EXITED", false, false, Stopped, reasons::STOPPED),
            ("ERROR", false, false, Error, reasons::WORKLOAD_FAILED),
            ("TERMINATED", false, false, Terminated, reasons::TERMINATED),
            ("PAUSED", false, false, Unknown, reasons::UNRECOGNIZED),
            ("", false, false, Unknown, reasons::UNRECOGNIZED),
            // DELETE accepted, still listed: Terminating whatever the status says.
            ("RUNNING", true, true, Terminating, reasons::TERMINATING),
            ("EXITED", false, true, Terminating, reasons::TERMINATING),
            ("TERMINATED", false, true, Terminated, reasons::TERMINATED),
        ];
        for (status, runtime, ours, state, reason) in cases {
            assert_eq!(
                map_status(status, runtime, ours),
                (state, reason),
                "{status} runtime={runtime} ours={ours}"
            );
        }
    }

    #[test]
    fn missing_pods() {
        assert_eq!(map_missing(true), (Terminated, reasons::TERMINATED));
        assert_eq!(map_missing(false), (Error, reasons::DISAPPEARED));
    }

    #[test]
    fn messages_explain_the_lag_and_the_exit() {
        assert!(status_message("RUNNING", false).contains("not up yet"));
        assert!(status_message("EXITED", false).contains("no exit code"));
        assert_eq!(status_message("STARTING", false), "RunPod status STARTING");
    }
}
