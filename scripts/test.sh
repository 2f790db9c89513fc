#!/usr/bin/env bash
# The test command from README.md: installs missing Debian packages, then runs every test
# (unit, conformance, interop against real BIRD/GoBGP/FRR, etcd clusters) in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
seam_install_missing_packages
exec cargo test --workspace --all-features -- "$@"
