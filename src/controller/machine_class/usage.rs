//! Whether an object may use a MachineClass, and what the class adds to a machine (pure).
//!
//! The order of settings, strongest first: the CloudResource's own fields (`spec.aws`,
//! `spec.runpod`, `spec.lyceum`, `spec.tags`, `spec.credentialsSecretRef`), then the class, then
//! the operator's configuration of the provider (the default class, applied by the provider
//! client itself).

use crate::crd::ProviderKind;
use crate::crd::machine_class::{MachineClass, MachineClassSpec};
use crate::provider::MachineSpec;

/// Why an object may not use the class it names. Each is waited out (re-checked when the class
/// changes), never a create call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClassRefusal {
    /// The operator cannot read MachineClasses (installed to watch one namespace).
    #[error(
        "MachineClasses are not available: this operator watches one namespace (rbac.scope: namespaced) and may not read cluster-scoped objects; remove the machine class or install runctl cluster-wide"
    )]
    Unavailable,
    /// No class of that name exists.
    #[error("MachineClass {0:?} does not exist")]
    NotFound(String),
    /// The class does not list the object's namespace.
    #[error(
        "MachineClass {class:?} may not be used in namespace {namespace:?} (its spec.allowedNamespaces does not list it)"
    )]
    NamespaceNotAllowed {
        /// Class.
        class: String,
        /// The object's namespace.
        namespace: String,
    },
    /// The class is of another provider.
    #[error("MachineClass {class:?} is for provider {class_provider}, not {wanted}")]
    ProviderMismatch {
        /// Class.
        class: String,
        /// The class's provider.
        class_provider: ProviderKind,
        /// The provider the object asks for.
        wanted: ProviderKind,
    },
    /// The object's region is not one of the class's regions.
    #[error("MachineClass {class:?} does not allow region {region:?} (allowed: {allowed})")]
    RegionNotAllowed {
        /// Class.
        class: String,
        /// The region asked for.
        region: String,
        /// The class's regions, comma-separated.
        allowed: String,
    },
    /// The class's controller found its settings or credentials do not work.
    #[error("MachineClass {class:?} is not ready: {message}")]
    NotReady {
        /// Class.
        class: String,
        /// The class's Ready message.
        message: String,
    },
}

impl ClassRefusal {
    /// Static reason for conditions, events and offer rejections.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unavailable => "MachineClassesUnavailable",
            Self::NotFound(_) => "MachineClassNotFound",
            Self::NamespaceNotAllowed { .. } => "MachineClassNotAllowed",
            Self::ProviderMismatch { .. } => "MachineClassProviderMismatch",
            Self::RegionNotAllowed { .. } => "MachineClassRegionNotAllowed",
            Self::NotReady { .. } => "MachineClassNotReady",
        }
    }

    /// Every reason [`reason`](Self::reason) returns.
    pub const REASONS: [&'static str; 6] = [
        "MachineClassesUnavailable",
        "MachineClassNotFound",
        "MachineClassNotAllowed",
        "MachineClassProviderMismatch",
        "MachineClassRegionNotAllowed",
        "MachineClassNotReady",
    ];
}

/// Checks that an object in `namespace` asking for `provider` may use `class` (not its region:
/// see [`check_region`]). A class whose `Ready` condition is False is refused; one not checked
/// yet is usable (the create call is the check).
pub fn check_use(
    class: &MachineClass,
    namespace: &str,
    provider: ProviderKind,
) -> Result<(), ClassRefusal> {
    let name = class.metadata.name.clone().unwrap_or_default();
    if !class.spec.allows_namespace(namespace) {
        return Err(ClassRefusal::NamespaceNotAllowed {
            class: name,
            namespace: namespace.to_string(),
        });
    }
    if class.spec.provider != provider {
        return Err(ClassRefusal::ProviderMismatch {
            class: name,
            class_provider: class.spec.provider,
            wanted: provider,
        });
    }
    if let Some(ready) = class
        .status
        .as_ref()
        .and_then(|s| crate::crd::condition::get(&s.conditions, crate::crd::condition::READY))
        && ready.status == crate::crd::condition::FALSE
        && ready.observed_generation == class.metadata.generation
    {
        return Err(ClassRefusal::NotReady {
            class: name,
            message: ready.message.clone(),
        });
    }
    Ok(())
}

/// Checks `region` against the class's regions (`None`: the provider has no regions).
pub fn check_region(
    name: &str,
    class: &MachineClassSpec,
    region: Option<&str>,
) -> Result<(), ClassRefusal> {
    match (class.allowed_regions(), region) {
        (Some(allowed), Some(r)) if !allowed.iter().any(|a| a == r) => {
            Err(ClassRefusal::RegionNotAllowed {
                class: name.to_string(),
                region: r.to_string(),
                allowed: allowed.join(", "),
            })
        }
        _ => Ok(()),
    }
}

/// The region a machine of the class runs in when the object names none: the class's first.
pub fn default_region(class: &MachineClassSpec) -> Option<String> {
    class.allowed_regions().and_then(|r| r.into_iter().next())
}

/// The credentials Secret `(namespace, name)` to use: a class's (`class`), else the operator's
/// default Secret of `kind` (`providers.<kind>.credentialsSecret`).
pub fn credentials_or_default(
    class: Option<(String, String)>,
    kind: ProviderKind,
    providers: &crate::provider::ProvidersConfig,
) -> Option<(String, String)> {
    class.or_else(|| {
        providers
            .default_credentials(kind)
            .map(|d| (d.namespace.clone(), d.name.clone()))
    })
}

/// Fills what `spec` leaves unset from the class (its settings for `spec.region` on AWS).
pub fn apply(class: &MachineClassSpec, spec: &mut MachineSpec) {
    for (k, v) in &class.tags {
        spec.tags.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if let Some(aws) = &class.aws {
        spec.aws.fill_from_class(aws, spec.region.as_deref());
    }
    if let Some(runpod) = &class.runpod {
        spec.runpod.fill_from_class(runpod);
    }
    if let Some(lyceum) = &class.lyceum {
        spec.lyceum.fill_from_class(lyceum);
    }
    if let Some(kubernetes) = &class.kubernetes {
        spec.kubernetes.fill_from_class(kubernetes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::condition;

    fn class(v: serde_json::Value) -> MachineClass {
        let mut c = MachineClass::new("team-a", serde_json::from_value(v).unwrap());
        c.metadata.generation = Some(1);
        c
    }

    fn aws_class() -> MachineClass {
        class(serde_json::json!({
            "provider": "aws",
            "allowedNamespaces": ["team-a"],
            "tags": {"team": "a", "cost-center": "42"},
            "aws": {
                "regionSettings": {
                    "us-east-1": {"amiId": "ami-east", "subnetId": "subnet-east", "securityGroupIds": ["sg-east"], "keyName": "kp"},
                    "eu-west-1": {"amiId": "ami-west"}
                },
                "iamInstanceProfile": "training", "rootVolumeSizeGb": 500, "rootVolumeType": "gp3"
            }
        }))
    }

    #[test]
    fn namespace_provider_and_readiness_decide_use() {
        let c = aws_class();
        assert_eq!(check_use(&c, "team-a", ProviderKind::Aws), Ok(()));
        assert_eq!(
            check_use(&c, "team-b", ProviderKind::Aws)
                .unwrap_err()
                .reason(),
            "MachineClassNotAllowed"
        );
        let err = check_use(&c, "team-a", ProviderKind::Runpod).unwrap_err();
        assert_eq!(err.reason(), "MachineClassProviderMismatch");
        assert!(err.to_string().contains("is for provider aws, not runpod"));

        let mut not_ready = aws_class();
        let mut status = crate::crd::MachineClassStatus::default();
        condition::set(
            &mut status.conditions,
            condition::NewCondition {
                type_: condition::READY,
                status: condition::FALSE,
                reason: "InvalidSettings",
                message: "AMI ami-east not found in us-east-1".into(),
            },
            Some(1),
            jiff::Timestamp::now(),
        );
        not_ready.status = Some(status);
        let err = check_use(&not_ready, "team-a", ProviderKind::Aws).unwrap_err();
        assert_eq!(err.reason(), "MachineClassNotReady");
        assert!(err.to_string().contains("ami-east not found"));
        // A verdict about an older generation does not hold for the edited class.
        not_ready.metadata.generation = Some(2);
        assert_eq!(check_use(&not_ready, "team-a", ProviderKind::Aws), Ok(()));
    }

    #[test]
    fn regions_default_to_the_region_settings_and_are_enforced() {
        let c = aws_class();
        assert_eq!(default_region(&c.spec).as_deref(), Some("eu-west-1"));
        assert_eq!(check_region("team-a", &c.spec, Some("us-east-1")), Ok(()));
        let err = check_region("team-a", &c.spec, Some("ap-south-1")).unwrap_err();
        assert!(err.to_string().contains("allowed: eu-west-1, us-east-1"));
        let any = class(serde_json::json!({"provider": "sim"}));
        assert_eq!(check_region("x", &any.spec, Some("anywhere")), Ok(()));
        let ordered = class(serde_json::json!({"provider": "sim", "regions": ["b", "a"]}));
        assert_eq!(default_region(&ordered.spec).as_deref(), Some("b"));
    }

    #[test]
    fn apply_fills_what_the_object_leaves_unset() {
        let c = aws_class();
        let mut spec = MachineSpec {
            region: Some("us-east-1".into()),
            ..Default::default()
        };
        spec.tags.insert("team".into(), "own".into());
        spec.aws.root_volume_size_gb = Some(100);
        apply(&c.spec, &mut spec);
        assert_eq!(spec.aws.ami_id.as_deref(), Some("ami-east"));
        assert_eq!(spec.aws.subnet_id.as_deref(), Some("subnet-east"));
        assert_eq!(spec.aws.security_group_ids, ["sg-east"]);
        assert_eq!(spec.aws.key_name.as_deref(), Some("kp"));
        assert_eq!(spec.aws.iam_instance_profile.as_deref(), Some("training"));
        assert_eq!(
            spec.aws.root_volume_size_gb,
            Some(100),
            "the object's own wins"
        );
        assert_eq!(spec.aws.root_volume_type.as_deref(), Some("gp3"));
        assert_eq!(spec.tags["team"], "own");
        assert_eq!(spec.tags["cost-center"], "42");

        let mut west = MachineSpec {
            region: Some("eu-west-1".into()),
            ..Default::default()
        };
        apply(&c.spec, &mut west);
        assert_eq!(west.aws.ami_id.as_deref(), Some("ami-west"));
        assert_eq!(west.aws.subnet_id, None);
    }

    #[test]
    fn apply_runpod_and_lyceum_settings() {
        let rp = class(serde_json::json!({
            "provider": "runpod",
            "runpod": {"cloud": "COMMUNITY", "containerDiskGb": 80, "ports": ["22/tcp"], "networkVolumeId": "vol-team"}
        }));
        let mut spec = MachineSpec::default();
        apply(&rp.spec, &mut spec);
        assert_eq!(spec.runpod.container_disk_gb, Some(80));
        assert_eq!(spec.runpod.ports, ["22/tcp"]);
        assert_eq!(spec.runpod.network_volume_id.as_deref(), Some("vol-team"));
        // An object with its own volume keeps it, without the class's network volume.
        let mut own = MachineSpec::default();
        own.runpod.volume_gb = Some(10);
        apply(&rp.spec, &mut own);
        assert_eq!(
            (own.runpod.volume_gb, own.runpod.network_volume_id),
            (Some(10), None)
        );
        let ly =
            class(serde_json::json!({"provider": "lyceum", "lyceum": {"timeoutSeconds": 7200}}));
        let mut spec = MachineSpec::default();
        apply(&ly.spec, &mut spec);
        assert_eq!(spec.lyceum.timeout_seconds, Some(7200));
    }
}
