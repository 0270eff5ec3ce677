//! What one benchmark size measured, and its table.

use std::collections::BTreeMap;
use std::fmt;

use super::rss::{Phase, PhasePeaks};

/// The default `costRefreshSeconds` of the operator, for the computed refresh-rate row.
const DEFAULT_COST_REFRESH_SECONDS: f64 = runctl::config::DEFAULT_COST_REFRESH_SECONDS as f64;
/// Failed jobs listed by name in the table at most.
const FAILED_LISTED: usize = 10;

/// Percentiles of a latency, or why there are none.
#[derive(Clone, Debug, PartialEq)]
pub enum Latency {
    /// p50 and p99 in ms over `samples` values.
    Measured {
        /// Median, ms.
        p50: f64,
        /// 99th percentile, ms.
        p99: f64,
        /// Values.
        samples: usize,
    },
    /// No values; the text says why.
    NotMeasured(String),
}

impl Default for Latency {
    fn default() -> Self {
        Latency::NotMeasured("not measured".into())
    }
}

impl Latency {
    /// The percentiles of `values`, or `why_empty` when there are none.
    pub fn of(values: &mut [f64], why_empty: &str) -> Self {
        match (
            super::measure::quantile(values, 0.5),
            super::measure::quantile(values, 0.99),
        ) {
            (Some(p50), Some(p99)) => Latency::Measured {
                p50,
                p99,
                samples: values.len(),
            },
            _ => Latency::NotMeasured(why_empty.to_string()),
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Latency::Measured { p50, p99, samples } => {
                write!(f, "{p50:.0} / {p99:.0} ms ({samples} samples)")
            }
            Latency::NotMeasured(why) => write!(f, "n/a ({why})"),
        }
    }
}

/// A job that did not succeed: its name and what its status said last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailedJob {
    /// Job name.
    pub name: String,
    /// Last phase seen (`None`: never seen in a final phase).
    pub phase: Option<String>,
    /// `status.reason`.
    pub reason: Option<String>,
    /// `status.message`.
    pub message: Option<String>,
}

/// Figures of one run of N jobs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Jobs.
    pub n: usize,
    /// Jobs whose last phase seen by the benchmark's watch was Succeeded.
    pub succeeded: usize,
    /// Jobs by the last phase the benchmark's watch saw.
    pub phases: BTreeMap<String, usize>,
    /// Jobs that did not succeed, with their reasons.
    pub failed: Vec<FailedJob>,
    /// Exit reports the simulated wrapper gave up on (after as many tries as the shell wrapper).
    pub exit_reports_given_up: u64,
    /// Machines the sim made.
    pub machines_created: u64,
    /// Machines still billing at the end (must be 0).
    pub machines_leaked: usize,
    /// Jobs or CloudResources left at the end (must be 0 once TTL deletion ran).
    pub objects_left: usize,
    /// Whether the API test server and the sim ran in the benchmark's process (then the
    /// figures of the operator process include them, and [`Report::server`] is `None`).
    pub server_in_process: bool,
    /// Peak RSS of the operator process (operator and driver) during the run, KiB.
    pub peak_rss_kib: u64,
    /// RSS of the operator process while all jobs were running, KiB.
    pub steady_rss_kib: u64,
    /// RSS of the operator process before the jobs were applied, KiB.
    pub base_rss_kib: u64,
    /// CPU seconds of the operator process during the run.
    pub cpu_seconds: f64,
    /// Highest RSS sample of the operator process per phase (one sample a second).
    pub rss_by_phase: PhasePeaks,
    /// What the API server was (the real control plane or runctl's API test server) and where
    /// it and the sim ran.
    pub server_kind: String,
    /// The servers' processes together (the sum of [`Report::server_processes`]; peaks summed
    /// too, an upper bound of the peak together), when they ran in processes of their own.
    pub server: Option<ProcessFigures>,
    /// Each server process: the API test server + sim child, or etcd, kube-apiserver,
    /// kube-controller-manager and the sim's child on the real control plane.
    pub server_processes: Vec<(String, ProcessFigures)>,
    /// Shards the operator ran as (1: unsharded). Shard 0 runs in the operator process, the
    /// others in [`Report::shard_processes`].
    pub shards: u32,
    /// The processes of shards 1 and up (a sharded run), each the operator alone.
    pub shard_processes: Vec<(String, ProcessFigures)>,
    /// Wall seconds of the run (apply to last deletion).
    pub wall_seconds: f64,
    /// Apply-to-create-call latency.
    pub apply_to_create: Latency,
    /// Provider-state-change-to-status latency.
    pub status_lag: Latency,
    /// API requests of the operator over the whole lifecycle per job: reads (get, list).
    pub reads_per_job: f64,
    /// Writes per job.
    pub writes_per_job: f64,
    /// Watch streams opened during the operator's start-up (before the apply burst).
    pub watches_startup: u64,
    /// Watch streams opened from the apply burst to the last deletion (re-opened watches of the
    /// operator, and of the benchmark's own two, if any).
    pub watches: u64,
    /// Watch streams open at the end of the steady window (the operator's and the benchmark's
    /// own two).
    pub watches_open: u64,
    /// The operator's list requests from the apply burst to the last deletion, by resource: its
    /// watches' relists (after a 410 Gone) and the orphan reaper's periodic lists.
    pub operator_lists: BTreeMap<String, u64>,
    /// Relists of the benchmark's own two watches in the same time.
    pub driver_relists: u64,
    /// Provider list calls per poll interval (while jobs ran).
    pub list_calls_per_interval: f64,
    /// Provider observe calls per poll interval (while jobs ran).
    pub observe_calls_per_interval: f64,
    /// Writes during the steady window, in which nothing changed (must be 0). The benchmark sets
    /// `resyncIntervalSeconds` to 600, so periodic accrued-cost refreshes fall outside it.
    pub noop_writes: u64,
    /// Operator create throughput over the API server's raw write throughput.
    pub create_throughput_ratio: f64,
    /// Raw API server writes per second.
    pub raw_writes_per_second: f64,
    /// Operator machine creates per second.
    pub creates_per_second: f64,
    /// Time of N observe calls over the time of one list call of the same N machines.
    pub observe_vs_list: f64,
    /// What the steady window's writes were (verb and resource), if any.
    pub noop_writes_by_resource: BTreeMap<String, u64>,
    /// Every write of the run per job, by verb and resource (the benchmark's own job creates
    /// included: one `Create trainingjobs.runctl.dev` per job).
    pub writes_per_job_by_resource: BTreeMap<String, f64>,
    /// On the real control plane: every write kube-apiserver counted per job from apply to the
    /// last deletion, from every client (the operator, the driver, kube-controller-manager's
    /// garbage collector, the control plane's own leases), by its verb (`APPLY` is a server-side
    /// apply) and resource; empty on the API test server.
    pub server_writes_per_job_by_resource: BTreeMap<String, f64>,
    /// Of those, the ones that failed, by `CODE VERB resource` (absolute counts).
    pub server_failed_writes: BTreeMap<String, u64>,
}

/// Memory and CPU of one process over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessFigures {
    /// Peak RSS during the run, KiB.
    pub peak_rss_kib: u64,
    /// RSS while all jobs were running, KiB.
    pub steady_rss_kib: u64,
    /// RSS before the jobs were applied, KiB.
    pub base_rss_kib: u64,
    /// CPU seconds during the run.
    pub cpu_seconds: f64,
}

impl ProcessFigures {
    /// The figures of several processes added up.
    pub fn sum(parts: &[(String, ProcessFigures)]) -> ProcessFigures {
        parts
            .iter()
            .fold(ProcessFigures::default(), |a, (_, p)| ProcessFigures {
                peak_rss_kib: a.peak_rss_kib + p.peak_rss_kib,
                steady_rss_kib: a.steady_rss_kib + p.steady_rss_kib,
                base_rss_kib: a.base_rss_kib + p.base_rss_kib,
                cpu_seconds: a.cpu_seconds + p.cpu_seconds,
            })
    }
}

impl Report {
    /// KiB per job above the base RSS, while running.
    pub fn kib_per_object(&self) -> f64 {
        self.steady_rss_kib.saturating_sub(self.base_rss_kib) as f64 / self.n.max(1) as f64
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |k: u64| k as f64 / 1024.0;
        writeln!(f, "N = {}", self.n)?;
        writeln!(f, "| metric | value |")?;
        writeln!(f, "|---|---|")?;
        if !self.server_kind.is_empty() {
            writeln!(f, "| API server | {} |", self.server_kind)?;
        }
        writeln!(
            f,
            "| jobs succeeded / machines created / leaked / objects left | {} / {} / {} / {} |",
            self.succeeded, self.machines_created, self.machines_leaked, self.objects_left
        )?;
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let unseen = self.n.saturating_sub(self.phases.values().sum());
        writeln!(
            f,
            "| jobs by last phase seen (never seen with a phase: {unseen}); exit reports the sim wrapper gave up on | {}; {} |",
            phases.join(", "),
            self.exit_reports_given_up
        )?;
        for job in self.failed.iter().take(FAILED_LISTED) {
            writeln!(
                f,
                "| not succeeded: {} | {} {} {} |",
                job.name,
                job.phase.as_deref().unwrap_or("(no final phase seen)"),
                job.reason.as_deref().unwrap_or(""),
                job.message.as_deref().unwrap_or("")
            )?;
        }
        if self.failed.len() > FAILED_LISTED {
            writeln!(
                f,
                "| not succeeded: more | {} more jobs |",
                self.failed.len() - FAILED_LISTED
            )?;
        }
        let process = match (self.server_in_process, self.shards > 1) {
            (true, _) => "operator process: operator + driver + API test server + sim",
            (false, false) => "operator process: operator + driver",
            (false, true) => "operator process: shard 0 + driver",
        };
        if self.shards > 1 {
            writeln!(
                f,
                "| shards | {} (shard 0 in the operator process, each other shard in a process of its own) |",
                self.shards
            )?;
        }
        writeln!(
            f,
            "| peak RSS ({process}) | {:.1} MiB |",
            mib(self.peak_rss_kib)
        )?;
        let by_phase: Vec<String> = Phase::ALL
            .iter()
            .map(|p| format!("{} {:.1}", p.name(), mib(self.rss_by_phase.0[*p as usize])))
            .collect();
        writeln!(
            f,
            "| RSS sampled every second by phase, MiB ({process}); peak in | {}; {} |",
            by_phase.join(", "),
            self.rss_by_phase.peak().map_or("n/a", |(p, _)| p.name())
        )?;
        writeln!(
            f,
            "| steady RSS ({process}, all running) | {:.1} MiB ({:.1} KiB per job) |",
            mib(self.steady_rss_kib),
            self.kib_per_object()
        )?;
        writeln!(
            f,
            "| CPU seconds ({process}) / wall seconds | {:.1} / {:.1} |",
            self.cpu_seconds, self.wall_seconds
        )?;
        for (name, p) in &self.shard_processes {
            process_row(f, name, p)?;
        }
        match (&self.server, self.server_processes.as_slice()) {
            (Some(s), [_] | []) => writeln!(
                f,
                "| child process (API test server + sim): peak / steady RSS; CPU seconds | {:.1} / {:.1} MiB; {:.1} |",
                mib(s.peak_rss_kib),
                mib(s.steady_rss_kib),
                s.cpu_seconds
            )?,
            (Some(s), parts) => {
                for (name, p) in parts {
                    process_row(f, name, p)?;
                }
                writeln!(
                    f,
                    "| server processes together: peaks added / steady RSS; CPU seconds | {:.1} / {:.1} MiB; {:.1} |",
                    mib(s.peak_rss_kib),
                    mib(s.steady_rss_kib),
                    s.cpu_seconds
                )?;
            }
            (None, _) => writeln!(
                f,
                "| API test server + sim | in the operator process (counted above) |"
            )?,
        }
        writeln!(
            f,
            "| apply → create call p50 / p99 | {} |",
            self.apply_to_create
        )?;
        writeln!(
            f,
            "| provider state → status p50 / p99 | {} |",
            self.status_lag
        )?;
        writeln!(
            f,
            "| operator API requests per job: reads / writes | {:.1} / {:.1} |",
            self.reads_per_job, self.writes_per_job
        )?;
        let by_resource: Vec<String> = self
            .writes_per_job_by_resource
            .iter()
            .map(|(k, v)| format!("{k} {v:.1}"))
            .collect();
        writeln!(
            f,
            "| writes per job by verb and resource (operator, and the driver's job create) | {} |",
            by_resource.join(", ")
        )?;
        if !self.server_writes_per_job_by_resource.is_empty() {
            let total: f64 = self.server_writes_per_job_by_resource.values().sum();
            let all: Vec<String> = self
                .server_writes_per_job_by_resource
                .iter()
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect();
            writeln!(
                f,
                "| kube-apiserver's writes per job, every client (/metrics) | {total:.1}: {} |",
                all.join(", ")
            )?;
            let failed: Vec<String> = self
                .server_failed_writes
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            writeln!(
                f,
                "| of which failed (code, verb, resource; counts) | {} |",
                if failed.is_empty() {
                    "none".to_string()
                } else {
                    failed.join(", ")
                }
            )?;
        }
        writeln!(
            f,
            "| watch streams opened: start-up / apply to last deletion; open when steady (incl. the benchmark's 2) | {} / {}; {} |",
            self.watches_startup, self.watches, self.watches_open
        )?;
        let lists: Vec<String> = self
            .operator_lists
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(
            f,
            "| list requests, apply to last deletion: operator's by resource (its watches' relists after a 410, the orphan reaper's pass every 300 s); the benchmark's watches' relists | {}; {} |",
            if lists.is_empty() {
                "0".to_string()
            } else {
                lists.join(", ")
            },
            self.driver_relists
        )?;
        writeln!(
            f,
            "| provider calls per poll interval: list / observe | {:.2} / {:.2} |",
            self.list_calls_per_interval, self.observe_calls_per_interval
        )?;
        writeln!(
            f,
            "| writes in the steady window by no-op reconciles (resyncIntervalSeconds 600: periodic cost refreshes excluded) | {} {:?} |",
            self.noop_writes, self.noop_writes_by_resource
        )?;
        writeln!(
            f,
            "| periodic status refreshes at default settings (costRefreshSeconds {}), computed: 2 × N / {} s | {:.1} writes/s |",
            DEFAULT_COST_REFRESH_SECONDS,
            DEFAULT_COST_REFRESH_SECONDS,
            self.periodic_refreshes_per_second()
        )?;
        writeln!(
            f,
            "| create throughput / raw API write throughput | {:.4} ({:.0}/s of {:.0}/s) |",
            self.create_throughput_ratio, self.creates_per_second, self.raw_writes_per_second
        )?;
        write!(
            f,
            "| N observe calls / one list call (time) | {:.1}× |",
            self.observe_vs_list
        )
    }
}

/// One process's row: peak and steady RSS, CPU seconds.
fn process_row(f: &mut fmt::Formatter<'_>, name: &str, p: &ProcessFigures) -> fmt::Result {
    writeln!(
        f,
        "| {name}: peak / steady RSS; CPU seconds | {:.1} / {:.1} MiB; {:.1} |",
        p.peak_rss_kib as f64 / 1024.0,
        p.steady_rss_kib as f64 / 1024.0,
        p.cpu_seconds
    )
}

impl Report {
    /// Status writes per second that periodic accrued-cost refreshes cost at the default
    /// `costRefreshSeconds` (one for each job and each CloudResource per interval).
    pub fn periodic_refreshes_per_second(&self) -> f64 {
        2.0 * self.n as f64 / DEFAULT_COST_REFRESH_SECONDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_latencies_say_why() {
        let none = Latency::of(&mut [], "no machine was known");
        assert_eq!(none.to_string(), "n/a (no machine was known)");
        let some = Latency::of(&mut [3.0, 1.0, 2.0], "unused");
        assert_eq!(some.to_string(), "2 / 3 ms (3 samples)");
    }

    #[test]
    fn table_names_the_processes_and_the_refresh_rate() {
        let report = Report {
            n: 600,
            server: Some(ProcessFigures::default()),
            ..Report::default()
        };
        let table = report.to_string();
        assert!(
            table.contains("operator process: operator + driver)"),
            "{table}"
        );
        assert!(
            table.contains("child process (API test server + sim)"),
            "{table}"
        );
        // 2 × 600 / 1200 s: one CloudResource and one TrainingJob write per job per 20 minutes.
        assert!(table.contains("| 1.0 writes/s |"), "{table}");
        assert!(table.contains("apply → create call p50 / p99 | n/a (not measured)"));
    }
}
