#!/usr/bin/env bash
# The main command from README.md: builds seam and its CNI plugin, then runs the seed
# experiment's lab (`seam lab`): Kubernetes and DC/OS nodes in network namespaces joined
# through seam's route reflector, nginx on DC/OS fetched with wget from a Kubernetes pod.
# Arguments go to `seam lab` (e.g. `scripts/lab.sh --keep`, `scripts/lab.sh down`).
# Needs root (network namespaces); installs missing Debian packages itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
seam_install_missing_packages
cargo build --release --features seam/etcd --bin seam --bin seam-cni
exec target/release/seam lab "$@"
