//! The Pod of a machine and the Secret that carries its environment (pure). The Pod's name is
//! the key's deterministic machine name, so a repeated create finds the Pod made before; its
//! labels carry runctl's ownership tags, so `list` finds every Pod of the installation.
//!
//! Env values may come from Secrets: they go into a Secret of the Pod's (`<pod>-env`, owned by
//! the Pod, so it goes with it) that the container reads with `envFrom`, never into the Pod
//! spec.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvFromSource, LocalObjectReference, Pod, PodSpec,
    ResourceRequirements, Secret, SecretEnvSource, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::KubernetesConfig;
use crate::crd::cloud_resource::{KubernetesToleration, TolerationOperator};
use crate::provider::identity::{TAG_ATTEMPT, TAG_INSTALLATION, TAG_OWNER, TAG_OWNER_UID};
use crate::provider::{MachineSpec, ProviderError, ResourceKey};

/// The container that runs the workload.
pub const CONTAINER: &str = "workload";
/// Label on every Pod runctl creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "runctl");

/// The machine id of a Pod: `namespace/name`.
pub fn machine_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The namespace and name a machine id names.
pub fn split_id(id: &str) -> Result<(&str, &str), ProviderError> {
    id.split_once('/')
        .ok_or_else(|| ProviderError::InvalidSpec {
            message: format!("kubernetes: machine id {id:?} is not namespace/name"),
        })
}

/// The name of the Secret with a Pod's environment.
pub fn env_secret_name(pod: &str) -> String {
    format!("{pod}-env")
}

/// The label selector of every Pod of `installation`.
pub fn installation_selector(installation: &str) -> String {
    format!("{TAG_INSTALLATION}={installation}")
}

/// The node selector of a machine: the spec's, plus the GPU product label for its `gpuType`.
pub fn node_selector(spec: &MachineSpec, config: &KubernetesConfig) -> BTreeMap<String, String> {
    let mut selector = spec.kubernetes.node_selector.clone();
    if let Some(gpu_type) = &spec.gpu_type {
        selector.insert(config.gpu_product_label.clone(), gpu_type.clone());
    }
    selector
}

/// The core toleration of a runctl toleration.
pub fn toleration(t: &KubernetesToleration) -> Toleration {
    Toleration {
        key: t.key.clone(),
        operator: t.operator.map(|o| match o {
            TolerationOperator::Equal => "Equal".to_string(),
            TolerationOperator::Exists => "Exists".to_string(),
        }),
        value: t.value.clone(),
        effect: t.effect.map(|e| e.as_str().to_string()),
        toleration_seconds: None,
    }
}

/// The Pod of `key` running `spec`'s workload, and its env Secret's data.
pub fn pod(
    key: &ResourceKey,
    spec: &MachineSpec,
    config: &KubernetesConfig,
) -> Result<Pod, ProviderError> {
    let Some(workload) = &spec.workload else {
        return Err(ProviderError::InvalidSpec {
            message: "kubernetes: a machine is a Pod and needs a workload".into(),
        });
    };
    if spec.spot {
        return Err(ProviderError::InvalidSpec {
            message: "kubernetes: the cluster's own GPUs have no spot machines".into(),
        });
    }
    let name = key.machine_name();
    let k = &spec.kubernetes;
    let (requests, limits) = resources(spec, config);
    let container = Container {
        name: CONTAINER.into(),
        image: Some(workload.image.clone()),
        command: (!workload.command.is_empty()).then(|| workload.command.clone()),
        args: (!workload.args.is_empty()).then(|| workload.args.clone()),
        env_from: (!workload.env.is_empty()).then(|| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: env_secret_name(&name),
                    optional: Some(false),
                }),
                ..Default::default()
            }]
        }),
        resources: Some(ResourceRequirements {
            limits: Some(limits),
            requests: Some(requests),
            ..Default::default()
        }),
        volume_mounts: k.shm_size_gi.map(|_| {
            vec![VolumeMount {
                name: SHM.into(),
                mount_path: "/dev/shm".into(),
                ..Default::default()
            }]
        }),
        ..Default::default()
    };
    let pod_spec = PodSpec {
        containers: vec![container],
        volumes: k.shm_size_gi.map(|gi| {
            vec![Volume {
                name: SHM.into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".into()),
                    size_limit: Some(Quantity(format!("{gi}Gi"))),
                }),
                ..Default::default()
            }]
        }),
        image_pull_secrets: (!k.image_pull_secrets.is_empty()).then(|| {
            k.image_pull_secrets
                .iter()
                .map(|n| LocalObjectReference { name: n.clone() })
                .collect()
        }),
        restart_policy: Some("Never".into()),
        node_selector: Some(node_selector(spec, config)).filter(|s| !s.is_empty()),
        tolerations: (!k.tolerations.is_empty())
            .then(|| k.tolerations.iter().map(toleration).collect()),
        priority_class_name: k.priority_class_name.clone(),
        service_account_name: k.service_account_name.clone(),
        // A Pod that needs no API access gets no token.
        automount_service_account_token: Some(k.service_account_name.is_some()),
        enable_service_links: Some(false),
        active_deadline_seconds: spec.max_lifetime_seconds,
        ..Default::default()
    };
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(key.namespace.clone()),
            labels: Some(labels(key)),
            annotations: Some(BTreeMap::from([(
                TAG_OWNER.to_string(),
                format!("{}/{}", key.namespace, key.name),
            )])),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    })
}

/// The volume behind `/dev/shm`.
const SHM: &str = "dshm";

/// The container's requests and limits: the GPUs (requested and limited alike, as extended
/// resources must be), the CPU asked for, and the memory (limited to what is requested).
fn resources(
    spec: &MachineSpec,
    config: &KubernetesConfig,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let k = &spec.kubernetes;
    let gpus = (
        config.gpu_resource.clone(),
        Quantity(spec.gpu_count.max(1).to_string()),
    );
    let mut requests = BTreeMap::from([gpus.clone()]);
    let mut limits = BTreeMap::from([gpus]);
    if let Some(cpu) = &k.cpu {
        requests.insert("cpu".into(), Quantity(cpu.clone()));
    }
    if let Some(memory) = &k.memory {
        requests.insert("memory".into(), Quantity(memory.clone()));
        limits.insert("memory".into(), Quantity(memory.clone()));
    }
    (requests, limits)
}

/// runctl's ownership labels of a Pod.
fn labels(key: &ResourceKey) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (TAG_INSTALLATION.to_string(), key.installation.clone()),
        (TAG_OWNER_UID.to_string(), key.uid.clone()),
        (TAG_ATTEMPT.to_string(), key.attempt.to_string()),
    ])
}

/// The Secret with the environment of `pod` (created), owned by it; `None` without env.
pub fn env_secret(pod: &Pod, spec: &MachineSpec) -> Option<Secret> {
    let env = &spec.workload.as_ref()?.env;
    if env.is_empty() {
        return None;
    }
    let name = pod.metadata.name.clone()?;
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(env_secret_name(&name)),
            namespace: pod.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([(
                MANAGED_BY.0.to_string(),
                MANAGED_BY.1.to_string(),
            )])),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name,
                uid: pod.metadata.uid.clone()?,
                ..Default::default()
            }]),
            ..Default::default()
        },
        data: Some(
            env.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
                .collect(),
        ),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::cloud_resource::{KubernetesOptions, TaintEffect};
    use crate::provider::Workload;

    fn key() -> ResourceKey {
        ResourceKey {
            installation: "prod".into(),
            namespace: "team-a".into(),
            name: "train-a1".into(),
            uid: "0123456789abcdef".into(),
            attempt: 2,
        }
    }

    fn spec() -> MachineSpec {
        MachineSpec {
            gpu_type: Some("NVIDIA-A100-SXM4-80GB".into()),
            gpu_count: 2,
            max_lifetime_seconds: Some(3600),
            workload: Some(Workload {
                image: "pytorch:2".into(),
                command: vec!["python".into()],
                args: vec!["train.py".into()],
                env: BTreeMap::from([("HF_TOKEN".into(), "s3cr3t".into())]),
                reporting: None,
            }),
            kubernetes: KubernetesOptions {
                node_selector: BTreeMap::from([("pool".into(), "gpu".into())]),
                tolerations: vec![KubernetesToleration {
                    key: Some("nvidia.com/gpu".into()),
                    operator: Some(TolerationOperator::Exists),
                    value: None,
                    effect: Some(TaintEffect::NoSchedule),
                }],
                priority_class_name: None,
                service_account_name: None,
                cpu: Some("8".into()),
                memory: Some("64Gi".into()),
                shm_size_gi: Some(16),
                image_pull_secrets: vec!["ghcr-pull".into()],
            },
            ..Default::default()
        }
    }

    #[test]
    fn pod_requests_the_gpus_on_matching_nodes_without_secret_values() {
        let config = KubernetesConfig::default();
        let pod = pod(&key(), &spec(), &config).unwrap();
        assert_eq!(
            pod.metadata.name.as_deref(),
            Some("runctl-train-a1-01234567-a2")
        );
        assert_eq!(pod.metadata.namespace.as_deref(), Some("team-a"));
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[TAG_INSTALLATION], "prod");
        assert_eq!(labels[TAG_ATTEMPT], "2");
        let ps = pod.spec.as_ref().unwrap();
        assert_eq!(ps.restart_policy.as_deref(), Some("Never"));
        assert_eq!(ps.active_deadline_seconds, Some(3600));
        let sel = ps.node_selector.as_ref().unwrap();
        assert_eq!(sel["nvidia.com/gpu.product"], "NVIDIA-A100-SXM4-80GB");
        assert_eq!(sel["pool"], "gpu");
        let t = &ps.tolerations.as_ref().unwrap()[0];
        assert_eq!(
            (t.operator.as_deref(), t.effect.as_deref()),
            (Some("Exists"), Some("NoSchedule"))
        );
        let c = &ps.containers[0];
        let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["nvidia.com/gpu"].0, "2");
        assert_eq!(limits["memory"].0, "64Gi");
        let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(
            (
                requests["cpu"].0.as_str(),
                requests["nvidia.com/gpu"].0.as_str()
            ),
            ("8", "2")
        );
        assert_eq!(c.volume_mounts.as_ref().unwrap()[0].mount_path, "/dev/shm");
        let shm = ps.volumes.as_ref().unwrap()[0].empty_dir.as_ref().unwrap();
        assert_eq!(
            (
                shm.medium.as_deref(),
                shm.size_limit.as_ref().map(|q| q.0.as_str())
            ),
            (Some("Memory"), Some("16Gi"))
        );
        assert_eq!(ps.image_pull_secrets.as_ref().unwrap()[0].name, "ghcr-pull");
        assert_eq!(
            c.env_from.as_ref().unwrap()[0]
                .secret_ref
                .as_ref()
                .unwrap()
                .name,
            "runctl-train-a1-01234567-a2-env"
        );
        let json = serde_json::to_string(&pod).unwrap();
        assert!(!json.contains("s3cr3t"), "{json}");
    }

    #[test]
    fn env_secret_is_owned_by_the_pod() {
        let config = KubernetesConfig::default();
        let mut pod = pod(&key(), &spec(), &config).unwrap();
        pod.metadata.uid = Some("pod-uid".into());
        let secret = env_secret(&pod, &spec()).unwrap();
        let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Pod", "pod-uid")
        );
        assert_eq!(secret.data.as_ref().unwrap()["HF_TOKEN"].0, b"s3cr3t");
    }

    #[test]
    fn no_workload_or_spot_is_refused() {
        let config = KubernetesConfig::default();
        let mut bare = spec();
        bare.workload = None;
        assert!(matches!(
            pod(&key(), &bare, &config),
            Err(ProviderError::InvalidSpec { .. })
        ));
        let mut spot = spec();
        spot.spot = true;
        assert!(pod(&key(), &spot, &config).is_err());
    }

    #[test]
    fn ids_round_trip() {
        let id = machine_id("team-a", "runctl-x");
        assert_eq!(split_id(&id).unwrap(), ("team-a", "runctl-x"));
        assert!(split_id("nope").is_err());
    }
}
