//! The pod's side of the stand-in: pod-scoped keys (`RUNPOD_API_KEY` inside a pod) and the
//! containers it runs on the test machine.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;

fn body(name: &str, args: &str) -> Value {
    json!({
        "name": name,
        "image": "ghcr.io/acme/train:1",
        "gpu": {"id": "NVIDIA L40S", "count": 1},
        "env": {"RUNCTL_OWNER": "uid-1", "GREETING": "hello"},
        "args": args,
    })
}

async fn call(
    rp: &RunPodStandin,
    key: &str,
    method: reqwest::Method,
    path: &str,
) -> reqwest::StatusCode {
    reqwest::Client::new()
        .request(method, format!("{}{path}", rp.url()))
        .bearer_auth(key)
        .send()
        .await
        .expect("request")
        .status()
}

/// Waits up to `secs` for `f` to hold.
async fn until(secs: u64, what: &str, f: impl Fn() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_pod_key_reads_and_deletes_its_own_pod_only() {
    let rp = RunPodStandin::start().await;
    let a = rp.seed_pod(&body("a", "true"), None).expect("a");
    let b = rp.seed_pod(&body("b", "true"), None).expect("b");
    let key = rp.pod_api_key(&a).expect("key");
    assert!(key.starts_with("rpa_POD") && key != rp.api_key());
    use reqwest::Method;
    assert_eq!(
        call(&rp, &key, Method::GET, &format!("/pods/{a}")).await,
        200
    );
    assert_eq!(
        call(&rp, &key, Method::GET, &format!("/pods/{b}")).await,
        403
    );
    assert_eq!(call(&rp, &key, Method::GET, "/pods").await, 403);
    assert_eq!(
        call(&rp, &key, Method::DELETE, &format!("/pods/{b}")).await,
        403
    );
    assert!(rp.pod(&b).is_some());
    assert_eq!(
        call(&rp, &key, Method::DELETE, &format!("/pods/{a}")).await,
        204
    );
    assert!(rp.deleted_by_itself(&a) && rp.pod(&a).is_none());
    assert_eq!(
        call(&rp, &key, Method::GET, &format!("/pods/{a}")).await,
        401,
        "a deleted pod's key is void"
    );
    // The account's own deletes are not the pod's.
    assert_eq!(
        call(&rp, &rp.api_key(), Method::DELETE, &format!("/pods/{b}")).await,
        204
    );
    assert!(!rp.deleted_by_itself(&b));
}

#[tokio::test]
async fn read_only_and_absent_pod_keys() {
    let rp = RunPodStandin::start().await;
    let a = rp.seed_pod(&body("a", "true"), None).expect("a");
    let key = rp.pod_api_key(&a).expect("key");
    use reqwest::Method;
    rp.set_pod_keys(PodKeys::ReadOnly);
    assert_eq!(
        call(&rp, &key, Method::GET, &format!("/pods/{a}")).await,
        200
    );
    assert_eq!(
        call(&rp, &key, Method::DELETE, &format!("/pods/{a}")).await,
        403
    );
    rp.set_pod_keys(PodKeys::Absent);
    assert_eq!(
        call(&rp, &key, Method::GET, &format!("/pods/{a}")).await,
        401
    );
    assert!(rp.pod(&a).is_some());
}

#[tokio::test]
async fn containers_run_with_runpods_env_and_their_exit_makes_the_pod_exited() {
    let rp = RunPodStandin::start().await;
    rp.run_containers(None);
    let id = rp
        .seed_pod(
            &body(
                "a",
                "sh -c 'echo \"$GREETING $RUNPOD_POD_ID ${#RUNPOD_API_KEY}\"; exit 3'",
            ),
            None,
        )
        .expect("pod");
    until(10, "the container to exit", || {
        rp.pod(&id).is_some_and(|p| p.phase == Phase::Exited)
    })
    .await;
    let pod = rp.pod(&id).expect("pod");
    assert_eq!(pod.exit_code, Some(3));
    assert_eq!(pod.cost(), 0.0);
    let len = rp.pod_api_key(&id).expect("key").len();
    until(5, "the log", || rp.container_log(&id).contains("hello")).await;
    assert_eq!(rp.container_log(&id), format!("hello {id} {len}\n"));
}

#[tokio::test]
async fn a_deleted_pods_container_is_killed() {
    let rp = RunPodStandin::start().await;
    rp.set_pod_keys(PodKeys::Absent);
    rp.run_containers(None);
    let id = rp
        .seed_pod(
            &body("a", "echo \"key:${RUNPOD_API_KEY:-none}\"; sleep 600"),
            None,
        )
        .expect("pod");
    until(10, "the container to start", || {
        rp.container_log(&id).contains("key:none")
    })
    .await;
    let pid = *rp.state.lock().container_pids.get(&id).expect("running");
    assert!(rp.vanish(&id));
    until(10, "the container to be killed", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    })
    .await;
    until(10, "the supervisor to forget it", || {
        !rp.state.lock().container_pids.contains_key(&id)
    })
    .await;
}
