#!/usr/bin/env bash
# The federation figures of BENCHMARKS.md: a UDP resolution of a handle on the secondary that
# holds it (the baseline), the same handles through a node that walks the hierarchy for them
# (its resolver face) once its cache holds them, the first, uncached, walk (how many upstream
# requests each answer cost), and uncached walks alone: handles that do not exist, which the
# walker never caches, so every one is walked (one round trip to the secondary), against the
# same misses asked of the secondary itself. Same generator as the sweep (`suyuan bench run`,
# open loop, Zipf keys, no misses). The generator runs on core 0, the nodes on core 1.
#
#   bash tests/bench/federation.sh [RECORDS] [RATE] [OUT_DIR]   (default 10000, 4000, /tmp/suyuan-fed-bench)
#
# Loopback only. Takes about a minute; not part of the test run.
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${1:-10000}
rate=${2:-4000}
out=${3:-/tmp/suyuan-fed-bench}
secs=${BENCH_SECONDS:-10}
# SUYUAN_BIN: a release binary built already (else this builds one).
if [ -z "${SUYUAN_BIN:-}" ]; then cargo build --release -q; fi
bin=${SUYUAN_BIN:-$PWD/target/release/suyuan}
rm -rf "$out" && mkdir -p "$out"
echo benchpw > "$out/secret"
export SUYUAN_ADMIN_SECRET=benchpw
"$bin" init --role top --data-dir "$out/top" --handle-port 2750 >/dev/null
"$bin" init --prefix 88.888 --data-dir "$out/sec" --handle-port 2751 >/dev/null
"$bin" bench preload --data-dir "$out/sec" --prefix 88.888 --count "$records" >/dev/null
"$bin" init --prefix 99.9 --data-dir "$out/rec" --handle-port 2752 >/dev/null

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
serve() { # name port args...
  local name=$1 port=$2; shift 2
  taskset -c 1 "$bin" serve --data-dir "$out/$name" --handle-addr "127.0.0.1:$port" \
    --http-addr "127.0.0.1:$((port + 6000))" --ops-addr "127.0.0.1:$((port + 7000))" "$@" \
    >"$out/$name.out" 2>"$out/$name.err" &
  pids+=($!)
  for _ in $(seq 1 100); do grep -q '^listening' "$out/$name.out" 2>/dev/null && return; sleep 0.1; done
  echo "$name did not start" >&2; exit 1
}
serve top 2750
serve sec 2751
serve rec 2752 --upstream 127.0.0.1:2750 --resolver-addr 127.0.0.1:2753
"$bin" delegate 88.888 --top 127.0.0.1:2750 --auth 301:0.NA/0.NA --secret-file "$out/secret" \
  --site "$out/sec/siteinfo.json" >/dev/null

run() { # name server rate [miss share]
  echo "== $1"
  taskset -c 0 "$bin" bench run --mode udp --server "$2" --prefix 88.888 --keys "$records" \
    --miss "${4:-0}" --rate "$3" --seconds "$secs" | tee "$out/$1.txt" | tail -1
}
upstream() { curl -s "http://127.0.0.1:9752/metrics" | awk -v k="$1" 'index($0, k) == 1 {print $2}'; }
# Uncached: a slow run, so that every key drawn for the first time is walked (one round trip
# to the secondary once 0.NA/88.888 is cached).
run uncached-first-pass 127.0.0.1:2753 500
misses=$(upstream 'suyuan_upstream_cache_lookups_total{result="miss"}')
requests=$(upstream 'suyuan_upstream_requests_total{outcome="answered"}')
echo "uncached walks: $misses cache misses, $requests upstream requests"
# Fill the cache (uniform keys, five draws a key: all but about 0.7% of them), then measure
# both at the same rate.
"$bin" bench run --mode udp --server 127.0.0.1:2753 --prefix 88.888 --keys "$records" --miss 0 \
  --zipf 0 --rate 5000 --seconds $((records * 5 / 5000)) >/dev/null
run local 127.0.0.1:2751 "$rate"
run cached-foreign 127.0.0.1:2753 "$rate"
# Uncached walks alone: every request a handle that does not exist ("handle not found" is never
# cached), so each answer at the resolver face costs one upstream request to the secondary
# (the prefix's sites are cached by now), against the same misses asked of the secondary.
urate=${UNCACHED_RATE:-2000}
before=$(upstream 'suyuan_upstream_requests_total{outcome="answered"}')
run local-miss 127.0.0.1:2751 "$urate" 1
run uncached-foreign 127.0.0.1:2753 "$urate" 1
after=$(upstream 'suyuan_upstream_requests_total{outcome="answered"}')
echo "uncached walks alone: $((after - before)) upstream requests for the uncached-foreign run"
