//! The workload a machine runs, with Secret values resolved, and the reporting wrapper that
//! runctl puts around the command when the TrainingJob controller asks for one.

use std::collections::BTreeMap;
use std::fmt;

/// Env var: callback URL the wrapper reports to.
pub const ENV_REPORT_URL: &str = "RUNCTL_REPORT_URL";
/// Env var: bearer token of the attempt (a Secret value: never logged).
pub const ENV_REPORT_TOKEN: &str = "RUNCTL_REPORT_TOKEN";
/// Env var: heartbeat interval in seconds.
pub const ENV_HEARTBEAT_INTERVAL: &str = "RUNCTL_HEARTBEAT_INTERVAL";
/// Env var: seconds without an acknowledged heartbeat before the wrapper stops the workload.
pub const ENV_SELF_TERMINATE_AFTER: &str = "RUNCTL_SELF_TERMINATE_AFTER";
/// Base URL of the EC2 instance metadata service (IMDSv2), set on AWS spot machines: the wrapper
/// watches it for the spot instance-action notice.
pub const ENV_IMDS_URL: &str = "RUNCTL_IMDS_URL";
/// The EC2 instance metadata service.
pub const IMDS_URL: &str = "http://169.254.169.254";

/// Reporting settings with the token resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct Reporting {
    /// Callback URL for this attempt.
    pub callback_url: String,
    /// Bearer token (secret).
    pub token: String,
    /// Heartbeat interval in seconds.
    pub heartbeat_interval_seconds: u32,
    /// Self-termination timeout in seconds.
    pub self_terminate_after_seconds: u32,
}

impl fmt::Debug for Reporting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporting")
            .field("callback_url", &self.callback_url)
            .field("token", &"<redacted>")
            .field(
                "heartbeat_interval_seconds",
                &self.heartbeat_interval_seconds,
            )
            .field(
                "self_terminate_after_seconds",
                &self.self_terminate_after_seconds,
            )
            .finish()
    }
}

/// The container to run, ready for a provider: env values are resolved (and may be secret).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Workload {
    /// Image reference.
    pub image: String,
    /// Entrypoint override (empty: the image's entrypoint).
    pub command: Vec<String>,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment with values resolved. Values may come from Secrets.
    pub env: BTreeMap<String, String>,
    /// Reporting wrapper settings.
    pub reporting: Option<Reporting>,
}

impl fmt::Debug for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.env.keys().map(String::as_str).collect();
        f.debug_struct("Workload")
            .field("image", &self.image)
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env_names", &names)
            .field("reporting", &self.reporting)
            .finish()
    }
}

/// POSIX shell wrapper: runs the workload, sends heartbeats and the exit code to the callback
/// endpoint, and stops the workload when the operator has not acknowledged a heartbeat for
/// `RUNCTL_SELF_TERMINATE_AFTER` seconds (exit code 125), so spend stays bounded. Needs `curl`
/// or `wget` in the image; without either it runs the workload unreported.
pub const WRAPPER_SCRIPT: &str = r#"set -u
report() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -m 10 -X POST -H "Authorization: Bearer ${RUNCTL_REPORT_TOKEN}" -H 'Content-Type: application/json' -d "$2" "${RUNCTL_REPORT_URL}/$1" >/dev/null 2>&1
  elif command -v wget >/dev/null 2>&1; then
    wget -q -T 10 -O /dev/null --header="Authorization: Bearer ${RUNCTL_REPORT_TOKEN}" --header='Content-Type: application/json' --post-data="$2" "${RUNCTL_REPORT_URL}/$1"
  else
    return 0
  fi
}
reclaim_notice() {
  [ -n "${RUNCTL_IMDS_URL:-}" ] && command -v curl >/dev/null 2>&1 || return 1
  t=$(curl -fsS -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "${RUNCTL_IMDS_URL}/latest/api/token" 2>/dev/null) || return 1
  curl -fsS -m 2 -H "X-aws-ec2-metadata-token: $t" "${RUNCTL_IMDS_URL}/latest/meta-data/spot/instance-action" >/dev/null 2>&1
}
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
last_ack=$(date +%s)
next=0
interrupted=false
next_notice=0
while kill -0 "$child" 2>/dev/null; do
  now=$(date +%s)
  if [ "$now" -ge "$next" ]; then
    if report heartbeat '{"kind":"heartbeat"}'; then last_ack=$now; fi
    next=$((now + ${RUNCTL_HEARTBEAT_INTERVAL:-30}))
  fi
  if [ "$interrupted" = false ] && [ "$now" -ge "$next_notice" ]; then
    if reclaim_notice; then interrupted=true; kill -TERM "$child" 2>/dev/null; fi
    next_notice=$((now + 5))
  fi
  if [ $((now - last_ack)) -ge "${RUNCTL_SELF_TERMINATE_AFTER:-1800}" ]; then
    kill -TERM "$child" 2>/dev/null; sleep 20; kill -KILL "$child" 2>/dev/null
    exit 125
  fi
  sleep 1
done
wait "$child"
code=$?
i=0
while [ "$i" -lt 5 ]; do
  if report exit "{\"kind\":\"exit\",\"exitCode\":$code,\"interrupted\":$interrupted}"; then break; fi
  i=$((i + 1)); sleep 5
done
exit "$code"
"#;

impl Workload {
    /// The argv to run: command and args, wrapped by the reporting wrapper when reporting is
    /// set. Empty when neither command nor args are given and no wrapper is needed (the image's
    /// entrypoint runs).
    pub fn argv(&self) -> Vec<String> {
        let mut inner: Vec<String> = self
            .command
            .iter()
            .chain(self.args.iter())
            .cloned()
            .collect();
        if self.reporting.is_none() {
            return inner;
        }
        let mut argv = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            WRAPPER_SCRIPT.to_string(),
            "runctl-wrapper".to_string(),
        ];
        argv.append(&mut inner);
        argv
    }

    /// The full environment: user env plus the wrapper's settings.
    pub fn full_env(&self) -> BTreeMap<String, String> {
        let mut env = self.env.clone();
        if let Some(r) = &self.reporting {
            env.insert(ENV_REPORT_URL.into(), r.callback_url.clone());
            env.insert(ENV_REPORT_TOKEN.into(), r.token.clone());
            env.insert(
                ENV_HEARTBEAT_INTERVAL.into(),
                r.heartbeat_interval_seconds.to_string(),
            );
            env.insert(
                ENV_SELF_TERMINATE_AFTER.into(),
                r.self_terminate_after_seconds.to_string(),
            );
        }
        env
    }

    /// Every value that must never be printed: env values and the reporting token.
    pub fn secret_values(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.env.values().map(String::as_str).collect();
        if let Some(r) = &self.reporting {
            v.push(&r.token);
        }
        v
    }
}

/// Quotes a string for a POSIX shell (single quotes, with embedded quotes escaped).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> Workload {
        Workload {
            image: "img".into(),
            command: vec!["python".into()],
            args: vec!["train.py".into()],
            env: BTreeMap::from([("API_KEY".into(), "s3cr3t".into())]),
            reporting: None,
        }
    }

    #[test]
    fn debug_never_prints_env_values_or_tokens() {
        let mut wl = w();
        wl.reporting = Some(Reporting {
            callback_url: "https://op/cb".into(),
            token: "tok-secret".into(),
            heartbeat_interval_seconds: 30,
            self_terminate_after_seconds: 600,
        });
        let dbg = format!("{wl:?}");
        assert!(
            !dbg.contains("s3cr3t") && !dbg.contains("tok-secret"),
            "{dbg}"
        );
        assert!(dbg.contains("API_KEY"));
    }

    #[test]
    fn argv_plain_and_wrapped() {
        assert_eq!(w().argv(), vec!["python", "train.py"]);
        let mut wl = w();
        wl.reporting = Some(Reporting {
            callback_url: "u".into(),
            token: "t".into(),
            heartbeat_interval_seconds: 5,
            self_terminate_after_seconds: 60,
        });
        let argv = wl.argv();
        assert_eq!(&argv[..2], &["/bin/sh", "-c"]);
        assert_eq!(&argv[3..], &["runctl-wrapper", "python", "train.py"]);
        assert_eq!(wl.full_env()[ENV_REPORT_TOKEN], "t");
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
