//! The RunPod provider against a hostile server that answers with truncated, malformed or
//! wrongly shaped bodies, HTML error pages, odd `Retry-After` values, resets and silence: every
//! call returns a classified, retryable error (never a panic, never success on garbage; a 2xx to
//! a DELETE counts as accepted), and no message carries the API key.

use std::collections::BTreeMap;
use std::sync::Arc;

use runctl::provider::registry::{BuildContext, Credentials};
use runctl::provider::runpod::{RunPodConfig, build_provider};
use runctl::provider::sim::{SimCloud, SimConfig};
use runctl::provider::{ErrorClass, MachineSpec, Provider, ProvidersConfig, ResourceKey, Workload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const API_KEY: &str = "rpa_HOSTILETESTKEY0000000000000001";

/// How the hostile server answers every request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// 200 with a JSON body cut off before its declared length.
    Truncated,
    /// 200 with an HTML page.
    Html,
    /// 200 with JSON of the wrong shape.
    WrongShape,
    /// 200 with invalid UTF-8 and control bytes.
    Binary,
    /// 502 with an HTML page.
    BadGateway,
    /// 429 without `Retry-After`.
    RateLimitedBare,
    /// 429 with an unparseable `Retry-After`.
    RateLimitedGarbage,
    /// The connection is closed without an answer.
    Reset,
    /// No answer until the client gives up.
    Silence,
}

async fn serve(answer: Answer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let (head, body): (&str, Vec<u8>) = match answer {
                    Answer::Truncated => (
                        "200 OK\r\nContent-Type: application/json\r\nContent-Length: 400",
                        b"{\"pods\": [{\"id\": \"abc\", \"desiredStatus\": \"RUN".to_vec(),
                    ),
                    Answer::Html => (
                        "200 OK\r\nContent-Type: text/html",
                        b"<html><body>Maintenance</body></html>".to_vec(),
                    ),
                    Answer::WrongShape => (
                        "200 OK\r\nContent-Type: application/json",
                        b"{\"pods\": 42, \"id\": [1,2,3]}".to_vec(),
                    ),
                    Answer::Binary => (
                        "200 OK\r\nContent-Type: application/json",
                        vec![0xff, 0xfe, 0x00, 0x01, b'{', 0x80, 0x7f],
                    ),
                    Answer::BadGateway => (
                        "502 Bad Gateway\r\nContent-Type: text/html",
                        b"<html>502 Bad Gateway</html>".to_vec(),
                    ),
                    Answer::RateLimitedBare => (
                        "429 Too Many Requests\r\nContent-Type: application/json",
                        b"{}".to_vec(),
                    ),
                    Answer::RateLimitedGarbage => (
                        "429 Too Many Requests\r\nRetry-After: soon-ish\r\nContent-Type: application/json",
                        b"{}".to_vec(),
                    ),
                    Answer::Reset => return,
                    Answer::Silence => {
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                        return;
                    }
                };
                let declared = if head.contains("Content-Length") {
                    String::new()
                } else {
                    format!("\r\nContent-Length: {}", body.len())
                };
                let mut out =
                    format!("HTTP/1.1 {head}{declared}\r\nConnection: close\r\n\r\n").into_bytes();
                out.extend_from_slice(&body);
                let _ = sock.write_all(&out).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}/v2")
}

fn provider(base_url: String) -> Arc<dyn Provider> {
    let config = ProvidersConfig {
        runpod: RunPodConfig {
            base_url,
            request_timeout_millis: Some(300),
            max_retries: 1,
            retry_base_millis: 5,
            max_rate_limit_wait_millis: 50,
            list_cache_millis: 0,
            ..RunPodConfig::default()
        },
        ..ProvidersConfig::default()
    };
    let sim = Arc::new(SimCloud::new(SimConfig::default()));
    let creds = Credentials::new(BTreeMap::from([(
        "apiKey".to_string(),
        API_KEY.to_string(),
    )]));
    let ctx = BuildContext {
        installation: "hostile",
        region: None,
        credentials: Some(&creds),
        config: &config,
        sim: &sim,
        client: None,
    };
    Arc::new(build_provider(&ctx).expect("provider builds"))
}

fn key() -> ResourceKey {
    ResourceKey {
        installation: "hostile".into(),
        namespace: "default".into(),
        name: "x".into(),
        uid: "0000-hostile".into(),
        attempt: 1,
    }
}

fn spec() -> MachineSpec {
    MachineSpec {
        gpu_type: Some("NVIDIA L40S".into()),
        gpu_count: 1,
        workload: Some(Workload {
            image: "busybox".into(),
            command: vec![],
            args: vec![],
            env: Default::default(),
            reporting: None,
        }),
        ..MachineSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_answers_are_classified_retryable_and_never_leak_the_key() {
    let answers = [
        Answer::Truncated,
        Answer::Html,
        Answer::WrongShape,
        Answer::Binary,
        Answer::BadGateway,
        Answer::RateLimitedBare,
        Answer::RateLimitedGarbage,
        Answer::Reset,
        Answer::Silence,
    ];
    let mut problems = Vec::new();
    for answer in answers {
        let p = provider(serve(answer).await);
        let results = [
            ("list", p.list().await.map(|_| ())),
            ("observe", p.observe(&key(), Some("abc")).await.map(|_| ())),
            ("create", p.create(&key(), &spec()).await.map(|_| ())),
            ("terminate", p.terminate("abc").await.map(|_| ())),
        ];
        for (call, r) in results {
            match r {
                // A 2xx to DELETE is an acceptance whatever its body says.
                Ok(())
                    if call == "terminate"
                        && matches!(answer, Answer::Html | Answer::WrongShape | Answer::Binary) => {
                }
                Ok(()) => problems.push(format!("{answer:?}: {call} succeeded on garbage")),
                Err(e) => {
                    if e.class() != ErrorClass::Retryable {
                        problems.push(format!(
                            "{answer:?}: {call} classified {:?} ({}): {e}",
                            e.class(),
                            e.reason()
                        ));
                    }
                    if e.to_string().contains(API_KEY) || format!("{e:?}").contains(API_KEY) {
                        problems.push(format!("{answer:?}: {call} error carries the API key"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
