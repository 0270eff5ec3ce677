//! The price list the stand-in serves: one product document per (region, instance type,
//! operating system, tenancy, capacity status, pre-installed software), in the shape of the
//! AWS Price List API's `aws_v1` documents, and the filters that select among them.

use std::collections::BTreeMap;

use serde_json::json;

/// The on-demand term code of every EC2 product (the same for all SKUs at AWS).
pub const ON_DEMAND_TERM: &str = "JRTCKXETXF";
/// The rate code of the hourly dimension of an on-demand term.
pub const HOURLY_RATE: &str = "6YS6EN2CT7";

/// One product of the price list.
#[derive(Clone, Debug, PartialEq)]
pub struct Product {
    /// `product.attributes` (`instanceType`, `regionCode`, `operatingSystem`, …).
    pub attributes: BTreeMap<String, String>,
    /// The on-demand USD price per hour, as AWS writes it (`"1.0060000000"`).
    pub usd_per_hour: String,
}

impl Product {
    /// An EC2 product: `instance_type` in `region` with the attributes of the on-demand Linux
    /// product (shared tenancy, no pre-installed software, no license, capacity status `Used`),
    /// then `overrides`.
    pub fn ec2(
        region: &str,
        instance_type: &str,
        usd_per_hour: f64,
        overrides: &[(&str, &str)],
    ) -> Self {
        let family = instance_type.split('.').next().unwrap_or_default();
        let mut attributes: BTreeMap<String, String> = [
            ("servicecode", "AmazonEC2"),
            ("servicename", "Amazon Elastic Compute Cloud"),
            ("locationType", "AWS Region"),
            ("regionCode", region),
            ("location", location(region)),
            ("instanceType", instance_type),
            (
                "instanceFamily",
                if family.starts_with(['g', 'p']) {
                    "GPU instance"
                } else {
                    "General purpose"
                },
            ),
            ("operatingSystem", "Linux"),
            ("tenancy", "Shared"),
            ("preInstalledSw", "NA"),
            ("capacitystatus", "Used"),
            ("licenseModel", "No License required"),
            ("marketoption", "OnDemand"),
            ("operation", "RunInstances"),
            ("availabilityzone", "NA"),
            ("currentGeneration", "Yes"),
            ("processorArchitecture", "64-bit"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        attributes.insert("usagetype".into(), format!("BoxUsage:{instance_type}"));
        for (k, v) in overrides {
            attributes.insert((*k).to_string(), (*v).to_string());
        }
        Self {
            attributes,
            usd_per_hour: format!("{usd_per_hour:.10}"),
        }
    }

    /// The product's SKU: 16 characters derived from its attributes, stable across runs.
    pub fn sku(&self) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
        // FNV-1a over the attributes, then spread over the alphabet.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (k, v) in &self.attributes {
            for b in k.bytes().chain([b'=']).chain(v.bytes()).chain([b';']) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        (0..16)
            .map(|i| {
                let x = h.rotate_left(i * 4) ^ u64::from(i).wrapping_mul(0x9e37_79b9);
                ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
            })
            .collect()
    }

    /// The product's document, as the API's `PriceList` carries it (a JSON string): the
    /// product, its on-demand term with one hourly dimension, and a one-year reserved term.
    pub fn document(&self) -> String {
        let sku = self.sku();
        let it = self
            .attributes
            .get("instanceType")
            .cloned()
            .unwrap_or_default();
        let os = self
            .attributes
            .get("operatingSystem")
            .cloned()
            .unwrap_or_default();
        let on_demand = format!("{sku}.{ON_DEMAND_TERM}");
        let reserved = format!("{sku}.4NA7Y494T4");
        let reserved_hourly = self
            .usd_per_hour
            .parse::<f64>()
            .map(|p| format!("{:.10}", p * 0.63))
            .unwrap_or_else(|_| "0".into());
        json!({
            "product": {
                "productFamily": "Compute Instance",
                "attributes": self.attributes,
                "sku": sku,
            },
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    on_demand.clone(): {
                        "priceDimensions": {
                            format!("{on_demand}.{HOURLY_RATE}"): {
                                "unit": "Hrs",
                                "endRange": "Inf",
                                "description": format!("${} per On Demand {os} {it} Instance Hour", self.usd_per_hour.trim_end_matches('0')),
                                "appliesTo": [],
                                "rateCode": format!("{on_demand}.{HOURLY_RATE}"),
                                "beginRange": "0",
                                "pricePerUnit": {"USD": self.usd_per_hour},
                            }
                        },
                        "sku": sku,
                        "effectiveDate": "2026-06-01T00:00:00Z",
                        "offerTermCode": ON_DEMAND_TERM,
                        "termAttributes": {},
                    }
                },
                "Reserved": {
                    reserved.clone(): {
                        "priceDimensions": {
                            format!("{reserved}.{HOURLY_RATE}"): {
                                "unit": "Hrs",
                                "endRange": "Inf",
                                "description": format!("{os} (Amazon VPC), {it} reserved instance applied"),
                                "appliesTo": [],
                                "rateCode": format!("{reserved}.{HOURLY_RATE}"),
                                "beginRange": "0",
                                "pricePerUnit": {"USD": reserved_hourly},
                            },
                            format!("{reserved}.2TG2D8R56U"): {
                                "unit": "Quantity",
                                "description": "Upfront Fee",
                                "appliesTo": [],
                                "rateCode": format!("{reserved}.2TG2D8R56U"),
                                "pricePerUnit": {"USD": "0"},
                            }
                        },
                        "sku": sku,
                        "effectiveDate": "2026-06-01T00:00:00Z",
                        "offerTermCode": "4NA7Y494T4",
                        "termAttributes": {
                            "LeaseContractLength": "1yr",
                            "OfferingClass": "standard",
                            "PurchaseOption": "No Upfront",
                        },
                    }
                },
            },
            "version": "20260601000000",
            "publicationDate": "2026-06-01T00:00:00Z",
        })
        .to_string()
    }
}

/// The products AWS lists beside the on-demand Linux one of an instance type, each priced
/// differently, so that a client that leaves a filter out gets more than one answer:
/// Windows, dedicated tenancy, an unused capacity reservation, pre-installed SQL Server, a
/// bring-your-own license.
pub fn neighbours(region: &str, instance_type: &str, usd_per_hour: f64) -> Vec<Product> {
    [
        (1.84, vec![("operatingSystem", "Windows")]),
        (1.10, vec![("tenancy", "Dedicated")]),
        (1.0, vec![("capacitystatus", "UnusedCapacityReservation")]),
        (1.37, vec![("preInstalledSw", "SQL Web")]),
        (1.0, vec![("licenseModel", "Bring your own license")]),
    ]
    .into_iter()
    .map(|(factor, overrides)| {
        Product::ec2(region, instance_type, usd_per_hour * factor, &overrides)
    })
    .collect()
}

/// Names of the API's regions in the `location` attribute.
fn location(region: &str) -> &str {
    match region {
        "us-east-1" => "US East (N. Virginia)",
        "us-east-2" => "US East (Ohio)",
        "us-west-2" => "US West (Oregon)",
        "eu-west-1" => "EU (Ireland)",
        "eu-central-1" => "EU (Frankfurt)",
        "ap-south-1" => "Asia Pacific (Mumbai)",
        "ap-northeast-1" => "Asia Pacific (Tokyo)",
        other => other,
    }
}

/// A `GetProducts` filter type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterType {
    /// The attribute equals the value.
    TermMatch,
    /// The attribute equals the value (the newer name).
    Equals,
    /// The attribute contains the value.
    Contains,
    /// The attribute is one of the comma-separated values.
    AnyOf,
    /// The attribute is none of the comma-separated values.
    NoneOf,
}

impl FilterType {
    /// The type of its wire name (`TERM_MATCH`, …).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "TERM_MATCH" => Self::TermMatch,
            "EQUALS" => Self::Equals,
            "CONTAINS" => Self::Contains,
            "ANY_OF" => Self::AnyOf,
            "NONE_OF" => Self::NoneOf,
            _ => return None,
        })
    }
}

/// One filter of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// Its type.
    pub kind: FilterType,
    /// The attribute it looks at.
    pub field: String,
    /// The value it compares with.
    pub value: String,
}

impl Filter {
    /// True when `product` passes. A product without the attribute passes only `NONE_OF`.
    pub fn passes(&self, product: &Product) -> bool {
        let Some(v) = product.attributes.get(&self.field) else {
            return self.kind == FilterType::NoneOf;
        };
        let list = || self.value.split(',').map(str::trim);
        match self.kind {
            FilterType::TermMatch | FilterType::Equals => v == &self.value,
            FilterType::Contains => v.contains(&self.value),
            FilterType::AnyOf => list().any(|x| x == v),
            FilterType::NoneOf => list().all(|x| x != v),
        }
    }
}
