#!/usr/bin/env bash
# Runs a Handle.Net reference server (9.x) on a PostgreSQL database, for trials of a reference
# server and Suyuan sharing one database. Opt-in: nothing in the build or the tests calls it.
#
#   reference-on-sql.sh SERVER_DIR postgres://USER[:PASSWORD]@HOST[:PORT]/DB
#       rewrites SERVER_DIR/config.dct for SQL storage on that database, then starts the server
#       in the background (pid in SERVER_DIR/server.pid, output in SERVER_DIR/server.log) and
#       waits until its Handle TCP port answers
#   reference-on-sql.sh --stop SERVER_DIR
#       stops a server started so (by its pid file only)
#
# SERVER_DIR is a server directory made by the dist's hdl-setup-server (config.dct,
# siteinfo.json, keys); the script edits it in place, so give it a copy you can spare.
# Environment:
#   HDL            the Handle.Net dist directory (holds lib/handle-9.x.jar); required
#   PG_JDBC_JAR    the PostgreSQL JDBC driver (default /usr/share/java/postgresql.jar, from
#                  Debian's libpostgresql-jdbc-java)
#   HANDLE_PORT, HTTP_PORT
#                  new ports for the copy (Handle TCP+UDP, HTTP+HTTPS); also written into
#                  siteinfo.json, and the DNS interfaces are dropped; default: keep the ports
#   CREATE_TABLES  1: create the nas and handles tables (handle-tables.sql beside this script)
#                  with psql first, if they are missing
# The server's own resolver gets a config directory of its own (SERVER_DIR/client-config: this
# server's site for every prefix, no root updates), so it never asks servers elsewhere.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "reference-on-sql.sh: $*" >&2; exit 1; }

# port of an interface section (hdl_tcp, hdl_http, ...) in a config.dct
cfg_port() { awk -v k="\"$2_config\"" '$1==k {f=1} f && $1=="\"bind_port\"" {gsub(/"/,"",$3); print $3; exit}' "$1/config.dct"; }

# Whether pid $1 is a reference server started from directory $2: a pid file copied with a
# server directory names the original's server, which must not be stopped or mistaken.
ours() {
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "net.handle.server.Main $2 "
}

if [ "${1:-}" = --stop ]; then
  [ $# -eq 2 ] || die "usage: reference-on-sql.sh --stop SERVER_DIR"
  sdir=$(cd "$2" && pwd) || die "no directory $2"
  pidf=$sdir/server.pid
  [ -f "$pidf" ] || exit 0
  pid=$(cat "$pidf")
  if ours "$pid" "$sdir"; then
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$pidf"
  exit 0
fi

[ $# -eq 2 ] || die "usage: reference-on-sql.sh SERVER_DIR postgres://USER[:PASSWORD]@HOST[:PORT]/DB | --stop SERVER_DIR"
dir=$(cd "$1" && pwd) || die "no directory $1"
url=$2
[ -f "$dir/config.dct" ] || die "$dir has no config.dct: not a reference server directory"
[ -n "${HDL:-}" ] && ls "$HDL"/lib/handle-*.jar >/dev/null 2>&1 || die "set HDL to the Handle.Net dist directory (with lib/handle-*.jar)"
jar=${PG_JDBC_JAR:-/usr/share/java/postgresql.jar}
[ -f "$jar" ] || die "no JDBC driver at $jar (install libpostgresql-jdbc-java, or set PG_JDBC_JAR)"
if [ -f "$dir/server.pid" ] && ours "$(cat "$dir/server.pid")" "$dir"; then
  die "a server already runs from $dir (pid $(cat "$dir/server.pid"))"
fi

# postgres://USER[:PASSWORD]@HOST[:PORT]/DB -> JDBC URL, login, password
re='^postgres(ql)?://([^:@/]+)(:([^@/]*))?@([^:/]+)(:([0-9]+))?/([^?/]+)$'
[[ $url =~ $re ]] || die "not a URL of the form postgres://USER[:PASSWORD]@HOST[:PORT]/DB: $url"
user=${BASH_REMATCH[2]} pass=${BASH_REMATCH[4]} host=${BASH_REMATCH[5]} port=${BASH_REMATCH[7]:-5432} db=${BASH_REMATCH[8]}
jdbc="jdbc:postgresql://$host:$port/$db"

if [ "${CREATE_TABLES:-}" = 1 ]; then
  PGPASSWORD=$pass psql -X -q -v ON_ERROR_STOP=1 "postgres://$user@$host:$port/$db" -f "$here/handle-tables.sql" >&2
fi

cp=$(ls "$HDL"/lib/*.jar "$HDL"/lib/*/*.jar 2>/dev/null | tr '\n' ':')
ports=()
if [ -n "${HANDLE_PORT:-}${HTTP_PORT:-}" ]; then
  [ -n "${HANDLE_PORT:-}" ] && [ -n "${HTTP_PORT:-}" ] || die "set both HANDLE_PORT and HTTP_PORT"
  ports=("$HANDLE_PORT" "$HTTP_PORT")
fi
java -cp "$cp" "$here/ReferenceSqlConfig.java" "$dir" "$jdbc" "$user" "$pass" "${ports[@]}" \
  || die "could not rewrite $dir/config.dct"

client=$dir/client-config
mkdir -p "$client"
cp "$dir/siteinfo.json" "$client/resolver_site"
echo '*' >"$client/local_nas"
printf '{\n  "auto_update_root_info" = "no"\n}\n' >"$client/config.dct"

tcp=$(cfg_port "$dir" hdl_tcp)
JAVA_TOOL_OPTIONS="-Dnet.handle.configDir=$client" \
  java -Xmx512m -cp "$cp$jar" net.handle.server.Main "$dir" >"$dir/server.log" 2>&1 &
pid=$!
echo "$pid" >"$dir/server.pid"
for _ in $(seq 1 120); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$tcp") 2>/dev/null; then
    echo "reference server on $jdbc: pid $pid, handle port $tcp" >&2
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || { rm -f "$dir/server.pid"; tail -20 "$dir/server.log" >&2; die "the server exited"; }
  sleep 0.5
done
die "the server is not listening on 127.0.0.1:$tcp after 60 s (log: $dir/server.log)"
