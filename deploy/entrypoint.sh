#!/bin/sh
# Container entrypoint: initialise an empty data volume once, then serve on all interfaces.
set -eu
dir=/var/lib/suyuan
if [ ! -e "$dir/store" ]; then
  : "${SUYUAN_ADMIN_SECRET:?set SUYUAN_ADMIN_SECRET to initialise the node}"
  suyuan init --prefix "$SUYUAN_PREFIX" --data-dir "$dir" ${SUYUAN_PUBLIC_ADDRESS:+--public-address "$SUYUAN_PUBLIC_ADDRESS"}
fi
exec suyuan serve --data-dir "$dir" --handle-addr 0.0.0.0:2641 --http-addr 0.0.0.0:8000 \
  --ops-addr 0.0.0.0:9641 ${SUYUAN_CONFIG:+--config "$SUYUAN_CONFIG"} "$@"
