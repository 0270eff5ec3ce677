#!/usr/bin/env bash
# Builds the real Kubernetes control plane that runctl's tests run against (etcd, kube-apiserver,
# kube-controller-manager) from their Go modules, into .tools/controlplane/<key>/, where <key> is
# the Kubernetes version plus a digest of tools/controlplane/go.sum: a second run is instant, a
# version bump (tools/controlplane/gen-go-mod.sh) builds anew. .tools/controlplane/current points
# at the build in use; crates/envtest finds the binaries there (or in RUNCTL_CONTROL_PLANE_BIN).
#
# Needs Go (the version named in tools/controlplane/go.mod) and the Go module proxy; nothing is
# downloaded but Go modules. A cold build takes about 10 minutes on 2 cores (docs/testing.md).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/tools/controlplane"
kube_version="$(sed -n 's/^[[:space:]a-z]*k8s\.io\/kubernetes \(v[^ ]*\).*$/\1/p' "$src/go.mod" | head -n 1)"
etcd_version="$(sed -n 's/^[[:space:]a-z]*go\.etcd\.io\/etcd\/server\/v3 \(v[^ ]*\).*$/\1/p' "$src/go.mod" | head -n 1)"
[ -n "$kube_version" ] && [ -n "$etcd_version" ] || {
  echo "setup-control-plane: cannot read the versions from $src/go.mod" >&2
  exit 1
}
digest="$(cat "$src/go.mod" "$src/go.sum" "$src/etcd/main.go" | sha256sum | cut -c1-12)"
key="kube-$kube_version-etcd-$etcd_version-$digest"
base="$root/.tools/controlplane"
out="$base/$key"
binaries=(kube-apiserver kube-controller-manager etcd)

works() {
  local b
  for b in "${binaries[@]}"; do [ -x "$out/$b" ] || return 1; done
  "$out/kube-apiserver" --version >/dev/null 2>&1 && "$out/etcd" --version >/dev/null 2>&1
}

point_current() { ln -sfn "$key" "$base/current"; }

if works; then
  point_current
  exit 0
fi

command -v go >/dev/null 2>&1 || {
  echo "setup-control-plane: Go is needed to build the test control plane (see tools/controlplane/go.mod)" >&2
  exit 1
}

mkdir -p "$base"
tmp="$base/.build-$key"
rm -rf "$tmp"
mkdir -p "$tmp"

minor="${kube_version#v1.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# One `go build` per binary, with `-v` turned into a line every 250 packages: a cold build is long
# and silent otherwise.
build() {
  local name="$1" pkg="$2" started count=0 line
  started=$(date +%s)
  echo "setup-control-plane: building $name ($pkg)" >&2
  (cd "$src" && go build -trimpath -v -ldflags "$ldflags" -o "$tmp/$name" "$pkg" 2>&1) |
    while IFS= read -r line; do
      case "$line" in
        "#"*|*.go:*|go:*) echo "$line" >&2 ;;
        *)
          count=$((count + 1))
          if [ $((count % 250)) -eq 0 ]; then echo "setup-control-plane:   $name: $count packages compiled" >&2; fi
          ;;
      esac
    done
  [ -x "$tmp/$name" ] || { echo "setup-control-plane: building $name failed" >&2; return 1; }
  echo "setup-control-plane: $name built in $(($(date +%s) - started)) s" >&2
}

build etcd ./etcd
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager

rm -rf "$out"
mv "$tmp" "$out"
works || { echo "setup-control-plane: the built binaries do not run" >&2; exit 1; }
point_current
echo "setup-control-plane: control plane $kube_version (etcd $etcd_version) in $out" >&2
