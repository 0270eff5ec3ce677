//! `runctl-bench`: the scale benchmark. Runs the API test server, the operator and the simulated
//! cloud in this process and drives N TrainingJobs through their whole life for each size given
//! (default 100 1000 10000), printing one table per size. See `docs/benchmarks.md`:
//!
//! ```sh
//! cargo run --release --bin runctl-bench -- 100 1000 10000
//! ```

use std::process::ExitCode;

use runctl::bench::{self, Options};

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let mut sizes = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.parse::<usize>() {
            Ok(n) if n > 0 => sizes.push(n),
            _ => {
                eprintln!("usage: runctl-bench [N ...]   (default: 100 1000 10000)");
                return ExitCode::from(2);
            }
        }
    }
    if sizes.is_empty() {
        sizes = vec![100, 1000, 10_000];
    }
    println!(
        "runctl scale benchmark: {} CPUs, sizes {sizes:?}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for n in sizes {
        match bench::run(&Options::new(n)).await {
            Ok(report) => println!("\n{report}"),
            Err(e) => {
                eprintln!("N = {n}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
