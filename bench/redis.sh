#!/usr/bin/env bash
# Cost of the Redis store: sluice deciding on Redis next to the same sluice deciding on its
# memory store, on a limit that never rejects and on one that rejects almost everything.
#
#   bench/redis.sh     (DURATION=3 ROUNDS=7 WORKERS=2 CONNS=256 WRK_THREADS=2
#                       SCENARIOS="allow deny allowkeys denykeys" STORES="memory redis charged"
#                       TLS=)
#   bench/redis.sh cluster     a three-master Redis Cluster next to one Redis (redis_cluster.sh)
#
# Builds sluice in release mode (build-release/), starts an nginx upstream answering
# `return 200`, a redis-server, and one sluice (access log off) with eight routes: the same
# token_bucket limit on store memory and store redis, once with a rate nothing reaches and
# once with 10/s, keyed either on the client address (one hot key: every request of the
# run touches it) or on an X-Key header that wrk draws from 10 000 values per request
# (KEYS). wrk drives each route in interleaved rounds, short ones so that the median
# survives a busy machine. The store "charged" is the Redis "allow" limits with a
# `charge: response_header:X-Tokens-Used` (the upstream reports 1): each request then
# costs its decision and one pipelined charge, and is compared with "redis".
# For every Redis run it reads INFO commandstats (EVALSHA calls), INFO stats (reads from
# clients) and INFO cpu (used_cpu_sys + used_cpu_user) before and after. Prints the median
# req/s of the rounds, the ratio redis/memory, EVALSHA calls per request, Redis CPU per
# request and EVALSHA calls per read, and the store errors sluice counted. With TLS=1 Redis
# serves TLS only (a throwaway CA and an ECDSA P-256 certificate made with openssl) and sluice
# reaches it as rediss:// with redis.tls.ca. Temporary files live in bench/out/.
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

redis_tls=()
cli_tls=()
redis_url="redis://127.0.0.1:$REDIS_PORT/0"
if [ -n "${TLS:-}" ]; then
    (cd "$out" &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout redis-ca.key -out redis-ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout redis-tls.key \
            -out redis-tls.csr -subj /CN=localhost 2>/dev/null &&
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >redis-tls.ext &&
        openssl x509 -req -in redis-tls.csr -CA redis-ca.pem -CAkey redis-ca.key \
            -CAcreateserial -days 2 -extfile redis-tls.ext -out redis-tls.pem 2>/dev/null)
    redis_tls=(--port 0 --tls-port "$REDIS_PORT" --tls-cert-file "$out/redis-tls.pem"
               --tls-key-file "$out/redis-tls.key" --tls-ca-cert-file "$out/redis-ca.pem"
               --tls-auth-clients no)
    cli_tls=(--tls --cacert "$out/redis-ca.pem")
    redis_url="rediss://127.0.0.1:$REDIS_PORT/0"
fi
rcli() { redis-cli -p "$REDIS_PORT" "${cli_tls[@]}" "$@"; }

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
        location / { add_header X-Tokens-Used 1; return 200 "ok\n"; }
    }
}
CONF
nginx -c "$out/redis-upstream.conf" -p "$out" >/dev/null 2>&1 &
pids+=($!)

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$out" "${redis_tls[@]}" >"$out/redis-server.log" 2>&1 &
pids+=($!)

KEYS=${KEYS:-10000}
limit() { # store rate [key [charge]]
    cat <<YAML
    limits:
      - name: per_ip
        algorithm: token_bucket
        rate: $2
        key: "${3:-client_ip}"
        store: $1
${4:+        charge: $4}
YAML
}
# Each request names one of KEYS keys, drawn afresh, so that no two requests of a
# pipeline-sized batch are likely to share one.
cat >"$out/redis-keys.lua" <<LUA
local n = $KEYS
function init(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16)) end
function request() return wrk.format(nil, nil, {["X-Key"] = tostring(math.random(n))}) end
LUA
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
  url: "$redis_url"
${TLS:+  tls: {ca: "$out/redis-ca.pem"\}}
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
  - name: memory-allowkeys
    match: {path: /memory-allowkeys}
$(limit memory 1000000000/1s header:X-Key)
  - name: redis-allowkeys
    match: {path: /redis-allowkeys}
$(limit redis 1000000000/1s header:X-Key)
  - name: memory-denykeys
    match: {path: /memory-denykeys}
$(limit memory 1/1h header:X-Key)
  - name: redis-denykeys
    match: {path: /redis-denykeys}
$(limit redis 1/1h header:X-Key)
  - name: charged-allow
    match: {path: /charged-allow}
$(limit redis 1000000000/1s client_ip response_header:X-Tokens-Used)
  - name: charged-allowkeys
    match: {path: /charged-allowkeys}
$(limit redis 1000000000/1s header:X-Key response_header:X-Tokens-Used)
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
# Reads Redis made from its clients: calls over reads is how many commands a read carried.
redis_reads() { rcli INFO stats | tr -d '\r' | awk -F: '/^total_reads_processed:/ { print $2 + 0 }'; }
evalsha_calls() {
    rcli INFO commandstats | tr -d '\r' |
        awk -F'[:=,]' '/^cmdstat_evalsha:/ { print $3; found = 1 } END { if (!found) print 0 }'
}

# sluice's user + system CPU time in seconds (/proc/PID/stat fields 14 and 15).
sluice_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.6f", ($14 + $15) / hz }' "/proc/$sl_pid/stat"; }

# Runs wrk once; appends "store scenario rps requests evalsha redis_cpu_s non2xx sluice_cpu_s
# round redis_reads" to the results.
run_wrk() { # store scenario round
    local store=$1 scenario=$2 round=$3 calls=0 reads=0 cpu0=0 cpu1=0 scpu0 scpu1
    if [ "$store" != memory ]; then
        rcli CONFIG RESETSTAT >/dev/null
        cpu0=$(redis_cpu)
    fi
    scpu0=$(sluice_cpu)
    local script=()
    case "$scenario" in *keys) script=(-s "$out/redis-keys.lua") ;; esac
    wrk -t"${WRK_THREADS:-2}" -c"$CONNS" -d"${DURATION}s" "${script[@]}" \
        "http://127.0.0.1:$SL_PORT/$store-$scenario" >"$out/redis-wrk.txt" 2>&1 || true
    scpu1=$(sluice_cpu)
    if [ "$store" != memory ]; then
        cpu1=$(redis_cpu)
        calls=$(evalsha_calls)
        reads=$(redis_reads)
    fi
    awk -v store="$store" -v scenario="$scenario" -v calls="$calls" -v cpu="$cpu0 $cpu1" \
        -v scpu="$scpu0 $scpu1" -v round="$round" -v reads="$reads" '
        /requests in/ { n = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx/ { bad = $NF }
        END {
            split(cpu, c, " "); split(scpu, d, " ")
            printf "%s %s %s %s %s %.6f %s %.6f %s %s\n", store, scenario, rps + 0, n + 0, calls,
                c[2] - c[1], bad + 0, d[2] - d[1], round, reads
        }
    ' "$out/redis-wrk.txt" >>"$out/redis-results.txt"
}

col() { # store scenario column -> the values of that column, one a line
    awk -v s="$1" -v sc="$2" -v c="$3" '$1 == s && $2 == sc { print $c }' "$out/redis-results.txt"
}

: >"$out/redis-results.txt"
for round in $(seq "$ROUNDS"); do
    for scenario in ${SCENARIOS:-allow deny allowkeys denykeys}; do
        # Alternate which store goes first so that neither always meets a warmer machine.
        order="${STORES:-memory redis charged}"
        case "$scenario" in allow*) ;; *) order=${order/charged/} ;; esac
        if [ $((round % 2)) -eq 0 ]; then order=$(echo $order | tr ' ' '\n' | tac | tr '\n' ' '); fi
        for store in $order; do
            run_wrk "$store" "$scenario" "$round"
        done
    done
    echo "round $round of $ROUNDS done" >&2
done
metrics=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics")

echo
echo "== sluice with $WORKERS workers, $CONNS connections, median of $ROUNDS rounds of ${DURATION}s"
printf "%-10s | %10s %10s | %7s | %14s %16s %12s | %18s\n" limit "memory" "redis" "ratio" \
    "EVALSHA/req" "Redis CPU us/req" "EVALSHA/read" "sluice CPU us/req"
per_req() { # store scenario column scale -> median of column / requests * scale
    awk -v s="$1" -v sc="$2" -v c="$3" -v k="$4" '$1 == s && $2 == sc && $4 > 0 { print $c / $4 * k }' \
        "$out/redis-results.txt" | median
}
calls_per_read() { # store scenario -> median of EVALSHA calls over Redis's reads
    awk -v s="$1" -v sc="$2" '$1 == s && $2 == sc && $10 > 0 { print $5 / $10 }' \
        "$out/redis-results.txt" | median
}
# The median of each round's redis/memory ratio: the machine's speed drifts between rounds.
paired() { # scenario
    awk -v sc="$1" '$2 == sc && $1 == "memory" { m[$9] = $3 } $2 == sc && $1 == "redis" { r[$9] = $3 }
        END { for (k in r) if ((k in m) && m[k] > 0) print r[k] / m[k] }' "$out/redis-results.txt" | median
}
for scenario in ${SCENARIOS:-allow deny allowkeys denykeys}; do
    mem=$(col memory "$scenario" 3 | median)
    red=$(col redis "$scenario" 3 | median)
    printf "%-10s | %10.0f %10.0f | %7.2f | %14.3f %16.2f %12.1f | %8.2f / %7.2f\n" "$scenario" \
        "$mem" "$red" "$(paired "$scenario")" \
        "$(per_req redis "$scenario" 5 1)" "$(per_req redis "$scenario" 6 1e6)" \
        "$(calls_per_read redis "$scenario")" \
        "$(per_req memory "$scenario" 8 1e6)" "$(per_req redis "$scenario" 8 1e6)"
done
# The charged limit against the same limit uncharged, both on Redis.
paired_charged() { # scenario
    awk -v sc="$1" '$2 == sc && $1 == "redis" { m[$9] = $3 } $2 == sc && $1 == "charged" { r[$9] = $3 }
        END { for (k in r) if ((k in m) && m[k] > 0) print r[k] / m[k] }' "$out/redis-results.txt" | median
}
for scenario in ${SCENARIOS:-allow deny allowkeys denykeys}; do
    case "$scenario" in allow*) ;; *) continue ;; esac
    [ -n "$(col charged "$scenario" 3)" ] || continue
    printf "%-10s | %10s %10.0f | %7.2f | %14.3f %16.2f %12.1f | %8s / %7.2f  (charged / redis)\n" \
        "$scenario+c" "" "$(col charged "$scenario" 3 | median)" "$(paired_charged "$scenario")" \
        "$(per_req charged "$scenario" 5 1)" "$(per_req charged "$scenario" 6 1e6)" \
        "$(calls_per_read charged "$scenario")" "" \
        "$(per_req charged "$scenario" 8 1e6)"
done
echo
echo "ratio = redis/memory req/s, the median of each round's own; allow: limit never reached;"
echo "deny: 10/s, the rest 429; *keys: the same on $KEYS X-Key values (denykeys: 1/1h a key)"
echo "sluice CPU = memory store / redis store; EVALSHA/req counts calls of requests still in flight"
echo "when wrk stops, hence slightly above 1; +c rows: the same limit charged by the response"
echo "(one more pipelined EVALSHA a request), ratio = charged/redis, paired; EVALSHA/read: the calls"
echo "one read of Redis carried (sluice pipelines a loop turn's decisions on each connection)"
echo "$metrics" | grep -E '^sluice_store_errors_total\{store="redis"' | sed 's/^/sluice: /'
echo "$metrics" | grep -E '^sluice_requests_total\{route="redis-[a-z]+",decision="(allowed|limited|store_error)"\}' |
    sed 's/^/sluice: /'
