#!/usr/bin/env bash
# Memory per key, as a whole sluice process shows it: resident memory (VmRSS) before and
# after a flood of distinct keys, divided by the keys the store then holds.
#
#   bench/memory.sh       (KEYS=1000000 KEY_LEN=32 ALGORITHM=token_bucket WORKERS=2 CONNS=64
#                          MAX_BYTES=1g; BOUND=64m for the bounded run)
#
# Builds sluice in release mode (build-release/) and starts an nginx upstream answering
# `return 200`. wrk sends KEYS requests, each with its own X-Key of KEY_LEN digits, to a
# limit of ALGORITHM keyed on that header (1/1h: each key is admitted once and its state
# held for the hour; every request is proxied as in production), on a store bounded by
# max_keys 2·KEYS and MAX_BYTES so that nothing is evicted. Prints VmRSS before and after, the keys held and the bytes per key.
# Then a flood of twice the keys that fit against `max_bytes: BOUND`: prints the keys held,
# the evictions and how far resident memory grew past the bound.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/out
KEYS=${KEYS:-1000000}
KEY_LEN=${KEY_LEN:-32}
ALGORITHM=${ALGORITHM:-token_bucket}
WORKERS=${WORKERS:-2}
CONNS=${CONNS:-64}
MAX_BYTES=${MAX_BYTES:-1g}
BOUND=${BOUND:-64m}
UP_PORT=${UP_PORT:-18291}
SL_PORT=${SL_PORT:-18292}
ADMIN_PORT=${ADMIN_PORT:-18293}

. bench/lib.sh
bench_setup "nginx wrk curl" "$UP_PORT" "$SL_PORT" "$ADMIN_PORT"

nginx_conf memory-upstream 1 "server { listen 127.0.0.1:$UP_PORT reuseport; location / { return 200 \"ok\n\"; } }"
start_nginx memory-upstream
wait_port "$UP_PORT"

# Each wrk thread counts through its own range of keys, every request a new key; past its
# range it repeats one key, and wrk is stopped once the store holds the keys.
cat >"$out/memory-keys.lua" <<LUA
local threads, counter = {}, 0
function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end
function init(args)
    per = math.floor($KEYS / ${WRK_THREADS:-2})
    counter = id * per
    last = counter + per
end
function request()
    counter = counter + 1
    if counter > last then counter = last end
    return wrk.format(nil, nil, {["X-Key"] = string.format("%0${KEY_LEN}d", counter)})
end
LUA

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
sent() {
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
        awk '$1 ~ /^sluice_requests_total/ { n += $2 } END { print n + 0 }'
}
metric() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

run() { # max_bytes max_keys keys-to-send
    cat >"$out/memory-sluice.yaml" <<YAML
listen: "127.0.0.1:$SL_PORT"
workers: $WORKERS
admin:
  listen: "127.0.0.1:$ADMIN_PORT"
upstream:
  url: "http://127.0.0.1:$UP_PORT"
  keepalive: 256
memory:
  max_keys: $2
  max_bytes: $1
access_log: off
log_level: warn
routes:
  - name: api
    match: {path_prefix: /}
    limits:
      - name: per_key
        algorithm: $ALGORITHM
        rate: 1/1h
        key: "header:X-Key"
YAML
    "$root/build-release/sluice" -c "$out/memory-sluice.yaml" 2>"$out/memory-sluice.err" &
    local pid=$!
    pids+=($pid)
    wait_port "$SL_PORT"
    wait_port "$ADMIN_PORT"
    # Warm up on a few keys: connections, buffers, the pool.
    wrk -t2 -c"$CONNS" -d1s -H "X-Key: warm" "http://127.0.0.1:$SL_PORT/" >/dev/null
    local before after base
    before=$(rss_kib "$pid")
    base=$(sent)
    sed "s/^    per = .*/    per = math.floor($3 \/ ${WRK_THREADS:-2})/" "$out/memory-keys.lua" >"$out/memory-run.lua"
    wrk -t"${WRK_THREADS:-2}" -c"$CONNS" -d600s -s "$out/memory-run.lua" "http://127.0.0.1:$SL_PORT/" \
        >"$out/memory-wrk.txt" 2>&1 &
    local wrk_pid=$!
    while kill -0 "$wrk_pid" 2>/dev/null; do
        sleep 1
        # Done once the store holds them all, or (when it cannot: bounded) once every
        # wrk thread must have gone through its range.
        [ "$(metric sluice_memory_keys)" -lt "$3" ] || break
        [ $(($(sent) - base)) -lt $(($3 * 11 / 10 + 1000)) ] || break
    done
    kill "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" 2>/dev/null || true
    after=$(rss_kib "$pid")
    local keys evictions
    keys=$(metric sluice_memory_keys)
    evictions=$(metric sluice_memory_evictions_total)
    echo "$before $after ${keys:-0} ${evictions:-0}"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

read -r before after keys evictions < <(run "$MAX_BYTES" $((2 * KEYS)) "$KEYS")
echo "$ALGORITHM, keys of $KEY_LEN bytes, $WORKERS workers"
echo "  unbounded: VmRSS $before kB -> $after kB with $keys keys held ($evictions evicted):" \
    "$(awk -v a="$after" -v b="$before" -v k="$keys" 'BEGIN { printf "%.1f", (a - b) * 1024 / k }') bytes per key"
bound_bytes=$(numfmt --from=iec "${BOUND^^}")
read -r before after keys evictions < <(run "$BOUND" $((8 * KEYS)) $((2 * bound_bytes / 50)))
echo "  max_bytes $BOUND: VmRSS $before kB -> $after kB, $keys keys held, $evictions evicted:" \
    "grew $(awk -v a="$after" -v b="$before" -v m="$bound_bytes" 'BEGIN { printf "%.2f MiB (%+.2f MiB past the bound)", (a - b) / 1024, ((a - b) * 1024 - m) / 1048576 }')"
