#!/usr/bin/env bash
# HTTP/2 from clients: sluice next to nginx and HAProxy, each an HTTP/2 (prior knowledge,
# cleartext) reverse proxy with one worker in front of one HTTP/1.1 nginx upstream, all
# on loopback.
#
#   bench/h2.sh     (DURATION=3 ROUNDS=5 CONNS="32 256" STREAMS=10 H2LOAD_THREADS=1
#                    KEEPALIVE=4096 DOWNLOAD=1g RATE=64m WINDOW=65535 IDLE=2000
#                    PYTHON=/usr/bin/python3)
#
# Builds sluice in release mode (build-release/) and starts an nginx upstream answering
# `return 200`, then:
# - h2load -c CONNS -m STREAMS for DURATION seconds against sluice (memory store, one
#   unlimited route, access log off), nginx (`listen ... http2`) and HAProxy (`bind ...
#   proto h2`, nbthread 1, http-reuse always), in interleaved rounds whose order rotates.
#   Prints each proxy's median req/s, mean latency and user and system CPU per request
#   (of the proxy's processes, from /proc), and the median of each round's ratio
#   sluice/nginx and sluice/HAProxy, next to the targets. Each proxy keeps up to
#   KEEPALIVE idle upstream connections, more than the CONNS x STREAMS requests in
#   flight: a pool that closed and reopened connections would be measured instead.
# - A DOWNLOAD-byte body (a sparse file the upstream serves) through a fresh sluice to a
#   client whose windows are WINDOW bytes and which reads no faster than RATE bytes/s:
#   sluice's VmRSS before and its maximum during (sampled every 100 ms), and whether the
#   body arrived whole. DOWNLOAD= skips it.
# - IDLE connections (fresh processes), each having sent the preface, SETTINGS and one
#   GET, then idle: VmRSS growth of each proxy per connection. IDLE= skips it.
# Clients other than h2load are bench/h2_clients.py (python3-h2). Temporary files live in
# bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/out
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-"32 256"}
STREAMS=${STREAMS:-10}
H2LOAD_THREADS=${H2LOAD_THREADS:-1}
DOWNLOAD=${DOWNLOAD-1g}
RATE=${RATE:-64m}
WINDOW=${WINDOW:-65535}
IDLE=${IDLE-2000}
KEEPALIVE=${KEEPALIVE:-4096}
PYTHON=${PYTHON:-/usr/bin/python3}
UP_PORT=${UP_PORT:-18561}
SL_PORT=${SL_PORT:-18562}
NG_PORT=${NG_PORT:-18563}
HA_PORT=${HA_PORT:-18564}

. bench/lib.sh
bench_setup "nginx haproxy h2load $PYTHON" "$UP_PORT" "$SL_PORT" "$NG_PORT" "$HA_PORT"
"$PYTHON" -c 'import h2' 2>/dev/null ||
    { echo "bench: $PYTHON cannot import h2 (python3-h2)" >&2; exit 1; }
nginx -V 2>&1 | grep -q -- --with-http_v2_module ||
    { echo "bench: this nginx has no HTTP/2 module (install the nginx package)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
rm -f "$out"/*.txt "$out"/h2-*.err "$out"/h2load-*.log

# Columns of $out/results.txt, as h2load_record writes them.
COL_RPS=5 COL_MEAN=6 COL_BAD=7 COL_REQUESTS=8 COL_CPU=9 COL_USER=10 COL_SYS=11

big=$out/h2-big.bin
if [ -n "$DOWNLOAD" ]; then
    size=$(numfmt --from=iec "${DOWNLOAD^^}")
    rate=$(numfmt --from=iec "${RATE^^}")
    rm -f "$big"
    truncate -s "$size" "$big"
fi

nginx_conf h2-upstream 2 "server {
        listen 127.0.0.1:$UP_PORT reuseport backlog=4096;
        sendfile on;
        location / { return 200 \"ok\n\"; }
        location = /h2-big.bin { root $out; }
    }"
start_nginx h2-upstream
wait_port "$UP_PORT"

cat >"$out/h2-sluice.yaml" <<YAML
listen: "127.0.0.1:$SL_PORT"
workers: 1
admin:
  listen: "off"
upstream:
  url: "http://127.0.0.1:$UP_PORT"
  keepalive: $KEEPALIVE
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

# keepalive_requests (nginx_conf sets it) replaced http2_max_requests in nginx 1.19.7: a
# connection is not closed after 1000 streams.
nginx_conf h2-proxy 1 "upstream app { server 127.0.0.1:$UP_PORT; keepalive $KEEPALIVE; }
    server {
        listen 127.0.0.1:$NG_PORT http2 reuseport backlog=4096;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto http;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }"

haproxy_h2_conf "$out/h2-haproxy.cfg" "$HA_PORT" "$UP_PORT"

PROXY_PREFIX=h2
declare -A pid port=([sluice]=$SL_PORT [nginx]=$NG_PORT [haproxy]=$HA_PORT)
proxies=(sluice nginx haproxy)

# The process whose memory is the proxy's: nginx's only worker, else the process itself.
mem_pid() { # name
    if [ "$1" = nginx ]; then pgrep -P "${pid[nginx]}" | head -1; else echo "${pid[$1]}"; fi
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

warm_up() { # port
    h2load -c4 -m10 -n2000 "http://127.0.0.1:$1/" >/dev/null 2>&1 || true
}

# Runs h2load once for DURATION seconds and appends one line to $out/results.txt:
#   label case conns round rps mean_ms bad requests cpu_us user_us sys_us
# where bad counts failed and errored requests and non-2xx answers, and the CPU times
# (all, user, system; microseconds per request) are those of `pid` and its children.
#   h2load_record LABEL CONNS ROUND PID URL
h2load_record() {
    local label=$1 conns=$2 round=$3 p=$4 url=$5 before after
    before=($(cpu_ticks "$p"))
    h2load -t"$H2LOAD_THREADS" -c"$conns" -m"$STREAMS" -D"$DURATION" "$url" \
        >"$out/h2load.txt" 2>&1 || true
    after=($(cpu_ticks "$p"))
    cp "$out/h2load.txt" "$out/h2load-$label-$conns-$round.log"
    awk -v label="$label" -v conns="$conns" -v round="$round" \
        -v user=$((after[0] - before[0])) -v sys=$((after[1] - before[1])) \
        -v hz="$(getconf CLK_TCK)" '
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
            printf "%s GET %s %s %s %.3f %s %s %.2f %.3f %.3f\n", label, conns, round, rps + 0,
                mean + 0, bad + 0, total + 0, (user + sys) * per, user * per, sys * per
        }
    ' "$out/h2load.txt" >>"$out/results.txt"
}

# Throughput.
: >"$out/results.txt"
for p in "${proxies[@]}"; do
    start_proxy "$p"
    warm_up "${port[$p]}"
done
for round in $(seq "$ROUNDS"); do
    for conns in $CONNS; do
        # Rotate the order, so that no proxy always follows the same one.
        for i in 0 1 2; do
            p=${proxies[$(((round + i) % 3))]}
            h2load_record "$p" "$conns" "$round" "${pid[$p]}" "http://127.0.0.1:${port[$p]}/"
            if ! kill -0 "${pid[$p]}" 2>/dev/null; then
                wait "${pid[$p]}" && status=0 || status=$?
                echo "bench: $p exited (status $status) during h2load -c $conns, round $round;" \
                    "restarting it (stderr: $out/h2-$p.err)" >&2
                start_proxy "$p"
            fi
        done
    done
    echo "round $round of $ROUNDS done" >&2
done
for p in "${proxies[@]}"; do stop_proxy "$p"; done

echo
echo "== h2load -c CONNS -m $STREAMS -t $H2LOAD_THREADS, GET / (HTTP/2 prior knowledge) to an HTTP/1.1"
echo "   upstream; one worker each; median of $ROUNDS rounds of ${DURATION}s; mean latency in ms,"
echo "   usr/sys = CPU microseconds per request"
printf "%5s | %8s %6s %6s %6s | %8s %6s %6s %6s | %8s %6s %6s %6s | %-11s | %-11s\n" \
    "" sluice mean usr sys nginx mean usr sys haproxy mean usr sys " vs nginx" " vs haproxy"
printf "%5s | %29s | %29s | %29s | %5s %5s | %5s %5s\n" conns "" "" "" "rps x" "usr x" "rps x" "usr x"
for conns in $CONNS; do
    row=()
    for p in "${proxies[@]}"; do
        for col in $COL_RPS $COL_MEAN $COL_USER $COL_SYS; do
            row+=("$(col_median "$p" GET "$conns" "$col")")
        done
    done
    for p in nginx haproxy; do
        for col in $COL_RPS $COL_USER; do
            row+=("$(paired_ratio sluice "$p" GET "$conns" "$col")")
        done
    done
    printf "%5s | %8.0f %6.2f %6.2f %6.2f | %8.0f %6.2f %6.2f %6.2f | %8.0f %6.2f %6.2f %6.2f | %5.2f %5.2f | %5.2f %5.2f\n" \
        "$conns" "${row[@]}"
done
echo
echo "targets, sluice/nginx (median of the rounds' ratios):"
for conns in $CONNS; do
    rps_x=$(paired_ratio sluice nginx GET "$conns" $COL_RPS)
    usr_x=$(paired_ratio sluice nginx GET "$conns" $COL_USER)
    awk -v c="$conns" -v r="$rps_x" -v u="$usr_x" 'BEGIN {
        if (r == 0) { printf "  -c %-4s sluice completed no requests\n", c; exit }
        printf "  -c %-4s req/s %.2fx (target >= 1.00x: %s)   user CPU per request %.2fx (target <= 0.75x: %s)\n",
            c, r, (r >= 1.0) ? "met" : "MISSED", u, (u <= 0.75) ? "met" : "MISSED" }'
done
bad=$(awk -v col=$COL_BAD -v req=$COL_REQUESTS '$col > 0 || $req == 0' "$out/results.txt" | wc -l)
[ "$bad" -eq 0 ] || echo "warning: $bad runs saw failed, errored or non-2xx requests, or none" \
    "(see $out/results.txt and $out/h2load-*.log)"

# A large download to a slow reader: sluice's memory must not hold the body.
if [ -n "$DOWNLOAD" ]; then
    start_proxy sluice
    warm_up "$SL_PORT"
    before=$(rss_kib "${pid[sluice]}")
    max=$before
    "$PYTHON" "$root/bench/h2_clients.py" download 127.0.0.1 "$SL_PORT" /h2-big.bin "$size" \
        "$rate" "$WINDOW" >"$out/h2-download.txt" 2>&1 &
    client=$!
    while kill -0 "$client" 2>/dev/null; do
        r=$(rss_kib "${pid[sluice]}" 2>/dev/null) || break
        [ "$r" -le "$max" ] || max=$r
        sleep 0.1
    done
    if wait "$client"; then result=complete; else result=FAILED; fi
    read -r status got secs <"$out/h2-download.txt" || true
    echo
    echo "== $DOWNLOAD ($size bytes) through sluice over HTTP/2, client windows $WINDOW bytes,"
    echo "   reading at most $RATE/s"
    echo "  download: $result (status ${status:-none}, ${got:-0} of $size bytes in ${secs:-?}s)"
    awk -v b="$before" -v m="$max" 'BEGIN {
        g = (m - b) / 1024
        printf "  sluice VmRSS: %d kB before, %d kB at most during: grew %.2f MiB (target <= 8 MiB: %s)\n",
            b, m, g, (g <= 8) ? "met" : "MISSED" }'
    stop_proxy sluice
    rm -f "$big"
fi

# Idle connections: resident memory each costs, fresh processes.
if [ -n "$IDLE" ]; then
    echo
    echo "== $IDLE idle HTTP/2 connections, each after one GET (VmRSS of the proxy's process)"
    for p in "${proxies[@]}"; do
        start_proxy "$p"
        warm_up "${port[$p]}"
        sleep 0.5
        m=$(mem_pid "$p")
        before=$(rss_kib "$m")
        coproc idle_client { "$PYTHON" "$root/bench/h2_clients.py" idle 127.0.0.1 "${port[$p]}" "$IDLE"; }
        read -r _ ok <&"${idle_client[0]}" || ok=0
        sleep 0.5
        after=$(rss_kib "$m")
        wfd=${idle_client[1]}
        exec {wfd}>&-
        wait "$idle_client_PID" 2>/dev/null || true
        awk -v p="$p" -v b="$before" -v a="$after" -v n="$IDLE" -v ok="$ok" 'BEGIN {
            printf "  %-8s %7d kB -> %7d kB  %6.0f bytes per connection  (%d of %d answered 200)\n",
                p, b, a, (a - b) * 1024 / n, ok, n }'
        stop_proxy "$p"
    done
fi
echo
echo "rps x, usr x = sluice/other, the median of each round's ratio: rps higher is better, usr lower"
