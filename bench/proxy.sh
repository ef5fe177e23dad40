#!/usr/bin/env bash
# Throughput and latency of sluice as a plain reverse proxy, next to nginx doing the same
# job, both in front of one nginx upstream, all on loopback.
#
#   bench/proxy.sh                    (DURATION=5 ROUNDS=3 WORKERS="1 2" CONNS="32 256")
#
# Builds sluice in release mode (build-release/), starts an nginx upstream answering
# `return 200`, sluice (access log off, memory store, one unlimited route) and nginx as a
# reverse proxy with upstream keep-alive and the same worker count, then drives each with
# wrk: GET and POST with a 4 KiB body, at each connection count, in interleaved rounds;
# wrk straight at the upstream gives the ceiling. Prints the median req/s, p50 and p99 of
# the rounds and the ratios sluice/nginx. Temporary files live in bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/out
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-"1 2"}
CONNS=${CONNS:-"32 256"}
UP_PORT=${UP_PORT:-18181}
SL_PORT=${SL_PORT:-18182}
NG_PORT=${NG_PORT:-18183}

. bench/lib.sh
bench_setup "nginx wrk" "$UP_PORT" "$SL_PORT" "$NG_PORT"
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
    }"
start_nginx upstream
up_pid=$!
wait_port "$UP_PORT"

# CPU time (utime + stime, in clock ticks) of processes and their children: on a busy
# machine req/s is noisy, CPU time per request is not.
cpu_ticks() { # pid...
    local total=0 p
    for p in "$@" $(for q in "$@"; do pgrep -P "$q"; done); do
        [ -r "/proc/$p/stat" ] || continue
        total=$((total + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat")))
    done
    echo "$total"
}

# Runs wrk once; appends "target method conns rps p50_ms p99_ms non2xx cpu_us_per_req" to
# $out/results.txt.
run_wrk() { # label port method conns pid
    local label=$1 port=$2 method=$3 conns=$4 pid=$5 path=/ script=()
    if [ "$method" = POST ]; then path=/post; script=(-s "$out/post.lua"); fi
    local threads=2 before after
    before=$(cpu_ticks "$pid")
    wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency "${script[@]}" \
        "http://127.0.0.1:$port$path" >"$out/wrk.txt" 2>&1 || true
    after=$(cpu_ticks "$pid")
    awk -v label="$label" -v method="$method" -v conns="$conns" -v ticks=$((after - before)) \
        -v hz="$(getconf CLK_TCK)" -v secs="$DURATION" '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v
        }
        /^ +50%/ { p50 = ms($2) }
        /^ +99%/ { p99 = ms($2) }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx/ { bad = $NF }
        END {
            cpu = (rps > 0) ? ticks / hz * 1e6 / (rps * secs) : 0
            printf "%s %s %s %s %s %s %s %.1f\n", label, method, conns, rps + 0, p50 + 0, p99 + 0, bad + 0, cpu
        }
    ' "$out/wrk.txt" >>"$out/results.txt"
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

    for round in $(seq "$ROUNDS"); do
        for method in GET POST; do
            for conns in $CONNS; do
                run_wrk upstream "$UP_PORT" "$method" "$conns" "$up_pid"
                run_wrk sluice "$SL_PORT" "$method" "$conns" "$sl_pid"
                run_wrk nginx "$NG_PORT" "$method" "$conns" "$ng_pid"
            done
        done
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
            declare -A v=()
            for target in upstream sluice nginx; do
                for col in 4 5 6 8; do
                    v[$target$col]=$(awk -v t="$target" -v m="$method" -v c="$conns" -v col="$col" \
                        '$1 == t && $2 == m && $3 == c { print $col }' "$out/results.txt" | median)
                done
            done
            printf "%-6s %5s | %9.0f %6.2f %6.2f | %9.0f %6.2f %6.2f %6.1f | %9.0f %6.2f %6.2f %6.1f | %5.2f %5.2f %5.2f\n" \
                "$method" "$conns" "${v[upstream4]}" "${v[upstream5]}" "${v[upstream6]}" \
                "${v[sluice4]}" "${v[sluice5]}" "${v[sluice6]}" "${v[sluice8]}" \
                "${v[nginx4]}" "${v[nginx5]}" "${v[nginx6]}" "${v[nginx8]}" \
                "$(ratio "${v[sluice4]}" "${v[nginx4]}")" "$(ratio "${v[sluice6]}" "${v[nginx6]}")" \
                "$(ratio "${v[sluice8]}" "${v[nginx8]}")"
            unset v
        done
    done
    bad=$(awk '$7 > 0' "$out/results.txt" | wc -l)
    [ "$bad" -eq 0 ] || echo "warning: $bad runs saw non-2xx responses (see $out/results.txt)"
done
echo
echo "cpu = CPU microseconds the proxy spent per request (user + system, all its threads or"
echo "processes); rps x and cpu x, p99 x = sluice/nginx: rps higher is better, p99 and cpu lower"
