//! The AWS EC2 provider against moto behind runctl's fault-injecting EC2 proxy: the provider
//! conformance suite, plus the EC2 quirks (lost responses, adoption by tag, pagination, every
//! state and error class, terminate of gone instances, spot request shape, UserData).
//! Needs `.venv` from `scripts/setup-test-env.sh`.

#[path = "conformance/mod.rs"]
mod conformance;
#[path = "support/moto.rs"]
mod moto;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, InstanceAttributeName, ResourceType, Tag, TagSpecification};
use base64::Engine;
use conformance::{Drive, Fault, Harness};
use runctl::provider::aws::{AwsConfig, state, userdata};
use runctl::provider::identity::{TAG_ATTEMPT, TAG_INSTALLATION, TAG_OWNER, TAG_OWNER_UID};
use runctl::provider::registry::{Credentials, ProviderKey};
use runctl::provider::{
    ErrorClass, MachineSpec, Provider, ProviderKind, ProviderRegistry, ProvidersConfig,
    ResourceKey, ResourceState, Termination, Workload, reasons,
};
use runctl_standins::aws::{Ec2Fault, Ec2Proxy, Ending, MotoServer, PriceListStandin};

const INSTALLATION: &str = "conformance";
const SECRET_ENV: &str = "very-secret-env-value";

/// moto, the proxy in front of it, the Price List API stand-in, and a provider configured
/// against them.
struct Aws {
    // Field order: the proxy stops before moto is killed.
    proxy: Ec2Proxy,
    _moto: MotoServer,
    prices: PriceListStandin,
    direct: aws_sdk_ec2::Client,
    ami: String,
    provider: Arc<dyn Provider>,
}

fn credentials() -> Credentials {
    Credentials::new(BTreeMap::from([
        ("accessKeyId".to_string(), "AKIATESTING".to_string()),
        ("secretAccessKey".to_string(), "testing-secret".to_string()),
    ]))
}

impl Aws {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tune: impl FnOnce(&mut AwsConfig)) -> Self {
        let moto = MotoServer::start().await.unwrap_or_else(|e| panic!("{e}"));
        let proxy = Ec2Proxy::start(&moto.url()).await.expect("start proxy");
        let prices = PriceListStandin::start().await.expect("start price list");
        prices.set_on_demand("us-east-1", "g5.xlarge", 1.006);
        let direct = moto::ec2_client(&moto.url());
        let ami = moto::first_ami(&direct).await;
        let mut config = ProvidersConfig::default();
        config.aws.endpoint_url = Some(proxy.url());
        config.aws.pricing.endpoint_url = Some(prices.url());
        config.aws.default_ami_id = Some(ami.clone());
        config.aws.max_attempts = 1;
        config.aws.attempt_timeout_seconds = 5;
        tune(&mut config.aws);
        let provider = provider_for(&config).await;
        Self {
            proxy,
            _moto: moto,
            prices,
            direct,
            ami,
            provider,
        }
    }

    /// Instances moto holds for `uid` in `state` names (all states when empty).
    async fn moto_instances(&self, uid: &str) -> Vec<aws_sdk_ec2::types::Instance> {
        let out = self
            .direct
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{TAG_OWNER_UID}"))
                    .values(uid)
                    .build(),
            )
            .send()
            .await
            .expect("describe at moto");
        out.reservations()
            .iter()
            .flat_map(|r| r.instances().iter().cloned())
            .collect()
    }
}

async fn provider_for(config: &ProvidersConfig) -> Arc<dyn Provider> {
    let registry = ProviderRegistry::new(INSTALLATION, config.clone());
    let key = ProviderKey {
        kind: ProviderKind::Aws,
        region: Some("us-east-1".into()),
        credentials: Some("default/aws@1".into()),
    };
    registry
        .get(&key, Some(&credentials()))
        .await
        .expect("build the aws provider")
}

fn spec() -> MachineSpec {
    MachineSpec {
        instance_type: Some("g5.xlarge".into()),
        gpu_count: 1,
        region: Some("us-east-1".into()),
        workload: Some(Workload {
            image: "ghcr.io/acme/train:1.4".into(),
            command: vec!["python".into(), "train.py".into()],
            env: BTreeMap::from([("HF_TOKEN".into(), SECRET_ENV.into())]),
            ..Default::default()
        }),
        tags: BTreeMap::from([("team".into(), "nlp".into())]),
        ..Default::default()
    }
}

#[async_trait]
impl Harness for Aws {
    fn provider(&self) -> Arc<dyn Provider> {
        self.provider.clone()
    }

    fn spec(&self) -> MachineSpec {
        spec()
    }

    async fn live_machines(&self, uid: &str) -> usize {
        self.moto_instances(uid)
            .await
            .iter()
            .filter(|i| !runctl::provider::aws::instance::is_ending(i))
            .count()
    }

    async fn inject(&self, fault: Fault) -> bool {
        match fault {
            Fault::Capacity => self
                .proxy
                .fail_next("RunInstances", Ec2Fault::InsufficientInstanceCapacity),
            Fault::RateLimit => self
                .proxy
                .fail_next("RunInstances", Ec2Fault::RequestLimitExceeded),
            Fault::ServerError => self
                .proxy
                .fail_next("RunInstances", Ec2Fault::InternalError),
            Fault::Unauthorized => self.proxy.fail_next("RunInstances", Ec2Fault::AuthFailure),
            Fault::LoseCreateResponse => self.proxy.lose_next_response("RunInstances"),
        }
        true
    }

    async fn drive(&self, id: &str, event: Drive) -> bool {
        let (ending, reason) = match event {
            Drive::Running => return true,
            Drive::Stopped => (Ending::Stop, state::USER_INITIATED_SHUTDOWN),
            Drive::Interrupted => (Ending::Terminate, state::SPOT_TERMINATION),
            Drive::ExitSuccess | Drive::ExitFailure(_) => {
                (Ending::Terminate, state::INSTANCE_INITIATED_SHUTDOWN)
            }
            Drive::ProviderFailure => (Ending::Terminate, state::SERVER_INTERNAL_ERROR),
            Drive::Vanish => (Ending::Terminate, state::USER_INITIATED_SHUTDOWN),
        };
        self.proxy.end_instance(id, ending, reason).await.is_ok()
    }

    fn expected(&self, event: Drive) -> Option<(ResourceState, &'static str)> {
        Some(match event {
            Drive::Running => (ResourceState::Running, reasons::RUNNING),
            Drive::Stopped => (ResourceState::Stopped, reasons::STOPPED),
            Drive::Interrupted => (ResourceState::Error, reasons::SPOT_INTERRUPTED),
            // EC2 cannot tell a workload's exit code: both end as the instance powering itself
            // off; the reporting wrapper reports the code.
            Drive::ExitSuccess | Drive::ExitFailure(_) => {
                (ResourceState::Terminated, reasons::COMPLETED)
            }
            Drive::ProviderFailure => (ResourceState::Error, reasons::PROVIDER_FAILURE),
            // Terminated outside runctl: EC2 keeps listing it as terminated by the user.
            Drive::Vanish => (ResourceState::Terminated, reasons::TERMINATED),
        })
    }
}

fn key(name: &str) -> ResourceKey {
    conformance::key(name, 1)
}

#[tokio::test]
async fn conformance_suite() {
    let h = Aws::start().await;
    conformance::run_all(&h).await;
}

#[tokio::test]
async fn lost_response_with_sdk_retries_still_makes_one_instance() {
    // SDK retries on (the production default): the retry carries the same ClientToken.
    let h = Aws::start_with(|c| c.max_attempts = 3).await;
    h.proxy.lose_next_response("RunInstances");
    let k = key("lost-sdk-retry");
    let m = h
        .provider
        .create(&k, &spec())
        .await
        .expect("create across a lost response");
    assert_eq!(h.live_machines(&k.uid).await, 1);
    assert_eq!(m.owner_uid.as_deref(), Some(k.uid.as_str()));
    let again = h.provider.create(&k, &spec()).await.expect("create again");
    assert_eq!(again.id, m.id);
}

#[tokio::test]
async fn lost_response_unseen_by_tag_is_retryable_and_the_retry_returns_the_same_instance() {
    let h = Aws::start().await;
    // The lost launch stays invisible to DescribeInstances for a while (eventual consistency),
    // so the lookup by tag after the failure finds nothing.
    h.proxy.invisible_after_launch(Duration::from_millis(1500));
    h.proxy.lose_next_response("RunInstances");
    let k = key("lost-invisible");
    let err = h
        .provider
        .create(&k, &spec())
        .await
        .expect_err("nothing to return yet");
    assert!(err.is_retryable(), "{err}");
    assert!(err.message().contains("ClientToken"), "{err}");
    let m = h
        .provider
        .create(&k, &spec())
        .await
        .expect("the retry returns the launched instance");
    assert_eq!(
        h.proxy.forwarded("RunInstances").len(),
        1,
        "the retry never launched a second instance"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(h.live_machines(&k.uid).await, 1);
    let seen = h
        .provider
        .observe(&k, Some(&m.id))
        .await
        .expect("observe")
        .expect("visible now");
    assert_eq!(seen.id, m.id);
}

#[tokio::test]
async fn adopts_an_instance_found_by_owner_tag() {
    let h = Aws::start().await;
    let k = key("adopt-by-tag");
    // An instance launched earlier for this key whose id never reached the status.
    let tags: Vec<Tag> = k
        .tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let out = h
        .direct
        .run_instances()
        .image_id(&h.ami)
        .instance_type(aws_sdk_ec2::types::InstanceType::G5Xlarge)
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .set_tags(Some(tags))
                .build(),
        )
        .send()
        .await
        .expect("launch at moto");
    let id = out.instances()[0].instance_id().expect("id").to_string();
    let seen = h
        .provider
        .observe(&k, None)
        .await
        .expect("observe")
        .expect("found by tag");
    assert_eq!(seen.id, id);
    assert_eq!(seen.attempt, Some(1));
    let m = h.provider.create(&k, &spec()).await.expect("create adopts");
    assert_eq!(m.id, id);
    assert!(
        h.proxy.forwarded("RunInstances").is_empty(),
        "no RunInstances for an adopted instance"
    );
    let mut other_attempt = k.clone();
    other_attempt.attempt = 2;
    assert!(
        h.provider
            .observe(&other_attempt, None)
            .await
            .expect("observe")
            .is_none()
    );
}

#[tokio::test]
async fn list_is_one_paginated_call_filtered_by_installation() {
    let h = Aws::start_with(|c| c.describe_page_size = 5).await;
    let mut ids = vec![];
    for n in 0..7 {
        ids.push(
            h.provider
                .create(&key(&format!("list-{n}")), &spec())
                .await
                .expect("create")
                .id,
        );
    }
    // Another installation's instance in the same account.
    let mut foreign = key("foreign");
    foreign.installation = "other-cluster".into();
    let other = provider_for(&{
        let mut c = ProvidersConfig::default();
        c.aws.endpoint_url = Some(h.proxy.url());
        c.aws.pricing.endpoint_url = Some(h.prices.url());
        c.aws.default_ami_id = Some(h.ami.clone());
        c
    })
    .await;
    let foreign_id = other
        .create(&foreign, &spec())
        .await
        .expect("foreign create")
        .id;
    let before = h.proxy.forwarded("DescribeInstances").len();
    let all = h.provider.list().await.expect("list");
    let pages = &h.proxy.forwarded("DescribeInstances")[before..];
    assert_eq!(pages.len(), 2, "7 reservations at 5 a page: two pages");
    assert_eq!(pages[0].get("MaxResults").map(String::as_str), Some("5"));
    assert!(pages[1].contains_key("NextToken"));
    assert!(
        pages[0]
            .values()
            .any(|v| v == &format!("tag:{TAG_INSTALLATION}")),
        "{:?}",
        pages[0]
    );
    let listed: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(listed.len(), 7, "{listed:?}");
    for id in &ids {
        assert!(listed.contains(&id.as_str()));
    }
    assert!(
        !listed.contains(&foreign_id.as_str()),
        "another installation's instance is not listed"
    );
    assert!(
        all.iter()
            .all(|m| m.owner_uid.is_some() && m.attempt == Some(1))
    );
    assert!(all.iter().all(|m| m.price_per_hour == Some(1.006)));
}

#[tokio::test]
async fn every_state_through_describe() {
    let h = Aws::start().await;
    h.proxy.hold_pending(Duration::from_millis(800));
    let k = key("pending");
    let m = h.provider.create(&k, &spec()).await.expect("create");
    assert_eq!(
        (m.state, m.reason),
        (ResourceState::Starting, reasons::PROVISIONING)
    );
    let seen = h
        .provider
        .observe(&k, Some(&m.id))
        .await
        .expect("observe")
        .expect("machine");
    assert_eq!(
        (seen.state, seen.reason),
        (ResourceState::Starting, reasons::PROVISIONING)
    );
    let running = conformance::observe_until(&h, &k, &m.id, |o| {
        o.as_ref()
            .is_some_and(|x| x.state == ResourceState::Running)
    })
    .await;
    assert_eq!(running.map(|x| x.reason), Some(reasons::RUNNING));
    h.proxy.hold_pending(Duration::ZERO);

    let cases = [
        (
            Ending::Stop,
            state::USER_INITIATED_SHUTDOWN,
            ResourceState::Stopped,
            reasons::STOPPED,
        ),
        (
            Ending::Stop,
            state::SPOT_SHUTDOWN,
            ResourceState::Error,
            reasons::SPOT_INTERRUPTED,
        ),
        (
            Ending::Terminate,
            state::USER_INITIATED_SHUTDOWN,
            ResourceState::Terminated,
            reasons::TERMINATED,
        ),
        (
            Ending::Terminate,
            state::INSTANCE_INITIATED_SHUTDOWN,
            ResourceState::Terminated,
            reasons::COMPLETED,
        ),
        (
            Ending::Terminate,
            state::SPOT_TERMINATION,
            ResourceState::Error,
            reasons::SPOT_INTERRUPTED,
        ),
        (
            Ending::Terminate,
            state::INSUFFICIENT_CAPACITY,
            ResourceState::Error,
            reasons::CAPACITY_LOST,
        ),
        (
            Ending::Terminate,
            state::SERVER_INTERNAL_ERROR,
            ResourceState::Error,
            reasons::PROVIDER_FAILURE,
        ),
        (
            Ending::Terminate,
            "Client.VolumeLimitExceeded",
            ResourceState::Error,
            reasons::PROVIDER_FAILURE,
        ),
    ];
    for (ending, code, want_state, want_reason) in cases {
        let k = key("state");
        let m = h.provider.create(&k, &spec()).await.expect("create");
        h.proxy
            .end_instance(&m.id, ending, code)
            .await
            .expect("end");
        let seen = h
            .provider
            .observe(&k, Some(&m.id))
            .await
            .expect("observe")
            .expect("still listed");
        assert_eq!(
            (seen.state, seen.reason),
            (want_state, want_reason),
            "{code}"
        );
        assert!(
            seen.message.as_deref().is_some_and(|s| s.contains(code)),
            "{:?}",
            seen.message
        );
        let listed = h.provider.list().await.expect("list");
        let l = listed.iter().find(|x| x.id == m.id).expect("listed");
        assert_eq!(
            (l.state, l.reason),
            (want_state, want_reason),
            "list: {code}"
        );
    }
}

#[tokio::test]
async fn every_error_class_and_no_secret_in_messages() {
    let h = Aws::start().await;
    let custom = |status: u16, code: &str| Ec2Fault::Custom {
        status,
        code: code.into(),
        message: format!("{code} says no"),
    };
    let cases: Vec<(Ec2Fault, &str, ErrorClass)> = vec![
        (
            Ec2Fault::RequestLimitExceeded,
            "RateLimited",
            ErrorClass::Retryable,
        ),
        (
            Ec2Fault::InsufficientInstanceCapacity,
            "InsufficientCapacity",
            ErrorClass::Capacity,
        ),
        (
            custom(500, "InsufficientCapacity"),
            "InsufficientCapacity",
            ErrorClass::Capacity,
        ),
        (
            Ec2Fault::VcpuLimitExceeded,
            "QuotaExceeded",
            ErrorClass::Retryable,
        ),
        (
            custom(400, "InstanceLimitExceeded"),
            "QuotaExceeded",
            ErrorClass::Retryable,
        ),
        (
            Ec2Fault::AuthFailure,
            "AuthenticationFailed",
            ErrorClass::Account,
        ),
        (
            Ec2Fault::UnauthorizedOperation,
            "AuthenticationFailed",
            ErrorClass::Account,
        ),
        (
            custom(401, "OptInRequired"),
            "AuthenticationFailed",
            ErrorClass::Account,
        ),
        (
            custom(400, "InvalidParameterValue"),
            "InvalidSpec",
            ErrorClass::Terminal,
        ),
        (
            custom(400, "InvalidSubnetID.NotFound"),
            "InvalidSpec",
            ErrorClass::Terminal,
        ),
        (
            custom(400, "InvalidKeyPair.NotFound"),
            "InvalidSpec",
            ErrorClass::Terminal,
        ),
        (
            Ec2Fault::InternalError,
            "ProviderUnavailable",
            ErrorClass::Retryable,
        ),
        (
            Ec2Fault::Unavailable,
            "ProviderUnavailable",
            ErrorClass::Retryable,
        ),
    ];
    for (fault, reason, class) in cases {
        let (_, code, _) = fault.parts();
        h.proxy.fail_next("RunInstances", fault);
        let k = key("errors");
        let err = h.provider.create(&k, &spec()).await.expect_err("must fail");
        assert_eq!(
            (err.reason(), err.class()),
            (reason, class),
            "{code}: {err}"
        );
        assert!(err.message().contains(&code), "{err}");
        assert!(!format!("{err} {err:?}").contains(SECRET_ENV), "{err:?}");
        assert_eq!(h.live_machines(&k.uid).await, 0);
    }
    // Unknown AMI: DescribeImages fails before any launch.
    let mut bad = spec();
    bad.aws.ami_id = Some("ami-00000000deadbeef".into());
    let err = h
        .provider
        .create(&key("bad-ami"), &bad)
        .await
        .expect_err("unknown AMI");
    assert_eq!(err.reason(), "InvalidSpec", "{err}");
    // A missing instance type never reaches EC2.
    let mut no_type = spec();
    no_type.instance_type = None;
    assert!(
        h.provider
            .create(&key("no-type"), &no_type)
            .await
            .expect_err("no type")
            .is_terminal()
    );
}

#[tokio::test]
async fn changed_spec_under_the_same_token_is_idempotent_parameter_mismatch() {
    let h = Aws::start().await;
    let k = key("mismatch");
    let m = h.provider.create(&k, &spec()).await.expect("create");
    // The first instance ended (so there is nothing to adopt) and the spec changed without a
    // new attempt: EC2 refuses to reuse the token.
    h.provider.terminate(&m.id).await.expect("terminate");
    let mut changed = spec();
    changed.instance_type = Some("g6.xlarge".into());
    let err = h.provider.create(&k, &changed).await.expect_err("mismatch");
    assert_eq!(err.reason(), "InvalidSpec");
    assert!(
        err.message().contains("IdempotentParameterMismatch"),
        "{err}"
    );
    assert!(err.message().contains("spec"), "{err}");
    // The unchanged spec gets the original (terminated) reservation back, not a new instance.
    let again = h
        .provider
        .create(&k, &spec())
        .await
        .expect("same token, same parameters");
    assert_eq!(again.id, m.id);
    assert_eq!(h.proxy.forwarded("RunInstances").len(), 1);
}

#[tokio::test]
async fn terminate_is_idempotent_and_gone_instances_are_gone() {
    let h = Aws::start().await;
    assert_eq!(
        h.provider
            .terminate("i-0123456789abcdef0")
            .await
            .expect("unknown id"),
        Termination::Gone
    );
    let k = key("terminate");
    let m = h.provider.create(&k, &spec()).await.expect("create");
    assert_eq!(
        h.provider.terminate(&m.id).await.expect("first"),
        Termination::InProgress,
        "shutting-down"
    );
    assert_eq!(
        h.provider.terminate(&m.id).await.expect("second"),
        Termination::Gone
    );
    let seen = h
        .provider
        .observe(&k, Some(&m.id))
        .await
        .expect("observe")
        .expect("still listed");
    assert_eq!(
        (seen.state, seen.reason),
        (ResourceState::Terminated, reasons::TERMINATED)
    );
    let k2 = key("terminate-throttled");
    let m2 = h.provider.create(&k2, &spec()).await.expect("create");
    h.proxy
        .fail_next("TerminateInstances", Ec2Fault::RequestLimitExceeded);
    assert_eq!(
        h.provider
            .terminate(&m2.id)
            .await
            .expect_err("throttled")
            .reason(),
        "RateLimited"
    );
    assert_eq!(h.live_machines(&k2.uid).await, 1);
    assert_eq!(
        h.provider.terminate(&m2.id).await.expect("retry"),
        Termination::InProgress
    );
}

#[tokio::test]
async fn not_found_right_after_launch_is_retryable_but_an_old_id_is_gone() {
    let h = Aws::start().await;
    h.proxy.invisible_after_launch(Duration::from_secs(30));
    let k = key("eventual");
    let m = h.provider.create(&k, &spec()).await.expect("create");
    let err = h
        .provider
        .observe(&k, Some(&m.id))
        .await
        .expect_err("just launched");
    assert!(
        err.is_retryable() && err.reason() == "ProviderUnavailable",
        "{err}"
    );
    let err = h
        .provider
        .terminate(&m.id)
        .await
        .expect_err("just launched");
    assert!(err.is_retryable(), "{err}");
    // A provider that did not launch it (e.g. after an operator restart) reads NotFound as gone.
    let mut config = ProvidersConfig::default();
    config.aws.endpoint_url = Some(h.proxy.url());
    config.aws.pricing.endpoint_url = Some(h.prices.url());
    let fresh = provider_for(&config).await;
    assert!(
        fresh
            .observe(&k, Some(&m.id))
            .await
            .expect("observe")
            .is_none()
    );
    assert_eq!(
        fresh
            .observe(&k, Some("i-0123456789abcdef0"))
            .await
            .expect("observe"),
        None
    );
}

#[tokio::test]
async fn spot_request_shape_and_spot_price() {
    let h = Aws::start().await;
    let k = key("spot");
    let mut s = spec();
    s.spot = true;
    s.max_price_per_hour = Some(0.75);
    s.aws.root_volume_size_gb = Some(200);
    let m = h.provider.create(&k, &s).await.expect("create spot");
    assert!(m.spot);
    let sent = h.proxy.forwarded("RunInstances");
    assert_eq!(sent.len(), 1);
    let p = &sent[0];
    let want = [
        ("ClientToken", k.token()),
        ("InstanceType", "g5.xlarge".to_string()),
        ("ImageId", h.ami.clone()),
        ("MinCount", "1".into()),
        ("MaxCount", "1".into()),
        ("InstanceInitiatedShutdownBehavior", "terminate".into()),
        ("InstanceMarketOptions.MarketType", "spot".into()),
        (
            "InstanceMarketOptions.SpotOptions.SpotInstanceType",
            "one-time".into(),
        ),
        (
            "InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior",
            "terminate".into(),
        ),
        ("InstanceMarketOptions.SpotOptions.MaxPrice", "0.75".into()),
        ("MetadataOptions.HttpTokens", "required".into()),
        ("MetadataOptions.HttpEndpoint", "enabled".into()),
        ("MetadataOptions.HttpPutResponseHopLimit", "1".into()),
        ("BlockDeviceMapping.1.DeviceName", "/dev/sda1".into()),
        ("BlockDeviceMapping.1.Ebs.VolumeSize", "200".into()),
        ("BlockDeviceMapping.1.Ebs.VolumeType", "gp3".into()),
        (
            "BlockDeviceMapping.1.Ebs.DeleteOnTermination",
            "true".into(),
        ),
        ("TagSpecification.1.ResourceType", "instance".into()),
        ("TagSpecification.2.ResourceType", "volume".into()),
    ];
    for (name, value) in want {
        assert_eq!(p.get(name), Some(&value), "{name} in {p:?}");
    }
    let tag_values: Vec<&String> = p
        .iter()
        .filter(|(k, _)| k.starts_with("TagSpecification.1.Tag."))
        .map(|(_, v)| v)
        .collect();
    for t in [
        TAG_OWNER_UID,
        TAG_INSTALLATION,
        TAG_OWNER,
        TAG_ATTEMPT,
        "Name",
        "team",
    ] {
        assert!(
            tag_values.iter().any(|v| v.as_str() == t),
            "tag {t} missing: {tag_values:?}"
        );
    }
    // What moto holds: a spot instance with the ownership tags on it and its volume.
    let at_moto = h.moto_instances(&k.uid).await;
    assert_eq!(at_moto.len(), 1);
    assert_eq!(
        at_moto[0].instance_lifecycle().map(|l| l.as_str()),
        Some("spot")
    );
    // Spot prices come from DescribeSpotPriceHistory, not the table.
    let q = h.provider.price(&s).await.expect("spot price");
    assert!(
        !q.estimate && q.source == "ec2-spot-price-history" && q.per_hour > 0.0,
        "{q:?}"
    );
    let listed = h.provider.list().await.expect("list");
    assert_eq!(
        listed
            .iter()
            .find(|x| x.id == m.id)
            .and_then(|x| x.price_per_hour),
        Some(q.per_hour)
    );
    assert_eq!(
        listed
            .iter()
            .find(|x| x.id == m.id)
            .and_then(|x| x.price_source),
        Some("ec2-spot-price-history")
    );
    // On-demand prices come from the AWS Price List API (tests/provider_aws_prices.rs has the
    // rest).
    let od = h.provider.price(&spec()).await.expect("on-demand price");
    assert!(
        !od.estimate && od.source == "aws-price-list" && (od.per_hour - 1.006).abs() < 1e-9,
        "{od:?}"
    );
    assert_eq!(
        h.provider
            .price(&MachineSpec {
                instance_type: Some("x9.huge".into()),
                ..spec()
            })
            .await
            .expect_err("unknown")
            .reason(),
        "NotFound"
    );
}

#[tokio::test]
async fn user_data_reaches_the_instance_as_rendered() {
    let h = Aws::start().await;
    let k = key("userdata");
    let mut s = spec();
    s.max_lifetime_seconds = Some(7200);
    let m = h.provider.create(&k, &s).await.expect("create");
    let attr = h
        .direct
        .describe_instance_attribute()
        .instance_id(&m.id)
        .attribute(InstanceAttributeName::UserData)
        .send()
        .await
        .expect("user data");
    let encoded = attr
        .user_data()
        .and_then(|u| u.value())
        .expect("user data set");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64");
    let script = String::from_utf8(decoded).expect("utf-8");
    let want = userdata::render(s.workload.as_ref(), "g5.xlarge", Some(7200), s.spot, false)
        .expect("render")
        .expect("script");
    assert_eq!(script, want);
    assert!(
        script.contains("--gpus all")
            && script.contains("shutdown -h +120")
            && !script.contains("--network"),
        "{script}"
    );
}

/// Issue 17, item 7: instances allowed IMDSv1 and the workload used the host network, so it
/// could read the instance role's credentials and the UserData. Now RunInstances asks for IMDSv2
/// with hop limit 1 (what moto records and DescribeInstances shows), and the operator default or
/// the object's `spec.aws` can raise it and put the container on the host network.
#[tokio::test]
async fn instances_require_imdsv2_and_the_hop_limit_is_configurable() {
    let h = Aws::start_with(|c| c.metadata_hop_limit = 2).await;
    let metadata = |i: &aws_sdk_ec2::types::Instance| {
        let o = i.metadata_options().expect("metadata options");
        (
            o.http_tokens().map(|t| t.as_str().to_string()),
            o.http_endpoint().map(|e| e.as_str().to_string()),
            o.http_put_response_hop_limit(),
        )
    };
    let required = |hops| {
        (
            Some("required".to_string()),
            Some("enabled".to_string()),
            Some(hops),
        )
    };
    // The operator's default.
    let k = key("imds-default");
    h.provider.create(&k, &spec()).await.expect("create");
    let sent = h.proxy.forwarded("RunInstances");
    let p = sent.last().expect("RunInstances");
    for (name, value) in [
        ("MetadataOptions.HttpTokens", "required"),
        ("MetadataOptions.HttpEndpoint", "enabled"),
        ("MetadataOptions.HttpPutResponseHopLimit", "2"),
    ] {
        assert_eq!(
            p.get(name).map(String::as_str),
            Some(value),
            "{name} in {p:?}"
        );
    }
    let at_moto = h.moto_instances(&k.uid).await;
    assert_eq!(metadata(&at_moto[0]), required(2));
    // The object's own options win.
    let k = key("imds-own");
    let mut s = spec();
    s.aws.metadata_hop_limit = Some(1);
    s.aws.host_network = Some(true);
    let m = h.provider.create(&k, &s).await.expect("create");
    let at_moto = h.moto_instances(&k.uid).await;
    assert_eq!(metadata(&at_moto[0]), required(1));
    let attr = h
        .direct
        .describe_instance_attribute()
        .instance_id(&m.id)
        .attribute(InstanceAttributeName::UserData)
        .send()
        .await
        .expect("user data");
    let script = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(attr.user_data().and_then(|u| u.value()).expect("user data"))
            .expect("base64"),
    )
    .expect("utf-8");
    assert!(script.contains("--network host"), "{script}");
}

/// Issue 17, item 6: every EC2 request names runctl and its version (the SDK's app name) in
/// its User-Agent.
#[tokio::test]
async fn requests_carry_runctls_app_name_in_the_user_agent() {
    let h = Aws::start().await;
    h.provider.list().await.expect("list");
    let agents = h.proxy.user_agents();
    let app = format!("app/runctl-{}", env!("CARGO_PKG_VERSION"));
    assert!(
        !agents.is_empty() && agents.iter().all(|a| a.contains(&app)),
        "{agents:?}"
    );
}

#[tokio::test]
async fn credentials_come_from_the_secret_and_are_required() {
    let mut config = ProvidersConfig::default();
    config.aws.endpoint_url = Some("http://127.0.0.1:9".into());
    config.aws.pricing.endpoint_url = Some("http://127.0.0.1:9".into());
    let registry = ProviderRegistry::new(INSTALLATION, config);
    let key = ProviderKey {
        kind: ProviderKind::Aws,
        region: Some("eu-west-1".into()),
        credentials: Some("ns/aws@1".into()),
    };
    let partial = Credentials::new(BTreeMap::from([(
        "accessKeyId".to_string(),
        "AKIA".to_string(),
    )]));
    let err = registry
        .get(&key, Some(&partial))
        .await
        .err()
        .expect("secretAccessKey is required");
    assert_eq!(err.reason(), "AuthenticationFailed");
    assert!(err.message().contains("secretAccessKey"), "{err}");
    let p = registry
        .get(&key, Some(&credentials()))
        .await
        .expect("provider");
    assert_eq!(p.kind(), ProviderKind::Aws);
    let caps = p.capabilities();
    assert!(caps.spot && caps.workload && caps.bare_machine && !caps.stop_resume);
    assert!(caps.gpu_types.iter().any(|g| g == "p5"));
}
