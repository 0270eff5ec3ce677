//! runctl: a Kubernetes operator that rents GPU machines for training jobs.
//!
//! Module map:
//! - [`crd`]: the `runctl.dev/v1alpha1` kinds (TrainingJob, CloudResource).
//! - [`provider`]: the provider trait, registry, and the AWS, RunPod, Lyceum and sim clouds.
//! - [`controller`]: the CloudResource and TrainingJob controllers.
//! - [`callback`]: the job callback endpoint (heartbeat, progress, exit reports).

pub mod callback;
pub mod crd;
pub mod controller;
pub mod metrics;
pub mod provider;
