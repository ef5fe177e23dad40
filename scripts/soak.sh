#!/usr/bin/env bash
# A long run of sluice under steady, mixed load, watched for growth (not part of CI).
#   scripts/soak.sh [--asan] DURATION [OUT_DIR]        DURATION: 90s, 30m, 2h
# Starts the test upstream (tests/integration/upstream.py), a redis-server and sluice
# (build-release/, or with --asan or SOAK_BUILD=asan the sanitizer build in build-asan/ with
# LeakSanitizer on, which reports leaks when sluice exits) on free loopback ports, with a
# configuration using every path: allowed, limited (429), leaky-bucket delayed, memory and
# Redis stores, more distinct keys than memory.max_keys, keep-alive and new connections,
# request bodies, chunked and bodiless responses. Beside wrk's throttled load
# (scripts/soak/load.lua), slow and malformed clients run (scripts/soak/clients.py), the
# configuration is reloaded every SOAK_RELOAD_EVERY seconds (every third file broken),
# and redis-server is restarted every SOAK_REDIS_EVERY seconds.
# Every SOAK_INTERVAL seconds (default 10) it writes to OUT_DIR/series.csv (default
# bench/out/soak-BUILD/) sluice's RSS and open fds (/proc) and its sluice_connections_active
# and sluice_memory_keys. At the end scripts/soak/check.py prints the summary and fails
# (exit 1) if a series grows over the second half (its flatness rule), a request got an
# unexpected status, the reload counts differ, or a sanitizer reported anything.
# Load: SOAK_CONNECTIONS (16) wrk connections, each pausing about SOAK_PACE_MS (50) between
# requests: a few hundred requests a second, about half a core in all.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

build=${SOAK_BUILD:-release}
if [ "${1:-}" = "--asan" ]; then build=asan; shift; fi
duration=${1:?usage: scripts/soak.sh [--asan] DURATION [OUT_DIR]}
case $duration in
*h) seconds=$((${duration%h} * 3600)) ;;
*m) seconds=$((${duration%m} * 60)) ;;
*s) seconds=${duration%s} ;;
*) seconds=$duration ;;
esac
out=${2:-$root/bench/out/soak-$build}
interval=${SOAK_INTERVAL:-10}
reload_every=${SOAK_RELOAD_EVERY:-5}
redis_every=${SOAK_REDIS_EVERY:-60}
conns=${SOAK_CONNECTIONS:-16}
pace=${SOAK_PACE_MS:-50}
max_keys=2000

for tool in wrk redis-server redis-cli curl python3 cmake; do
    command -v "$tool" >/dev/null || { echo "soak: $tool not found (scripts/install-deps.sh --bench)" >&2; exit 1; }
done
mkdir -p "$out"
rm -f "$out"/*.csv "$out"/*.txt "$out"/*.json "$out"/*.log

if [ "$build" = asan ]; then
    bdir=$root/build-asan
    cmake -S . -B "$bdir" -DSLUICE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null || exit 1
    # A small quarantine keeps RSS a measure of sluice rather than of the allocator.
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=32:strict_string_checks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
else
    bdir=$root/build-release
    cmake -S . -B "$bdir" -DCMAKE_BUILD_TYPE=Release -DSLUICE_TESTS=OFF >/dev/null || exit 1
fi
cmake --build "$bdir" -j2 --target sluice >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }

# Four free loopback ports (the kernel's choice, released just before use).
read -r up_port redis_port port admin_port < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "${sluice_pid:-}" ] && kill "$sluice_pid" 2>/dev/null
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
    wait 2>/dev/null || true
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "soak: nothing listens on port $1" >&2
    exit 1
}

start_redis() {
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$out" \
        --daemonize yes --logfile "$out/redis.log" --pidfile "$out/redis.pid" >/dev/null
    wait_port "$redis_port"
}

python3 tests/integration/upstream.py --listen "127.0.0.1:$up_port" >"$out/upstream.log" 2>&1 &
pids+=($!)
wait_port "$up_port"
start_redis

# The configuration; $1 is the rate of the `limited` route, so reloads change something.
write_config() { # rate file
    cat >"$2" <<CONF
listen: "127.0.0.1:$port"
workers: 2
admin:
  listen: "127.0.0.1:$admin_port"
upstream:
  url: "http://127.0.0.1:$up_port"
  timeout: 10s
  keepalive: 16
client:
  header_timeout: 2s
  idle_timeout: 30s
  max_header_bytes: 8k
  max_body_bytes: 64k
redis:
  url: "redis://127.0.0.1:$redis_port/0"
  timeout: 50ms
  key_prefix: "soak:"
  deny_cache: 1000
failure_mode: local
memory:
  max_keys: $max_keys
access_log: off
log_level: warn
routes:
  - name: items
    match: {path_prefix: "/api/items"}
    limits:
      - {name: per_ip, algorithm: token_bucket, rate: 100000/s, key: client_ip, store: memory}
  - name: limited
    match: {path: "/api/limited"}
    limits:
      - {name: all, algorithm: fixed_window, rate: $1, key: route, store: memory}
  - name: keys
    match: {path: "/api/keys"}
    limits:
      - {name: per_key, algorithm: sliding_window_counter, rate: 3/10m, key: "header:X-Api-Key", store: memory}
      - {name: per_key_shadow, algorithm: sliding_window, rate: 2/10m, key: "header:X-Api-Key", store: memory, shadow: true}
  - name: delayed
    match: {path: "/api/delayed"}
    limits:
      - {name: smooth, algorithm: leaky_bucket, rate: 10/s, burst: 4, key: route, store: memory}
  - name: shared
    match: {path: "/api/shared"}
    limits:
      - {name: per_key, algorithm: token_bucket, rate: 2/s, burst: 4, key: ["header:X-Api-Key", method], store: redis}
  - name: window
    match: {path: "/api/window"}
    limits:
      - {name: all, algorithm: sliding_window, rate: 20/s, key: route, store: redis}
  - name: uploads
    match: {path: "/upload", methods: [POST, PUT]}
    limits:
      - {name: per_ip, algorithm: fixed_window, rate: 100000/s, key: client_ip, store: memory}
CONF
}
conf=$out/sluice.yaml
write_config 30/s "$conf"
"$bdir/sluice" -t -c "$conf" >/dev/null || { "$bdir/sluice" -t -c "$conf"; exit 1; }
"$bdir/sluice" -c "$conf" >"$out/sluice.stdout" 2>"$out/sluice.stderr" &
sluice_pid=$!
wait_port "$port"
wait_port "$admin_port"
echo "soak: $build build, pid $sluice_pid, $duration; sluice :$port admin :$admin_port" \
    "upstream :$up_port redis :$redis_port; output in ${out#$root/}"

start=$(date +%s)
end=$((start + seconds))

wrk -t1 -c"$conns" -d"${seconds}s" --timeout 5s -s scripts/soak/load.lua \
    "http://127.0.0.1:$port" -- "$pace" >"$out/wrk.txt" 2>&1 &
wrk_pid=$!
python3 scripts/soak/clients.py "127.0.0.1:$port" "$seconds" "$out/clients.json" \
    >"$out/clients.log" 2>&1 &
clients_pid=$!

# Side loop: reloads (every third file broken) and Redis restarts; the upstream's request
# log is cleared so that it stays small.
side() {
    local n=0 good=0 broken=0 last_redis=$start now
    while [ "$(date +%s)" -lt "$end" ]; do
        sleep "$reload_every"
        n=$((n + 1))
        if [ $((n % 3)) -eq 0 ]; then
            write_config fast "$conf.new" && broken=$((broken + 1))
        else
            write_config "$((30 + n % 2 * 10))/s" "$conf.new" && good=$((good + 1))
        fi
        mv "$conf.new" "$conf"
        kill -HUP "$sluice_pid"
        echo "$good,$broken" >"$out/reloads.txt"
        curl -s -X POST "http://127.0.0.1:$up_port/__log/clear" >/dev/null
        now=$(date +%s)
        if [ $((now - last_redis)) -ge "$redis_every" ]; then
            redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1
            sleep 1
            start_redis
            last_redis=$now
        fi
    done
}
side >"$out/side.log" 2>&1 &
side_pid=$!
pids+=("$wrk_pid" "$clients_pid" "$side_pid")

metric() { awk -v m="$1" '$1 == m { print $2 + 0; f = 1 } END { if (!f) print 0 }' "$out/metrics.txt"; }
echo "t_s,rss_kb,fds,connections_active,memory_keys" >"$out/series.csv"
sample() {
    local t rss fds
    t=$(($(date +%s) - start))
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$sluice_pid/status" 2>/dev/null)
    fds=$(ls "/proc/$sluice_pid/fd" 2>/dev/null | wc -l)
    curl -s -m 5 "http://127.0.0.1:$admin_port/metrics" >"$out/metrics.txt"
    echo "$t,${rss:-0},$fds,$(metric sluice_connections_active),$(metric sluice_memory_keys)" >>"$out/series.csv"
}
while kill -0 "$wrk_pid" 2>/dev/null || [ "$(date +%s)" -lt "$end" ]; do
    sample
    tail -n 1 "$out/series.csv"
    kill -0 "$sluice_pid" 2>/dev/null || { echo "soak: sluice died" >&2; break; }
    sleep "$interval"
done
wait "$wrk_pid" "$clients_pid" "$side_pid" 2>/dev/null
# Once the load has stopped, every connection must be gone: one sample more, kept apart
# from the series (a drop to idle at the end would hide growth from the fit).
sleep 2
head -n 1 "$out/series.csv" >"$out/after.csv"
sample
tail -n 1 "$out/series.csv" >>"$out/after.csv"
sed -i '$d' "$out/series.csv"
cp "$out/metrics.txt" "$out/metrics-final.txt"

kill -TERM "$sluice_pid"
wait "$sluice_pid"
rc=$?
sluice_pid=
[ "$build" = asan ] && echo "soak: sluice exited with $rc (leaks are reported at exit)"

python3 scripts/soak/check.py --csv "$out/series.csv" --after "$out/after.csv" --wrk "$out/wrk.txt" \
    --clients "$out/clients.json" --stderr "$out/sluice.stderr" --exit-code "$rc" \
    --metrics "$out/metrics-final.txt" --reloads "$(cat "$out/reloads.txt" 2>/dev/null || echo 0,0)" \
    --max-keys "$max_keys" | tee "$out/summary.txt"
exit "${PIPESTATUS[0]}"
