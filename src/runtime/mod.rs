//! Operator runtime pieces that are not controllers: the Kubernetes client, the HTTP endpoint
//! for metrics and probes, leader election through a Lease, sharding, and shutdown on signals.

pub mod client;
pub mod http;
pub mod leader;
pub mod paged;
pub mod shard;
pub mod shutdown;

use std::net::SocketAddr;

pub use http::{HttpState, ReadinessFlag, router, serve};
pub use leader::{LeaderElector, LeaderError, LeaseConfig};
pub use shutdown::cancel_on_signal;

/// Errors of the runtime pieces.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The HTTP listener could not bind its address.
    #[error("failed to bind the HTTP listener to {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The bound listener has no local address (the socket was closed under us).
    #[error("failed to read the local address of the HTTP listener bound to {addr}")]
    LocalAddr {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// Installing a signal handler failed.
    #[error("failed to install the {signal} handler")]
    Signal {
        /// The signal's name.
        signal: &'static str,
        /// The error from the runtime.
        #[source]
        source: std::io::Error,
    },
}
