#!/usr/bin/env bash
# HTTP/2 upstreams and gRPC: sluice (upstream h2c://) next to nginx (grpc_pass) and HAProxy
# (server ... proto h2), each with one worker, HTTP/2 with prior knowledge on both sides,
# in front of one nginx that speaks h2c, all on loopback.
#
#   bench/grpc.sh     (DURATION=3 ROUNDS=5 CONNS="32 256" STREAMS=10 H2LOAD_THREADS=1)
#
# Builds sluice in release mode (build-release/) and starts the upstream (nginx,
# `listen ... http2` in the clear: `return 200` with a grpc-status trailer), then runs, in
# interleaved rounds whose order rotates:
# - "grpc": h2load POSTs a gRPC-shaped unary call (content-type application/grpc, te:
#   trailers, a 5-byte-prefixed 64-byte message) to /bench.Svc/Call;
# - "get":  h2load GETs / (plain HTTP/2 requests over the same HTTP/2 upstream).
# For each proxy it prints the median req/s and mean latency, user and system CPU per
# call (of the proxy's processes, from /proc), the upstream connections it opened per
# 1 000 calls (the upstream's accepted connections, from its stub_status), and the median
# of each round's ratio sluice/nginx and sluice/HAProxy. Temporary files: bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/out
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-"32 256"}
STREAMS=${STREAMS:-10}
H2LOAD_THREADS=${H2LOAD_THREADS:-1}
UP_PORT=${UP_PORT:-18571}
SL_PORT=${SL_PORT:-18572}
NG_PORT=${NG_PORT:-18573}
HA_PORT=${HA_PORT:-18574}
ST_PORT=${ST_PORT:-18575}

. bench/lib.sh
bench_setup "nginx haproxy h2load" "$UP_PORT" "$SL_PORT" "$NG_PORT" "$HA_PORT" "$ST_PORT"
nginx -V 2>&1 | grep -q -- --with-http_v2_module ||
    { echo "bench: this nginx has no HTTP/2 module (install the nginx package)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
rm -f "$out"/grpc-*.txt "$out"/grpc-*.err "$out"/h2load-grpc-*.log

COL_RPS=5 COL_MEAN=6 COL_BAD=7 COL_REQUESTS=8 COL_USER=10 COL_SYS=11 COL_CONNS=12

# The call: a 64-byte message behind gRPC's 5-byte prefix (compressed flag, length).
msg=$out/grpc-call.bin
{ printf '\000\000\000\000\100'; head -c 64 /dev/zero | tr '\0' 'm'; } >"$msg"

nginx_conf grpc-upstream 2 "server {
        listen 127.0.0.1:$UP_PORT http2 reuseport backlog=4096;
        location / { return 200 \"ok\n\"; }
        location /bench.Svc/ {
            default_type application/grpc;
            add_trailer grpc-status 0;
            return 200 \"\";
        }
    }
    server {
        listen 127.0.0.1:$ST_PORT;
        location / { stub_status; }
    }"
start_nginx grpc-upstream
wait_port "$UP_PORT"

cat >"$out/grpc-sluice.yaml" <<YAML
listen: "127.0.0.1:$SL_PORT"
workers: 1
admin:
  listen: "off"
upstream:
  url: "h2c://127.0.0.1:$UP_PORT"
client:
  max_connections: 10000
access_log: off
log_level: warn
routes:
  - name: all
    match:
      path_prefix: "/"
    limits: []
YAML

nginx_conf grpc-proxy 1 "upstream app { server 127.0.0.1:$UP_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NG_PORT http2 reuseport backlog=4096;
        location / {
            grpc_pass grpc://app;
            grpc_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            grpc_set_header X-Forwarded-Proto http;
            grpc_set_header X-Forwarded-Host \$host;
        }
    }"

haproxy_h2_conf "$out/grpc-haproxy.cfg" "$HA_PORT" "$UP_PORT" "proto h2"

PROXY_PREFIX=grpc
declare -A pid port=([sluice]=$SL_PORT [nginx]=$NG_PORT [haproxy]=$HA_PORT)
proxies=(sluice nginx haproxy)

upstream_accepts() { curl -s "http://127.0.0.1:$ST_PORT/" | awk 'NR == 3 { print $1 }'; }

h2load_args() { # case port
    if [ "$1" = grpc ]; then
        echo "-d $msg -H content-type:application/grpc -H te:trailers http://127.0.0.1:$2/bench.Svc/Call"
    else
        echo "http://127.0.0.1:$2/"
    fi
}

# Runs h2load once and appends one line to $out/grpc-results.txt:
#   label case conns round rps mean_ms bad requests cpu_us user_us sys_us upstream_conns
# (CPU in microseconds per call; upstream connections opened per 1 000 calls).
#   record LABEL CASE CONNS ROUND
record() {
    local label=$1 kind=$2 conns=$3 round=$4 p=${pid[$1]} before after a0 a1
    a0=$(upstream_accepts)
    before=($(cpu_ticks "$p"))
    # shellcheck disable=SC2046
    h2load -t"$H2LOAD_THREADS" -c"$conns" -m"$STREAMS" -D"$DURATION" \
        $(h2load_args "$kind" "${port[$label]}") >"$out/grpc-h2load.txt" 2>&1 || true
    after=($(cpu_ticks "$p"))
    a1=$(upstream_accepts)
    cp "$out/grpc-h2load.txt" "$out/h2load-grpc-$label-$kind-$conns-$round.log"
    awk -v label="$label" -v kind="$kind" -v conns="$conns" -v round="$round" \
        -v user=$((after[0] - before[0])) -v sys=$((after[1] - before[1])) \
        -v accepts=$((a1 - a0)) -v hz="$(getconf CLK_TCK)" '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v
        }
        /^finished in/ { rps = $4 }
        /^requests:/ { total = $6; bad += $10 + $12 }
        /^status codes:/ { bad += $5 + $7 + $9 }
        /^time for request:/ { mean = ms($6) }
        END {
            per = (total > 0) ? 1e6 / hz / total : 0
            printf "%s %s %s %s %.3f %s %s %.2f %.3f %.3f %.3f %.3f\n", label, kind, conns,
                round, rps + 0, mean + 0, bad + 0, total + 0, (user + sys) * per, user * per,
                sys * per, (total > 0) ? accepts * 1000 / total : 0
        }
    ' "$out/grpc-h2load.txt" >>"$out/grpc-results.txt"
}

: >"$out/grpc-results.txt"
for p in "${proxies[@]}"; do
    start_proxy "$p"
    # shellcheck disable=SC2046
    h2load -c4 -m10 -n2000 $(h2load_args grpc "${port[$p]}") >/dev/null 2>&1 || true
done
for round in $(seq "$ROUNDS"); do
    for kind in grpc get; do
        for conns in $CONNS; do
            for i in 0 1 2; do
                p=${proxies[$(((round + i) % 3))]}
                record "$p" "$kind" "$conns" "$round"
                if ! kill -0 "${pid[$p]}" 2>/dev/null; then
                    echo "bench: $p exited during $kind -c $conns, round $round; restarting it" >&2
                    start_proxy "$p"
                fi
            done
        done
    done
    echo "round $round of $ROUNDS done" >&2
done
for p in "${proxies[@]}"; do stop_proxy "$p"; done

# col_median and paired_ratio read $out/results.txt.
cp "$out/grpc-results.txt" "$out/results.txt"
for kind in grpc get; do
    echo
    if [ "$kind" = grpc ]; then
        echo "== gRPC-shaped unary POST /bench.Svc/Call (application/grpc, 69-byte framed message)"
    else
        echo "== GET / over the same HTTP/2 upstream"
    fi
    echo "   h2load -c CONNS -m $STREAMS; one worker each; median of $ROUNDS rounds of ${DURATION}s;"
    echo "   usr/sys = CPU microseconds per call; up/1k = upstream connections opened per 1 000 calls"
    printf "%5s | %8s %6s %6s %6s %6s | %8s %6s %6s %6s %6s | %8s %6s %6s %6s %6s | %-11s | %-11s\n" \
        "" sluice mean usr sys up/1k nginx mean usr sys up/1k haproxy mean usr sys up/1k \
        " vs nginx" " vs haproxy"
    for conns in $CONNS; do
        row=()
        for p in "${proxies[@]}"; do
            for col in $COL_RPS $COL_MEAN $COL_USER $COL_SYS $COL_CONNS; do
                row+=("$(col_median "$p" "$kind" "$conns" "$col")")
            done
        done
        for p in nginx haproxy; do
            for col in $COL_RPS $COL_USER; do
                row+=("$(paired_ratio sluice "$p" "$kind" "$conns" "$col")")
            done
        done
        printf "%5s | %8.0f %6.2f %6.2f %6.2f %6.2f | %8.0f %6.2f %6.2f %6.2f %6.2f | %8.0f %6.2f %6.2f %6.2f %6.2f | rps %4.2f usr %4.2f | rps %4.2f usr %4.2f\n" \
            "$conns" "${row[@]}"
    done
done
echo
echo "target: gRPC-shaped calls, sluice req/s >= 1.00x nginx grpc_pass (median of the rounds' ratios):"
for conns in $CONNS; do
    r=$(paired_ratio sluice nginx grpc "$conns" $COL_RPS)
    awk -v c="$conns" -v r="$r" 'BEGIN { printf "  -c %-4s %.2fx: %s\n", c, r, (r >= 1.0) ? "met" : "MISSED" }'
done
bad=$(awk -v col=$COL_BAD -v req=$COL_REQUESTS '$col > 0 || $req == 0' "$out/grpc-results.txt" | wc -l)
[ "$bad" -eq 0 ] || echo "warning: $bad runs saw failed, errored or non-2xx calls, or none" \
    "(see $out/grpc-results.txt and $out/h2load-grpc-*.log)"
