#!/usr/bin/env bash
# The route-reflector benchmark in one command: seam bgpd, BIRD 2, FRR and GoBGP as the
# reflector under the same load, one after another, in a private network namespace; prints one
# table. Arguments go to `seam bench rr` (e.g. `scripts/bench-rr.sh --scenarios 10x10k,churn
# --daemons seam,bird --json /tmp/rr.json`; `--help` lists them).
# Needs root (network namespaces); installs missing Debian packages itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
seam_install_missing_packages
cargo build --release -p seam --bin seam
exec target/release/seam bench rr "$@"
