//! Classification of Lyceum answers into [`ProviderError`]s (pure): `{"detail": …}` bodies,
//! FastAPI 422 validation lists, and the one place that knows Lyceum reports a capacity refusal
//! as HTTP 500 "could not be provisioned".

use std::time::Duration;

use serde_json::Value;

use crate::provider::ProviderError;

/// Texts by which Lyceum says it has no machine of that kind (it answers HTTP 500).
pub const CAPACITY_MARKERS: [&str; 2] = ["could not be provisioned", "insufficient capacity"];

/// Longest provider message kept in an error.
const MAX_MESSAGE: usize = 300;

/// A failed call: the classified error, and whether the request may have taken effect
/// (timeout or dropped connection after sending, or a 5xx that is not a capacity refusal).
#[derive(Debug)]
pub struct Failure {
    /// The classified error.
    pub error: ProviderError,
    /// True when a create may have made a machine despite the failure.
    pub ambiguous: bool,
}

impl From<Failure> for ProviderError {
    fn from(f: Failure) -> Self {
        f.error
    }
}

/// The human part of an error body: `detail` as a string, a FastAPI validation list as
/// `loc: msg` pairs (never the echoed `input`), else the text itself, cut to 300 characters.
pub fn detail_of(body: &str) -> String {
    let text = match serde_json::from_str::<Value>(body) {
        Ok(v) => match v.get("detail") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    let loc: Vec<String> = i
                        .get("loc")
                        .and_then(Value::as_array)
                        .map(|l| {
                            l.iter()
                                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    let msg = i.get("msg").and_then(Value::as_str).unwrap_or("invalid");
                    format!("{}: {msg}", loc.join("."))
                })
                .collect::<Vec<_>>()
                .join("; "),
            Some(other) => other.to_string(),
            None => v
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| body.trim().to_string(), str::to_string),
        },
        Err(_) => body.trim().to_string(),
    };
    truncate(&text)
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_MESSAGE {
        return s.to_string();
    }
    let mut t: String = s.chars().take(MAX_MESSAGE).collect();
    t.push('…');
    t
}

/// True when `text` is Lyceum's way of saying it has no capacity.
pub fn is_capacity(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    CAPACITY_MARKERS.iter().any(|m| lower.contains(m))
}

/// Classifies an HTTP error answer of `what` (e.g. `POST /vms/create`).
pub fn classify(what: &str, status: u16, body: &str, retry_after: Option<Duration>) -> Failure {
    let detail = detail_of(body);
    let message = format!("Lyceum {what}: HTTP {status}: {detail}");
    if is_capacity(&detail) {
        return Failure {
            error: ProviderError::Capacity { message },
            ambiguous: false,
        };
    }
    let error = match status {
        401 => ProviderError::Authentication {
            message: format!(
                "{message} (the API key in the credentials Secret is invalid or expired)"
            ),
        },
        403 => ProviderError::Authentication {
            message: format!("{message} (the API key may not use this organization or resource)"),
        },
        402 => ProviderError::Billing {
            message: format!(
                "{message} (the Lyceum account is out of credits; add credits to continue)"
            ),
        },
        404 => ProviderError::NotFound { message },
        408 | 409 | 425 => ProviderError::Retryable {
            message,
            retry_after,
            source: None,
        },
        429 => ProviderError::RateLimited {
            message,
            retry_after,
        },
        400 | 405..=499 => ProviderError::InvalidSpec { message },
        _ => ProviderError::Retryable {
            message,
            retry_after,
            source: None,
        },
    };
    Failure {
        ambiguous: status >= 500,
        error,
    }
}

/// Classifies a transport error; any failure after the connection was made is ambiguous.
pub fn transport(what: &str, err: &reqwest::Error) -> Failure {
    let (kind, ambiguous) = if err.is_connect() {
        ("could not connect", false)
    } else if err.is_timeout() {
        ("timed out", true)
    } else if err.is_decode() {
        ("returned an unreadable body", true)
    } else {
        ("connection failed", true)
    };
    let mut message = format!("Lyceum {what} {kind}");
    // reqwest's Display names the URL (never the Authorization header); keep the root cause.
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
    while let Some(s) = source {
        if s.source().is_none() {
            message.push_str(&format!(": {s}"));
        }
        source = s.source();
    }
    Failure {
        error: ProviderError::Retryable {
            message,
            retry_after: None,
            source: None,
        },
        ambiguous,
    }
}

/// A body that did not parse as the expected shape.
pub fn unexpected(what: &str, err: &serde_json::Error) -> Failure {
    Failure {
        error: ProviderError::retryable(format!(
            "Lyceum {what} answered an unexpected body: {err}"
        )),
        ambiguous: true,
    }
}

/// Replaces every secret value (API key, env values) in `message` with `<redacted>`.
pub fn scrub(message: &str, secrets: &[&str]) -> String {
    let mut out = message.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s, "<redacted>");
    }
    out
}

/// Scrubs the message of an error in place.
pub fn scrub_error(err: ProviderError, secrets: &[&str]) -> ProviderError {
    match err {
        ProviderError::Retryable {
            message,
            retry_after,
            source,
        } => ProviderError::Retryable {
            message: scrub(&message, secrets),
            retry_after,
            source,
        },
        ProviderError::RateLimited {
            message,
            retry_after,
        } => ProviderError::RateLimited {
            message: scrub(&message, secrets),
            retry_after,
        },
        ProviderError::Capacity { message } => ProviderError::Capacity {
            message: scrub(&message, secrets),
        },
        ProviderError::Quota { message } => ProviderError::Quota {
            message: scrub(&message, secrets),
        },
        ProviderError::Authentication { message } => ProviderError::Authentication {
            message: scrub(&message, secrets),
        },
        ProviderError::Billing { message } => ProviderError::Billing {
            message: scrub(&message, secrets),
        },
        ProviderError::InvalidSpec { message } => ProviderError::InvalidSpec {
            message: scrub(&message, secrets),
        },
        ProviderError::NotFound { message } => ProviderError::NotFound {
            message: scrub(&message, secrets),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ErrorClass;

    #[test]
    fn statuses_are_classified() {
        let cases: [(u16, &str, &str, ErrorClass, bool); 12] = [
            (
                500,
                r#"{"detail":"Failed to create VM: instance could not be provisioned"}"#,
                "InsufficientCapacity",
                ErrorClass::Capacity,
                false,
            ),
            (
                500,
                r#"{"detail":"Internal Server Error"}"#,
                "ProviderUnavailable",
                ErrorClass::Retryable,
                true,
            ),
            (
                502,
                "<html>Bad Gateway</html>",
                "ProviderUnavailable",
                ErrorClass::Retryable,
                true,
            ),
            (503, "", "ProviderUnavailable", ErrorClass::Retryable, true),
            (
                401,
                r#"{"detail":"Invalid or expired API key"}"#,
                "AuthenticationFailed",
                ErrorClass::Account,
                false,
            ),
            (
                403,
                r#"{"detail":"Forbidden"}"#,
                "AuthenticationFailed",
                ErrorClass::Account,
                false,
            ),
            (
                402,
                r#"{"detail":"Insufficient credits"}"#,
                "InsufficientFunds",
                ErrorClass::Account,
                false,
            ),
            (
                422,
                r#"{"detail":[{"loc":["body","hardware_profile"],"msg":"Field required","type":"missing"}]}"#,
                "InvalidSpec",
                ErrorClass::Terminal,
                false,
            ),
            (
                400,
                r#"{"detail":"bad"}"#,
                "InvalidSpec",
                ErrorClass::Terminal,
                false,
            ),
            (
                404,
                r#"{"detail":"VM not found"}"#,
                "NotFound",
                ErrorClass::Retryable,
                false,
            ),
            (
                429,
                r#"{"detail":"Too many requests"}"#,
                "RateLimited",
                ErrorClass::Retryable,
                false,
            ),
            (
                409,
                r#"{"detail":"busy"}"#,
                "ProviderUnavailable",
                ErrorClass::Retryable,
                false,
            ),
        ];
        for (status, body, reason, class, ambiguous) in cases {
            let f = classify("POST /vms/create", status, body, None);
            assert_eq!(f.error.reason(), reason, "{status} {body}");
            assert_eq!(f.error.class(), class, "{status} {body}");
            assert_eq!(f.ambiguous, ambiguous, "{status} {body}");
        }
    }

    #[test]
    fn billing_message_is_clear() {
        let f = classify(
            "POST /execution/image/start",
            402,
            r#"{"detail":"Insufficient credits"}"#,
            None,
        );
        assert!(f.error.message().contains("out of credits"), "{}", f.error);
    }

    #[test]
    fn validation_detail_lists_fields_without_input() {
        let body = r#"{"detail":[{"loc":["body","instance_specs","gpu_count"],"msg":"must be 1, 2, 4 or 8","type":"value_error","input":"TOKEN=s3cr3t"},{"loc":["body",0],"msg":"x","type":"y"}]}"#;
        let d = detail_of(body);
        assert_eq!(
            d,
            "body.instance_specs.gpu_count: must be 1, 2, 4 or 8; body.0: x"
        );
    }

    #[test]
    fn detail_falls_back_to_text_and_truncates() {
        assert_eq!(detail_of("plain text"), "plain text");
        assert_eq!(detail_of(r#"{"message":"m"}"#), "m");
        assert_eq!(
            detail_of(&"x".repeat(1000)).chars().count(),
            MAX_MESSAGE + 1
        );
    }

    #[test]
    fn rate_limit_keeps_retry_after() {
        let f = classify("GET /vms/list", 429, "{}", Some(Duration::from_secs(2)));
        assert_eq!(f.error.retry_after(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn scrubbing_removes_secrets() {
        let e = scrub_error(
            ProviderError::InvalidSpec {
                message: "bad lk_abcdef and hunter22".into(),
            },
            &["lk_abcdef", "hunter22", "x"],
        );
        assert_eq!(e.message(), "bad <redacted> and <redacted>");
    }
}
