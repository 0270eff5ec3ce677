//! The AWS Price List API's side of on-demand prices, pure: the `GetProducts` filters that select
//! the on-demand Linux price of one instance type in one region, and the reading of the
//! `PriceList` documents it answers with (one JSON document per product, as a string:
//! `product.attributes`, and `terms.OnDemand.<term>.priceDimensions.<rate>.pricePerUnit.USD`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The Price List API's service code of EC2.
pub const SERVICE_CODE: &str = "AmazonEC2";
/// The document format runctl reads.
pub const FORMAT_VERSION: &str = "aws_v1";

/// The `TERM_MATCH` filters (field, value) of the on-demand Linux price of `instance_type` in
/// `region`: shared tenancy, no pre-installed software, no license, and `capacitystatus: Used`
/// (the price of a running instance, not of an unused capacity reservation).
pub fn filters(region: &str, instance_type: &str) -> Vec<(&'static str, String)> {
    vec![
        ("instanceType", instance_type.to_string()),
        ("regionCode", region.to_string()),
        ("operatingSystem", "Linux".to_string()),
        ("tenancy", "Shared".to_string()),
        ("preInstalledSw", "NA".to_string()),
        ("capacitystatus", "Used".to_string()),
        ("licenseModel", "No License required".to_string()),
    ]
}

/// A `PriceList` document runctl could not read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PriceListError {
    /// The document is not the JSON runctl expects.
    #[error("price list document {index} is unreadable: {reason}")]
    Unreadable {
        /// Position of the document in the answer.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

#[derive(Deserialize)]
struct Document {
    product: Product,
    #[serde(default)]
    terms: Terms,
}

#[derive(Deserialize)]
struct Product {
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
struct Terms {
    #[serde(rename = "OnDemand", default)]
    on_demand: BTreeMap<String, Term>,
}

#[derive(Deserialize)]
struct Term {
    #[serde(rename = "priceDimensions", default)]
    price_dimensions: BTreeMap<String, Dimension>,
}

#[derive(Deserialize)]
struct Dimension {
    #[serde(default)]
    unit: String,
    #[serde(rename = "pricePerUnit", default)]
    price_per_unit: BTreeMap<String, String>,
}

/// The on-demand USD price per hour of `instance_type` in `region` in a `GetProducts` answer,
/// `None` when no document holds one.
///
/// Only documents whose attributes agree with [`filters`] count (an attribute a document does
/// not carry is not held against it), and only hourly (`Hrs`) dimensions with a positive USD
/// figure. Should several remain with different figures, the highest is the answer: an upper
/// bound is the safe side of a budget. Any document that is not readable JSON of the expected
/// shape makes the whole answer an error: a figure read from a format runctl does not
/// understand would not be the truth.
pub fn on_demand_price(
    documents: &[String],
    region: &str,
    instance_type: &str,
) -> Result<Option<f64>, PriceListError> {
    let wanted = filters(region, instance_type);
    let mut best: Option<f64> = None;
    for (index, text) in documents.iter().enumerate() {
        let doc: Document = serde_json::from_str(text).map_err(|e| PriceListError::Unreadable {
            index,
            reason: e.to_string(),
        })?;
        let agrees = wanted.iter().all(|(field, value)| {
            doc.product
                .attributes
                .get(*field)
                .is_none_or(|v| v == value)
        });
        if !agrees {
            continue;
        }
        let prices = doc
            .terms
            .on_demand
            .values()
            .flat_map(|t| t.price_dimensions.values())
            .filter(|d| d.unit.eq_ignore_ascii_case("Hrs"))
            .filter_map(|d| d.price_per_unit.get("USD")?.trim().parse::<f64>().ok())
            .filter(|p| p.is_finite() && *p > 0.0);
        for p in prices {
            best = Some(best.map_or(p, |b| b.max(p)));
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `GetProducts` document in the shape AWS answers with (the product's attributes, the
    /// on-demand term and a reserved term with its upfront fee), for g5.xlarge Linux in
    /// us-east-1. Written after AWS's documented format, not captured from a live call (the SKU
    /// is made up); the price is the reference's us-east-1 figure.
    const G5_US_EAST_1: &str = include_str!("testdata/price_list_g5_xlarge_us_east_1.json");

    fn doc() -> String {
        // The answer carries each document as a compact JSON string.
        let v: serde_json::Value = serde_json::from_str(G5_US_EAST_1).expect("testdata parses");
        v.to_string()
    }

    #[test]
    fn reads_the_on_demand_hourly_usd_price_of_a_recorded_shape_document() {
        assert_eq!(
            on_demand_price(&[doc()], "us-east-1", "g5.xlarge"),
            Ok(Some(1.006))
        );
    }

    #[test]
    fn reserved_terms_and_upfront_fees_are_not_on_demand_prices() {
        // The testdata's reserved term has a 0.634 hourly rate and an upfront fee; only the
        // on-demand figure is read.
        let text = doc();
        assert!(text.contains("\"Reserved\"") && text.contains("0.6340000000"));
        assert_eq!(
            on_demand_price(&[text], "us-east-1", "g5.xlarge"),
            Ok(Some(1.006))
        );
    }

    #[test]
    fn documents_of_another_product_do_not_count() {
        for (from, to) in [
            ("\"Linux\"", "\"Windows\""),
            ("\"Shared\"", "\"Dedicated\""),
            (
                "\"capacitystatus\":\"Used\"",
                "\"capacitystatus\":\"UnusedCapacityReservation\"",
            ),
            (
                "\"regionCode\":\"us-east-1\"",
                "\"regionCode\":\"eu-west-1\"",
            ),
        ] {
            let other = doc().replace(from, to);
            assert_ne!(other, doc(), "{from} is in the document");
            assert_eq!(
                on_demand_price(&[other], "us-east-1", "g5.xlarge"),
                Ok(None),
                "{to}"
            );
        }
        assert_eq!(
            on_demand_price(&[doc()], "us-east-1", "g5.2xlarge"),
            Ok(None)
        );
        assert_eq!(on_demand_price(&[], "us-east-1", "g5.xlarge"), Ok(None));
    }

    #[test]
    fn the_highest_of_several_matching_figures_is_the_answer() {
        let dearer = doc().replace("1.0060000000", "1.2120000000");
        assert_eq!(
            on_demand_price(&[doc(), dearer], "us-east-1", "g5.xlarge"),
            Ok(Some(1.212))
        );
    }

    #[test]
    fn zero_junk_and_non_hourly_figures_are_ignored() {
        for (from, to) in [
            ("\"1.0060000000\"", "\"0.0000000000\""),
            ("\"1.0060000000\"", "\"n/a\""),
            ("\"unit\":\"Hrs\"", "\"unit\":\"Quantity\""),
        ] {
            let other = doc().replace(from, to);
            assert_ne!(other, doc(), "{from} is in the document");
            assert_eq!(
                on_demand_price(&[other], "us-east-1", "g5.xlarge"),
                Ok(None),
                "{to}"
            );
        }
    }

    #[test]
    fn an_unreadable_document_fails_the_answer() {
        let err = on_demand_price(&[doc(), "{\"product\":".into()], "us-east-1", "g5.xlarge")
            .expect_err("unreadable");
        assert!(
            matches!(err, PriceListError::Unreadable { index: 1, .. }),
            "{err}"
        );
        let err = on_demand_price(&["[1,2]".into()], "us-east-1", "g5.xlarge")
            .expect_err("not a document");
        assert!(
            matches!(err, PriceListError::Unreadable { index: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn filters_name_the_on_demand_linux_product() {
        let f = filters("eu-west-1", "p5.48xlarge");
        assert!(f.contains(&("instanceType", "p5.48xlarge".to_string())));
        assert!(f.contains(&("regionCode", "eu-west-1".to_string())));
        assert!(f.contains(&("licenseModel", "No License required".to_string())));
        assert_eq!(f.len(), 7);
    }
}
