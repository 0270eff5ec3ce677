//! `runctl cost [--since 7d] [-A]`: spend by namespace, provider and job over a period, from the
//! jobs' own status (each attempt's provider, start, end and cost). An attempt that ran partly
//! inside the period counts with the part of its cost its share of time inside the period is (its
//! price does not change while it runs); a running attempt counts its price times its time so
//! far. Jobs already deleted are not in the API any more and not in the report: the
//! `runctl_cost_usd_total` metric is the long-term record.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::ListParams;

use super::output::{Table, duration, money};
use super::{CliError, Cluster, Out};
use crate::crd::TrainingJob;

/// Jobs listed by name at most (the most expensive).
const TOP_JOBS: usize = 20;

/// Flags of `cost`.
#[derive(clap::Args, Debug, Clone)]
pub struct CostArgs {
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// The period: the last `30m`, `12h`, `7d` (default), `4w`.
    #[arg(long, default_value = "7d", value_parser = parse_period)]
    pub since: SignedDuration,
}

/// Parses `30m`, `12h`, `7d`, `4w`.
pub fn parse_period(text: &str) -> Result<SignedDuration, String> {
    let (n, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = n
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?}: expected a number and a unit, e.g. 7d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{text:?}: the unit is one of s, m, h, d, w")),
    };
    Ok(SignedDuration::from_secs(n.saturating_mul(secs)))
}

/// One attempt's spend inside the period.
#[derive(Clone, Debug, PartialEq)]
pub struct Spend {
    /// Namespace.
    pub namespace: String,
    /// Job.
    pub job: String,
    /// Provider.
    pub provider: String,
    /// Machine hours inside the period.
    pub hours: f64,
    /// USD inside the period.
    pub usd: f64,
}

/// Every attempt's spend inside `[from, now]`.
pub fn spends(jobs: &[TrainingJob], from: Timestamp, now: Timestamp) -> Vec<Spend> {
    let mut out = vec![];
    for job in jobs {
        let Some(s) = &job.status else { continue };
        for a in &s.attempts {
            let Some(start) = a.start_time.as_ref().map(|t| t.0) else {
                continue;
            };
            let open = a.end_time.is_none()
                && s.current_cloud_resource.as_ref() == Some(&a.cloud_resource);
            let end = a.end_time.as_ref().map(|t| t.0).unwrap_or(now);
            let total = end.duration_since(start).as_secs_f64().max(0.0);
            let inside = end
                .min(now)
                .duration_since(start.max(from))
                .as_secs_f64()
                .max(0.0);
            if inside <= 0.0 && total > 0.0 {
                continue;
            }
            let cost = match (open, s.cost_per_hour) {
                (true, Some(rate)) => (rate * total / 3_600.0).max(a.cost.unwrap_or(0.0)),
                _ => a.cost.unwrap_or(0.0),
            };
            let share = if total > 0.0 { inside / total } else { 1.0 };
            out.push(Spend {
                namespace: job.metadata.namespace.clone().unwrap_or_default(),
                job: job.metadata.name.clone().unwrap_or_default(),
                provider: a.provider.as_str().to_string(),
                hours: inside / 3_600.0,
                usd: cost * share,
            });
        }
    }
    out
}

/// Prints the spend.
pub async fn run(cluster: &Cluster, args: &CostArgs, out: &mut Out) -> Result<(), CliError> {
    let api: Api<TrainingJob> = if args.all_namespaces {
        Api::all(cluster.client.clone())
    } else {
        Api::namespaced(cluster.client.clone(), &cluster.namespace)
    };
    let jobs = api
        .list(&ListParams::default())
        .await
        .map_err(|e| CliError::api("list TrainingJobs", e))?
        .items;
    let scope = if args.all_namespaces {
        "every namespace".to_string()
    } else {
        format!("namespace {}", cluster.namespace)
    };
    render(&jobs, args.since, &scope, out)?;
    Ok(())
}

#[derive(Default)]
struct Sum {
    jobs: std::collections::BTreeSet<(String, String)>,
    attempts: usize,
    hours: f64,
    usd: f64,
}

impl Sum {
    fn add(&mut self, s: &Spend) {
        self.jobs.insert((s.namespace.clone(), s.job.clone()));
        self.attempts += 1;
        self.hours += s.hours;
        self.usd += s.usd;
    }
}

fn grouped<'a>(spends: &'a [Spend], key: impl Fn(&'a Spend) -> String) -> Vec<(String, Sum)> {
    let mut map: BTreeMap<String, Sum> = BTreeMap::new();
    for s in spends {
        map.entry(key(s)).or_default().add(s);
    }
    let mut rows: Vec<_> = map.into_iter().collect();
    rows.sort_by(|a, b| b.1.usd.total_cmp(&a.1.usd).then(a.0.cmp(&b.0)));
    rows
}

/// Renders the report of `jobs` over the `since` before `out.now`.
pub fn render(
    jobs: &[TrainingJob],
    since: SignedDuration,
    scope: &str,
    out: &mut Out,
) -> std::io::Result<()> {
    let from = out.now - since;
    let spends = spends(jobs, from, out.now);
    out.line(&format!(
        "Spend in {scope} over the last {} (since {}), from the status of {} TrainingJob(s)",
        duration(since),
        from.strftime("%Y-%m-%d %H:%M UTC"),
        jobs.len()
    ))?;
    if spends.is_empty() {
        out.line("No attempt ran in this period.")?;
    } else {
        for (title, header, key) in [
            ("By namespace:", "NAMESPACE", 0),
            ("By provider:", "PROVIDER", 1),
        ] {
            out.line(title)?;
            let mut t =
                Table::new(&[header, "JOBS", "ATTEMPTS", "MACHINE-HOURS", "COST"]).indented(2);
            for (k, sum) in grouped(&spends, |s| {
                if key == 0 {
                    s.namespace.clone()
                } else {
                    s.provider.clone()
                }
            }) {
                t.row([
                    k,
                    sum.jobs.len().to_string(),
                    sum.attempts.to_string(),
                    format!("{:.1}", sum.hours),
                    money(Some(sum.usd)),
                ]);
            }
            out.table(&t)?;
        }
        let by_job = grouped(&spends, |s| format!("{}/{}", s.namespace, s.job));
        out.line(&format!(
            "By job ({}):",
            if by_job.len() > TOP_JOBS {
                format!("the {TOP_JOBS} most expensive of {}", by_job.len())
            } else {
                "most expensive first".to_string()
            }
        ))?;
        let mut t =
            Table::new(&["JOB", "PROVIDERS", "ATTEMPTS", "MACHINE-HOURS", "COST"]).indented(2);
        for (job, sum) in by_job.into_iter().take(TOP_JOBS) {
            let providers: std::collections::BTreeSet<&str> = spends
                .iter()
                .filter(|s| format!("{}/{}", s.namespace, s.job) == job)
                .map(|s| s.provider.as_str())
                .collect();
            t.row([
                job,
                providers.into_iter().collect::<Vec<_>>().join(","),
                sum.attempts.to_string(),
                format!("{:.1}", sum.hours),
                money(Some(sum.usd)),
            ]);
        }
        out.table(&t)?;
    }
    let total: f64 = spends.iter().map(|s| s.usd).sum();
    out.line(&format!("Total: {}", money(Some(total))))?;
    out.line(
        "Deleted jobs (e.g. by ttlSecondsAfterFinished) are not counted; the runctl_cost_usd_total metric keeps every attempt.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse() {
        assert_eq!(
            parse_period("7d").unwrap(),
            SignedDuration::from_secs(7 * 86_400)
        );
        assert_eq!(
            parse_period("30m").unwrap(),
            SignedDuration::from_secs(1_800)
        );
        assert!(parse_period("7").is_err());
        assert!(parse_period("0d").is_err());
        assert!(parse_period("d").is_err());
        assert!(parse_period("3y").is_err());
    }

    fn job(
        ns: &str,
        name: &str,
        attempts: serde_json::Value,
        rate: Option<f64>,
        current: Option<&str>,
    ) -> TrainingJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"placement": {"provider": "sim"}, "workload": {"image": "x"}},
            "status": {"attempts": attempts, "costPerHour": rate, "currentCloudResource": current}
        }))
        .unwrap()
    }

    #[test]
    fn an_attempt_counts_its_share_inside_the_period_and_a_running_one_its_time_so_far() {
        let now: Timestamp = "2026-12-04T12:00:00Z".parse().unwrap();
        let from = now - SignedDuration::from_hours(10);
        let jobs = [
            // 20 h from 22 h ago to 2 h ago, $20: 8 of its hours are inside the last 10 h.
            job(
                "ml",
                "old",
                serde_json::json!([{"index": 1, "provider": "aws", "cloudResource": "old-a1",
                "startTime": "2026-12-03T14:00:00Z", "endTime": "2026-12-04T10:00:00Z", "cost": 20.0}]),
                None,
                None,
            ),
            // Ended before the period: not counted.
            job(
                "ml",
                "older",
                serde_json::json!([{"index": 1, "provider": "aws", "cloudResource": "older-a1",
                "startTime": "2026-12-01T00:00:00Z", "endTime": "2026-12-01T01:00:00Z", "cost": 5.0}]),
                None,
                None,
            ),
            // Running 3 h at $2/h, status cost written an hour ago ($4): $6.
            job(
                "ops",
                "live",
                serde_json::json!([{"index": 1, "provider": "sim", "cloudResource": "live-a1",
                "startTime": "2026-12-04T09:00:00Z", "cost": 4.0}]),
                Some(2.0),
                Some("live-a1"),
            ),
        ];
        let s = spends(&jobs, from, now);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].job.as_str(), s[0].usd, s[0].hours), ("old", 8.0, 8.0));
        assert_eq!(
            (s[1].job.as_str(), s[1].usd, s[1].hours),
            ("live", 6.0, 3.0)
        );
    }
}
