//! The objects a job owns, built without I/O: one CloudResource per attempt (`<job>-a<N>`,
//! labelled with job and attempt, owned through a controller ownerReference) and the attempt's
//! callback-token Secret. Secret values never enter a CloudResource spec: env from Secrets stays
//! a `valueFrom` reference, resolved by the CloudResource controller at create time.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::ObjectMeta;

use super::view::{LABEL_ATTEMPT, LABEL_JOB, LABEL_RANK};
use crate::callback::token;
use crate::crd::cloud_resource::{CloudResource, CloudResourceSpec};
use crate::crd::common::{EnvVar, EnvVarSource, ReportingSpec, SecretKeyRef, WorkloadSpec};
use crate::crd::training_job::{Offer, TrainingJob};

/// Env var: name of the job.
pub const ENV_JOB_NAME: &str = "RUNCTL_JOB_NAME";
/// Env var: namespace of the job.
pub const ENV_JOB_NAMESPACE: &str = "RUNCTL_JOB_NAMESPACE";
/// Env var: attempt number.
pub const ENV_ATTEMPT: &str = "RUNCTL_ATTEMPT";
/// Env var: checkpoint directory (the same for every attempt).
pub const ENV_CHECKPOINT_DIR: &str = "RUNCTL_CHECKPOINT_DIR";
/// Env var: training data URI.
pub const ENV_DATA_SOURCE: &str = "RUNCTL_DATA_SOURCE";
/// Env var: output URI.
pub const ENV_OUTPUT_DEST: &str = "RUNCTL_OUTPUT_DEST";
/// Env var (multi-node jobs, torchrun's names): this node's rank, 0 to `nodes - 1`.
pub const ENV_NODE_RANK: &str = "NODE_RANK";
/// Env var (multi-node jobs): the number of nodes.
pub const ENV_NNODES: &str = "NNODES";
/// Env var (multi-node jobs): the number of nodes, under the name launchers also read.
pub const ENV_WORLD_SIZE: &str = "WORLD_SIZE";
/// Env var (multi-node jobs): rank 0's address (`127.0.0.1` on rank 0 itself, its private
/// address on the others).
pub const ENV_MASTER_ADDR: &str = "MASTER_ADDR";
/// Env var (multi-node jobs): rank 0's rendezvous port.
pub const ENV_MASTER_PORT: &str = "MASTER_PORT";
/// The names runctl sets in a multi-node job (the user's own values of them are dropped).
pub const DISTRIBUTED_ENV: [&str; 5] = [
    ENV_NODE_RANK,
    ENV_NNODES,
    ENV_WORLD_SIZE,
    ENV_MASTER_ADDR,
    ENV_MASTER_PORT,
];

/// How the workload reports back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportingSettings {
    /// Base URL of the callback endpoint, e.g. `https://runctl.example.com:8443`.
    pub callback_base_url: String,
    /// Heartbeat interval of the wrapper.
    pub heartbeat_interval_seconds: u32,
    /// The wrapper stops the workload after this long without an acknowledged heartbeat.
    pub self_terminate_after_seconds: u32,
    /// The wrapper retries its exit report for this long after the workload ended.
    pub report_grace_seconds: u32,
}

pub use crate::attempt::{cloud_resource_name, node_name};

fn meta(job: &TrainingJob, name: String, attempt: u32) -> ObjectMeta {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    ObjectMeta {
        name: Some(name),
        namespace: job.metadata.namespace.clone(),
        labels: Some(BTreeMap::from([
            (LABEL_JOB.to_string(), job_name),
            (LABEL_ATTEMPT.to_string(), attempt.to_string()),
        ])),
        owner_references: job.controller_owner_ref(&()).map(|r| vec![r]),
        ..Default::default()
    }
}

fn literal(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// True for names the CloudResource schema accepts as env names.
pub fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The environment of an attempt: the user's env (Secret references kept as references), the
/// job context, and the data-source credentials as references to their Secret's keys.
pub fn env(job: &TrainingJob, attempt: u32, data_credential_keys: &[String]) -> Vec<EnvVar> {
    let w = &job.spec.workload;
    let nodes = job.spec.nodes();
    let mut env = w.env.clone();
    if nodes > 1 {
        env.retain(|e| !DISTRIBUTED_ENV.contains(&e.name.as_str()));
    }
    env.push(literal(
        ENV_JOB_NAME,
        job.metadata.name.clone().unwrap_or_default(),
    ));
    env.push(literal(
        ENV_JOB_NAMESPACE,
        job.metadata.namespace.clone().unwrap_or_default(),
    ));
    env.push(literal(ENV_ATTEMPT, attempt.to_string()));
    if nodes > 1 {
        env.extend([
            literal(ENV_NODE_RANK, "0"),
            literal(ENV_NNODES, nodes.to_string()),
            literal(ENV_WORLD_SIZE, nodes.to_string()),
            literal(ENV_MASTER_ADDR, "127.0.0.1"),
            literal(
                ENV_MASTER_PORT,
                job.spec
                    .master_port
                    .unwrap_or(crate::crd::training_job::DEFAULT_MASTER_PORT)
                    .to_string(),
            ),
        ]);
    }
    if let Some(d) = &w.checkpoint_dir {
        env.push(literal(ENV_CHECKPOINT_DIR, d.clone()));
    }
    if let Some(d) = &w.output_dest {
        env.push(literal(ENV_OUTPUT_DEST, d.clone()));
    }
    if let Some(ds) = &w.data_source {
        env.push(literal(ENV_DATA_SOURCE, ds.uri.clone()));
        if let Some(secret) = &ds.credentials_secret_ref {
            for key in data_credential_keys
                .iter()
                .filter(|k| is_env_name(k) && !k.starts_with("RUNCTL_"))
            {
                if env.iter().any(|e| &e.name == key) {
                    continue;
                }
                env.push(EnvVar {
                    name: key.clone(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        secret_key_ref: SecretKeyRef {
                            name: secret.name.clone(),
                            key: key.clone(),
                        },
                    }),
                });
            }
        }
    }
    env
}

/// The CloudResource of an attempt on `offer`.
pub fn cloud_resource(
    job: &TrainingJob,
    attempt: u32,
    offer: &Offer,
    reporting: &ReportingSettings,
    data_credential_keys: &[String],
) -> CloudResource {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let id = crate::attempt::AttemptId::new(&namespace, &job_name, attempt);
    let w = &job.spec.workload;
    let workload = WorkloadSpec {
        image: w.image.clone(),
        command: w.command.clone(),
        args: w.args.clone(),
        env: env(job, attempt, data_credential_keys),
        // The token and callback only where the workload reports (not the cluster's own Pods,
        // whose status says how they went).
        reporting: crate::provider::descriptor::of(offer.provider)
            .reports
            .then(|| ReportingSpec {
                callback_url: id.callback_url(&reporting.callback_base_url),
                token_secret_ref: SecretKeyRef {
                    name: id.token_secret_name(),
                    key: token::TOKEN_KEY.into(),
                },
                heartbeat_interval_seconds: reporting.heartbeat_interval_seconds,
                self_terminate_after_seconds: reporting.self_terminate_after_seconds,
                report_grace_seconds: reporting.report_grace_seconds,
            }),
    };
    let spec = CloudResourceSpec {
        provider: offer.provider,
        instance_type: offer.instance_type.clone(),
        gpu_type: offer.gpu_type.clone(),
        gpu_count: offer.gpu_count,
        region: offer.region.clone(),
        spot: offer.spot,
        max_price_per_hour: if offer.spot {
            job.spec.placement.max_hourly_price
        } else {
            None
        },
        workload: Some(workload),
        tags: Default::default(),
        machine_class: offer.machine_class.clone(),
        credentials_secret_ref: None,
        deletion_policy: job.spec.deletion_policy,
        max_lifetime_seconds: None,
        // The nodes of a multi-node job reach each other's ports (the rendezvous, NCCL): their
        // containers share the instances' network.
        aws: (job.spec.nodes() > 1 && offer.provider == crate::crd::ProviderKind::Aws).then(|| {
            crate::crd::cloud_resource::AwsOptions {
                host_network: Some(true),
                ..Default::default()
            }
        }),
        runpod: None,
        lyceum: None,
        kubernetes: None,
    };
    let name = cloud_resource_name(&job_name, attempt);
    let mut cr = CloudResource::new(&name, spec);
    cr.metadata = machine_meta(job, name, attempt);
    cr
}

/// The metadata of an attempt's CloudResource: with the CloudResource controller's finalizer
/// already in place, set by the apply that creates the object, so that its controller need not
/// add it with a write of its own (it still adds it to objects made without it). Kept by the job's
/// field manager; the CloudResource controller removes it once the machine is gone, and the
/// object is then deleted, so no later apply of the job puts it back.
fn machine_meta(job: &TrainingJob, name: String, attempt: u32) -> ObjectMeta {
    let mut m = meta(job, name, attempt);
    m.finalizers = Some(vec![
        crate::controller::cloud_resource::FINALIZER.to_string(),
    ]);
    m
}

/// The CloudResource of node `rank` (at least 1) of a multi-node attempt: rank 0's
/// CloudResource (`rank0`, same offer, class, region and lifetime) with the node's rank, rank 0's
/// address, and no reporting (rank 0's workload reports for the attempt).
pub fn node_cloud_resource(
    job: &TrainingJob,
    rank0: &CloudResource,
    attempt: u32,
    rank: u32,
    master_addr: &str,
) -> CloudResource {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let mut spec = rank0.spec.clone();
    if let Some(w) = spec.workload.as_mut() {
        w.reporting = None;
        for e in w.env.iter_mut() {
            match e.name.as_str() {
                ENV_NODE_RANK => e.value = Some(rank.to_string()),
                ENV_MASTER_ADDR => e.value = Some(master_addr.to_string()),
                _ => {}
            }
        }
    }
    let name = node_name(&job_name, attempt, rank);
    let mut cr = CloudResource::new(&name, spec);
    cr.metadata = machine_meta(job, name, attempt);
    if let Some(labels) = cr.metadata.labels.as_mut() {
        labels.insert(LABEL_RANK.to_string(), rank.to_string());
    }
    cr
}

/// The Secret holding an attempt's callback token.
pub fn token_secret(job: &TrainingJob, attempt: u32, value: &str) -> Secret {
    let name =
        crate::attempt::token_secret_name(&job.metadata.name.clone().unwrap_or_default(), attempt);
    token::secret(meta(job, name, attempt), value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ProviderKind;
    use crate::crd::training_job::TrainingJobSpec;

    fn job() -> TrainingJob {
        let spec: TrainingJobSpec = serde_json::from_value(serde_json::json!({
            "placement": {"provider": "sim", "instanceType": "sim.a100", "maxHourlyPrice": 3.0},
            "workload": {
                "image": "train:1", "command": ["python"], "args": ["train.py"],
                "env": [{"name": "LR", "value": "0.1"}, {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "key"}}}],
                "dataSource": {"uri": "s3://data/x", "credentialsSecretRef": {"name": "s3"}},
                "outputDest": "s3://out/y", "checkpointDir": "s3://ckpt/z"
            }
        }))
        .unwrap();
        let mut j = TrainingJob::new("bert", spec);
        j.metadata.namespace = Some("ml".into());
        j.metadata.uid = Some("uid-1".into());
        j
    }

    fn settings() -> ReportingSettings {
        ReportingSettings {
            callback_base_url: "https://op:8443/".into(),
            heartbeat_interval_seconds: 30,
            self_terminate_after_seconds: 900,
            report_grace_seconds: 90,
        }
    }

    #[test]
    fn cloud_resource_of_an_attempt() {
        let offer = Offer {
            provider: ProviderKind::Sim,
            instance_type: Some("sim.a100".into()),
            gpu_type: None,
            gpu_count: None,
            region: None,
            spot: true,
            price_per_hour: Some(1.0),
            machine_class: None,
        };
        let keys = vec![
            "AWS_ACCESS_KEY_ID".to_string(),
            "not-an-env-name".to_string(),
        ];
        let cr = cloud_resource(&job(), 2, &offer, &settings(), &keys);
        assert_eq!(cr.metadata.name.as_deref(), Some("bert-a2"));
        assert_eq!(cr.metadata.namespace.as_deref(), Some("ml"));
        assert_eq!(
            cr.metadata.finalizers,
            Some(vec!["runctl.dev/machine".to_string()]),
            "created with its controller's finalizer"
        );
        let labels = cr.metadata.labels.clone().unwrap();
        assert_eq!(
            (labels[LABEL_JOB].as_str(), labels[LABEL_ATTEMPT].as_str()),
            ("bert", "2")
        );
        let owner = &cr.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("TrainingJob", "uid-1", Some(true))
        );
        assert!(cr.spec.spot);
        assert_eq!(cr.spec.max_price_per_hour, Some(3.0));
        let w = cr.spec.workload.unwrap();
        let r = w.reporting.unwrap();
        assert_eq!(r.callback_url, "https://op:8443/callback/ml/bert/2");
        assert_eq!(
            (
                r.token_secret_ref.name.as_str(),
                r.token_secret_ref.key.as_str()
            ),
            ("bert-a2-callback", "token")
        );
        let get = |n: &str| w.env.iter().find(|e| e.name == n).cloned();
        assert_eq!(
            get(ENV_CHECKPOINT_DIR).unwrap().value.as_deref(),
            Some("s3://ckpt/z")
        );
        assert_eq!(get(ENV_ATTEMPT).unwrap().value.as_deref(), Some("2"));
        assert_eq!(
            get(ENV_DATA_SOURCE).unwrap().value.as_deref(),
            Some("s3://data/x")
        );
        assert_eq!(
            get(ENV_OUTPUT_DEST).unwrap().value.as_deref(),
            Some("s3://out/y")
        );
        assert!(
            get("WANDB_API_KEY").unwrap().value.is_none(),
            "Secret env stays a reference"
        );
        assert_eq!(
            get("AWS_ACCESS_KEY_ID")
                .unwrap()
                .value_from
                .unwrap()
                .secret_key_ref
                .name,
            "s3"
        );
        assert!(get("not-an-env-name").is_none());
    }

    #[test]
    fn on_demand_offers_carry_no_bid() {
        let offer = Offer {
            provider: ProviderKind::Sim,
            instance_type: Some("t".into()),
            gpu_type: None,
            gpu_count: None,
            region: None,
            spot: false,
            price_per_hour: None,
            machine_class: None,
        };
        let cr = cloud_resource(&job(), 1, &offer, &settings(), &[]);
        assert_eq!(cr.spec.max_price_per_hour, None);
        let s = token_secret(&job(), 1, "tok");
        assert_eq!(s.metadata.name.as_deref(), Some("bert-a1-callback"));
        assert!(s.metadata.owner_references.is_some());
        assert_eq!(
            s.metadata.finalizers, None,
            "a Secret has no machine to guard"
        );
    }

    #[test]
    fn a_multi_node_attempt_gives_each_node_its_rank_and_rank_0s_address() {
        let mut j = job();
        j.spec.nodes = 3;
        j.spec.workload.env.push(EnvVar {
            name: "NODE_RANK".into(),
            value: Some("7".into()),
            value_from: None,
        });
        let offer = Offer {
            provider: ProviderKind::Aws,
            instance_type: Some("p4d.24xlarge".into()),
            gpu_type: None,
            gpu_count: None,
            region: Some("us-east-1".into()),
            spot: false,
            price_per_hour: None,
            machine_class: None,
        };
        let rank0 = cloud_resource(&j, 1, &offer, &settings(), &[]);
        assert_eq!(
            rank0.spec.aws.as_ref().and_then(|a| a.host_network),
            Some(true),
            "the nodes share the instances' network"
        );
        let env_of = |cr: &CloudResource| -> Vec<(String, String)> {
            cr.spec
                .workload
                .as_ref()
                .unwrap()
                .env
                .iter()
                .filter(|e| DISTRIBUTED_ENV.contains(&e.name.as_str()))
                .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
                .collect()
        };
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            env_of(&rank0),
            pairs(&[
                ("NODE_RANK", "0"),
                ("NNODES", "3"),
                ("WORLD_SIZE", "3"),
                ("MASTER_ADDR", "127.0.0.1"),
                ("MASTER_PORT", "29500")
            ]),
            "the user's NODE_RANK is replaced"
        );
        let r2 = node_cloud_resource(&j, &rank0, 1, 2, "10.0.0.5");
        assert_eq!(r2.metadata.name.as_deref(), Some("bert-a1-r2"));
        let labels = r2.metadata.labels.clone().unwrap();
        assert_eq!(
            (labels[LABEL_ATTEMPT].as_str(), labels[LABEL_RANK].as_str()),
            ("1", "2")
        );
        assert_eq!(
            env_of(&r2),
            pairs(&[
                ("NODE_RANK", "2"),
                ("NNODES", "3"),
                ("WORLD_SIZE", "3"),
                ("MASTER_ADDR", "10.0.0.5"),
                ("MASTER_PORT", "29500")
            ])
        );
        assert!(r2.spec.workload.as_ref().unwrap().reporting.is_none());
        assert_eq!(r2.spec.instance_type, rank0.spec.instance_type);
        assert!(r2.metadata.owner_references.is_some());
        assert_eq!(
            r2.metadata.finalizers,
            Some(vec!["runctl.dev/machine".to_string()])
        );
    }
}
