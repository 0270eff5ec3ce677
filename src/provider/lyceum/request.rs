//! From a [`MachineSpec`] to a Lyceum create request (pure): which kind of compute, the checks
//! runctl makes before calling, the run timeout, the `K=V` environment and ownership markers.

use std::collections::BTreeMap;

use super::api::{CreateVmRequest, InstanceSpecs, StartRunRequest};
use super::ids::Kind;
use crate::crd::cloud_resource::LyceumMode;
use crate::provider::identity::{ENV_INSTALLATION, ENV_OWNER, NAME_PREFIX};
use crate::provider::{MachineSpec, ProviderError, ResourceKey};

/// GPU counts Lyceum accepts (0 would silently become 1 and bill).
pub const GPU_COUNTS: [u32; 4] = [1, 2, 4, 8];

/// A create request for one kind of compute.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Start a container run.
    Run(StartRunRequest),
    /// Create a VM.
    Vm(CreateVmRequest),
}

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidSpec {
        message: message.into(),
    }
}

/// Run with a workload, VM without, unless `lyceum.mode` says otherwise.
pub fn mode(spec: &MachineSpec) -> Result<Kind, ProviderError> {
    match (spec.lyceum.mode, spec.workload.is_some()) {
        (Some(LyceumMode::Vm), true) => Err(invalid(
            "Lyceum VMs take no start-up script: a CloudResource with a workload runs as a Lyceum container run (lyceum.mode: Run)",
        )),
        (Some(LyceumMode::Run), false) => Err(invalid(
            "a Lyceum run (lyceum.mode: Run) needs spec.workload with an image",
        )),
        (Some(LyceumMode::Run), true) | (None, true) => Ok(Kind::Run),
        (Some(LyceumMode::Vm), false) | (None, false) => Ok(Kind::Vm),
    }
}

/// The VM hardware profile of a GPU type: `a100`, `h100`, `cpu` (a `gpu.` prefix is dropped).
pub fn profile(gpu_type: &str) -> String {
    gpu_type
        .trim()
        .to_ascii_lowercase()
        .trim_start_matches("gpu.")
        .to_string()
}

/// The run execution type of a profile: `cpu` or `gpu.<profile>`.
pub fn execution_type(profile: &str) -> String {
    if profile == "cpu" {
        "cpu".into()
    } else {
        format!("gpu.{profile}")
    }
}

/// What bounds a Lyceum machine when no operator is left, as the operator configures it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Run timeout when the spec sets neither `lyceum.timeoutSeconds` nor `maxLifetimeSeconds`.
    pub default_run_timeout: u32,
    /// Refuse VMs without `maxLifetimeSeconds` (nothing on Lyceum's side can end a VM).
    pub require_vm_max_lifetime: bool,
}

/// Run timeout in seconds, the provider-side bound of a run: the shorter of
/// `lyceum.timeoutSeconds` and `maxLifetimeSeconds` when both are set (Lyceum ends the run no
/// later than runctl would), else whichever is set, else the operator's default (Lyceum's own
/// default of 60 s would end every run after a minute).
pub fn run_timeout(spec: &MachineSpec, default_seconds: u32) -> u64 {
    let lifetime = spec
        .max_lifetime_seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0);
    let explicit = spec.lyceum.timeout_seconds.map(u64::from);
    match (explicit, lifetime) {
        (Some(t), Some(l)) => t.min(l),
        (Some(t), None) => t,
        (None, Some(l)) => l,
        (None, None) => u64::from(default_seconds),
    }
}

/// The refusal of a VM without a lifetime limit when the operator requires one.
fn unbounded_vm() -> ProviderError {
    invalid(
        "a Lyceum VM needs spec.maxLifetimeSeconds: Lyceum VMs have no stop, no timeout and no start-up script, so nothing on Lyceum's side ever ends one and only runctl's lifetime limit bounds its spend (the operator setting providers.lyceum.requireVmMaxLifetime: false allows VMs without one)",
    )
}

/// The `K=V\n…` environment. Values never appear in errors; a value holding a newline cannot be
/// expressed in this format and is refused.
pub fn env_lines(env: &BTreeMap<String, String>) -> Result<String, ProviderError> {
    let mut lines = Vec::with_capacity(env.len());
    for (name, value) in env {
        let name_ok = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            return Err(invalid(format!("env name {name:?} is not a C identifier")));
        }
        if value.contains(['\n', '\r']) {
            return Err(invalid(format!(
                "the value of env {name} holds a line break, which Lyceum's K=V-per-line environment cannot carry"
            )));
        }
        lines.push(format!("{name}={value}"));
    }
    Ok(lines.join("\n"))
}

/// The GPU profile and count, checked before any call.
fn hardware(spec: &MachineSpec) -> Result<(String, u32), ProviderError> {
    let gpu_type = spec
        .gpu_type
        .as_deref()
        .filter(|g| !g.trim().is_empty())
        .ok_or_else(|| {
            invalid("provider lyceum needs spec.gpuType, a hardware profile such as a100 or h100")
        })?;
    if !GPU_COUNTS.contains(&spec.gpu_count) {
        return Err(invalid(format!(
            "Lyceum machines take 1, 2, 4 or 8 GPUs, not {}",
            spec.gpu_count
        )));
    }
    Ok((profile(gpu_type), spec.gpu_count))
}

/// The create request for `key` and `spec`.
pub fn plan(key: &ResourceKey, spec: &MachineSpec, bounds: Bounds) -> Result<Plan, ProviderError> {
    let (profile, gpu_count) = hardware(spec)?;
    match mode(spec)? {
        Kind::Vm => {
            if bounds.require_vm_max_lifetime && spec.max_lifetime_seconds.is_none_or(|s| s <= 0) {
                return Err(unbounded_vm());
            }
            let user_public_key = spec
                .lyceum
                .user_public_key
                .clone()
                .filter(|k| !k.trim().is_empty())
                .ok_or_else(|| {
                    invalid(
                        "a Lyceum VM needs spec.lyceum.userPublicKey (Lyceum requires an SSH key)",
                    )
                })?;
            Ok(Plan::Vm(CreateVmRequest {
                user_public_key,
                hardware_profile: profile,
                instance_type: if spec.spot { "spot" } else { "on-demand" }.into(),
                instance_specs: InstanceSpecs { gpu_count },
                display_name: key.machine_name(),
            }))
        }
        Kind::Run => {
            let Some(workload) = &spec.workload else {
                return Err(invalid("a Lyceum run needs spec.workload"));
            };
            if spec.spot {
                return Err(invalid(
                    "Lyceum runs have no spot option; set spot: false or use a VM without a workload",
                ));
            }
            if gpu_count != 1 {
                return Err(invalid(format!(
                    "Lyceum runs take one GPU (execution types gpu.a100, gpu.h100… name no count), not {gpu_count}"
                )));
            }
            let mut env = workload.full_env();
            env.insert(ENV_OWNER.into(), key.uid.clone());
            env.insert(ENV_INSTALLATION.into(), key.installation.clone());
            if workload.reporting.is_some() {
                // runctl reads a run's output from Lyceum's log API: the wrapper ships none.
                env.insert(crate::provider::workload::ENV_SHIP_LOGS.into(), "no".into());
            }
            let mut metadata = spec.tags.clone();
            metadata.extend(key.tags());
            let mut labels = vec![NAME_PREFIX.to_string()];
            labels.extend(spec.tags.iter().map(|(k, v)| format!("{k}={v}")));
            Ok(Plan::Run(StartRunRequest {
                docker_image_ref: workload.image.clone(),
                docker_run_cmd: workload.argv(),
                docker_run_env: env_lines(&env)?,
                execution_type: execution_type(&profile),
                timeout: run_timeout(spec, bounds.default_run_timeout),
                run_name: key.machine_name(),
                labels,
                metadata,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::cloud_resource::LyceumOptions;
    use crate::provider::Workload;
    use crate::provider::identity::TAG_OWNER_UID;

    fn key() -> ResourceKey {
        ResourceKey {
            installation: "prod".into(),
            namespace: "ml".into(),
            name: "train".into(),
            uid: "6f1c2a9e-1111-2222".into(),
            attempt: 1,
        }
    }

    fn run_spec() -> MachineSpec {
        MachineSpec {
            gpu_type: Some("a100".into()),
            gpu_count: 1,
            workload: Some(Workload {
                image: "python:3.12".into(),
                command: vec!["python".into()],
                args: vec!["train.py".into()],
                env: BTreeMap::from([("TOKEN".into(), "s3cr3t".into())]),
                reporting: None,
            }),
            ..MachineSpec::default()
        }
    }

    const BOUNDS: Bounds = Bounds {
        default_run_timeout: 86_400,
        require_vm_max_lifetime: true,
    };

    fn vm_spec() -> MachineSpec {
        MachineSpec {
            gpu_type: Some("h100".into()),
            gpu_count: 2,
            spot: true,
            max_lifetime_seconds: Some(3_600),
            lyceum: LyceumOptions {
                user_public_key: Some("ssh-ed25519 AAAA".into()),
                ..LyceumOptions::default()
            },
            ..MachineSpec::default()
        }
    }

    #[test]
    fn modes() {
        assert_eq!(mode(&run_spec()).ok(), Some(Kind::Run));
        assert_eq!(mode(&vm_spec()).ok(), Some(Kind::Vm));
        let mut s = run_spec();
        s.lyceum.mode = Some(LyceumMode::Vm);
        assert!(mode(&s).expect_err("vm with workload").is_terminal());
        let mut s = vm_spec();
        s.lyceum.mode = Some(LyceumMode::Run);
        assert!(mode(&s).expect_err("run without workload").is_terminal());
    }

    #[test]
    fn run_request() {
        let Plan::Run(r) = plan(&key(), &run_spec(), BOUNDS).expect("plan") else {
            panic!("a run")
        };
        assert_eq!(r.run_name, key().machine_name());
        assert_eq!(r.execution_type, "gpu.a100");
        assert_eq!(r.docker_run_cmd, vec!["python", "train.py"]);
        assert_eq!(r.timeout, 86_400);
        assert_eq!(
            r.docker_run_env,
            "RUNCTL_INSTALLATION=prod\nRUNCTL_OWNER=6f1c2a9e-1111-2222\nTOKEN=s3cr3t"
        );
        assert_eq!(r.metadata[TAG_OWNER_UID], "6f1c2a9e-1111-2222");
    }

    #[test]
    fn vm_request() {
        let Plan::Vm(v) = plan(&key(), &vm_spec(), BOUNDS).expect("plan") else {
            panic!("a vm")
        };
        assert_eq!(v.display_name, key().machine_name());
        assert_eq!(
            (
                v.hardware_profile.as_str(),
                v.instance_type.as_str(),
                v.instance_specs.gpu_count
            ),
            ("h100", "spot", 2)
        );
    }

    #[test]
    fn timeouts() {
        let mut s = run_spec();
        assert_eq!(run_timeout(&s, 100), 100);
        s.max_lifetime_seconds = Some(7200);
        assert_eq!(run_timeout(&s, 100), 7200);
        s.lyceum.timeout_seconds = Some(600);
        assert_eq!(run_timeout(&s, 100), 600);
        s.lyceum.timeout_seconds = Some(90_000);
        assert_eq!(run_timeout(&s, 100), 7200, "never past the lifetime");
        s.max_lifetime_seconds = None;
        assert_eq!(run_timeout(&s, 100), 90_000);
        s.lyceum.timeout_seconds = None;
        s.max_lifetime_seconds = Some(0);
        assert_eq!(run_timeout(&s, 100), 100);
    }

    #[test]
    fn vms_need_a_lifetime_unless_the_operator_allows_none() {
        let mut s = vm_spec();
        s.max_lifetime_seconds = None;
        let e = plan(&key(), &s, BOUNDS).expect_err("no lifetime");
        assert!(e.is_terminal());
        assert!(e.message().contains("spec.maxLifetimeSeconds"), "{e}");
        assert!(e.message().contains("requireVmMaxLifetime"), "{e}");
        let allow = Bounds {
            require_vm_max_lifetime: false,
            ..BOUNDS
        };
        assert!(matches!(plan(&key(), &s, allow), Ok(Plan::Vm(_))));
        assert!(
            matches!(plan(&key(), &run_spec(), BOUNDS), Ok(Plan::Run(_))),
            "runs have their timeout"
        );
    }

    #[test]
    fn refused_before_calling() {
        let bad: Vec<(&str, MachineSpec)> = vec![
            (
                "3 gpus",
                MachineSpec {
                    gpu_count: 3,
                    ..vm_spec()
                },
            ),
            (
                "0 gpus",
                MachineSpec {
                    gpu_count: 0,
                    ..vm_spec()
                },
            ),
            (
                "no gpu type",
                MachineSpec {
                    gpu_type: None,
                    ..vm_spec()
                },
            ),
            (
                "vm without key",
                MachineSpec {
                    lyceum: LyceumOptions::default(),
                    ..vm_spec()
                },
            ),
            (
                "spot run",
                MachineSpec {
                    spot: true,
                    ..run_spec()
                },
            ),
            (
                "multi-gpu run",
                MachineSpec {
                    gpu_count: 2,
                    ..run_spec()
                },
            ),
        ];
        for (what, spec) in bad {
            let err = plan(&key(), &spec, BOUNDS).expect_err(what);
            assert!(err.is_terminal(), "{what}: {err}");
        }
    }

    #[test]
    fn env_values_with_line_breaks_are_refused_without_printing_them() {
        let env = BTreeMap::from([("PEM".to_string(), "line1\nsecret-line2".to_string())]);
        let err = env_lines(&env).expect_err("newline");
        assert!(err.message().contains("PEM") && !err.message().contains("secret-line2"));
        assert!(env_lines(&BTreeMap::from([("1X".to_string(), "v".to_string())])).is_err());
    }

    #[test]
    fn profiles_and_execution_types() {
        assert_eq!(profile("gpu.H100"), "h100");
        assert_eq!(execution_type("a100"), "gpu.a100");
        assert_eq!(execution_type("cpu"), "cpu");
    }
}
