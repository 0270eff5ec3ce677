//! runctl: a Kubernetes operator that rents GPU machines for training jobs.
//!
//! Module map:
//! - [`crd`]: the `runctl.dev/v1alpha1` kinds (TrainingJob, CloudResource).
//! - [`provider`]: the provider trait, registry, and the AWS, RunPod, Lyceum and sim clouds.
//! - [`config`]: the operator's configuration (file, environment, flags).
//! - [`metrics`]: Prometheus metrics in runctl's own registry.
//! - [`runtime`]: the HTTP endpoint (metrics, probes), leader election, shutdown.
//! - [`telemetry`]: logging setup.

pub mod config;
pub mod crd;
pub mod metrics;
pub mod provider;
pub mod runtime;
pub mod telemetry;
