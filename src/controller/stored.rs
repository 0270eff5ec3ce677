//! Compares statuses the way the API server stores them. A status computed now can differ from
//! the cached one only below what the wire keeps (Kubernetes times are whole seconds), and such a
//! difference must not cause a write: the write is a watch event that reconciles the object
//! again, which would write again, forever.

use serde::Serialize;

/// True when `a` and `b` serialize to the same JSON (what the API server would store).
pub fn same_when_stored<T: Serialize + PartialEq>(a: &T, b: &T) -> bool {
    if a == b {
        return true;
    }
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn sub_second_differences_are_not_stored() {
        let whole: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-11-23T12:00:00.250Z".parse().unwrap();
        let next: Timestamp = "2026-11-23T12:00:01Z".parse().unwrap();
        let cases = [
            (Some(Time(whole)), Some(Time(whole)), true),
            (Some(Time(whole)), Some(Time(later)), true),
            (Some(Time(whole)), Some(Time(next)), false),
            (Some(Time(whole)), None, false),
        ];
        for (a, b, want) in cases {
            assert_eq!(same_when_stored(&a, &b), want, "{a:?} vs {b:?}");
        }
    }
}
