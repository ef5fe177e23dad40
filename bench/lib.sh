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

wait_port() { # port [seconds, default 5]
    for _ in $(seq $((${2:-5} * 20))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "bench: nothing listens on port $1" >&2
    exit 1
}

# CPU time of processes and their children, in clock ticks, as "user system": on a busy
# machine req/s is noisy, CPU time per request much less so.
cpu_ticks() { # pid...
    local user=0 sys=0 p
    for p in "$@" $(for q in "$@"; do pgrep -P "$q"; done); do
        [ -r "/proc/$p/stat" ] || continue
        read -r u s < <(awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$p/stat")
        user=$((user + u))
        sys=$((sys + s))
    done
    echo "$user $sys"
}

# Runs wrk (WRK_THREADS threads, default 2) once for DURATION seconds and appends one line
# to $out/results.txt:
#   label case conns round rps p50_ms p99_ms non2xx requests cpu_us user_us sys_us
# where the CPU times (all, user, system; microseconds per request) are those of `pid` and
# its children during the run.
#   wrk_record LABEL CASE CONNS ROUND PID URL [wrk options...]
wrk_record() {
    local label=$1 case=$2 conns=$3 round=$4 pid=$5 url=$6 before after
    shift 6
    before=($(cpu_ticks "$pid"))
    wrk -t"${WRK_THREADS:-2}" -c"$conns" -d"${DURATION}s" --latency "$@" "$url" >"$out/wrk.txt" 2>&1 || true
    after=($(cpu_ticks "$pid"))
    awk -v label="$label" -v case="$case" -v conns="$conns" -v round="$round" \
        -v user=$((after[0] - before[0])) -v sys=$((after[1] - before[1])) \
        -v hz="$(getconf CLK_TCK)" '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v
        }
        /^ +50%/ { p50 = ms($2) }
        /^ +99%/ { p99 = ms($2) }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx/ { bad = $NF }
        / requests in / { total = $1 }
        END {
            per = (total > 0) ? 1e6 / hz / total : 0
            printf "%s %s %s %s %s %s %s %s %s %.2f %.3f %.3f\n", label, case, conns, round, rps + 0,
                p50 + 0, p99 + 0, bad + 0, total + 0, (user + sys) * per, user * per, sys * per
        }
    ' "$out/wrk.txt" >>"$out/results.txt"
}

# Columns of $out/results.txt, as wrk_record writes them.
COL_RPS=5 COL_P50=6 COL_P99=7 COL_NON2XX=8 COL_REQUESTS=9 COL_CPU=10 COL_USER=11 COL_SYS=12

# The median over rounds of one column for one label, case and connection count.
col_median() { # label case conns column
    awk -v t="$1" -v k="$2" -v c="$3" -v col="$4" '$1 == t && $2 == k && $3 == c { print $col }' \
        "$out/results.txt" | median
}

# The median over rounds of a/b for one column, each round's a against the same round's b:
# the machine's speed drifts between rounds, and a paired ratio cancels most of the drift.
paired_ratio() { # label_a label_b case conns column
    awk -v a="$1" -v b="$2" -v k="$3" -v c="$4" -v col="$5" '
        $2 == k && $3 == c && $1 == a { va[$4] = $col }
        $2 == k && $3 == c && $1 == b { vb[$4] = $col }
        END { for (r in va) if ((r in vb) && vb[r] > 0) print va[r] / vb[r] }
    ' "$out/results.txt" | median
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { print (b > 0) ? a / b : 0 }'; }

# An HTTP/2 (prior knowledge) front end in HAProxy, one thread, with the X-Forwarded-*
# fields sluice adds, to the upstream at `port`; `server_opts` as "proto h2" for an HTTP/2
# upstream.
#   haproxy_h2_conf FILE LISTEN_PORT UPSTREAM_PORT [SERVER_OPTS]
haproxy_h2_conf() {
    cat >"$1" <<CFG
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s
frontend h2
    bind 127.0.0.1:$2 proto h2
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend app
backend app
    http-reuse always
    server app 127.0.0.1:$3 ${4:-}
CFG
}

# Starting and stopping the three proxies the HTTP/2 benchmarks compare, from the files
# $out/$PROXY_PREFIX-sluice.yaml, -proxy.conf (nginx) and -haproxy.cfg. The caller declares
# the arrays `pid` and `port` (by proxy name).
#   start_proxy sluice|nginx|haproxy     starts it and waits for its port; sets pid[name]
#   stop_proxy NAME
start_proxy() {
    case $1 in
    sluice) "$root/build-release/sluice" -c "$out/$PROXY_PREFIX-sluice.yaml" \
        2>>"$out/$PROXY_PREFIX-sluice.err" & ;;
    nginx) nginx -c "$out/$PROXY_PREFIX-proxy.conf" -p "$out" >>"$out/$PROXY_PREFIX-nginx.err" 2>&1 & ;;
    haproxy) haproxy -db -f "$out/$PROXY_PREFIX-haproxy.cfg" >>"$out/$PROXY_PREFIX-haproxy.err" 2>&1 & ;;
    esac
    pid[$1]=$!
    pids+=($!)
    wait_port "${port[$1]}"
}

stop_proxy() {
    kill "${pid[$1]}" 2>/dev/null || true
    wait "${pid[$1]}" 2>/dev/null || true
}
