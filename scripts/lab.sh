#!/usr/bin/env bash
# The main command from README.md: builds seam and runs the seed experiment's route reflector.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
seam_install_missing_packages
cargo build --release --bin seam
exec target/release/seam lab "$@"
