//! Fuzzing the job callback endpoint: seeded random requests (malformed, truncated, binary and
//! huge bodies, unknown kinds, garbage paths, wrong, missing and almost-right tokens, replays)
//! against the real router. It must never fail with a 5xx or stop serving, must refuse every
//! request without the right token (401, or a closed connection for a large body) and record
//! nothing for it, and must refuse huge bodies. The rate limits are checked on their own.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use runctl::callback::limit::{Limiter, Limits, Rate};
use runctl::callback::{self, AttemptId, CallbackState, Reports};
use tokio_util::sync::CancellationToken;

use crate::support::{TestEnv, fast_sim};

fn body(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..7) {
        0 => Vec::new(),
        1 => br#"{"exitCode": 0}"#.to_vec(),
        2 => br#"{"exitCode": "#.to_vec(),
        3 => br#"{"percent": 1e308, "step": -9223372036854775808, "message": "xxxxxxxx"}"#.to_vec(),
        4 => (0..rng.random_range(1..512))
            .map(|_| rng.random())
            .collect(),
        5 => format!(r#"{{"message": "{}"}}"#, "m".repeat(100_000)).into_bytes(),
        _ => br#"{"exitCode": 4294967296}"#.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_endpoint_survives_hostile_requests_without_side_effects() {
    let env = TestEnv::start(fast_sim()).await;
    let good = env.token_secret("job", 1).await;
    attempt_cloud_resource(&env).await;
    let reports = Arc::new(Reports::new());
    // The storm is faster than any real workload; lift the rate limits here (they are tested in
    // `the_callback_endpoint_limits_rate_and_body_size`).
    let unlimited = Rate {
        per_second: 1e9,
        burst: 1e9,
    };
    let state = CallbackState::with_limiter(
        env.client.clone(),
        reports.clone(),
        Limiter::new(Limits {
            per_attempt: unlimited,
            authenticated: unlimited,
            unauthenticated: unlimited,
            max_keys: 1_000_000,
        }),
    );
    let stop = CancellationToken::new();
    let addr = callback::serve(
        "127.0.0.1:0".parse().expect("addr"),
        callback::router(state),
        stop.clone(),
    )
    .await
    .expect("serve");
    let http = reqwest::Client::new();
    let id = AttemptId {
        namespace: env.ns.clone(),
        job: "job".into(),
        attempt: 1,
    };
    let mut rng = StdRng::seed_from_u64(0xca11_bac5);
    let mut problems = Vec::new();
    for i in 0..300 {
        let kind =
            ["heartbeat", "progress", "exit", "EXIT", "../exit", "x"][rng.random_range(0..6)];
        let (ns, job, attempt) = match rng.random_range(0..5) {
            0 => (env.ns.as_str(), "job", "1".to_string()),
            1 => (env.ns.as_str(), "job", "99999999999".to_string()),
            2 => ("other", "job", "1".to_string()),
            3 => (env.ns.as_str(), "j%00b", "-1".to_string()),
            _ => (env.ns.as_str(), "job", "1".to_string()),
        };
        let presented = match rng.random_range(0..5) {
            0 => None,
            1 => Some(String::new()),
            2 => Some(format!("{}x", &good[..good.len() - 1])),
            3 => Some("wrong".to_string()),
            _ => Some(good.clone()),
        };
        let right_token = presented.as_deref() == Some(good.as_str())
            && ns == env.ns
            && job == "job"
            && attempt == "1";
        let before = reports.get(&id);
        let mut req = http
            .post(format!(
                "http://{addr}/callback/{ns}/{job}/{attempt}/{kind}"
            ))
            .body(body(&mut rng));
        if let Some(t) = &presented {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let status = match req.send().await {
            Ok(r) => r.status().as_u16(),
            // The server may answer (401) before reading a large body and close the
            // connection; the client then sees a reset. That is a refusal, not a failure.
            Err(_) => 0,
        };
        if status >= 500 {
            problems.push(format!(
                "request {i} ({kind}, {ns}/{job}/{attempt}) answered {status}"
            ));
        }
        if !right_token {
            if ![0, 400, 401, 404, 413].contains(&status) {
                problems.push(format!(
                    "request {i} without the right token answered {status}"
                ));
            }
            if reports.get(&id) != before {
                problems.push(format!(
                    "request {i} without the right token changed the reports"
                ));
            }
        }
    }
    // Huge bodies are refused, and the endpoint still serves a good report afterwards.
    let huge = vec![b'x'; 8 * 1024 * 1024];
    let before = reports.get(&id);
    if let Ok(r) = http
        .post(format!("http://{addr}/callback/default/job/1/progress"))
        .bearer_auth(&good)
        .body(huge)
        .send()
        .await
        && r.status().is_success()
    {
        problems.push(format!("an 8 MiB body was accepted: {}", r.status()));
    }
    if reports.get(&id) != before {
        problems.push("a refused huge body changed the reports".into());
    }
    let ok = http
        .post(format!("http://{addr}/callback/{}/job/1/heartbeat", env.ns))
        .bearer_auth(&good)
        .send()
        .await
        .expect("still serving");
    if !ok.status().is_success() {
        problems.push(format!(
            "a good heartbeat after the storm answered {}",
            ok.status()
        ));
    }
    stop.cancel();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The CloudResource of attempt `job/1`, where the endpoint persists the attempt's reports.
async fn attempt_cloud_resource(env: &TestEnv) {
    let cr: runctl::crd::CloudResource = serde_json::from_value(serde_json::json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource",
        "metadata": {"name": "job-a1"},
        "spec": {"provider": "sim", "instanceType": "sim.a100"}
    }))
    .expect("CloudResource");
    env.api::<runctl::crd::CloudResource>()
        .create(&Default::default(), &cr)
        .await
        .expect("the attempt's CloudResource");
}

/// An endpoint with default limits, a token Secret and a CloudResource for attempt `job/1` in
/// the test's namespace.
async fn endpoint_with_a_token(env: &TestEnv) -> (String, String, Arc<Reports>, CancellationToken) {
    let good = env.token_secret("job", 1).await;
    attempt_cloud_resource(env).await;
    let reports = Arc::new(Reports::new());
    let stop = CancellationToken::new();
    let addr = callback::serve(
        "127.0.0.1:0".parse().expect("addr"),
        callback::router(CallbackState::new(env.client.clone(), reports.clone())),
        stop.clone(),
    )
    .await
    .expect("serve");
    (format!("http://{addr}"), good, reports, stop)
}

async fn post(http: &reqwest::Client, url: &str, token: Option<&str>) -> u16 {
    let mut request = http.post(url).body("{}");
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    request.send().await.expect("answer").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_endpoint_limits_rate_and_body_size() {
    let env = TestEnv::start(fast_sim()).await;
    let (base, good, reports, stop) = endpoint_with_a_token(&env).await;
    let http = reqwest::Client::new();
    let job = format!("{base}/callback/{}/job/1/heartbeat", env.ns);

    // An attempt with its token gets its burst, then 429.
    let burst = callback::limit::PER_ATTEMPT.burst as usize;
    let mut statuses = Vec::new();
    for _ in 0..burst + 5 {
        statuses.push(post(&http, &job, Some(&good)).await);
    }
    assert!(
        statuses[..burst].iter().all(|s| *s == 200),
        "within the burst: {statuses:?}"
    );
    assert!(
        statuses[burst..].iter().all(|s| *s == 429),
        "past the burst: {statuses:?}"
    );

    // Requests without the token get 401 until the unauthenticated budget is spent, then 429,
    // whatever attempt they name.
    let unauthenticated = callback::limit::UNAUTHENTICATED.burst as usize;
    let mut statuses = Vec::new();
    for i in 0..unauthenticated + 10 {
        let url = format!("{base}/callback/{}/flood-{}/1/heartbeat", env.ns, i % 3);
        statuses.push(post(&http, &url, Some("forged")).await);
    }
    assert!(
        statuses[..unauthenticated / 2].iter().all(|s| *s == 401),
        "within the budget: {statuses:?}"
    );
    assert!(statuses.ends_with(&[429]), "past the budget: {statuses:?}");

    // Bodies over the limit are refused before anything else.
    let big = vec![b'x'; callback::limit::MAX_BODY_BYTES * 2];
    let r = http
        .post(format!("{base}/callback/{}/big/1/progress", env.ns))
        .bearer_auth("forged")
        .body(big)
        .send()
        .await;
    if let Ok(r) = r {
        assert!(
            [401, 413, 429].contains(&r.status().as_u16()),
            "{}",
            r.status()
        );
    }
    assert!(
        reports
            .get(&AttemptId {
                namespace: env.ns.clone(),
                job: "flood-0".into(),
                attempt: 1
            })
            .is_none()
    );
    stop.cancel();
}

/// Issue "Truthful outcomes", item 10: a flood of forged reports for an attempt (which knows its
/// public path) used to spend that attempt's budget first, so its real heartbeats got 429 until
/// the dead-man switch killed the training. Now authentication comes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unauthenticated_requests_does_not_429_the_real_wrapper() {
    let env = TestEnv::start(fast_sim()).await;
    let (base, good, reports, stop) = endpoint_with_a_token(&env).await;
    let http = reqwest::Client::new();
    let job = format!("{base}/callback/{}/job/1/heartbeat", env.ns);
    assert_eq!(post(&http, &job, Some(&good)).await, 200);
    let mut refused = 0;
    for i in 0..400 {
        let token = if i % 2 == 0 { Some("forged") } else { None };
        let status = post(&http, &job, token).await;
        assert!(
            [401, 429].contains(&status),
            "a forged report answered {status}"
        );
        refused += usize::from(status == 429);
    }
    assert!(refused > 0, "the flood was limited");
    for _ in 0..5 {
        assert_eq!(
            post(&http, &job, Some(&good)).await,
            200,
            "the real wrapper's heartbeat goes through the flood"
        );
    }
    let id = AttemptId {
        namespace: env.ns.clone(),
        job: "job".into(),
        attempt: 1,
    };
    assert!(reports.get(&id).is_some());
    stop.cancel();
}
