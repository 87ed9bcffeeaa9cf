#!/usr/bin/env bash
# The derivation check's cost on the demo report's full trace (BENCHMARKS.md): the same trace
# API request with the checks (the default) and without (`checks=false`), asked in turns of one
# request each against one demo node, so a noisy neighbour slows both alike; once without the
# transparency-log proofs (the trace and its checks alone) and once with them (the default
# answer). Prints each variant's median and 90th percentile over N requests and the ratios.
#
#   bash tests/bench/checks.sh [N] [OUT_DIR]   (default 200, /tmp/suyuan-checks-bench)
#
# Loopback only; about a minute with a release build. Not part of the test run.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-200}
out=${2:-/tmp/suyuan-checks-bench}
# SUYUAN_BIN: a release binary built already (else this builds one).
if [ -z "${SUYUAN_BIN:-}" ]; then cargo build --release -q; fi
bin=${SUYUAN_BIN:-$PWD/target/release/suyuan}
rm -rf "$out" && mkdir -p "$out"
export SUYUAN_ADMIN_SECRET=benchpw
"$bin" serve --demo --data-dir "$out/data" --handle-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
  --ops-addr 127.0.0.1:0 > "$out/serve.out" 2> "$out/serve.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  grep -q '^listening' "$out/serve.out" 2>/dev/null && break
  sleep 0.1
done
http=$(sed -n 's/.*http=\([0-9.:]*\).*/\1/p' "$out/serve.out" | head -1)
[ -n "$http" ] || { echo "the node did not start: $(cat "$out/serve.err")" >&2; exit 1; }
url="http://$http/api/trace/88.888.1/report-2025"
# The first answers warm the node's caches; every checkpoint is signed before timing starts.
for q in "?proofs=false" "?proofs=false&checks=false" "" "?checks=false"; do
  curl -sf -o /dev/null "$url$q"
done
sleep 1.5
for i in $(seq "$n"); do
  for v in plain:"?proofs=false&checks=false" checked:"?proofs=false" \
           proofs:"?checks=false" both:""; do
    name=${v%%:*}
    curl -sf -o /dev/null -w '%{time_total}\n' "$url${v#*:}" >> "$out/$name"
  done
done
python3 - "$out" <<'EOF'
import statistics, sys
out = sys.argv[1]
def load(name):
    xs = sorted(float(l) * 1000 for l in open(f"{out}/{name}"))
    return statistics.median(xs), xs[int(len(xs) * 0.9)]
p, c, pr, b = (load(n) for n in ("plain", "checked", "proofs", "both"))
print(f"trace without proofs, checks off: p50 {p[0]:.2f} ms  p90 {p[1]:.2f} ms")
print(f"trace without proofs, checks on:  p50 {c[0]:.2f} ms  p90 {c[1]:.2f} ms   on/off p50 = {c[0]/p[0]:.3f}")
print(f"trace with proofs, checks off:    p50 {pr[0]:.2f} ms  p90 {pr[1]:.2f} ms")
print(f"trace with proofs, checks on:     p50 {b[0]:.2f} ms  p90 {b[1]:.2f} ms   on/off p50 = {b[0]/pr[0]:.3f}")
EOF
