#!/usr/bin/env bash
# Writes the krew plugin manifest of `kubectl runctl` for released archives, with their real
# sha256 sums: plugins/krew/manifest.sh VERSION BASE_URL ARCHIVE... > runctl.yaml
# Each ARCHIVE is named runctl-<os>-<arch>.tar.gz and holds the `runctl` binary at its root
# (plugins/krew/package.sh makes one); BASE_URL is where the archives are published.
# Install from a local archive: kubectl krew install --manifest=runctl.yaml --archive=ARCHIVE
set -euo pipefail
if [ "$#" -lt 3 ]; then
  echo "usage: $0 VERSION BASE_URL ARCHIVE..." >&2
  exit 2
fi
version="$1"; base="${2%/}"; shift 2
cat <<YAML
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: runctl
spec:
  version: ${version}
  homepage: https://github.com/runctl/runctl
  shortDescription: Train on rented GPUs with runctl TrainingJobs
  description: |
    The command line of the runctl operator: list and describe TrainingJobs with their
    attempts, placement and cost; stream a job's logs; suspend, resume and retry jobs;
    preview where a job would run and what it would cost (plan); report spend by namespace,
    provider and job (cost); and check an installation (doctor).
  caveats: |
    runctl's CRDs and operator must be installed in the cluster (see the Helm chart).
    plan and doctor read the operator's ConfigMap and credentials Secrets with your
    permissions.
  platforms:
YAML
for archive in "$@"; do
  name="$(basename "$archive")"
  if [[ ! "$name" =~ ^runctl-([a-z]+)-([a-z0-9]+)\.tar\.gz$ ]]; then
    echo "$archive: expected a name runctl-<os>-<arch>.tar.gz" >&2
    exit 2
  fi
  os="${BASH_REMATCH[1]}"; arch="${BASH_REMATCH[2]}"
  if ! tar -tzf "$archive" | grep -qx 'runctl'; then
    echo "$archive: holds no runctl binary at its root" >&2
    exit 2
  fi
  sum="$(sha256sum "$archive" | cut -d' ' -f1)"
  cat <<YAML
    - selector:
        matchLabels:
          os: ${os}
          arch: ${arch}
      uri: ${base}/${name}
      sha256: "${sum}"
      bin: runctl
      files:
        - from: runctl
          to: .
YAML
done
