#!/usr/bin/env bash
# The Redis store on a Redis Cluster next to the same store on one Redis, in the same run.
#
#   bench/redis.sh cluster     (DURATION=3 ROUNDS=5 WORKERS=2 CONNS=128 WRK_THREADS=2)
#
# Starts an nginx upstream answering `return 200`, one redis-server, a three-master cluster
# (redis-server --cluster-enabled yes, redis-cli --cluster create, no replicas) and two
# sluice processes, one per Redis, with the same token_bucket limit that never rejects,
# keyed on an X-Key header that wrk draws at random from 100000 values so that keys spread
# over every master. wrk drives each in interleaved rounds. Prints the median req/s, the
# paired ratio cluster/single, and EVALSHA calls per request summed over the nodes. All
# of it shares one machine with the load generator: the figures are indicative.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/out
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-5}
WORKERS=${WORKERS:-2}
CONNS=${CONNS:-128}
BASE_PORT=${BASE_PORT:-18290}
UP_PORT=$BASE_PORT
SINGLE_PORT=$((BASE_PORT + 1))
CLUSTER_PORT=$((BASE_PORT + 2))
REDIS_PORT=$((BASE_PORT + 3))
NODE_PORTS="$((BASE_PORT + 4)) $((BASE_PORT + 5)) $((BASE_PORT + 6))"
ADMIN_SINGLE=$((BASE_PORT + 7))
ADMIN_CLUSTER=$((BASE_PORT + 8))

. bench/lib.sh
# shellcheck disable=SC2086
bench_setup "nginx wrk redis-server redis-cli curl" "$UP_PORT" "$SINGLE_PORT" "$CLUSTER_PORT" \
    "$REDIS_PORT" $NODE_PORTS "$ADMIN_SINGLE" "$ADMIN_CLUSTER"
rm -rf "$out"/cluster-*
mkdir -p "$out/cluster-data"

nginx_conf cluster-upstream 1 "server { listen 127.0.0.1:$UP_PORT reuseport backlog=4096;
        location / { return 200 \"ok\\n\"; } }"
start_nginx cluster-upstream

redis_args=(--bind 127.0.0.1 --save "" --appendonly no --dir "$out/cluster-data")
redis-server --port "$REDIS_PORT" "${redis_args[@]}" >"$out/cluster-single.log" 2>&1 &
pids+=($!)
seeds=()
for p in $NODE_PORTS; do
    # The bus port is the client port + 10000 unless set: keep it next to the others.
    redis-server --port "$p" "${redis_args[@]}" --cluster-enabled yes \
        --cluster-port $((p + 100)) --cluster-config-file "nodes-$p.conf" \
        >"$out/cluster-node-$p.log" 2>&1 &
    pids+=($!)
    seeds+=("127.0.0.1:$p")
done
for p in "$REDIS_PORT" $NODE_PORTS; do wait_port "$p"; done
redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >"$out/cluster-create.log"
for _ in $(seq 200); do
    redis-cli -p "${NODE_PORTS%% *}" CLUSTER INFO | grep -q 'cluster_state:ok' && break
    sleep 0.05
done

sluice_conf() { # port admin redis-block
    cat <<YAML
listen: "127.0.0.1:$1"
workers: $WORKERS
admin: {listen: "127.0.0.1:$2"}
upstream: {url: "http://127.0.0.1:$UP_PORT", keepalive: 512}
client: {max_connections: 10000}
redis:
  $3
  timeout: 50ms
failure_mode: open
access_log: off
log_level: warn
routes:
  - name: allow
    match: {path: /allow}
    limits:
      - {name: per_key, algorithm: token_bucket, rate: 1000000000/1s, key: "header:X-Key"}
YAML
}
seed_list=$(printf '"%s", ' "${seeds[@]}")
sluice_conf "$SINGLE_PORT" "$ADMIN_SINGLE" "url: \"redis://127.0.0.1:$REDIS_PORT/0\"" >"$out/cluster-single.yaml"
sluice_conf "$CLUSTER_PORT" "$ADMIN_CLUSTER" "cluster: [${seed_list%, }]" >"$out/cluster-cluster.yaml"
for which in single cluster; do
    "$root/build-release/sluice" -c "$out/cluster-$which.yaml" 2>"$out/cluster-$which.err" &
    pids+=($!)
done
for admin in "$ADMIN_SINGLE" "$ADMIN_CLUSTER"; do
    for _ in $(seq 200); do
        curl -s "http://127.0.0.1:$admin/metrics" | grep -q '^sluice_redis_connected 1' && break
        sleep 0.05
    done
done

cat >"$out/cluster-keys.lua" <<'LUA'
math.randomseed(os.time())
request = function()
    return wrk.format("GET", "/allow", {["X-Key"] = tostring(math.random(1, 100000))})
end
LUA

evalsha_calls() { # port... -> EVALSHA calls summed
    local total=0 p n
    for p in "$@"; do
        n=$(redis-cli -p "$p" INFO commandstats | tr -d '\r' |
            awk -F'[:=,]' '/^cmdstat_evalsha:/ { print $3; f = 1 } END { if (!f) print 0 }')
        total=$((total + n))
    done
    echo "$total"
}

run_wrk() { # which port round redis-ports...
    local which=$1 port=$2 round=$3
    shift 3
    for p in "$@"; do redis-cli -p "$p" CONFIG RESETSTAT >/dev/null; done
    wrk -t"${WRK_THREADS:-2}" -c"$CONNS" -d"${DURATION}s" -s "$out/cluster-keys.lua" \
        "http://127.0.0.1:$port/allow" >"$out/cluster-wrk.txt" 2>&1 || true
    local calls
    calls=$(evalsha_calls "$@")
    awk -v w="$which" -v calls="$calls" -v round="$round" '
        /requests in/ { n = $1 } /^Requests\/sec:/ { rps = $2 } /Non-2xx/ { bad = $NF }
        END { printf "%s %s %s %s %s %s\n", w, rps + 0, n + 0, calls, bad + 0, round }
    ' "$out/cluster-wrk.txt" >>"$out/cluster-results.txt"
}

: >"$out/cluster-results.txt"
for round in $(seq "$ROUNDS"); do
    # shellcheck disable=SC2086
    if [ $((round % 2)) -eq 1 ]; then
        run_wrk single "$SINGLE_PORT" "$round" "$REDIS_PORT"
        run_wrk cluster "$CLUSTER_PORT" "$round" $NODE_PORTS
    else
        run_wrk cluster "$CLUSTER_PORT" "$round" $NODE_PORTS
        run_wrk single "$SINGLE_PORT" "$round" "$REDIS_PORT"
    fi
    echo "round $round of $ROUNDS done" >&2
done

med() { awk -v w="$1" -v c="$2" '$1 == w { print $c }' "$out/cluster-results.txt" | median; }
per_req() { awk -v w="$1" '$1 == w && $3 > 0 { print $4 / $3 }' "$out/cluster-results.txt" | median; }
paired=$(awk '$1 == "single" { s[$6] = $2 } $1 == "cluster" { c[$6] = $2 }
    END { for (k in c) if ((k in s) && s[k] > 0) print c[k] / s[k] }' "$out/cluster-results.txt" | median)
echo
echo "== sluice with $WORKERS workers, $CONNS connections, median of $ROUNDS rounds of ${DURATION}s"
printf "%-8s | %10s | %12s | %8s\n" redis "req/s" "EVALSHA/req" "non-2xx"
for which in single cluster; do
    printf "%-8s | %10.0f | %12.3f | %8.0f\n" "$which" "$(med "$which" 2)" "$(per_req "$which")" \
        "$(med "$which" 5)"
done
echo "ratio cluster/single (median of each round's own): $paired"
for admin in "$ADMIN_SINGLE" "$ADMIN_CLUSTER"; do
    curl -s "http://127.0.0.1:$admin/metrics" |
        grep -E '^sluice_(store_errors_total\{store="redis"|redis_redirections_total|redis_topology_refreshes_total)' |
        sed "s/^/sluice :$admin: /"
done
