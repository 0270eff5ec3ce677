//! The EC2 proxy in front of moto, checked against the EC2 behaviour in runctl's provider
//! reference (section 3): ClientToken idempotency, error documents and statuses, pending phase,
//! spot termination, lost responses, terminate of unknown ids. Needs `.venv` from
//! `scripts/setup-test-env.sh`.

use std::time::Duration;

use runctl_standins::aws::{Ec2Fault, Ec2Proxy, Ending, MotoServer, xml};

const AUTH: &str = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0";

async fn setup() -> (MotoServer, Ec2Proxy) {
    let moto = MotoServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let proxy = Ec2Proxy::start(&moto.url()).await.expect("proxy");
    (moto, proxy)
}

async fn call(proxy: &Ec2Proxy, body: &str) -> Result<(u16, String), reqwest::Error> {
    let res = reqwest::Client::new()
        .post(format!("{}/", proxy.url()))
        .header("authorization", AUTH)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("Version=2016-11-15&{body}"))
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.text().await?))
}

fn run_body(token: &str, instance_type: &str) -> String {
    format!(
        "Action=RunInstances&ImageId=ami-12345678&MinCount=1&MaxCount=1&InstanceType={instance_type}&ClientToken={token}\
         &TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=owner&TagSpecification.1.Tag.1.Value={token}"
    )
}

fn ids(text: &str) -> Vec<String> {
    let nodes = xml::scan(text);
    xml::instance_items(&nodes)
        .into_iter()
        .filter_map(|i| xml::child_text(text, &nodes, i, "instanceId").map(str::to_string))
        .collect()
}

fn field<'a>(text: &'a str, item_of: &str, path: &[&str]) -> Option<&'a str> {
    let nodes = xml::scan(text);
    let item = xml::instance_items(&nodes)
        .into_iter()
        .find(|i| xml::child_text(text, &nodes, *i, "instanceId") == Some(item_of))?;
    let mut at = item;
    for (n, name) in path.iter().enumerate() {
        if n + 1 == path.len() {
            return xml::child_text(text, &nodes, at, name);
        }
        at = xml::children(&nodes, at, name).next()?;
    }
    None
}

async fn describe(proxy: &Ec2Proxy, id: &str) -> (u16, String) {
    call(
        proxy,
        &format!("Action=DescribeInstances&InstanceId.1={id}"),
    )
    .await
    .expect("describe")
}

#[tokio::test]
async fn client_token_is_idempotent_like_ec2() {
    let (_moto, proxy) = setup().await;
    let (s1, a) = call(&proxy, &run_body("tok-1", "g5.xlarge"))
        .await
        .expect("run");
    let (s2, b) = call(&proxy, &run_body("tok-1", "g5.xlarge"))
        .await
        .expect("run again");
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(
        ids(&a),
        ids(&b),
        "same token and parameters: the original reservation"
    );
    assert_eq!(
        proxy.forwarded("RunInstances").len(),
        1,
        "the repeat never reached moto"
    );

    let (s3, c) = call(&proxy, &run_body("tok-1", "g6.xlarge"))
        .await
        .expect("mismatch");
    assert_eq!(s3, 400);
    assert!(
        c.contains("<Code>IdempotentParameterMismatch</Code>"),
        "{c}"
    );
    assert!(c.contains("Arguments on this idempotent request are inconsistent with arguments used in previous request(s)."));

    let (_, d) = call(&proxy, &run_body("tok-2", "g5.xlarge"))
        .await
        .expect("other token");
    assert_ne!(ids(&a), ids(&d));
}

#[tokio::test]
async fn injected_errors_use_ec2s_xml_and_statuses() {
    let (_moto, proxy) = setup().await;
    let cases = [
        (Ec2Fault::RequestLimitExceeded, 503, "RequestLimitExceeded"),
        (
            Ec2Fault::InsufficientInstanceCapacity,
            500,
            "InsufficientInstanceCapacity",
        ),
        (Ec2Fault::InternalError, 500, "InternalError"),
        (Ec2Fault::AuthFailure, 401, "AuthFailure"),
        (
            Ec2Fault::UnauthorizedOperation,
            403,
            "UnauthorizedOperation",
        ),
        (Ec2Fault::VcpuLimitExceeded, 400, "VcpuLimitExceeded"),
    ];
    for (fault, status, code) in cases {
        proxy.fail_next("RunInstances", fault);
        let (s, body) = call(&proxy, &run_body("tok-err", "g5.xlarge"))
            .await
            .expect("call");
        assert_eq!(s, status, "{code}");
        assert!(
            body.contains(&format!(
                "<Response><Errors><Error><Code>{code}</Code><Message>"
            )),
            "{body}"
        );
        assert!(body.contains("<RequestID>"), "{body}");
    }
    assert!(
        proxy.forwarded("RunInstances").is_empty(),
        "injected errors never reach moto"
    );
    let (s, _) = call(&proxy, &run_body("tok-err", "g5.xlarge"))
        .await
        .expect("call");
    assert_eq!(s, 200, "faults are one-shot");
}

#[tokio::test]
async fn pending_phase_then_running() {
    let (_moto, proxy) = setup().await;
    proxy.hold_pending(Duration::from_millis(400));
    let (_, run) = call(&proxy, &run_body("tok-p", "g5.xlarge"))
        .await
        .expect("run");
    let id = ids(&run).remove(0);
    let (_, d) = describe(&proxy, &id).await;
    assert_eq!(field(&d, &id, &["instanceState", "name"]), Some("pending"));
    assert_eq!(field(&d, &id, &["instanceState", "code"]), Some("0"));
    let mut running = false;
    for _ in 0..50 {
        let (_, d) = describe(&proxy, &id).await;
        if field(&d, &id, &["instanceState", "name"]) == Some("running") {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(running, "moto's running shows once the hold is over");
}

#[tokio::test]
async fn spot_termination_sets_the_state_reason() {
    let (_moto, proxy) = setup().await;
    let body = format!(
        "{}&InstanceMarketOptions.MarketType=spot",
        run_body("tok-s", "g5.xlarge")
    );
    let (_, run) = call(&proxy, &body).await.expect("run");
    let id = ids(&run).remove(0);
    proxy
        .end_instance(&id, Ending::Terminate, "Server.SpotInstanceTermination")
        .await
        .expect("end");
    let (_, d) = describe(&proxy, &id).await;
    assert_eq!(field(&d, &id, &["instanceState", "code"]), Some("48"));
    assert_eq!(
        field(&d, &id, &["stateReason", "code"]),
        Some("Server.SpotInstanceTermination")
    );
    assert_eq!(field(&d, &id, &["instanceLifecycle"]), Some("spot"));
}

#[tokio::test]
async fn lost_response_still_launches_once() {
    let (_moto, proxy) = setup().await;
    proxy.lose_next_response("RunInstances");
    let first = call(&proxy, &run_body("tok-l", "g5.xlarge")).await;
    assert!(
        first.is_err(),
        "the client must not get the answer: {first:?}"
    );
    let (_, all) = call(&proxy, "Action=DescribeInstances")
        .await
        .expect("describe");
    assert_eq!(ids(&all).len(), 1, "moto launched the instance");
    let (s, again) = call(&proxy, &run_body("tok-l", "g5.xlarge"))
        .await
        .expect("retry");
    assert_eq!(s, 200);
    assert_eq!(
        ids(&again),
        ids(&all),
        "the retry with the same token returns it"
    );
}

#[tokio::test]
async fn terminate_and_unknown_ids() {
    let (_moto, proxy) = setup().await;
    let (_, run) = call(&proxy, &run_body("tok-t", "g5.xlarge"))
        .await
        .expect("run");
    let id = ids(&run).remove(0);
    let (s, t) = call(
        &proxy,
        &format!("Action=TerminateInstances&InstanceId.1={id}"),
    )
    .await
    .expect("terminate");
    assert_eq!(s, 200);
    assert!(
        t.contains("<currentState><code>32</code><name>shutting-down</name></currentState>"),
        "{t}"
    );
    let (_, d) = describe(&proxy, &id).await;
    assert_eq!(
        field(&d, &id, &["instanceState", "name"]),
        Some("terminated")
    );
    assert_eq!(
        field(&d, &id, &["stateReason", "code"]),
        Some("Client.UserInitiatedShutdown")
    );
    let (s, again) = call(
        &proxy,
        &format!("Action=TerminateInstances&InstanceId.1={id}"),
    )
    .await
    .expect("again");
    assert_eq!(s, 200, "re-terminate succeeds: {again}");
    let (s, unknown) = describe(&proxy, "i-0123456789abcdef0").await;
    assert_eq!(s, 400);
    assert!(
        unknown.contains("<Code>InvalidInstanceID.NotFound</Code>"),
        "{unknown}"
    );
}

#[tokio::test]
async fn invisible_right_after_launch() {
    let (_moto, proxy) = setup().await;
    proxy.invisible_after_launch(Duration::from_millis(300));
    let (_, run) = call(&proxy, &run_body("tok-i", "g5.xlarge"))
        .await
        .expect("run");
    let id = ids(&run).remove(0);
    let (s, d) = describe(&proxy, &id).await;
    assert_eq!(s, 400);
    assert!(d.contains("InvalidInstanceID.NotFound"));
    let (_, all) = call(&proxy, "Action=DescribeInstances").await.expect("all");
    assert!(ids(&all).is_empty(), "hidden from listings too");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (s, _) = describe(&proxy, &id).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn reset_forgets_tokens_and_instances() {
    let (_moto, proxy) = setup().await;
    call(&proxy, &run_body("tok-r", "g5.xlarge"))
        .await
        .expect("run");
    proxy.reset_all().await.expect("reset");
    let (_, all) = call(&proxy, "Action=DescribeInstances").await.expect("all");
    assert!(ids(&all).is_empty());
    assert!(proxy.forwarded("RunInstances").is_empty());
}
