#!/usr/bin/env bash
# Throughput and latency of sluice as a plain reverse proxy, next to nginx doing the same
# job, both in front of one nginx upstream, all on loopback.
#
#   bench/proxy.sh     (DURATION=3 ROUNDS=7 WORKERS="1 2" CONNS="32 256" WRK_THREADS=2
#                       MANY=2000)
#
# Builds sluice in release mode (build-release/), starts an nginx upstream answering
# `return 200`, sluice (access log off, memory store, one unlimited route) and nginx as a
# reverse proxy with upstream keep-alive and the same worker count, then drives each with
# wrk: GET and POST with a 4 KiB body, at each connection count, in interleaved rounds;
# wrk straight at the upstream gives the ceiling. Prints the median req/s, p50 and p99 of
# the rounds and the median of each round's ratio sluice/nginx: many short rounds, paired,
# so that a machine whose speed drifts still gives a steady ratio. With one worker it also
# runs GET over MANY keep-alive client connections (wrk -t1; MANY= skips it) and counts the
# connections the upstream accepted from each proxy (nginx's stub_status): a pool that
# churns shows there. Temporary files live in bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/out
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-7}
WORKERS=${WORKERS:-"1 2"}
CONNS=${CONNS:-"32 256"}
MANY=${MANY-2000}
UP_PORT=${UP_PORT:-18181}
SL_PORT=${SL_PORT:-18182}
NG_PORT=${NG_PORT:-18183}

. bench/lib.sh
bench_setup "nginx wrk curl" "$UP_PORT" "$SL_PORT" "$NG_PORT"
rm -f "$out"/*.txt

cat >"$out/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = string.rep("x", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"
LUA

# The upstream gets both cores whatever the worker count under test: it is the ceiling.
nginx_conf upstream 2 "server {
        listen 127.0.0.1:$UP_PORT reuseport backlog=4096;
        location / { return 200 \"ok\n\"; }
        location /post { client_max_body_size 1m; client_body_buffer_size 16k; return 200 \"ok\n\"; }
        location = /__status { stub_status; }
    }"
start_nginx upstream
up_pid=$!
wait_port "$UP_PORT"

# Connections the upstream has accepted so far (its workers share the count).
upstream_accepts() {
    curl -s "http://127.0.0.1:$UP_PORT/__status" | awk 'NR == 3 { print $1 }'
}

# wrk_record, also appending "label conns round accepted" to $out/upconns.txt: the
# connections the upstream accepted during the run (less the one that asked).
wrk_record_upstream() { # as wrk_record
    local before
    before=$(upstream_accepts)
    wrk_record "$@"
    echo "$1 $3 $4 $(($(upstream_accepts) - before - 1))" >>"$out/upconns.txt"
}

for workers in $WORKERS; do
    cat >"$out/sluice.yaml" <<YAML
listen: "127.0.0.1:$SL_PORT"
workers: $workers
admin:
  listen: "off"
upstream:
  url: "http://127.0.0.1:$UP_PORT"
  keepalive: 512
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
    "$root/build-release/sluice" -c "$out/sluice.yaml" 2>"$out/sluice.err" &
    sl_pid=$!
    pids+=($sl_pid)
    nginx_conf proxy "$workers" "upstream app { server 127.0.0.1:$UP_PORT; keepalive 512; }
    server {
        listen 127.0.0.1:$NG_PORT reuseport backlog=4096;
        client_max_body_size 1m;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto http;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }"
    start_nginx proxy
    ng_pid=$!
    wait_port "$SL_PORT"
    wait_port "$NG_PORT"
    : >"$out/results.txt"
    : >"$out/upconns.txt"

    for round in $(seq "$ROUNDS"); do
        for method in GET POST; do
            opts=()
            path=/
            if [ "$method" = POST ]; then opts=(-s "$out/post.lua"); path=/post; fi
            for conns in $CONNS; do
                wrk_record upstream "$method" "$conns" "$round" "$up_pid" \
                    "http://127.0.0.1:$UP_PORT$path" "${opts[@]}"
                # Alternate which proxy goes first, so neither always follows the other.
                order=(sluice nginx)
                [ $((round % 2)) -eq 1 ] || order=(nginx sluice)
                for target in "${order[@]}"; do
                    if [ "$target" = sluice ]; then
                        wrk_record sluice "$method" "$conns" "$round" "$sl_pid" \
                            "http://127.0.0.1:$SL_PORT$path" "${opts[@]}"
                    else
                        wrk_record nginx "$method" "$conns" "$round" "$ng_pid" \
                            "http://127.0.0.1:$NG_PORT$path" "${opts[@]}"
                    fi
                done
            done
        done
        if [ "$workers" = 1 ] && [ -n "$MANY" ]; then
            order=(sluice nginx)
            [ $((round % 2)) -eq 1 ] || order=(nginx sluice)
            for target in "${order[@]}"; do
                if [ "$target" = sluice ]; then
                    WRK_THREADS=1 wrk_record_upstream sluice GET "$MANY" "$round" "$sl_pid" \
                        "http://127.0.0.1:$SL_PORT/"
                else
                    WRK_THREADS=1 wrk_record_upstream nginx GET "$MANY" "$round" "$ng_pid" \
                        "http://127.0.0.1:$NG_PORT/"
                fi
            done
        fi
        echo "workers=$workers: round $round of $ROUNDS done" >&2
    done
    kill "$sl_pid" "$ng_pid"
    wait "$sl_pid" 2>/dev/null || true
    wait "$ng_pid" 2>/dev/null || true

    echo
    echo "== workers: $workers  (median of $ROUNDS rounds of ${DURATION}s; latency in ms)"
    printf "%-6s %5s | %9s %6s %6s | %9s %6s %6s %6s | %9s %6s %6s %6s | %5s %5s %5s\n" \
        method conns "upstream" p50 p99 "sluice" p50 p99 "cpu" "nginx" p50 p99 "cpu" \
        "rps x" "p99 x" "cpu x"
    for method in GET POST; do
        for conns in $CONNS; do
            row=()
            for target in upstream sluice nginx; do
                for col in $COL_RPS $COL_P50 $COL_P99 $COL_CPU; do
                    [ "$target$col" = "upstream$COL_CPU" ] && continue
                    row+=("$(col_median "$target" "$method" "$conns" "$col")")
                done
            done
            for col in $COL_RPS $COL_P99 $COL_CPU; do
                row+=("$(paired_ratio sluice nginx "$method" "$conns" "$col")")
            done
            printf "%-6s %5s | %9.0f %6.2f %6.2f | %9.0f %6.2f %6.2f %6.1f | %9.0f %6.2f %6.2f %6.1f | %5.2f %5.2f %5.2f\n" \
                "$method" "$conns" "${row[@]}"
        done
    done
    if [ "$workers" = 1 ] && [ -n "$MANY" ]; then
        echo
        echo "== workers: 1, GET over $MANY keep-alive connections, wrk -t1  (upconn = new upstream"
        echo "   connections per 1000 requests; cpu user/sys in us per request)"
        printf "%9s %6s %6s %6s %6s %6s | %9s %6s %6s %6s %6s %6s | %5s %5s %5s\n" "sluice" p99 cpu \
            usr sys upconn "nginx" p99 cpu usr sys upconn "rps x" "p99 x" "cpu x"
        row=()
        for target in sluice nginx; do
            for col in $COL_RPS $COL_P99 $COL_CPU $COL_USER $COL_SYS; do
                row+=("$(col_median "$target" GET "$MANY" "$col")")
            done
            row+=("$(awk -v t="$target" -v c="$MANY" -v req=$COL_REQUESTS '
                FNR == NR { if ($1 == t && $2 == c) n[$2 " " $3] = $4; next }
                $1 == t && $2 == "GET" && $3 == c && ($3 " " $4) in n && $req > 0 {
                    print 1000 * n[$3 " " $4] / $req }' "$out/upconns.txt" "$out/results.txt" | median)")
        done
        for col in $COL_RPS $COL_P99 $COL_CPU; do
            row+=("$(paired_ratio sluice nginx GET "$MANY" "$col")")
        done
        printf "%9.0f %6.0f %6.1f %6.1f %6.1f %6.1f | %9.0f %6.0f %6.1f %6.1f %6.1f %6.1f | %5.2f %5.2f %5.2f\n" \
            "${row[@]}"
    fi
    bad=$(awk -v col=$COL_NON2XX '$col > 0' "$out/results.txt" | wc -l)
    [ "$bad" -eq 0 ] || echo "warning: $bad runs saw non-2xx responses (see $out/results.txt)"
done
echo
echo "cpu = CPU microseconds the proxy spent per request (user + system, all its threads or"
echo "processes); rps x, p99 x and cpu x = sluice/nginx, the median of each round's ratio:"
echo "rps higher is better, p99 and cpu lower"
