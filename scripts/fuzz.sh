#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ (clang, ASan, UBSan) into build-fuzz/, replays
# each target's regression inputs (tests/fuzz/regressions/<target>/), then fuzzes each target
# for SECONDS (default 60) from its seed corpus. Fails on any crash, leak, sanitizer report
# or broken invariant; a finding is saved under build-fuzz/artifacts/<target>/.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Ends with "fuzz: N passed, N failed" (one entry per target).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=$root/build-fuzz
seconds=${1:-60}
shift || true

cc=${FUZZ_CC:-}
if [ -z "$cc" ]; then
    for c in clang-14 clang; do command -v "$c" >/dev/null && { cc=$c; break; }; done
fi
[ -n "$cc" ] || { echo "fuzz.sh: clang not found (scripts/install-deps.sh --test)" >&2; exit 1; }

mkdir -p "$build"
cmake -S . -B "$build" -DSLUICE_FUZZ=ON -DSLUICE_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_C_COMPILER="$cc" >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" >"$build/build.log" 2>&1 || { cat "$build/build.log"; exit 1; }

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do t=${f##*/fuzz_}; targets+=("${t%.c}"); done
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0
failed=0
for t in "${targets[@]}"; do
    bin=$build/tests/fuzz/fuzz_$t
    log=$build/fuzz_$t.log
    artifacts=$build/artifacts/$t/
    if [ ! -x "$bin" ]; then
        echo "fuzz $t: FAILED: no such target"
        failed=$((failed + 1))
        continue
    fi
    mkdir -p "$artifacts"

    # Every input that once failed must pass now.
    regressions=(tests/fuzz/regressions/"$t"/*)
    if [ -e "${regressions[0]}" ] &&
        ! "$bin" "${regressions[@]}" >"$build/fuzz_${t}_regressions.log" 2>&1; then
        echo "fuzz $t: FAILED: a regression input fails again (build-fuzz/fuzz_${t}_regressions.log)"
        tail -n 30 "$build/fuzz_${t}_regressions.log"
        failed=$((failed + 1))
        continue
    fi

    # The checked-in seeds stay as they are; what the run adds goes to build-fuzz/corpus/.
    corpus=$build/corpus/$t
    mkdir -p "$corpus"
    dict=()
    [ -f tests/fuzz/$t.dict ] && dict=(-dict=tests/fuzz/$t.dict)
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts" "${dict[@]}" "$corpus" tests/fuzz/corpus/"$t" >"$log" 2>&1
    rc=$?
    stats=$(awk '/^stat::number_of_executed_units/ {n = $2}
                 /^stat::average_exec_per_sec/ {s = $2}
                 /^#[0-9]+/ {for (i = 1; i <= NF; i++) {if ($i == "cov:") c = $(i+1); if ($i == "ft:") f = $(i+1)}}
                 END {printf "%s runs, %s exec/s, cov %s, ft %s", n, s, c, f}' "$log")
    if [ "$rc" -eq 0 ]; then
        echo "fuzz $t: ok ($stats)"
        passed=$((passed + 1))
    else
        echo "fuzz $t: FAILED ($stats); input saved in ${artifacts#$root/}; log build-fuzz/fuzz_$t.log"
        grep -m1 -E 'ERROR: |runtime error:|^fuzz: ' "$log"
        failed=$((failed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
