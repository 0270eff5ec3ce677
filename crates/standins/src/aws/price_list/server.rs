//! Request handling of the Price List stand-in: the JSON 1.1 envelope (target, signature,
//! body), injected faults, validation, filtering and paging.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::catalog::{Filter, FilterType};
use super::{Call, PriceListFault, Shared, TARGET};
use crate::aws::query;

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const NAMESPACE: &str = "com.amazonaws.awspricelistservice";
/// The API's largest (and default) page.
const MAX_RESULTS: usize = 100;

pub(super) fn router(state: Shared) -> Router {
    Router::new().fallback(handle).with_state(state)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    service_code: Option<String>,
    #[serde(default)]
    filters: Vec<WireFilter>,
    format_version: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireFilter {
    #[serde(rename = "Type")]
    kind: String,
    field: String,
    value: String,
}

fn answer(status: u16, body: String) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, CONTENT_TYPE)
        .header("x-amzn-RequestId", uuid::Uuid::new_v4().to_string())
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A JSON 1.1 error, with the error type in the header and the body as AWS sends them.
fn error(status: u16, code: &str, message: &str) -> Response {
    let mut r = answer(
        status,
        json!({"__type": format!("{NAMESPACE}#{code}"), "Message": message}).to_string(),
    );
    if let Ok(v) = format!("{code}:http://internal.amazon.com/coral/{NAMESPACE}/").parse() {
        r.headers_mut().insert("x-amzn-ErrorType", v);
    }
    r
}

fn fault_answer(f: &PriceListFault) -> Response {
    match f {
        PriceListFault::Throttling => error(400, "ThrottlingException", "Rate exceeded"),
        PriceListFault::InternalError => error(
            500,
            "InternalErrorException",
            "An internal error occurred. Try again later.",
        ),
        PriceListFault::AccessDenied => error(
            400,
            "AccessDeniedException",
            "User is not authorized to perform: pricing:GetProducts",
        ),
        PriceListFault::Unavailable => Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(Body::empty())
            .unwrap_or_else(|_| Response::new(Body::empty())),
        PriceListFault::Garbled => answer(
            200,
            json!({"FormatVersion": "aws_v1", "PriceList": ["{\"product\":{\"attributes\":"]})
                .to_string(),
        ),
        PriceListFault::Custom {
            status,
            code,
            message,
        } => error(*status, code, message),
    }
}

async fn handle(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if method != Method::POST
        || uri.path() != "/"
        || header("x-amz-target").as_deref() != Some(TARGET)
    {
        return error(
            400,
            "UnknownOperationException",
            "The stand-in serves only AWSPriceListService.GetProducts (POST /)",
        );
    }
    let auth = header("authorization").unwrap_or_default();
    let scope: Vec<String> = auth
        .split("Credential=")
        .nth(1)
        .map(|c| c.split(['/', ',']).map(str::to_string).collect())
        .unwrap_or_default();
    let req: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                400,
                "SerializationException",
                &format!("unreadable body: {e}"),
            );
        }
    };
    let fault = {
        let mut st = s.lock();
        st.calls.push(Call {
            service_code: req.service_code.clone().unwrap_or_default(),
            filters: req
                .filters
                .iter()
                .map(|f| (f.kind.clone(), f.field.clone(), f.value.clone()))
                .collect(),
            next_token: req.next_token.clone(),
            signing_region: query::region(Some(&auth)),
            signing_service: scope.get(3).cloned(),
            user_agent: header("user-agent").unwrap_or_default(),
        });
        if !auth.starts_with("AWS4-HMAC-SHA256 ") {
            return error(
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            );
        }
        st.faults.pop_front().or_else(|| st.outage.clone())
    };
    if let Some(f) = fault {
        return fault_answer(&f);
    }
    get_products(&s, &req)
}

fn get_products(s: &Shared, req: &Request) -> Response {
    match req.service_code.as_deref() {
        Some("AmazonEC2") => {}
        Some(other) => {
            return error(
                400,
                "NotFoundException",
                &format!("Service code {other} not found"),
            );
        }
        None => return error(400, "InvalidParameterException", "ServiceCode is required"),
    }
    if let Some(v) = req.format_version.as_deref().filter(|v| *v != "aws_v1") {
        return error(
            400,
            "InvalidParameterException",
            &format!("Invalid FormatVersion {v}"),
        );
    }
    let max = match req.max_results {
        None => MAX_RESULTS,
        Some(n) if (1..=MAX_RESULTS as i64).contains(&n) => n as usize,
        Some(n) => {
            return error(
                400,
                "InvalidParameterException",
                &format!("MaxResults {n} is not between 1 and 100"),
            );
        }
    };
    let mut filters = vec![];
    for f in &req.filters {
        let Some(kind) = FilterType::parse(&f.kind) else {
            return error(
                400,
                "InvalidParameterException",
                &format!("Invalid filter type {}", f.kind),
            );
        };
        filters.push(Filter {
            kind,
            field: f.field.clone(),
            value: f.value.clone(),
        });
    }
    let fingerprint = format!(
        "{:?}",
        req.filters
            .iter()
            .map(|f| (&f.kind, &f.field, &f.value))
            .collect::<Vec<_>>()
    );
    let mut st = s.lock();
    let offset = match &req.next_token {
        None => 0,
        Some(t) => match st.tokens.get(t) {
            Some((print, offset)) if *print == fingerprint => *offset,
            _ => {
                return error(
                    400,
                    "InvalidNextTokenException",
                    "The pagination token is invalid. Try again without a pagination token.",
                );
            }
        },
    };
    let matching: Vec<String> = st
        .products
        .iter()
        .filter(|p| filters.iter().all(|f| f.passes(p)))
        .map(super::catalog::Product::document)
        .collect();
    let page = max.min(st.page_size.unwrap_or(MAX_RESULTS));
    let end = (offset + page).min(matching.len());
    let docs = matching.get(offset..end).unwrap_or_default().to_vec();
    let mut body = json!({"FormatVersion": "aws_v1", "PriceList": docs});
    if end < matching.len() {
        st.next_token += 1;
        let token = format!("standin-page-{}-{end}", st.next_token);
        st.tokens.insert(token.clone(), (fingerprint, end));
        body["NextToken"] = json!(token);
    }
    answer(200, body.to_string())
}
