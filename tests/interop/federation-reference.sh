#!/usr/bin/env bash
# Federation against the reference Handle.Net 9.3.1 tools and server, inside a network
# namespace that has only loopback, so that a reference tool that falls back to the public
# roots cannot reach them. Opt-in (it needs the reference lab, which CI does not build):
#   tests/interop/federation-reference.sh LAB_DIR [SUYUAN_BIN]
# LAB_DIR is what the reference lab's setup.sh built. Exits non-zero at the first check that
# fails, printing what was seen.
set -euo pipefail
if [ -z "${SUYUAN_IN_NETNS:-}" ]; then
  exec unshare -n env SUYUAN_IN_NETNS=1 bash "$0" "$@"
fi
ip link set lo up
LAB=$(cd "$1" && pwd)
S=$(realpath "${2:-target/debug/suyuan}")
W=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
cd "$W"
step() { echo "== $*"; }
expect() { # expect WHAT TEXT: TEXT must contain WHAT
  if ! grep -qF -- "$1" <<<"$2"; then echo "FAILED: expected '$1' in:"; echo "$2"; exit 1; fi
  echo "   ok: $1"
}
serve() { # serve NAME ARGS...: start a node, wait for its ready line
  local name=$1; shift
  "$S" serve --data-dir "$name" --ops-addr 127.0.0.1:0 "$@" >"$name.out" 2>"$name.err" &
  pids+=($!)
  for _ in $(seq 1 200); do grep -q '^listening' "$name.out" 2>/dev/null && return; sleep 0.1; done
  echo "FAILED: $name did not start"; cat "$name.err"; exit 1
}

step "a Suyuan top, a secondary for 88.888 (derived prefixes referred to it), one for 99.9"
"$S" init --role top --data-dir top --admin-secret topsecret >/dev/null
echo topsecret >top-secret
serve top --handle-addr 127.0.0.1:2700 --http-addr 127.0.0.1:8700
serve sec --demo --handle-addr 127.0.0.1:2701 --http-addr 127.0.0.1:8701
"$S" init --prefix 99.9 --data-dir plant --admin-secret plantsecret >/dev/null
echo '{"handle": "99.9/plant-1", "values": [{"index": 1, "type": "URL", "data": "https://example.org/plant-1"}]}' >plant.jsonl
"$S" import plant.jsonl --offline --data-dir plant >/dev/null
serve plant --handle-addr 127.0.0.1:2702 --http-addr 127.0.0.1:8702 \
  --upstream 127.0.0.1:2700 --recursion
delegate() { "$S" delegate "$1" --top 127.0.0.1:2700 --auth 301:0.NA/0.NA --secret-file top-secret --site "$2" "${@:3}"; }
delegate 88.888 sec/siteinfo.json --prefix-service
delegate 99.9 plant/siteinfo.json

step "hdl-qresolver with only the top's bootstrap_handles as its configuration"
mkdir boot && cp top/bootstrap_handles boot/
. "$LAB/env.sh" 2>/dev/null
export JAVA_TOOL_OPTIONS="-Dnet.handle.configDir=$W/boot"
out=$("$HDL/bin/hdl-qresolver" 99.9/plant-1 2>&1 || true)
expect "https://example.org/plant-1" "$out"
out=$("$HDL/bin/hdl-qresolver" 88.888.1/report-2025 2>&1 || true)
expect "3060419.713" "$out"
step "hdl-trace shows the path"
out=$(timeout 60 "$HDL/bin/hdl-trace" 88.888.1/report-2025 2>&1 || true)
echo "$out" | sed 's/^/   | /' | head -40
expect "2701" "$out"

step "the reference server, delegated at the Suyuan top with its own siteinfo.json"
cp -r "$LAB/svr_1" ref && rm -f ref/server.pid ref/*.lock
delegate 12345 ref/siteinfo.json
# Its own resolver walks from the Suyuan top; it recurses for clients that ask.
sed -i 's/^  "server_config" = {/  "server_config" = {\n    "allow_recursion" = "yes"/' ref/config.dct
java -Xmx512m -cp "$HCP" net.handle.server.Main "$W/ref" >ref.log 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do (exec 3<>/dev/tcp/127.0.0.1/12641) 2>/dev/null && break; sleep 0.5; done
step "a Suyuan secondary with --recursion answers 12345/test1 from the reference server"
out=$("$S" resolve 12345/test1 --server 127.0.0.1:2702 --recursive 2>&1 || true)
expect "https://example.org/test1" "$out"
step "hdl-qresolver walks from the Suyuan top to the reference server"
out=$("$HDL/bin/hdl-qresolver" 12345/test1 2>&1 || true)
expect "https://example.org/test1" "$out"
step "the reference server with allow_recursion answers a Suyuan handle"
# hdl-qresolver sends REC; its config dir sends every prefix to the reference server.
export JAVA_TOOL_OPTIONS="-Dnet.handle.configDir=$LAB/hdlclient"
out=$("$HDL/bin/hdl-qresolver" 88.888.1/report-2025 2>&1 || true)
expect "3060419.713" "$out"
out=$("$S" resolve 88.888.1/report-2025 --server 127.0.0.1:12641 --recursive --type mrv.value 2>&1 || true)
echo "$out" | sed 's/^/   suyuan resolve | /' 
echo "all federation checks against the reference passed"
