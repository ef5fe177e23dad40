#!/usr/bin/env bash
# Per-consumer rates at scale: loading a LINES-line rates file, and a reload that re-reads
# it while CONNS connections run.
#
#   bench/rates.sh     (LINES=1000000 CONNS=256 DURATION=12 RELOAD_AT=4 ROUNDS=3)
#
# Builds sluice in release mode (build-release/) and writes a LINES-line VALUE<TAB>RATE
# file, then:
# - `sluice -t` on a configuration whose limit reads it: the wall and CPU time of the
#   whole check, load included (median of ROUNDS); and a running sluice's resident memory
#   with the table loaded against without it;
# - wrk -c CONNS for DURATION seconds through sluice to an nginx upstream, with requests
#   keyed by values of the file, twice per round: once as it is, once with a SIGHUP at
#   RELOAD_AT seconds after the file changed (so the reload reads it all again). Prints the
#   maximum and p99 latency of each (median of ROUNDS), and whether the reload was counted.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/out
LINES=${LINES:-1000000}
CONNS=${CONNS:-256}
DURATION=${DURATION:-12}
RELOAD_AT=${RELOAD_AT:-4}
ROUNDS=${ROUNDS:-3}
UP_PORT=${UP_PORT:-18581}
SL_PORT=${SL_PORT:-18582}
AD_PORT=${AD_PORT:-18583}

. bench/lib.sh
bench_setup "nginx wrk curl" "$UP_PORT" "$SL_PORT" "$AD_PORT"

rates=$out/rates-consumers.tsv
rm -f "$out/rates-load.txt" "$out/rates-reload.txt"
awk -v n="$LINES" 'BEGIN { for (i = 0; i < n; i++) printf "customer-%07d\t%d/1m\n", i, 100 + i % 900 }' >"$rates"

nginx_conf rates-upstream 1 "server {
        listen 127.0.0.1:$UP_PORT reuseport backlog=4096;
        location / { return 200 \"ok\n\"; }
    }"
start_nginx rates-upstream
wait_port "$UP_PORT"

write_config() { # file rates_line
    cat >"$1" <<YAML
listen: "127.0.0.1:$SL_PORT"
workers: 1
admin:
  listen: "127.0.0.1:$AD_PORT"
upstream:
  url: "http://127.0.0.1:$UP_PORT"
client:
  max_connections: 10000
access_log: off
log_level: warn
routes:
  - name: api
    match:
      path_prefix: "/"
    limits:
      - name: per_customer
        algorithm: token_bucket
        rate: 100000/1s
        key: "header:X-Customer"
$2
YAML
}
write_config "$out/rates.yaml" "        rates: {by: key, file: $rates}"
write_config "$out/rates-none.yaml" ""

# Loading: sluice -t reads and checks the whole configuration, the file included.
for r in $(seq "$ROUNDS"); do
    /usr/bin/time -f "%e %U %S" "$root/build-release/sluice" -t -c "$out/rates.yaml" \
        2>>"$out/rates-load.txt" >/dev/null
done
# Memory: a running sluice's resident set with the table, against without it.
rss_running() { # config: VmRSS in kB once it serves
    "$root/build-release/sluice" -c "$1" 2>>"$out/rates-sluice.err" &
    local p=$!
    wait_port "$SL_PORT" 30
    awk '/^VmRSS:/ { print $2 }' "/proc/$p/status"
    kill "$p"
    wait "$p" 2>/dev/null || true
}
with=$(rss_running "$out/rates.yaml")
without=$(rss_running "$out/rates-none.yaml")
echo "== sluice -t with a $LINES-line rates file ($(du -h "$rates" | cut -f1)), median of $ROUNDS"
awk '{ print $1 }' "$out/rates-load.txt" | median | awk '{ printf "  wall %.2f s", $1 }'
awk '{ print $2 + $3 }' "$out/rates-load.txt" | median | awk '{ printf ", CPU %.2f s\n", $1 }'
awk -v w="$with" -v o="$without" -v n="$LINES" 'BEGIN {
    printf "  a running sluice: %d kB resident against %d kB without the file, %.1f bytes per line\n",
        w, o, (w - o) * 1024 / n }'
echo "  (each line's value is 16 bytes: customer-NNNNNNN)"

# A Lua script for wrk: each request names one customer of the file.
cat >"$out/rates.lua" <<LUA
local n = $LINES
math.randomseed(os.time())
request = function()
  local c = string.format("customer-%07d", math.random(0, n - 1))
  return wrk.format("GET", "/", { ["X-Customer"] = c })
end
LUA

latency_ms() { # wrk output, field (Max or 99%): milliseconds
    awk -v f="$2" '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v
        }
        f == "Max" && $1 == "Latency" { print ms($4) }
        f == "99%" && $1 == "99%" { print ms($2) }' "$1"
}

: >"$out/rates-reload.txt"
for r in $(seq "$ROUNDS"); do
    for mode in steady reload; do
        "$root/build-release/sluice" -c "$out/rates.yaml" 2>>"$out/rates-sluice.err" &
        sl=$!
        pids+=("$sl")
        wait_port "$SL_PORT"
        wrk -t2 -c"$CONNS" -d"$DURATION"s --latency -s "$out/rates.lua" \
            "http://127.0.0.1:$SL_PORT/" >"$out/rates-wrk.txt" 2>&1 &
        w=$!
        if [ "$mode" = reload ]; then
            sleep "$RELOAD_AT"
            sed -i '1s/\t[0-9]*\/1m$/\t999\/1m/' "$rates" # a change: the whole file is read again
            kill -HUP "$sl"
        fi
        wait "$w"
        reloads=$(curl -s "http://127.0.0.1:$AD_PORT/metrics" |
            awk '/^sluice_config_reloads_total\{result="success"\}/ { print $2 }')
        kill "$sl"
        wait "$sl" 2>/dev/null || true
        echo "$mode $r $(latency_ms "$out/rates-wrk.txt" Max) $(latency_ms "$out/rates-wrk.txt" 99%)" \
            "$(awk '/Requests\/sec/ { print $2 }' "$out/rates-wrk.txt") ${reloads:-0}" >>"$out/rates-reload.txt"
    done
done
echo
echo "== wrk -c $CONNS for ${DURATION}s, keys from the file; SIGHUP re-reading it at ${RELOAD_AT}s (median of $ROUNDS)"
for mode in steady reload; do
    row=()
    for col in 3 4 5 6; do
        row+=("$(awk -v m="$mode" -v c="$col" '$1 == m { print $c }' "$out/rates-reload.txt" | median)")
    done
    printf "  %-7s max latency %7.1f ms   p99 %6.2f ms   %8.0f req/s   reloads counted %s\n" \
        "$mode" "${row[@]}"
done
