//! Machine identity: who owns a machine, and the deterministic token and name that make
//! creation idempotent.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Tag: the installation (operator deployment) that owns the machine.
pub const TAG_INSTALLATION: &str = "runctl.dev/installation";
/// Tag: UID of the owning CloudResource.
pub const TAG_OWNER_UID: &str = "runctl.dev/owner-uid";
/// Tag: `namespace/name` of the owning CloudResource.
pub const TAG_OWNER: &str = "runctl.dev/owner";
/// Tag: create attempt.
pub const TAG_ATTEMPT: &str = "runctl.dev/attempt";
/// Env marker put on RunPod pods (which have no tags).
pub const ENV_OWNER: &str = "RUNCTL_OWNER";
/// Env marker with the installation id.
pub const ENV_INSTALLATION: &str = "RUNCTL_INSTALLATION";
/// Prefix of every deterministic machine name.
pub const NAME_PREFIX: &str = "runctl";

/// Everything that identifies one create attempt of one CloudResource.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceKey {
    /// This runctl installation's id (from configuration).
    pub installation: String,
    /// Namespace of the CloudResource.
    pub namespace: String,
    /// Name of the CloudResource.
    pub name: String,
    /// UID of the CloudResource.
    pub uid: String,
    /// Create attempt (starts at 1).
    pub attempt: u32,
}

impl ResourceKey {
    /// The idempotency token: 40 hex characters of SHA-256 over installation, UID and attempt,
    /// prefixed `rc-` (fits EC2's 64-character ClientToken).
    pub fn token(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.installation.as_bytes());
        h.update([0]);
        h.update(self.uid.as_bytes());
        h.update([0]);
        h.update(self.attempt.to_le_bytes());
        format!("rc-{}", &hex::encode(h.finalize())[..40])
    }

    /// Deterministic machine name for providers without tokens:
    /// `runctl-<name, at most 30 chars>-<first 8 of uid>-a<attempt>`. Unique per object and
    /// attempt, so names that outlive termination (Lyceum) are never reused.
    pub fn machine_name(&self) -> String {
        let safe: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(30)
            .collect();
        let uid: String = self
            .uid
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(8)
            .collect();
        format!(
            "{NAME_PREFIX}-{}-{uid}-a{}",
            safe.trim_end_matches('-'),
            self.attempt
        )
    }

    /// Ownership tags put on the machine at create time.
    pub fn tags(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TAG_INSTALLATION.to_string(), self.installation.clone()),
            (TAG_OWNER_UID.to_string(), self.uid.clone()),
            (
                TAG_OWNER.to_string(),
                format!("{}/{}", self.namespace, self.name),
            ),
            (TAG_ATTEMPT.to_string(), self.attempt.to_string()),
        ])
    }

    /// True when `name` is this key's deterministic name.
    pub fn owns_name(&self, name: &str) -> bool {
        name == self.machine_name()
    }
}

/// Parses the attempt out of a deterministic machine name (`…-a<N>`).
pub fn attempt_from_name(name: &str) -> Option<u32> {
    name.rsplit_once("-a").and_then(|(_, n)| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(attempt: u32) -> ResourceKey {
        ResourceKey {
            installation: "prod".into(),
            namespace: "ml".into(),
            name: "Llama_Finetune".into(),
            uid: "6f1c2a9e-1111-2222-3333-444455556666".into(),
            attempt,
        }
    }

    #[test]
    fn token_is_deterministic_and_fits_ec2() {
        assert_eq!(key(1).token(), key(1).token());
        assert_ne!(key(1).token(), key(2).token());
        assert!(key(1).token().len() <= 64);
        assert!(key(1).token().is_ascii());
    }

    #[test]
    fn machine_name_is_deterministic_and_parseable() {
        let name = key(3).machine_name();
        assert_eq!(name, "runctl-llama-finetune-6f1c2a9e-a3");
        assert_eq!(attempt_from_name(&name), Some(3));
        assert!(key(3).owns_name(&name));
        assert!(!key(4).owns_name(&name));
    }

    #[test]
    fn tags_carry_ownership() {
        let tags = key(1).tags();
        assert_eq!(tags[TAG_OWNER_UID], "6f1c2a9e-1111-2222-3333-444455556666");
        assert_eq!(tags[TAG_OWNER], "ml/Llama_Finetune");
        assert_eq!(tags[TAG_INSTALLATION], "prod");
    }
}
