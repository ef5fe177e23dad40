"""Redis keys and changes of rate through running sluice processes: a key written by an
earlier version of sluice (no algorithm tag) does not disturb decisions, and a reloaded
rate (SIGHUP) carries each key's state over alike on the memory store and on Redis."""

from conftest import Client, request, wait_until
from redis_support import (hammer, limit_state, redis_config, route, wait_connected,
                           wait_past_hour_edge)


def fleet_on_route_r(sluice_factory, upstream, redis_server, algorithm):
    """Three connected instances with route r and its limit `all`, `algorithm` at 40/1h on
    one key for the whole route. failure_mode open: a failing script would admit every
    request, so an over-admission shows."""
    routes = route("r", [dict(name="all", algorithm=algorithm, rate="40/1h", key="route")])
    cfg = redis_config(redis_server.url, routes, failure_mode="open", timeout="2s")
    instances = [sluice_factory(cfg, upstream=upstream) for _ in range(3)]
    for s in instances:
        wait_connected(s)
    return instances


def test_untagged_keys_of_an_earlier_version_are_not_read(sluice_factory, upstream,
                                                          redis_server):
    # What an earlier sluice left for route r, limit all, key value r: a fixed_window hash
    # at the same name the new key would have had without its tag.
    now = int(redis_server.command("TIME")[0])
    redis_server.command("HSET", "sluice:r:all:r", "k", str(now // 3600), "c", "1000")
    redis_server.command("EXPIRE", "sluice:r:all:r", "3600")
    instances = fleet_on_route_r(sluice_factory, upstream, redis_server, "sliding_window")
    res = hammer([s.port for s in instances], "/r", total=300, threads=48)
    assert not res.errors, res.errors[:5]
    assert res.count(200) == 40, f"{res.count(200)} admitted of 300"
    assert res.count(429) == 260
    for s in instances:
        m = s.metrics()
        assert m.value("sluice_store_errors_total") == 0
        assert m.value("sluice_limit_checks_total", result="error") == 0
    assert redis_server.command("ZCARD", "sluice:r:all:sw:r") == 40
    assert redis_server.command("HGET", "sluice:r:all:r", "c") == "1000"


def test_hash_state_of_an_earlier_version_is_carried_on(sluice_factory, upstream,
                                                        redis_server):
    # An earlier sluice kept a key's state in a hash; this one keeps a string. A fixed_window
    # key it left with 38 of 40 used this hour: three instances admit the 2 left, not 40.
    wait_past_hour_edge(redis_server)
    now = int(redis_server.command("TIME")[0])
    key = "sluice:r:all:fw:r"
    redis_server.command("HSET", key, "s", str(now // 3600 * 3600 * 10**6), "c", "38")
    redis_server.command("EXPIRE", key, "3600")
    instances = fleet_on_route_r(sluice_factory, upstream, redis_server, "fixed_window")
    res = hammer([s.port for s in instances], "/r", total=60, threads=24)
    assert not res.errors, res.errors[:5]
    assert res.count(200) == 2, f"{res.count(200)} admitted of 60"
    assert sum(s.metrics().value("sluice_store_errors_total") for s in instances) == 0
    assert redis_server.command("TYPE", key) == "string"
    assert limit_state(redis_server, key)[1] == 40


def rate_routes(sw_rate, tb_rate, tb_burst):
    out = ""
    for store in ("memory", "redis"):
        out += route(f"sw-{store}", [dict(name="l", algorithm="sliding_window", rate=sw_rate,
                                          key="route", store=store)])
        out += route(f"tb-{store}", [dict(name="l", algorithm="token_bucket", rate=tb_rate,
                                          burst=tb_burst, key="route", store=store)])
    return out


def admitted(s, target, tries):
    with Client(s.port) as c:
        codes = [c.exchange(request("GET", target)).status for _ in range(tries)]
    assert set(codes) <= {200, 429}, codes
    return codes.count(200)


def reload(s, text, n):
    s.reload(text)
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="success") == n,
               what=f"reload {n}")


def test_reloaded_rate_carries_state_over_on_both_stores(sluice_factory, upstream,
                                                         redis_server):
    s = sluice_factory(redis_config(redis_server.url, rate_routes("4/1h", "4/1h", 4)),
                       upstream=upstream)
    wait_connected(s)
    for store in ("memory", "redis"):
        assert admitted(s, f"/sw-{store}", 3) == 3
        assert admitted(s, f"/tb-{store}", 3) == 3

    # N up: the log of 3 leaves 3 of 6; the bucket lacks 45 min of refill, 2 tokens of 7.5
    # min fit in a capacity of 60 min. A restart would admit 6 and 8.
    reload(s, redis_config(redis_server.url, rate_routes("6/1h", "8/1h", 8)), 1)
    for store in ("memory", "redis"):
        assert admitted(s, f"/sw-{store}", 10) == 3, store
        assert admitted(s, f"/tb-{store}", 10) == 2, store

    # N down, P up: 6 logged of 2 per 2 hours; the bucket lacks 60 min of its new capacity
    # of 120 min, and a token is now 60 min: one fits. A restart would admit 2 each.
    reload(s, redis_config(redis_server.url, rate_routes("2/2h", "2/2h", 2)), 2)
    for store in ("memory", "redis"):
        assert admitted(s, f"/sw-{store}", 10) == 0, store
        assert admitted(s, f"/tb-{store}", 10) == 1, store
    m = s.metrics()
    assert m.value("sluice_store_errors_total") == 0
    assert m.value("sluice_limit_checks_total", result="error") == 0
