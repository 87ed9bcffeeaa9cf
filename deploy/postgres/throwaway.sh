#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback, for tests, CI and trials.
#
#   throwaway.sh start DIR PORT   create (first time) and start a cluster in DIR on 127.0.0.1:PORT;
#                                 prints postgres://USER@127.0.0.1:PORT/DB as its only stdout line
#   throwaway.sh stop DIR         stop it (nothing to do if it is not running); DIR is kept
#
# The cluster trusts local connections (its Unix socket, which lives in DIR, and 127.0.0.1),
# listens on 127.0.0.1 only, and keeps fsync on, so durability tests mean what they say.
# Environment: THROWAWAY_USER (role, default suyuan), THROWAWAY_DB (database, default suyuan),
# PG_BINDIR (the server binaries; default the newest /usr/lib/postgresql/*/bin, else PATH),
# THROWAWAY_OS_USER (the unprivileged account the server runs as when this runs as root;
# default postgres, created as a system account if missing).
# PostgreSQL refuses to run as root, so as root the cluster belongs to that account; DIR's
# parent directories must then be searchable by it (a directory made by `mktemp -d` is).
set -euo pipefail

role=${THROWAWAY_USER:-suyuan}
db=${THROWAWAY_DB:-suyuan}
os_user=${THROWAWAY_OS_USER:-postgres}

die() { echo "throwaway.sh: $*" >&2; exit 1; }
usage() { die "usage: throwaway.sh start DIR PORT | stop DIR"; }

bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  command -v initdb >/dev/null || die "no PostgreSQL server binaries (install postgresql, or set PG_BINDIR)"
  dirname "$(command -v initdb)"
}

# Runs a server binary as the account that owns the cluster.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$os_user" -- "$@"
  else
    "$@"
  fi
}

ensure_os_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  id "$os_user" >/dev/null 2>&1 && return 0
  useradd --system --no-create-home --home-dir / --shell /usr/sbin/nologin "$os_user" >&2 \
    || die "cannot create the account $os_user"
}

# Role and database names are passed to SQL as identifiers; keep them to a safe alphabet.
[[ $role =~ ^[a-z_][a-z0-9_]*$ ]] || die "THROWAWAY_USER must match [a-z_][a-z0-9_]*"
[[ $db =~ ^[a-z_][a-z0-9_]*$ ]] || die "THROWAWAY_DB must match [a-z_][a-z0-9_]*"

cmd=${1:-}
case "$cmd" in
  start)
    [ $# -eq 3 ] || usage
    port=$3
    [[ $port =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "bad port: $port"
    mkdir -p "$2"
    dir=$(cd "$2" && pwd)
    bin=$(bindir)
    ensure_os_user
    data=$dir/data
    if [ "$(id -u)" -eq 0 ]; then
      chown "$os_user" "$dir"
      chmod 700 "$dir"
      runuser -u "$os_user" -- test -w "$dir" \
        || die "$os_user cannot write $dir: its parent directories must be searchable by $os_user"
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
      [ -z "$(ls -A "$dir")" ] || die "$dir is neither empty nor a throwaway cluster"
      # The superuser is named postgres whatever account runs the server, so the steps below
      # need not know which account that is.
      as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >&2 \
        || as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C >&2
      # Replace initdb's access rules: trust the socket and 127.0.0.1, nothing else (no ::1,
      # no other address).
      as_owner sh -c "cat > '$data/pg_hba.conf'" <<'EOF'
# written by throwaway.sh: trust on the Unix socket and 127.0.0.1 only
local all all              trust
host  all all 127.0.0.1/32 trust
EOF
    fi
    # Settings that must hold on every start, even of a cluster made by an older script.
    as_owner sh -c "cat > '$data/postgresql.auto.conf'" <<EOF
# written by throwaway.sh on every start
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
full_page_writes = on
EOF
    if as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
      echo "throwaway.sh: already running in $dir" >&2
    else
      as_owner "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 start >&2 \
        || { tail -20 "$dir/postgres.log" >&2; die "the server did not start (log: $dir/postgres.log)"; }
    fi
    psql_su() { as_owner "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres "$@"; }
    if [ "$(psql_su -tAc "select 1 from pg_roles where rolname = '$role'")" != 1 ]; then
      psql_su -c "create role $role login" >&2
    fi
    if [ "$(psql_su -tAc "select 1 from pg_database where datname = '$db'")" != 1 ]; then
      psql_su -c "create database $db owner $role" >&2
    fi
    echo "postgres://$role@127.0.0.1:$port/$db"
    ;;
  stop)
    [ $# -eq 2 ] || usage
    [ -d "$2" ] || exit 0
    dir=$(cd "$2" && pwd)
    data=$dir/data
    [ -f "$data/PG_VERSION" ] || exit 0
    bin=$(bindir)
    if as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
      as_owner "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >&2
    fi
    ;;
  *) usage ;;
esac
