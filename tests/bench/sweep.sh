#!/usr/bin/env bash
# The benchmark sweep of BENCHMARKS.md: every mode against a Suyuan node, and the machine's
# ceiling (UDP echo, minimal HTTP), each swept to the highest rate at which 99.9% of requests
# are answered within 10 ms. The generator runs on core 0, the servers on core 1.
#
#   bash tests/bench/sweep.sh [RECORDS] [OUT_DIR]       (default 1000000, /tmp/suyuan-bench)
#
# Loopback only. Takes about 15 minutes; not part of the test run.
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${1:-1000000}
out=${2:-/tmp/suyuan-bench}
secs=${SWEEP_SECONDS:-5}
cargo build --release -q
bin=$PWD/target/release/suyuan
rm -rf "$out" && mkdir -p "$out"
echo benchpw > "$out/secret"
SUYUAN_ADMIN_SECRET=benchpw "$bin" init --prefix 88.888.1 --data-dir "$out/node" 2>/dev/null
echo "== preload $records records"
/usr/bin/time -f "preload: %e s, max RSS %M KiB" "$bin" bench preload --data-dir "$out/node" \
  --prefix 88.888.1 --count "$records" 2>&1 | tail -2

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
taskset -c 1 "$bin" serve --data-dir "$out/node" --handle-addr 127.0.0.1:2741 \
  --http-addr 127.0.0.1:8741 --ops-addr 127.0.0.1:9741 >"$out/serve.out" 2>"$out/serve.err" &
pids+=($!)
taskset -c 1 "$bin" bench echo-udp --addr 127.0.0.1:2799 >/dev/null & pids+=($!)
taskset -c 1 "$bin" bench echo-http --addr 127.0.0.1:8799 >/dev/null & pids+=($!)
sleep 2
node_pid=${pids[0]}

sweep() { # name, from, args...
  local name=$1 from=$2; shift 2
  echo "== $name"
  taskset -c 0 "$bin" bench sweep --keys "$records" --from "$from" --seconds "$secs" "$@" \
    | tee "$out/$name.txt" | tail -1
}
sweep udp-ceiling 10000 --mode udp --server 127.0.0.1:2799
sweep udp 5000 --mode udp --server 127.0.0.1:2741
sweep tcp 5000 --mode tcp --server 127.0.0.1:2741
sweep tcp-connect 1000 --mode tcp-connect --server 127.0.0.1:2741
sweep http-ceiling 5000 --mode rest --server 127.0.0.1:8799
sweep rest 2000 --mode rest --server 127.0.0.1:8741
sweep trace-up 200 --mode trace-up --server 127.0.0.1:8741
sweep trace-down 500 --mode trace-down --server 127.0.0.1:8741
sweep create-batched 2000 --mode create --server 127.0.0.1:2741 --secret-file "$out/secret" \
  --connections 16 --depth 64
sweep create-single 100 --mode create --server 127.0.0.1:2741 --secret-file "$out/secret" \
  --connections 1 --depth 1
echo "== node resident memory: $(awk '/VmRSS/ {print $2, $3}' /proc/$node_pid/status)"
echo "== store on disk: $(du -sh "$out/node/store" | cut -f1)"
