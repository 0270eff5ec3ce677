//! One attempt of one TrainingJob: its identity ([`AttemptId`]) and every name runctl derives
//! from it, in one place: the attempt's CloudResource (`<job>-a<N>`, and `<job>-a<N>-r<rank>`
//! for the other nodes of a multi-node attempt), its callback token's Secret, its log ConfigMap
//! and its callback URL. The callback endpoint, the log sink and both controllers name an
//! attempt's objects through here only.
//!
//! "Attempt" means a job's attempt throughout runctl. A CloudResource counts the create calls
//! it makes for one spec separately: its *create attempt* (`ResourceKey::attempt`, the EC2
//! ClientToken's and the ownership tags' counter), which is not a job's attempt.

use std::fmt;

/// Identifies one attempt of one job.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId {
    /// Namespace of the job.
    pub namespace: String,
    /// Name of the job.
    pub job: String,
    /// Attempt number (1 for the first).
    pub attempt: u32,
}

impl AttemptId {
    /// Attempt `attempt` of job `job` in `namespace`.
    pub fn new(namespace: impl Into<String>, job: impl Into<String>, attempt: u32) -> Self {
        Self {
            namespace: namespace.into(),
            job: job.into(),
            attempt,
        }
    }

    /// Name of the attempt's CloudResource (its rank 0's in a multi-node attempt).
    pub fn cloud_resource_name(&self) -> String {
        cloud_resource_name(&self.job, self.attempt)
    }

    /// Name of the Secret holding the attempt's callback token.
    pub fn token_secret_name(&self) -> String {
        token_secret_name(&self.job, self.attempt)
    }

    /// Name of the ConfigMap holding the attempt's output.
    pub fn log_configmap_name(&self) -> String {
        log_configmap_name(&self.job, self.attempt)
    }

    /// The callback URL of the attempt under the endpoint's `base` URL (the wrapper appends
    /// `/heartbeat`, `/exit`, `/logs`…).
    pub fn callback_url(&self, base: &str) -> String {
        format!(
            "{}/callback/{}/{}/{}",
            base.trim_end_matches('/'),
            self.namespace,
            self.job,
            self.attempt
        )
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} attempt {}",
            self.namespace, self.job, self.attempt
        )
    }
}

/// Name of the CloudResource of attempt `attempt` of `job` (rank 0's in a multi-node attempt).
pub fn cloud_resource_name(job: &str, attempt: u32) -> String {
    format!("{job}-a{attempt}")
}

/// Name of the CloudResource of node `rank` (at least 1) of a multi-node attempt.
pub fn node_name(job: &str, attempt: u32, rank: u32) -> String {
    format!("{}-r{rank}", cloud_resource_name(job, attempt))
}

/// Name of the Secret holding the callback token of attempt `attempt` of `job`.
pub fn token_secret_name(job: &str, attempt: u32) -> String {
    format!("{}-callback", cloud_resource_name(job, attempt))
}

/// Name of the ConfigMap holding the output of attempt `attempt` of `job`.
pub fn log_configmap_name(job: &str, attempt: u32) -> String {
    format!("{}-log", cloud_resource_name(job, attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_of_an_attempt() {
        let id = AttemptId::new("ml", "train", 2);
        assert_eq!(id.cloud_resource_name(), "train-a2");
        assert_eq!(node_name("train", 2, 1), "train-a2-r1");
        assert_eq!(id.token_secret_name(), "train-a2-callback");
        assert_eq!(id.log_configmap_name(), "train-a2-log");
        assert_eq!(
            id.callback_url("https://cb.example/"),
            "https://cb.example/callback/ml/train/2"
        );
        assert_eq!(id.to_string(), "ml/train attempt 2");
    }
}
