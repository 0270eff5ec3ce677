//! The Lyceum stand-in's truth: VMs, runs, prices, knobs and one-shot faults, with the status
//! progressions of the reference (VM `pending → provisioning → running → ready`, run
//! `pending → queued → starting → running`) computed from elapsed time at read time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};

/// VM statuses in the order a healthy VM goes through them.
pub const VM_PROGRESSION: [&str; 4] = ["pending", "provisioning", "running", "ready"];
/// Run statuses in the order a healthy run goes through them (it then runs until a knob ends
/// it or its `timeout` passes).
pub const RUN_PROGRESSION: [&str; 4] = ["pending", "queued", "starting", "running"];
/// Run statuses after which nothing changes any more.
pub const RUN_TERMINAL: [&str; 8] = [
    "completed",
    "failed",
    "failed_user",
    "system_failure",
    "failed_system",
    "cancelled",
    "aborted",
    "timeout",
];
/// VM statuses after which nothing changes any more.
pub const VM_TERMINAL: [&str; 4] = ["stopped", "terminated", "failed", "error"];
/// Lyceum's run timeout when a start request sets none (the documented 60 s).
pub const DEFAULT_RUN_TIMEOUT_SECONDS: u64 = 60;

/// A fault the stand-in injects into the next create call (`/vms/create` or
/// `/execution/image/start`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 before anything is made.
    ServerError,
    /// The VM or run is made, then HTTP 502 is returned.
    ServerErrorAfterCreate,
    /// The VM or run is made, then the connection is closed without a response.
    DropAfterCreate,
    /// HTTP 500 whose text says the instance "could not be provisioned" (nothing is made).
    Capacity,
    /// HTTP 429 with `Retry-After: 1`.
    RateLimit,
    /// HTTP 401.
    Unauthorized,
    /// HTTP 403.
    Forbidden,
    /// HTTP 402 (out of credits).
    OutOfCredits,
    /// The VM or run is made, and the answer comes after this delay.
    Delay(Duration),
}

/// How a VM's `ip_address` looks once it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressStyle {
    /// A bare IPv4 address.
    Ip,
    /// `host:port`, as Lyceum reports for some VMs.
    HostPort,
    /// `null` even while `ready` (seen for ~100 s after create).
    Null,
}

/// Runtime knobs.
#[derive(Clone, Debug)]
pub struct Knobs {
    /// Time per status step of the progressions.
    pub step: Duration,
    /// Delay of every create answer (the machine is made first).
    pub create_delay: Duration,
    /// Time between an accepted VM DELETE and the VM reading `terminated`.
    pub delete_lag: Duration,
    /// VM address style.
    pub address_style: AddressStyle,
    /// The account is out of credits: creates answer 402.
    pub out_of_credits: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            step: Duration::from_millis(50),
            create_delay: Duration::ZERO,
            delete_lag: Duration::ZERO,
            address_style: AddressStyle::Ip,
            out_of_credits: false,
        }
    }
}

/// A VM as the stand-in holds it.
#[derive(Clone, Debug)]
pub struct Vm {
    /// `vm_id`.
    pub id: String,
    /// `display_name` as sent.
    pub display_name: String,
    /// `hardware_profile` as sent.
    pub hardware_profile: String,
    /// `on-demand` or `spot`.
    pub instance_type: String,
    /// GPU count (0 silently became 1, as on Lyceum).
    pub gpu_count: u32,
    /// `user_public_key` as sent.
    pub user_public_key: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Price per hour used for `billed`.
    pub price_per_hour: f64,
    /// Host part of the address the VM gets.
    pub ip: String,
    born: Instant,
    forced: Option<String>,
    ended: Option<Instant>,
    delete_requested: Option<Instant>,
}

/// A run as the stand-in holds it.
#[derive(Clone, Debug)]
pub struct Run {
    /// `execution_id`.
    pub id: String,
    /// `run_name` as sent.
    pub run_name: Option<String>,
    /// `execution_type` as sent.
    pub execution_type: String,
    /// `docker_image_ref`.
    pub image: String,
    /// `docker_run_cmd`.
    pub cmd: Vec<String>,
    /// `docker_run_env` (`K=V` lines) as sent.
    pub env: String,
    /// `timeout` in seconds (60 when absent, as on Lyceum).
    pub timeout_seconds: u64,
    /// `labels`.
    pub labels: Vec<String>,
    /// `metadata`.
    pub metadata: Value,
    /// Creation time.
    pub created_at: Timestamp,
    /// Price per hour used for `billed`.
    pub price_per_hour: f64,
    born: Instant,
    forced: Option<String>,
    return_code: Option<i64>,
    ended: Option<Instant>,
    /// The run's output, oldest first: (when, line).
    pub logs: Vec<(Timestamp, String)>,
}

/// Everything the stand-in knows.
#[derive(Debug, Default)]
pub struct Store {
    /// VMs by creation order.
    pub vms: Vec<Vm>,
    /// Runs by creation order.
    pub runs: Vec<Run>,
    /// One-shot faults for the next create calls.
    pub faults: VecDeque<Fault>,
    /// Knobs.
    pub knobs: Knobs,
    /// Requests per `METHOD path-template`.
    pub calls: BTreeMap<String, u32>,
    /// Every `User-Agent` header seen ("" for none).
    pub user_agents: BTreeSet<String>,
    next_ip: u32,
}

/// Price per hour of one GPU of `profile` (stand-in figures: Lyceum publishes none).
pub fn unit_price(profile: &str, spot: bool) -> Option<f64> {
    let on_demand = match profile.trim_start_matches("gpu.") {
        "a100" => 1.89,
        "h100" => 2.99,
        "l40s" => 1.19,
        "cpu" => 0.25,
        _ => return None,
    };
    Some(if spot { on_demand * 0.6 } else { on_demand })
}

/// Profiles the stand-in offers.
pub const PROFILES: [&str; 4] = ["a100", "h100", "l40s", "cpu"];

fn elapsed_steps(born: Instant, now: Instant, step: Duration) -> usize {
    if step.is_zero() {
        return usize::MAX;
    }
    let n = now.saturating_duration_since(born).as_nanos() / step.as_nanos().max(1);
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn billed(price: f64, born: Instant, until: Instant) -> f64 {
    let secs = until.saturating_duration_since(born).as_secs_f64();
    (price * secs / 3600.0 * 1_000_000.0).round() / 1_000_000.0
}

impl Vm {
    /// Status at `now`.
    pub fn status(&self, now: Instant, knobs: &Knobs) -> String {
        if let Some(asked) = self.delete_requested
            && now.saturating_duration_since(asked) >= knobs.delete_lag
        {
            return "terminated".into();
        }
        if let Some(forced) = &self.forced {
            return forced.clone();
        }
        let i = elapsed_steps(self.born, now, knobs.step).min(VM_PROGRESSION.len() - 1);
        VM_PROGRESSION[i].into()
    }

    fn end(&self, now: Instant, knobs: &Knobs) -> Option<Instant> {
        if let Some(asked) = self.delete_requested {
            let done = asked + knobs.delete_lag;
            if now >= done {
                return Some(self.ended.map_or(done, |e| e.min(done)));
            }
        }
        self.ended
    }

    /// The `ip_address` field at `now`.
    pub fn address(&self, now: Instant, knobs: &Knobs) -> Value {
        let status = self.status(now, knobs);
        if !matches!(status.as_str(), "running" | "ready") {
            return Value::Null;
        }
        match knobs.address_style {
            AddressStyle::Ip => json!(self.ip),
            AddressStyle::HostPort => json!(format!("{}:22022", self.ip)),
            AddressStyle::Null => Value::Null,
        }
    }

    /// The VM as `/vms/list` shows it.
    pub fn list_json(&self, now: Instant, knobs: &Knobs) -> Value {
        let end = self.end(now, knobs).unwrap_or(now);
        json!({
            "vm_id": self.id,
            "name": self.display_name,
            "display_name": self.display_name,
            "status": self.status(now, knobs),
            "instance_type": self.instance_type,
            "ip_address": self.address(now, knobs),
            "hardware_profile": self.hardware_profile,
            "gpu_count": self.gpu_count,
            "billed": billed(self.price_per_hour, self.born, end),
            "created_at": self.created_at.to_string(),
        })
    }

    /// The VM as `/vms/{id}/status` shows it.
    pub fn status_json(&self, now: Instant, knobs: &Knobs) -> Value {
        let mut v = self.list_json(now, knobs);
        let end = self.end(now, knobs).unwrap_or(now);
        v["uptime_seconds"] = json!(end.saturating_duration_since(self.born).as_secs());
        v["instance_specs"] = self.specs();
        v["volumes"] = json!([]);
        v
    }

    fn specs(&self) -> Value {
        json!({"cpu": 8 * self.gpu_count, "memory": 64 * self.gpu_count, "disk": 200, "gpu_count": self.gpu_count})
    }

    /// The answer of `/vms/create`.
    pub fn created_json(&self) -> Value {
        json!({
            "vm_id": self.id,
            "status": "pending",
            "created_at": self.created_at.to_string(),
            "instance_specs": self.specs(),
            "ip_address": null,
            "hardware_profile": self.hardware_profile,
            "gpu_count": self.gpu_count,
            "name": self.display_name,
            "display_name": self.display_name,
            "billed": 0.0,
            "status_check_url": format!("/api/v2/external/vms/{}/status", self.id),
            "polling_message": "VM is being provisioned. Poll the status URL until it is ready.",
            "volume": null,
            "volume_notice": null,
        })
    }
}

impl Run {
    /// Status and return code at `now`.
    pub fn status(&self, now: Instant, knobs: &Knobs) -> (String, Option<i64>) {
        if let Some(forced) = &self.forced {
            return (forced.clone(), self.return_code);
        }
        if now.saturating_duration_since(self.born) >= Duration::from_secs(self.timeout_seconds) {
            return ("timeout".into(), None);
        }
        let i = elapsed_steps(self.born, now, knobs.step).min(RUN_PROGRESSION.len() - 1);
        (RUN_PROGRESSION[i].into(), None)
    }

    fn end(&self, now: Instant) -> Instant {
        let timeout = self.born + Duration::from_secs(self.timeout_seconds);
        match self.ended {
            Some(e) => e,
            None if self.forced.is_none() && now >= timeout => timeout,
            None => now,
        }
    }

    /// The run as `/execution/{id}` and `/workloads/list` show it.
    pub fn json(&self, now: Instant, knobs: &Knobs) -> Value {
        let (status, code) = self.status(now, knobs);
        let terminal = RUN_TERMINAL.contains(&status.as_str());
        let end = self.end(now);
        json!({
            "execution_id": self.id,
            "run_name": self.run_name,
            "status": status,
            "execution_type": self.execution_type,
            "docker_image_ref": self.image,
            "return_code": code,
            "billed": billed(self.price_per_hour, self.born, end),
            "created_at": self.created_at.to_string(),
            "job_start": self.created_at.to_string(),
            "job_end": if terminal { json!(Timestamp::now().to_string()) } else { Value::Null },
            "system_errors": if status == "system_failure" { json!(["node lost"]) } else { json!([]) },
            "labels": self.labels,
            "metadata": self.metadata,
        })
    }
}

impl Store {
    fn ip(&mut self) -> String {
        self.next_ip += 1;
        format!("203.0.113.{}", self.next_ip % 250 + 1)
    }

    /// Records a new VM.
    pub fn add_vm(
        &mut self,
        display_name: String,
        hardware_profile: String,
        instance_type: String,
        gpu_count: u32,
        user_public_key: String,
    ) -> Vm {
        let spot = instance_type == "spot";
        let price = unit_price(&hardware_profile, spot).unwrap_or(1.0) * f64::from(gpu_count);
        let vm = Vm {
            id: uuid::Uuid::new_v4().to_string(),
            display_name,
            hardware_profile,
            instance_type,
            gpu_count,
            user_public_key,
            created_at: Timestamp::now(),
            price_per_hour: price,
            ip: self.ip(),
            born: Instant::now(),
            forced: None,
            ended: None,
            delete_requested: None,
        };
        self.vms.push(vm.clone());
        vm
    }

    /// Records a new run.
    #[allow(clippy::too_many_arguments)]
    pub fn add_run(
        &mut self,
        run_name: Option<String>,
        execution_type: String,
        image: String,
        cmd: Vec<String>,
        env: String,
        timeout_seconds: u64,
        labels: Vec<String>,
        metadata: Value,
    ) -> Run {
        let price = unit_price(&execution_type, false).unwrap_or(1.0);
        let now = Timestamp::now();
        let logs = vec![
            (now, format!("pulling image {image}")),
            (now, "starting container".to_string()),
        ];
        let run = Run {
            id: uuid::Uuid::new_v4().to_string(),
            run_name,
            execution_type,
            image,
            cmd,
            env,
            timeout_seconds,
            labels,
            metadata,
            created_at: Timestamp::now(),
            price_per_hour: price,
            born: Instant::now(),
            forced: None,
            return_code: None,
            ended: None,
            logs,
        };
        self.runs.push(run.clone());
        run
    }

    /// The VM with `id`.
    pub fn vm_mut(&mut self, id: &str) -> Option<&mut Vm> {
        self.vms.iter_mut().find(|v| v.id == id)
    }

    /// The run with `id`.
    pub fn run_mut(&mut self, id: &str) -> Option<&mut Run> {
        self.runs.iter_mut().find(|r| r.id == id)
    }

    /// Forces a VM's status; terminal statuses freeze `billed`.
    pub fn force_vm(&mut self, id: &str, status: &str) -> bool {
        let Some(vm) = self.vm_mut(id) else {
            return false;
        };
        vm.forced = Some(status.to_string());
        if VM_TERMINAL.contains(&status) && vm.ended.is_none() {
            vm.ended = Some(Instant::now());
        }
        true
    }

    /// Accepts a DELETE: the VM reads `terminated` once the delete lag has passed.
    pub fn delete_vm(&mut self, id: &str) -> bool {
        let Some(vm) = self.vm_mut(id) else {
            return false;
        };
        if vm.delete_requested.is_none() {
            vm.delete_requested = Some(Instant::now());
        }
        true
    }

    /// Forces a run's status and return code; terminal statuses freeze `billed`.
    pub fn force_run(&mut self, id: &str, status: &str, return_code: Option<i64>) -> bool {
        let Some(run) = self.run_mut(id) else {
            return false;
        };
        run.forced = Some(status.to_string());
        run.return_code = return_code;
        if RUN_TERMINAL.contains(&status) && run.ended.is_none() {
            run.ended = Some(Instant::now());
            let code = return_code.map_or("none".to_string(), |c| c.to_string());
            run.logs.push((
                Timestamp::now(),
                format!("run {status} (return code {code})"),
            ));
        }
        true
    }

    /// Appends a line to a run's output; false for an unknown id.
    pub fn log_run(&mut self, id: &str, line: &str) -> bool {
        let Some(run) = self.run_mut(id) else {
            return false;
        };
        run.logs.push((Timestamp::now(), line.to_string()));
        true
    }

    /// Removes a VM or run without a trace.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.vms.len() + self.runs.len();
        self.vms.retain(|v| v.id != id);
        self.runs.retain(|r| r.id != id);
        before != self.vms.len() + self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_progresses_then_terminates_after_delete() {
        let knobs = Knobs {
            step: Duration::from_secs(10),
            ..Knobs::default()
        };
        let mut store = Store::default();
        let vm = store.add_vm("n".into(), "a100".into(), "on-demand".into(), 1, "k".into());
        let now = Instant::now();
        assert_eq!(vm.status(now, &knobs), "pending");
        assert_eq!(
            vm.status(now + Duration::from_secs(15), &knobs),
            "provisioning"
        );
        assert_eq!(vm.status(now + Duration::from_secs(25), &knobs), "running");
        assert_eq!(vm.status(now + Duration::from_secs(3600), &knobs), "ready");
        assert_eq!(vm.address(now, &knobs), Value::Null);
        store.delete_vm(&vm.id);
        assert_eq!(store.vms[0].status(Instant::now(), &knobs), "terminated");
    }

    #[test]
    fn run_times_out_after_its_timeout() {
        let knobs = Knobs::default();
        let mut store = Store::default();
        let run = store.add_run(
            None,
            "gpu.a100".into(),
            "img".into(),
            vec![],
            String::new(),
            60,
            vec![],
            Value::Null,
        );
        let now = Instant::now();
        assert_eq!(
            run.status(now + Duration::from_secs(59), &knobs).0,
            "running"
        );
        assert_eq!(
            run.status(now + Duration::from_secs(61), &knobs).0,
            "timeout"
        );
        store.force_run(&run.id, "completed", Some(0));
        assert_eq!(
            store.runs[0].status(now, &knobs),
            ("completed".into(), Some(0))
        );
    }
}
