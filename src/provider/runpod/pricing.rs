//! RunPod prices: the `GET /v2/catalog/gpus` per-GPU-hour prices (Secure or Community) times
//! the GPU count, cached per account; a running pod's own `cost` is preferred over this estimate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::api::GpuEntry;
use super::client::Client;
use crate::provider::ProviderError;

/// Source label of catalog prices.
pub const SOURCE_CATALOG: &str = "runpod-catalog";
/// Source label of a pod's own `cost`.
pub const SOURCE_POD_COST: &str = "runpod-pod-cost";

/// Price per hour of `count` GPUs of `gpu_id` in `cloud`, from `catalog`.
pub fn price_of(
    catalog: &[GpuEntry],
    gpu_id: &str,
    cloud: &str,
    count: u32,
) -> Result<f64, ProviderError> {
    let Some(entry) = catalog.iter().find(|g| g.id == gpu_id) else {
        let mut known: Vec<&str> = catalog.iter().map(|g| g.id.as_str()).collect();
        known.sort_unstable();
        return Err(ProviderError::InvalidSpec {
            message: format!(
                "RunPod has no GPU type {gpu_id:?}; ids are full names such as {:?}",
                known
            ),
        });
    };
    let per_gpu = entry.price.as_ref().and_then(|p| {
        if cloud == "COMMUNITY" {
            p.community
        } else {
            p.secure
        }
    });
    match per_gpu {
        Some(p) if p > 0.0 => Ok(p * f64::from(count.max(1))),
        _ => Err(ProviderError::Capacity {
            message: format!(
                "RunPod's catalog lists no {cloud} price for {gpu_id:?}: not offered in that cloud now"
            ),
        }),
    }
}

/// The cached catalog of one account.
#[derive(Debug)]
pub struct PriceCatalog {
    ttl: Duration,
    cached: Mutex<Option<(Instant, Arc<Vec<GpuEntry>>)>>,
    fetch: tokio::sync::Mutex<()>,
}

impl PriceCatalog {
    /// An empty cache keeping catalogs for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            cached: Mutex::new(None),
            fetch: tokio::sync::Mutex::new(()),
        }
    }

    /// The last catalog fetched, however old (no call).
    pub fn last(&self) -> Option<Arc<Vec<GpuEntry>>> {
        self.cached.lock().as_ref().map(|(_, c)| c.clone())
    }

    fn fresh(&self) -> Option<Arc<Vec<GpuEntry>>> {
        self.cached
            .lock()
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, c)| c.clone())
    }

    /// The catalog, fetched when the cache is stale (one fetch at a time).
    pub async fn get(&self, client: &Client) -> Result<Arc<Vec<GpuEntry>>, ProviderError> {
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let _one = self.fetch.lock().await;
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let catalog = Arc::new(client.gpu_catalog().await?);
        *self.cached.lock() = Some((Instant::now(), catalog.clone()));
        Ok(catalog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ErrorClass;
    use crate::provider::runpod::api::GpuPrice;

    fn catalog() -> Vec<GpuEntry> {
        vec![
            GpuEntry {
                id: "NVIDIA H100 80GB HBM3".into(),
                price: Some(GpuPrice {
                    secure: Some(2.69),
                    community: Some(2.09),
                }),
            },
            GpuEntry {
                id: "NVIDIA A100-SXM4-80GB".into(),
                price: Some(GpuPrice {
                    secure: Some(1.89),
                    community: None,
                }),
            },
        ]
    }

    #[test]
    fn prices_multiply_by_count_per_cloud() {
        let c = catalog();
        assert_eq!(
            price_of(&c, "NVIDIA H100 80GB HBM3", "SECURE", 2).ok(),
            Some(5.38)
        );
        assert_eq!(
            price_of(&c, "NVIDIA H100 80GB HBM3", "COMMUNITY", 1).ok(),
            Some(2.09)
        );
        assert_eq!(
            price_of(&c, "NVIDIA H100 80GB HBM3", "SECURE", 0).ok(),
            Some(2.69)
        );
    }

    #[test]
    fn unknown_types_and_missing_clouds_are_explained() {
        let c = catalog();
        let e = price_of(&c, "H100", "SECURE", 1).expect_err("unknown id");
        assert_eq!(e.class(), ErrorClass::Terminal);
        assert!(e.message().contains("NVIDIA H100 80GB HBM3"), "{e}");
        let e =
            price_of(&c, "NVIDIA A100-SXM4-80GB", "COMMUNITY", 1).expect_err("no community price");
        assert_eq!(e.class(), ErrorClass::Capacity);
    }
}
