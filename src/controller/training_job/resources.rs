//! The objects a job owns, built without I/O: one CloudResource per attempt (`<job>-a<N>`,
//! labelled with job and attempt, owned through a controller ownerReference) and the attempt's
//! callback-token Secret. Secret values never enter a CloudResource spec: env from Secrets stays
//! a `valueFrom` reference, resolved by the CloudResource controller at create time.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::ObjectMeta;

use super::view::{LABEL_ATTEMPT, LABEL_JOB};
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

/// Name of the CloudResource of an attempt.
pub fn cloud_resource_name(job: &str, attempt: u32) -> String {
    format!("{job}-a{attempt}")
}

/// The callback URL of an attempt (the wrapper appends `/heartbeat`, `/exit`…).
pub fn callback_url(base: &str, namespace: &str, job: &str, attempt: u32) -> String {
    format!(
        "{}/callback/{namespace}/{job}/{attempt}",
        base.trim_end_matches('/')
    )
}

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
    let mut env = w.env.clone();
    env.push(literal(
        ENV_JOB_NAME,
        job.metadata.name.clone().unwrap_or_default(),
    ));
    env.push(literal(
        ENV_JOB_NAMESPACE,
        job.metadata.namespace.clone().unwrap_or_default(),
    ));
    env.push(literal(ENV_ATTEMPT, attempt.to_string()));
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
    let w = &job.spec.workload;
    let workload = WorkloadSpec {
        image: w.image.clone(),
        command: w.command.clone(),
        args: w.args.clone(),
        env: env(job, attempt, data_credential_keys),
        reporting: Some(ReportingSpec {
            callback_url: callback_url(
                &reporting.callback_base_url,
                &namespace,
                &job_name,
                attempt,
            ),
            token_secret_ref: SecretKeyRef {
                name: token::secret_name(&job_name, attempt),
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
        aws: None,
        runpod: None,
        lyceum: None,
    };
    let name = cloud_resource_name(&job_name, attempt);
    let mut cr = CloudResource::new(&name, spec);
    cr.metadata = meta(job, name, attempt);
    cr
}

/// The Secret holding an attempt's callback token.
pub fn token_secret(job: &TrainingJob, attempt: u32, value: &str) -> Secret {
    let name = token::secret_name(&job.metadata.name.clone().unwrap_or_default(), attempt);
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
    }
}
