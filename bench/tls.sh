#!/usr/bin/env bash
# TLS termination: sluice next to nginx (`ssl` and `proxy_pass`), each with one worker and
# the same ECDSA P-256 certificate, in front of one cleartext nginx upstream, on loopback.
#
#   bench/tls.sh     (DURATION=3 ROUNDS=5 CONNS="32 256" NEW_CONNS=32 IDLE=1000
#                     PYTHON=/usr/bin/python3)
#
# Builds sluice in release mode (build-release/), makes a throwaway CA and certificate with
# openssl, starts an nginx upstream answering `return 200`, then in interleaved rounds:
# - keep-alive HTTPS (wrk -c CONNS): req/s, p99, and user and system CPU per request of
#   each proxy's processes (from /proc), with the median of each round's ratio
#   sluice/nginx;
# - new connections (wrk -H 'Connection: close' -c NEW_CONNS): a handshake per request.
#   wrk keeps each connection's session (SSL_clear), so these are resumed handshakes after
#   the first; sluice's sluice_tls_handshakes_total says how many were which;
# - full handshakes: `openssl s_time -new` (one client, one connection at a time) for
#   DURATION seconds: connections per second and the proxy's CPU per connection;
# - IDLE TLS connections (fresh processes), each after one GET, then idle: VmRSS growth
#   per connection. IDLE= skips it.
# Temporary files live in bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/out
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-"32 256"}
NEW_CONNS=${NEW_CONNS:-32}
IDLE=${IDLE-1000}
PYTHON=${PYTHON:-/usr/bin/python3}
UP_PORT=${UP_PORT:-18571}
SL_PORT=${SL_PORT:-18572}
NG_PORT=${NG_PORT:-18573}
SL_ADMIN=${SL_ADMIN:-18574}

. bench/lib.sh
bench_setup "nginx wrk openssl curl $PYTHON" "$UP_PORT" "$SL_PORT" "$NG_PORT" "$SL_ADMIN"
ulimit -n "$(ulimit -Hn)"
rm -rf "$out"/*.txt "$out"/tls-*

# The certificate both proxies serve.
(cd "$out" &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tls-ca.key \
        -out tls-ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tls-server.key \
        -out tls-server.csr -subj /CN=localhost 2>/dev/null &&
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >tls-ext &&
    openssl x509 -req -in tls-server.csr -CA tls-ca.pem -CAkey tls-ca.key -CAcreateserial \
        -days 2 -extfile tls-ext -out tls-server.pem 2>/dev/null)

nginx_conf upstream 2 "server {
        listen 127.0.0.1:$UP_PORT reuseport backlog=4096;
        location / { return 200 \"ok\n\"; }
    }"
start_nginx upstream
wait_port "$UP_PORT"

cat >"$out/tls-sluice.yaml" <<YAML
listen:
  - address: "127.0.0.1:$SL_PORT"
    tls:
      certificates:
        - {cert: $out/tls-server.pem, key: $out/tls-server.key}
workers: 1
admin:
  listen: "127.0.0.1:$SL_ADMIN"
upstream:
  url: "http://127.0.0.1:$UP_PORT"
  keepalive: 1024
client:
  max_connections: 20000
access_log: off
log_level: warn
routes:
  - name: all
    match:
      path_prefix: "/"
    limits: []
YAML
# nginx as sluice is set up: TLS 1.2 and 1.3, tickets, no session cache, HTTP/1.1 only.
nginx_conf tls-proxy 1 "upstream app { server 127.0.0.1:$UP_PORT; keepalive 1024; }
    server {
        listen 127.0.0.1:$NG_PORT ssl reuseport backlog=4096;
        ssl_certificate $out/tls-server.pem;
        ssl_certificate_key $out/tls-server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets on;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }"

"$root/build-release/sluice" -c "$out/tls-sluice.yaml" 2>"$out/tls-sluice.err" &
sl_pid=$!
pids+=($sl_pid)
start_nginx tls-proxy
ng_pid=$!
wait_port "$SL_PORT"
wait_port "$NG_PORT"
declare -A proxy_pid=([sluice]=$sl_pid [nginx]=$ng_pid)
declare -A proxy_port=([sluice]=$SL_PORT [nginx]=$NG_PORT)
: >"$out/results.txt"

handshakes() { # result
    curl -s "http://127.0.0.1:$SL_ADMIN/metrics" |
        awk -v r="$1" '$1 == "sluice_tls_handshakes_total{result=\"" r "\"}" { print $2 }'
}

# openssl s_time -new for DURATION s; appends "label new-full 1 round conns/s cpu user sys"
# with the proxy's CPU microseconds per connection.
s_time_record() { # label round pid port
    local before after n
    before=($(cpu_ticks "$3"))
    n=$(openssl s_time -connect "127.0.0.1:$4" -new -time "$DURATION" 2>/dev/null |
        awk '/connections in [0-9.]+s;/ { print $1; exit }')
    after=($(cpu_ticks "$3"))
    awk -v label="$1" -v round="$2" -v n="${n:-0}" -v d="$DURATION" \
        -v user=$((after[0] - before[0])) -v sys=$((after[1] - before[1])) \
        -v hz="$(getconf CLK_TCK)" 'BEGIN {
            per = (n > 0) ? 1e6 / hz / n : 0
            printf "%s new-full 1 %s %.1f 0 0 0 %d %.2f %.3f %.3f\n", label, round, n / d, n,
                (user + sys) * per, user * per, sys * per
        }' >>"$out/results.txt"
}

ok_before=$(handshakes ok)
resumed_before=$(handshakes resumed)
for round in $(seq "$ROUNDS"); do
    order=(sluice nginx)
    [ $((round % 2)) -eq 1 ] || order=(nginx sluice)
    for p in "${order[@]}"; do
        for conns in $CONNS; do
            wrk_record "$p" keepalive "$conns" "$round" "${proxy_pid[$p]}" \
                "https://127.0.0.1:${proxy_port[$p]}/"
        done
        wrk_record "$p" new "$NEW_CONNS" "$round" "${proxy_pid[$p]}" \
            "https://127.0.0.1:${proxy_port[$p]}/" -H "Connection: close"
        s_time_record "$p" "$round" "${proxy_pid[$p]}" "${proxy_port[$p]}"
    done
    echo "round $round of $ROUNDS done" >&2
done
ok_after=$(handshakes ok)
resumed_after=$(handshakes resumed)

echo
echo "== one worker each, median of $ROUNDS rounds of ${DURATION}s (cpu: us per request or"
echo "   connection, user + system; ratios: the median of each round's sluice/nginx)"
printf "%-10s %5s | %9s %6s %6s %6s | %9s %6s %6s %6s | %5s %5s %5s\n" case conns \
    sluice p99 usr sys nginx p99 usr sys "rps x" "usr x" "cpu x"
for row in $(for c in $CONNS; do echo "keepalive:$c"; done) "new:$NEW_CONNS" "new-full:1"; do
    k=${row%%:*} c=${row##*:}
    vals=()
    for p in sluice nginx; do
        for col in $COL_RPS $COL_P99 $COL_USER $COL_SYS; do
            vals+=("$(col_median "$p" "$k" "$c" "$col")")
        done
    done
    for col in $COL_RPS $COL_USER $COL_CPU; do
        vals+=("$(paired_ratio sluice nginx "$k" "$c" "$col")")
    done
    printf "%-10s %5s | %9.0f %6.2f %6.1f %6.1f | %9.0f %6.2f %6.1f %6.1f | %5.2f %5.2f %5.2f\n" \
        "$k" "$c" "${vals[@]}"
done
echo "sluice's handshakes during the runs: $((ok_after - ok_before)) full," \
    "$((resumed_after - resumed_before)) resumed"

if [ -n "$IDLE" ]; then
    echo
    echo "== $IDLE idle TLS connections, each after one GET (VmRSS of the proxy's process)"
    for p in sluice nginx; do
        m=${proxy_pid[$p]}
        [ "$p" = nginx ] && m=$(pgrep -P "$ng_pid" | head -1 || echo "$ng_pid")
        before=$(awk '/^VmRSS:/ { print $2 }' "/proc/$m/status")
        coproc idle_client {
            "$PYTHON" - "${proxy_port[$p]}" "$IDLE" <<'PY'
import socket, ssl, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
held, ok = [], 0
for _ in range(n):
    t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)))
    t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    ok += t.recv(4096).startswith(b"HTTP/1.1 200")
    held.append(t)
print("held", ok, flush=True)
sys.stdin.readline()
PY
        }
        read -r _ ok <&"${idle_client[0]}" || ok=0
        after=$(awk '/^VmRSS:/ { print $2 }' "/proc/$m/status")
        echo "" >&"${idle_client[1]}"
        wait "$idle_client_PID" 2>/dev/null || true
        awk -v p="$p" -v ok="$ok" -v b="$before" -v a="$after" -v n="$IDLE" 'BEGIN {
            printf "%-7s %5d/%d served  VmRSS %7d -> %7d KiB  %6.1f KiB per connection\n",
                p, ok, n, b, a, (a - b) / n }'
    done
fi
