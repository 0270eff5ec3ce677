//! What one benchmark size measured, and its table.

use std::collections::BTreeMap;
use std::fmt;

/// Figures of one run of N jobs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Jobs.
    pub n: usize,
    /// Jobs that succeeded.
    pub succeeded: usize,
    /// Machines the sim made.
    pub machines_created: u64,
    /// Machines still billing at the end (must be 0).
    pub machines_leaked: usize,
    /// Jobs or CloudResources left at the end (must be 0 once TTL deletion ran).
    pub objects_left: usize,
    /// Whether the API test server ran in the benchmark's process (then the figures of the
    /// benchmark process include it, and [`Report::server`] is `None`).
    pub server_in_process: bool,
    /// Peak RSS of the benchmark process (operator, sim, driver) during the run, KiB.
    pub peak_rss_kib: u64,
    /// RSS of the benchmark process while all jobs were running, KiB.
    pub steady_rss_kib: u64,
    /// RSS of the benchmark process before the jobs were applied, KiB.
    pub base_rss_kib: u64,
    /// CPU seconds of the benchmark process during the run.
    pub cpu_seconds: f64,
    /// The API test server's process, when it ran in a child process.
    pub server: Option<ProcessFigures>,
    /// Wall seconds of the run (apply to last deletion).
    pub wall_seconds: f64,
    /// Apply-to-create-call latency percentiles, ms.
    pub apply_to_create_ms: (f64, f64),
    /// Provider-state-change-to-status latency percentiles, ms.
    pub status_lag_ms: (f64, f64),
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
    /// Provider list calls per poll interval (while jobs ran).
    pub list_calls_per_interval: f64,
    /// Provider observe calls per poll interval (while jobs ran).
    pub observe_calls_per_interval: f64,
    /// Writes during the steady window, in which nothing changed (must be 0).
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
        writeln!(
            f,
            "| jobs succeeded / machines created / leaked / objects left | {} / {} / {} / {} |",
            self.succeeded, self.machines_created, self.machines_leaked, self.objects_left
        )?;
        let process = if self.server_in_process {
            "benchmark process: operator + sim + driver + API test server"
        } else {
            "benchmark process: operator + sim + driver"
        };
        writeln!(
            f,
            "| peak RSS ({process}) | {:.1} MiB |",
            mib(self.peak_rss_kib)
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
        match &self.server {
            Some(s) => writeln!(
                f,
                "| API test server process: peak / steady RSS; CPU seconds | {:.1} / {:.1} MiB; {:.1} |",
                mib(s.peak_rss_kib),
                mib(s.steady_rss_kib),
                s.cpu_seconds
            )?,
            None => writeln!(
                f,
                "| API test server process | in the benchmark process (counted above) |"
            )?,
        }
        writeln!(
            f,
            "| apply → create call p50 / p99 | {:.0} / {:.0} ms |",
            self.apply_to_create_ms.0, self.apply_to_create_ms.1
        )?;
        writeln!(
            f,
            "| provider state → status p50 / p99 | {:.0} / {:.0} ms |",
            self.status_lag_ms.0, self.status_lag_ms.1
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
            "| writes per job by verb and resource | {} |",
            by_resource.join(", ")
        )?;
        writeln!(
            f,
            "| watch streams opened: start-up / apply to last deletion; open when steady (incl. the benchmark's 2) | {} / {}; {} |",
            self.watches_startup, self.watches, self.watches_open
        )?;
        writeln!(
            f,
            "| provider calls per poll interval: list / observe | {:.2} / {:.2} |",
            self.list_calls_per_interval, self.observe_calls_per_interval
        )?;
        writeln!(
            f,
            "| writes by no-op reconciles | {} {:?} |",
            self.noop_writes, self.noop_writes_by_resource
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
