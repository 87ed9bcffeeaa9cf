#!/usr/bin/env bash
# Suyuan and a Handle.Net reference server (9.x) on one PostgreSQL database, checked end to end.
# Opt-in: nothing in the build or the tests calls it.
#
#   tests/interop/reference-shared-db.sh HDL_DIST SERVER_DIR
#
# HDL_DIST    a built Handle.Net dist (lib/handle-9.x.jar, bin/hdl-qresolver)
# SERVER_DIR  a reference server directory made by its hdl-setup-server for prefix 12345, with
#             server_admins 300:12345/ADMIN and 301:12345/ADMIN and the administrator's key pair
#             beside it as admpub.bin / admpriv.bin (unencrypted); it is copied, never changed
# Environment:
#   SUYUAN        the suyuan binary (default target/debug/suyuan, built if missing)
#   PORT_BASE     six ports from here on 127.0.0.1 are used (default 24100): PostgreSQL, Suyuan
#                 handle/HTTP(S)/ops, reference handle/HTTP(S)
#   ADMIN_SECRET  the HS_SECKEY of 301:12345/ADMIN (default secretpw)
#   PG_JDBC_JAR   the PostgreSQL JDBC driver (default Debian's /usr/share/java/postgresql.jar)
#   KEEP=1        keep the scratch directories (printed) instead of removing them
#
# It starts a throwaway PostgreSQL, `suyuan init --store` with the administrator (HS_PUBKEY 300
# from admpub.bin, HS_SECKEY 301), `suyuan serve`, and the reference server on the same database
# (it authenticates against the 12345/ADMIN Suyuan wrote), then checks:
#   (a) a handle Suyuan's REST API creates resolves at the reference server (hdl-qresolver),
#       each value's wire encoding identical to what Suyuan answers;
#   (b) one GenericBatch creates at the reference server resolves through Suyuan at once (the
#       Handle wire and REST), byte for byte the same;
#   (c) a provenance link the reference writes reaches Suyuan's link index (a trace down from
#       its target) and change log within the deadline;
#   (d) a delete at the reference makes Suyuan answer 100 and leaves a tombstone;
#   (e) GenericBatch authenticates with the secret key (301) and the public key (300) of the
#       administrator record Suyuan wrote (every batch above uses one of them).
# Each check prints "PASS ..." or "FAIL ..."; the exit status is the number of failures (0: all
# passed). Everything it started is stopped on exit.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
die() { echo "reference-shared-db.sh: $*" >&2; exit 2; }

[ $# -eq 2 ] || die "usage: reference-shared-db.sh HDL_DIST SERVER_DIR"
HDL=$(cd "$1" && pwd) || die "no dist at $1"
src=$(cd "$2" && pwd) || die "no server directory at $2"
export HDL
[ -x "$HDL/bin/hdl-qresolver" ] || die "$HDL/bin/hdl-qresolver is missing"
for f in config.dct siteinfo.json admpub.bin admpriv.bin; do
  [ -f "$src/$f" ] || die "$src/$f is missing"
done
secret=${ADMIN_SECRET:-secretpw}
base=${PORT_BASE:-24100}
pg_port=$base s_handle=$((base + 1)) s_http=$((base + 2)) s_ops=$((base + 3))
r_handle=$((base + 4)) r_http=$((base + 5))
suyuan=${SUYUAN:-$repo/target/debug/suyuan}
if [ ! -x "$suyuan" ]; then
  (cd "$repo" && cargo build -q -p suyuan) || die "cannot build suyuan"
fi
hcp=$(ls "$HDL"/lib/*.jar "$HDL"/lib/*/*.jar 2>/dev/null | tr '\n' ':')

work=$(mktemp -d)
pgdir=$(mktemp -d) # its own directory: throwaway.sh hands it to the account PostgreSQL runs as
suyuan_pid=
cleanup() {
  [ -n "$suyuan_pid" ] && kill "$suyuan_pid" 2>/dev/null && wait "$suyuan_pid" 2>/dev/null
  "$repo/deploy/postgres/reference-on-sql.sh" --stop "$work/svr" 2>/dev/null
  "$repo/deploy/postgres/throwaway.sh" stop "$pgdir" 2>/dev/null
  if [ "${KEEP:-}" = 1 ]; then
    echo "kept $work and $pgdir" >&2
  else
    rm -rf "$work" "$pgdir"
  fi
}
trap cleanup EXIT

failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
# Polls `cmd` until it succeeds or `secs` have passed (a deadline, not a pause).
within() {
  local secs=$1 end
  shift
  end=$(($(date +%s%N) + secs * 1000000000))
  until "$@"; do
    [ "$(date +%s%N)" -lt "$end" ] || return 1
    sleep 0.05
  done
}

url=$("$repo/deploy/postgres/throwaway.sh" start "$pgdir" "$pg_port") || die "PostgreSQL did not start"
q() { psql -X -q -tA -v ON_ERROR_STOP=1 "$url" -c "$1"; }

"$suyuan" init --data-dir "$work/data" --prefix 12345 --store "$url" --admin-secret "$secret" \
  --admin-pubkey "$src/admpub.bin" >&2 || die "suyuan init failed"
"$suyuan" serve --data-dir "$work/data" --handle-addr "127.0.0.1:$s_handle" \
  --http-addr "127.0.0.1:$s_http" --ops-addr "127.0.0.1:$s_ops" >"$work/suyuan.out" 2>"$work/suyuan.log" &
suyuan_pid=$!
within 30 grep -q '^listening ' "$work/suyuan.out" || die "suyuan serve did not start (log: $work/suyuan.log)"

cp -a "$src" "$work/svr"
rm -rf "$work/svr/bdbje" "$work/svr/server.pid" "$work/svr/server.log"
HANDLE_PORT=$r_handle HTTP_PORT=$r_http "$repo/deploy/postgres/reference-on-sql.sh" "$work/svr" "$url" \
  || die "the reference server did not start"

# Client configuration directories: one names the reference server, one Suyuan.
ref_cfg=$work/svr/client-config
suy_cfg=$work/client-suyuan
mkdir -p "$suy_cfg"
cp "$work/data/siteinfo.json" "$suy_cfg/resolver_site"
cp "$ref_cfg/local_nas" "$ref_cfg/config.dct" "$suy_cfg/"
java_at() { local cfg=$1; shift; JAVA_TOOL_OPTIONS="-Dnet.handle.configDir=$cfg" java -cp "$hcp" "$@" 2>/dev/null; }
wire() { java_at "$1" "$here/WireDump.java" "$2"; }
batch() { # batch NAME: runs $work/NAME.txt at the reference server, true when every entry succeeded
  java_at "$ref_cfg" net.handle.apps.batch.GenericBatch "$work/$1.txt" "$work/$1.log" >/dev/null
  grep -Eq 'Successes/Total Entries: ([0-9]+)/\1$' "$work/$1.log"
}
same_wire() { # same_wire HANDLE: both servers answer it, value by value in the same bytes
  wire "$ref_cfg" "$1" >"$work/ref.wire"
  wire "$suy_cfg" "$1" >"$work/suy.wire"
  [ -s "$work/ref.wire" ] && ! grep -q '^rc ' "$work/ref.wire" && cmp -s "$work/ref.wire" "$work/suy.wire"
}
rest_code() { curl -sk "https://127.0.0.1:$s_http/api/handles/$1" | sed -n 's/.*"responseCode":\([0-9]*\).*/\1/p'; }

# (a) Suyuan's REST API writes, the reference server reads.
code=$(curl -sk -o /dev/null -w '%{http_code}' -u "301%3A12345%2FADMIN:$secret" -X PUT \
  "https://127.0.0.1:$s_http/api/handles/12345/shared-a1" -H 'Content-Type: application/json' \
  -d '{"values":[{"index":1,"type":"URL","data":{"format":"string","value":"https://example.org/shared-a1"}},{"index":2,"type":"EMAIL","data":{"format":"string","value":"a1@example.org"},"ttl":3600},{"index":100,"type":"HS_ADMIN","data":{"format":"admin","value":{"handle":"12345/ADMIN","index":300,"permissions":"011111110011"}}}]}')
JAVA_TOOL_OPTIONS="-Dnet.handle.configDir=$ref_cfg" "$HDL/bin/hdl-qresolver" 12345/shared-a1 >"$work/a.txt" 2>&1 </dev/null
if [ "$code" = 201 ] && grep -q 'index=1 type=URL .*"https://example.org/shared-a1"' "$work/a.txt" \
  && same_wire 12345/shared-a1; then
  pass "(a) created through Suyuan's REST API (201); hdl-qresolver at the reference answers it; wire encodings identical"
else
  fail "(a) REST PUT answered $code; hdl-qresolver: $(grep -m1 -E 'index=1|Error' "$work/a.txt"); reference: $(cat "$work/ref.wire"); Suyuan: $(cat "$work/suy.wire")"
fi

# (b), and (e) with the secret key: GenericBatch writes at the reference, Suyuan reads at once.
cat >"$work/b.txt" <<EOT
AUTHENTICATE SECKEY:301:12345/ADMIN
$secret

CREATE 12345/shared-b1
100 HS_ADMIN 86400 1110 ADMIN 300:111111111111:12345/ADMIN
1 URL 86400 1110 UTF8 https://example.org/shared-b1
2 EMAIL 3600 1110 UTF8 b1@example.org

EOT
if batch b; then
  pass "(e) GenericBatch authenticated with HS_SECKEY 301:12345/ADMIN from the record Suyuan wrote"
  wire_out=$("$suyuan" resolve --server "127.0.0.1:$s_handle" 12345/shared-b1 2>&1)
  rest=$(rest_code 12345/shared-b1)
  if grep -q 'URL .*https://example.org/shared-b1$' <<<"$wire_out" && [ "$rest" = 1 ] && same_wire 12345/shared-b1; then
    pass "(b) created by GenericBatch at the reference; Suyuan answers it at once (Handle wire and REST responseCode 1), wire encodings identical"
  else
    fail "(b) suyuan resolve: $wire_out; REST responseCode: $rest; reference: $(cat "$work/ref.wire"); Suyuan: $(cat "$work/suy.wire")"
  fi
else
  fail "(e)/(b) GenericBatch with the secret key: $(grep -E 'FAIL|Error|Successes' "$work/b.log" | head -3)"
fi

# (c), and (e) with the public key: a provenance link written at the reference.
cat >"$work/c.txt" <<EOT
AUTHENTICATE PUBKEY:300:12345/ADMIN
$work/svr/admpriv.bin|

CREATE 12345/shared-c1
100 HS_ADMIN 86400 1110 ADMIN 300:111111111111:12345/ADMIN
1 URL 86400 1110 UTF8 https://example.org/shared-c1
2001 prov.wasDerivedFrom 86400 1110 UTF8 12345/shared-a1

EOT
linked() {
  curl -sk "https://127.0.0.1:$s_http/api/trace/12345/shared-a1?direction=down" >"$work/trace.json"
  grep -Fiq '"from":"12345/shared-c1","to":"12345/shared-a1","rel":"prov.wasDerivedFrom"' "$work/trace.json"
}
# the reference stores the handle upper-cased, and Suyuan adopts it with the actor below
logged() { # logged HANDLE-KEY OP: a change of that op (1 create, 2 delete) by the adopting actor
  [ "$(q "select count(*) from changes where position(convert_to('0:SUYUAN/ADOPTED', 'UTF8') \
    || '\\x$(printf '%02x' "$2")'::bytea || int4send(length(convert_to('$1', 'UTF8'))) \
    || convert_to('$1', 'UTF8') in change) > 0")" -ge 1 ]
}
if batch c; then
  pass "(e) GenericBatch authenticated with HS_PUBKEY 300:12345/ADMIN from the record Suyuan wrote"
  if within 10 linked; then
    pass "(c) the reference's prov.wasDerivedFrom is in Suyuan's link index (trace down from 12345/shared-a1)"
  else
    fail "(c) no edge from 12345/shared-c1 in the trace within 10 s: $(cat "$work/trace.json")"
  fi
  if within 10 logged 12345/SHARED-C1 1; then
    pass "(c) Suyuan's change log holds the create, actor 0:SUYUAN/ADOPTED"
  else
    fail "(c) no create of 12345/SHARED-C1 by 0:SUYUAN/ADOPTED in changes within 10 s"
  fi
else
  fail "(e)/(c) GenericBatch with the public key: $(grep -E 'FAIL|Error|Successes' "$work/c.log" | head -3)"
fi

# (d) a delete at the reference.
printf 'AUTHENTICATE SECKEY:301:12345/ADMIN\n%s\n\nDELETE 12345/shared-c1\n\n' "$secret" >"$work/d.txt"
gone() {
  "$suyuan" resolve --server "127.0.0.1:$s_handle" 12345/shared-c1 >"$work/d.wire" 2>&1
  grep -q '(100)$' "$work/d.wire" && [ "$(rest_code 12345/shared-c1)" = 100 ]
}
tombstoned() { [ "$(q "select count(*) from tombstones where handle = convert_to('12345/SHARED-C1', 'UTF8')")" = 1 ]; }
if batch d; then
  if gone; then
    pass "(d) deleted at the reference; Suyuan answers 100 at once (Handle wire and REST)"
  elif within 10 gone; then
    fail "(d) Suyuan answered 12345/shared-c1 from its cache right after the reference deleted it, 100 only later"
  else
    fail "(d) Suyuan still answers 12345/shared-c1 after the reference deleted it: $(cat "$work/d.wire")"
  fi
  if within 10 tombstoned && within 10 logged 12345/SHARED-C1 2 && ! within 0 linked; then
    pass "(d) Suyuan keeps a tombstone, logs the delete and drops the link"
  else
    fail "(d) tombstones: $(q "select count(*) from tombstones where handle = convert_to('12345/SHARED-C1', 'UTF8')"); trace: $(cat "$work/trace.json")"
  fi
else
  fail "(d) GenericBatch delete: $(grep -E 'FAIL|Error|Successes' "$work/d.log" | head -3)"
fi

echo "$failures failed"
exit "$failures"
