#!/usr/bin/env bash
# Pod-to-pod iperf3 throughput across two lab nodes, against node-to-node on the same underlay,
# in one run (alternating, so both see the same machine load). Prints the ratio.
# Usage (root): scripts/bench-pod-throughput.sh [path/to/seam]   (default: target/release/seam)
set -euo pipefail
cd "$(dirname "$0")/.."
seam=${1:-target/release/seam}
lab=seam-lab-tput
rounds=${ROUNDS:-3}
seconds=${SECONDS_PER_RUN:-5}
cleanup() { "$seam" lab --name "$lab" down >/dev/null 2>&1 || true; }
trap cleanup EXIT
"$seam" lab --name "$lab" up >/dev/null
"$seam" lab --name "$lab" add-pod tput-server --node k8s-worker2 >/dev/null
"$seam" lab --name "$lab" add-pod tput-client --node k8s-worker3 >/dev/null
pod_ip=$("$seam" lab --name "$lab" status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print([m["ip"] for m in d["members"] if m["name"]=="tput-server"][0])')
node_ip=172.16.18.35
measure() { # $1 server member, $2 client member, $3 target address
  "$seam" lab --name "$lab" exec "$1" -- iperf3 -s -1 -D >/dev/null
  sleep 0.3
  "$seam" lab --name "$lab" exec "$2" -- iperf3 -c "$3" -t "$seconds" -J |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])'
}
results=()
for round in $(seq "$rounds"); do
  node=$(measure k8s-worker2 k8s-worker3 "$node_ip")
  pod=$(measure tput-server tput-client "$pod_ip")
  results+=("$node" "$pod")
  python3 -c "import sys; n,p=map(float,sys.argv[1:]); print(f'round $round: node-to-node {n/1e9:.2f} Gbit/s, pod-to-pod {p/1e9:.2f} Gbit/s')" "$node" "$pod"
done
python3 -c "
import sys
v=list(map(float,sys.argv[1:])); node=v[0::2]; pod=v[1::2]
n=sum(node)/len(node); p=sum(pod)/len(pod)
print(f'mean over {len(node)} rounds: node-to-node {n/1e9:.2f} Gbit/s, pod-to-pod {p/1e9:.2f} Gbit/s, ratio pod/node {p/n:.3f}')
" "${results[@]}"
