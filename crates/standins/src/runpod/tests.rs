//! The stand-in checked against the reference's examples (section 1.2 and checklist item 1).

use std::time::Duration;

use serde_json::{Value, json};

use super::*;

fn body(name: &str) -> Value {
    json!({
        "name": name,
        "image": "ghcr.io/acme/train:1",
        "gpu": {"id": "NVIDIA H100 80GB HBM3", "count": 2},
        "env": {"RUNCTL_OWNER": "uid-1"},
        "ports": ["22/tcp"],
    })
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    fn new(rp: &RunPodStandin) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: rp.url(),
            key: rp.api_key(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.expect("request")
    }

    async fn create(&self, b: &Value) -> reqwest::Response {
        self.send(reqwest::Method::POST, "/pods", Some(b)).await
    }
}

async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.expect("json body")
}

#[tokio::test]
async fn bearer_auth_is_required() {
    let rp = RunPodStandin::start().await;
    let resp = reqwest::get(format!("{}/pods", rp.url()))
        .await
        .expect("get");
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let v = json_of(resp).await;
    assert_eq!(v["status"], 401);
    assert_eq!(v["title"], "Unauthorized");
}

#[tokio::test]
async fn create_answers_201_provisioning_and_lists_with_rate_headers() {
    let rp = RunPodStandin::start().await;
    rp.set_progression(Progression::Manual);
    let c = Client::new(&rp);
    let resp = c.create(&body("a")).await;
    assert_eq!(resp.status(), 201);
    let pod = json_of(resp).await;
    assert_eq!(pod["status"], "PROVISIONING");
    assert_eq!(pod["runtime"], Value::Null);
    assert_eq!(pod["ssh"]["proxy"], Value::Null);
    assert_eq!(
        pod["gpu"],
        json!({"id": "NVIDIA H100 80GB HBM3", "count": 2})
    );
    assert_eq!(pod["cost"], json!(5.38));
    assert_eq!(pod["actions"], json!(["stop", "terminate"]));
    assert!(
        pod["createdAt"]
            .as_str()
            .is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok())
    );

    let resp = c.send(reqwest::Method::GET, "/pods", None).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["ratelimit"]
            .to_str()
            .expect("ascii")
            .starts_with("\"minute\";r=")
    );
    assert!(
        resp.headers()["ratelimit-policy"]
            .to_str()
            .expect("ascii")
            .contains("\"hour\";q=")
    );
    let list = json_of(resp).await;
    assert_eq!(list["pods"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["pods"][0]["env"]["RUNCTL_OWNER"], "uid-1");
}

#[tokio::test]
async fn unknown_create_fields_are_422() {
    let rp = RunPodStandin::start().await;
    let c = Client::new(&rp);
    let mut b = body("a");
    b["interruptible"] = json!(true);
    let resp = c.create(&b).await;
    assert_eq!(resp.status(), 422);
    let v = json_of(resp).await;
    assert_eq!(v["detail"], "Request validation failed.");
    assert_eq!(v["title"], "Unprocessable Entity");
    assert!(
        v["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("interruptible")),
        "{v}"
    );
    assert!(rp.pods().is_empty());
}

#[tokio::test]
async fn rule_violations_are_400() {
    let rp = RunPodStandin::start().await;
    let c = Client::new(&rp);
    let mut b = body("a");
    b["cpu"] = json!({"flavorId": "cpu3c"});
    assert_eq!(c.create(&b).await.status(), 400);
    let mut b = body("a");
    b["mounts"] = json!({"persistent": {"size": 10, "path": "/w"}, "network": []});
    assert_eq!(c.create(&b).await.status(), 400);
}

#[tokio::test]
async fn capacity_is_400_with_the_recorded_detail() {
    let rp = RunPodStandin::start().await;
    rp.set_capacity("NVIDIA H100 80GB HBM3", Some(2));
    let c = Client::new(&rp);
    assert_eq!(c.create(&body("a")).await.status(), 201);
    let resp = c.create(&body("b")).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        json_of(resp).await,
        json!({"detail": CAPACITY_DETAIL, "status": 400, "title": "Bad Request"})
    );
    rp.push_fault(Op::Create, Fault::Capacity);
    rp.set_capacity("NVIDIA H100 80GB HBM3", None);
    assert_eq!(c.create(&body("c")).await.status(), 400);
    assert_eq!(c.create(&body("d")).await.status(), 201);
}

#[tokio::test]
async fn running_precedes_runtime_and_exit_zeroes_cost() {
    let rp = RunPodStandin::start().await;
    rp.set_progression(Progression::Manual);
    let c = Client::new(&rp);
    let id = json_of(c.create(&body("a")).await).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    rp.set_phase(&id, Phase::RunningNoRuntime);
    let pod = json_of(
        c.send(reqwest::Method::GET, &format!("/pods/{id}"), None)
            .await,
    )
    .await;
    assert_eq!(
        (pod["status"].as_str(), &pod["runtime"]),
        (Some("RUNNING"), &Value::Null)
    );
    rp.set_phase(&id, Phase::Running);
    let pod = json_of(
        c.send(reqwest::Method::GET, &format!("/pods/{id}"), None)
            .await,
    )
    .await;
    assert!(pod["runtime"]["uptime"].is_u64(), "{pod}");
    assert_eq!(pod["runtime"]["ports"][0]["private"], 22);
    assert!(rp.exit_container(&id, 3));
    let pod = json_of(
        c.send(reqwest::Method::GET, &format!("/pods/{id}"), None)
            .await,
    )
    .await;
    assert_eq!(
        (pod["status"].as_str(), pod["cost"].as_f64()),
        (Some("EXITED"), Some(0.0))
    );
    assert_eq!(rp.pod(&id).and_then(|p| p.exit_code), Some(3));
}

#[tokio::test]
async fn auto_progression_reaches_running_with_runtime() {
    let rp = RunPodStandin::start().await;
    let ms = Duration::from_millis(20);
    rp.set_progression(Progression::Auto(Timings {
        provisioning: ms,
        starting: ms,
        runtime_lag: ms,
    }));
    let c = Client::new(&rp);
    let id = json_of(c.create(&body("a")).await).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let mut last = Value::Null;
    for _ in 0..100 {
        last = json_of(
            c.send(reqwest::Method::GET, &format!("/pods/{id}"), None)
                .await,
        )
        .await;
        if !last["runtime"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(last["status"], "RUNNING");
    assert!(!last["runtime"].is_null());
}

#[tokio::test]
async fn actions_409_422_and_terminate_then_delete_404() {
    let rp = RunPodStandin::start().await;
    rp.set_progression(Progression::Manual);
    let c = Client::new(&rp);
    let id = json_of(c.create(&body("a")).await).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let action = format!("/pods/{id}/action");
    let resp = c
        .send(
            reqwest::Method::POST,
            &action,
            Some(&json!({"action": "explode"})),
        )
        .await;
    assert_eq!(resp.status(), 422);
    assert_eq!(
        json_of(resp).await,
        json!({"detail": "Request validation failed.", "errors": [BAD_ACTION_ERROR], "status": 422, "title": "Unprocessable Entity"})
    );
    let resp = c
        .send(
            reqwest::Method::POST,
            &action,
            Some(&json!({"action": "start"})),
        )
        .await;
    assert_eq!(
        resp.status(),
        409,
        "start is not allowed while PROVISIONING"
    );
    let resp = c
        .send(
            reqwest::Method::POST,
            &action,
            Some(&json!({"action": "terminate"})),
        )
        .await;
    assert_eq!(resp.status(), 204);
    let pod = json_of(
        c.send(reqwest::Method::GET, &format!("/pods/{id}"), None)
            .await,
    )
    .await;
    assert_eq!(
        (pod["status"].as_str(), pod["cost"].as_f64()),
        (Some("TERMINATED"), Some(0.0))
    );
    let resp = c
        .send(
            reqwest::Method::POST,
            &action,
            Some(&json!({"action": "terminate"})),
        )
        .await;
    assert_eq!(resp.status(), 409, "terminate of a terminated pod");
    assert_eq!(
        c.send(reqwest::Method::DELETE, &format!("/pods/{id}"), None)
            .await
            .status(),
        204
    );
    assert_eq!(
        c.send(reqwest::Method::GET, &format!("/pods/{id}"), None)
            .await
            .status(),
        404
    );
    assert_eq!(
        c.send(reqwest::Method::DELETE, &format!("/pods/{id}"), None)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let rp = RunPodStandin::start().await;
    rp.set_rate_limits(RateLimits::new(1));
    let c = Client::new(&rp);
    assert_eq!(
        c.send(reqwest::Method::GET, "/pods", None).await.status(),
        200
    );
    let resp = c.send(reqwest::Method::GET, "/pods", None).await;
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("integer seconds");
    assert!((1..=60).contains(&wait));
    assert!(
        resp.headers()["ratelimit"]
            .to_str()
            .expect("ascii")
            .starts_with("\"minute\";r=0;")
    );
    assert_eq!(
        json_of(resp).await["detail"],
        "rate limit exceeded for the minute window"
    );

    rp.set_rate_limits(RateLimits::default());
    rp.push_fault(
        Op::List,
        Fault::RateLimited {
            retry_after_secs: 7,
        },
    );
    let resp = c.send(reqwest::Method::GET, "/pods", None).await;
    assert_eq!(
        (
            resp.status().as_u16(),
            resp.headers()["retry-after"].to_str().ok()
        ),
        (429, Some("7"))
    );
}

#[tokio::test]
async fn faults_after_create_still_make_the_pod() {
    let rp = RunPodStandin::start().await;
    let c = Client::new(&rp);
    rp.push_fault(Op::Create, Fault::ErrorAfterCreate(502));
    assert_eq!(c.create(&body("a")).await.status(), 502);
    assert_eq!(rp.live_pods_with_env("RUNCTL_OWNER", "uid-1"), 1);
    rp.push_fault(Op::Create, Fault::HangAfterCreate);
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let err = quick
        .post(format!("{}/pods", rp.url()))
        .bearer_auth(rp.api_key())
        .json(&body("b"))
        .send()
        .await
        .expect_err("the response is lost");
    assert!(err.is_timeout());
    assert_eq!(rp.live_pods_with_env("RUNCTL_OWNER", "uid-1"), 2);
    rp.push_fault(Op::Create, Fault::DropAfterCreate);
    let sent = c
        .http
        .post(format!("{}/pods", rp.url()))
        .bearer_auth(rp.api_key())
        .json(&body("c"))
        .send()
        .await;
    let complete = match sent {
        Ok(resp) => resp.bytes().await.is_ok(),
        Err(_) => false,
    };
    assert!(!complete, "the answer is cut off");
    assert_eq!(rp.live_pods_with_env("RUNCTL_OWNER", "uid-1"), 3);
    for (fault, status) in [
        (Fault::Status(503), 503),
        (Fault::InsufficientBalance, 402),
        (Fault::Forbidden, 403),
        (Fault::Unauthorized, 401),
        (Fault::Unprocessable, 422),
    ] {
        rp.push_fault(Op::Create, fault);
        assert_eq!(c.create(&body("x")).await.status(), status);
    }
    assert_eq!(rp.live_pods_with_env("RUNCTL_OWNER", "uid-1"), 3);
}

#[tokio::test]
async fn catalog_lists_prices_and_single_gpu() {
    let rp = RunPodStandin::start().await;
    let c = Client::new(&rp);
    let v = json_of(c.send(reqwest::Method::GET, "/catalog/gpus", None).await).await;
    let h100 = v["gpus"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["id"] == "NVIDIA H100 80GB HBM3"))
        .expect("h100 listed");
    assert_eq!(h100["price"]["secure"], json!(2.69));
    assert_eq!(h100["price"]["community"], json!(2.09));
    let one = c
        .send(reqwest::Method::GET, "/catalog/gpus/NVIDIA%20L40S", None)
        .await;
    assert_eq!(one.status(), 200);
    assert_eq!(json_of(one).await["id"], "NVIDIA L40S");
    assert_eq!(
        c.send(reqwest::Method::GET, "/catalog/gpus/nope", None)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn vanished_pods_404_and_seeded_pods_keep_created_at() {
    let rp = RunPodStandin::start().await;
    let early: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
    let id = rp.seed_pod(&body("seeded"), Some(early)).expect("seed");
    let c = Client::new(&rp);
    let pod = json_of(
        c.send(reqwest::Method::GET, &format!("/pods/{id}"), None)
            .await,
    )
    .await;
    assert_eq!(pod["createdAt"], "2026-01-01T00:00:00Z");
    assert!(rp.vanish(&id));
    assert_eq!(
        c.send(reqwest::Method::GET, &format!("/pods/{id}"), None)
            .await
            .status(),
        404
    );
    assert_eq!(rp.removed().len(), 1);
}
