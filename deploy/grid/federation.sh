#!/usr/bin/env bash
# Three nodes on one machine, federated: a top-level node, the demo plant (88.888.1) and the
# grid company's node (88.888.2), each on 127.0.0.1, talking to each other over QUIC with
# mutual TLS. The plant's monthly electricity figures use the grid's emission factor, so a
# trace of the plant's annual report crosses to the grid node, and each node's records come
# with that node's log proof. The top witnesses both logs; the plant and the grid witness each
# other's. README.md ("Two nodes that work together") walks through it.
#
#   deploy/grid/federation.sh start DIR   makes DIR (certificates, data dirs, configs) and
#                                         starts the three nodes in the background
#   deploy/grid/federation.sh stop DIR    stops them
#
# Ports: top 2720/8720/9720 (QUIC 2730), plant 2721/8721/9721 (2731), grid 2722/8722/9722
# (2732). `suyuan` is taken from the PATH unless SUYUAN names it.
set -euo pipefail

cmd=${1:?usage: federation.sh start|stop DIR}
dir=${2:?usage: federation.sh start|stop DIR}
suyuan=${SUYUAN:-suyuan}

stop_all() {
    for n in plant grid top; do
        if [ -f "$dir/$n.pid" ]; then
            kill "$(cat "$dir/$n.pid")" 2>/dev/null || true
            rm -f "$dir/$n.pid"
        fi
    done
}

# Waits until the node answers /readyz on its operations port.
ready() {
    for _ in $(seq 1 300); do
        if curl -sf "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "federation.sh: the node on ops port $1 did not get ready (see $dir/*.log)" >&2
    return 1
}

# Waits until the node's checkpoint carries at least $2 signature lines (its own and the
# witnesses' cosignatures), so what is traced next is covered and cosigned.
cosigned() {
    for _ in $(seq 1 300); do
        n=$(curl -s "http://127.0.0.1:$1/log/checkpoint" | grep -c '^— ' || true)
        if [ "${n:-0}" -ge "$2" ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "federation.sh: the checkpoint on http port $1 has no cosignatures yet" >&2
    return 1
}

serve() { # name, demo (or -), config
    local extra=()
    [ "$2" != - ] && extra=(--demo "$2")
    "$suyuan" serve --config "$dir/$1.toml" "${extra[@]}" >"$dir/$1.log" 2>&1 &
    echo $! >"$dir/$1.pid"
}

case $cmd in
stop)
    stop_all
    ;;
start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    trap 'stop_all' ERR
    # What the setup commands say goes to setup.log.
    exec 3>>"$dir/setup.log"
    "$suyuan" keygen --ca --out "$dir/ca" 2>&3
    for n in top:0.NA/0.NA plant:0.NA/88.888.1 grid:0.NA/88.888.2; do
        "$suyuan" keygen --node-cert "${n#*:}" --ca-dir "$dir/ca" --out "$dir/${n%%:*}-cert" 2>&3
    done
    "$suyuan" init --role top --data-dir "$dir/top" --admin-secret topsecret \
        --handle-port 2720 --http-port 8720 2>&3
    "$suyuan" init --prefix 88.888.1 --data-dir "$dir/plant" --admin-secret plantsecret \
        --handle-port 2721 --http-port 8721 2>&3
    "$suyuan" init --prefix 88.888.2 --data-dir "$dir/grid" --admin-secret gridsecret \
        --handle-port 2722 --http-port 8722 2>&3
    echo topsecret >"$dir/top-secret"
    vkey() { cat "$dir/$1/$2.vkey"; }
    origin() { vkey "$1" log | cut -d+ -f1; }
    node_config() { # name, handle port, http port, ops port, quic port
        cat <<CONF
data_dir = "$dir/$1"
handle_addr = "127.0.0.1:$2"
http_addr = "127.0.0.1:$3"
ops_addr = "127.0.0.1:$4"
quic_addr = "127.0.0.1:$5"
federation_ca = "$dir/ca/ca-cert.pem"
node_cert = "$dir/$1-cert/federation-cert.pem"
node_key = "$dir/$1-cert/federation-key.pem"
CONF
    }
    witnesses() { # a log this node witnesses: name
        printf '\n[[witness.logs]]\norigin = "%s"\nvkey = "%s"\n' "$(origin "$1")" "$(vkey "$1" log)"
    }
    submits() { # a witness this node's log is submitted to: name, quic port
        printf '\n[[witness.submit]]\nurl = "quic://127.0.0.1:%s"\nvkey = "%s"\n' "$2" "$(vkey "$1" witness)"
    }
    {
        node_config top 2720 8720 9720 2730
        witnesses plant
        witnesses grid
    } >"$dir/top.toml"
    serve top - top
    ready 9720
    # The top's site file now advertises its QUIC port: walking from it, the other nodes
    # reach it over QUIC too.
    {
        node_config grid 2722 8722 9722 2732
        echo "upstream = [\"$dir/top/siteinfo.json\"]"
        witnesses plant
        submits top 2730
        submits plant 2731
    } >"$dir/grid.toml"
    {
        node_config plant 2721 8721 9721 2731
        echo "upstream = [\"$dir/top/siteinfo.json\"]"
        witnesses grid
        submits top 2730
        submits grid 2732
    } >"$dir/plant.toml"
    serve grid grid grid
    serve plant plant plant
    ready 9722
    ready 9721
    for p in 88.888.1:plant 88.888.2:grid; do
        "$suyuan" delegate "${p%%:*}" --top 127.0.0.1:2720 --auth 301:0.NA/0.NA \
            --secret-file "$dir/top-secret" --site "$dir/${p#*:}/siteinfo.json" >&3
    done
    cosigned 8721 3
    cosigned 8722 3
    echo "federation up in $dir: top 127.0.0.1:2720, plant http 127.0.0.1:8721, grid http 127.0.0.1:8722"
    ;;
*)
    echo "usage: federation.sh start|stop DIR" >&2
    exit 2
    ;;
esac
