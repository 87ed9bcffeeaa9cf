#!/bin/sh
# Container entrypoint: initialise an empty data volume once, then serve.
#
# First start (no store in the data dir yet) needs an administrator for $SUYUAN_PREFIX:
#   SUYUAN_ADMIN_PUBKEY=FILE       a public key (the reference's admpub.bin, or PEM), e.g. one
#                                  `suyuan keygen` wrote, mounted read-only into the container;
#   SUYUAN_ADMIN_SECRET=S          a secret key (visible to `docker inspect`: prefer the next);
#   SUYUAN_ADMIN_SECRET_FILE=FILE  a file holding the secret (e.g. a mounted container secret;
#                                  trailing newlines are dropped).
# A public key, a secret, or both. Later starts ignore them and serve what is in the store.
#
# Optional: SUYUAN_DATA_DIR [/var/lib/suyuan], SUYUAN_PUBLIC_ADDRESS (published in
# siteinfo.json), SUYUAN_CONFIG (a TOML file for `serve --config`), SUYUAN_HANDLE_ADDR
# [0.0.0.0:2641], SUYUAN_HTTP_ADDR [0.0.0.0:8000], SUYUAN_OPS_ADDR [0.0.0.0:9641] (these are
# flags, so they win over addresses in the config file). Extra arguments go to `suyuan serve`.
set -eu
dir=${SUYUAN_DATA_DIR:-/var/lib/suyuan}

if [ ! -e "$dir/store" ]; then
  if [ -n "${SUYUAN_ADMIN_SECRET_FILE:-}" ]; then
    [ -r "$SUYUAN_ADMIN_SECRET_FILE" ] || {
      echo "entrypoint: cannot read SUYUAN_ADMIN_SECRET_FILE=$SUYUAN_ADMIN_SECRET_FILE" >&2
      exit 1
    }
    # The secret reaches init through its environment, never its argument list.
    SUYUAN_ADMIN_SECRET=$(cat "$SUYUAN_ADMIN_SECRET_FILE")
    export SUYUAN_ADMIN_SECRET
  fi
  if [ -n "${SUYUAN_ADMIN_PUBKEY:-}" ] && [ ! -r "$SUYUAN_ADMIN_PUBKEY" ]; then
    echo "entrypoint: cannot read SUYUAN_ADMIN_PUBKEY=$SUYUAN_ADMIN_PUBKEY" >&2
    exit 1
  fi
  if [ -z "${SUYUAN_ADMIN_SECRET:-}" ] && [ -z "${SUYUAN_ADMIN_PUBKEY:-}" ]; then
    echo "entrypoint: $dir holds no store yet: to initialise it for ${SUYUAN_PREFIX:-\$SUYUAN_PREFIX}," \
      "set SUYUAN_ADMIN_PUBKEY (a mounted public key file), SUYUAN_ADMIN_SECRET_FILE or SUYUAN_ADMIN_SECRET" >&2
    exit 1
  fi
  : "${SUYUAN_PREFIX:?set SUYUAN_PREFIX to the prefix this node serves}"
  suyuan init --prefix "$SUYUAN_PREFIX" --data-dir "$dir" \
    ${SUYUAN_ADMIN_PUBKEY:+--admin-pubkey "$SUYUAN_ADMIN_PUBKEY"} \
    ${SUYUAN_PUBLIC_ADDRESS:+--public-address "$SUYUAN_PUBLIC_ADDRESS"}
fi
# Nothing else needs the secret: keep it out of the server's environment.
unset SUYUAN_ADMIN_SECRET SUYUAN_ADMIN_SECRET_FILE

exec suyuan serve --data-dir "$dir" \
  --handle-addr "${SUYUAN_HANDLE_ADDR:-0.0.0.0:2641}" \
  --http-addr "${SUYUAN_HTTP_ADDR:-0.0.0.0:8000}" \
  --ops-addr "${SUYUAN_OPS_ADDR:-0.0.0.0:9641}" \
  ${SUYUAN_CONFIG:+--config "$SUYUAN_CONFIG"} "$@"
