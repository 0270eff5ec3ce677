//! runctl's reporting wrapper (`WRAPPER_SCRIPT`, the `/bin/sh` script every machine runs the
//! workload under) run for real with `/bin/sh` and curl, against the operator's callback endpoint
//! and a stand-in of the EC2 instance metadata service (IMDSv2): it reports heartbeats and the
//! exit code, and on a spot reclaim notice it forwards SIGTERM to the workload and reports the
//! exit as an interruption.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use runctl::callback::{self, AttemptId, CallbackState, Reports};
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

fn wrapper(bed: &Bed, imds_url: Option<&str>, workload: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.args(["-c", WRAPPER_SCRIPT, "runctl-wrapper"])
        .args(workload)
        .env("RUNCTL_REPORT_URL", &bed.url)
        .env("RUNCTL_REPORT_TOKEN", &bed.token)
        .env("RUNCTL_HEARTBEAT_INTERVAL", "1")
        .kill_on_drop(true);
    if let Some(u) = imds_url {
        cmd.env("RUNCTL_IMDS_URL", u);
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
/// warning to it, and its exit 143 counted as the workload's failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_reclaim_notice_sigterms_the_workload_and_reports_an_interruption() {
    let bed = bed("spot").await;
    let reclaim = Arc::new(AtomicBool::new(false));
    let imds_url = imds(reclaim.clone()).await;
    let mut child = wrapper(&bed, Some(&imds_url), &["sleep", "600"])
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
    assert!(
        bed.reports.get(&id).and_then(|r| r.exit_code).is_none(),
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
    bed.stop.cancel();
}
