"""The local over-limit cache (redis.deny_cache, SPEC.md section 3): a key Redis denied is
denied by the instance itself until its retry_after has passed, with the same answer, so a
flood of denied requests stays off Redis; it changes no decision: instances still admit
exactly the limit, a key is admitted again as soon as its quota frees, and a reload that
changes the limit asks Redis again."""
import math
import subprocess
import time

import pytest

from conftest import Client, get, http, request
from redis_support import (commandstats, hammer, redis_config, route, wait_connected,
                           wait_past_hour_edge)
from test_redis_shared import ALGORITHMS

LATE = 0.3  # how late an admission may come after its instant on a loaded machine


def with_deny_cache(cfg, entries):
    return cfg.replace("  key_prefix:", f"  deny_cache: {entries}\n  key_prefix:", 1)


def hits(s):
    return s.metrics().value("sluice_deny_cache_hits_total")


def test_a_flood_of_denied_requests_stays_off_redis(sluice_factory, upstream, redis_server):
    routes = route("f", [dict(name="all", algorithm="fixed_window", rate="5/1h", key="route")])
    s = sluice_factory(redis_config(redis_server.url, routes), upstream=upstream)
    wait_connected(s)
    wait_past_hour_edge(redis_server, margin=60)
    with Client(s.port) as c:
        assert [c.exchange(request("GET", "/f")).status for _ in range(5)] == [200] * 5
    warm = hammer([s.port], "/f", total=200, threads=8)  # every worker meets the denial
    assert warm.count(429) == 200, warm.statuses

    redis_server.command("CONFIG", "RESETSTAT")
    before = hits(s)
    res = hammer([s.port], "/f", total=3000, threads=8)
    assert not res.errors, res.errors[:5]
    assert res.count(429) == 3000
    calls = commandstats(redis_server, "evalsha")
    assert calls / 3000 <= 0.01, f"{calls} EVALSHA for 3000 denied requests"
    # Every denied request was answered by Redis or by the cache, and counted there.
    assert hits(s) - before == 3000 - calls
    m = s.metrics()
    assert m.value("sluice_limit_checks_total", route="f", result="deny") == 3200
    assert m.value("sluice_store_errors_total") == 0

    # The exposition stays valid with the new family.
    text = http(s.admin_port, request("GET", "/metrics")).body
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_hot_key_whose_quota_frees_often_asks_redis_once_per_freed_unit(
        sluice_factory, upstream, redis_server):
    # 10/s: a unit frees every 100 ms, and each time every request in flight would find
    # the held denial run out. One of them asks; the rest wait for its answer. It takes
    # the freed unit (remaining 0), the next asks alone and is denied, and the rest are
    # answered from that denial: about two script calls per freed unit, whatever the
    # number of connections.
    routes = route("t", [dict(name="all", algorithm="token_bucket", rate="10/1s", burst=1,
                              key="route")])
    s = sluice_factory(redis_config(redis_server.url, routes, workers=1), upstream=upstream)
    wait_connected(s)
    warm = hammer([s.port], "/t", threads=16, duration=0.5)
    assert warm.count(429) > 0, warm.statuses

    redis_server.command("CONFIG", "RESETSTAT")
    res = hammer([s.port], "/t", threads=16, duration=2.0)
    calls = commandstats(redis_server, "evalsha")
    assert not res.errors, res.errors[:5]
    assert set(res.statuses) <= {200, 429}
    freed = 10 * res.elapsed + 2
    admitted = res.count(200)
    assert admitted <= freed, (admitted, res.elapsed)
    assert admitted >= 10 * res.elapsed * 0.5, (admitted, res.elapsed)
    # Without the single flight each freed unit costs one call per connection in flight.
    assert calls <= 3 * freed + 5, (calls, admitted, len(res.statuses), res.elapsed)
    assert s.metrics().value("sluice_store_errors_total") == 0


def test_a_held_denial_answers_as_redis_did(sluice_factory, upstream, redis_server):
    routes = route("f", [dict(name="per_key", algorithm="fixed_window", rate="2/1h",
                              key='"header:X-Key"')])
    s = sluice_factory(redis_config(redis_server.url, routes, workers=1), upstream=upstream)
    wait_connected(s)
    wait_past_hour_edge(redis_server, margin=60)
    key = [("X-Key", "k1")]
    with Client(s.port) as c:
        assert [c.exchange(request("GET", "/f", key)).status for _ in range(2)] == [200, 200]
        h0 = hits(s)
        from_redis = c.exchange(request("GET", "/f", key))
        assert hits(s) == h0
        held = c.exchange(request("GET", "/f", key))
        assert hits(s) == h0 + 1
    assert from_redis.status == held.status == 429
    names = lambda r: sorted(n.lower() for n, _ in r.headers if n.lower() != "date")
    assert names(held) == names(from_redis)
    for name in ("content-type", "ratelimit-policy", "x-ratelimit-limit",
                 "x-ratelimit-remaining"):
        assert held.header(name) == from_redis.header(name), name
    assert held.header("x-ratelimit-remaining") == "0"
    assert held.header("ratelimit").startswith('"per_key";r=0;t=')
    # Reset and Retry-After count down (whole seconds, so equal or one less).
    for name in ("retry-after", "x-ratelimit-reset"):
        assert 0 <= int(from_redis.header(name)) - int(held.header(name)) <= 1, name
    a, b = from_redis.json(), held.json()
    assert 0 <= a.pop("retry_after") - b.pop("retry_after") <= 1
    assert a == b == {"error": "rate_limited", "route": "f", "limit": "per_key"}


def test_a_key_denied_on_one_instance_is_admitted_as_soon_as_its_quota_frees(
        sluice_factory, upstream, redis_server):
    routes = route("w", [dict(name="all", algorithm="fixed_window", rate="3/1s", key="route")])
    cfg = redis_config(redis_server.url, routes)
    a, b = (sluice_factory(cfg, upstream=upstream) for _ in range(2))
    wait_connected(a)
    wait_connected(b)
    for attempt in range(3):
        # Start just after a window edge (Redis's clock is this host's), so that the three
        # admissions and the denials fall in one window.
        time.sleep(math.ceil(time.time()) - time.time() + 0.05)
        with Client(a.port) as ca, Client(b.port) as cb:
            statuses = [ca.exchange(request("GET", "/w")).status for _ in range(3)]
            if time.time() % 1 > 0.6:
                continue  # a stall pushed the sequence near the edge: try again
            edge = math.ceil(time.time())
            h0 = hits(a)
            denied = 0
            while True:
                r = ca.exchange(request("GET", "/w"))
                if r.status == 200:
                    admitted_at = time.time()
                    break
                assert r.status == 429
                denied += 1
                assert time.time() < edge + 2, "never admitted again"
                time.sleep(0.005)
            assert statuses == [200] * 3
            assert denied >= 2
            assert hits(a) > h0, "the denials were not held"
            # Never before the window ends, and promptly after it.
            assert edge - 0.01 <= admitted_at <= edge + LATE, (admitted_at, edge)
            # The other instance shares the new window: two more, then denied.
            got = [cb.exchange(request("GET", "/w")).status for _ in range(3)]
            if time.time() < edge + 0.9:
                assert got == [200, 200, 429], got
            return
    pytest.fail("no attempt fitted in one window")


def test_three_instances_with_the_cache_admit_exactly_the_limit(sluice_factory, upstream,
                                                                  redis_server):
    routes = (route("fw", [dict(name="all", algorithm="fixed_window", rate="50/1h",
                                key="route")])
              + route("sw", [dict(name="all", algorithm="sliding_window", rate="50/1m",
                                  key="route")]))
    cfg = redis_config(redis_server.url, routes, failure_mode="closed")
    instances = [sluice_factory(cfg, upstream=upstream) for _ in range(3)]
    for s in instances:
        wait_connected(s)
    wait_past_hour_edge(redis_server)
    ports = [s.port for s in instances]
    for target in ("/fw", "/sw"):
        res = hammer(ports, target, total=600, threads=48)
        assert not res.errors, res.errors[:5]
        assert res.count(200) == 50, f"{target}: {res.count(200)} admitted of 600"
        assert res.count(429) == 550
    assert sum(hits(s) for s in instances) > 0


def test_a_reload_that_widens_the_limit_asks_redis_again(sluice_factory, upstream,
                                                          redis_server):
    def cfg(rate):
        return redis_config(redis_server.url, route("r", [dict(
            name="all", algorithm="fixed_window", rate=rate, key="route")]), workers=1)
    s = sluice_factory(cfg("2/1h"), upstream=upstream)
    wait_connected(s)
    wait_past_hour_edge(redis_server, margin=60)
    with Client(s.port) as c:
        assert [c.exchange(request("GET", "/r")).status for _ in range(4)] == [200, 200, 429, 429]
    assert hits(s) == 1
    s.reload(cfg("4/1h"))
    # The reload applies from the next request head; then the held denial no longer fits.
    deadline = time.monotonic() + 5
    while get(s.port, "/r").status != 200:
        assert time.monotonic() < deadline, "the wider limit never admitted"
        time.sleep(0.02)
    assert s.metrics().value("sluice_config_reloads_total", result="success") == 1


def test_deny_cache_off(sluice_factory, upstream, redis_server):
    routes = route("f", [dict(name="all", algorithm="fixed_window", rate="1/1h", key="route")])
    s = sluice_factory(with_deny_cache(redis_config(redis_server.url, routes), 0),
                       upstream=upstream)
    wait_connected(s)
    wait_past_hour_edge(redis_server, margin=60)
    redis_server.command("CONFIG", "RESETSTAT")
    with Client(s.port) as c:
        assert [c.exchange(request("GET", "/f")).status for _ in range(5)] == [200] + [429] * 4
    assert commandstats(redis_server, "evalsha") == 5
    assert hits(s) == 0


# Admissions in a 2.2 s flood of three connections at 2/s: not fewer than the algorithm
# admits (the cache holds no denial past its end), and never more than it allows over the
# whole run, `span` seconds at most (the cache adds no admission).
BOUNDS = {
    "fixed_window": (4, lambda span: 2 * (math.ceil(span) + 1)),   # two per window touched
    "sliding_window": (4, lambda span: 2 * math.ceil(span)),       # two in any second
    "sliding_window_counter": (3, lambda span: 2 * (math.ceil(span) + 1)),
    "token_bucket": (4, lambda span: 2 + 2 * span),                # two at once, then 2/s
    "leaky_bucket": (4, lambda span: 2 * span + 2),                # one per 0.5 s, one queued
}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_under_a_flood(sluice_factory, upstream, redis_server, algorithm):
    extra = dict(burst=1) if algorithm == "leaky_bucket" else {}
    routes = route("a", [dict(name="all", algorithm=algorithm, rate="2/1s", key="route",
                              **extra)])
    s = sluice_factory(redis_config(redis_server.url, routes), upstream=upstream)
    wait_connected(s)
    res = hammer([s.port], "/a", threads=3, duration=2.2)
    assert not res.errors, res.errors[:5]
    assert set(res.statuses) <= {200, 429}
    low, high = BOUNDS[algorithm]
    admitted = res.count(200)
    assert admitted <= high(res.elapsed), (admitted, res.elapsed)
    assert admitted >= low, (admitted, res.count(429))
    assert hits(s) > 0
    assert s.metrics().value("sluice_store_errors_total") == 0
