//! Logging setup: tracing-subscriber writing text or JSON lines to stderr, filtered by the
//! configured level, or by `RUST_LOG` when that is set.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

impl LogFormat {
    /// The name used in configuration (`text`, `json`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?}, expected \"text\" or \"json\""
            )),
        }
    }
}

/// Errors of [`init`].
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The level (or `RUST_LOG`) is not a valid filter.
    #[error("invalid log filter {filter:?} from {origin}")]
    Filter {
        /// The filter text.
        filter: String,
        /// `RUST_LOG` or `log.level`.
        origin: &'static str,
        /// The parse error.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber was already installed.
    #[error("failed to install the log subscriber")]
    Install(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// The filter to use: `rust_log` when set and not empty, else `level`.
pub fn filter(level: &str, rust_log: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    let (text, origin) = match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(env) => (env, "RUST_LOG"),
        None => (level.trim(), "log.level"),
    };
    EnvFilter::try_new(text).map_err(|source| TelemetryError::Filter {
        filter: text.to_owned(),
        origin,
        source,
    })
}

/// Installs the global subscriber writing `format` lines at `level`; `RUST_LOG` wins when set.
pub fn init(format: LogFormat, level: &str) -> Result<(), TelemetryError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(level, rust_log.as_deref())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .flatten_event(true)
            .try_init(),
    }
    .map_err(TelemetryError::Install)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_when_set() {
        assert_eq!(
            filter("info", Some("runctl=trace"))
                .expect("valid")
                .to_string(),
            "runctl=trace"
        );
        assert_eq!(filter("debug", None).expect("valid").to_string(), "debug");
        assert_eq!(
            filter("warn", Some("  ")).expect("valid").to_string(),
            "warn"
        );
    }

    #[test]
    fn bad_filters_name_their_origin() {
        let e = filter("info,runctl=loud", None).expect_err("invalid level");
        assert!(e.to_string().contains("log.level"), "{e}");
        let e = filter("info", Some("x=nope")).expect_err("invalid RUST_LOG");
        assert!(e.to_string().contains("RUST_LOG"), "{e}");
    }

    #[test]
    fn formats_parse() {
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
        assert_eq!(LogFormat::Json.as_str(), "json");
    }

    #[test]
    fn second_init_fails() {
        // Whichever test installs first, a later install in the same process must fail cleanly.
        // Level "off" keeps the other tests' logs out of the output.
        let _ = init(LogFormat::Json, "off");
        assert!(matches!(
            init(LogFormat::Text, "info"),
            Err(TelemetryError::Install(_))
        ));
    }
}
