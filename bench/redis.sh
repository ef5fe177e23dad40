#!/usr/bin/env bash
# Cost of the Redis store: sluice deciding on Redis next to the same sluice deciding on its
# memory store, on a limit that never rejects and on one that rejects almost everything.
#
#   bench/redis.sh     (DURATION=3 ROUNDS=7 WORKERS=2 CONNS=256 WRK_THREADS=2)
#   bench/redis.sh cluster     a three-master Redis Cluster next to one Redis (redis_cluster.sh)
#
# Builds sluice in release mode (build-release/), starts an nginx upstream answering
# `return 200`, a redis-server, and one sluice (access log off) with four routes: the same
# token_bucket limit on the client address, on store memory and store redis, once with a
# rate nothing reaches and once with 10/s. wrk drives each route in interleaved rounds,
# short ones so that the median survives a busy machine.
# For every Redis run it reads INFO commandstats (EVALSHA calls) and INFO cpu
# (used_cpu_sys + used_cpu_user) before and after. Prints the median req/s of the rounds,
# the ratio redis/memory, EVALSHA calls per request and Redis CPU per request, and the
# store errors sluice counted. Temporary files live in bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = cluster ]; then
    exec bench/redis_cluster.sh
fi
root=$PWD
out=$root/bench/out
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-7}
WORKERS=${WORKERS:-2}
CONNS=${CONNS:-256}
UP_PORT=${UP_PORT:-18191}
SL_PORT=${SL_PORT:-18192}
ADMIN_PORT=${ADMIN_PORT:-18193}
REDIS_PORT=${REDIS_PORT:-18194}

. bench/lib.sh
bench_setup "nginx wrk redis-server redis-cli curl" "$UP_PORT" "$SL_PORT" "$ADMIN_PORT" "$REDIS_PORT"
rm -f "$out"/redis-*.txt

rcli() { redis-cli -p "$REDIS_PORT" "$@"; }

cat >"$out/redis-upstream.conf" <<CONF
worker_processes 1;
daemon off;
pid $out/redis-upstream.pid;
error_log $out/redis-upstream.error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $out/redis-upstream-body;
    proxy_temp_path $out/redis-upstream-proxy;
    fastcgi_temp_path $out/redis-upstream-fcgi;
    uwsgi_temp_path $out/redis-upstream-uwsgi;
    scgi_temp_path $out/redis-upstream-scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$UP_PORT reuseport backlog=4096;
        location / { return 200 "ok\n"; }
    }
}
CONF
nginx -c "$out/redis-upstream.conf" -p "$out" >/dev/null 2>&1 &
pids+=($!)

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$out" >"$out/redis-server.log" 2>&1 &
pids+=($!)

limit() { # store rate
    cat <<YAML
    limits:
      - name: per_ip
        algorithm: token_bucket
        rate: $2
        key: client_ip
        store: $1
YAML
}
cat >"$out/redis-sluice.yaml" <<YAML
listen: "127.0.0.1:$SL_PORT"
workers: $WORKERS
admin:
  listen: "127.0.0.1:$ADMIN_PORT"
upstream:
  url: "http://127.0.0.1:$UP_PORT"
  keepalive: 512
client:
  max_connections: 10000
redis:
  url: "redis://127.0.0.1:$REDIS_PORT/0"
  timeout: 50ms
failure_mode: open
access_log: off
log_level: warn
routes:
  - name: memory-allow
    match: {path: /memory-allow}
$(limit memory 1000000000/1s)
  - name: redis-allow
    match: {path: /redis-allow}
$(limit redis 1000000000/1s)
  - name: memory-deny
    match: {path: /memory-deny}
$(limit memory 10/1s)
  - name: redis-deny
    match: {path: /redis-deny}
$(limit redis 10/1s)
YAML
wait_port "$UP_PORT"
wait_port "$REDIS_PORT"
"$root/build-release/sluice" -c "$out/redis-sluice.yaml" 2>"$out/redis-sluice.err" &
sl_pid=$!
pids+=($sl_pid)
wait_port "$SL_PORT"
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null &&
        curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -q '^sluice_redis_connected 1' && break
    sleep 0.05
done

redis_cpu() { rcli INFO cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.6f", s }'; }
evalsha_calls() {
    rcli INFO commandstats | tr -d '\r' |
        awk -F'[:=,]' '/^cmdstat_evalsha:/ { print $3; found = 1 } END { if (!found) print 0 }'
}

# sluice's user + system CPU time in seconds (/proc/PID/stat fields 14 and 15).
sluice_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.6f", ($14 + $15) / hz }' "/proc/$sl_pid/stat"; }

# Runs wrk once; appends "store scenario rps requests evalsha redis_cpu_s non2xx sluice_cpu_s
# round" to the results.
run_wrk() { # store scenario round
    local store=$1 scenario=$2 round=$3 calls=0 cpu0=0 cpu1=0 scpu0 scpu1
    if [ "$store" = redis ]; then
        rcli CONFIG RESETSTAT >/dev/null
        cpu0=$(redis_cpu)
    fi
    scpu0=$(sluice_cpu)
    wrk -t"${WRK_THREADS:-2}" -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$SL_PORT/$store-$scenario" \
        >"$out/redis-wrk.txt" 2>&1 || true
    scpu1=$(sluice_cpu)
    if [ "$store" = redis ]; then
        cpu1=$(redis_cpu)
        calls=$(evalsha_calls)
    fi
    awk -v store="$store" -v scenario="$scenario" -v calls="$calls" -v cpu="$cpu0 $cpu1" \
        -v scpu="$scpu0 $scpu1" -v round="$round" '
        /requests in/ { n = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx/ { bad = $NF }
        END {
            split(cpu, c, " "); split(scpu, d, " ")
            printf "%s %s %s %s %s %.6f %s %.6f %s\n", store, scenario, rps + 0, n + 0, calls,
                c[2] - c[1], bad + 0, d[2] - d[1], round
        }
    ' "$out/redis-wrk.txt" >>"$out/redis-results.txt"
}

col() { # store scenario column -> the values of that column, one a line
    awk -v s="$1" -v sc="$2" -v c="$3" '$1 == s && $2 == sc { print $c }' "$out/redis-results.txt"
}

: >"$out/redis-results.txt"
for round in $(seq "$ROUNDS"); do
    for scenario in allow deny; do
        # Alternate which store goes first so that neither always meets a warmer machine.
        if [ $((round % 2)) -eq 1 ]; then order="memory redis"; else order="redis memory"; fi
        for store in $order; do
            run_wrk "$store" "$scenario" "$round"
        done
    done
    echo "round $round of $ROUNDS done" >&2
done
metrics=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics")

echo
echo "== sluice with $WORKERS workers, $CONNS connections, median of $ROUNDS rounds of ${DURATION}s"
printf "%-8s | %10s %10s | %7s | %14s %16s | %18s\n" limit "memory" "redis" "ratio" \
    "EVALSHA/req" "Redis CPU us/req" "sluice CPU us/req"
per_req() { # store scenario column scale -> median of column / requests * scale
    awk -v s="$1" -v sc="$2" -v c="$3" -v k="$4" '$1 == s && $2 == sc && $4 > 0 { print $c / $4 * k }' \
        "$out/redis-results.txt" | median
}
# The median of each round's redis/memory ratio: the machine's speed drifts between rounds.
paired() { # scenario
    awk -v sc="$1" '$2 == sc && $1 == "memory" { m[$9] = $3 } $2 == sc && $1 == "redis" { r[$9] = $3 }
        END { for (k in r) if ((k in m) && m[k] > 0) print r[k] / m[k] }' "$out/redis-results.txt" | median
}
for scenario in allow deny; do
    mem=$(col memory "$scenario" 3 | median)
    red=$(col redis "$scenario" 3 | median)
    printf "%-8s | %10.0f %10.0f | %7.2f | %14.3f %16.2f | %8.2f / %7.2f\n" "$scenario" \
        "$mem" "$red" "$(paired "$scenario")" \
        "$(per_req redis "$scenario" 5 1)" "$(per_req redis "$scenario" 6 1e6)" \
        "$(per_req memory "$scenario" 8 1e6)" "$(per_req redis "$scenario" 8 1e6)"
done
echo
echo "ratio = redis/memory req/s, the median of each round's own (target >= 0.7); allow: limit"
echo "never reached; deny: 10/s, the rest 429"
echo "sluice CPU = memory store / redis store; EVALSHA/req counts calls of requests still in flight"
echo "when wrk stops, hence slightly above 1"
echo "$metrics" | grep -E '^sluice_store_errors_total\{store="redis"' | sed 's/^/sluice: /'
echo "$metrics" | grep -E '^sluice_requests_total\{route="redis-(allow|deny)",decision="(allowed|limited|store_error)"\}' |
    sed 's/^/sluice: /'
