//! A stand-in for the AWS Price List API's `GetProducts` (moto 5.2.5 does not implement the
//! `pricing` service), served in-process on 127.0.0.1 for tests.
//!
//! It speaks the API's protocol, AWS JSON 1.1: `POST /` with `X-Amz-Target:
//! AWSPriceListService.GetProducts` and a JSON body `{ServiceCode, Filters: [{Type, Field,
//! Value}], FormatVersion, NextToken, MaxResults}`; the answer is `{FormatVersion, PriceList,
//! NextToken}` with `PriceList` an array of JSON documents, each a string (see [`catalog`] for
//! their shape). Errors are JSON 1.1 errors, `{"__type": "...#Code", "Message": "..."}`:
//! `InvalidParameterException` (a bad filter type, format version or `MaxResults`),
//! `NotFoundException` (an unknown service code), `InvalidNextTokenException`,
//! `UnknownOperationException` (another target), `MissingAuthenticationTokenException` (an
//! unsigned call), and any injected fault ([`PriceListFault`]).
//!
//! Pages: `MaxResults` (1 to 100, default 100) or the stand-in's own smaller page size
//! ([`PriceListStandin::page_size`]); `NextToken` is opaque and valid only for the query that
//! got it. Filters: `TERM_MATCH`/`EQUALS` (exact, case-sensitive: AWS does not document case
//! folding), `CONTAINS`, `ANY_OF`, `NONE_OF` on `product.attributes`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use runctl_standins::aws::{PriceListFault, PriceListStandin};
//! let api = PriceListStandin::start().await?;
//! api.set_on_demand("us-east-1", "g5.xlarge", 1.006);
//! api.fail_next(PriceListFault::Throttling);
//! // point the pricing client's endpoint at api.url(); api.calls() counts GetProducts calls
//! # Ok(()) }
//! ```

pub mod catalog;
mod server;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;

pub use catalog::{Filter, FilterType, Product};

/// The `X-Amz-Target` of `GetProducts`.
pub const TARGET: &str = "AWSPriceListService.GetProducts";

/// An error the stand-in answers instead of the price list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PriceListFault {
    /// 400 `ThrottlingException`.
    Throttling,
    /// 500 `InternalErrorException`.
    InternalError,
    /// 400 `AccessDeniedException` (credentials without `pricing:GetProducts`).
    AccessDenied,
    /// 503 with an empty body (a load balancer in front of the API).
    Unavailable,
    /// An answer that is not the API's JSON (200 with a truncated document list).
    Garbled,
    /// Any other error.
    Custom {
        /// HTTP status.
        status: u16,
        /// Error code (`__type`).
        code: String,
        /// Message.
        message: String,
    },
}

/// One `GetProducts` call as the stand-in received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// `ServiceCode`.
    pub service_code: String,
    /// `Filters`, as (type, field, value).
    pub filters: Vec<(String, String, String)>,
    /// `NextToken`, when the call asked for a further page.
    pub next_token: Option<String>,
    /// The region of the SigV4 credential scope (the pricing client's region).
    pub signing_region: Option<String>,
    /// The service of the SigV4 credential scope (`pricing`).
    pub signing_service: Option<String>,
    /// `User-Agent` ("" for none).
    pub user_agent: String,
}

/// What the stand-in holds and has been told.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) products: Vec<Product>,
    pub(crate) faults: VecDeque<PriceListFault>,
    pub(crate) outage: Option<PriceListFault>,
    pub(crate) page_size: Option<usize>,
    pub(crate) calls: Vec<Call>,
    /// Issued page tokens: token → (query fingerprint, offset).
    pub(crate) tokens: HashMap<String, (String, usize)>,
    pub(crate) next_token: u64,
}

pub(crate) type Shared = Arc<Mutex<State>>;

/// The stand-in, listening on 127.0.0.1; stops on drop.
pub struct PriceListStandin {
    addr: SocketAddr,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl PriceListStandin {
    /// Starts a stand-in with an empty price list on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let state: Shared = Arc::new(Mutex::new(State::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = server::router(state.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "price list stand-in stopped");
            }
        });
        Ok(Self { addr, state, task })
    }

    /// The base URL (the pricing client's endpoint).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Lists `instance_type`'s on-demand Linux price in `region` (replacing an earlier one),
    /// with its [`catalog::neighbours`] (Windows, dedicated, …) at other prices.
    pub fn set_on_demand(&self, region: &str, instance_type: &str, usd_per_hour: f64) {
        let mut s = self.state.lock();
        s.products.retain(|p| {
            p.attributes.get("regionCode").map(String::as_str) != Some(region)
                || p.attributes.get("instanceType").map(String::as_str) != Some(instance_type)
        });
        s.products
            .push(Product::ec2(region, instance_type, usd_per_hour, &[]));
        s.products
            .extend(catalog::neighbours(region, instance_type, usd_per_hour));
    }

    /// Adds any product.
    pub fn add_product(&self, product: Product) {
        self.state.lock().products.push(product);
    }

    /// Answers the next call with `fault` (queued; one call each).
    pub fn fail_next(&self, fault: PriceListFault) {
        self.state.lock().faults.push_back(fault);
    }

    /// Answers every call with `fault` until called again with `None` (an outage).
    pub fn set_outage(&self, fault: Option<PriceListFault>) {
        self.state.lock().outage = fault;
    }

    /// Answers at most `n` documents per page, whatever `MaxResults` asks.
    pub fn page_size(&self, n: usize) {
        self.state.lock().page_size = Some(n.max(1));
    }

    /// Every `GetProducts` call received, faults included.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().calls.clone()
    }

    /// How many `GetProducts` calls asked for a first page (not a further one) of
    /// `instance_type` in `region`.
    pub fn lookups(&self, region: &str, instance_type: &str) -> usize {
        let has = |c: &Call, field: &str, value: &str| {
            c.filters.iter().any(|(_, f, v)| f == field && v == value)
        };
        self.state
            .lock()
            .calls
            .iter()
            .filter(|c| c.next_token.is_none())
            .filter(|c| has(c, "instanceType", instance_type) && has(c, "regionCode", region))
            .count()
    }

    /// Every `User-Agent` the stand-in was called with.
    pub fn user_agents(&self) -> BTreeSet<String> {
        self.state
            .lock()
            .calls
            .iter()
            .map(|c| c.user_agent.clone())
            .collect()
    }
}

impl Drop for PriceListStandin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
