//! EC2 prices: the embedded on-demand table (`data/prices/aws-ec2-on-demand.yaml`, an estimate)
//! and the pure pick of a spot price out of DescribeSpotPriceHistory answers.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

/// Source label of on-demand estimates.
pub const SOURCE_TABLE: &str = "ec2-on-demand-table";
/// Source label of spot prices read from EC2.
pub const SOURCE_SPOT: &str = "ec2-spot-price-history";

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
