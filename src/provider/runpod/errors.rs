//! Classification of RunPod REST v2 error answers into [`ProviderError`] classes. Pure; the
//! capacity matcher lives here and only here.

use std::time::Duration;

use super::api::Problem;
use crate::provider::ProviderError;

/// The phrase of RunPod's capacity refusal, a 400 whose `detail` reads "There are no longer any
/// instances available with the requested specifications. Please refresh and try again." It is
/// the only signal: there is no machine-readable code.
pub const CAPACITY_PHRASE: &str = "no longer any instances available";

/// Longest provider text kept in an error message.
const MAX_MESSAGE: usize = 300;

/// True when a problem `detail` is RunPod's capacity refusal.
pub fn is_capacity_detail(detail: &str) -> bool {
    detail.to_ascii_lowercase().contains(CAPACITY_PHRASE)
}

/// The provider's words for an error answer: problem+json `detail` and `errors`, else the body.
pub fn describe(status: u16, body: &[u8]) -> (Option<Problem>, String) {
    let problem: Option<Problem> = serde_json::from_slice(body).ok();
    let text = match &problem {
        Some(p) if p.detail.is_some() || p.title.is_some() => {
            let mut s = p
                .detail
                .clone()
                .or_else(|| p.title.clone())
                .unwrap_or_default();
            if let Some(errors) = p.errors.as_ref().filter(|e| !e.is_empty()) {
                s.push_str(&format!(" ({})", errors.join("; ")));
            }
            s
        }
        _ => String::from_utf8_lossy(body).trim().to_string(),
    };
    let text = if text.is_empty() {
        format!("HTTP {status}")
    } else {
        text
    };
    (problem, text)
}

/// Maps an error answer (not 2xx) to its class. `secrets` are scrubbed from the message.
pub fn classify(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
    secrets: &[&str],
) -> ProviderError {
    let (_, text) = describe(status, body);
    // Scrub before cutting: a secret across the cut would otherwise survive in part.
    let text = truncate(&scrub(&text, secrets));
    let message = format!("RunPod answered {status}: {text}");
    match status {
        400 if is_capacity_detail(&text) => ProviderError::Capacity { message },
        401 => ProviderError::Authentication {
            message: format!("{message}; check the apiKey in the RunPod credentials Secret"),
        },
        402 => ProviderError::Billing {
            message: format!("{message}; add funds to the RunPod account"),
        },
        403 => ProviderError::Authentication {
            message: format!(
                "{message}; the API key has no access to this resource (terminal until it changes)"
            ),
        },
        404 => ProviderError::NotFound { message },
        // An action the pod's current status does not allow; the status may still move on.
        409 => ProviderError::Retryable {
            message,
            retry_after: None,
            source: None,
        },
        429 => ProviderError::RateLimited {
            message,
            retry_after,
        },
        500..=599 => ProviderError::Retryable {
            message,
            retry_after,
            source: None,
        },
        // 400 rule violations, 422 schema violations (never retried) and any other 4xx.
        _ => ProviderError::InvalidSpec { message },
    }
}

/// Removes every secret from `text`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(text.to_string(), |t, s| t.replace(s, "<redacted>"))
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_MESSAGE {
        return s.to_string();
    }
    let mut t: String = s.chars().take(MAX_MESSAGE).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ErrorClass;

    const CAPACITY: &str = r#"{"detail":"There are no longer any instances available with the requested specifications. Please refresh and try again.","status":400,"title":"Bad Request"}"#;
    const VALIDATION: &str = r#"{"detail":"Request validation failed.","errors":["$.action: value must be one of 'start', 'stop', 'restart', 'terminate'"],"status":422,"title":"Unprocessable Entity"}"#;

    #[test]
    fn capacity_matcher() {
        assert!(is_capacity_detail(
            "There are no longer any instances available with the requested specifications. Please refresh and try again."
        ));
        assert!(is_capacity_detail(
            "THERE ARE NO LONGER ANY INSTANCES AVAILABLE"
        ));
        assert!(!is_capacity_detail(
            "exactly one of gpu or cpu must be given"
        ));
        assert!(!is_capacity_detail(""));
    }

    #[test]
    fn statuses_map_to_classes() {
        let cases: &[(u16, &str, &str, ErrorClass)] = &[
            (400, CAPACITY, "InsufficientCapacity", ErrorClass::Capacity),
            (
                400,
                r#"{"detail":"exactly one of gpu or cpu","status":400}"#,
                "InvalidSpec",
                ErrorClass::Terminal,
            ),
            (
                401,
                r#"{"title":"Unauthorized","status":401}"#,
                "AuthenticationFailed",
                ErrorClass::Account,
            ),
            (
                402,
                r#"{"detail":"insufficient balance"}"#,
                "InsufficientFunds",
                ErrorClass::Account,
            ),
            (
                403,
                r#"{"detail":"no access"}"#,
                "AuthenticationFailed",
                ErrorClass::Account,
            ),
            (
                404,
                r#"{"detail":"pod x not found"}"#,
                "NotFound",
                ErrorClass::Retryable,
            ),
            (
                409,
                r#"{"detail":"not allowed"}"#,
                "ProviderUnavailable",
                ErrorClass::Retryable,
            ),
            (422, VALIDATION, "InvalidSpec", ErrorClass::Terminal),
            (
                429,
                r#"{"detail":"rate limit exceeded for the minute window"}"#,
                "RateLimited",
                ErrorClass::Retryable,
            ),
            (500, "oops", "ProviderUnavailable", ErrorClass::Retryable),
            (503, "", "ProviderUnavailable", ErrorClass::Retryable),
            (418, "teapot", "InvalidSpec", ErrorClass::Terminal),
        ];
        for (status, body, reason, class) in cases {
            let e = classify(*status, body.as_bytes(), None, &[]);
            assert_eq!(
                (e.reason(), e.class()),
                (*reason, *class),
                "{status} {body}: {e}"
            );
        }
    }

    #[test]
    fn messages_carry_detail_and_errors_and_keep_retry_after() {
        let e = classify(422, VALIDATION.as_bytes(), None, &[]);
        assert!(
            e.message().contains("Request validation failed.") && e.message().contains("$.action"),
            "{e}"
        );
        let e = classify(429, b"{}", Some(Duration::from_secs(12)), &[]);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(12)));
        let e = classify(503, b"", None, &[]);
        assert!(e.message().contains("HTTP 503"), "{e}");
    }

    #[test]
    fn secrets_are_scrubbed_and_long_text_truncated() {
        let e = classify(
            400,
            br#"{"detail":"bad key rpa_SECRET123 in body"}"#,
            None,
            &["rpa_SECRET123"],
        );
        assert!(!e.message().contains("rpa_SECRET123"), "{e}");
        let long = "x".repeat(1000);
        let e = classify(500, long.as_bytes(), None, &[]);
        assert!(e.message().len() < 400);
        // A secret straddling the length limit is removed whole, not cut in half.
        let straddling = format!(
            "{}rpa_SECRET123{}",
            "y".repeat(MAX_MESSAGE - 5),
            "z".repeat(50)
        );
        let e = classify(500, straddling.as_bytes(), None, &["rpa_SECRET123"]);
        assert!(!e.message().contains("rpa_SEC"), "{e}");
    }
}
