//! Classification of EC2 errors (and the AWS Price List API's) into [`ProviderError`] classes:
//! one pure function over the facts of a failed call (error code, message, HTTP status,
//! transport failure), table-tested, plus the glue that reads those facts out of an SDK error.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::provider::ProviderError;

/// How a call failed below the API level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The request was never sent (it could not be built or signed).
    NotSent,
    /// The call timed out; the request may have reached EC2.
    Timeout,
    /// The connection failed; the request may have reached EC2.
    Dispatch,
    /// A response arrived but could not be read; EC2 may have acted on the request.
    Response,
}

/// What is known about one failed call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorFacts {
    /// EC2 error code (`InsufficientInstanceCapacity`, …).
    pub code: Option<String>,
    /// EC2 error message.
    pub message: Option<String>,
    /// HTTP status of the error answer.
    pub status: Option<u16>,
    /// Transport failure, when no EC2 error answer was read.
    pub transport: Option<Transport>,
}

/// A classified error.
#[derive(Debug)]
pub struct Classified {
    /// The error for the controller.
    pub error: ProviderError,
    /// True when EC2 may have acted on the request although the call failed (timeout, lost
    /// connection, unreadable answer, 5xx): after a RunInstances the caller must look for the
    /// instance before returning.
    pub ambiguous: bool,
}

/// Explanation added to `IdempotentParameterMismatch`.
pub const MISMATCH_HINT: &str = "the ClientToken of this CloudResource attempt was already used with different \
     RunInstances parameters (the spec or the operator's AWS defaults changed under the same attempt); \
     runctl will not launch a second instance for it";

const THROTTLING: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "EC2ThrottledException",
    "BandwidthLimitExceeded",
    "SlowDown",
];
const CAPACITY: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientCapacityOnHost",
    "SpotMaxPriceTooLow",
];
const QUOTA: &[&str] = &[
    "InstanceLimitExceeded",
    "VcpuLimitExceeded",
    "MaxSpotInstanceCountExceeded",
];
const AUTHENTICATION: &[&str] = &[
    "AuthFailure",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "RequestExpired",
    "OptInRequired",
    "Blocked",
    "PendingVerification",
    "AccessDenied",
    "AccessDeniedException",
];
const SERVER: &[&str] = &[
    "InternalError",
    "InternalFailure",
    // The AWS Price List API's server error.
    "InternalErrorException",
    "Unavailable",
    "ServiceUnavailable",
];
const NOT_FOUND: &[&str] = &["InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"];
const INVALID_SPEC: &[&str] = &[
    "InvalidParameterValue",
    "InvalidParameter",
    // The AWS Price List API's refusal of a parameter.
    "InvalidParameterException",
    "InvalidParameterCombination",
    "MissingParameter",
    "Unsupported",
    "UnsupportedOperation",
    "InvalidUserData.Malformed",
    "InvalidBlockDeviceMapping",
    "InvalidIamInstanceProfile.NotFound",
    "InvalidTagKey.Malformed",
];

/// Classifies a failed call. Pure.
pub fn classify(facts: &ErrorFacts) -> Classified {
    let code = facts.code.as_deref().unwrap_or("");
    let text = describe(facts);
    let status = facts.status.unwrap_or(0);
    let (error, ambiguous) = if code.is_empty() {
        match facts.transport {
            // No credentials from the default chain (no Secret, no IRSA, no instance profile).
            Some(Transport::NotSent) if text.to_ascii_lowercase().contains("credential") => {
                (ProviderError::Authentication { message: text }, false)
            }
            Some(Transport::NotSent) => (ProviderError::retryable(text), false),
            Some(_) => (ProviderError::retryable(text), true),
            None if status == 401 || status == 403 => {
                (ProviderError::Authentication { message: text }, false)
            }
            None if status == 429 => (
                ProviderError::RateLimited {
                    message: text,
                    retry_after: None,
                },
                false,
            ),
            None => (ProviderError::retryable(text), status >= 500 || status == 0),
        }
    } else if THROTTLING.contains(&code) {
        (
            ProviderError::RateLimited {
                message: text,
                retry_after: None,
            },
            false,
        )
    } else if CAPACITY.contains(&code) {
        (ProviderError::Capacity { message: text }, false)
    } else if QUOTA.contains(&code) {
        (ProviderError::Quota { message: text }, false)
    } else if AUTHENTICATION.contains(&code) {
        (ProviderError::Authentication { message: text }, false)
    } else if code == "IdempotentParameterMismatch" {
        (
            ProviderError::InvalidSpec {
                message: format!("{text} ({MISMATCH_HINT})"),
            },
            false,
        )
    } else if NOT_FOUND.contains(&code) {
        (ProviderError::NotFound { message: text }, false)
    } else if SERVER.contains(&code) || status >= 500 {
        (ProviderError::retryable(text), true)
    } else if INVALID_SPEC.contains(&code) || is_invalid_resource(code) {
        (ProviderError::InvalidSpec { message: text }, false)
    } else if status == 401 || status == 403 {
        (ProviderError::Authentication { message: text }, false)
    } else {
        // An unlisted 4xx code: EC2 refused without acting; retry and show the message.
        (ProviderError::retryable(text), false)
    };
    Classified { error, ambiguous }
}

/// `InvalidAMIID.NotFound`, `InvalidSubnetID.NotFound`, `InvalidGroup.NotFound`,
/// `InvalidKeyPair.NotFound` and their kin: a named resource of the spec does not exist or is
/// malformed.
fn is_invalid_resource(code: &str) -> bool {
    code.starts_with("Invalid")
        && [".NotFound", ".Malformed", ".Unavailable", ".Duplicate"]
            .iter()
            .any(|s| code.ends_with(s))
}

/// `CODE: message`, or the transport failure.
fn describe(facts: &ErrorFacts) -> String {
    let msg = facts.message.as_deref().filter(|m| !m.is_empty());
    match (facts.code.as_deref().filter(|c| !c.is_empty()), msg) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) => match facts.status {
            Some(s) => format!("EC2 answered HTTP {s}"),
            None => "EC2 call failed".to_string(),
        },
    }
}

/// Reads the facts out of an SDK error.
pub fn facts_from_sdk<E>(err: &SdkError<E>) -> ErrorFacts
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let context = || Some(format!("{}", DisplayErrorContext(err)));
    match err {
        SdkError::ServiceError(se) => ErrorFacts {
            code: se.err().code().map(str::to_string),
            message: se.err().message().map(str::to_string),
            status: Some(se.raw().status().as_u16()),
            transport: None,
        },
        SdkError::ConstructionFailure(_) => ErrorFacts {
            message: context(),
            transport: Some(Transport::NotSent),
            ..Default::default()
        },
        SdkError::TimeoutError(_) => ErrorFacts {
            message: context(),
            transport: Some(Transport::Timeout),
            ..Default::default()
        },
        SdkError::DispatchFailure(_) => ErrorFacts {
            message: context(),
            transport: Some(Transport::Dispatch),
            ..Default::default()
        },
        SdkError::ResponseError(re) => ErrorFacts {
            message: context(),
            status: Some(re.raw().status().as_u16()),
            transport: Some(Transport::Response),
            ..Default::default()
        },
        _ => ErrorFacts {
            message: context(),
            transport: Some(Transport::Dispatch),
            ..Default::default()
        },
    }
}

/// Classifies an SDK error.
pub fn classify_sdk<E>(err: &SdkError<E>) -> Classified
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    classify(&facts_from_sdk(err))
}

/// The EC2 error code of an SDK error, if EC2 answered with one.
pub fn error_code<E>(err: &SdkError<E>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    err.as_service_error().and_then(ProvideErrorMetadata::code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ErrorClass;

    fn coded(code: &str, status: u16) -> ErrorFacts {
        ErrorFacts {
            code: Some(code.into()),
            message: Some("aws says no".into()),
            status: Some(status),
            transport: None,
        }
    }

    fn transport(t: Transport, message: &str) -> ErrorFacts {
        ErrorFacts {
            message: Some(message.into()),
            transport: Some(t),
            ..Default::default()
        }
    }

    fn status(s: u16) -> ErrorFacts {
        ErrorFacts {
            status: Some(s),
            ..Default::default()
        }
    }

    #[test]
    fn every_error_class() {
        use ErrorClass::{Account, Capacity, Retryable, Terminal};
        #[rustfmt::skip]
        let cases: Vec<(ErrorFacts, &str, ErrorClass, bool)> = vec![
            (coded("RequestLimitExceeded", 503), "RateLimited", Retryable, false),
            (coded("Throttling", 400), "RateLimited", Retryable, false),
            (coded("InsufficientInstanceCapacity", 500), "InsufficientCapacity", Capacity, false),
            (coded("InsufficientInstanceCapacity", 400), "InsufficientCapacity", Capacity, false),
            (coded("InsufficientCapacity", 500), "InsufficientCapacity", Capacity, false),
            (coded("InsufficientHostCapacity", 500), "InsufficientCapacity", Capacity, false),
            (coded("SpotMaxPriceTooLow", 400), "InsufficientCapacity", Capacity, false),
            (coded("InstanceLimitExceeded", 400), "QuotaExceeded", Retryable, false),
            (coded("VcpuLimitExceeded", 400), "QuotaExceeded", Retryable, false),
            (coded("MaxSpotInstanceCountExceeded", 400), "QuotaExceeded", Retryable, false),
            (coded("AuthFailure", 401), "AuthenticationFailed", Account, false),
            (coded("UnauthorizedOperation", 403), "AuthenticationFailed", Account, false),
            (coded("OptInRequired", 401), "AuthenticationFailed", Account, false),
            (coded("Blocked", 403), "AuthenticationFailed", Account, false),
            (coded("InvalidParameterValue", 400), "InvalidSpec", Terminal, false),
            (coded("InvalidParameter", 400), "InvalidSpec", Terminal, false),
            (coded("InvalidParameterCombination", 400), "InvalidSpec", Terminal, false),
            (coded("MissingParameter", 400), "InvalidSpec", Terminal, false),
            (coded("Unsupported", 400), "InvalidSpec", Terminal, false),
            (coded("InvalidAMIID.NotFound", 400), "InvalidSpec", Terminal, false),
            (coded("InvalidAMIID.Malformed", 400), "InvalidSpec", Terminal, false),
            (coded("InvalidAMIID.Unavailable", 400), "InvalidSpec", Terminal, false),
            (coded("InvalidSubnetID.NotFound", 400), "InvalidSpec", Terminal, false),
            (coded("InvalidGroup.NotFound", 400), "InvalidSpec", Terminal, false),
            (coded("InvalidKeyPair.NotFound", 400), "InvalidSpec", Terminal, false),
            (coded("IdempotentParameterMismatch", 400), "InvalidSpec", Terminal, false),
            (coded("InvalidInstanceID.NotFound", 400), "NotFound", Retryable, false),
            (coded("InvalidInstanceID.Malformed", 400), "NotFound", Retryable, false),
            (coded("InternalError", 500), "ProviderUnavailable", Retryable, true),
            (coded("Unavailable", 503), "ProviderUnavailable", Retryable, true),
            (coded("ServiceUnavailable", 503), "ProviderUnavailable", Retryable, true),
            (coded("SomethingNew", 502), "ProviderUnavailable", Retryable, true),
            (coded("IncorrectInstanceState", 400), "ProviderUnavailable", Retryable, false),
            (coded("SomethingNew", 403), "AuthenticationFailed", Account, false),
            // The AWS Price List API (JSON protocol) uses its own codes.
            (coded("ThrottlingException", 400), "RateLimited", Retryable, false),
            (coded("InternalErrorException", 500), "ProviderUnavailable", Retryable, true),
            (coded("AccessDeniedException", 400), "AuthenticationFailed", Account, false),
            (coded("InvalidParameterException", 400), "InvalidSpec", Terminal, false),
            (coded("ExpiredNextTokenException", 400), "ProviderUnavailable", Retryable, false),
            (transport(Transport::Timeout, "timed out"), "ProviderUnavailable", Retryable, true),
            (transport(Transport::Dispatch, "connection reset"), "ProviderUnavailable", Retryable, true),
            (transport(Transport::Response, "incomplete body"), "ProviderUnavailable", Retryable, true),
            (transport(Transport::NotSent, "bad endpoint"), "ProviderUnavailable", Retryable, false),
            (transport(Transport::NotSent, "no credentials in the chain"), "AuthenticationFailed", Account, false),
            (status(503), "ProviderUnavailable", Retryable, true),
            (status(403), "AuthenticationFailed", Account, false),
            (status(429), "RateLimited", Retryable, false),
        ];
        for (facts, reason, class, ambiguous) in cases {
            let c = classify(&facts);
            assert_eq!(c.error.reason(), reason, "{facts:?}");
            assert_eq!(c.error.class(), class, "{facts:?}");
            assert_eq!(c.ambiguous, ambiguous, "{facts:?}");
        }
    }

    #[test]
    fn messages_keep_the_aws_code_and_text() {
        let c = classify(&coded("InvalidAMIID.NotFound", 400));
        assert_eq!(c.error.message(), "InvalidAMIID.NotFound: aws says no");
        let m = classify(&coded("IdempotentParameterMismatch", 400));
        assert!(
            m.error.message().contains("ClientToken"),
            "{}",
            m.error.message()
        );
        let bare = classify(&status(500));
        assert_eq!(bare.error.message(), "EC2 answered HTTP 500");
    }
}
