"""Start-up with Redis (SPEC.md sections 3 and 8): until a worker's first connection attempt
has finished its decisions wait for it, so instances that take traffic the moment their
ports accept still admit exactly the limit and answer no 503 while Redis is up; /readyz
says ready only once every worker's attempt is over; a Redis that is down or wedged at
start fails decisions within redis.timeout, never hanging them. With Redis Cluster the first
attempt is the slot map read and the first attempt of each master it names; with Sentinel,
the master lookup and the master's first attempt."""
import shutil
import socket
import threading
import time

import pytest

from conftest import can_connect, get, http, request, wait_until
from redis_cluster_support import (Cluster, Sentinels, cluster_config, need_cluster_tools,
                                   sentinel_config, tags_per_node)
from redis_support import hammer, redis_config, route, wait_past_hour_edge

SLACK = 1.5  # a loaded 2-core machine running sanitizer builds answers late


def readyz(s):
    return http(s.admin_port, request("GET", "/readyz"), timeout=2).status


def accepting(s):
    if not s.alive():
        pytest.fail("sluice exited:\n" + s.stderr_text()[-3000:])
    return can_connect(s.port)


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_instances_taking_traffic_at_once_admit_exactly_the_limit(sluice_factory, upstream,
                                                                   redis_server, mode):
    routes = route("fw", [dict(name="all", algorithm="fixed_window", rate="40/1h", key="route")])
    cfg = redis_config(redis_server.url, routes, failure_mode=mode, timeout="2s")
    wait_past_hour_edge(redis_server)
    instances = [sluice_factory(cfg, upstream=upstream, wait=False) for _ in range(3)]
    # No readiness wait: requests go as soon as the ports accept, before the workers'
    # Redis handshakes can have finished.
    for s in instances:
        wait_until(lambda s=s: accepting(s), 10, 0.001, "sluice to accept")
    res = hammer([s.port for s in instances], "/fw", total=300, threads=48)
    assert not res.errors, res.errors[:5]
    assert res.count(503) == 0, "no decision may fail while Redis is up"
    assert res.count(200) == 40, f"{res.count(200)} admitted of 300"
    assert res.count(429) == 260
    for s in instances:
        m = s.metrics()
        assert m.value("sluice_store_errors_total") == 0
        assert m.value("sluice_requests_total", route="fw", decision="store_error") == 0


@pytest.fixture
def cluster(tmp_path):
    need_cluster_tools()
    c = Cluster(str(tmp_path))
    yield c
    c.stop()


@pytest.fixture
def sentinels(tmp_path):
    for tool in ("redis-server", "redis-sentinel"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    s = Sentinels(str(tmp_path))
    yield s
    s.stop()


def assert_exact_at_once(instances, headers, limit, total):
    for s in instances:
        wait_until(lambda s=s: accepting(s), 10, 0.001, "sluice to accept")
    res = hammer([s.port for s in instances], "/fw", total=total, threads=48,
                 headers=headers)
    assert not res.errors, res.errors[:5]
    assert res.count(503) == 0, "no decision may fail while Redis is up"
    assert res.count(200) == limit, f"{res.count(200)} admitted of {total}"
    assert res.count(429) == total - limit
    for s in instances:
        assert s.metrics().value("sluice_store_errors_total") == 0


def test_cluster_decisions_wait_for_the_map_and_the_key_s_master(sluice_factory, upstream,
                                                                 cluster):
    # Seeded with one node, the key on another master: the first decisions need the slot map
    # read from the seed and then a connection to a master the seed alone names.
    tag = tags_per_node(cluster, 1)[cluster.nodes[2]][0]
    routes = route("fw", [dict(name="per_key", algorithm="fixed_window", rate="40/1h",
                               key='"header:X-Key"')])
    cfg = cluster_config(cluster.seeds[:1], routes, failure_mode="closed", timeout="2s")
    wait_past_hour_edge(cluster.nodes[0])
    instances = [sluice_factory(cfg, upstream=upstream, wait=False) for _ in range(2)]
    assert_exact_at_once(instances, [("X-Key", f"{{{tag}}}k")], 40, 200)


def test_sentinel_decisions_wait_for_the_lookup_and_the_master(sluice_factory, upstream,
                                                               sentinels):
    routes = route("fw", [dict(name="all", algorithm="fixed_window", rate="40/1h",
                               key="route")])
    cfg = sentinel_config(sentinels.name, sentinels.addresses, routes, failure_mode="closed",
                          timeout="2s")
    wait_past_hour_edge(sentinels.master)
    instances = [sluice_factory(cfg, upstream=upstream, wait=False) for _ in range(2)]
    assert_exact_at_once(instances, (), 40, 200)


def test_readyz_turns_200_only_once_every_worker_has_connected(sluice_factory, upstream,
                                                                redis_server):
    routes = route("r", [dict(name="all", algorithm="sliding_window", rate="100/1m",
                              key="route")])
    s = sluice_factory(redis_config(redis_server.url, routes, failure_mode="open",
                                    workers=4), upstream=upstream, wait=False)
    seen = []

    def first_ready():
        try:
            status = readyz(s)
        except OSError:
            return False  # the admin listener is not up yet
        seen.append(status)
        return status == 200
    wait_until(first_ready, 10, 0.001, "/readyz to answer 200")
    # Ready means connected: with failure_mode open too, every worker's attempt is over.
    assert s.metrics().value("sluice_redis_connected") == 1
    assert set(seen) <= {200, 503} and seen[-1] == 200
    assert 200 not in seen[:-1], seen
    assert [readyz(s) for _ in range(5)] == [200] * 5
    assert get(s.port, "/r").status == 200


class WedgedRedis:
    """A TCP peer that accepts connections and never answers, as a hung server would."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        self.sock.settimeout(0.1)
        while not self.stop:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.thread.join()
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_wedged_redis_at_start_fails_decisions_within_the_timeout(sluice_factory, upstream, mode):
    wedged = WedgedRedis()
    try:
        routes = route("r", [dict(name="all", algorithm="fixed_window", rate="100/1h",
                                  key="route")])
        # The first attempt gives up after redis.timeout + 1 s: long enough to watch.
        cfg = redis_config(f"redis://127.0.0.1:{wedged.port}/0", routes, failure_mode=mode,
                           timeout="300ms")
        t0 = time.monotonic()
        s = sluice_factory(cfg, upstream=upstream)
        assert readyz(s) == 503, "ready before the first attempt ended"
        t = time.monotonic()
        r = get(s.port, "/r")
        elapsed = time.monotonic() - t
        assert r.status == (200 if mode == "open" else 503)
        assert 0.25 <= elapsed < 0.3 + SLACK, f"answered after {elapsed:.3f} s"
        m = s.metrics()
        assert m.value("sluice_store_errors_total", store="redis", kind="timeout") == 1
        assert m.value("sluice_redis_connected") == 0

        # Once every worker's attempt has failed: ready under open, not under closed, and
        # decisions fail at once.
        # The log names the node: "redis (worker W): HOST:PORT: connection dropped: ...".
        dropped = [f"redis (worker {w}): 127.0.0.1:{wedged.port}: connection dropped: timed out"
                   for w in (0, 1)]
        wait_until(lambda: all(line in s.stderr_text() for line in dropped), 10, 0.05,
                   "both workers' first attempts to time out")
        assert time.monotonic() - t0 >= 1.3
        assert readyz(s) == (200 if mode == "open" else 503)
        t = time.monotonic()
        r = get(s.port, "/r")
        assert r.status == (200 if mode == "open" else 503)
        assert time.monotonic() - t < 0.25 + SLACK / 2
        assert s.metrics().value("sluice_store_errors_total", store="redis",
                                 kind="connection") == 1
    finally:
        wedged.close()
