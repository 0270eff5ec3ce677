//! Kubernetes API errors as provider errors: a refused Pod is the spec's fault, a forbidden call
//! the operator's RBAC, an exceeded ResourceQuota a quota, a 429 a rate limit, the rest worth
//! another try.

use crate::provider::ProviderError;

/// The provider error of a failed call `what` (e.g. `create Pod`).
pub fn classify(what: &str, e: kube::Error) -> ProviderError {
    let kube::Error::Api(status) = &e else {
        return ProviderError::retryable_from(format!("kubernetes: {what}"), e);
    };
    let message = format!("kubernetes: {what}: {}", status.message);
    match status.code {
        403 if status.message.contains("exceeded quota") => ProviderError::Quota { message },
        401 | 403 => ProviderError::Authentication { message },
        400 | 422 => ProviderError::InvalidSpec { message },
        404 => ProviderError::NotFound { message },
        429 => ProviderError::RateLimited {
            message,
            retry_after: None,
        },
        _ => ProviderError::retryable_from(message, e),
    }
}

/// Whether the error is the API's 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether the error is the API's 409 AlreadyExists.
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ErrorClass;

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, "Reason")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn classes() {
        let cases = [
            (
                403,
                "pods is forbidden: exceeded quota: gpu-quota",
                ErrorClass::Retryable,
            ),
            (
                403,
                "pods is forbidden: User cannot create",
                ErrorClass::Account,
            ),
            (422, "Pod is invalid", ErrorClass::Terminal),
            (429, "slow down", ErrorClass::Retryable),
            (500, "etcd", ErrorClass::Retryable),
        ];
        for (code, msg, class) in cases {
            assert_eq!(
                classify("create Pod", api(code, msg)).class(),
                class,
                "{code} {msg}"
            );
        }
        assert!(matches!(
            classify("x", api(403, "exceeded quota")),
            ProviderError::Quota { .. }
        ));
    }
}
