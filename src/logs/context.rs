//! What storing one attempt's output needs to know, read from its CloudResource: the owner its
//! ConfigMap gets (the TrainingJob, so the output outlives the attempt's machine and goes with
//! the job) and the values to scrub (every env value taken from a Secret, and the callback
//! token), read from the Secrets the way the CloudResource controller reads them for the machine.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Api, Client};

use super::scrub::Scrubber;
use super::stored::Target;
use crate::attempt::cloud_resource_name;
use crate::controller::cloud_resource::spec::{SecretError, read_secret};
use crate::crd::CloudResource;

/// Why an attempt's context could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// Reading the CloudResource failed.
    #[error("failed to read the attempt's CloudResource: {0}")]
    CloudResource(#[source] kube::Error),
    /// Reading a Secret the workload uses failed.
    #[error("failed to read a Secret of the workload: {0}")]
    Secret(#[source] SecretError),
}

/// One attempt's ConfigMap target and scrubber.
#[derive(Clone, Debug)]
pub struct AttemptContext {
    /// Where its output goes.
    pub target: Target,
    /// What is masked in it.
    pub scrubber: Scrubber,
}

/// The TrainingJob that controls `cr`, if any.
pub fn job_owner(cr: &CloudResource) -> Option<OwnerReference> {
    cr.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.kind == "TrainingJob" && o.controller == Some(true))
        .or_else(|| {
            cr.metadata
                .owner_references
                .as_ref()?
                .iter()
                .find(|o| o.kind == "TrainingJob")
        })
        .cloned()
}

/// The values of `cr`'s workload that come from Secrets (its env `valueFrom` entries and the
/// callback token), read now; a Secret or key that is gone is skipped (the machine cannot have
/// it either).
pub async fn secret_values(
    client: &Client,
    namespace: &str,
    cr: &CloudResource,
) -> Result<Vec<String>, SecretError> {
    let Some(w) = &cr.spec.workload else {
        return Ok(Vec::new());
    };
    let mut refs: Vec<(&str, &str)> = w
        .env
        .iter()
        .filter_map(|e| e.value_from.as_ref())
        .map(|f| {
            (
                f.secret_key_ref.name.as_str(),
                f.secret_key_ref.key.as_str(),
            )
        })
        .collect();
    if let Some(r) = &w.reporting {
        refs.push((&r.token_secret_ref.name, &r.token_secret_ref.key));
    }
    let mut secrets: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    let mut values = Vec::new();
    for (name, key) in refs {
        if !secrets.contains_key(name) {
            let data = match read_secret(client, namespace, name).await {
                Ok((data, _)) => data,
                Err(SecretError::NotFound { .. }) => BTreeMap::new(),
                Err(e) => return Err(e),
            };
            secrets.insert(name, data);
        }
        if let Some(v) = secrets.get(name).and_then(|d| d.get(key)) {
            values.push(v.clone());
        }
    }
    Ok(values)
}

/// The context of attempt `attempt` of `job`, or `None` when its CloudResource is gone (the
/// attempt has ended and been released). `extra` values are scrubbed too (the token a report
/// presented).
pub async fn read(
    client: &Client,
    namespace: &str,
    job: &str,
    attempt: u32,
    extra: &[&str],
) -> Result<Option<AttemptContext>, ContextError> {
    let api: Api<CloudResource> = Api::namespaced(client.clone(), namespace);
    let Some(cr) = api
        .get_opt(&cloud_resource_name(job, attempt))
        .await
        .map_err(ContextError::CloudResource)?
    else {
        return Ok(None);
    };
    Ok(Some(
        of_cloud_resource(client, &cr, job, attempt, extra).await?,
    ))
}

/// The context of `cr`, attempt `attempt` of `job`.
pub async fn of_cloud_resource(
    client: &Client,
    cr: &CloudResource,
    job: &str,
    attempt: u32,
    extra: &[&str],
) -> Result<AttemptContext, ContextError> {
    let namespace = cr.metadata.namespace.clone().unwrap_or_default();
    let mut values = secret_values(client, &namespace, cr)
        .await
        .map_err(ContextError::Secret)?;
    values.extend(extra.iter().map(|s| s.to_string()));
    Ok(AttemptContext {
        target: Target {
            namespace,
            job: job.to_string(),
            attempt,
            owner: job_owner(cr),
        },
        scrubber: Scrubber::new(values),
    })
}
