#!/usr/bin/env bash
# Installs the test dependencies, builds with AddressSanitizer and UndefinedBehaviorSanitizer,
# runs every unit and integration test, replays the fuzz regressions and fuzzes each target
# for SLUICE_FUZZ_SECONDS (default 20), and ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=$root/build-asan

scripts/install-deps.sh --test || exit 1
cmake -S . -B "$build" -DSLUICE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null || exit 1
cmake --build "$build" -j"$(nproc)" >"$build/build.log" 2>&1 || { cat "$build/build.log"; exit 1; }

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export SLUICE_BUILD_DIR=$build

echo "== unit tests (Check)"
ctest --test-dir "$build" --output-on-failure -j2
unit_rc=$?
# Check prints "NN%: Checks: X, Failures: Y, Errors: Z" per suite; a crashed suite prints none.
read -r unit_pass unit_fail < <(awk '
    /Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+/ {
        gsub(/,/, ""); for (i = 1; i <= NF; i++) {
            if ($i == "Checks:") c = $(i+1); if ($i == "Failures:") f = $(i+1); if ($i == "Errors:") e = $(i+1)
        }
        pass += c - f - e; fail += f + e
    }
    END { print pass + 0, fail + 0 }' "$build/Testing/Temporary/LastTest.log")
crashed=$(grep -c '^[0-9]*/[0-9]* Test:.*Failed\|\*\*\*Exception\|\*\*\*Timeout' "$build/Testing/Temporary/LastTest.log" 2>/dev/null || true)
if [ "$unit_rc" -ne 0 ] && [ "$unit_fail" -eq 0 ]; then unit_fail=$((crashed > 0 ? crashed : 1)); fi

# Passed (skipped left out) and failed tests of a pytest junit file.
junit_counts() {
    /usr/bin/python3 - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0, 1); sys.exit()
suites = [root] if root.tag == "testsuite" else list(root)
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
sk = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - sk, f)
PY
}

echo "== integration tests (pytest)"
/usr/bin/python3 -m pytest tests/integration -q -p no:cacheprovider \
    --junitxml="$build/integration.xml" -o junit_family=xunit1
int_rc=$?
read -r int_pass int_fail < <(junit_counts "$build/integration.xml")
if [ "$int_rc" -ne 0 ] && [ "$int_rc" -ne 5 ] && [ "$int_fail" -eq 0 ]; then int_fail=1; fi

echo "== Redis integration tests again, over TLS (SLUICE_REDIS_TLS=1)"
# The same tests with every redis-server, cluster node and sentinel serving TLS only and
# sluice on rediss:// (tests/integration/tls_support.py makes the certificates).
SLUICE_REDIS_TLS=1 /usr/bin/python3 -m pytest tests/integration/test_redis_*.py -q \
    -p no:cacheprovider --junitxml="$build/integration-tls.xml" -o junit_family=xunit1
tls_rc=$?
read -r tls_pass tls_fail < <(junit_counts "$build/integration-tls.xml")
if [ "$tls_rc" -ne 0 ] && [ "$tls_rc" -ne 5 ] && [ "$tls_fail" -eq 0 ]; then tls_fail=1; fi

echo "== fuzz targets (libFuzzer, ${SLUICE_FUZZ_SECONDS:-20} s each)"
# One entry per target: its regression inputs replayed, then a short run from its seeds.
scripts/fuzz.sh "${SLUICE_FUZZ_SECONDS:-20}" | tee "$build/fuzz.txt"
fuzz_rc=${PIPESTATUS[0]}
read -r fuzz_pass fuzz_fail < <(awk '/^fuzz: [0-9]+ passed, [0-9]+ failed$/ {print $2, $4}' "$build/fuzz.txt")
if [ -z "${fuzz_pass:-}" ]; then fuzz_pass=0; fuzz_fail=1; fi # the fuzz build failed
if [ "$fuzz_rc" -ne 0 ] && [ "$fuzz_fail" -eq 0 ]; then fuzz_fail=1; fi

passed=$((unit_pass + int_pass + tls_pass + fuzz_pass))
failed=$((unit_fail + int_fail + tls_fail + fuzz_fail))
echo
echo "unit: $unit_pass passed, $unit_fail failed; integration: $int_pass passed, $int_fail failed;" \
    "Redis over TLS: $tls_pass passed, $tls_fail failed; fuzz: $fuzz_pass passed, $fuzz_fail failed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$unit_rc" -eq 0 ] && { [ "$int_rc" -eq 0 ] || [ "$int_rc" -eq 5 ]; } &&
    { [ "$tls_rc" -eq 0 ] || [ "$tls_rc" -eq 5 ]; } && [ "$fuzz_rc" -eq 0 ]
