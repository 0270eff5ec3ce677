//! Stand-in servers for runctl's tests, each following `shared/reference/providers.md`: the
//! RunPod REST v2 API, the Lyceum AI API, a fault-injecting EC2 proxy in front of moto (with a
//! launcher for moto's server), and the AWS Price List API's `GetProducts`, which moto lacks.

pub mod aws;
pub mod lyceum;
pub mod runpod;
