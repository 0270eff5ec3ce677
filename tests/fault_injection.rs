//! Crash-consistent provisioning, proven by fault injection (see `tests/fault/` and
//! `docs/reliability.md`).
//!
//! Short mode (part of `cargo test`): a few dozen seeded runs per provider.
//! Long mode: `RUNCTL_FAULT_RUNS=1000 cargo test --test fault_injection -- --ignored
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
        s.failed
            .iter()
            .map(|(seed, v)| format!("  {seed}: {v:?}"))
            .collect::<Vec<_>>()
            .join("\n")
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
async fn short_mode_lyceum() {
    let s = suite(BackendKind::Lyceum, 8, 4).await;
    assert_clean(BackendKind::Lyceum, &s);
}

/// AWS runs share one moto (reset between runs), so they run one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_mode_aws() {
    let s = suite(BackendKind::Aws, 5, 1).await;
    assert_clean(BackendKind::Aws, &s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long mode: RUNCTL_FAULT_RUNS=1000 cargo test --test fault_injection -- --ignored --nocapture"]
async fn long_mode_aws() {
    let s = suite(BackendKind::Aws, 1000, 1).await;
    assert_clean(BackendKind::Aws, &s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long mode: RUNCTL_FAULT_RUNS=1000 cargo test --test fault_injection -- --ignored --nocapture"]
async fn long_mode_lyceum() {
    let s = suite(BackendKind::Lyceum, 1000, 6).await;
    assert_clean(BackendKind::Lyceum, &s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long mode: RUNCTL_FAULT_RUNS=1000 cargo test --test fault_injection -- --ignored --nocapture"]
async fn long_mode_sim() {
    let s = suite(BackendKind::Sim, 1000, 6).await;
    assert_clean(BackendKind::Sim, &s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long mode: RUNCTL_FAULT_RUNS=1000 cargo test --test fault_injection -- --ignored --nocapture"]
async fn long_mode_runpod() {
    let s = suite(BackendKind::RunPod, 1000, 6).await;
    assert_clean(BackendKind::RunPod, &s);
}

/// Each provider fault class is retried with backoff, shows in the `Synced` condition while it
/// lasts, and ends with exactly one machine.
async fn faults_are_reported_then_recovered(kind: BackendKind) {
    use fault::scenario::{Op, ProviderFault};
    use kube::api::{Api, PostParams};
    use runctl::crd::cloud_resource::ResourceState;
    use runctl::crd::{CloudResource, condition};
    let mut cases = vec![
        (ProviderFault::Capacity, "InsufficientCapacity"),
        (
            ProviderFault::ServerError(Op::Create),
            "ProviderUnavailable",
        ),
        (
            ProviderFault::RateLimitedRetryAfter(Op::Create),
            "RateLimited",
        ),
    ];
    // A lost create answer may be absorbed within the call (RunPod adopts the pod it finds by
    // name) or by the next observation, so only the outcome is checked for it.
    let lost = [
        ProviderFault::LoseCreateResponse,
        ProviderFault::ErrorAfterCreate,
        ProviderFault::Timeout(Op::Create),
    ];
    if kind == BackendKind::Sim {
        cases.push((ProviderFault::RateLimited(Op::Create), "RateLimited"));
    }
    // The fixture holds moto for AWS: it lives as long as the backend.
    let fixture = fault::backend::Fixture::start(kind).await;
    let backend = fixture.backend().await;
    let op = backend
        .env
        .start_controller(support::test_controller_config("conditions"));
    let api: Api<CloudResource> = Api::namespaced(backend.env.client.clone(), "default");
    let cases = cases
        .into_iter()
        .map(|(f, r)| (f, Some(r)))
        .chain(lost.into_iter().map(|f| (f, None)));
    for (i, (f, reason)) in cases.enumerate() {
        for _ in 0..3 {
            backend.inject(f);
        }
        let name = format!("fault-{i}");
        let uid = api
            .create(&PostParams::default(), &backend.manifest(&name))
            .await
            .unwrap()
            .metadata
            .uid
            .unwrap();
        if let Some(reason) = reason {
            support::eventually(
                30,
                &format!("{name}: Synced=False/{reason} for {f:?}"),
                || async {
                    let s = api.get(&name).await.ok()?.status?;
                    let c = condition::get(&s.conditions, condition::SYNCED)?;
                    (c.status == "False" && c.reason == reason).then_some(())
                },
            )
            .await;
        }
        support::eventually(30, &format!("{name} running after {f:?}"), || async {
            let s = api.get(&name).await.ok()?.status?;
            (s.state == Some(ResourceState::Running)
                && condition::is_true(&s.conditions, condition::SYNCED))
            .then_some(())
        })
        .await;
        backend.clear_faults();
        let mine = backend
            .all_machines()
            .await
            .into_iter()
            .filter(|m| m.owner.as_deref() == Some(uid.as_str()))
            .count();
        assert_eq!(mine, 1, "{f:?}: exactly one machine");
    }
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_faults_show_in_conditions_and_recover_sim() {
    faults_are_reported_then_recovered(BackendKind::Sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_faults_show_in_conditions_and_recover_runpod() {
    faults_are_reported_then_recovered(BackendKind::RunPod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_faults_show_in_conditions_and_recover_aws() {
    faults_are_reported_then_recovered(BackendKind::Aws).await;
}
