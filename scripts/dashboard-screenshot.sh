#!/usr/bin/env bash
# Renders the admin dashboard in headless Chromium after a minute of mixed traffic and saves
# it as docs/dashboard.png (or $1): sluice (Redis for one limit when redis-server is there)
# in front of tests/integration/upstream.py, clients of several keys hitting four routes,
# some of them over their limits. Needs a build in ./build (or $SLUICE_BUILD_DIR) and
# chromium, chromium-driver and python3-selenium (scripts/install-deps.sh --test).
#   SCREENSHOT_SECONDS  how long the traffic runs first (default 75)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-docs/dashboard.png}")
build=${SLUICE_BUILD_DIR:-build}
seconds=${SCREENSHOT_SECONDS:-75}
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listen=$(free_port); admin=$(free_port); up=$(free_port)

store=memory
redis_block=""
if command -v redis-server >/dev/null; then
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
    pids+=($!)
    store=redis
    redis_block="redis:
  url: redis://127.0.0.1:$rport/0
  deny_cache: 1000"
fi

cat >"$work/sluice.yaml" <<YAML
listen: 127.0.0.1:$listen
admin:
  listen: 127.0.0.1:$admin
  token: "\${DASHBOARD_TOKEN}"
upstream:
  url: http://127.0.0.1:$up
access_log: "off"
$redis_block
routes:
  - name: login
    match: {path_prefix: /login, methods: [POST]}
    limits:
      - {name: per_ip, algorithm: sliding_window, rate: 5/1m, key: client_ip, store: memory}
  - name: api
    match: {path_prefix: /api}
    limits:
      - {name: per_key, algorithm: token_bucket, rate: 20/1s, burst: 40, key: "header:X-Api-Key", store: $store}
      - {name: per_ip, algorithm: sliding_window_counter, rate: 3000/1m, key: client_ip, store: memory}
  - name: search
    match: {path_prefix: /search}
    limits:
      - {name: per_key, algorithm: leaky_bucket, rate: 5/1s, burst: 5, delay: false, key: "header:X-Api-Key", store: memory}
  - name: static
    match: {path_prefix: /static}
    limits: []
YAML

export DASHBOARD_TOKEN=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
/usr/bin/python3 tests/integration/upstream.py --listen "127.0.0.1:$up" >"$work/upstream.log" 2>&1 &
pids+=($!)
"$build/sluice" -c "$work/sluice.yaml" 2>"$work/sluice.log" &
pids+=($!)
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$admin/healthz" && break; sleep 0.1; done

/usr/bin/python3 - "$listen" "$admin" "$seconds" "$out" <<'PY'
import http.client, os, random, sys, threading, time
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

port, admin, seconds, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
done = threading.Event()
keys = ["team-atlas", "team-borealis", "ci-runner-7", "mobile-app", "scraper-42"]

def connect(source):
    return http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))

def client(n):
    """One client address of its own, 127.0.0.(10 + n), sending as several API keys."""
    rng = random.Random(n)
    source = f"127.0.0.{10 + n}"
    conn = connect(source)
    while not done.is_set():
        phase = (time.monotonic() % 40) / 40  # traffic swells and ebbs every 40 s
        key = rng.choices(keys, weights=[5, 3, 2, 4, 8 if phase > .6 else 1])[0]
        path, method = rng.choices([("/api/orders", "GET"), ("/search?q=x", "GET"),
                                    ("/login", "POST"), ("/static/app.js", "GET")],
                                   weights=[6, 3, .3 + n * .2, 3])[0]
        try:
            conn.request(method, path, body=b"" if method == "POST" else None,
                         headers={"X-Api-Key": key})
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = connect(source)
        time.sleep(rng.uniform(0.005, 0.03) * (2.5 - 2 * phase))

threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
time.sleep(seconds)

# The page is captured while the traffic still runs.
opts = Options()
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
            "--hide-scrollbars"):
    opts.add_argument(arg)
opts.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
try:
    driver.get(f"http://127.0.0.1:{admin}/#token={os.environ['DASHBOARD_TOKEN']}")
    WebDriverWait(driver, 15).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-route="api"] svg.chart path'))
    # The whole page in one image: the window as tall as the document.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    inner = driver.execute_script("return window.outerHeight - window.innerHeight")
    driver.set_window_size(1400, height + inner)
    time.sleep(2.5)  # one refresh at the new size
    driver.save_screenshot(out)
finally:
    driver.quit()
    done.set()
    for t in threads:
        t.join()
print(out)
PY
