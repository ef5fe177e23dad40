#!/usr/bin/env bash
# Throughput and latency of sluice's limiter on the memory store, next to nginx's
# limit_req doing the same job, one worker each, all on loopback.
#
#   bench/limits.sh        (DURATION=5 ROUNDS=3 CONNS="32 256" SCENARIOS="plain open shut")
#
# Builds sluice in release mode (build-rel/), starts an nginx upstream answering
# `return 200`, then sluice and nginx (1 worker each, access logs off) with three routes:
#   /plain no limit, proxied: what the limiter adds is /open minus /plain
#   /open  a per-client limit that never rejects: every request is checked, then proxied
#          (sluice: leaky_bucket with delay off; nginx: limit_req nodelay)
#   /shut  a per-client limit that rejects almost everything: answered 429 at once
#          (sluice: leaky_bucket 1/h; nginx: limit_req 1r/m with limit_req_status 429)
# wrk drives each in interleaved rounds; prints the median req/s, p50 and p99 of the
# rounds, the CPU time the server spent per request (from /proc: steadier than req/s on a
# shared machine) and the ratios sluice/nginx. Temporary files live in bench/out/limits/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/out/limits
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-"32 256"}
SCENARIOS=${SCENARIOS:-"plain open shut"}
UP_PORT=${UP_PORT:-18291}
SL_PORT=${SL_PORT:-18292}
NG_PORT=${NG_PORT:-18293}

. bench/lib.sh
bench_setup "nginx wrk" "$UP_PORT" "$SL_PORT" "$NG_PORT"
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
  listen: "off"
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
YAML
"$root/build-release/sluice" -c "$out/sluice.yaml" 2>"$out/sluice.err" &
sl_pid=$!
pids+=($sl_pid)

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
ng_pid=
for _ in $(seq 100); do
    ng_pid=$(pgrep -P "$ng_master" | head -1) && break
    sleep 0.05
done
[ -n "$ng_pid" ] || { echo "bench: no nginx worker" >&2; exit 1; }
clk=$(getconf CLK_TCK)

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# Runs wrk once; appends "target scenario conns rps p50_ms p99_ms non2xx requests
# cpu_us_per_request" to $out/results.txt.
run_wrk() { # label port pid scenario conns
    local label=$1 port=$2 pid=$3 scenario=$4 conns=$5
    local before
    before=$(cpu_ticks "$pid")
    wrk -t2 -c"$conns" -d"${DURATION}s" --latency "http://127.0.0.1:$port/$scenario" \
        >"$out/wrk.txt" 2>&1 || true
    awk -v label="$label" -v scenario="$scenario" -v conns="$conns" \
        -v ticks=$(($(cpu_ticks "$pid") - before)) -v clk="$clk" '
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
        / requests in / { total = $1 }
        END {
            cpu = (total > 0) ? ticks / clk * 1e6 / total : 0
            printf "%s %s %s %s %s %s %s %s %.2f\n", label, scenario, conns, rps + 0, p50 + 0, p99 + 0,
                bad + 0, total + 0, cpu
        }
    ' "$out/wrk.txt" >>"$out/results.txt"
}

: >"$out/results.txt"
for round in $(seq "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        for conns in $CONNS; do
            # Alternate who goes first, so that neither always runs on a warmer machine.
            if [ $((round % 2)) -eq 1 ]; then
                run_wrk sluice "$SL_PORT" "$sl_pid" "$scenario" "$conns"
                run_wrk nginx "$NG_PORT" "$ng_pid" "$scenario" "$conns"
            else
                run_wrk nginx "$NG_PORT" "$ng_pid" "$scenario" "$conns"
                run_wrk sluice "$SL_PORT" "$sl_pid" "$scenario" "$conns"
            fi
        done
    done
    echo "round $round of $ROUNDS done" >&2
done

echo
echo "== limiter, 1 worker each  (median of $ROUNDS rounds of ${DURATION}s; latency in ms, cpu in us per request)"
printf "%-6s %5s | %9s %7s %7s %6s %5s | %9s %7s %7s %6s %5s | %5s %5s %5s %5s\n" \
    route conns sluice p50 p99 cpu "429%" nginx p50 p99 cpu "429%" "rps x" "p50 x" "p99 x" "cpu x"
for scenario in $SCENARIOS; do
    for conns in $CONNS; do
        declare -A v=()
        for target in sluice nginx; do
            for col in 4 5 6 9; do
                v[$target$col]=$(awk -v t="$target" -v s="$scenario" -v c="$conns" -v col="$col" \
                    '$1 == t && $2 == s && $3 == c { print $col }' "$out/results.txt" | median)
            done
            v[${target}rej]=$(awk -v t="$target" -v s="$scenario" -v c="$conns" \
                '$1 == t && $2 == s && $3 == c { bad += $7; all += $8 }
                 END { print (all > 0) ? 100 * bad / all : 0 }' "$out/results.txt")
        done
        printf "%-6s %5s | %9.0f %7.3f %7.3f %6.2f %5.1f | %9.0f %7.3f %7.3f %6.2f %5.1f | %5.2f %5.2f %5.2f %5.2f\n" \
            "/$scenario" "$conns" "${v[sluice4]}" "${v[sluice5]}" "${v[sluice6]}" "${v[sluice9]}" \
            "${v[sluicerej]}" "${v[nginx4]}" "${v[nginx5]}" "${v[nginx6]}" "${v[nginx9]}" "${v[nginxrej]}" \
            "$(ratio "${v[sluice4]}" "${v[nginx4]}")" "$(ratio "${v[sluice5]}" "${v[nginx5]}")" \
            "$(ratio "${v[sluice6]}" "${v[nginx6]}")" "$(ratio "${v[sluice9]}" "${v[nginx9]}")"
        unset v
    done
done
echo
echo "rps x = sluice/nginx requests per second (higher is better); p50 x, p99 x, cpu x ="
echo "sluice/nginx latency and CPU time per request (lower is better); 429% = share of"
echo "responses that were not 2xx. Both servers share the 2 cores with wrk and the upstream."
