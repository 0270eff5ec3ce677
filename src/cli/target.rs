//! The job a command names: `NAME`, `tj/NAME`, `trainingjob/NAME` or `trainingjobs.runctl.dev/NAME`,
//! as kubectl users type them, and fetching it.

use kube::Api;

use super::{CliError, Cluster};
use crate::crd::TrainingJob;

/// Parses a job reference; the name part is returned.
pub fn job_name(reference: &str) -> Result<String, CliError> {
    let name = match reference.split_once('/') {
        None => reference,
        Some((kind, name)) => match kind.to_ascii_lowercase().as_str() {
            "tj"
            | "trainingjob"
            | "trainingjobs"
            | "trainingjob.runctl.dev"
            | "trainingjobs.runctl.dev" => name,
            _ => {
                return Err(CliError::Usage(format!(
                    "{reference:?}: expected a TrainingJob (NAME or tj/NAME)"
                )));
            }
        },
    };
    if name.is_empty() || name.contains('/') {
        return Err(CliError::Usage(format!(
            "{reference:?}: expected a TrainingJob (NAME or tj/NAME)"
        )));
    }
    Ok(name.to_string())
}

/// The TrainingJob `reference` names in the cluster's namespace.
pub async fn fetch_job(cluster: &Cluster, reference: &str) -> Result<TrainingJob, CliError> {
    let name = job_name(reference)?;
    let api: Api<TrainingJob> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    api.get_opt(&name)
        .await
        .map_err(|e| CliError::api(format!("get TrainingJob {name}"), e))?
        .ok_or_else(|| CliError::NotFound {
            kind: "TrainingJob",
            namespace: cluster.namespace.clone(),
            name,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_forms_name_a_job() {
        for r in [
            "train",
            "tj/train",
            "TrainingJob/train",
            "trainingjobs.runctl.dev/train",
        ] {
            assert_eq!(job_name(r).unwrap(), "train", "{r}");
        }
        for r in ["pod/train", "tj/", "", "tj/a/b"] {
            assert!(job_name(r).is_err(), "{r}");
        }
    }
}
