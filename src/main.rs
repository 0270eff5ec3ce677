//! The `runctl` binary: `run` (the operator), `demo` (the operator against an embedded API
//! server and the simulated cloud), `crd` (print or write the CRDs).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "runctl", version, about = "Kubernetes operator that rents GPU machines for training jobs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print both CRDs as YAML, or write them to a directory (`crds/`).
    Crd {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

fn write_crds(dir: Option<PathBuf>) -> std::io::Result<()> {
    let crds = runctl::crd::all();
    match dir {
        None => {
            for crd in &crds {
                print!("{}", runctl::crd::to_yaml(crd));
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for crd in &crds {
                let path = dir.join(runctl::crd::file_name(crd));
                std::fs::write(&path, runctl::crd::to_yaml(crd))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd { write } => write_crds(write).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runctl: {e}");
            ExitCode::FAILURE
        }
    }
}
