#!/usr/bin/env bash
# Instructions sluice executes per request, counted by callgrind: independent of the
# machine's load, so two builds compare exactly where wrk's req/s would only be noisy.
#
#   bench/callgrind.sh [SLUICE_BINARY...]     (N1=2000 N2=10000 KEYS=1 TOP= DENY= H2=)
#
# For each binary (default build-release/sluice, built in release mode), runs sluice under
# callgrind twice, answering N1 and then N2 requests on /open (a leaky_bucket limit that
# never rejects, proxied to an nginx upstream, as bench/limits.sh's /open), and prints
# (Ir(N2) - Ir(N1)) / (N2 - N1): start-up and shutdown cancel out. KEYS > 1 keys the limit
# on an X-Key header drawn from KEYS values (1 = client_ip, one key); TOP=true|false sets
# admin.top (unset: the binary's default, so that a build before admin.top runs too).
# DENY=1 makes the limit 1/1h, so that every request but each key's first is answered 429
# by sluice itself: the cost of the 429 path. H2=1 sends the requests as HTTP/2 streams
# (h2load, prior knowledge, 50 at a time on one connection; KEYS=1 only). RATES=inline gives
# the limit `rates:` by the X-Key header with the requests' values listed inline at the
# limit's own rate, RATES=file the same from a 1 000 000-line file: the cost of a consumer's
# rate against the same limit without `rates:`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/out/callgrind
N1=${N1:-2000}
N2=${N2:-10000}
KEYS=${KEYS:-1}
DENY=${DENY:-}
TOP=${TOP:-}
H2=${H2:-}
RATES=${RATES:-}
UP_PORT=${UP_PORT:-18461}
SL_PORT=${SL_PORT:-18462}
AD_PORT=${AD_PORT:-18463}

. bench/lib.sh
bench_setup "nginx valgrind python3${H2:+ h2load}" "$UP_PORT" "$SL_PORT" "$AD_PORT"
if [ -n "$H2" ] && [ "$KEYS" -gt 1 ]; then
    echo "bench: H2=1 sends one X-Key on every request; use KEYS=1" >&2
    exit 1
fi
[ $# -gt 0 ] || set -- "$root/build-release/sluice"

nginx_conf upstream 1 "server {
        listen 127.0.0.1:$UP_PORT reuseport backlog=4096;
        location / { return 200 \"ok\n\"; }
    }"
start_nginx upstream
wait_port "$UP_PORT"

if [ "$KEYS" -gt 1 ]; then key='"header:X-Key"'; else key=client_ip; fi
if [ -n "$DENY" ]; then rate=1/1h burst=0; else rate=100000000/s burst=1000; fi
cat >"$out/sluice.yaml" <<YAML
listen: "127.0.0.1:$SL_PORT"
workers: 1
admin:
  listen: "127.0.0.1:$AD_PORT"
${TOP:+  top: $TOP}
upstream:
  url: "http://127.0.0.1:$UP_PORT"
access_log: off
log_level: warn
routes:
  - name: open
    match:
      path_prefix: "/open"
    limits:
      - name: per_key
        algorithm: leaky_bucket
        rate: $rate
        burst: $burst
        delay: false
        key: $key
YAML
case "$RATES" in
'') ;;
inline)
    values=$(for k in $(seq 0 $((KEYS - 1))); do printf 'k%d: %s, ' "$k" "$rate"; done)
    printf '        rates: {by: "header:X-Key", values: {%sother: 1/s}}\n' "$values" \
        >>"$out/sluice.yaml"
    ;;
file)
    python3 - "$out/consumers.tsv" "$KEYS" "$rate" <<'PY'
import sys
path, keys, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    for i in range(1000000 - keys):
        f.write("consumer-%07d\t%d/h\n" % (i, 100 + i % 7))
    for k in range(keys):
        f.write("k%d\t%s\n" % (k, rate))
PY
    printf '        rates: {by: "header:X-Key", file: %s}\n' "$out/consumers.tsv" \
        >>"$out/sluice.yaml"
    ;;
*)
    echo "bench: RATES is inline or file" >&2
    exit 1
    ;;
esac

# Sends exactly N requests, pipelined 50 at a time on one keep-alive connection, and
# checks every answer is a 200.
drive() { # n
    python3 - "$SL_PORT" "$1" "$KEYS" "$DENY" <<'PY'
import random, socket, sys
port, n, keys = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
want = b" 429 " if sys.argv[4] else b" 200 "
seen = set()
rng = random.Random(1)
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
sent = 0
while sent < n:
    batch = min(50, n - sent)
    batch_keys = [rng.randrange(keys) for _ in range(batch)]
    s.sendall(b"".join(b"GET /open HTTP/1.1\r\nHost: b\r\nX-Key: k%d\r\n\r\n" % k
                       for k in batch_keys))
    for k in batch_keys:
        status = f.readline()
        assert (b" 200 " if want == b" 429 " and k not in seen else want) in status, status
        seen.add(k)
        length = 0
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        f.read(length)
    sent += batch
PY
}

# The same over HTTP/2: N streams, 50 open at a time on one connection.
drive_h2() { # n
    local want="$1 2xx"
    [ -z "$DENY" ] || want="1 2xx, 0 3xx, $(($1 - 1)) 4xx"
    h2load -c1 -m50 -n"$1" "http://127.0.0.1:$SL_PORT/open" >"$out/h2load.txt" 2>&1 || true
    grep -q "status codes: $want," "$out/h2load.txt" ||
        { echo "bench: h2load did not see $want:" >&2; cat "$out/h2load.txt" >&2; exit 1; }
}

run() { # binary n -> Ir
    local log=$out/callgrind.log
    rm -f "$out"/callgrind.out.*
    valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out.%p" \
        "$1" -c "$out/sluice.yaml" 2>"$log" &
    local pid=$!
    for _ in $(seq 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$SL_PORT") 2>/dev/null && break
        sleep 0.1
    done
    if [ -n "$H2" ]; then drive_h2 "$2"; else drive "$2"; fi
    kill -TERM "$pid"
    wait "$pid" || true
    awk '/Collected :/ { print $NF }' "$log"
}

printf "%-50s %8s %12s %12s %10s\n" binary keys "Ir(N1)" "Ir(N2)" "Ir/request"
for bin in "$@"; do
    a=$(run "$bin" "$N1")
    b=$(run "$bin" "$N2")
    printf "%-50s %8s %12s %12s %10.0f\n" "$bin" "$KEYS" "$a" "$b" \
        "$(awk -v a="$a" -v b="$b" -v n1="$N1" -v n2="$N2" 'BEGIN { print (b - a) / (n2 - n1) }')"
done
