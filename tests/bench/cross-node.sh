#!/usr/bin/env bash
# The cross-node trace figures of BENCHMARKS.md: the trace of a monthly electricity figure
# (`88.888.1/fig-elec-2025-03`) on a plant alone, where the grid factor is a record of its own
# (the baseline: a local trace of the same shape), against the same trace on a plant in the
# federation of deploy/grid/federation.sh, where the factor and its notice come from the grid
# node over QUIC (with mutual TLS, the connection kept), and from a plant without QUIC, over the
# grid's HTTPS trace API. Each is asked REQUESTS times with curl, in turns of 50 so that the
# machine's drift falls on all three alike; every answer is checked (the electricity check
# green where the grid's log is trusted).
#
#   bash tests/bench/cross-node.sh [REQUESTS] [OUT_DIR]   (default 1000, /tmp/suyuan-cross-bench)
#
# Loopback only; uses the ports of deploy/grid/federation.sh and 2741/8741/9741, 2742/8742/9742.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-1000}
out=${2:-/tmp/suyuan-cross-bench}
if [ -z "${SUYUAN_BIN:-}" ]; then cargo build --release -q -p suyuan; fi
bin=${SUYUAN_BIN:-$PWD/target/release/suyuan}
rm -rf "$out" && mkdir -p "$out"
export SUYUAN="$bin"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  bash deploy/grid/federation.sh stop "$out/fed" || true
}
trap cleanup EXIT
bash deploy/grid/federation.sh start "$out/fed"
"$bin" serve --demo --data-dir "$out/alone" --handle-addr 127.0.0.1:2741 \
  --http-addr 127.0.0.1:8741 --ops-addr 127.0.0.1:9741 >"$out/alone.log" 2>&1 &
pids+=($!)
"$bin" serve --demo --data-dir "$out/https" --handle-addr 127.0.0.1:2742 \
  --http-addr 127.0.0.1:8742 --ops-addr 127.0.0.1:9742 \
  --upstream 127.0.0.1:2720 >"$out/https.log" 2>&1 &
pids+=($!)
for p in 9741 9742; do
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done
done
path=/api/trace/88.888.1/fig-elec-2025-03
# One answer of each, checked: the same records but for the grid's notice; green where trusted.
curl -s "http://127.0.0.1:8741$path" | grep -q '"status":"green"'
curl -s "http://127.0.0.1:8721$path" | grep -q '88.888.2/notice-2023'
curl -s "http://127.0.0.1:8721$path" | grep -q '"status":"green"'
curl -s "http://127.0.0.1:8742$path" | grep -q '88.888.2/notice-2023'
: >"$out/local.txt"; : >"$out/quic.txt"; : >"$out/https.txt"
for _ in $(seq 1 $((n / 50))); do
  for run in local:8741 quic:8721 https:8742; do
    for _ in $(seq 1 50); do
      curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:${run#*:}$path" >>"$out/${run%%:*}.txt"
    done
  done
done
pcts() { sort -n "$out/$1.txt" | awk '{a[NR]=$1} END {printf "%.3f %.3f\n", a[int(NR*0.5)]*1000, a[int(NR*0.99)]*1000}'; }
read -r lp50 lp99 < <(pcts local)
echo "requests each: $n"
for r in local quic https; do
  read -r p50 p99 < <(pcts $r)
  awk -v r=$r -v a="$p50" -v b="$p99" -v la="$lp50" -v lb="$lp99" \
    'BEGIN { printf "%-6s p50 %7.3f ms  p99 %7.3f ms  p50/local %5.2f  p99/local %5.2f\n", r, a, b, a/la, b/lb }'
done
