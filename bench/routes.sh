#!/usr/bin/env bash
# What the number of routes costs: sluice with 1 path_prefix route, with 1000 path_prefix
# routes and with 1000 path_regex routes, each request matching the last route, each route
# with one token_bucket limit that never rejects, so that every request is routed, decided
# and proxied.
#
#   bench/routes.sh        (DURATION=3 ROUNDS=7 CONNS=32 WRK_THREADS=1 ROUTES=1000)
#
# Builds sluice in release mode (build-release/), starts an nginx upstream answering
# `return 200` and three sluice instances (1 worker each, access logs off), then drives
# them with wrk in interleaved rounds. Prints the median req/s, p50, p99 and CPU time per
# request of each, and the median of each round's ratio against the 1-route instance of the
# same round: routing whose cost does not grow with the routes gives ratios near 1.
# Then, figures the machine's load does not move: instructions per request under callgrind
# (CG_REQUESTS requests on one keep-alive connection, counted inside sl_engine_decide and
# its part in sl_route_match) for 1 and ROUTES path_regex routes, and the time `sluice -t`
# takes to load LOAD_ROUTES (10000) path_prefix and path_regex routes (CG=0 or LOAD=0 skip).
# Temporary files live in bench/out/routes/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/out/routes
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-7}
CONNS=${CONNS:-32}
ROUTES=${ROUTES:-1000}
export WRK_THREADS=${WRK_THREADS:-1}
UP_PORT=${UP_PORT:-18391}
ONE_PORT=${ONE_PORT:-18392}
PREFIX_PORT=${PREFIX_PORT:-18393}
REGEX_PORT=${REGEX_PORT:-18394}
CG_PORT=${CG_PORT:-18395}
CG=${CG:-1}
CG_REQUESTS=${CG_REQUESTS:-2000}
LOAD=${LOAD:-1}
LOAD_ROUTES=${LOAD_ROUTES:-10000}

. bench/lib.sh
bench_setup "nginx wrk" "$UP_PORT" "$ONE_PORT" "$PREFIX_PORT" "$REGEX_PORT" "$CG_PORT"
rm -f "$out"/*.txt

nginx_conf upstream 1 "server {
        listen 127.0.0.1:$UP_PORT reuseport backlog=4096;
        location / { return 200 \"ok\n\"; }
    }"
start_nginx upstream
wait_port "$UP_PORT"

# write_config NAME PORT COUNT KIND: COUNT routes r0..r(COUNT-1) matching /rI/... by KIND.
write_config() {
    local name=$1 port=$2 count=$3 kind=$4 i
    {
        cat <<YAML
listen: "127.0.0.1:$port"
workers: 1
admin:
  listen: "off"
upstream:
  url: "http://127.0.0.1:$UP_PORT"
  keepalive: 512
access_log: off
log_level: warn
routes:
YAML
        for ((i = 0; i < count; i++)); do
            if [ "$kind" = regex ]; then
                match="path_regex: \"^/r$i/[0-9]+\$\""
            else
                match="path_prefix: \"/r$i\""
            fi
            # printf, a builtin: a process per route makes 10 000 routes take minutes.
            printf '  - name: r%s\n    match: {%s}\n    limits:\n      - {name: open, %s}\n' \
                "$i" "$match" "algorithm: token_bucket, rate: 100000000/s, key: route"
        done
    } >"$out/$name.yaml"
}

# sluice_config NAME PORT COUNT KIND: writes the file, prints its index, starts sluice.
sluice_config() {
    local name=$1
    write_config "$@"
    "$root/build-release/sluice" -t -c "$out/$name.yaml" | grep -v '^configuration ok' |
        sed "s/^/$name: /"
    "$root/build-release/sluice" -c "$out/$name.yaml" 2>"$out/$name.err" &
    pids+=($!)
    eval "${name}_pid=$!"
}

sluice_config one "$ONE_PORT" 1 prefix
sluice_config prefix "$PREFIX_PORT" "$ROUTES" prefix
sluice_config regex "$REGEX_PORT" "$ROUTES" regex
last=$((ROUTES - 1))
declare -A url=(
    [one]="http://127.0.0.1:$ONE_PORT/r0/42"
    [prefix]="http://127.0.0.1:$PREFIX_PORT/r$last/42"
    [regex]="http://127.0.0.1:$REGEX_PORT/r$last/42"
)
declare -A pid=([one]=$one_pid [prefix]=$prefix_pid [regex]=$regex_pid)
# Compiling 1000 patterns takes seconds.
for port in "$ONE_PORT" "$PREFIX_PORT" "$REGEX_PORT"; do wait_port "$port" 120; done
# The request must reach the last route, and be admitted by its limit.
for name in one prefix regex; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "${url[$name]}")
    [ "$code" = 200 ] || { echo "bench: ${url[$name]} answered $code" >&2; exit 1; }
done

: >"$out/results.txt"
cases=(one prefix regex)
for round in $(seq "$ROUNDS"); do
    # Rotate who goes first, so that none always runs on a warmer or quieter machine.
    for j in 0 1 2; do
        name=${cases[$(((round + j) % 3))]}
        wrk_record "$name" routes "$CONNS" "$round" "${pid[$name]}" "${url[$name]}"
    done
    echo "round $round of $ROUNDS done" >&2
done

echo
echo "== routing, 1 worker, wrk -t$WRK_THREADS -c$CONNS  (median of $ROUNDS rounds of ${DURATION}s; latency in ms, cpu in us per request)"
printf "%-22s | %9s %7s %7s %6s | %7s %7s\n" case "req/s" p50 p99 cpu "rps x" "cpu x"
for name in one prefix regex; do
    case $name in
    one) label="1 path_prefix" ;;
    prefix) label="$ROUTES path_prefix" ;;
    regex) label="$ROUTES path_regex" ;;
    esac
    printf "%-22s | %9.0f %7.3f %7.3f %6.2f | %7.2f %7.2f\n" "$label" \
        "$(col_median "$name" routes "$CONNS" $COL_RPS)" \
        "$(col_median "$name" routes "$CONNS" $COL_P50)" \
        "$(col_median "$name" routes "$CONNS" $COL_P99)" \
        "$(col_median "$name" routes "$CONNS" $COL_CPU)" \
        "$(paired_ratio "$name" one routes "$CONNS" $COL_RPS)" \
        "$(paired_ratio "$name" one routes "$CONNS" $COL_CPU)"
done
echo
echo "rps x, cpu x = this case / 1 route, each round against the same round's 1-route run"
echo "(median of those ratios). sluice, wrk and the upstream share the machine's cores, and"
echo "other work on a shared machine moves the absolute figures more than the ratios."

# cg_case NAME COUNT: instructions per request with COUNT path_regex routes, the request
# matching the last.
cg_case() {
    local name=$1 count=$2 pid log=$out/cg-$1.log
    command -v valgrind >/dev/null || { echo "bench: valgrind not found" >&2; return 1; }
    write_config "cg-$name" "$CG_PORT" "$count" regex
    valgrind --tool=callgrind --callgrind-out-file="$out/cg-$name.out" \
        --toggle-collect=sl_engine_decide "$root/build-release/sluice" -c "$out/cg-$name.yaml" \
        2>"$log" &
    pid=$!
    pids+=($pid)
    wait_port "$CG_PORT" 600
    python3 - "$CG_PORT" "/r$((count - 1))/42" "$CG_REQUESTS" <<'PY'
import http.client, sys
port, target, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for _ in range(n):
    c.request("GET", target)
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
PY
    kill -TERM "$pid"
    wait "$pid" || true
    local total route
    total=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$log")
    route=$(callgrind_annotate --inclusive=yes "$out/cg-$name.out" 2>/dev/null |
        awk '/sl_route_match / { gsub(/,/, "", $1); print $1; exit }')
    printf "%-22s | %16.0f %14.0f\n" "$count path_regex" "$(ratio "$total" "$CG_REQUESTS")" \
        "$(ratio "${route:-0}" "$CG_REQUESTS")"
}

if [ "$CG" != 0 ]; then
    echo
    echo "== instructions per request (callgrind, $CG_REQUESTS requests on one connection)"
    printf "%-22s | %16s %14s\n" case sl_engine_decide sl_route_match
    cg_case one 1
    cg_case many "$ROUTES"
fi

if [ "$LOAD" != 0 ]; then
    echo
    echo "== configuration load time, $LOAD_ROUTES routes (sluice -t, wall seconds)"
    for kind in prefix regex; do
        write_config "load-$kind" "$CG_PORT" "$LOAD_ROUTES" "$kind"
        start=$(date +%s.%N)
        "$root/build-release/sluice" -t -c "$out/load-$kind.yaml" >"$out/load-$kind.txt"
        end=$(date +%s.%N)
        printf "%-22s | %8.2f s   %s\n" "$LOAD_ROUTES path_$kind" \
            "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" \
            "$(grep '^regex:' "$out/load-$kind.txt" || true)"
    done
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
