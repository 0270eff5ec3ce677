//! Reading an EC2 instance: ownership tags, normalized state, type, address and launch time
//! into a [`Machine`].

use aws_sdk_ec2::types::{Instance, InstanceLifecycleType};
use jiff::Timestamp;

use super::state::{map_state, state_name_from_code};
use crate::provider::identity::{TAG_ATTEMPT, TAG_INSTALLATION, TAG_OWNER_UID};
use crate::provider::{Machine, ResourceState, reasons};

/// A tag value of an instance.
pub fn tag<'a>(instance: &'a Instance, key: &str) -> Option<&'a str> {
    instance
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// True when the instance carries this installation's tag.
pub fn owned_by(instance: &Instance, installation: &str) -> bool {
    tag(instance, TAG_INSTALLATION) == Some(installation)
}

/// The instance's state name (from the name, else from the code).
pub fn state_name(instance: &Instance) -> &str {
    let state = instance.state();
    state
        .and_then(|s| s.name())
        .map(|n| n.as_str())
        .or_else(|| state.and_then(|s| s.code()).and_then(state_name_from_code))
        .unwrap_or("")
}

/// True once the instance is terminated or terminating (not a candidate for adoption).
pub fn is_ending(instance: &Instance) -> bool {
    matches!(state_name(instance), "shutting-down" | "terminated")
}

/// Converts an instance into a [`Machine`] (without a price; the caller adds it).
pub fn to_machine(instance: &Instance) -> Machine {
    let reason_code = instance.state_reason().and_then(|r| r.code());
    let name = state_name(instance);
    let (state, reason) = map_state(name, reason_code);
    let mut m = Machine::new(instance.instance_id().unwrap_or_default(), state, reason);
    m.name = tag(instance, "Name").map(str::to_string);
    m.owner_uid = tag(instance, TAG_OWNER_UID).map(str::to_string);
    m.attempt = tag(instance, TAG_ATTEMPT).and_then(|a| a.parse().ok());
    m.machine_type = instance.instance_type().map(|t| t.as_str().to_string());
    m.public_address = instance.public_ip_address().map(str::to_string);
    m.private_address = instance.private_ip_address().map(str::to_string);
    m.launch_time = instance
        .launch_time()
        .and_then(|t| Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok());
    m.spot = instance.instance_lifecycle() == Some(&InstanceLifecycleType::Spot);
    m.message = message(
        name,
        instance.state_reason().and_then(|r| r.message()),
        state,
        reason,
    );
    m
}

/// Human-readable detail: the raw EC2 state, and the state reason when it says more.
fn message(
    state_name: &str,
    reason_message: Option<&str>,
    state: ResourceState,
    reason: &str,
) -> Option<String> {
    let raw = if state_name.is_empty() {
        "no state"
    } else {
        state_name
    };
    let mut s = format!("EC2 instance {raw}");
    if let Some(r) = reason_message.filter(|r| !r.is_empty()) {
        s.push_str(": ");
        s.push_str(r);
    }
    if state == ResourceState::Terminated && reason == reasons::COMPLETED {
        s.push_str(" (the workload ended and the instance powered itself off; the exit code is reported by runctl's reporting wrapper, not EC2)");
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::{InstanceState, InstanceStateName, StateReason, Tag};

    use super::*;

    fn instance(state: InstanceStateName, reason: Option<&str>) -> Instance {
        let mut b = Instance::builder()
            .instance_id("i-1")
            .state(InstanceState::builder().name(state).code(16).build())
            .tags(Tag::builder().key(TAG_OWNER_UID).value("uid-1").build())
            .tags(Tag::builder().key(TAG_ATTEMPT).value("3").build())
            .tags(Tag::builder().key(TAG_INSTALLATION).value("prod").build())
            .instance_lifecycle(InstanceLifecycleType::Spot)
            .public_ip_address("1.2.3.4");
        if let Some(r) = reason {
            b = b.state_reason(
                StateReason::builder()
                    .code(r)
                    .message(format!("{r}: detail"))
                    .build(),
            );
        }
        b.build()
    }

    #[test]
    fn ownership_state_and_details() {
        let m = to_machine(&instance(InstanceStateName::Running, None));
        assert_eq!(m.id, "i-1");
        assert_eq!(
            (m.state, m.reason),
            (ResourceState::Running, reasons::RUNNING)
        );
        assert_eq!(m.owner_uid.as_deref(), Some("uid-1"));
        assert_eq!(m.attempt, Some(3));
        assert!(m.spot);
        assert_eq!(m.public_address.as_deref(), Some("1.2.3.4"));
        assert!(owned_by(
            &instance(InstanceStateName::Running, None),
            "prod"
        ));
        assert!(!owned_by(
            &instance(InstanceStateName::Running, None),
            "other"
        ));
    }

    #[test]
    fn spot_termination_reads_the_state_reason() {
        let i = instance(
            InstanceStateName::Terminated,
            Some("Server.SpotInstanceTermination"),
        );
        let m = to_machine(&i);
        assert_eq!(
            (m.state, m.reason),
            (ResourceState::Error, reasons::SPOT_INTERRUPTED)
        );
        assert!(is_ending(&i));
        assert!(
            m.message
                .is_some_and(|s| s.contains("Server.SpotInstanceTermination"))
        );
    }

    #[test]
    fn state_code_is_used_when_the_name_is_missing() {
        let i = Instance::builder()
            .instance_id("i-2")
            .state(InstanceState::builder().code(80).build())
            .build();
        assert_eq!(to_machine(&i).state, ResourceState::Stopped);
    }
}
