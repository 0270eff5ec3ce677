//! The scale benchmark at N = 100, as a CI test: it checks counts only, never time. Every job
//! succeeds and is deleted by its TTL, no machine leaks, a steady window of no-op reconciles
//! writes nothing, and provider status polling costs one list call per interval whatever N is.
//! The API test server runs in a child process (the `runctl-bench` binary), as in the benchmark.

use runctl::bench::{self, Options, ServerMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_jobs_through_their_whole_life() {
    let opts = Options {
        server: ServerMode::ChildProcess(env!("CARGO_BIN_EXE_runctl-bench").into()),
        ..Options::new(100)
    };
    let report = bench::run(&opts).await.expect("benchmark run");
    println!("{report}");
    assert_eq!(report.succeeded, 100, "every job succeeded");
    assert_eq!(report.machines_created, 100, "one machine per job");
    assert_eq!(report.machines_leaked, 0, "no machine left billing");
    assert_eq!(
        report.objects_left, 0,
        "TTL deleted every job and CloudResource"
    );
    assert!(report.server.is_some(), "the server's process was measured");
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
