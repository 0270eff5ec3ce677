//! Cost arithmetic shared by the controller and the providers.

use jiff::Timestamp;

use super::cost_for;

/// Accrued cost of a machine: the provider's billed figure when it reports one, else price per
/// hour times the time between launch and `end` (or `now` while it runs).
pub fn accrued_cost(
    billed: Option<f64>,
    per_hour: Option<f64>,
    launch: Option<Timestamp>,
    end: Option<Timestamp>,
    now: Timestamp,
) -> Option<f64> {
    if let Some(b) = billed {
        return Some(round_cents(b));
    }
    let (per_hour, launch) = (per_hour?, launch?);
    let until = end.unwrap_or(now);
    let secs = until.duration_since(launch).as_secs_f64();
    Some(round_cents(cost_for(per_hour, secs)))
}

/// Rounds to 1/10000 USD, enough for display and stable for no-op detection.
pub fn round_cents(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    #[test]
    fn billed_wins_over_estimate() {
        let now = Timestamp::now();
        assert_eq!(
            accrued_cost(Some(1.23456), Some(10.0), Some(now), None, now),
            Some(1.2346)
        );
    }

    #[test]
    fn price_times_uptime_until_end() {
        let t0 = Timestamp::now();
        let end = t0 + SignedDuration::from_mins(30);
        let later = t0 + SignedDuration::from_hours(5);
        assert_eq!(
            accrued_cost(None, Some(2.0), Some(t0), Some(end), later),
            Some(1.0)
        );
        assert_eq!(
            accrued_cost(
                None,
                Some(2.0),
                Some(t0),
                None,
                t0 + SignedDuration::from_hours(1)
            ),
            Some(2.0)
        );
        assert_eq!(accrued_cost(None, None, Some(t0), None, later), None);
    }
}
