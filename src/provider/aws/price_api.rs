//! On-demand prices from the AWS Price List API: `GetProducts` for one instance type in one
//! region (the filters and the reading of the documents are in [`super::price_list`]), every
//! page of it, cached per instance type and single-flight ([`super::price_cache`]). A failed
//! call is classified like every EC2 call ([`super::classify`]) and becomes a
//! [`Lookup::Failed`]: the caller prices from the embedded table instead, never fails a create.

use std::time::Duration;

use aws_sdk_pricing::types::{Filter, FilterType};

use super::AwsPricingConfig;
use super::classify::classify_sdk;
use super::price_cache::{Failure, Lookup, PriceCache};
use super::price_list::{self, FORMAT_VERSION, SERVICE_CODE};

/// `MaxResults` of one page (the API's maximum).
const PAGE_SIZE: i32 = 100;
/// Pages read at most for one instance type (a filtered query has one or two documents).
const MAX_PAGES: usize = 20;
/// The reason of an answer runctl could not read.
pub const UNREADABLE: &str = "UnreadableAnswer";

/// The Price List API of one provider instance (one region), with its cache.
pub struct PriceList {
    client: aws_sdk_pricing::Client,
    cache: PriceCache,
}

impl PriceList {
    /// Lookups through `client`, cached as `config` says.
    pub fn new(client: aws_sdk_pricing::Client, config: &AwsPricingConfig) -> Self {
        Self {
            client,
            cache: PriceCache::new(
                Duration::from_secs(config.cache_ttl_seconds),
                Duration::from_secs(config.error_retry_seconds),
            ),
        }
    }

    /// The last lookup of `instance_type` in `region`, however old. No call.
    pub fn peek(&self, region: &str, instance_type: &str) -> Option<Lookup> {
        self.cache.peek(&key(region, instance_type))
    }

    /// The on-demand price of `instance_type` in `region`: cached while fresh, else one call
    /// shared by every caller asking meanwhile.
    pub async fn lookup(&self, region: &str, instance_type: &str) -> Lookup {
        self.cache
            .get(&key(region, instance_type), || {
                fetch(&self.client, region, instance_type)
            })
            .await
    }
}

fn key(region: &str, instance_type: &str) -> String {
    format!("{region}/{instance_type}")
}

/// One uncached lookup; a failure is logged once here.
pub async fn fetch(client: &aws_sdk_pricing::Client, region: &str, instance_type: &str) -> Lookup {
    match read(client, region, instance_type).await {
        Ok(Some(p)) => {
            tracing::debug!(
                region,
                instance_type,
                per_hour = p,
                "on-demand price from the AWS Price List API"
            );
            Lookup::Listed(p)
        }
        Ok(None) => {
            tracing::info!(
                region,
                instance_type,
                "the AWS Price List API lists no on-demand Linux price; using runctl's embedded table"
            );
            Lookup::NotListed
        }
        Err(f) => {
            tracing::warn!(
                region,
                instance_type,
                reason = f.reason,
                error = %f.message,
                "the AWS Price List API could not be read; using runctl's embedded table, an estimate"
            );
            Lookup::Failed(f)
        }
    }
}

/// Every page of `GetProducts` for the on-demand Linux price, read.
async fn read(
    client: &aws_sdk_pricing::Client,
    region: &str,
    instance_type: &str,
) -> Result<Option<f64>, Failure> {
    let filters = price_list::filters(region, instance_type)
        .into_iter()
        .map(|(field, value)| {
            Filter::builder()
                .r#type(FilterType::TermMatch)
                .field(field)
                .value(value)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure {
            reason: UNREADABLE,
            message: format!("building the GetProducts filters: {e}"),
        })?;
    let mut documents = vec![];
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = client
            .get_products()
            .service_code(SERVICE_CODE)
            .format_version(FORMAT_VERSION)
            .set_filters(Some(filters.clone()))
            .max_results(PAGE_SIZE)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| {
                let c = classify_sdk(&e);
                Failure {
                    reason: c.error.reason(),
                    message: c.error.message().to_string(),
                }
            })?;
        documents.extend(page.price_list().iter().cloned());
        token = page
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            return price_list::on_demand_price(&documents, region, instance_type).map_err(|e| {
                Failure {
                    reason: UNREADABLE,
                    message: e.to_string(),
                }
            });
        }
    }
    Err(Failure {
        reason: UNREADABLE,
        message: format!("GetProducts answered more than {MAX_PAGES} pages for {instance_type}"),
    })
}
