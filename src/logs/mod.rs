//! Workload output (`runctl logs`): a bounded tail per attempt, kept in the Kubernetes API so
//! that every replica and the CLI read the same thing, and never an unbounded amount in etcd.
//!
//! Sources, best first: the provider's own log API where it has one (Lyceum runs, pulled by the
//! CloudResource controller: [`pull`]), else the reporting wrapper, which ships the workload's
//! stdout and stderr in chunks to the callback endpoint (`kind = logs`, [`sink`]). Both go into
//! the attempt's ConfigMap `<job>-a<N>-log` ([`stored`]) once when the attempt ends, and live only
//! while someone follows the job ([`follow`]): a running job nobody watches costs no write. The
//! ConfigMap is owned by the job and holds the last
//! [`tail::MAX_LINES`] lines and at most [`tail::MAX_BYTES`] bytes ([`tail`]), with every value
//! the workload got from a Secret masked ([`scrub`]). A failed attempt's last lines also go into
//! an `AttemptFailed` event on its job ([`failure`]).

pub mod context;
pub mod failure;
pub mod follow;
pub mod pull;
pub mod scrub;
pub mod sink;
pub mod stored;
pub mod tail;
