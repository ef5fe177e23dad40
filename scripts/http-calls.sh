#!/usr/bin/env bash
# Which files of src/http/ call which: for each object file of the layer, the other files
# of the layer whose functions it calls, read from the symbol tables of a build.
#   scripts/http-calls.sh [BUILD_DIR]     (default build-asan, else build-release)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-$( [ -d build-asan ] && echo build-asan || echo build-release )}
objs=$build/CMakeFiles/sluice_core.dir/src/http
[ -d "$objs" ] || { echo "http-calls.sh: no objects under $objs: build first" >&2; exit 1; }
defs=$(mktemp)
trap 'rm -f "$defs"' EXIT
for o in "$objs"/*.o; do
    nm --defined-only "$o" | awk -v f="$(basename "$o" .o)" '$2 == "T" || $2 == "D" || $2 == "R" || $2 == "B" {print $3, f}'
done | sort >"$defs"
for o in "$objs"/*.o; do
    f=$(basename "$o" .o)
    callees=$(nm --undefined-only "$o" | awk '{print $2}' | sort -u | join - "$defs" |
              awk -v f="$f" '$2 != f {print $2}' | sort -u | tr '\n' ' ')
    echo "$f -> ${callees:-(none)}"
done
