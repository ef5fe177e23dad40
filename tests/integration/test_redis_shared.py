"""The Redis store through sluice: instances sharing one Redis enforce one limit exactly,
every algorithm decides as on the memory store, keys are laid out as SPEC.md section 3
says, and each applied limit costs exactly one EVALSHA."""
import hashlib

from conftest import Client, request
from redis_support import (commandstats, hammer, limit_state, redis_config, route,
                           wait_connected, wait_past_hour_edge)

ALGORITHMS = ["fixed_window", "sliding_window", "sliding_window_counter", "token_bucket",
              "leaky_bucket"]


def test_instances_share_one_limit_exactly(sluice_factory, upstream, redis_server):
    routes = (route("fw", [dict(name="all", algorithm="fixed_window", rate="50/1h", key="route")])
              + route("sw", [dict(name="all", algorithm="sliding_window", rate="50/1m",
                                  key="route")])
              + route("tb", [dict(name="all", algorithm="token_bucket", rate="20/1s", burst=30,
                                  key="route")]))
    cfg = redis_config(redis_server.url, routes, failure_mode="closed", timeout="2s")
    instances = [sluice_factory(cfg, upstream=upstream) for _ in range(3)]
    for s in instances:
        wait_connected(s)
    ports = [s.port for s in instances]
    wait_past_hour_edge(redis_server)

    for target in ("/fw", "/sw"):
        res = hammer(ports, target, total=300, threads=30)
        assert not res.errors, res.errors[:5]
        assert res.count(503) == 0, "no decision may fail with a 2 s budget"
        assert res.count(200) == 50, f"{target}: {res.count(200)} admitted of 300"
        assert res.count(429) == 250

    res = hammer(ports, "/tb", total=300, threads=30)
    assert not res.errors, res.errors[:5]
    assert res.count(503) == 0
    admitted = res.count(200)
    # The bucket starts full (30) and refills at 20/s while the requests run.
    assert 30 <= admitted <= 30 + 20 * res.elapsed + 1, (admitted, res.elapsed)
    assert admitted + res.count(429) == 300

    # Every instance took part, and asked Redis rather than its memory store.
    for s in instances:
        m = s.metrics()
        assert m.value("sluice_limit_checks_total", route="fw") > 0
        assert m.value("sluice_store_duration_seconds_count", store="redis") > 0
        assert m.value("sluice_store_duration_seconds_count", store="memory") == 0
        assert m.value("sluice_redis_connected") == 1


def parity_routes():
    out = ""
    for alg in ALGORITHMS:
        extra = dict(burst=2, delay="false") if alg == "leaky_bucket" else {}
        for store in ("memory", "redis"):
            lim = dict(name="per_key", algorithm=alg, rate="3/1d", key='"header:X-Key"',
                       store=store, **extra)
            out += route(f"{store}-{alg}", [lim])
    return out


def test_every_algorithm_decides_as_on_the_memory_store(sluice_factory, upstream, redis_server):
    s = sluice_factory(redis_config(redis_server.url, parity_routes()), upstream=upstream)
    wait_connected(s)
    script = ["a", "a", "b", "a", "a", "b", "b", "b", "a", "c", "c"]
    expected = [True, True, True, True, False, True, True, False, False, True, True]
    with Client(s.port) as c:
        for alg in ALGORITHMS:
            seen = {}
            for store in ("memory", "redis"):
                seq = []
                for key in script:
                    r = c.exchange(request("GET", f"/{store}-{alg}", [("X-Key", key)]))
                    assert r.status in (200, 429), r
                    seq.append((r.status == 200, r.header("x-ratelimit-remaining")))
                seen[store] = seq
            assert seen["redis"] == seen["memory"], alg
            assert [allowed for allowed, _ in seen["redis"]] == expected, alg
    m = s.metrics()
    assert m.value("sluice_store_errors_total") == 0
    assert m.value("sluice_limit_checks_total", result="error") == 0


def test_keys_have_the_documented_names_and_a_ttl(sluice_factory, upstream, redis_server):
    routes = route("keys", [dict(name="per_ip", algorithm="sliding_window", rate="100/1m",
                                 key="client_ip"),
                            dict(name="per_user", algorithm="token_bucket", rate="100/1m",
                                 key='"header:X-User"')])
    s = sluice_factory(redis_config(redis_server.url, routes, key_prefix="t1:"), upstream=upstream)
    wait_connected(s)
    long_user = "u" * 300
    with Client(s.port) as c:
        for user in ("alice", "alice", long_user, long_user, None):
            headers = [("X-User", user)] if user else []
            assert c.exchange(request("GET", "/keys/x", headers)).status == 200

    digest = hashlib.sha256(long_user.encode()).hexdigest()
    assert sorted(redis_server.command("KEYS", "*")) == sorted([
        "t1:keys:per_ip:sw:127.0.0.1",
        "t1:keys:per_user:tb:alice",
        f"t1:keys:per_user:tb:{digest}",
    ])
    for key in redis_server.command("KEYS", "*"):
        ttl = redis_server.command("PTTL", key)
        assert 0 < ttl <= 61000, (key, ttl)
    # The sliding window logs one member per admitted request under one key.
    assert redis_server.command("ZCARD", "t1:keys:per_ip:sw:127.0.0.1") == 5


def test_one_evalsha_per_applied_limit(sluice_factory, upstream, redis_server):
    routes = route("cost", [
        dict(name="a", algorithm="fixed_window", rate="1000/1h", key="client_ip"),
        dict(name="b", algorithm="token_bucket", rate="1000/1m", key="method"),
        dict(name="local", algorithm="token_bucket", rate="1000/1m", key="client_ip",
             store="memory"),
        dict(name="absent", algorithm="sliding_window", rate="1000/1m",
             key='"header:X-Absent"'),
    ])
    s = sluice_factory(redis_config(redis_server.url, routes), upstream=upstream)
    wait_connected(s)
    wait_past_hour_edge(redis_server)
    with Client(s.port) as c:
        for _ in range(4):  # warm-up: both workers' connections carry their scripts
            assert c.exchange(request("GET", "/cost")).status == 200
    redis_server.command("CONFIG", "RESETSTAT")
    res = hammer([s.port], "/cost", total=60, threads=4)
    assert res.count(200) == 60, (res.statuses, res.errors)
    # One script run per applied limit; decisions on one key in one loop turn share a call.
    calls = commandstats(redis_server, "evalsha")
    assert 2 * 60 / 4 <= calls <= 2 * 60, calls
    # Every request counted once in the window, batched or not.
    assert limit_state(redis_server, "sluice:cost:a:fw:127.0.0.1")[1] == 4 + 60
    assert commandstats(redis_server, "eval") == 0
    assert commandstats(redis_server, "script|load") + commandstats(redis_server, "script") == 0
