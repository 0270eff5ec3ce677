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
/// Env var: seconds after the workload ended during which the wrapper keeps retrying its exit
/// report.
pub const ENV_REPORT_GRACE: &str = "RUNCTL_REPORT_GRACE";
/// Env var: a file that appears when the provider announced that it takes the machine back (set
/// on AWS spot machines, where the host watches the metadata service and writes it before it
/// sends the container SIGTERM). The wrapper reports an exit as interrupted when it exists.
pub const ENV_INTERRUPTION_FILE: &str = "RUNCTL_INTERRUPTION_FILE";
/// Env var: the machine's lifetime deadline in Unix seconds. Once it has passed the wrapper stops
/// the workload (exit 124) and ends the machine, and does not start the workload at all when it
/// has passed already (a restarted container). Set by providers where nothing else on the
/// provider's side enforces `maxLifetimeSeconds` (RunPod).
pub const ENV_DEADLINE: &str = "RUNCTL_DEADLINE";
/// Env var: RunPod's REST v2 base URL. When set, the wrapper deletes its own pod
/// (`DELETE <url>/pods/$RUNPOD_POD_ID` with the pod-scoped `RUNPOD_API_KEY` that RunPod puts in
/// every pod's environment; `runpodctl remove pod` as a fallback) once it is done: after the
/// workload's exit report, at the deadline, or when heartbeats stopped being acknowledged. An
/// exited container alone leaves the pod `EXITED`, and its disk keeps billing.
pub const ENV_RUNPOD_API_URL: &str = "RUNCTL_RUNPOD_API_URL";
/// Env var: `no` stops the wrapper from shipping the workload's output (set where runctl reads
/// it from the provider's own log API: Lyceum runs).
pub const ENV_SHIP_LOGS: &str = "RUNCTL_SHIP_LOGS";
/// Env var: seconds between two chunks of output the wrapper ships (default 5).
pub const ENV_LOG_INTERVAL: &str = "RUNCTL_LOG_INTERVAL";
/// Largest chunk of output the wrapper posts, in bytes (under the endpoint's body limit).
pub const LOG_CHUNK_BYTES: usize = 15 * 1024;
/// Env var RunPod sets in every pod: the pod's id.
pub const ENV_RUNPOD_POD_ID: &str = "RUNPOD_POD_ID";
/// Env var RunPod sets in every pod: an API key limited to that pod.
pub const ENV_RUNPOD_API_KEY: &str = "RUNPOD_API_KEY";

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
    /// Seconds after the workload ended during which the exit report is retried.
    pub report_grace_seconds: u32,
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
            .field("report_grace_seconds", &self.report_grace_seconds)
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

/// POSIX shell wrapper (`/bin/sh`, no bashisms) around the workload, run inside the user's image
/// on every provider. It
///
/// - picks the image's HTTP client once, the first of `curl`, `wget` and `python3`
///   (`urllib.request`), and POSTs heartbeats (every `RUNCTL_HEARTBEAT_INTERVAL` seconds) and the
///   exit code to `$RUNCTL_REPORT_URL/{heartbeat,exit}` with the attempt's bearer token (which
///   `python3` reads from its environment; no client prints it);
/// - tells the answers apart: 2xx is acknowledged; 401, 403, 404 and 410 are definitive (the
///   attempt is over or its token is gone), so the exit report is not sent again; anything else
///   (429, 5xx, other codes, no answer) is worth another try. `wget`'s code is the last status
///   line of its `-S` output (GNU wget and BusyBox); when it printed none, there was no answer.
///   A BusyBox wget built without its timeout option crashes on `-T` (Debian's busybox before
///   1.36.1-5): the wrapper notices once and bounds each call with `timeout 15` instead, when the
///   image has `timeout`;
/// - retries the exit report with exponential backoff (1, 2, 4 ... 30 s) until it is
///   acknowledged, refused for good, or `RUNCTL_REPORT_GRACE` seconds (default 90) have passed
///   since the workload ended, then exits with the workload's code;
/// - stops the workload (exit 125) when no heartbeat was acknowledged (2xx) for
///   `RUNCTL_SELF_TERMINATE_AFTER` seconds, so spend stays bounded without a control plane;
/// - stops the workload (exit 124) once the Unix time `RUNCTL_DEADLINE` has passed, and does not
///   start it when it has passed already;
/// - on RunPod (`RUNCTL_RUNPOD_API_URL` set) deletes its own pod when it is done, whichever of
///   the above ended it, with the pod-scoped key RunPod gives every pod (see
///   [`ENV_RUNPOD_API_URL`]); each outcome is one `runctl-wrapper:` line on stderr (the pod's
///   log), the key is never printed;
/// - ships the workload's output (stdout and stderr, which still go to the container's own
///   stdout and stderr through `tee`) to `$RUNCTL_REPORT_URL/logs?offset=<n>`: every
///   `RUNCTL_LOG_INTERVAL` seconds (default 5) the newest output since the last acknowledged
///   chunk, at most [`LOG_CHUNK_BYTES`] bytes (older unsent output is skipped, and the offset
///   says how much), and after the workload ended the last up to four chunks, before the exit
///   report. A chunk answered 421 (a standby replica: only the leader keeps output) is sent
///   again at once, up to eight more times (each try may reach another replica). The output
///   goes through a file in `$TMPDIR` (as large as the output): the workload
///   never waits for the network. It needs `mkfifo`, `tee`, `tail`, `head`, `wc`, `mkdir` and
///   `rm`; without one of them, or with `RUNCTL_SHIP_LOGS=no`, nothing is shipped;
/// - forwards SIGTERM and SIGINT to the workload; on AWS spot machines the host sends the
///   container SIGTERM on the spot instance-action notice after writing the file named by
///   `RUNCTL_INTERRUPTION_FILE`, and the wrapper reports an exit with that file present as
///   interrupted. The workload never needs the instance metadata service for it.
///
/// In an image with none of the three clients it prints one line saying so to stderr: no reports
/// and no heartbeat dead-man switch (it would stop every such job). Without a deadline or a pod
/// to delete it then `exec`s the workload, and the machine's exit code is the workload's, which
/// is what runctl then goes by; with them it still enforces the deadline (an HTTP client is
/// needed only for the pod's `DELETE`; `runpodctl`, when the image has it, is tried too). Without
/// `RUNCTL_REPORT_URL` (no reporting asked for) it sends nothing and keeps the rest. Besides the
/// client it needs `date` and `sleep` (`kill`, `wait`, `command` and `[` are builtins of `sh`).
pub const WRAPPER_SCRIPT: &str = r#"set -u
py='import os, sys, urllib.error, urllib.request
data = open(sys.argv[3], "rb").read() if len(sys.argv) > 3 else sys.argv[2].encode()
req = urllib.request.Request(os.environ["RUNCTL_REPORT_URL"] + "/" + sys.argv[1], data=data, method="POST",
    headers={"Authorization": "Bearer " + os.environ["RUNCTL_REPORT_TOKEN"], "Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(req, timeout=10).getcode())
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print(0)'
pydel='import os, sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1], method="DELETE", headers={"Authorization": "Bearer " + os.environ["RUNPOD_API_KEY"]})
try:
    print(urllib.request.urlopen(req, timeout=10).getcode())
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print(0)'
report() {
  c=000
  case "$client" in
  curl)
    if [ -n "${3:-}" ]; then
      c=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer ${RUNCTL_REPORT_TOKEN}" -H 'Content-Type: application/octet-stream' --data-binary "@$3" "${RUNCTL_REPORT_URL}/$1" 2>/dev/null)
    else
      c=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer ${RUNCTL_REPORT_TOKEN}" -H 'Content-Type: application/json' -d "$2" "${RUNCTL_REPORT_URL}/$1" 2>/dev/null)
    fi
    ;;
  wget)
    if [ -n "${3:-}" ]; then
      out=$($wget_limit wget -S $wget_timeout -t 1 -O /dev/null --header="Authorization: Bearer ${RUNCTL_REPORT_TOKEN}" --header='Content-Type: application/octet-stream' --post-file="$3" "${RUNCTL_REPORT_URL}/$1" 2>&1)
    else
      out=$($wget_limit wget -S $wget_timeout -t 1 -O /dev/null --header="Authorization: Bearer ${RUNCTL_REPORT_TOKEN}" --header='Content-Type: application/json' --post-data="$2" "${RUNCTL_REPORT_URL}/$1" 2>&1)
    fi
    while read -r a b rest; do
      case "$a" in HTTP/*) c=$b ;; esac
    done <<EOF
$out
EOF
    ;;
  python3)
    if [ -n "${3:-}" ]; then
      c=$(python3 -c "$py" "$1" "$2" "$3" 2>/dev/null)
    else
      c=$(python3 -c "$py" "$1" "$2" 2>/dev/null)
    fi
    ;;
  esac
  case "$c" in
  2[0-9][0-9]) return 0 ;;
  401|403|404|410) return 2 ;;
  421) return 3 ;;
  *) return 1 ;;
  esac
}
end_pod() {
  [ -n "${RUNCTL_RUNPOD_API_URL:-}" ] || return 0
  if [ -z "${RUNPOD_POD_ID:-}" ] || [ -z "${RUNPOD_API_KEY:-}" ]; then
    echo 'runctl-wrapper: cannot delete this pod: RunPod set no RUNPOD_POD_ID or RUNPOD_API_KEY; the pod stays EXITED (its disk bills) until runctl deletes it' >&2
    return 1
  fi
  url="${RUNCTL_RUNPOD_API_URL%/}/pods/${RUNPOD_POD_ID}"
  c=none
  tries=0
  while [ "$client" != none ] && [ "$tries" -lt 4 ]; do
    c=000
    case "$client" in
    curl)
      c=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer ${RUNPOD_API_KEY}" "$url" 2>/dev/null)
      ;;
    wget)
      out=$($wget_limit wget -S $wget_timeout -t 1 -O /dev/null --method=DELETE --header="Authorization: Bearer ${RUNPOD_API_KEY}" "$url" 2>&1)
      while read -r a b rest; do
        case "$a" in HTTP/*) c=$b ;; esac
      done <<EOF
$out
EOF
      ;;
    python3)
      c=$(python3 -c "$pydel" "$url" 2>/dev/null)
      ;;
    esac
    case "$c" in
    2[0-9][0-9]|404)
      echo "runctl-wrapper: deleted pod ${RUNPOD_POD_ID} (HTTP $c)" >&2
      return 0
      ;;
    401|403) break ;;
    esac
    tries=$((tries + 1))
    sleep $((tries * 2))
  done
  if command -v runpodctl >/dev/null 2>&1 && runpodctl remove pod "$RUNPOD_POD_ID" >/dev/null 2>&1; then
    echo "runctl-wrapper: deleted pod ${RUNPOD_POD_ID} with runpodctl" >&2
    return 0
  fi
  case "$c" in
  none) why='this image has no curl, wget or python3 to send the DELETE' ;;
  000|0) why="DELETE with the pod's RUNPOD_API_KEY got no answer" ;;
  *) why="DELETE with the pod's RUNPOD_API_KEY answered HTTP $c" ;;
  esac
  echo "runctl-wrapper: could not delete pod ${RUNPOD_POD_ID}: $why, and runpodctl did not delete it either; the pod stays EXITED (its disk bills) until runctl deletes it" >&2
  return 1
}
finish() {
  end_pod
  exit "$1"
}
ship_logs() {
  [ "$logs" = yes ] || return 0
  size=$(wc -c <"$logdir/log" 2>/dev/null) || return 0
  size=$((size + 0))
  if [ $((size - log_off)) -gt $(($1 * LOG_CHUNK)) ]; then log_off=$((size - $1 * LOG_CHUNK)); fi
  sent=0
  while [ "$log_off" -lt "$size" ] && [ "$sent" -lt "$1" ]; do
    len=$((size - log_off))
    [ "$len" -le "$LOG_CHUNK" ] || len=$LOG_CHUNK
    tail -c +$((log_off + 1)) "$logdir/log" 2>/dev/null | head -c "$len" >"$logdir/chunk" 2>/dev/null
    report "logs?offset=$log_off" '' "$logdir/chunk"
    r=$?
    again=0
    while [ "$r" -eq 3 ] && [ "$again" -lt 8 ]; do
      report "logs?offset=$log_off" '' "$logdir/chunk"
      r=$?
      again=$((again + 1))
    done
    case "$r" in
    0) log_off=$((log_off + len)) ;;
    2) logs=gone; return 0 ;;
    *) return 0 ;;
    esac
    sent=$((sent + 1))
  done
}
if command -v curl >/dev/null 2>&1; then client=curl
elif command -v wget >/dev/null 2>&1; then
  client=wget
  wget_timeout='-T 10'
  wget_limit=
  if [ "$( { wget -T 10 >/dev/null 2>&1; echo "$?"; } 2>/dev/null)" -ge 128 ]; then
    wget_timeout=
    if command -v timeout >/dev/null 2>&1; then wget_limit='timeout 15'; fi
  fi
elif command -v python3 >/dev/null 2>&1; then client=python3
else client=none
fi
reporting=yes
[ -n "${RUNCTL_REPORT_URL:-}" ] || reporting=no
if [ "$client" = none ] && [ "$reporting" = yes ]; then
  echo 'runctl-wrapper: no curl, wget or python3 in this image: the workload runs without reports (no heartbeats, no exit report); runctl judges the attempt by what the provider reports' >&2
  reporting=no
fi
if [ "$reporting" = no ] && [ -z "${RUNCTL_DEADLINE:-}" ] && [ -z "${RUNCTL_RUNPOD_API_URL:-}" ]; then
  exec "$@"
  exit 0
fi
if [ -n "${RUNCTL_DEADLINE:-}" ] && [ "$(date +%s)" -ge "$RUNCTL_DEADLINE" ]; then
  echo "runctl-wrapper: the machine's lifetime deadline has passed: the workload is not started" >&2
  finish 124
fi
logs=$reporting
[ "${RUNCTL_SHIP_LOGS:-yes}" != no ] || logs=no
for t in mkfifo tee tail head wc mkdir rm; do
  command -v "$t" >/dev/null 2>&1 || logs=no
done
LOG_CHUNK=15360
log_off=0
if [ "$logs" = yes ]; then
  logdir="${TMPDIR:-/tmp}/runctl-wrapper.$$"
  if mkdir -m 700 "$logdir" 2>/dev/null && mkfifo "$logdir/out" "$logdir/err" 2>/dev/null && : >"$logdir/log"; then
    tee -a "$logdir/log" <"$logdir/out" &
    tee_out=$!
    tee -a "$logdir/log" <"$logdir/err" >&2 &
    tee_err=$!
  else
    logs=no
  fi
fi
if [ "$logs" = yes ]; then
  "$@" >"$logdir/out" 2>"$logdir/err" &
else
  "$@" &
fi
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
stop_child() {
  kill -TERM "$child" 2>/dev/null
  n=0
  while [ "$n" -lt 20 ] && kill -0 "$child" 2>/dev/null; do
    sleep 1
    n=$((n + 1))
  done
  kill -KILL "$child" 2>/dev/null
}
last_ack=$(date +%s)
next=0
next_log=$((last_ack + ${RUNCTL_LOG_INTERVAL:-5}))
while kill -0 "$child" 2>/dev/null; do
  now=$(date +%s)
  if [ "$reporting" = yes ]; then
    if [ "$now" -ge "$next" ]; then
      if report heartbeat '{"kind":"heartbeat"}'; then last_ack=$now; fi
      next=$((now + ${RUNCTL_HEARTBEAT_INTERVAL:-30}))
    fi
    if [ "$now" -ge "$next_log" ]; then
      ship_logs 1
      next_log=$((now + ${RUNCTL_LOG_INTERVAL:-5}))
    fi
    if [ $((now - last_ack)) -ge "${RUNCTL_SELF_TERMINATE_AFTER:-1800}" ]; then
      echo "runctl-wrapper: no heartbeat acknowledged for ${RUNCTL_SELF_TERMINATE_AFTER:-1800} s: stopping the workload" >&2
      stop_child
      finish 125
    fi
  fi
  if [ -n "${RUNCTL_DEADLINE:-}" ] && [ "$now" -ge "$RUNCTL_DEADLINE" ]; then
    echo "runctl-wrapper: the machine's lifetime deadline has passed: stopping the workload" >&2
    stop_child
    finish 124
  fi
  sleep 1
done
wait "$child"
code=$?
if [ -n "${logdir:-}" ]; then
  n=0
  while [ "$n" -lt 10 ] && { kill -0 "$tee_out" 2>/dev/null || kill -0 "$tee_err" 2>/dev/null; }; do
    sleep 1
    n=$((n + 1))
  done
  ship_logs 4
  rm -rf "$logdir"
fi
if [ "$reporting" = yes ]; then
  interrupted=false
  if [ -n "${RUNCTL_INTERRUPTION_FILE:-}" ] && [ -e "$RUNCTL_INTERRUPTION_FILE" ]; then interrupted=true; fi
  report_until=$(($(date +%s) + ${RUNCTL_REPORT_GRACE:-90}))
  delay=1
  while :; do
    report exit "{\"kind\":\"exit\",\"exitCode\":$code,\"interrupted\":$interrupted}"
    case "$?" in 1|3) ;; *) break ;; esac
    left=$((report_until - $(date +%s)))
    [ "$left" -gt 0 ] || break
    [ "$delay" -le "$left" ] || delay=$left
    sleep "$delay"
    delay=$((delay * 2))
    [ "$delay" -le 30 ] || delay=30
  done
fi
finish "$code"
"#;

impl Workload {
    /// The argv to run: command and args, wrapped by the reporting wrapper when reporting is
    /// set. Empty when neither command nor args are given and no wrapper is needed (the image's
    /// entrypoint runs).
    pub fn argv(&self) -> Vec<String> {
        if self.reporting.is_none() {
            return self.command_line();
        }
        self.wrapped_argv()
    }

    /// Command and args, unwrapped.
    pub fn command_line(&self) -> Vec<String> {
        self.command
            .iter()
            .chain(self.args.iter())
            .cloned()
            .collect()
    }

    /// The command line inside the wrapper, whether or not reporting is set: a provider that
    /// needs the wrapper's deadline or its self-deleting end (RunPod) wraps a workload that does
    /// not report, too. Without `RUNCTL_REPORT_URL` the wrapper sends no reports.
    pub fn wrapped_argv(&self) -> Vec<String> {
        let mut argv = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            WRAPPER_SCRIPT.to_string(),
            "runctl-wrapper".to_string(),
        ];
        argv.extend(self.command_line());
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
            env.insert(ENV_REPORT_GRACE.into(), r.report_grace_seconds.to_string());
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
            report_grace_seconds: 90,
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
            report_grace_seconds: 45,
        });
        let argv = wl.argv();
        assert_eq!(&argv[..2], &["/bin/sh", "-c"]);
        assert_eq!(&argv[3..], &["runctl-wrapper", "python", "train.py"]);
        let env = wl.full_env();
        assert_eq!(env[ENV_REPORT_TOKEN], "t");
        assert_eq!(env[ENV_REPORT_GRACE], "45");
        wl.reporting = None;
        assert_eq!(wl.argv(), wl.command_line());
        assert_eq!(
            wl.wrapped_argv(),
            argv,
            "wrapped the same with or without reporting"
        );
    }

    #[test]
    fn the_wrapper_ships_chunks_of_the_documented_size() {
        assert!(WRAPPER_SCRIPT.contains(&format!("\nLOG_CHUNK={LOG_CHUNK_BYTES}\n")));
        const { assert!(LOG_CHUNK_BYTES < crate::callback::limit::MAX_BODY_BYTES) };
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
