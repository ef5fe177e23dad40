#!/usr/bin/env bash
# The rate limit service (ShouldRateLimit over cleartext HTTP/2) beside sluice's own proxied
# requests, in the same run, one worker each, all on loopback.
#
#   bench/rls.sh     (DURATION=3 ROUNDS=3 CONNS=32 STREAMS=10 BODIES=100 PER_BODY=100 PAR=4)
#
# Builds sluice in release mode (build-release/), starts an nginx upstream (`return 200`),
# a redis-server, and two sluices: "mem" (memory store) and "redis" (redis: store,
# deny_cache on). Prepared gRPC bodies (5-byte prefix + RateLimitRequest, written by
# tests/integration/rls_support.py) are sent by h2load (`-d FILE -H content-type:
# application/grpc -H te:trailers`). In interleaved rounds:
# - "rls":      mem, one descriptor never over its limit, h2load -c CONNS -m STREAMS;
# - "proxy":    mem, GET / through its proxy listener to nginx (HTTP/2 from the client);
# - "distinct": mem and redis, BODIES bodies of PER_BODY distinct descriptors each (10 000
#   distinct descriptors), PAR h2load processes at once, each going through its share of the
#   bodies with a fixed number of calls per body; reported as descriptors decided a second;
# - "flood":    mem and redis, one descriptor over its limit (1 an hour): with Redis, the
#   deny cache answers.
# Prints median calls (or descriptors) a second, user and system CPU microseconds per call
# of the sluice serving it (from /proc), and the targets: rls >= 1.5x proxy, distinct
# redis >= 0.8x mem, flood redis >= 1.0x mem. Temporary files: bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/out
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
STREAMS=${STREAMS:-10}
BODIES=${BODIES:-100}
PER_BODY=${PER_BODY:-100}
PAR=${PAR:-4}
UP_PORT=${UP_PORT:-18581}
MEM_PORT=${MEM_PORT:-18582}
MEM_RLS=${MEM_RLS:-18583}
RED_PORT=${RED_PORT:-18584}
RED_RLS=${RED_RLS:-18585}
REDIS_PORT=${REDIS_PORT:-18586}

. bench/lib.sh
bench_setup "nginx h2load redis-server python3" "$UP_PORT" "$MEM_PORT" "$MEM_RLS" "$RED_PORT" \
    "$RED_RLS" "$REDIS_PORT"
ulimit -n "$(ulimit -Hn)"
rm -rf "$out"/rls-*
mkdir -p "$out/rls-bodies" "$out/rls-config"

# ---- the files and the bodies

cat >"$out/rls-config/bench.yaml" <<'YAML'
domain: bench
descriptors:
  - key: one
    rate_limit: {unit: second, requests_per_unit: 4000000000}
  - key: client
    rate_limit: {unit: hour, requests_per_unit: 4000000000}
  - key: flood
    rate_limit: {unit: hour, requests_per_unit: 1}
YAML

/usr/bin/python3 - "$out/rls-bodies" "$BODIES" "$PER_BODY" <<'PY'
import os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "integration"))
from rls_support import framed, rate_limit_request
out, bodies, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def write(name, descriptors):
    with open(os.path.join(out, name), "wb") as f:
        f.write(framed(rate_limit_request("bench", descriptors)))
write("one.bin", [[("one", "k")]])
write("flood.bin", [[("flood", "k")]])
for b in range(bodies):
    write(f"distinct-{b}.bin", [[("client", f"c{b * per + d}")] for d in range(per)])
PY

# ---- the processes

nginx_conf rls-upstream 1 "server {
        listen 127.0.0.1:$UP_PORT reuseport backlog=4096;
        location / { return 200 \"ok\n\"; }
    }"
start_nginx rls-upstream
wait_port "$UP_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    >"$out/rls-redis.log" 2>&1 &
pids+=($!)
wait_port "$REDIS_PORT"

sluice_conf() { # name proxy_port rls_port [redis]
    cat >"$out/rls-$1.yaml" <<YAML
listen: "127.0.0.1:$2"
workers: 1
admin:
  listen: "off"
upstream:
  url: "http://127.0.0.1:$UP_PORT"
client:
  max_connections: 10000
access_log: off
log_level: warn
memory:
  max_keys: 1000000
rls:
  listen: "127.0.0.1:$3"
  config: "$out/rls-config"
routes:
  - name: all
    match:
      path_prefix: "/"
    limits: []
YAML
    if [ "${4:-}" = redis ]; then
        printf 'redis:\n  url: "redis://127.0.0.1:%s/0"\n  timeout: 200ms\n' "$REDIS_PORT" \
            >>"$out/rls-$1.yaml"
    fi
}
sluice_conf mem "$MEM_PORT" "$MEM_RLS"
sluice_conf redis "$RED_PORT" "$RED_RLS" redis
declare -A pid
for s in mem redis; do
    "$root/build-release/sluice" -c "$out/rls-$s.yaml" 2>>"$out/rls-$s.err" &
    pid[$s]=$!
    pids+=($!)
done
wait_port "$MEM_RLS"
wait_port "$RED_RLS"

rls_url() { echo "http://127.0.0.1:$1/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"; }
GRPC=(-H content-type:application/grpc -H te:trailers)

# ---- measuring

# One h2load run: "requests failed" from its summary.
h2load_summary() { # log
    awk '/^requests:/ { total = $6; bad = $10 + $12 } /^status codes:/ { bad += $5 + $7 + $9 }
         END { print total + 0, bad + 0 }' "$1"
}

# Appends "case sluice round per_second user_us sys_us bad" to $out/rls-results.txt, where
# per_second counts calls (or descriptors, for "distinct") and the CPU is per call.
#   record CASE SLUICE ROUND
record() {
    local kind=$1 s=$2 round=$3 p=${pid[$2]} before after t0 t1 total=0 bad=0 unit=1
    local log=$out/rls-h2load-$kind-$s-$round.log
    before=($(cpu_ticks "$p"))
    t0=$(date +%s.%N)
    case $kind in
    rls) h2load -c"$CONNS" -m"$STREAMS" -D"$DURATION" -d "$out/rls-bodies/one.bin" "${GRPC[@]}" \
        "$(rls_url "$MEM_RLS")" >"$log" 2>&1 || true ;;
    proxy) h2load -c"$CONNS" -m"$STREAMS" -D"$DURATION" "http://127.0.0.1:$MEM_PORT/" \
        >"$log" 2>&1 || true ;;
    flood) h2load -c"$CONNS" -m"$STREAMS" -D"$DURATION" -d "$out/rls-bodies/flood.bin" \
        "${GRPC[@]}" "$(rls_url "$([ "$s" = mem ] && echo "$MEM_RLS" || echo "$RED_RLS")")" \
        >"$log" 2>&1 || true ;;
    distinct)
        unit=$PER_BODY
        local port calls_per_body
        port=$([ "$s" = mem ] && echo "$MEM_RLS" || echo "$RED_RLS")
        # About DURATION seconds at a few thousand calls a second over all processes.
        calls_per_body=${CALLS_PER_BODY:-40}
        : >"$log"
        local workers=()
        for w in $(seq 0 $((PAR - 1))); do
            (for b in $(seq "$w" "$PAR" $((BODIES - 1))); do
                h2load -c4 -m4 -n"$calls_per_body" -d "$out/rls-bodies/distinct-$b.bin" \
                    "${GRPC[@]}" "$(rls_url "$port")" 2>&1 | grep -E '^(requests|status codes):' || true
            done) >"$log.$w" &
            workers+=($!)
        done
        wait "${workers[@]}"
        cat "$log".* >>"$log"
        ;;
    esac
    t1=$(date +%s.%N)
    after=($(cpu_ticks "$p"))
    read -r total bad < <(if [ "$kind" = distinct ]; then
        awk '/^requests:/ { t += $6; b += $10 + $12 } /^status codes:/ { b += $5 + $7 + $9 }
             END { print t + 0, b + 0 }' "$log"
    else h2load_summary "$log"; fi)
    awk -v kind="$kind" -v s="$s" -v round="$round" -v total="$total" -v bad="$bad" \
        -v unit="$unit" -v t0="$t0" -v t1="$t1" -v user=$((after[0] - before[0])) \
        -v sys=$((after[1] - before[1])) -v hz="$(getconf CLK_TCK)" 'BEGIN {
            per = (total > 0) ? 1e6 / hz / total : 0
            printf "%s %s %s %.1f %.3f %.3f %d\n", kind, s, round, total * unit / (t1 - t0),
                user * per, sys * per, bad
        }' >>"$out/rls-results.txt"
}

col() { # case sluice column
    awk -v k="$1" -v s="$2" -v c="$3" '$1 == k && $2 == s { print $c }' "$out/rls-results.txt" | median
}
pair() { # case_a sluice_a case_b sluice_b: median over rounds of a/b (per-second column)
    join <(awk -v k="$1" -v s="$2" '$1 == k && $2 == s { print $3, $4 }' "$out/rls-results.txt" | sort) \
        <(awk -v k="$3" -v s="$4" '$1 == k && $2 == s { print $3, $4 }' "$out/rls-results.txt" | sort) |
        awk '{ print ($3 > 0) ? $2 / $3 : 0 }' | median
}

: >"$out/rls-results.txt"
# Warm up: connections, the first keys, the scripts on Redis.
h2load -c4 -m10 -n2000 -d "$out/rls-bodies/one.bin" "${GRPC[@]}" "$(rls_url "$MEM_RLS")" >/dev/null 2>&1 || true
h2load -c4 -m10 -n2000 "http://127.0.0.1:$MEM_PORT/" >/dev/null 2>&1 || true
h2load -c4 -m10 -n2000 -d "$out/rls-bodies/flood.bin" "${GRPC[@]}" "$(rls_url "$RED_RLS")" >/dev/null 2>&1 || true
cases=("rls mem" "proxy mem" "distinct mem" "distinct redis" "flood mem" "flood redis")
for round in $(seq "$ROUNDS"); do
    n=${#cases[@]}
    for i in $(seq 0 $((n - 1))); do
        # shellcheck disable=SC2086
        record ${cases[$(((round + i) % n))]} "$round"
    done
    echo "round $round of $ROUNDS done" >&2
done

echo
echo "== ShouldRateLimit and proxied requests, one worker each; median of $ROUNDS rounds of ${DURATION}s"
echo "   h2load -c $CONNS -m $STREAMS; usr/sys = CPU microseconds per call of the sluice serving it"
printf "%-16s %-6s %12s %8s %8s\n" case store "per second" usr sys
for c in "${cases[@]}"; do
    read -r k s <<<"$c"
    what=calls
    [ "$k" = distinct ] && what="descr."
    printf "%-16s %-6s %12.0f %8.2f %8.2f  (%s)\n" "$k" "$s" "$(col "$k" "$s" 4)" \
        "$(col "$k" "$s" 5)" "$(col "$k" "$s" 6)" "$what"
done
echo
echo "targets (median of the rounds' paired ratios):"
r=$(pair rls mem proxy mem)
awk -v r="$r" 'BEGIN { printf "  ShouldRateLimit / proxied request      %.2fx (>= 1.5): %s\n", r, (r >= 1.5) ? "met" : "MISSED" }'
r=$(pair distinct redis distinct mem)
awk -v r="$r" 'BEGIN { printf "  10 000 descriptors, redis / memory     %.2fx (>= 0.8): %s\n", r, (r >= 0.8) ? "met" : "MISSED" }'
r=$(pair flood redis flood mem)
awk -v r="$r" 'BEGIN { printf "  over-limit flood, redis / memory       %.2fx (>= 1.0): %s\n", r, (r >= 1.0) ? "met" : "MISSED" }'
bad=$(awk '$7 > 0' "$out/rls-results.txt" | wc -l)
[ "$bad" -eq 0 ] || echo "warning: $bad runs saw failed calls (see $out/rls-results.txt and $out/rls-h2load-*.log)"
if ! command -v go >/dev/null; then
    echo "envoyproxy/ratelimit: not measured: no Go toolchain (golang-go is not installed)"
fi
