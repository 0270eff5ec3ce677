//! runctl's reporting wrapper (`WRAPPER_SCRIPT`, the `/bin/sh` script every machine runs the
//! workload under) run for real with `/bin/sh`, against the operator's callback endpoint and a
//! counting callback stand-in: it reports heartbeats and the exit code. With the EC2 host's spot
//! watch (`userdata::SPOT_WATCH`, run against a stand-in of the instance metadata service,
//! IMDSv2, with a stand-in `docker`), a spot reclaim notice reaches the workload as SIGTERM and
//! the exit is reported as an interruption.
//!
//! Images are played by a temporary directory used as the whole `PATH`, holding links to only the
//! tools that image has: one with python3 but neither curl nor wget, one with only wget, one with
//! nothing but `sh` and coreutils (and, where the machine has busybox, a BusyBox image).

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{self, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use runctl::callback::{self, AttemptId, CallbackState, Reports};
use runctl::provider::aws::userdata::{CONTAINER_NAME, SPOT_WATCH};
use runctl::provider::workload::WRAPPER_SCRIPT;
use support::{TestEnv, eventually, fast_sim};
use tokio_util::sync::CancellationToken;

/// A metadata service that hands out IMDSv2 tokens and answers the spot instance-action once
/// `reclaim` is set (404 before, as EC2 does).
async fn imds(reclaim: Arc<AtomicBool>) -> String {
    async fn token() -> &'static str {
        "imds-token"
    }
    async fn action(
        State(reclaim): State<Arc<AtomicBool>>,
        headers: HeaderMap,
    ) -> (StatusCode, &'static str) {
        if headers
            .get("x-aws-ec2-metadata-token")
            .and_then(|v| v.to_str().ok())
            != Some("imds-token")
        {
            return (StatusCode::UNAUTHORIZED, "");
        }
        if reclaim.load(Ordering::SeqCst) {
            (
                StatusCode::OK,
                r#"{"action":"terminate","time":"2026-12-03T12:00:00Z"}"#,
            )
        } else {
            (StatusCode::NOT_FOUND, "")
        }
    }
    let app = Router::new()
        .route("/latest/api/token", put(token))
        .route("/latest/meta-data/spot/instance-action", get(action))
        .with_state(reclaim);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

struct Bed {
    env: TestEnv,
    reports: Arc<Reports>,
    url: String,
    token: String,
    stop: CancellationToken,
}

async fn bed(job: &str) -> Bed {
    let env = TestEnv::start(fast_sim()).await;
    let good = env.token_secret(job, 1).await;
    let reports = Arc::new(Reports::new());
    let stop = CancellationToken::new();
    let addr = callback::serve(
        "127.0.0.1:0".parse().unwrap(),
        callback::router(CallbackState::new(env.client.clone(), reports.clone())),
        stop.clone(),
    )
    .await
    .unwrap();
    let url = format!("http://{addr}/callback/{}/{job}/1", env.ns);
    Bed {
        env,
        reports,
        url,
        token: good,
        stop,
    }
}

fn wrapper(
    bed: &Bed,
    interruption_file: Option<&Path>,
    workload: &[&str],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.args(["-c", WRAPPER_SCRIPT, "runctl-wrapper"])
        .args(workload)
        .env("RUNCTL_REPORT_URL", &bed.url)
        .env("RUNCTL_REPORT_TOKEN", &bed.token)
        .env("RUNCTL_HEARTBEAT_INTERVAL", "1")
        .kill_on_drop(true);
    if let Some(f) = interruption_file {
        cmd.env("RUNCTL_INTERRUPTION_FILE", f);
    }
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrapper_reports_heartbeats_and_the_exit_code() {
    let bed = bed("plain").await;
    let status = wrapper(&bed, None, &["sh", "-c", "sleep 2; exit 3"])
        .status()
        .await
        .unwrap();
    assert_eq!(
        status.code(),
        Some(3),
        "the wrapper exits with the workload's code"
    );
    let id = AttemptId {
        namespace: bed.env.ns.clone(),
        job: "plain".into(),
        attempt: 1,
    };
    let r = bed.reports.get(&id).expect("reports arrived");
    assert!(r.last_heartbeat.is_some());
    assert_eq!((r.exit_code, r.interrupted), (Some(3), false));
    bed.stop.cancel();
}

/// Issue "Truthful outcomes", item 6: a spot reclaim used to SIGTERM the workload with no
/// warning to it, and its exit 143 counted as the workload's failure. Issue 17, item 7: the
/// container no longer reaches the metadata service (IMDSv2 hop limit 1, bridge network), so the
/// host watches it: the host's `SPOT_WATCH` writes the notice where the container sees it and
/// sends the container SIGTERM (`docker kill`, played by a stand-in that signals the wrapper,
/// the container's first process, and refuses once as if the container were not running yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_reclaim_notice_sigterms_the_workload_and_reports_an_interruption() {
    let bed = bed("spot").await;
    let reclaim = Arc::new(AtomicBool::new(false));
    let imds_url = imds(reclaim.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let notice_dir = dir.path().join("notice");
    std::fs::create_dir(&notice_dir).unwrap();
    let notice = notice_dir.join("spot-interruption");
    let mut child = wrapper(&bed, Some(&notice), &["sleep", "600"])
        .spawn()
        .unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let docker_log = dir.path().join("docker.log");
    write_script(
        &bin.join("docker"),
        r#"echo "$*" >> "$DOCKER_LOG"
[ "$(wc -l < "$DOCKER_LOG")" -ge 2 ] || exit 1
kill -TERM "$WRAPPER_PID""#,
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut watch = tokio::process::Command::new("/bin/sh")
        .args(["-c", SPOT_WATCH, "runctl-spot-watch", &imds_url])
        .arg(&notice)
        .arg(CONTAINER_NAME)
        .env("PATH", path)
        .env("DOCKER_LOG", &docker_log)
        .env("WRAPPER_PID", child.id().unwrap().to_string())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let id = AttemptId {
        namespace: bed.env.ns.clone(),
        job: "spot".into(),
        attempt: 1,
    };
    eventually(20, "a heartbeat", || async {
        bed.reports.get(&id)?.last_heartbeat.map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        bed.reports.get(&id).and_then(|r| r.exit_code).is_none() && !notice.exists(),
        "no notice, no SIGTERM"
    );
    reclaim.store(true, Ordering::SeqCst);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the wrapper ends after the notice")
        .unwrap();
    assert_eq!(status.code(), Some(143), "the workload got SIGTERM");
    let r = bed.reports.get(&id).expect("reports");
    assert_eq!((r.exit_code, r.interrupted), (Some(143), true));
    let watched = tokio::time::timeout(Duration::from_secs(10), watch.wait())
        .await
        .expect("the watch ends after signalling")
        .unwrap();
    assert!(watched.success());
    assert_eq!(
        std::fs::read_to_string(&docker_log).unwrap(),
        format!("kill --signal TERM {CONTAINER_NAME}\n").repeat(2),
        "docker kill, tried again while it failed"
    );
    // The workload can read the notice itself, without the metadata service.
    assert_eq!(
        std::fs::read_to_string(&notice).unwrap(),
        r#"{"action":"terminate","time":"2026-12-03T12:00:00Z"}"#
    );
    bed.stop.cancel();
}

/// A SIGTERM without the notice (an operator stopping the container) is forwarded to the
/// workload but is no interruption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_without_the_notice_is_not_an_interruption() {
    let bed = bed("stopped").await;
    let dir = tempfile::tempdir().unwrap();
    let notice = dir.path().join("spot-interruption");
    let mut child = wrapper(&bed, Some(&notice), &["sleep", "600"])
        .spawn()
        .unwrap();
    let id = AttemptId {
        namespace: bed.env.ns.clone(),
        job: "stopped".into(),
        attempt: 1,
    };
    eventually(20, "a heartbeat", || async {
        bed.reports.get(&id)?.last_heartbeat.map(|_| ())
    })
    .await;
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the wrapper ends")
        .unwrap();
    assert_eq!(status.code(), Some(143));
    let r = bed.reports.get(&id).expect("reports");
    assert_eq!((r.exit_code, r.interrupted), (Some(143), false));
    bed.stop.cancel();
}

fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The tool `name` of this machine, to link into an image: found on `PATH`, except `python3`,
/// which is the real interpreter (on a pyenv machine `python3` on `PATH` is a shell script shim
/// that needs pyenv, bash and more; the real binary finds its standard library by itself).
fn host_tool(name: &str) -> PathBuf {
    if name == "python3" {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 on this machine");
        let exe = String::from_utf8(out.stdout).unwrap();
        return std::fs::canonicalize(exe.trim()).expect("the real python3");
    }
    on_path(name).unwrap_or_else(|| panic!("{name} on this machine's PATH"))
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A container image stand-in: a directory used as the whole `PATH`, with links to only the tools
/// that image has. The wrapper runs with the image's own `sh` and no other environment.
struct Image {
    dir: tempfile::TempDir,
}

impl Image {
    /// An image with the machine's `tools`.
    fn with(tools: &[&str]) -> Image {
        let dir = tempfile::tempdir().unwrap();
        for tool in tools {
            std::os::unix::fs::symlink(host_tool(tool), dir.path().join(tool)).unwrap();
        }
        Image { dir }
    }

    /// `sh`, `date` and `sleep` (what the wrapper and the test workloads need; `kill`, `wait`
    /// and `command` are builtins of `sh`) and the HTTP `client`, if any.
    fn with_client(client: Option<&str>) -> Image {
        let mut tools = vec!["sh", "date", "sleep"];
        tools.extend(client);
        Image::with(&tools)
    }

    /// A BusyBox image: every tool is the machine's busybox, if it has one.
    fn busybox() -> Option<Image> {
        let busybox = on_path("busybox")?;
        let dir = tempfile::tempdir().unwrap();
        for tool in ["sh", "date", "sleep", "wget", "timeout"] {
            std::os::unix::fs::symlink(&busybox, dir.path().join(tool)).unwrap();
        }
        Some(Image { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The wrapper as a machine runs it in this image (`env -i PATH=<image> ... sh -c`), with
    /// heartbeats every second.
    fn wrapper(&self, url: &str, token: &str, workload: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.path().join("sh"));
        cmd.args(["-c", WRAPPER_SCRIPT, "runctl-wrapper"])
            .args(workload)
            .env_clear()
            .env("PATH", self.path())
            .env("RUNCTL_REPORT_URL", url)
            .env("RUNCTL_REPORT_TOKEN", token)
            .env("RUNCTL_HEARTBEAT_INTERVAL", "1")
            .kill_on_drop(true);
        cmd
    }
}

/// Runs `cmd` to its end (at most `secs`), with its output.
async fn run(mut cmd: tokio::process::Command, secs: u64) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(secs), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("the wrapper ended within {secs} s"))
        .unwrap()
}

/// Heartbeats and the exit code of `sh -c 'sleep 2; exit 3'` reach the operator's callback
/// endpoint from `image`.
async fn reports_from(image: &Image, job: &str) {
    let bed = bed(job).await;
    let out = run(
        image.wrapper(&bed.url, &bed.token, &["sh", "-c", "sleep 2; exit 3"]),
        60,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "the wrapper exits with the workload's code: {out:?}"
    );
    let id = AttemptId {
        namespace: bed.env.ns.clone(),
        job: job.into(),
        attempt: 1,
    };
    let r = bed.reports.get(&id).expect("reports arrived");
    assert!(r.last_heartbeat.is_some(), "a heartbeat arrived");
    assert_eq!((r.exit_code, r.interrupted), (Some(3), false));
    bed.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_with_python3_but_no_curl_or_wget_reports() {
    reports_from(&Image::with_client(Some("python3")), "python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_with_only_wget_reports() {
    reports_from(&Image::with_client(Some("wget")), "wget").await;
}

/// BusyBox's wget, and Debian's busybox, whose wget crashes on `-T` (built without its timeout
/// option): the wrapper bounds each call with `timeout` instead. Needs busybox on the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busybox_image_reports() {
    let Some(image) = Image::busybox() else {
        eprintln!("skipped: no busybox on this machine");
        return;
    };
    reports_from(&image, "busybox").await;
}

const STAND_IN_TOKEN: &str = "stand-in-token";

/// One request to the callback stand-in.
#[derive(Clone, Debug)]
struct Seen {
    kind: String,
    body: String,
    answer: StatusCode,
}

/// A callback stand-in at `url` (`<url>/heartbeat`, `<url>/exit`) that answers the n-th report of
/// a kind (from 0) with `answer(kind, n)` (401 without the right token) and keeps every request.
struct StandIn {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

type Answer = Arc<dyn Fn(&str, usize) -> StatusCode + Send + Sync>;

impl StandIn {
    async fn start(answer: impl Fn(&str, usize) -> StatusCode + Send + Sync + 'static) -> StandIn {
        #[derive(Clone)]
        struct S {
            answer: Answer,
            seen: Arc<Mutex<Vec<Seen>>>,
        }
        async fn receive(
            State(s): State<S>,
            extract::Path(kind): extract::Path<String>,
            headers: HeaderMap,
            body: String,
        ) -> StatusCode {
            let bearer = format!("Bearer {STAND_IN_TOKEN}");
            let authorized =
                headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(bearer.as_str());
            let mut seen = s.seen.lock().unwrap();
            let n = seen.iter().filter(|r| r.kind == kind).count();
            let answer = if authorized {
                (s.answer)(&kind, n)
            } else {
                StatusCode::UNAUTHORIZED
            };
            seen.push(Seen { kind, body, answer });
            answer
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/cb/{kind}", post(receive))
            .with_state(S {
                answer: Arc::new(answer),
                seen: seen.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        StandIn {
            url: format!("http://{addr}/cb"),
            seen,
        }
    }

    fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn of(&self, kind: &str) -> Vec<Seen> {
        self.all().into_iter().filter(|r| r.kind == kind).collect()
    }
}

/// Item 2: in an image with no HTTP client at all the wrapper says so once, sends nothing, and
/// runs the workload as itself (`exec`): the machine's exit code is the workload's, and the
/// dead-man switch, which would stop every such job, does not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_without_an_http_client_runs_the_workload_unreported_and_unstopped() {
    let callback = StandIn::start(|_, _| StatusCode::OK).await;
    let image = Image::with_client(None);
    let mut cmd = image.wrapper(
        &callback.url,
        STAND_IN_TOKEN,
        &["sh", "-c", "sleep 4; exit 7"],
    );
    cmd.env("RUNCTL_SELF_TERMINATE_AFTER", "2");
    let out = run(cmd, 60).await;
    assert_eq!(
        out.status.code(),
        Some(7),
        "the workload ran to its end and its code is the wrapper's: {out:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].starts_with("runctl-wrapper: no curl, wget or python3 in this image"),
        "{stderr}"
    );
    assert!(callback.all().is_empty(), "{:?}", callback.all());
}

/// The images the matrix tests run in, one per HTTP client.
const CLIENTS: [&str; 3] = ["curl", "wget", "python3"];

/// Runs `case` for each HTTP client's image at once.
async fn for_each_client<F, Fut>(case: F)
where
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = CLIENTS.into_iter().map(|c| tokio::spawn(case(c))).collect();
    for (client, task) in CLIENTS.into_iter().zip(tasks) {
        if let Err(e) = task.await {
            panic!("{client}: {e}");
        }
    }
}

/// A workload exiting 4 in `client`'s image, reporting to `callback` with `env` set.
async fn exit_4(client: &str, callback: &StandIn, env: &[(&str, &str)]) -> std::process::Output {
    let image = Image::with_client(Some(client));
    let mut cmd = image.wrapper(&callback.url, STAND_IN_TOKEN, &["sh", "-c", "exit 4"]);
    cmd.envs(env.iter().copied());
    let out = run(cmd, 90).await;
    assert_eq!(out.status.code(), Some(4), "{client}: {out:?}");
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(STAND_IN_TOKEN),
            "{client} printed the token: {out:?}"
        );
    }
    out
}

/// Item 3: a callback that answers 503 (a standby replica, a restarting operator) to the first
/// five exit reports (all the tries the wrapper used to make) still gets the exit report within
/// the grace window: the sixth try, after 1 + 2 + 4 + 8 + 16 s of backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_report_answered_503_is_retried_until_acknowledged() {
    for_each_client(|client| async move {
        let callback = StandIn::start(|kind, n| match kind {
            "exit" if n < 5 => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::OK,
        })
        .await;
        exit_4(client, &callback, &[("RUNCTL_REPORT_GRACE", "60")]).await;
        let exits = callback.of("exit");
        let answers: Vec<u16> = exits.iter().map(|r| r.answer.as_u16()).collect();
        assert_eq!(
            answers,
            [503, 503, 503, 503, 503, 200],
            "{client}: {exits:?}"
        );
        assert!(
            exits.iter().all(|r| r.body.contains(r#""exitCode":4"#)),
            "{client}: {exits:?}"
        );
    })
    .await;
}

/// ... and gives up once `RUNCTL_REPORT_GRACE` seconds have passed since the workload ended,
/// exiting with the workload's code: with 3 s, tries at about 0, 1 and 3 s (a fourth when the
/// clock's seconds tick over in between), where a fixed count of tries would go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_report_is_retried_for_the_grace_window_only() {
    for_each_client(|client| async move {
        let callback = StandIn::start(|kind, _| match kind {
            "exit" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::OK,
        })
        .await;
        exit_4(client, &callback, &[("RUNCTL_REPORT_GRACE", "3")]).await;
        let exits = callback.of("exit");
        assert!(
            (2..=4).contains(&exits.len()),
            "{client} retried within the window only: {exits:?}"
        );
    })
    .await;
}

/// Item 1: 401 (the token is gone, or the attempt is over) is definitive: the exit report is not
/// sent again, though the grace window is far from over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_stops_the_exit_report_at_once() {
    for_each_client(|client| async move {
        let callback = StandIn::start(|kind, _| match kind {
            "exit" => StatusCode::UNAUTHORIZED,
            _ => StatusCode::OK,
        })
        .await;
        exit_4(client, &callback, &[("RUNCTL_REPORT_GRACE", "600")]).await;
        let exits = callback.of("exit");
        assert_eq!(exits.len(), 1, "{client}: {exits:?}");
    })
    .await;
}

/// A heartbeat is acknowledged only by a 2xx: heartbeats answered 503 do not hold off the
/// dead-man switch, which stops the workload (exit 125), whichever client sent them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_answered_503_is_not_an_acknowledgement() {
    for_each_client(|client| async move {
        let callback = StandIn::start(|_, _| StatusCode::SERVICE_UNAVAILABLE).await;
        let image = Image::with_client(Some(client));
        let mut cmd = image.wrapper(&callback.url, STAND_IN_TOKEN, &["sleep", "600"]);
        cmd.env("RUNCTL_SELF_TERMINATE_AFTER", "2");
        let out = run(cmd, 90).await;
        assert_eq!(out.status.code(), Some(125), "{client}: {out:?}");
        assert!(!callback.of("heartbeat").is_empty(), "{client}");
    })
    .await;
}

/// Issue 19, item 1: the workload's output still reaches the container's stdout and stderr, and
/// is shipped in chunks to `<url>/logs` (the last ones before the exit report), from each
/// client's image that has the tools for it; with `RUNCTL_SHIP_LOGS=no` nothing is shipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workloads_output_is_shipped_in_chunks() {
    for_each_client(|client| async move {
        let callback = StandIn::start(|_, _| StatusCode::OK).await;
        let image = Image::with(&[
            "sh", "date", "sleep", client, "mkfifo", "tee", "tail", "head", "wc", "mkdir", "rm",
        ]);
        let workload = ["sh", "-c", "echo one; sleep 2; echo two >&2; printf three"];
        let mut cmd = image.wrapper(&callback.url, STAND_IN_TOKEN, &workload);
        cmd.env("RUNCTL_LOG_INTERVAL", "1");
        let out = run(cmd, 90).await;
        assert_eq!(out.status.code(), Some(0), "{client}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "one\nthree",
            "{client}"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("two\n"),
            "{client}: {out:?}"
        );
        let all = callback.all();
        let shipped: String = all
            .iter()
            .filter(|r| r.kind == "logs")
            .map(|r| r.body.as_str())
            .collect();
        // stdout and stderr are two streams: their lines interleave as they arrive.
        assert!(shipped.contains("two\n"), "{client}: {all:?}");
        assert_eq!(
            shipped.replacen("two\n", "", 1),
            "one\nthree",
            "{client}: {all:?}"
        );
        let last_logs = all.iter().rposition(|r| r.kind == "logs");
        let exit = all.iter().position(|r| r.kind == "exit");
        assert!(
            last_logs < exit,
            "{client}: the output before the exit report"
        );

        let quiet = StandIn::start(|_, _| StatusCode::OK).await;
        let mut cmd = image.wrapper(&quiet.url, STAND_IN_TOKEN, &workload);
        cmd.env("RUNCTL_SHIP_LOGS", "no");
        assert_eq!(run(cmd, 90).await.status.code(), Some(0));
        assert!(quiet.of("logs").is_empty(), "{client}: {:?}", quiet.all());
        assert_eq!(quiet.of("exit").len(), 1);
    })
    .await;
}
