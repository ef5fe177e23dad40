#!/usr/bin/env bash
# Builds sluice and shows what it does: sluice (in-memory store) in front of a small upstream,
# a burst of requests whose 200s turn into 429s, the metrics that counted them, and the
# address of the dashboard that shows them (kept up until Ctrl-C on a terminal).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSLUICE_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

export SLUICE_LISTEN=127.0.0.1:${DEMO_PORT:-18080}
export SLUICE_ADMIN=127.0.0.1:${DEMO_ADMIN_PORT:-19901}
upstream_port=${DEMO_UPSTREAM_PORT:-13000}
export UPSTREAM_URL=http://127.0.0.1:$upstream_port
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # url
    for _ in $(seq 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
    echo "demo: $1 did not come up" >&2
    return 1
}

python3 tests/integration/upstream.py --listen "127.0.0.1:$upstream_port" >"$work/upstream.log" 2>&1 &
pids+=($!)
./build/sluice -c examples/demo.yaml 2>"$work/sluice.log" &
pids+=($!)
wait_for "http://127.0.0.1:$upstream_port/status/200"
wait_for "http://$SLUICE_ADMIN/healthz"

echo "== sluice on $SLUICE_LISTEN in front of $UPSTREAM_URL; route /api: 5 requests per 10 s per client"
for i in $(seq 8); do
    curl -s -o "$work/body" -D "$work/head" "http://$SLUICE_LISTEN/api/hello?n=$i"
    status=$(head -n1 "$work/head" | tr -d '\r')
    headers=$(grep -iE '^(ratelimit|ratelimit-policy|retry-after):' "$work/head" | tr -d '\r' | paste -sd';' -)
    printf 'request %d: %s  %s\n' "$i" "$status" "$headers"
    case "$status" in *429*) printf '           body: %s\n' "$(cat "$work/body")" ;; esac
done
echo
echo "== http://$SLUICE_ADMIN/metrics"
curl -s "http://$SLUICE_ADMIN/metrics" | grep -E '^sluice_(requests|responses)_total\{route="api"' | grep -v ' 0$'
echo
echo "== the dashboard: http://$SLUICE_ADMIN/"
# On a terminal the demo stays up for a browser to open it; elsewhere (CI) it ends here.
if [ -t 0 ] && [ -t 1 ]; then
    echo "   open it in a browser, send more requests to http://$SLUICE_LISTEN/api/hello;" \
        "Ctrl-C stops the demo"
    wait "${pids[1]}" || true
fi
