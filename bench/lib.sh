# Shared by the benchmark scripts: sourced after each sets `root` and `out`.

# Checks the tools, refuses ports someone else serves (that server would be measured
# instead), builds sluice in release mode into build-release/, and arranges for every
# process in `pids` to be stopped on exit.
#   bench_setup "nginx wrk" PORT...
bench_setup() {
    local tool port
    for tool in $1 cmake; do
        command -v "$tool" >/dev/null || { echo "bench: $tool not found (scripts/install-deps.sh --bench)" >&2; exit 1; }
    done
    shift
    for port in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "bench: port $port is in use; choose other ports (see the script's variables)" >&2
            exit 1
        fi
    done
    mkdir -p "$out"
    cmake -S "$root" -B "$root/build-release" -DCMAKE_BUILD_TYPE=Release -DSLUICE_TESTS=OFF >/dev/null
    cmake --build "$root/build-release" -j2 >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
    pids=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}

nginx_conf() { # name workers body-of-http-block
    cat >"$out/$1.conf" <<CONF
worker_processes $2;
daemon off;
pid $out/$1.pid;
error_log $out/$1.error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $out/$1-body;
    proxy_temp_path $out/$1-proxy;
    fastcgi_temp_path $out/$1-fcgi;
    uwsgi_temp_path $out/$1-uwsgi;
    scgi_temp_path $out/$1-scgi;
    keepalive_requests 1000000;
    $3
}
CONF
}

start_nginx() { # name
    nginx -c "$out/$1.conf" -p "$out" >/dev/null 2>&1 &
    pids+=($!)
}

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "bench: nothing listens on port $1" >&2
    exit 1
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { print (b > 0) ? a / b : 0 }'; }
