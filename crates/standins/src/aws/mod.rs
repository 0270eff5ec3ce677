//! EC2 stand-in for runctl's tests: moto's server ([`MotoServer`]) behind a fault-injecting
//! proxy ([`Ec2Proxy`]) that adds what moto lacks (reference section 3.5):
//! - RunInstances de-duplicated by ClientToken as EC2 does: the same token with the same
//!   parameters returns the original reservation, different parameters answer
//!   `IdempotentParameterMismatch`;
//! - a `pending` phase: new instances are shown pending for a while (Describe answers rewritten);
//! - instances invisible for a while after launch (eventual consistency): DescribeInstances
//!   leaves them out, and a call naming one answers `InvalidInstanceID.NotFound`;
//! - injected errors in EC2's XML format (`RequestLimitExceeded` 503,
//!   `InsufficientInstanceCapacity` 500, `InternalError` 500, `AuthFailure` 401, or any);
//! - a lost response: the request is forwarded and acted on, then the connection is dropped;
//! - provider-side endings: an instance terminated (or stopped) with a given state reason such
//!   as `Server.SpotInstanceTermination`.
//!
//! moto does not implement the AWS Price List API (`pricing`): [`PriceListStandin`] serves its
//! `GetProducts` for the on-demand prices.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use runctl_standins::aws::{Ec2Fault, Ec2Proxy, MotoServer};
//! let moto = MotoServer::start().await?;
//! let proxy = Ec2Proxy::start(&moto.url()).await?;
//! proxy.fail_next("RunInstances", Ec2Fault::InsufficientInstanceCapacity);
//! // point the EC2 client's endpoint at proxy.url()
//! # Ok(()) }
//! ```

mod handler;
mod moto;
pub mod price_list;
mod proxy;
pub mod query;
pub mod xml;

pub use moto::{MOTO_SERVER_ENV, MotoError, MotoServer};
pub use price_list::{PriceListFault, PriceListStandin};
pub use proxy::{Ec2Fault, Ec2Proxy, Ending};
