//! Fault injection: which API operation fails next, how, and how often.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::provider::ProviderError;

/// A simulated API operation (one per [`Provider`](crate::provider::Provider) call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SimOp {
    /// `create`.
    Create,
    /// `observe`.
    Observe,
    /// `list`.
    List,
    /// `terminate`.
    Terminate,
    /// `price`.
    Price,
}

impl SimOp {
    /// Every operation.
    pub const ALL: [SimOp; 5] = [
        Self::Create,
        Self::Observe,
        Self::List,
        Self::Terminate,
        Self::Price,
    ];
}

/// How an operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimFault {
    /// No capacity (like EC2 `InsufficientInstanceCapacity`).
    Capacity,
    /// Throttled, with an optional suggested wait.
    RateLimited {
        /// The `Retry-After` the simulated API sends.
        retry_after: Option<Duration>,
    },
    /// A 5xx answer.
    ServerError,
    /// Credentials rejected.
    Unauthorized,
    /// The request was rejected as invalid.
    InvalidSpec,
    /// The operation takes effect, then the response is lost (a retryable timeout).
    LoseResponse,
}

impl SimFault {
    /// True when the operation still happens before the error is returned.
    pub fn takes_effect(self) -> bool {
        self == Self::LoseResponse
    }

    /// The error the caller sees.
    pub fn error(self, op: SimOp) -> ProviderError {
        match self {
            Self::Capacity => ProviderError::Capacity {
                message: format!("sim: no capacity ({op:?}, injected)"),
            },
            Self::RateLimited { retry_after } => ProviderError::RateLimited {
                message: format!("sim: request limit exceeded ({op:?}, injected)"),
                retry_after,
            },
            Self::ServerError => {
                ProviderError::retryable(format!("sim: internal server error ({op:?}, injected)"))
            }
            Self::Unauthorized => ProviderError::Authentication {
                message: format!("sim: credentials rejected ({op:?}, injected)"),
            },
            Self::InvalidSpec => ProviderError::InvalidSpec {
                message: format!("sim: request rejected as invalid ({op:?}, injected)"),
            },
            Self::LoseResponse => ProviderError::Retryable {
                message: format!("sim: response lost, timed out ({op:?}, injected)"),
                retry_after: None,
                source: None,
            },
        }
    }
}

/// Pending faults per operation, consumed first in, first out.
#[derive(Debug, Default)]
pub struct FaultQueue {
    pending: HashMap<SimOp, VecDeque<(SimFault, u32)>>,
}

impl FaultQueue {
    /// Queues `fault` for the next `times` calls of `op` (after faults queued before).
    pub fn push(&mut self, op: SimOp, fault: SimFault, times: u32) {
        if times > 0 {
            self.pending
                .entry(op)
                .or_default()
                .push_back((fault, times));
        }
    }

    /// The fault for this call of `op`, if one is pending.
    pub fn take(&mut self, op: SimOp) -> Option<SimFault> {
        let queue = self.pending.get_mut(&op)?;
        let (fault, left) = queue.front_mut()?;
        let fault = *fault;
        *left -= 1;
        if *left == 0 {
            queue.pop_front();
        }
        Some(fault)
    }

    /// Forgets every pending fault.
    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ErrorClass;

    #[test]
    fn faults_map_to_classes() {
        let wait = Some(Duration::from_secs(2));
        let cases = [
            (
                SimFault::Capacity,
                ErrorClass::Capacity,
                "InsufficientCapacity",
            ),
            (
                SimFault::RateLimited { retry_after: wait },
                ErrorClass::Retryable,
                "RateLimited",
            ),
            (
                SimFault::ServerError,
                ErrorClass::Retryable,
                "ProviderUnavailable",
            ),
            (
                SimFault::Unauthorized,
                ErrorClass::Account,
                "AuthenticationFailed",
            ),
            (SimFault::InvalidSpec, ErrorClass::Terminal, "InvalidSpec"),
            (
                SimFault::LoseResponse,
                ErrorClass::Retryable,
                "ProviderUnavailable",
            ),
        ];
        for (fault, class, reason) in cases {
            let e = fault.error(SimOp::Create);
            assert_eq!((e.class(), e.reason()), (class, reason), "{fault:?}");
        }
        assert_eq!(
            SimFault::RateLimited { retry_after: wait }
                .error(SimOp::List)
                .retry_after(),
            wait
        );
    }

    #[test]
    fn queue_is_fifo_and_counted() {
        let mut q = FaultQueue::default();
        q.push(SimOp::Create, SimFault::Capacity, 2);
        q.push(SimOp::Create, SimFault::ServerError, 1);
        q.push(SimOp::List, SimFault::Unauthorized, 0);
        assert_eq!(q.take(SimOp::Observe), None);
        assert_eq!(q.take(SimOp::List), None);
        assert_eq!(q.take(SimOp::Create), Some(SimFault::Capacity));
        assert_eq!(q.take(SimOp::Create), Some(SimFault::Capacity));
        assert_eq!(q.take(SimOp::Create), Some(SimFault::ServerError));
        assert_eq!(q.take(SimOp::Create), None);
        q.push(SimOp::Price, SimFault::Capacity, 1);
        q.clear();
        assert_eq!(q.take(SimOp::Price), None);
    }
}
