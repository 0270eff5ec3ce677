//! `runctl-bench`: the scale benchmark. Runs the operator in this process, and the API server
//! and the simulated cloud (with its reporting wrapper) in other processes: by default
//! (`--server real`) the real control plane (etcd, kube-apiserver, kube-controller-manager from
//! `scripts/setup-control-plane.sh`) and the sim in a child process (this program again, with
//! the hidden arguments `--serve-sim --sim-port=PORT`); with `--server inprocess` runctl's API
//! test server and the sim in one child process (`--serve-api --sim-port=PORT`). Drives N
//! TrainingJobs through their whole life for each size given (default 100 1000 10000), and
//! prints one table per size with the memory and CPU of every process. Progress goes to stderr.
//! See `docs/benchmarks.md`:
//!
//! ```sh
//! cargo run --profile scale -p runctl-bench -- 100 1000 10000
//! cargo run --profile scale -p runctl-bench -- --server inprocess 100 1000
//! cargo run --profile scale -p runctl-bench -- --shards=2 1000
//! ```

use std::process::ExitCode;

// The operator binary's allocator and settings, so that the benchmark measures what `runctl run`
// uses.
runctl::use_jemalloc!();

use runctl_bench::{
    self as bench, Options, SERVE_API_FLAG, SERVE_SHARD_FLAG, SERVE_SIM_FLAG, ServerMode,
};

/// Which API server the benchmark runs against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    /// The real control plane (`--server real`, the default).
    Real,
    /// runctl's API test server, in a child process (`--server inprocess`).
    InProcess,
}

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
    if args.first().map(String::as_str) == Some(SERVE_SIM_FLAG) {
        return match bench::serve_sim_child(&args[1..]).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("runctl-bench {SERVE_SIM_FLAG}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.first().map(String::as_str) == Some(SERVE_SHARD_FLAG) {
        return match bench::serve_shard_child(&args[1..]).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("runctl-bench {SERVE_SHARD_FLAG}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut sizes = Vec::new();
    let mut shards = 1;
    let mut reconcile_concurrency = None;
    let mut deadline = None;
    let mut kind = Server::Real;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let server = match arg.strip_prefix("--server=") {
            Some(s) => Some(s),
            None if arg == "--server" => Some(args.next().map_or("", String::as_str)),
            None => None,
        };
        if let Some(s) = server {
            kind = match s {
                "real" => Server::Real,
                "inprocess" => Server::InProcess,
                _ => return usage(),
            };
            continue;
        }
        if let Some(d) = arg.strip_prefix("--deadline=") {
            match d.parse::<u64>() {
                Ok(d) if d > 0 => deadline = Some(std::time::Duration::from_secs(d)),
                _ => return usage(),
            }
            continue;
        }
        if let Some(s) = arg.strip_prefix("--shards=") {
            match s.parse::<u32>() {
                Ok(s) if (1..=runctl::config::MAX_SHARDS).contains(&s) => shards = s,
                _ => return usage(),
            }
            continue;
        }
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
    let server = match (std::env::current_exe(), kind) {
        (Ok(exe), Server::Real) => ServerMode::Real(exe),
        (Ok(exe), Server::InProcess) => ServerMode::ChildProcess(exe),
        (Err(e), _) => {
            eprintln!("runctl-bench: cannot find its own executable to run the sim's process: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "runctl scale benchmark: {} CPUs, sizes {sizes:?}, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        match kind {
            Server::Real => "real control plane (etcd, kube-apiserver, kube-controller-manager)",
            Server::InProcess => "runctl's API test server (crates/apiserver)",
        }
    );
    for n in sizes {
        let defaults = Options::new(n);
        let opts = Options {
            server: server.clone(),
            reconcile_concurrency,
            shards,
            deadline: deadline.unwrap_or(defaults.deadline),
            ..defaults
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
        "usage: runctl-bench [--server real|inprocess] [--concurrency=C] [--deadline=S] [--shards=K] [N ...]   (server: the real control plane from scripts/setup-control-plane.sh (default) or runctl's API test server; default sizes: 100 1000 10000; C: the operator's reconciles at once per controller, default as configured; S: longest wait of each phase in seconds, default 120 + 0.03 × N; K: the operator as K shards, shard 0 in this process and each other one in a process of its own, jobs spread over 8 namespaces per shard; real control plane only)"
    );
    ExitCode::from(2)
}
