//! Crash-consistent provisioning, proven by fault injection (see `tests/fault/` and
//! `docs/reliability.md`).
//!
//! Short mode (part of `cargo test`): a few dozen seeded runs per provider.
//! Long mode: `RUNCTL_FAULT_RUNS=1000 cargo test --release --test fault_injection -- --ignored
//! --nocapture` runs 1,000 runs per provider and prints the counts. Replay one seed with
//! `RUNCTL_FAULT_SEED=<seed> RUNCTL_FAULT_RUNS=1` (short or long mode).

mod fault;
mod support;

use fault::backend::BackendKind;
use fault::{Summary, run_many};

/// First seed of the short mode; fixed so that `cargo test` is repeatable.
const SHORT_SEED: u64 = 0x5eed_0001;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

async fn suite(kind: BackendKind, default_runs: u64, parallel: usize) -> Summary {
    let first = env_u64("RUNCTL_FAULT_SEED").unwrap_or(SHORT_SEED);
    let runs = env_u64("RUNCTL_FAULT_RUNS").unwrap_or(default_runs);
    let parallel = env_u64("RUNCTL_FAULT_PARALLEL").map_or(parallel, |p| p as usize);
    let summary = run_many(kind, first..first + runs, parallel).await;
    println!("{}", summary.line(kind.name()));
    summary
}

fn assert_clean(kind: BackendKind, s: &Summary) {
    assert!(
        s.failed.is_empty() && s.duplicates == 0 && s.orphans == 0,
        "{}\nfailed seeds (replay with RUNCTL_FAULT_SEED=<seed> RUNCTL_FAULT_RUNS=1):\n{}",
        s.line(kind.name()),
        s.failed.iter().map(|(seed, v)| format!("  {seed}: {v:?}")).collect::<Vec<_>>().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_mode_sim() {
    let s = suite(BackendKind::Sim, 24, 4).await;
    assert_clean(BackendKind::Sim, &s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_mode_runpod() {
    let s = suite(BackendKind::RunPod, 12, 4).await;
    assert_clean(BackendKind::RunPod, &s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long mode: RUNCTL_FAULT_RUNS=1000 cargo test --release --test fault_injection -- --ignored --nocapture"]
async fn long_mode_sim() {
    let s = suite(BackendKind::Sim, 1000, 6).await;
    assert_clean(BackendKind::Sim, &s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long mode: RUNCTL_FAULT_RUNS=1000 cargo test --release --test fault_injection -- --ignored --nocapture"]
async fn long_mode_runpod() {
    let s = suite(BackendKind::RunPod, 1000, 6).await;
    assert_clean(BackendKind::RunPod, &s);
}
