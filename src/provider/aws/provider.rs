//! The [`Provider`] implementation for EC2: adopt-before-create, idempotent RunInstances with a
//! lookup by tag after an ambiguous failure, tag-filtered paginated DescribeInstances, and
//! idempotent TerminateInstances.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types::{Filter, Instance, InstanceType};
use parking_lot::Mutex;

use super::classify::{classify_sdk, error_code};
use super::price_api::PriceList;
use super::pricing::OnDemand;
use super::{AwsConfig, instance, launch, pricing};
use crate::provider::identity::{TAG_ATTEMPT, TAG_INSTALLATION, TAG_OWNER_UID};
use crate::provider::{
    Capabilities, Machine, MachineSpec, PriceQuote, Provider, ProviderError, ProviderKind,
    ResourceKey, Termination,
};

/// Lookups by tag after an ambiguous RunInstances failure, and the pause between them.
const LOST_RESPONSE_LOOKUPS: u32 = 3;
const LOST_RESPONSE_PAUSE: Duration = Duration::from_millis(300);
/// EC2's code for an unknown instance id.
const NOT_FOUND: &str = "InvalidInstanceID.NotFound";

/// EC2 in one region and account.
pub struct AwsProvider {
    client: Client,
    installation: String,
    region: String,
    config: AwsConfig,
    /// Instances this process launched, with when: `NotFound` for them is eventual consistency.
    launched: Mutex<HashMap<String, Instant>>,
    /// Spot prices by instance type, with when they were read.
    spot_prices: Mutex<HashMap<String, (Instant, f64)>>,
    /// On-demand prices from the AWS Price List API; `None` when it is turned off.
    price_list: Option<PriceList>,
    /// Root device name by AMI.
    root_devices: Mutex<HashMap<String, String>>,
}

impl AwsProvider {
    /// A provider over an SDK client.
    pub fn new(client: Client, installation: &str, region: String, config: AwsConfig) -> Self {
        Self {
            client,
            installation: installation.to_string(),
            region,
            config,
            launched: Mutex::new(HashMap::new()),
            spot_prices: Mutex::new(HashMap::new()),
            price_list: None,
            root_devices: Mutex::new(HashMap::new()),
        }
    }

    /// Reads on-demand prices from the AWS Price List API (`None`: from the embedded table).
    pub fn with_price_list(mut self, price_list: Option<PriceList>) -> Self {
        self.price_list = price_list;
        self
    }

    /// The region this provider serves.
    pub fn region(&self) -> &str {
        &self.region
    }

    fn tag_filter(key: &str, value: &str) -> Filter {
        Filter::builder()
            .name(format!("tag:{key}"))
            .values(value)
            .build()
    }

    /// DescribeInstances over every page.
    async fn describe(
        &self,
        filters: Vec<Filter>,
        ids: Vec<String>,
    ) -> Result<Vec<Instance>, ProviderError> {
        let mut out = vec![];
        let mut token: Option<String> = None;
        loop {
            let mut req = self
                .client
                .describe_instances()
                .set_filters(Some(filters.clone()))
                .set_next_token(token.clone());
            if ids.is_empty() {
                req = req.max_results(self.config.describe_page_size.clamp(5, 1000));
            } else {
                req = req.set_instance_ids(Some(ids.clone()));
            }
            let page = req.send().await.map_err(|e| classify_sdk(&e).error)?;
            out.extend(
                page.reservations()
                    .iter()
                    .flat_map(|r| r.instances().iter().cloned()),
            );
            token = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Every instance of `key` (this installation, owner UID and attempt), ending ones included.
    async fn find_by_key(&self, key: &ResourceKey) -> Result<Vec<Instance>, ProviderError> {
        let filters = vec![
            Self::tag_filter(TAG_INSTALLATION, &key.installation),
            Self::tag_filter(TAG_OWNER_UID, &key.uid),
            Self::tag_filter(TAG_ATTEMPT, &key.attempt.to_string()),
        ];
        self.describe(filters, vec![]).await
    }

    /// The instance to report for a key: a live one, else the most recently launched.
    fn pick(instances: &[Instance]) -> Option<&Instance> {
        instances
            .iter()
            .find(|i| !instance::is_ending(i))
            .or_else(|| {
                instances
                    .iter()
                    .max_by_key(|i| i.launch_time().map(|t| (t.secs(), t.subsec_nanos())))
            })
    }

    fn remember_launch(&self, id: &str) {
        let mut launched = self.launched.lock();
        let grace = Duration::from_secs(self.config.not_found_grace_seconds);
        launched.retain(|_, at| at.elapsed() < grace);
        launched.insert(id.to_string(), Instant::now());
    }

    fn recently_launched(&self, id: &str) -> bool {
        let grace = Duration::from_secs(self.config.not_found_grace_seconds);
        self.launched
            .lock()
            .get(id)
            .is_some_and(|at| at.elapsed() < grace)
    }

    /// A machine with its price and the price's source: the spot price read from EC2 for spot
    /// instances; for on-demand ones the Price List API's price, else the embedded table's,
    /// whose note (an estimate, and why) goes into the machine's message.
    fn machine(&self, i: &Instance) -> Machine {
        let mut m = instance::to_machine(i);
        let Some(t) = m.machine_type.clone() else {
            return m;
        };
        if m.spot {
            if let Some((_, p)) = self.spot_prices.lock().get(&t) {
                m.price_per_hour = Some(*p);
                m.price_source = Some(pricing::SOURCE_SPOT);
            }
        } else if let Some(o) = self.on_demand_cached(&t) {
            m.price_per_hour = Some(o.per_hour);
            m.price_source = Some(o.source);
            if let Some(note) = o.note {
                m.message = Some(match m.message.take() {
                    Some(msg) => format!("{msg}; {note}"),
                    None => note,
                });
            }
        }
        m
    }

    /// The on-demand price of an instance type as last looked up (no call); `None` while the
    /// Price List API has not been asked yet.
    fn on_demand_cached(&self, instance_type: &str) -> Option<OnDemand> {
        match &self.price_list {
            None => pricing::resolve_on_demand(None, &self.region, instance_type),
            Some(api) => {
                let lookup = api.peek(&self.region, instance_type)?;
                pricing::resolve_on_demand(Some(&lookup), &self.region, instance_type)
            }
        }
    }

    /// The on-demand price of an instance type: the Price List API's (cached, one call for
    /// concurrent lookups), else the embedded table's, labelled an estimate.
    async fn on_demand(&self, instance_type: &str) -> Option<OnDemand> {
        match &self.price_list {
            None => pricing::resolve_on_demand(None, &self.region, instance_type),
            Some(api) => {
                let lookup = api.lookup(&self.region, instance_type).await;
                pricing::resolve_on_demand(Some(&lookup), &self.region, instance_type)
            }
        }
    }

    /// Machines with prices refreshed for the types among them.
    async fn machines(&self, instances: &[Instance]) -> Vec<Machine> {
        self.refresh_prices(instances).await;
        instances.iter().map(|i| self.machine(i)).collect()
    }

    /// Refreshes the spot prices of the spot instance types and the on-demand prices of the
    /// on-demand instance types among `instances` (each only when its cached figure is stale).
    async fn refresh_prices(&self, instances: &[Instance]) {
        self.refresh_spot_prices(instances).await;
        let Some(api) = &self.price_list else {
            return;
        };
        let on_demand_types: HashSet<&str> = instances
            .iter()
            .filter(|i| i.instance_lifecycle().is_none_or(|l| l.as_str() != "spot"))
            .filter_map(|i| i.instance_type().map(InstanceType::as_str))
            .collect();
        for t in on_demand_types {
            // A failed lookup is kept as such: the machine is priced from the table, labelled.
            api.lookup(&self.region, t).await;
        }
    }

    /// Reads the spot price of each spot instance type among `instances` whose cached price is
    /// older than the TTL.
    async fn refresh_spot_prices(&self, instances: &[Instance]) {
        let spot_types: HashSet<String> = instances
            .iter()
            .filter(|i| i.instance_lifecycle().is_some_and(|l| l.as_str() == "spot"))
            .filter_map(|i| i.instance_type().map(|t| t.as_str().to_string()))
            .collect();
        for t in spot_types {
            let fresh = self.spot_prices.lock().get(&t).is_some_and(|(at, _)| {
                at.elapsed() < Duration::from_secs(self.config.spot_price_ttl_seconds)
            });
            if !fresh {
                // A failed price read leaves the price unknown; it never fails the observation.
                let _ = self.spot_price(&t).await;
            }
        }
    }

    /// One machine with its price.
    async fn one(&self, i: &Instance) -> Machine {
        self.refresh_prices(std::slice::from_ref(i)).await;
        self.machine(i)
    }

    /// The current spot price of an instance type (lowest zone), cached.
    async fn spot_price(&self, instance_type: &str) -> Result<Option<f64>, ProviderError> {
        let out = self
            .client
            .describe_spot_price_history()
            .instance_types(InstanceType::from(instance_type))
            .product_descriptions("Linux/UNIX")
            .start_time(DateTime::from(std::time::SystemTime::now()))
            .send()
            .await
            .map_err(|e| classify_sdk(&e).error)?;
        let history = out.spot_price_history().iter().filter_map(|p| {
            Some((
                p.availability_zone().unwrap_or(""),
                p.timestamp().map_or(0, DateTime::secs),
                p.spot_price()?,
            ))
        });
        let price = pricing::pick_spot_price(history);
        if let Some(p) = price {
            self.spot_prices
                .lock()
                .insert(instance_type.to_string(), (Instant::now(), p));
        }
        Ok(price)
    }

    /// The root device name of an AMI (DescribeImages), cached.
    async fn root_device(&self, ami_id: &str) -> Result<String, ProviderError> {
        if let Some(d) = self.root_devices.lock().get(ami_id) {
            return Ok(d.clone());
        }
        let out = self
            .client
            .describe_images()
            .image_ids(ami_id)
            .send()
            .await
            .map_err(|e| {
                let c = classify_sdk(&e);
                match error_code(&e) {
                    Some(code) if code.starts_with("InvalidAMIID") => ProviderError::InvalidSpec {
                        message: c.error.message().to_string(),
                    },
                    _ => c.error,
                }
            })?;
        let device = out
            .images()
            .iter()
            .find(|i| i.image_id() == Some(ami_id))
            .and_then(|i| i.root_device_name())
            .ok_or_else(|| ProviderError::InvalidSpec {
                message: format!(
                    "AMI {ami_id} was not found in region {} (or has no root device)",
                    self.region
                ),
            })?
            .to_string();
        self.root_devices
            .lock()
            .insert(ami_id.to_string(), device.clone());
        Ok(device)
    }

    /// After an ambiguous RunInstances failure: the instance EC2 may have launched, by tag.
    async fn find_after_ambiguous_failure(&self, key: &ResourceKey) -> Option<Instance> {
        for n in 0..LOST_RESPONSE_LOOKUPS {
            if n > 0 {
                tokio::time::sleep(LOST_RESPONSE_PAUSE).await;
            }
            if let Ok(found) = self.find_by_key(key).await
                && let Some(i) = Self::pick(&found)
            {
                return Some(i.clone());
            }
        }
        None
    }
}

#[async_trait]
impl Provider for AwsProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Aws
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            spot: super::DESCRIPTOR.spot,
            stop_resume: false,
            workload: true,
            bare_machine: true,
            gpu_types: pricing::families(),
            multi_node: super::DESCRIPTOR.multi_node,
        }
    }

    async fn create(
        &self,
        key: &ResourceKey,
        spec: &MachineSpec,
    ) -> Result<Machine, ProviderError> {
        let plan = launch::plan(key, spec, &self.config)?;
        let existing = self.find_by_key(key).await?;
        if let Some(live) = existing.iter().find(|i| !instance::is_ending(i)) {
            tracing::info!(instance = live.instance_id().unwrap_or_default(), token = %plan.client_token, "adopting existing EC2 instance");
            return Ok(self.one(live).await);
        }
        let root_device = self.root_device(&plan.ami_id).await?;
        let sent = launch::request(&self.client, &plan, &root_device)
            .send()
            .await;
        match sent {
            Ok(out) => {
                let Some(i) = out.instances().first() else {
                    return Err(ProviderError::retryable(
                        "RunInstances answered without an instance",
                    ));
                };
                if let Some(id) = i.instance_id() {
                    self.remember_launch(id);
                    tracing::info!(instance = id, token = %plan.client_token, "launched EC2 instance");
                }
                Ok(self.one(i).await)
            }
            Err(e) => {
                let c = classify_sdk(&e);
                if !c.ambiguous {
                    return Err(c.error);
                }
                tracing::warn!(error = %c.error, "RunInstances failed ambiguously; looking for the instance by tag");
                if let Some(i) = self.find_after_ambiguous_failure(key).await {
                    if let Some(id) = i.instance_id() {
                        self.remember_launch(id);
                    }
                    return Ok(self.one(&i).await);
                }
                Err(ProviderError::Retryable {
                    message: format!(
                        "{} (EC2 may still launch it: a retry uses the same ClientToken, which returns that instance)",
                        c.error.message()
                    ),
                    retry_after: None,
                    source: Some(Box::new(c.error)),
                })
            }
        }
    }

    async fn observe(
        &self,
        key: &ResourceKey,
        known_id: Option<&str>,
    ) -> Result<Option<Machine>, ProviderError> {
        if let Some(id) = known_id {
            match self.describe(vec![], vec![id.to_string()]).await {
                Ok(found) => {
                    if let Some(i) = found.iter().find(|i| i.instance_id() == Some(id)) {
                        return Ok(Some(self.one(i).await));
                    }
                }
                Err(ProviderError::NotFound { message }) if self.recently_launched(id) => {
                    return Err(ProviderError::retryable(format!(
                        "{message} (just launched: EC2's DescribeInstances is eventually consistent)"
                    )));
                }
                Err(ProviderError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let found = self.find_by_key(key).await?;
        match Self::pick(&found) {
            Some(i) => Ok(Some(self.one(i).await)),
            None => Ok(None),
        }
    }

    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        let found = self
            .describe(
                vec![Self::tag_filter(TAG_INSTALLATION, &self.installation)],
                vec![],
            )
            .await?;
        let owned: Vec<Instance> = found
            .into_iter()
            .filter(|i| instance::owned_by(i, &self.installation))
            .collect();
        Ok(self.machines(&owned).await)
    }

    async fn terminate(&self, id: &str) -> Result<Termination, ProviderError> {
        // Read first (as Karpenter does): an instance already ending needs no call, and an
        // unknown id is gone unless this process just launched it.
        match self.describe(vec![], vec![id.to_string()]).await {
            Ok(found) => match found
                .iter()
                .find(|i| i.instance_id() == Some(id))
                .map(instance::state_name)
            {
                None | Some("terminated") => return Ok(Termination::Gone),
                Some("shutting-down") => return Ok(Termination::InProgress),
                Some(_) => {}
            },
            Err(ProviderError::NotFound { message }) => {
                return if self.recently_launched(id) {
                    Err(ProviderError::retryable(format!(
                        "{message} (just launched: EC2's DescribeInstances is eventually consistent)"
                    )))
                } else {
                    Ok(Termination::Gone)
                };
            }
            Err(e) => return Err(e),
        }
        match self
            .client
            .terminate_instances()
            .instance_ids(id)
            .send()
            .await
        {
            Ok(out) => {
                let state = out
                    .terminating_instances()
                    .iter()
                    .find(|c| c.instance_id() == Some(id))
                    .and_then(|c| c.current_state())
                    .and_then(|s| s.name().map(|n| n.as_str().to_string()));
                tracing::info!(
                    instance = id,
                    state = state.as_deref().unwrap_or(""),
                    "terminating EC2 instance"
                );
                Ok(match state.as_deref() {
                    Some("terminated") => Termination::Gone,
                    _ => Termination::InProgress,
                })
            }
            Err(e) if error_code(&e) == Some(NOT_FOUND) && !self.recently_launched(id) => {
                Ok(Termination::Gone)
            }
            Err(e) => Err(classify_sdk(&e).error),
        }
    }

    async fn verify(&self, spec: &MachineSpec) -> Result<Vec<String>, ProviderError> {
        super::verify::check(&self.client, &self.region, spec, &self.config).await
    }

    async fn price(&self, spec: &MachineSpec) -> Result<PriceQuote, ProviderError> {
        let t = spec
            .instance_type
            .as_deref()
            .ok_or_else(|| ProviderError::InvalidSpec {
                message: "provider aws needs spec.instanceType".into(),
            })?;
        if spec.spot
            && let Some(p) = self.spot_price(t).await?
        {
            return Ok(PriceQuote {
                per_hour: p,
                estimate: false,
                source: pricing::SOURCE_SPOT,
            });
        }
        match self.on_demand(t).await {
            Some(o) => Ok(PriceQuote {
                per_hour: o.per_hour,
                estimate: o.estimate,
                source: o.source,
            }),
            None => Err(ProviderError::NotFound {
                message: format!(
                    "no on-demand price for {t} in {}: {} runctl's EC2 price table (data/prices/aws-ec2-on-demand.yaml) has none",
                    self.region,
                    if self.price_list.is_some() {
                        "the AWS Price List API gave none, and"
                    } else {
                        "the AWS Price List API is turned off, and"
                    }
                ),
            }),
        }
    }
}
