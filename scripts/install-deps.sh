#!/usr/bin/env bash
# Installs the Debian packages sluice needs. Idempotent; run as root on Debian 12.
#   scripts/install-deps.sh           build and run
#   scripts/install-deps.sh --test    also what the test suite needs
#   scripts/install-deps.sh --bench   also what the benchmarks need
set -euo pipefail

packages=(cmake make gcc pkg-config libc6-dev libevent-dev libssl-dev libhiredis-dev libyaml-dev
          libyajl-dev libnghttp2-dev node-llhttp libprotobuf-c-dev protobuf-c-compiler curl
          python3)
# Hyperscan matches all path_regex routes in one scan; Debian builds it for amd64 only, and
# elsewhere sluice falls back to regexec behind a literal-prefix filter.
if [ "$(dpkg --print-architecture)" = amd64 ]; then
    packages+=(libhyperscan-dev)
fi
for arg in "$@"; do
    case "$arg" in
    # prometheus: promtool; clang and its runtime: the libFuzzer targets; yajl: their JSON
    # checks; python3-h2: an application that speaks h2c; nghttp2-client: nghttp and h2load;
    # chromium, its driver and selenium: the dashboard rendered in a real browser
    # openssl: the test certificate authority of the TLS tests
    --test) packages+=(check redis-server redis-tools redis-sentinel openssl python3-pytest
                       python3-yaml prometheus clang-14 libclang-rt-14-dev libyajl-dev python3-h2
                       nghttp2-client chromium chromium-driver python3-selenium) ;;
    # haproxy, nghttp2-client (h2load) and python3-h2: bench/h2.sh
    --bench) packages+=(nginx-light wrk redis-server redis-tools curl haproxy nghttp2-client
                        python3-h2) ;;
    *) echo "install-deps.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
