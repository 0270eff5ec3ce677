//! Shared fixtures: a small `Widget` custom resource with CEL rules, and helpers to start a
//! server with its CRD installed and to send raw HTTP requests.

use std::time::Duration;

use http::Request;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use runctl_apiserver::{ApiServer, ServerConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A GPU widget: enough schema to exercise types, bounds, defaults and CEL.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "test.runctl.dev",
    version = "v1",
    kind = "Widget",
    plural = "widgets",
    shortname = "wd",
    category = "testing",
    namespaced,
    status = "WidgetStatus"
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.provider != 'lyceum' || !has(self.gpuCount) || self.gpuCount in [1, 2, 4, 8]").message("Lyceum machines take 1, 2, 4 or 8 GPUs").field_path(".gpuCount"))]
pub struct WidgetSpec {
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("gpuCount is immutable"))]
    pub gpu_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

pub fn widget(name: &str, provider: &str, gpus: Option<u32>) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            provider: provider.into(),
            gpu_count: gpus,
            note: None,
        },
    )
}

/// A server with the Widget CRD installed.
pub async fn server() -> (ApiServer, Api<Widget>) {
    server_with(ServerConfig::default()).await
}

pub async fn server_with(config: ServerConfig) -> (ApiServer, Api<Widget>) {
    let server = ApiServer::start_with(config).await.expect("server starts");
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .expect("CRD installs");
    let widgets = Api::namespaced(server.client(), "default");
    (server, widgets)
}

/// Send a raw request; returns (status, body as JSON or Null).
pub async fn raw(server: &ApiServer, request: Request<Vec<u8>>) -> (u16, Value, http::HeaderMap) {
    let (mut parts, body) = request.into_parts();
    let uri = format!("{}{}", server.url(), parts.uri);
    parts.uri = uri.parse().expect("valid uri");
    let request = Request::from_parts(parts, body);
    let (status, headers, bytes) = send(request).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        headers,
    )
}

/// Minimal HTTP/1.1 client over a TCP stream, reading the whole body (connection: close).
async fn send(request: Request<Vec<u8>>) -> (u16, http::HeaderMap, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = request.uri().authority().expect("authority").to_string();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        request.method(),
        path,
        authority,
        request.body().len()
    );
    for (k, v) in request.headers() {
        head.push_str(&format!("{}: {}\r\n", k, v.to_str().unwrap_or_default()));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connects");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("writes head");
    stream.write_all(request.body()).await.expect("writes body");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .expect("reads");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut body = buf[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let mut headers = http::HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':')
            && let (Ok(k), Ok(v)) = (
                http::HeaderName::try_from(k.trim()),
                http::HeaderValue::try_from(v.trim()),
            )
        {
            headers.insert(k, v);
        }
    }
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// Poll `check` until it returns Some, for at most ~5 seconds.
pub async fn eventually<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..250 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached in time");
}
