#!/usr/bin/env bash
# How fast `sluice replay` reads an access log: lines per second of wall time and of CPU time.
#
#   bench/replay.sh        (LINES=5000000 ROUNDS=3 KEY_FIELDS=0)
#
# Builds sluice in release mode (build-release/), writes a LINES-line access log in
# sluice's own format with bench/gen_access_log.py (KEY_FIELDS=1 adds key_fields to every
# line), and replays it ROUNDS times under a configuration with three limits (a sliding
# window log, a token bucket on a composite key, a fixed window). Reports each round's
# wall and CPU time, lines per wall second and per CPU second, and the median of each.
# replay reads and parses on one thread while it decides on another, so CPU time may
# exceed wall time; both depend on what else the machine runs (the load average is
# printed before and after). Temporary files live in bench/out/replay/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/out/replay
LINES=${LINES:-5000000}
ROUNDS=${ROUNDS:-3}
KEY_FIELDS=${KEY_FIELDS:-0}

mkdir -p "$out"
cmake -S "$root" -B "$root/build-release" -DCMAKE_BUILD_TYPE=Release -DSLUICE_TESTS=OFF >/dev/null
cmake --build "$root/build-release" -j2 >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }

log=$out/access-$LINES-$KEY_FIELDS.log
if [ ! -s "$log" ]; then
    echo "writing $LINES lines to $log"
    flags=()
    [ "$KEY_FIELDS" = 1 ] && flags+=(--key-fields)
    python3 bench/gen_access_log.py --lines "$LINES" "${flags[@]}" --out "$log"
fi
cat >"$out/sluice.yaml" <<'YAML'
upstream: {url: "http://127.0.0.1:1"}
routes:
  - name: api
    match: {path_prefix: /api}
    limits:
      - {name: per_ip, algorithm: sliding_window, rate: 5/1s, key: client_ip}
      - {name: burst, algorithm: token_bucket, rate: 100/s, burst: 200, key: [client_ip, path]}
  - name: rest
    limits:
      - {name: global, algorithm: fixed_window, rate: 100/s, key: route}
YAML
cat "$log" >/dev/null # into the page cache: measure parsing, not the disk
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$out/rounds"
for i in $(seq "$ROUNDS"); do
    /usr/bin/time -f "%e %U %S" -o "$out/time" \
        "$root/build-release/sluice" replay -c "$out/sluice.yaml" "$log" >"$out/report.txt"
    read -r wall user sys <"$out/time"
    awk -v l="$LINES" -v w="$wall" -v u="$user" -v s="$sys" -v i="$i" 'BEGIN {
        printf "round %d: %d lines, %.2f s wall, %.2f s CPU, %.0f lines per wall second, %.0f lines per CPU second\n",
               i, l, w, u + s, l / w, l / (u + s) }' | tee -a "$out/rounds"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "median: $(awk '{ print $(NF - 9) }' "$out/rounds" | median) lines per wall second," \
     "$(awk '{ print $(NF - 4) }' "$out/rounds" | median) lines per CPU second"
