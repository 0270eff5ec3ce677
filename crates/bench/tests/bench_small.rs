//! The scale benchmark at N = 100, as a CI test: it checks counts only, never time. Every job
//! succeeds (as its own status says) and is deleted by its TTL, no machine leaks, no exit report
//! is lost, no watch has to relist, a steady window of no-op reconciles writes nothing, and
//! provider status polling costs one list call per interval whatever N is. It runs on the real
//! control plane (etcd, kube-apiserver, kube-controller-manager from
//! `scripts/setup-control-plane.sh`), the benchmark's default, with the simulated cloud in a
//! child process (the `runctl-bench` binary); the operator reaches the sim over HTTP
//! (`providers.sim.endpoint`). The last test runs a smaller life on runctl's API test server,
//! all in the test's process.

use runctl_bench::report::Latency;
use runctl_bench::{self as bench, Options, ServerMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_jobs_through_their_whole_life() {
    let opts = Options {
        server: ServerMode::Real(env!("CARGO_BIN_EXE_runctl-bench").into()),
        ..Options::new(100)
    };
    let report = bench::run(&opts).await.expect("benchmark run");
    println!("{report}");
    assert!(
        !report.server_writes_per_job_by_resource.is_empty(),
        "kube-apiserver's own counts were read"
    );
    assert_eq!(report.succeeded, 100, "every job succeeded");
    assert!(
        report.failed.is_empty(),
        "not succeeded: {:?}",
        report.failed
    );
    assert_eq!(report.exit_reports_given_up, 0, "every exit report arrived");
    assert_eq!(report.machines_created, 100, "one machine per job");
    assert_eq!(report.machines_leaked, 0, "no machine left billing");
    assert_eq!(
        report.objects_left, 0,
        "TTL deleted every job and CloudResource"
    );
    assert!(report.server.is_some(), "the server's process was measured");
    assert!(!report.server_in_process);
    let names: Vec<&str> = report
        .server_processes
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        names,
        ["etcd", "kube-apiserver", "kube-controller-manager", "sim"],
        "each server process was measured"
    );
    assert!(
        matches!(
            report.apply_to_create,
            Latency::Measured { samples: 100, .. }
        ),
        "one apply → create sample per job: {}",
        report.apply_to_create
    );
    assert!(
        matches!(report.status_lag, Latency::Measured { samples: 200, .. }),
        "Running and Terminated of each machine: {}",
        report.status_lag
    );
    assert!(
        report.operator_lists.is_empty() && report.driver_relists == 0,
        "no watch relisted: {:?}, {}",
        report.operator_lists,
        report.driver_relists
    );
    assert!(
        report.watches_startup > 0,
        "the operator's watches are counted"
    );
    assert!(
        report.watches_open > 2,
        "the operator's watches are open when steady"
    );
    assert_eq!(
        report.noop_writes, 0,
        "no-op reconciles wrote: {:?}",
        report.noop_writes_by_resource
    );
    // One list per interval (the window may catch one poll more or less than its length).
    assert!(
        report.list_calls_per_interval > 0.0 && report.list_calls_per_interval <= 1.5,
        "list calls per interval: {}",
        report.list_calls_per_interval
    );
    assert_eq!(
        report.observe_calls_per_interval, 0.0,
        "no per-object observe while steady"
    );
}

/// The same life with the API test server and the sim in the test's own process (the operator
/// still reaches the sim over HTTP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_mode_runs_the_same_life() {
    let report = bench::run(&Options::new(20)).await.expect("benchmark run");
    assert!(report.server_in_process && report.server.is_none());
    assert_eq!(report.succeeded, 20, "not succeeded: {:?}", report.failed);
    assert_eq!(report.machines_created, 20);
    assert_eq!(report.machines_leaked, 0);
    assert_eq!(report.objects_left, 0);
}
