//! Provider errors, classified so that the controller can decide between retrying, waiting for
//! capacity, and waiting for a spec change.

use std::time::Duration;

/// Boxed source error kept for diagnostics.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How the controllers treat an error: the CloudResource status type (`status.failure.class`),
/// so the class a provider gives is the class the retry policy reads.
pub use crate::crd::cloud_resource::FailureClass as ErrorClass;

/// An error from a provider call. Messages come from the provider (sanitized of secrets by the
/// provider client) and are shown in conditions and events.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// A transient failure: network error, timeout, 5xx, eventual consistency.
    #[error("provider call failed, will retry: {message}")]
    Retryable {
        /// What failed.
        message: String,
        /// Server-suggested wait.
        retry_after: Option<Duration>,
        /// Underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The provider throttled us.
    #[error("provider rate limit hit: {message}")]
    RateLimited {
        /// What the provider said.
        message: String,
        /// Server-suggested wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// No capacity for the requested machine.
    #[error("provider has no capacity: {message}")]
    Capacity {
        /// What the provider said.
        message: String,
    },
    /// An account quota is exhausted (slow retry, surfaced to the user).
    #[error("provider quota exceeded: {message}")]
    Quota {
        /// What the provider said.
        message: String,
    },
    /// Credentials missing, invalid or not permitted.
    #[error("provider authentication failed: {message}")]
    Authentication {
        /// What the provider said.
        message: String,
    },
    /// The account cannot pay (RunPod 402, Lyceum 402).
    #[error("provider account has insufficient funds: {message}")]
    Billing {
        /// What the provider said.
        message: String,
    },
    /// The provider rejected the request as invalid; it will not succeed unchanged.
    #[error("provider rejected the machine spec: {message}")]
    InvalidSpec {
        /// What the provider said.
        message: String,
    },
    /// The machine does not exist.
    #[error("machine not found: {message}")]
    NotFound {
        /// What the provider said.
        message: String,
    },
}

impl ProviderError {
    /// A retryable error without a source.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// A retryable error keeping its source.
    pub fn retryable_from(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Retryable {
            message: message.into(),
            retry_after: None,
            source: Some(source.into()),
        }
    }

    /// How the controller treats this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Retryable { .. }
            | Self::RateLimited { .. }
            | Self::Quota { .. }
            | Self::NotFound { .. } => ErrorClass::Retryable,
            Self::Capacity { .. } => ErrorClass::Capacity,
            Self::Authentication { .. } | Self::Billing { .. } => ErrorClass::Account,
            Self::InvalidSpec { .. } => ErrorClass::Terminal,
        }
    }

    /// True when trying again unchanged may succeed (capacity counts: it may come back).
    pub fn is_retryable(&self) -> bool {
        matches!(self.class(), ErrorClass::Retryable | ErrorClass::Capacity)
    }

    /// True when nothing but a change outside runctl (spec, credentials, balance) helps.
    pub fn is_terminal(&self) -> bool {
        matches!(self.class(), ErrorClass::Terminal | ErrorClass::Account)
    }

    /// The error a stored reason names (the remote simulator's wire, tests): the inverse of
    /// [`reason`](Self::reason); unknown reasons are retryable.
    pub fn from_reason(reason: &str, message: String, retry_after: Option<Duration>) -> Self {
        match reason {
            "RateLimited" => Self::RateLimited {
                message,
                retry_after,
            },
            "InsufficientCapacity" => Self::Capacity { message },
            "QuotaExceeded" => Self::Quota { message },
            "AuthenticationFailed" => Self::Authentication { message },
            "InsufficientFunds" => Self::Billing { message },
            "InvalidSpec" => Self::InvalidSpec { message },
            "NotFound" => Self::NotFound { message },
            _ => Self::Retryable {
                message,
                retry_after,
                source: None,
            },
        }
    }

    /// The provider's suggested wait, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Retryable { retry_after, .. } | Self::RateLimited { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Static CamelCase reason used in conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Retryable { .. } => "ProviderUnavailable",
            Self::RateLimited { .. } => "RateLimited",
            Self::Capacity { .. } => "InsufficientCapacity",
            Self::Quota { .. } => "QuotaExceeded",
            Self::Authentication { .. } => "AuthenticationFailed",
            Self::Billing { .. } => "InsufficientFunds",
            Self::InvalidSpec { .. } => "InvalidSpec",
            Self::NotFound { .. } => "NotFound",
        }
    }

    /// The provider's message without the class prefix.
    pub fn message(&self) -> &str {
        match self {
            Self::Retryable { message, .. }
            | Self::RateLimited { message, .. }
            | Self::Capacity { message }
            | Self::Quota { message }
            | Self::Authentication { message }
            | Self::Billing { message }
            | Self::InvalidSpec { message }
            | Self::NotFound { message } => message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_reasons() {
        let cases: Vec<(ProviderError, ErrorClass, &str)> = vec![
            (
                ProviderError::retryable("x"),
                ErrorClass::Retryable,
                "ProviderUnavailable",
            ),
            (
                ProviderError::RateLimited {
                    message: "x".into(),
                    retry_after: Some(Duration::from_secs(3)),
                },
                ErrorClass::Retryable,
                "RateLimited",
            ),
            (
                ProviderError::Capacity {
                    message: "x".into(),
                },
                ErrorClass::Capacity,
                "InsufficientCapacity",
            ),
            (
                ProviderError::Quota {
                    message: "x".into(),
                },
                ErrorClass::Retryable,
                "QuotaExceeded",
            ),
            (
                ProviderError::Authentication {
                    message: "x".into(),
                },
                ErrorClass::Account,
                "AuthenticationFailed",
            ),
            (
                ProviderError::Billing {
                    message: "x".into(),
                },
                ErrorClass::Account,
                "InsufficientFunds",
            ),
            (
                ProviderError::InvalidSpec {
                    message: "x".into(),
                },
                ErrorClass::Terminal,
                "InvalidSpec",
            ),
            (
                ProviderError::NotFound {
                    message: "x".into(),
                },
                ErrorClass::Retryable,
                "NotFound",
            ),
        ];
        for (err, class, reason) in cases {
            assert_eq!(err.class(), class, "{err}");
            assert_eq!(err.reason(), reason);
            assert_eq!(
                err.is_retryable(),
                matches!(class, ErrorClass::Retryable | ErrorClass::Capacity)
            );
            assert_eq!(err.message(), "x");
            let back = ProviderError::from_reason(err.reason(), "x".into(), err.retry_after());
            assert_eq!((back.class(), back.reason()), (class, reason));
        }
        let rl = ProviderError::RateLimited {
            message: "x".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(rl.retry_after(), Some(Duration::from_secs(3)));
    }
}
