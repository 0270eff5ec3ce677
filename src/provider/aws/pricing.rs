//! EC2 prices and where each comes from: on-demand prices from the AWS Price List API, else
//! from the embedded table (`data/prices/aws-ec2-on-demand.yaml`, us-east-1 figures, an
//! estimate, labelled as such: [`resolve_on_demand`]), and the pure pick of a spot price out of
//! DescribeSpotPriceHistory answers.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

use super::price_cache::Lookup;

/// Source label of on-demand prices read from the AWS Price List API (`status.priceSource`).
pub const SOURCE_PRICE_LIST: &str = "aws-price-list";
/// Source label of on-demand estimates from the embedded table.
pub const SOURCE_TABLE: &str = "ec2-on-demand-table";
/// Source label of spot prices read from EC2.
pub const SOURCE_SPOT: &str = "ec2-spot-price-history";

/// An on-demand price and where it comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct OnDemand {
    /// USD per hour.
    pub per_hour: f64,
    /// [`SOURCE_PRICE_LIST`] or [`SOURCE_TABLE`].
    pub source: &'static str,
    /// True for the table's figures.
    pub estimate: bool,
    /// For an estimate: why the table was used, for the machine's status message.
    pub note: Option<String>,
}

/// The on-demand price of `instance_type` in `region`: the Price List API's figure when
/// `lookup` has one, else the embedded table's, labelled an estimate with the reason (`lookup`
/// is `None` when the API is turned off). `None` when neither knows the type.
pub fn resolve_on_demand(
    lookup: Option<&Lookup>,
    region: &str,
    instance_type: &str,
) -> Option<OnDemand> {
    if let Some(Lookup::Listed(p)) = lookup {
        return Some(OnDemand {
            per_hour: *p,
            source: SOURCE_PRICE_LIST,
            estimate: false,
            note: None,
        });
    }
    let entry = on_demand(instance_type)?;
    let why = match lookup {
        None => "the AWS Price List API is turned off (providers.aws.pricing.enabled)".to_string(),
        Some(Lookup::NotListed) => {
            format!(
                "the AWS Price List API lists no on-demand Linux price for {instance_type} in {region}"
            )
        }
        Some(Lookup::Failed(f)) if f.reason == "AuthenticationFailed" => {
            "the AWS Price List API refused the credentials (they need pricing:GetProducts)"
                .to_string()
        }
        Some(Lookup::Failed(f)) => {
            format!(
                "the AWS Price List API could not be read ({}; see the operator log)",
                f.reason
            )
        }
        Some(Lookup::Listed(_)) => unreachable!("handled above"),
    };
    Some(OnDemand {
        per_hour: entry.per_hour,
        source: SOURCE_TABLE,
        estimate: true,
        note: Some(format!(
            "the price is an estimate from runctl's embedded table of us-east-1 prices: {why}"
        )),
    })
}

const TABLE_YAML: &str = include_str!("../../../data/prices/aws-ec2-on-demand.yaml");

/// One row of the table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TableEntry {
    /// USD per hour.
    pub per_hour: f64,
    /// `good` or `uncertain`.
    pub confidence: String,
    /// Where the figure comes from, when not the AWS list price.
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Table {
    instances: BTreeMap<String, TableEntry>,
}

static TABLE: LazyLock<BTreeMap<String, TableEntry>> = LazyLock::new(|| {
    // The file is embedded at compile time and checked by a unit test; an unreadable table
    // would show up as "no price" for every instance type, never as a panic.
    serde_yaml::from_str::<Table>(TABLE_YAML)
        .map(|t| t.instances)
        .unwrap_or_default()
});

/// The on-demand table entry of an instance type.
pub fn on_demand(instance_type: &str) -> Option<&'static TableEntry> {
    TABLE.get(instance_type)
}

/// Instance families the table covers (`g5`, `p5`…), for [`crate::provider::Capabilities`].
pub fn families() -> Vec<String> {
    let mut f: Vec<String> = TABLE
        .keys()
        .filter_map(|k| k.split('.').next())
        .map(str::to_string)
        .collect();
    f.dedup();
    f
}

/// The spot price to quote from a price history: the newest figure of each availability zone,
/// then the lowest of those (EC2 places a spot request without a subnet in any zone). `None`
/// when no figure parses.
pub fn pick_spot_price<'a>(
    history: impl IntoIterator<Item = (&'a str, i64, &'a str)>,
) -> Option<f64> {
    let mut newest: BTreeMap<&str, (i64, f64)> = BTreeMap::new();
    for (zone, at, price) in history {
        let Ok(p) = price.parse::<f64>() else {
            continue;
        };
        if !p.is_finite() || p <= 0.0 {
            continue;
        }
        let e = newest.entry(zone).or_insert((at, p));
        if at > e.0 {
            *e = (at, p);
        }
    }
    newest.values().map(|(_, p)| *p).min_by(f64::total_cmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::aws::price_cache::Failure;

    #[test]
    fn the_price_list_figure_wins_and_the_table_is_a_labelled_fallback() {
        let api = resolve_on_demand(Some(&Lookup::Listed(1.1)), "eu-west-1", "g5.xlarge");
        assert_eq!(
            api,
            Some(OnDemand {
                per_hour: 1.1,
                source: SOURCE_PRICE_LIST,
                estimate: false,
                note: None
            })
        );
        // The API knows a type the table does not.
        assert_eq!(
            resolve_on_demand(Some(&Lookup::Listed(0.096)), "us-east-1", "m5.large")
                .map(|o| o.source),
            Some(SOURCE_PRICE_LIST)
        );
        let failed = Lookup::Failed(Failure {
            reason: "ProviderUnavailable",
            message: "InternalErrorException: boom".into(),
        });
        let denied = Lookup::Failed(Failure {
            reason: "AuthenticationFailed",
            message: "AccessDeniedException: no".into(),
        });
        for (lookup, says) in [
            (None, "turned off"),
            (
                Some(&Lookup::NotListed),
                "lists no on-demand Linux price for g5.xlarge in eu-west-1",
            ),
            (Some(&failed), "could not be read (ProviderUnavailable"),
            (Some(&denied), "pricing:GetProducts"),
        ] {
            let o = resolve_on_demand(lookup, "eu-west-1", "g5.xlarge").expect("table price");
            assert_eq!(
                (o.per_hour, o.source, o.estimate),
                (1.006, SOURCE_TABLE, true)
            );
            let note = o.note.expect("a note");
            assert!(note.contains("estimate") && note.contains(says), "{note}");
            assert!(
                !note.contains("boom"),
                "the error text stays in the log: {note}"
            );
        }
        // Unknown to both: no price (the existing behaviour for unknown types).
        assert_eq!(
            resolve_on_demand(Some(&failed), "us-east-1", "m5.large"),
            None
        );
        assert_eq!(resolve_on_demand(None, "us-east-1", "m5.large"), None);
    }

    #[test]
    fn table_parses_and_covers_the_gpu_families() {
        let t: Table = serde_yaml::from_str(TABLE_YAML).expect("price table must parse");
        assert!(t.instances.len() >= 30);
        for fam in ["g4dn", "g5", "g6", "g6e", "p4d", "p5", "p5e"] {
            assert!(families().iter().any(|f| f == fam), "{fam} missing");
        }
        assert_eq!(on_demand("g5.xlarge").map(|e| e.per_hour), Some(1.006));
        assert_eq!(
            on_demand("g5.xlarge").map(|e| e.confidence.as_str()),
            Some("good")
        );
        assert_eq!(
            on_demand("p5.48xlarge").map(|e| e.confidence.as_str()),
            Some("uncertain")
        );
        assert!(t.instances.values().all(|e| e.per_hour > 0.0));
        assert!(on_demand("m5.large").is_none());
    }

    #[test]
    fn spot_price_is_the_lowest_newest_figure_per_zone() {
        let h = [
            ("us-east-1a", 10, "0.50"),
            ("us-east-1a", 20, "0.40"),
            ("us-east-1b", 20, "0.45"),
            ("us-east-1b", 5, "0.10"),
            ("us-east-1c", 30, "junk"),
        ];
        assert_eq!(pick_spot_price(h), Some(0.40));
        assert_eq!(pick_spot_price([("a", 1, "x")]), None);
        assert_eq!(pick_spot_price(Vec::<(&str, i64, &str)>::new()), None);
    }
}
