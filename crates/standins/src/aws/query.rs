//! EC2 query-protocol requests as the proxy sees them: form parameters, the action, the region
//! (from the SigV4 credential scope) and the fingerprint of a RunInstances call.

use std::collections::BTreeMap;

/// Parameters of a query-protocol request (URL query merged with a form body).
pub fn params(query: Option<&str>, body: &[u8]) -> BTreeMap<String, String> {
    let mut p: BTreeMap<String, String> = BTreeMap::new();
    if let Some(q) = query {
        p.extend(url::form_urlencoded::parse(q.as_bytes()).into_owned());
    }
    p.extend(url::form_urlencoded::parse(body).into_owned());
    p
}

/// The region of a SigV4 `Authorization` header (`Credential=AKID/DATE/REGION/ec2/aws4_request`).
pub fn region(authorization: Option<&str>) -> Option<String> {
    let cred = authorization?.split("Credential=").nth(1)?;
    cred.split(['/', ',']).nth(2).map(str::to_string)
}

/// What makes two RunInstances calls "the same request" for EC2's idempotency: every
/// parameter except the ClientToken itself.
pub fn fingerprint(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(k, _)| k.as_str() != "ClientToken")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Instance ids named by a request (`InstanceId.N`).
pub fn instance_ids(params: &BTreeMap<String, String>) -> Vec<String> {
    params
        .iter()
        .filter(|(k, _)| k.starts_with("InstanceId."))
        .map(|(_, v)| v.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_form_and_region() {
        let p = params(
            Some("Action=DescribeInstances"),
            b"Version=2016-11-15&InstanceId.1=i-1&InstanceId.2=i-2",
        );
        assert_eq!(p["Action"], "DescribeInstances");
        assert_eq!(instance_ids(&p), vec!["i-1", "i-2"]);
        let auth = "AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-1/ec2/aws4_request, SignedHeaders=host, Signature=x";
        assert_eq!(region(Some(auth)).as_deref(), Some("eu-west-1"));
        assert_eq!(region(None), None);
    }

    #[test]
    fn fingerprint_ignores_only_the_token() {
        let a = params(
            None,
            b"Action=RunInstances&ClientToken=t1&InstanceType=g5.xlarge",
        );
        let b = params(
            None,
            b"Action=RunInstances&ClientToken=t2&InstanceType=g5.xlarge",
        );
        let c = params(
            None,
            b"Action=RunInstances&ClientToken=t1&InstanceType=g6.xlarge",
        );
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
