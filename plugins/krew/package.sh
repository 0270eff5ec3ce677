#!/usr/bin/env bash
# Packs a built runctl binary as a krew archive: plugins/krew/package.sh BINARY OS ARCH OUTDIR
# writes OUTDIR/runctl-<os>-<arch>.tar.gz (the binary at the root, named runctl).
set -euo pipefail
if [ "$#" -ne 4 ]; then
  echo "usage: $0 BINARY OS ARCH OUTDIR" >&2
  exit 2
fi
binary="$1"; os="$2"; arch="$3"; out="$4"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$binary" "$stage/runctl"
mkdir -p "$out"
tar -C "$stage" -czf "$out/runctl-${os}-${arch}.tar.gz" runctl
echo "$out/runctl-${os}-${arch}.tar.gz"
