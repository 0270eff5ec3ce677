//! The Price List stand-in over HTTP, as the AWS SDK calls it (JSON 1.1, SigV4-shaped header).

use serde_json::{Value, json};

use super::*;

const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIATEST/20260101/us-east-1/pricing/aws4_request, SignedHeaders=host;x-amz-target, Signature=0";

async fn call(api: &PriceListStandin, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{}/", api.url()))
        .header("x-amz-target", TARGET)
        .header("content-type", "application/x-amz-json-1.1")
        .header("authorization", AUTH)
        .body(body.to_string())
        .send()
        .await
        .expect("stand-in answers");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn term(field: &str, value: &str) -> Value {
    json!({"Type": "TERM_MATCH", "Field": field, "Value": value})
}

fn on_demand_linux(region: &str, instance_type: &str) -> Value {
    json!({
        "ServiceCode": "AmazonEC2", "FormatVersion": "aws_v1",
        "Filters": [
            term("instanceType", instance_type), term("regionCode", region),
            term("operatingSystem", "Linux"), term("tenancy", "Shared"),
            term("preInstalledSw", "NA"), term("capacitystatus", "Used"),
            term("licenseModel", "No License required"),
        ]
    })
}

fn documents(answer: &Value) -> Vec<Value> {
    answer["PriceList"]
        .as_array()
        .expect("PriceList")
        .iter()
        .map(|d| serde_json::from_str(d.as_str().expect("a string")).expect("a JSON document"))
        .collect()
}

fn on_demand_usd(doc: &Value) -> String {
    let term = doc["terms"]["OnDemand"]
        .as_object()
        .and_then(|t| t.values().next())
        .expect("an on-demand term");
    let dim = term["priceDimensions"]
        .as_object()
        .and_then(|d| d.values().next())
        .expect("a dimension");
    assert_eq!(dim["unit"], "Hrs");
    dim["pricePerUnit"]["USD"]
        .as_str()
        .expect("USD")
        .to_string()
}

#[tokio::test]
async fn the_full_filter_set_selects_one_on_demand_linux_document_per_region() {
    let api = PriceListStandin::start().await.expect("start");
    api.set_on_demand("us-east-1", "g5.xlarge", 1.006);
    api.set_on_demand("eu-west-1", "g5.xlarge", 1.123);
    let (status, answer) = call(&api, on_demand_linux("eu-west-1", "g5.xlarge")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["FormatVersion"], "aws_v1");
    assert!(answer.get("NextToken").is_none());
    let docs = documents(&answer);
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(on_demand_usd(&docs[0]), "1.1230000000");
    assert_eq!(docs[0]["product"]["attributes"]["location"], "EU (Ireland)");
    assert_eq!(docs[0]["serviceCode"], "AmazonEC2");
    assert!(docs[0]["terms"]["Reserved"].is_object());
    let calls = api.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].signing_region.as_deref(), Some("us-east-1"));
    assert_eq!(calls[0].signing_service.as_deref(), Some("pricing"));
    assert_eq!(api.lookups("eu-west-1", "g5.xlarge"), 1);
    assert_eq!(api.lookups("us-east-1", "g5.xlarge"), 0);
}

#[tokio::test]
async fn a_missing_filter_lets_the_neighbouring_products_through() {
    let api = PriceListStandin::start().await.expect("start");
    api.set_on_demand("us-east-1", "g5.xlarge", 1.006);
    let (_, answer) = call(
        &api,
        json!({"ServiceCode": "AmazonEC2", "Filters": [term("instanceType", "g5.xlarge")]}),
    )
    .await;
    let docs = documents(&answer);
    assert_eq!(docs.len(), 6);
    let prices: std::collections::BTreeSet<String> = docs.iter().map(on_demand_usd).collect();
    assert!(
        prices.len() > 1,
        "the neighbours are priced differently: {prices:?}"
    );
    let skus: std::collections::BTreeSet<&str> = docs
        .iter()
        .map(|d| d["product"]["sku"].as_str().expect("sku"))
        .collect();
    assert_eq!(skus.len(), 6, "each product has its own SKU");
}

#[tokio::test]
async fn pages_follow_max_results_and_tokens_belong_to_their_query() {
    let api = PriceListStandin::start().await.expect("start");
    api.set_on_demand("us-east-1", "g5.xlarge", 1.006);
    let query = |token: Option<&str>| {
        let mut q = json!({"ServiceCode": "AmazonEC2", "MaxResults": 4,
                           "Filters": [term("instanceType", "g5.xlarge")]});
        if let Some(t) = token {
            q["NextToken"] = json!(t);
        }
        q
    };
    let (_, first) = call(&api, query(None)).await;
    assert_eq!(documents(&first).len(), 4);
    let token = first["NextToken"]
        .as_str()
        .expect("a next page")
        .to_string();
    let (_, second) = call(&api, query(Some(&token))).await;
    assert_eq!(documents(&second).len(), 2);
    assert!(second.get("NextToken").is_none());
    // The token of another query, or a made-up one, is refused.
    let (status, err) = call(
        &api,
        json!({"ServiceCode": "AmazonEC2", "NextToken": token, "Filters": [term("instanceType", "p5.48xlarge")]}),
    )
    .await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (
            400,
            Some("com.amazonaws.awspricelistservice#InvalidNextTokenException")
        )
    );
    // The stand-in's own page size wins over a larger MaxResults.
    api.page_size(1);
    let (_, small) = call(&api, on_demand_linux("us-east-1", "g5.xlarge")).await;
    assert_eq!(documents(&small).len(), 1);
    assert!(
        small.get("NextToken").is_none(),
        "one product matches the full filter set"
    );
}

#[tokio::test]
async fn bad_requests_get_the_apis_errors() {
    let api = PriceListStandin::start().await.expect("start");
    for (body, code) in [
        (json!({"ServiceCode": "AmazonEC3"}), "NotFoundException"),
        (json!({"Filters": []}), "InvalidParameterException"),
        (
            json!({"ServiceCode": "AmazonEC2", "MaxResults": 101}),
            "InvalidParameterException",
        ),
        (
            json!({"ServiceCode": "AmazonEC2", "FormatVersion": "aws_v2"}),
            "InvalidParameterException",
        ),
        (
            json!({"ServiceCode": "AmazonEC2", "Filters": [{"Type": "LIKE", "Field": "a", "Value": "b"}]}),
            "InvalidParameterException",
        ),
    ] {
        let (status, err) = call(&api, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            err["__type"],
            format!("com.amazonaws.awspricelistservice#{code}"),
            "{body}"
        );
        assert!(err["Message"].is_string());
    }
    let res = reqwest::Client::new()
        .post(format!("{}/", api.url()))
        .header("x-amz-target", TARGET)
        .body("{}")
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status().as_u16(), 403, "unsigned");
    let res = reqwest::Client::new()
        .post(format!("{}/", api.url()))
        .header("x-amz-target", "AWSPriceListService.DescribeServices")
        .header("authorization", AUTH)
        .body("{}")
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status().as_u16(), 400, "another operation");
}

#[tokio::test]
async fn faults_are_answered_once_and_an_outage_until_it_ends() {
    let api = PriceListStandin::start().await.expect("start");
    api.set_on_demand("us-east-1", "g5.xlarge", 1.006);
    api.fail_next(PriceListFault::Throttling);
    api.fail_next(PriceListFault::AccessDenied);
    let q = on_demand_linux("us-east-1", "g5.xlarge");
    let (s1, e1) = call(&api, q.clone()).await;
    let (s2, e2) = call(&api, q.clone()).await;
    let (s3, _) = call(&api, q.clone()).await;
    assert_eq!(
        (s1, e1["__type"].as_str()),
        (
            400,
            Some("com.amazonaws.awspricelistservice#ThrottlingException")
        )
    );
    assert_eq!(
        (s2, e2["__type"].as_str()),
        (
            400,
            Some("com.amazonaws.awspricelistservice#AccessDeniedException")
        )
    );
    assert_eq!(s3, 200);
    api.set_outage(Some(PriceListFault::InternalError));
    for _ in 0..2 {
        assert_eq!(call(&api, q.clone()).await.0, 500);
    }
    api.set_outage(Some(PriceListFault::Unavailable));
    assert_eq!(call(&api, q.clone()).await.0, 503);
    api.set_outage(None);
    assert_eq!(call(&api, q.clone()).await.0, 200);
    assert_eq!(
        api.calls().len(),
        7,
        "every call is counted, faults included"
    );
    assert_eq!(api.lookups("us-east-1", "g5.xlarge"), 7);
}
