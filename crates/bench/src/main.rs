//! `runctl-bench`: the scale benchmark. Runs the operator in this process and the API test server
//! and the simulated cloud (with its reporting wrapper) in a child process (this program again,
//! with the hidden arguments `--serve-api --sim-port=PORT`), drives N TrainingJobs through their
//! whole life for each size given (default 100 1000 10000), and prints one table per size with
//! the memory and CPU of both processes. Progress goes to stderr. See `docs/benchmarks.md`:
//!
//! ```sh
//! cargo run --profile scale -p runctl-bench -- 100 1000 10000
//! ```

use std::process::ExitCode;

// The operator binary's allocator and settings, so that the benchmark measures what `runctl run`
// uses.
runctl::use_jemalloc!();

use runctl_bench::{self as bench, Options, SERVE_API_FLAG, ServerMode};

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(SERVE_API_FLAG) {
        return match bench::serve_child(&args[1..]).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("runctl-bench {SERVE_API_FLAG}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut sizes = Vec::new();
    let mut reconcile_concurrency = None;
    for arg in &args {
        if let Some(c) = arg.strip_prefix("--concurrency=") {
            match c.parse::<u16>() {
                Ok(c) if c > 0 => reconcile_concurrency = Some(c),
                _ => return usage(),
            }
            continue;
        }
        match arg.parse::<usize>() {
            Ok(n) if n > 0 => sizes.push(n),
            _ => return usage(),
        }
    }
    if sizes.is_empty() {
        sizes = vec![100, 1000, 10_000];
    }
    let server = match std::env::current_exe() {
        Ok(exe) => ServerMode::ChildProcess(exe),
        Err(e) => {
            eprintln!(
                "runctl-bench: cannot find its own executable to run the API test server: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    println!(
        "runctl scale benchmark: {} CPUs, sizes {sizes:?}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for n in sizes {
        let opts = Options {
            server: server.clone(),
            reconcile_concurrency,
            ..Options::new(n)
        };
        match bench::run(&opts).await {
            Ok(report) => println!("\n{report}"),
            Err(e) => {
                eprintln!("N = {n}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: runctl-bench [--concurrency=C] [N ...]   (default sizes: 100 1000 10000; C: the operator's reconciles at once per controller, default as configured)"
    );
    ExitCode::from(2)
}
