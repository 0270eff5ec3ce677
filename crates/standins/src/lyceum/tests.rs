//! The stand-in checked against the reference's Lyceum examples (section 2 and checklist 6.3).

use std::time::Duration;

use serde_json::{Value, json};

use super::*;

struct Api {
    s: LyceumStandin,
    http: reqwest::Client,
}

impl Api {
    async fn new() -> Self {
        Self {
            s: LyceumStandin::start().await,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.s.url()))
            .bearer_auth(self.s.api_key());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

fn vm_body() -> Value {
    json!({
        "user_public_key": "ssh-ed25519 AAAA test",
        "hardware_profile": "a100",
        "instance_type": "on-demand",
        "instance_specs": {"gpu_count": 2},
        "display_name": "runctl-x-1234abcd-a1",
    })
}

fn run_body() -> Value {
    json!({
        "docker_image_ref": "python:3.12",
        "docker_run_cmd": ["python", "-c", "print(1)"],
        "docker_run_env": "A=1\nB=2",
        "execution_type": "gpu.a100",
        "timeout": 3600,
        "run_name": "runctl-x-1234abcd-a1",
        "labels": ["runctl"],
        "metadata": {"runctl.dev/owner-uid": "u"},
    })
}

#[tokio::test]
async fn bearer_lk_key_is_required() {
    let api = Api::new().await;
    let resp = api
        .http
        .get(format!("{}/vms/list", api.s.url()))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 401);
    let resp = api
        .http
        .get(format!("{}/vms/list", api.s.url()))
        .bearer_auth("not_lk_key")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.expect("json");
    assert!(body["detail"].is_string());
    assert_eq!(api.get("/vms/list").await.0, 200);
}

#[tokio::test]
async fn vm_create_is_pending_with_null_ip_then_progresses() {
    let api = Api::new().await;
    api.s.set_step(Duration::from_millis(20));
    let (code, vm) = api.post("/vms/create", vm_body()).await;
    assert_eq!(code, 200);
    assert_eq!(vm["status"], "pending");
    assert_eq!(vm["ip_address"], Value::Null);
    assert_eq!(vm["display_name"], "runctl-x-1234abcd-a1");
    assert_eq!(vm["gpu_count"], 2);
    for field in [
        "vm_id",
        "created_at",
        "instance_specs",
        "billed",
        "status_check_url",
        "polling_message",
    ] {
        assert!(vm.get(field).is_some(), "{field} missing");
    }
    let id = vm["vm_id"].as_str().expect("vm_id").to_string();
    let mut seen = vec![];
    for _ in 0..100 {
        let (_, st) = api.get(&format!("/vms/{id}/status")).await;
        let s = st["status"].as_str().expect("status").to_string();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == "ready" {
            assert!(st["ip_address"].is_string());
            assert!(st["uptime_seconds"].is_u64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen.last().map(String::as_str), Some("ready"));
    assert!(
        seen.iter()
            .all(|s| ["pending", "provisioning", "running", "ready"].contains(&s.as_str()))
    );
}

#[tokio::test]
async fn vm_delete_and_list_includes_terminated() {
    let api = Api::new().await;
    let (_, vm) = api.post("/vms/create", vm_body()).await;
    let id = vm["vm_id"].as_str().expect("id").to_string();
    let (code, del) = api
        .call(reqwest::Method::DELETE, &format!("/vms/{id}"), None)
        .await;
    assert_eq!(code, 200);
    assert!(del["message"].is_string() && del["detached_volumes"].is_array());
    let (_, list) = api.get("/vms/list").await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["vms"][0]["status"], "terminated");
    assert_eq!(list["vms"][0]["display_name"], "runctl-x-1234abcd-a1");
    let (_, filtered) = api.get("/vms/list?include_terminated=false").await;
    assert_eq!(filtered["total"], 0);
    assert_eq!(
        api.call(reqwest::Method::DELETE, "/vms/nope", None).await.0,
        404
    );
    assert!(api.s.remove(&id));
    assert_eq!(api.get(&format!("/vms/{id}/status")).await.0, 404);
}

#[tokio::test]
async fn ready_vm_may_have_null_or_host_port_address() {
    let api = Api::new().await;
    let (_, vm) = api.post("/vms/create", vm_body()).await;
    let id = vm["vm_id"].as_str().expect("id").to_string();
    api.s.set_vm_status(&id, "ready");
    api.s.set_address_style(AddressStyle::Null);
    let (_, st) = api.get(&format!("/vms/{id}/status")).await;
    assert_eq!(
        (st["status"].as_str(), &st["ip_address"]),
        (Some("ready"), &Value::Null)
    );
    api.s.set_address_style(AddressStyle::HostPort);
    let (_, st) = api.get(&format!("/vms/{id}/status")).await;
    assert!(st["ip_address"].as_str().expect("address").contains(':'));
}

#[tokio::test]
async fn validation_errors_are_fastapi_shaped() {
    let api = Api::new().await;
    let (code, body) = api
        .post("/vms/create", json!({"hardware_profile": "a100"}))
        .await;
    assert_eq!(code, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "user_public_key"]));
    assert_eq!(body["detail"][0]["type"], "missing");
    assert!(body["detail"][0]["msg"].is_string());
    let mut bad = vm_body();
    bad["instance_specs"]["gpu_count"] = json!(3);
    assert_eq!(api.post("/vms/create", bad).await.0, 422);
    let mut zero = vm_body();
    zero["instance_specs"]["gpu_count"] = json!(0);
    let (code, vm) = api.post("/vms/create", zero).await;
    assert_eq!(
        (code, &vm["gpu_count"]),
        (200, &json!(1)),
        "0 GPUs silently becomes 1"
    );
    let mut no_cmd = run_body();
    no_cmd
        .as_object_mut()
        .expect("object")
        .remove("docker_run_cmd");
    assert_eq!(api.post("/execution/image/start", no_cmd).await.0, 422);
}

#[tokio::test]
async fn faults_have_lyceum_shapes() {
    let api = Api::new().await;
    api.s.push_fault(Fault::Capacity);
    let (code, body) = api.post("/vms/create", vm_body()).await;
    assert_eq!(code, 500);
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("could not be provisioned")
    );
    api.s.push_fault(Fault::OutOfCredits);
    assert_eq!(api.post("/execution/image/start", run_body()).await.0, 402);
    api.s.push_fault(Fault::Forbidden);
    assert_eq!(api.post("/vms/create", vm_body()).await.0, 403);
    api.s.push_fault(Fault::Unauthorized);
    assert_eq!(api.post("/vms/create", vm_body()).await.0, 401);
    api.s.push_fault(Fault::ServerError);
    assert_eq!(api.post("/vms/create", vm_body()).await.0, 500);
    api.s.push_fault(Fault::RateLimit);
    assert_eq!(api.post("/vms/create", vm_body()).await.0, 429);
    assert!(api.s.vms().is_empty(), "refused creates make nothing");
    api.s.push_fault(Fault::ServerErrorAfterCreate);
    assert_eq!(api.post("/vms/create", vm_body()).await.0, 502);
    assert_eq!(api.s.vms().len(), 1, "the VM was made before the 502");
    api.s.push_fault(Fault::DropAfterCreate);
    let dropped = api
        .http
        .post(format!("{}/execution/image/start", api.s.url()))
        .bearer_auth(api.s.api_key())
        .json(&run_body())
        .send()
        .await;
    assert!(dropped.is_err(), "the response must be dropped");
    assert_eq!(api.s.runs().len(), 1, "the run was made before the drop");
    api.s.set_out_of_credits(true);
    assert_eq!(api.post("/vms/create", vm_body()).await.0, 402);
}

#[tokio::test]
async fn runs_progress_finish_and_abort() {
    let api = Api::new().await;
    api.s.set_step(Duration::from_millis(10));
    let (code, started) = api.post("/execution/image/start", run_body()).await;
    assert_eq!(code, 200);
    assert_eq!(started["status"], "pending");
    assert!(started["streaming_url"].is_string());
    let id = started["execution_id"].as_str().expect("id").to_string();
    let view = &api.s.runs()[0];
    assert_eq!(
        (view.timeout_seconds, view.env.as_str()),
        (3600, "A=1\nB=2")
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    let (_, st) = api.get(&format!("/execution/{id}")).await;
    assert_eq!(st["status"], "running");
    assert!(st["billed"].is_number());
    assert!(api.s.finish_run(&id, 3));
    let (_, list) = api.get("/workloads/list").await;
    assert!(list.is_array(), "workloads/list is a bare array");
    assert_eq!(
        (list[0]["status"].as_str(), list[0]["return_code"].as_i64()),
        (Some("completed"), Some(3))
    );
    assert_eq!(list[0]["run_name"], "runctl-x-1234abcd-a1");
    assert_eq!(
        api.post(&format!("/workloads/abort/{id}"), json!({}))
            .await
            .0,
        400
    );

    let (_, second) = api.post("/execution/image/start", run_body()).await;
    let id2 = second["execution_id"].as_str().expect("id").to_string();
    let (code, msg) = api
        .post(&format!("/workloads/abort/{id2}"), json!({}))
        .await;
    assert_eq!(code, 200);
    assert!(msg["message"].is_string());
    assert_eq!(
        api.get(&format!("/execution/{id2}")).await.1["status"],
        "aborted"
    );
    let (code, logs) = api
        .get(&format!("/logs/execution/{id2}?limit=2&hours=1"))
        .await;
    assert_eq!((code, logs["total"].as_u64()), (200, Some(2)));
    assert_eq!(api.get("/execution/unknown").await.0, 404);
    let (_, third) = api.post("/execution/image/start", run_body()).await;
    let id3 = third["execution_id"].as_str().expect("id").to_string();
    assert!(api.s.fail_run(&id3, 137));
    let (_, st) = api.get(&format!("/execution/{id3}")).await;
    assert_eq!(
        (st["status"].as_str(), st["return_code"].as_i64()),
        (Some("failed"), Some(137))
    );
    assert!(st["job_end"].is_string());
    assert!(api.s.print_run(&id3, "epoch 1 done"));
    let (_, logs) = api
        .get(&format!("/logs/execution/{id3}?limit=2&hours=1"))
        .await;
    let messages: Vec<&str> = logs["logs"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert_eq!(
        messages,
        vec!["run failed (return code 137)", "epoch 1 done"],
        "the last lines, oldest first"
    );
}

#[tokio::test]
async fn a_run_without_timeout_gets_sixty_seconds() {
    let api = Api::new().await;
    let mut body = run_body();
    body.as_object_mut().expect("object").remove("timeout");
    api.post("/execution/image/start", body).await;
    assert_eq!(api.s.runs()[0].timeout_seconds, DEFAULT_RUN_TIMEOUT_SECONDS);
}

#[tokio::test]
async fn prices_are_strings() {
    let api = Api::new().await;
    let (_, pricing) = api.get("/pricing").await;
    let entry = pricing["prices"]
        .as_array()
        .expect("prices")
        .iter()
        .find(|p| p["group_by"]["hardware_profile"] == "on-demand.a100.1x")
        .expect("a100 entry");
    assert_eq!(entry["meter_slug"], "vm_running");
    assert!(
        entry["unit_price_per_hour"]
            .as_str()
            .expect("string")
            .parse::<f64>()
            .expect("number")
            > 0.0
    );
    let (_, avail) = api.get("/vms/availability").await;
    let v = &avail["available_instance_variants"][0];
    assert!(v["price_per_hour"].is_string());
    assert!(v["available_gpus_per_instance"].is_array());
}
