"""Shared pieces of the Redis integration tests: configurations and concurrent clients."""
import struct
import threading
import time

from conftest import Client, request, wait_until
from harness_procs import REDIS_TLS

REDIS_CONFIG = """\
listen: "{listen}"
workers: %(workers)s
admin:
  listen: "{admin}"
upstream:
  url: "{upstream}"
  connect_timeout: 1s
  timeout: 5s
redis:
  url: "%(redis_url)s"
  timeout: %(timeout)s
  key_prefix: "%(key_prefix)s"
failure_mode: %(failure_mode)s
access_log: "{access_log}"
log_level: info
routes:
%(routes)s"""


def redis_config(redis_url, routes, failure_mode="closed", timeout="2s", key_prefix="sluice:",
                 workers=2):
    """A configuration with a redis block; `routes` is the YAML of the routes list. Under
    SLUICE_REDIS_TLS, redis:// becomes rediss:// and redis.tls names the tests' CA."""
    text = REDIS_CONFIG % dict(redis_url=redis_url, routes=routes, failure_mode=failure_mode,
                               timeout=timeout, key_prefix=key_prefix, workers=workers)
    if REDIS_TLS:
        from tls_support import tls_files
        text = text.replace("\nredis:\n", '\nredis:\n  tls: {ca: "%s"}\n' % tls_files().ca, 1)
        text = text.replace('  url: "redis://', '  url: "rediss://', 1)
    return text


def route(name, limits, prefix=None):
    """The YAML of one route matching /name (or `prefix`) with `limits`, each a dict."""
    out = f"  - name: {name}\n    match:\n      path_prefix: \"{prefix or '/' + name}\"\n"
    if not limits:
        return out + "    limits: []\n"
    out += "    limits:\n"
    for lim in limits:
        first = True
        for k, v in lim.items():
            out += ("      - " if first else "        ") + f"{k}: {v}\n"
            first = False
    return out


class Result:
    def __init__(self):
        self.statuses = []   # every status received, in no particular order
        self.latencies = []  # seconds per request
        self.errors = []     # exceptions of requests that got no response
        self.elapsed = 0.0   # from the first send to the last response

    def count(self, status):
        return sum(1 for s in self.statuses if s == status)


def hammer(ports, target, total=None, threads=12, headers=(), duration=None, stop=None,
           timeout=5.0):
    """Sends GET `target` from `threads` keep-alive connections spread over `ports` until
    `total` requests were sent, `duration` seconds passed, or the event `stop` is set.
    A connection that fails is replaced. Returns a Result."""
    res = Result()
    lock = threading.Lock()
    sent = [0]
    raw = request("GET", target, headers)
    deadline = time.monotonic() + duration if duration else None

    def more():
        with lock:
            if total is not None and sent[0] >= total:
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if stop is not None and stop.is_set():
                return False
            sent[0] += 1
            return True

    def run(port):
        c = None
        while more():
            t0 = time.monotonic()
            try:
                if c is None:
                    c = Client(port, timeout=timeout)
                resp = c.exchange(raw)
                status = resp.status
                if resp.header("connection", "").lower() == "close":
                    c.close()
                    c = None
            except (OSError, ValueError, EOFError) as e:
                with lock:
                    res.errors.append(repr(e))
                if c is not None:
                    c.close()
                    c = None
                continue
            with lock:
                res.statuses.append(status)
                res.latencies.append(time.monotonic() - t0)
        if c is not None:
            c.close()

    workers = [threading.Thread(target=run, args=(ports[i % len(ports)],)) for i in range(threads)]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    res.elapsed = time.monotonic() - t0
    return res


def wait_connected(s, want=1, timeout=8.0):
    """Polls until sluice_redis_connected is `want`: every worker connected (1) or not."""
    wait_until(lambda: s.metrics().value("sluice_redis_connected") == want, timeout, 0.05,
               f"sluice_redis_connected to be {want}")


def wait_past_hour_edge(redis, margin=20):
    """fixed_window counts in windows aligned on Redis's clock: keep a short test inside
    one hour-long window by waiting out the last `margin` seconds of an hour."""
    now = int(redis.command("TIME")[0])
    left = 3600 - now % 3600
    if left < margin:
        time.sleep(left + 0.5)


def limit_state(redis, key):
    """The integers a limit's key holds (fixed_window: start, count, the instant it was set
    to live until; the buckets: u, f, N; sliding_window_counter: start, curr, prev, that
    instant), stored as little-endian doubles; None when the key is missing."""
    value = redis.command("GET", key)
    if value is None:
        return None
    raw = value.encode("latin-1")
    return tuple(int(x) for x in struct.unpack("<%dd" % (len(raw) // 8), raw))


def commandstats(redis, name):
    """Calls of command `name` (lower case, e.g. "evalsha") since the last CONFIG RESETSTAT."""
    for line in redis.command("INFO", "commandstats").splitlines():
        if line.startswith(f"cmdstat_{name}:"):
            fields = dict(f.split("=", 1) for f in line.split(":", 1)[1].split(","))
            return int(fields["calls"])
    return 0
