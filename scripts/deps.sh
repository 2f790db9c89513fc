#!/usr/bin/env bash
# Install the Debian packages Seam's tests and lab need, only if some are missing.
# Sourced by scripts/test.sh, scripts/lab.sh and .ci/run so that all three agree.
set -euo pipefail

SEAM_DEBIAN_PACKAGES=(
  bird2 gobgpd frr exabgp etcd-server etcd-client
  podman runc containernetworking-plugins
  nftables iproute2 iperf3 iputils-ping procps
  protobuf-compiler libprotobuf-dev
  busybox-static
)

seam_install_missing_packages() {
  local missing=()
  for package in "${SEAM_DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "seam: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
  echo "seam: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
}

# The FRR and BIRD packages start system daemons on install; Seam's tests run their own
# instances in namespaces and on loopback ports, so the system ones are left alone.
