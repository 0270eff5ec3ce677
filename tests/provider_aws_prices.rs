//! Where the AWS provider's prices come from (issue 17 item 4): on-demand prices from the AWS
//! Price List API per region (runctl's stand-in of `GetProducts`, which moto lacks), the embedded
//! table only as a labelled fallback when the API fails or does not know the type, spot prices
//! from EC2's spot price history, and one API call per instance type for a burst of lookups
//! (counted at the stand-in, never timed). Needs `.venv` from `scripts/setup-test-env.sh`.

#[path = "support/moto.rs"]
mod moto;

use std::collections::BTreeMap;
use std::sync::Arc;

use runctl::provider::aws::AwsConfig;
use runctl::provider::identity::ResourceKey;
use runctl::provider::registry::{Credentials, ProviderKey};
use runctl::provider::{MachineSpec, Provider, ProviderKind, ProviderRegistry, ProvidersConfig};
use runctl_standins::aws::price_list::Product;
use runctl_standins::aws::{Ec2Proxy, MotoServer, PriceListFault, PriceListStandin};

const INSTALLATION: &str = "prices";

/// moto behind the EC2 proxy, the Price List stand-in, and a registry of AWS providers (one per
/// region, as the operator has) configured against them.
struct Env {
    // Field order: the proxy stops before moto is killed.
    _proxy: Ec2Proxy,
    _moto: MotoServer,
    prices: PriceListStandin,
    registry: ProviderRegistry,
}

impl Env {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tune: impl FnOnce(&mut AwsConfig)) -> Self {
        let moto = MotoServer::start().await.unwrap_or_else(|e| panic!("{e}"));
        let proxy = Ec2Proxy::start(&moto.url()).await.expect("start proxy");
        let prices = PriceListStandin::start().await.expect("start price list");
        let direct = moto::ec2_client(&moto.url());
        let ami = moto::first_ami(&direct).await;
        let mut config = ProvidersConfig::default();
        config.aws.endpoint_url = Some(proxy.url());
        config.aws.pricing.endpoint_url = Some(prices.url());
        config.aws.default_ami_id = Some(ami);
        config.aws.max_attempts = 1;
        config.aws.attempt_timeout_seconds = 5;
        tune(&mut config.aws);
        Self {
            _proxy: proxy,
            _moto: moto,
            prices,
            registry: ProviderRegistry::new(INSTALLATION, config),
        }
    }

    /// The provider of `region` (the same instance on every call, as in the operator).
    async fn provider(&self, region: &str) -> Arc<dyn Provider> {
        let key = ProviderKey {
            kind: ProviderKind::Aws,
            region: Some(region.into()),
            credentials: Some("default/aws@1".into()),
        };
        let creds = Credentials::new(BTreeMap::from([
            ("accessKeyId".to_string(), "AKIATESTING".to_string()),
            ("secretAccessKey".to_string(), "testing-secret".to_string()),
        ]));
        self.registry
            .get(&key, Some(&creds))
            .await
            .expect("build the aws provider")
    }
}

fn spec(instance_type: &str, region: &str) -> MachineSpec {
    MachineSpec {
        instance_type: Some(instance_type.into()),
        gpu_count: 1,
        region: Some(region.into()),
        ..Default::default()
    }
}

fn key(name: &str) -> ResourceKey {
    ResourceKey {
        installation: INSTALLATION.into(),
        namespace: "default".into(),
        name: name.into(),
        uid: uuid::Uuid::new_v4().to_string(),
        attempt: 1,
    }
}

#[tokio::test]
async fn on_demand_prices_come_from_the_price_list_api_of_each_region() {
    let env = Env::start().await;
    env.prices.set_on_demand("us-east-1", "g5.xlarge", 1.006);
    env.prices.set_on_demand("eu-west-1", "g5.xlarge", 1.123);
    let east = env.provider("us-east-1").await;
    let west = env.provider("eu-west-1").await;

    let q = east
        .price(&spec("g5.xlarge", "us-east-1"))
        .await
        .expect("price");
    assert_eq!(
        (q.per_hour, q.source, q.estimate),
        (1.006, "aws-price-list", false)
    );
    let q = west
        .price(&spec("g5.xlarge", "eu-west-1"))
        .await
        .expect("price");
    assert_eq!(
        (q.per_hour, q.source, q.estimate),
        (1.123, "aws-price-list", false)
    );

    // A machine carries its region's price and where it comes from.
    let m = west
        .create(&key("west"), &spec("g5.xlarge", "eu-west-1"))
        .await
        .expect("create in eu-west-1");
    assert_eq!(m.price_per_hour, Some(1.123));
    assert_eq!(m.price_source, Some("aws-price-list"));
    let message = m.message.clone().unwrap_or_default();
    assert!(!message.contains("estimate"), "{message}");

    // The pricing client has its own region (an endpoint of the API), not the machine's, and
    // names runctl in its User-Agent.
    let calls = env.prices.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for c in &calls {
        assert_eq!(c.signing_region.as_deref(), Some("us-east-1"), "{c:?}");
        assert_eq!(c.signing_service.as_deref(), Some("pricing"), "{c:?}");
        assert_eq!(c.service_code, "AmazonEC2");
        assert!(
            c.user_agent
                .contains(&format!("app/runctl-{}", env!("CARGO_PKG_VERSION"))),
            "{}",
            c.user_agent
        );
    }
    let mut filters: Vec<(String, String)> = calls[1]
        .filters
        .iter()
        .map(|(kind, field, value)| {
            assert_eq!(kind, "TERM_MATCH");
            (field.clone(), value.clone())
        })
        .collect();
    filters.sort();
    assert_eq!(
        filters,
        [
            ("capacitystatus", "Used"),
            ("instanceType", "g5.xlarge"),
            ("licenseModel", "No License required"),
            ("operatingSystem", "Linux"),
            ("preInstalledSw", "NA"),
            ("regionCode", "eu-west-1"),
            ("tenancy", "Shared"),
        ]
        .map(|(f, v)| (f.to_string(), v.to_string()))
    );
}

#[tokio::test]
async fn the_pricing_region_is_configurable() {
    let env = Env::start_with(|c| c.pricing.region = "eu-central-1".into()).await;
    env.prices.set_on_demand("ap-south-1", "g5.xlarge", 0.9);
    let q = env
        .provider("ap-south-1")
        .await
        .price(&spec("g5.xlarge", "ap-south-1"))
        .await
        .expect("price");
    assert_eq!((q.per_hour, q.source), (0.9, "aws-price-list"));
    let calls = env.prices.calls();
    assert_eq!(calls[0].signing_region.as_deref(), Some("eu-central-1"));
}

#[tokio::test]
async fn a_price_list_outage_prices_from_the_table_labelled_an_estimate() {
    let env = Env::start().await;
    env.prices.set_on_demand("us-east-1", "g5.xlarge", 1.05);
    env.prices.set_outage(Some(PriceListFault::InternalError));
    let p = env.provider("us-east-1").await;

    let q = p
        .price(&spec("g5.xlarge", "us-east-1"))
        .await
        .expect("a price despite the outage");
    assert_eq!(
        (q.per_hour, q.source, q.estimate),
        (1.006, "ec2-on-demand-table", true),
        "the table's figure, labelled"
    );
    let m = p
        .create(&key("outage"), &spec("g5.xlarge", "us-east-1"))
        .await
        .expect("the outage does not block the create");
    assert_eq!(m.price_per_hour, Some(1.006));
    assert_eq!(m.price_source, Some("ec2-on-demand-table"));
    let message = m.message.clone().unwrap_or_default();
    assert!(
        message.contains("estimate") && message.contains("could not be read (ProviderUnavailable"),
        "{message}"
    );
    p.list().await.expect("list");
    p.observe(&key("outage"), Some(&m.id))
        .await
        .expect("observe");
    assert_eq!(
        env.prices.lookups("us-east-1", "g5.xlarge"),
        1,
        "a failed lookup is kept for errorRetrySeconds: one call, not one per lookup"
    );
    // A type neither the API (down) nor the table knows has no price, as before.
    let err = p
        .price(&spec("m5.large", "us-east-1"))
        .await
        .expect_err("no price");
    assert_eq!(err.reason(), "NotFound", "{err}");
}

#[tokio::test]
async fn after_the_retry_interval_the_api_price_replaces_the_estimate() {
    let env = Env::start_with(|c| c.pricing.error_retry_seconds = 0).await;
    env.prices.set_on_demand("us-east-1", "g5.xlarge", 1.05);
    env.prices.set_outage(Some(PriceListFault::Unavailable));
    let p = env.provider("us-east-1").await;
    let m = p
        .create(&key("recover"), &spec("g5.xlarge", "us-east-1"))
        .await
        .expect("create");
    assert_eq!(m.price_source, Some("ec2-on-demand-table"));
    env.prices.set_outage(None);
    let listed = p.list().await.expect("list");
    let m = listed.iter().find(|x| x.id == m.id).expect("listed");
    assert_eq!(
        (m.price_per_hour, m.price_source),
        (Some(1.05), Some("aws-price-list"))
    );
    assert!(
        !m.message.clone().unwrap_or_default().contains("estimate"),
        "{:?}",
        m.message
    );
}

#[tokio::test]
async fn refusals_and_unreadable_answers_fall_back_with_their_reason() {
    let env = Env::start().await;
    env.prices.set_on_demand("us-east-1", "g5.xlarge", 1.05);
    env.prices.set_on_demand("us-east-1", "g5.2xlarge", 1.3);
    env.prices.set_on_demand("us-east-1", "m5.large", 0.096);
    let p = env.provider("us-east-1").await;

    env.prices.fail_next(PriceListFault::AccessDenied);
    let m = p
        .create(&key("denied"), &spec("g5.xlarge", "us-east-1"))
        .await
        .expect("create");
    assert_eq!(m.price_source, Some("ec2-on-demand-table"));
    let message = m.message.clone().unwrap_or_default();
    assert!(message.contains("pricing:GetProducts"), "{message}");

    env.prices.fail_next(PriceListFault::Garbled);
    let m = p
        .create(&key("garbled"), &spec("g5.2xlarge", "us-east-1"))
        .await
        .expect("create");
    assert_eq!(
        (m.price_per_hour, m.price_source),
        (Some(1.212), Some("ec2-on-demand-table"))
    );
    let message = m.message.clone().unwrap_or_default();
    assert!(message.contains("UnreadableAnswer"), "{message}");

    // A type the API lists and the table does not: the API's price.
    let q = p
        .price(&spec("m5.large", "us-east-1"))
        .await
        .expect("price");
    assert_eq!((q.per_hour, q.source), (0.096, "aws-price-list"));
    // A type the API does not list: the table, labelled, with that reason.
    let q = p
        .price(&spec("p5.48xlarge", "us-east-1"))
        .await
        .expect("table price");
    assert_eq!((q.source, q.estimate), ("ec2-on-demand-table", true));
    // Neither: no price.
    let err = p
        .price(&spec("x9.huge", "us-east-1"))
        .await
        .expect_err("unknown");
    assert_eq!(err.reason(), "NotFound");
}

#[tokio::test]
async fn a_burst_of_lookups_makes_one_call_per_instance_type() {
    let env = Env::start().await;
    env.prices.set_on_demand("us-east-1", "g5.xlarge", 1.006);
    env.prices.set_on_demand("us-east-1", "g5.2xlarge", 1.212);
    let p = env.provider("us-east-1").await;
    let lookups = (0..40).map(|i| {
        let p = p.clone();
        let t = if i % 2 == 0 {
            "g5.xlarge"
        } else {
            "g5.2xlarge"
        };
        async move { p.price(&spec(t, "us-east-1")).await }
    });
    for q in futures::future::join_all(lookups).await {
        assert_eq!(q.expect("price").source, "aws-price-list");
    }
    for i in 0..3 {
        p.create(&key(&format!("burst-{i}")), &spec("g5.xlarge", "us-east-1"))
            .await
            .expect("create");
    }
    let listed = p.list().await.expect("list");
    assert!(
        listed
            .iter()
            .all(|m| m.price_source == Some("aws-price-list")),
        "{listed:?}"
    );
    // The provider of another region (and its own cache) asks once for its own prices.
    env.prices.set_on_demand("eu-west-1", "g5.xlarge", 1.123);
    env.provider("eu-west-1")
        .await
        .price(&spec("g5.xlarge", "eu-west-1"))
        .await
        .expect("price");
    assert_eq!(env.prices.lookups("us-east-1", "g5.xlarge"), 1);
    assert_eq!(env.prices.lookups("us-east-1", "g5.2xlarge"), 1);
    assert_eq!(env.prices.lookups("eu-west-1", "g5.xlarge"), 1);
    assert_eq!(env.prices.calls().len(), 3);
}

#[tokio::test]
async fn every_page_of_the_answer_is_read() {
    let env = Env::start().await;
    env.prices.set_on_demand("us-east-1", "g5.xlarge", 1.006);
    // A second product that passes every filter, at a higher price (the answer is the highest).
    env.prices.add_product(Product::ec2(
        "us-east-1",
        "g5.xlarge",
        1.05,
        &[("usagetype", "USE1-BoxUsage:g5.xlarge")],
    ));
    env.prices.page_size(1);
    let q = env
        .provider("us-east-1")
        .await
        .price(&spec("g5.xlarge", "us-east-1"))
        .await
        .expect("price");
    assert_eq!((q.per_hour, q.source), (1.05, "aws-price-list"));
    let calls = env.prices.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[0].next_token.is_none() && calls[1].next_token.is_some());
}

#[tokio::test]
async fn spot_prices_come_from_the_spot_price_history() {
    let env = Env::start().await;
    env.prices.set_on_demand("us-east-1", "g5.xlarge", 1.006);
    let p = env.provider("us-east-1").await;
    let mut s = spec("g5.xlarge", "us-east-1");
    s.spot = true;
    let q = p.price(&s).await.expect("spot price");
    assert_eq!((q.source, q.estimate), ("ec2-spot-price-history", false));
    let m = p.create(&key("spot"), &s).await.expect("create spot");
    assert_eq!(m.price_source, Some("ec2-spot-price-history"));
    assert_eq!(m.price_per_hour, Some(q.per_hour));
    assert!(
        env.prices.calls().is_empty(),
        "no Price List call for a spot machine with a spot price"
    );
}

#[tokio::test]
async fn with_the_api_turned_off_the_table_is_used_and_says_so() {
    let env = Env::start_with(|c| c.pricing.enabled = false).await;
    env.prices.set_on_demand("us-east-1", "g5.xlarge", 1.05);
    let p = env.provider("us-east-1").await;
    let m = p
        .create(&key("off"), &spec("g5.xlarge", "us-east-1"))
        .await
        .expect("create");
    assert_eq!(
        (m.price_per_hour, m.price_source),
        (Some(1.006), Some("ec2-on-demand-table"))
    );
    let message = m.message.clone().unwrap_or_default();
    assert!(message.contains("turned off"), "{message}");
    assert!(env.prices.calls().is_empty());
}
