#!/usr/bin/env bash
# Regenerates every generated file from the Rust types: crds/, the copies the Helm chart and
# kustomize ship (charts/runctl/files/crds/, config/crd/), and docs/crd-reference.md.
# Tests fail when any of them drifts.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo run -q -- crd --write crds
cp crds/*.yaml config/crd/
cp crds/*.yaml charts/runctl/files/crds/
UPDATE_GOLDEN=1 cargo test -q --test deploy_docs crd_reference >/dev/null
echo "regenerated crds/, config/crd/, charts/runctl/files/crds/ and docs/crd-reference.md"
