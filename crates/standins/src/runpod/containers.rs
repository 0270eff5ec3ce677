//! Runs pods' containers on the test machine, so that what runctl puts on a pod (its wrapper)
//! really runs against the stand-in: once a pod is `RUNNING` with a runtime, its `args` run under
//! `/bin/sh -c` (RunPod's `args` is the container's command line) with the pod's env plus what
//! RunPod adds to every pod: `RUNPOD_POD_ID` and the pod-scoped `RUNPOD_API_KEY` (none with
//! [`PodKeys::Absent`]). The container's exit makes the pod `EXITED` (cost 0.0; its exit code is
//! kept in the stand-in's truth only); a pod that is deleted, terminated or stopped has its
//! container killed, as RunPod stops it; when the container's first process ends, whatever it
//! left running is killed too, as Docker does. A container runs once: RunPod's restart behaviour is not
//! played. The image is not pulled: the test machine's tools (or the directory named as `PATH`)
//! play it. Off unless a test turns it on ([`super::RunPodStandin::run_containers`]).

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use super::model::Phase;
use super::server::Shared;
use super::state::PodKeys;

/// How often the supervisor looks at the pods.
const TICK: Duration = Duration::from_millis(25);

/// A container to start.
struct Start {
    id: String,
    args: Option<String>,
    env: Vec<(String, String)>,
    path: String,
}

/// Starts, watches and kills the containers of `state`'s pods, forever (the stand-in aborts it).
pub async fn supervise(state: Shared) {
    let mut running: HashMap<String, Child> = HashMap::new();
    let mut started: HashSet<String> = HashSet::new();
    loop {
        tokio::time::sleep(TICK).await;
        let (to_start, up) = look(&state, &started);
        for (id, child) in &mut running {
            if !up.contains(id) {
                kill_group(child.id());
            }
        }
        let mut exited = Vec::new();
        for (id, child) in &mut running {
            let pid = child.id();
            if let Ok(Some(status)) = child.try_wait() {
                exited.push((id.clone(), status.code().unwrap_or(137), pid));
            }
        }
        for (id, code, pid) in exited {
            running.remove(&id);
            kill_group(pid);
            let mut st = state.lock();
            st.container_pids.remove(&id);
            if let Some(pod) = st.pods.get_mut(&id)
                && matches!(pod.phase, Phase::Running | Phase::RunningNoRuntime)
            {
                pod.phase = Phase::Exited;
                pod.auto = false;
                pod.exit_code = Some(code);
            }
        }
        for start in to_start {
            started.insert(start.id.clone());
            if let Some(child) = spawn(&state, start) {
                running.insert(child.0, child.1);
            }
        }
    }
}

/// The containers to start and the ids of the pods whose containers may run.
fn look(state: &Shared, started: &HashSet<String>) -> (Vec<Start>, HashSet<String>) {
    let mut st = state.lock();
    st.advance(Instant::now());
    let up: HashSet<String> = st
        .pods
        .values()
        .filter(|p| matches!(p.phase, Phase::Running | Phase::RunningNoRuntime))
        .map(|p| p.id.clone())
        .collect();
    if !st.containers.enabled {
        return (Vec::new(), up);
    }
    let path = st
        .containers
        .path
        .clone()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    let to_start = st
        .pods
        .values()
        .filter(|p| p.phase == Phase::Running && !started.contains(&p.id))
        .map(|p| {
            let mut env: Vec<(String, String)> =
                p.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            env.push(("RUNPOD_POD_ID".into(), p.id.clone()));
            if st.pod_keys != PodKeys::Absent {
                env.push(("RUNPOD_API_KEY".into(), p.pod_api_key.clone()));
            }
            Start {
                id: p.id.clone(),
                args: p.args.clone(),
                env,
                path: path.clone(),
            }
        })
        .collect();
    (to_start, up)
}

/// Starts one container in its own process group, its output going to the pod's log.
fn spawn(state: &Shared, start: Start) -> Option<(String, Child)> {
    let Some(args) = start.args else {
        append(
            state,
            &start.id,
            "stand-in: no args; the image's own command would run, the stand-in runs nothing\n",
        );
        return None;
    };
    let spawned = Command::new("/bin/sh")
        .arg("-c")
        .arg(&args)
        .env_clear()
        .envs(start.env)
        .env("PATH", &start.path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            append(state, &start.id, &format!("stand-in: cannot start: {e}\n"));
            return None;
        }
    };
    if let Some(out) = child.stdout.take() {
        capture(state.clone(), start.id.clone(), out);
    }
    if let Some(err) = child.stderr.take() {
        capture(state.clone(), start.id.clone(), err);
    }
    if let Some(pid) = child.id() {
        state.lock().container_pids.insert(start.id.clone(), pid);
    }
    Some((start.id, child))
}

fn append(state: &Shared, id: &str, text: &str) {
    state
        .lock()
        .logs
        .entry(id.to_string())
        .or_default()
        .push_str(text);
}

/// Copies a container's output, line by line, into its pod's log.
fn capture(state: Shared, id: String, stream: impl AsyncRead + Unpin + Send + 'static) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            append(&state, &id, &format!("{line}\n"));
        }
    });
}

/// Kills a container's whole process group (the wrapper and its workload), like a stopped
/// container.
pub fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
