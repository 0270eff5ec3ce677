//! Process measurements for the benchmark (resident memory and CPU time from `/proc/self` or
//! `/proc/<pid>` of the API test server's child process, Linux only; zero elsewhere) and
//! percentiles.

/// Which process to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    /// This process.
    This,
    /// Another process of the same user (the API test server's child).
    Pid(u32),
}

impl Process {
    fn file(self, name: &str) -> String {
        match self {
            Process::This => format!("/proc/self/{name}"),
            Process::Pid(pid) => format!("/proc/{pid}/{name}"),
        }
    }
}

/// Resident set size now and its peak, in KiB (`VmRSS`, `VmHWM` of `/proc/<pid>/status`).
pub fn rss_kib(process: Process) -> (u64, u64) {
    let status = std::fs::read_to_string(process.file("status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// This process's child processes: (`comm`, pid), from `/proc/<pid>/stat` (Linux; none
/// elsewhere). `comm` is the program's name cut to 15 characters.
pub fn children() -> Vec<(String, u32)> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_string();
            let ppid = rest.split_whitespace().nth(1)?.parse::<u32>().ok()?;
            (ppid == me).then_some((comm, pid))
        })
        .collect()
}

/// Resets the peak RSS to the current RSS (Linux `clear_refs` value 5), so that each size
/// reports its own peak; best effort.
pub fn reset_peak_rss(process: Process) {
    let _ = std::fs::write(process.file("clear_refs"), "5");
}

/// User plus system CPU seconds of the process (`/proc/<pid>/stat`, 100 ticks per second).
pub fn cpu_seconds(process: Process) -> f64 {
    let stat = std::fs::read_to_string(process.file("stat")).unwrap_or_default();
    cpu_seconds_of_stat(&stat)
}

fn cpu_seconds_of_stat(stat: &str) -> f64 {
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after the command.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The `q`-quantile (0..=1) of `values` (nearest rank); `None` when empty, never a made-up 0.
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.5), Some(50.0));
        assert_eq!(quantile(&mut v, 0.99), Some(99.0));
        assert_eq!(quantile(&mut v, 1.0), Some(100.0));
        assert_eq!(quantile(&mut [], 0.5), None);
        assert_eq!(quantile(&mut [7.0], 0.99), Some(7.0));
    }

    #[test]
    fn reads_this_process_and_a_child() {
        let (rss, peak) = rss_kib(Process::This);
        if cfg!(target_os = "linux") {
            assert!(rss > 0 && peak >= rss);
            let pid = Process::Pid(std::process::id());
            assert!(rss_kib(pid).0 > 0);
        }
        assert_eq!(rss_kib(Process::Pid(u32::MAX)), (0, 0), "no such process");
    }

    #[test]
    fn finds_a_child_by_name() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let found = children()
            .iter()
            .any(|(comm, pid)| comm == "sleep" && *pid == child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found, "{:?}", children());
    }

    #[test]
    fn cpu_seconds_from_a_stat_line() {
        let stat = "42 (tokio (rt) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 3 0";
        assert_eq!(cpu_seconds_of_stat(stat), 3.8);
        assert_eq!(cpu_seconds_of_stat(""), 0.0);
    }
}
