"""Helpers shared by the test_limits_*.py files: a configuration builder, requests from a
chosen loopback source address, and the monotonic clock sluice's memory store uses.

Timing rules these tests follow on a busy machine: a bound that follows from the limiter's
arithmetic (nothing is admitted before its instant) is asserted tightly, against the
moment the request was sent or answered as appropriate; a bound that depends on how fast
processes are scheduled (how soon after its instant a request is admitted) is generous."""
import math
import socket
import threading
import time

from conftest import Client, request

# CLOCK_MONOTONIC, as sluice's memory store reads it: time.monotonic() is the same clock
# on Linux, so the tests can compute where fixed windows begin and end.
now = time.monotonic

POLL = 0.02  # between polling requests
LATE = 0.6  # how late an admission may come after its instant on a loaded machine


def config(routes, headers="both", status=429, workers=2, extra=""):
    """A whole configuration: `routes` is the YAML text of the routes list (indented by
    two spaces per level, starting at "  - name:"); `extra` adds top-level keys."""
    return f"""\
listen: "{{listen}}"
workers: {workers}
admin:
  listen: "{{admin}}"
upstream:
  url: "{{upstream}}"
  connect_timeout: 1s
  timeout: 5s
access_log: "{{access_log}}"
log_level: info
response:
  status: {status}
  headers: {headers}
{extra}
routes:
{routes}"""


def send(port, target="/", headers=(), method="GET", src=None, host="localhost"):
    """One request on a new connection, from loopback address `src` when given."""
    with connect(port, src) as c:
        return c.exchange(request(method, target, list(headers) + [("Connection", "close")],
                                  host=host), method)


def timed(port, target="/", headers=(), method="GET", src=None):
    """send() with the monotonic times just before sending and just after the answer:
    returns (sent, answered, response). sluice decided somewhere in between."""
    sent = now()
    resp = send(port, target, headers, method, src)
    return sent, now(), resp


class SourceClient(Client):
    """A Client whose connection comes from loopback address `src` (any of 127.0.0.0/8)."""

    def __init__(self, port, src=None, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(src, 0) if src else None)
        self.buf = bytearray()


def connect(port, src=None):
    return SourceClient(port, src)


def poll_until_allowed(port, target="/", headers=(), timeout=10.0, src=None):
    """Sends a request every POLL seconds until one is not denied. Returns (last_denied_sent,
    sent, answered, response) of the first admitted one; last_denied_sent is None when the
    first attempt was admitted. Denied answers must be 429."""
    deadline = now() + timeout
    last_denied = None
    while True:
        sent, answered, resp = timed(port, target, headers, src=src)
        if resp.status != 429:
            return last_denied, sent, answered, resp
        last_denied = sent
        assert answered < deadline, f"still denied after {timeout}s"
        time.sleep(POLL)


def window_start(period, min_left):
    """Waits, if needed, until at least `min_left` seconds of the current aligned window
    of `period` seconds remain; returns (start, end) of the window it is then in."""
    t = now()
    k = math.floor(t / period)
    if (k + 1) * period - t < min_left:
        time.sleep((k + 1) * period - t + 0.01)
        k += 1
    return k * period, (k + 1) * period


def concurrently(fns):
    """Runs each callable in its own thread at once; returns their results in order."""
    results = [None] * len(fns)
    errors = []
    barrier = threading.Barrier(len(fns))

    def run(i, fn):
        try:
            barrier.wait(10)
            results[i] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]
    return results


def targets(log):
    return [e["target"] for e in log]


def remaining(resp, name):
    """r of the RateLimit member named `name`."""
    for member in resp.header("RateLimit").split(","):
        parts = member.strip().split(";")
        if parts[0] == f'"{name}"':
            return int(dict(p.split("=") for p in parts[1:])["r"])
    raise KeyError(name)
