//! runctl: a Kubernetes operator that rents GPU machines for training jobs.
//!
//! Module map:
//! - [`allocator`]: the binaries' allocator (jemalloc) and its settings.
//! - [`attempt`]: a job's attempt, its identity and the names of its objects.
//! - [`crd`]: the `runctl.dev/v1alpha1` kinds (TrainingJob, CloudResource, MachineClass).
//! - [`provider`]: the provider trait, registry, descriptors, and the AWS, RunPod, Lyceum and sim
//!   clouds and the cluster's own GPU nodes (`kubernetes`).
//! - [`controller`]: the controllers (observe → plan → act → write status).
//! - [`callback`]: the job callback endpoint (heartbeat, progress, exit reports, output).
//! - [`logs`]: workload output, a bounded tail per attempt in a ConfigMap (`runctl logs`).
//! - [`cli`]: the user commands (`get`, `describe`, `logs`, `plan`, `cost`, `doctor`, ...), also
//!   the kubectl plugin `kubectl runctl`.
//! - [`operator`]: the operator process: preflight, endpoints, leader election, controllers.
//! - [`demo`]: `runctl demo`, the operator against an embedded API server and `sim`.
//! - [`config`]: the operator's configuration (file, environment, flags).
//! - [`metrics`]: Prometheus metrics in runctl's own registry.
//! - [`runtime`]: the HTTP endpoint (metrics, probes), leader election, shutdown.
//! - [`telemetry`]: logging setup.
//!
//! The scale benchmark is a crate of its own (`crates/bench`, `runctl-bench`); the operator
//! ships none of it.

/// The `User-Agent` of every request runctl makes: to the Kubernetes API server and to the
/// providers' APIs (`runctl/<version>`; the AWS SDK adds it as its app name).
pub const USER_AGENT: &str = concat!("runctl/", env!("CARGO_PKG_VERSION"));

pub mod allocator;
pub mod attempt;
pub mod callback;
pub mod cli;
pub mod config;
pub mod controller;
pub mod crd;
pub mod demo;
pub mod logs;
pub mod metrics;
pub mod operator;
pub mod provider;
pub mod runtime;
pub mod telemetry;
