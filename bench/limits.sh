#!/usr/bin/env bash
# Throughput and latency of sluice's limiter on the memory store, next to nginx's
# limit_req doing the same job, one worker each, all on loopback.
#
#   bench/limits.sh        (DURATION=3 ROUNDS=7 CONNS="32 256" SCENARIOS="plain open shut"
#                           WRK_THREADS=2 COST_ROUNDS=$ROUNDS BASELINE=)
#
# Builds sluice in release mode (build-release/), starts an nginx upstream answering
# `return 200`, then sluice and nginx (1 worker each, access logs off) with three routes:
#   /plain no limit, proxied: what the limiter adds is /open minus /plain
#   /open  a per-client limit that never rejects: every request is checked, then proxied
#          (sluice: leaky_bucket with delay off; nginx: limit_req nodelay)
#   /shut  a per-client limit that rejects almost everything: answered 429 at once
#          (sluice: leaky_bucket 1/h; nginx: limit_req 1r/m with limit_req_status 429)
# and, sluice only, a weighted limit against the same limit at unit cost (COST_ROUNDS paired
# rounds; 0 skips them), every request sending X-Cost: 1:
#   /unit  token_bucket that never rejects, one unit a request
#   /cost  the same with `cost: header:X-Cost`: the header read and parsed per request
# wrk drives each in interleaved rounds; prints the median req/s, p50 and p99 of the
# rounds, the CPU time the server spent per request (from /proc: steadier than req/s on a
# shared machine; also split into user and system time) and the ratios sluice/nginx.
# sluice runs with its admin listener on, as deployed, so the heavy-hitter sketches behind
# GET /top are fed on every limited request. BASELINE=/path/to/an/older/sluice runs that
# build too, with the same file, in the same interleaved rounds, and adds a table of this
# build against it. Temporary files live in bench/out/limits/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/out/limits
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-7}
CONNS=${CONNS:-"32 256"}
SCENARIOS=${SCENARIOS:-"plain open shut"}
COST_ROUNDS=${COST_ROUNDS:-$ROUNDS}
UP_PORT=${UP_PORT:-18291}
SL_PORT=${SL_PORT:-18292}
NG_PORT=${NG_PORT:-18293}
AD_PORT=${AD_PORT:-18294}
BASE_PORT=${BASE_PORT:-18295}
BASE_AD_PORT=${BASE_AD_PORT:-18296}
BASELINE=${BASELINE:-}

. bench/lib.sh
bench_setup "nginx wrk" "$UP_PORT" "$SL_PORT" "$NG_PORT" "$AD_PORT" "$BASE_PORT" "$BASE_AD_PORT"
rm -f "$out"/*.txt

nginx_conf upstream 1 "server {
        listen 127.0.0.1:$UP_PORT reuseport backlog=4096;
        location / { return 200 \"ok\n\"; }
    }"
start_nginx upstream
wait_port "$UP_PORT"

cat >"$out/sluice.yaml" <<YAML
listen: "127.0.0.1:$SL_PORT"
workers: 1
admin:
  listen: "127.0.0.1:$AD_PORT"
upstream:
  url: "http://127.0.0.1:$UP_PORT"
  keepalive: 512
client:
  max_connections: 10000
access_log: off
log_level: warn
routes:
  - name: plain
    match:
      path_prefix: "/plain"
    limits: []
  - name: open
    match:
      path_prefix: "/open"
    limits:
      - name: per_ip
        algorithm: leaky_bucket
        rate: 100000000/s
        burst: 1000
        delay: false
        key: client_ip
  - name: shut
    match:
      path_prefix: "/shut"
    limits:
      - name: per_ip
        algorithm: leaky_bucket
        rate: 1/h
        key: client_ip
  - name: unit
    match:
      path_prefix: "/unit"
    limits:
      - name: per_ip
        algorithm: token_bucket
        rate: 100000000/s
        burst: 1000000000
        key: client_ip
  - name: cost
    match:
      path_prefix: "/cost"
    limits:
      - name: per_ip
        algorithm: token_bucket
        rate: 100000000/s
        burst: 1000000000
        key: client_ip
        cost: "header:X-Cost"
YAML
"$root/build-release/sluice" -c "$out/sluice.yaml" 2>"$out/sluice.err" &
sl_pid=$!
pids+=($sl_pid)
if [ -n "$BASELINE" ]; then
    sed -e "s/127.0.0.1:$SL_PORT/127.0.0.1:$BASE_PORT/" -e "s/127.0.0.1:$AD_PORT/127.0.0.1:$BASE_AD_PORT/" \
        "$out/sluice.yaml" >"$out/base.yaml"
    "$BASELINE" -c "$out/base.yaml" 2>"$out/base.err" &
    base_pid=$!
    pids+=($base_pid)
fi

# nginx keeps its rate in requests per 1000 s internally; 100000000r/s fits easily.
# Rejections are logged at limit_req_log_level: the error log at crit keeps them out,
# as sluice's log_level warn does.
nginx_conf limiter 1 "limit_req_zone \$binary_remote_addr zone=open:10m rate=100000000r/s;
    limit_req_zone \$binary_remote_addr zone=shut:10m rate=1r/m;
    limit_req_status 429;
    upstream app { server 127.0.0.1:$UP_PORT; keepalive 512; }
    server {
        listen 127.0.0.1:$NG_PORT reuseport backlog=4096;
        location /plain {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto http;
            proxy_set_header X-Forwarded-Host \$host;
        }
        location /open {
            limit_req zone=open burst=1000 nodelay;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto http;
            proxy_set_header X-Forwarded-Host \$host;
        }
        location /shut {
            limit_req zone=shut;
            proxy_pass http://app;
        }
    }"
start_nginx limiter
ng_master=$!
wait_port "$SL_PORT"
wait_port "$NG_PORT"
[ -z "$BASELINE" ] || wait_port "$BASE_PORT"
ng_pid=
for _ in $(seq 100); do
    ng_pid=$(pgrep -P "$ng_master" | head -1) && break
    sleep 0.05
done
[ -n "$ng_pid" ] || { echo "bench: no nginx worker" >&2; exit 1; }
: >"$out/results.txt"
for round in $(seq "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        for conns in $CONNS; do
            # Alternate who goes first, so that neither always runs on a warmer machine.
            sl=(sluice "$scenario" "$conns" "$round" "$sl_pid" "http://127.0.0.1:$SL_PORT/$scenario")
            ng=(nginx "$scenario" "$conns" "$round" "$ng_pid" "http://127.0.0.1:$NG_PORT/$scenario")
            base=(base "$scenario" "$conns" "$round" "${base_pid:-}" "http://127.0.0.1:$BASE_PORT/$scenario")
            if [ $((round % 2)) -eq 1 ]; then
                wrk_record "${sl[@]}"
                [ -z "$BASELINE" ] || wrk_record "${base[@]}"
                wrk_record "${ng[@]}"
            else
                wrk_record "${ng[@]}"
                [ -z "$BASELINE" ] || wrk_record "${base[@]}"
                wrk_record "${sl[@]}"
            fi
        done
    done
    echo "round $round of $ROUNDS done" >&2
done

for round in $(seq "$COST_ROUNDS"); do
    for conns in $CONNS; do
        unit=(unit weighted "$conns" "$round" "$sl_pid" "http://127.0.0.1:$SL_PORT/unit" -H "X-Cost: 1")
        cost=(cost weighted "$conns" "$round" "$sl_pid" "http://127.0.0.1:$SL_PORT/cost" -H "X-Cost: 1")
        if [ $((round % 2)) -eq 1 ]; then
            wrk_record "${unit[@]}"
            wrk_record "${cost[@]}"
        else
            wrk_record "${cost[@]}"
            wrk_record "${unit[@]}"
        fi
    done
    echo "cost round $round of $COST_ROUNDS done" >&2
done

echo
echo "== limiter, 1 worker each  (median of $ROUNDS rounds of ${DURATION}s; latency in ms, cpu in us per request)"
printf "%-6s %5s | %9s %7s %7s %6s %5s | %9s %7s %7s %6s %5s | %5s %5s %5s %5s\n" \
    route conns sluice p50 p99 cpu "429%" nginx p50 p99 cpu "429%" "rps x" "p50 x" "p99 x" "cpu x"
for scenario in $SCENARIOS; do
    for conns in $CONNS; do
        row=()
        for target in sluice nginx; do
            for col in $COL_RPS $COL_P50 $COL_P99 $COL_CPU; do
                row+=("$(col_median "$target" "$scenario" "$conns" "$col")")
            done
            row+=("$(awk -v t="$target" -v s="$scenario" -v c="$conns" -v bad=$COL_NON2XX \
                -v all=$COL_REQUESTS '$1 == t && $2 == s && $3 == c { b += $bad; a += $all }
                 END { print (a > 0) ? 100 * b / a : 0 }' "$out/results.txt")")
        done
        for col in $COL_RPS $COL_P50 $COL_P99 $COL_CPU; do
            row+=("$(paired_ratio sluice nginx "$scenario" "$conns" "$col")")
        done
        printf "%-6s %5s | %9.0f %7.3f %7.3f %6.2f %5.1f | %9.0f %7.3f %7.3f %6.2f %5.1f | %5.2f %5.2f %5.2f %5.2f\n" \
            "/$scenario" "$conns" "${row[@]}"
    done
done
echo
echo "== CPU per request, user and system  (median of $ROUNDS rounds; us per request)"
printf "%-6s %5s | %7s %7s | %7s %7s | %6s %6s\n" route conns "sl usr" "sl sys" "ng usr" "ng sys" \
    "usr x" "sys x"
for scenario in $SCENARIOS; do
    for conns in $CONNS; do
        row=()
        for target in sluice nginx; do
            for col in $COL_USER $COL_SYS; do
                row+=("$(col_median "$target" "$scenario" "$conns" "$col")")
            done
        done
        for col in $COL_USER $COL_SYS; do
            row+=("$(paired_ratio sluice nginx "$scenario" "$conns" "$col")")
        done
        printf "%-6s %5s | %7.3f %7.3f | %7.3f %7.3f | %6.2f %6.2f\n" "/$scenario" "$conns" "${row[@]}"
    done
done
echo
echo "rps x = sluice/nginx requests per second (higher is better); p50 x, p99 x, cpu x ="
echo "sluice/nginx latency and CPU time per request (lower is better); 429% = share of"
echo "responses that were not 2xx. Ratios are the median of each round's own ratio. Both"
echo "servers share the 2 cores with wrk and the upstream."
if [ "$COST_ROUNDS" -gt 0 ]; then
    echo
    echo "== weighted requests, sluice only  (median of $COST_ROUNDS paired rounds)"
    printf "%5s | %9s %9s | %7s %7s\n" conns unit cost "rps x" "cpu x"
    for conns in $CONNS; do
        printf "%5s | %9.0f %9.0f | %7.3f %7.3f\n" "$conns" \
            "$(col_median unit weighted "$conns" $COL_RPS)" "$(col_median cost weighted "$conns" $COL_RPS)" \
            "$(paired_ratio cost unit weighted "$conns" $COL_RPS)" \
            "$(paired_ratio cost unit weighted "$conns" $COL_CPU)"
    done
    echo "rps x = /cost over /unit (the same token_bucket, cost read from X-Cost), higher is"
    echo "better; cpu x = sluice CPU per request, /cost over /unit, lower is better."
fi

[ -n "$BASELINE" ] || exit 0
echo
echo "== this build against BASELINE=$BASELINE  (same file, same rounds)"
printf "%-6s %5s | %9s %6s | %9s %6s | %5s %5s %5s\n" \
    route conns sluice cpu base cpu "rps x" "p99 x" "cpu x"
for scenario in $SCENARIOS; do
    for conns in $CONNS; do
        printf "%-6s %5s | %9.0f %6.2f | %9.0f %6.2f | %5.3f %5.3f %5.3f\n" "/$scenario" "$conns" \
            "$(col_median sluice "$scenario" "$conns" $COL_RPS)" \
            "$(col_median sluice "$scenario" "$conns" $COL_CPU)" \
            "$(col_median base "$scenario" "$conns" $COL_RPS)" \
            "$(col_median base "$scenario" "$conns" $COL_CPU)" \
            "$(paired_ratio sluice base "$scenario" "$conns" $COL_RPS)" \
            "$(paired_ratio sluice base "$scenario" "$conns" $COL_P99)" \
            "$(paired_ratio sluice base "$scenario" "$conns" $COL_CPU)"
    done
done
echo "x = this build / BASELINE, the median of each round's own ratio: rps x above 1 and cpu x"
echo "below 1 favour this build."
