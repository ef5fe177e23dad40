"""The Redis store on a real Redis Cluster (three masters, made with redis-cli --cluster
create): every key decided on the master that owns its slot, exactly, from several sluice
instances at once; slots moved under load (MOVED, ASK); a master killed."""
import threading
import time

import pytest

from harness_http import wait_until
from redis_cluster_support import (Cluster, Traffic, cluster_config, metric_sum,
                                   need_cluster_tools, tags_per_node)
from redis_support import route, wait_connected, wait_past_hour_edge
from test_redis_shared import ALGORITHMS

LIMIT = 6


@pytest.fixture
def cluster(tmp_path):
    need_cluster_tools()
    c = Cluster(str(tmp_path))
    yield c
    c.stop()


def algorithm_routes(rate=f"{LIMIT}/1h"):
    out = ""
    for alg in ALGORITHMS:
        extra = dict(burst=LIMIT - 1, delay="false") if alg == "leaky_bucket" else {}
        out += route(alg, [dict(name="per_key", algorithm=alg, rate=rate, key='"header:X-Key"',
                                **extra)])
    return out


def test_every_key_admitted_exactly_its_limit(sluice_factory, upstream, cluster):
    tags = tags_per_node(cluster, 4)
    cfg = cluster_config(cluster.seeds[:1], algorithm_routes(), failure_mode="closed",
                         timeout="2s")
    instances = [sluice_factory(cfg, upstream=upstream) for _ in range(3)]
    for s in instances:
        wait_connected(s)
    wait_past_hour_edge(cluster.nodes[0])

    keys = [f"{{{t}}}k" for node_tags in tags.values() for t in node_tags]
    jobs = [(alg, k) for _ in range(3 * LIMIT) for alg in ALGORITHMS for k in keys]
    traffic = Traffic([s.port for s in instances], threads=48)
    traffic.run(jobs)

    assert not traffic.errors, traffic.errors[:5]
    for alg in ALGORITHMS:
        for k in keys:
            assert traffic.count((alg, k), 200) == LIMIT, (alg, k, traffic.statuses[(alg, k)])
            assert traffic.count((alg, k), 429) == 2 * LIMIT, (alg, k)
    # Every master holds keys of every algorithm, and only those of its own slots.
    for node in cluster.nodes:
        assert node.command("DBSIZE") == len(ALGORITHMS) * 4, node.port
    for s in instances:
        m = s.metrics()
        assert m.value("sluice_redis_connected") == 1
        assert m.value("sluice_store_errors_total") == 0
        # Seeded with one node, each worker read the map and found the other masters.
        assert m.value("sluice_redis_topology_refreshes_total") >= 2
        assert m.value("sluice_redis_redirections_total") == 0


def test_slots_moved_under_load(sluice_factory, upstream, cluster):
    timeout = 1.0
    tags = tags_per_node(cluster, 3)
    src, dst = cluster.nodes[0], cluster.nodes[1]
    moving = tags[src][:2]
    staying = tags[src][2:] + tags[dst] + tags[cluster.nodes[2]]
    routes = route("fw", [dict(name="per_key", algorithm="fixed_window", rate="40/1h",
                               key='"header:X-Key"')])
    cfg = cluster_config(cluster.seeds, routes, failure_mode="open", timeout=f"{int(timeout * 1000)}ms")
    instances = [sluice_factory(cfg, upstream=upstream) for _ in range(3)]
    for s in instances:
        wait_connected(s)
    wait_past_hour_edge(cluster.nodes[0])

    # Keys that exist before the move (migrated by MIGRATE), and keys first used while their
    # slot is half-moved (created on the target after ASK).
    old_keys = [f"{{{t}}}old{i}" for t in moving + staying for i in range(3)]
    new_keys = [f"{{{t}}}new{i}" for t in moving for i in range(3)]
    Traffic([s.port for s in instances], threads=12).run([("fw", k) for k in old_keys])

    # The slots are half-moved before the first request for a new key: one sent earlier
    # would create that key on the source, which then answers it without ASK.
    for tag in moving:
        slot = cluster.slot(tag)
        dst.command("CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id())
        src.command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.node_id())
    stop = threading.Event()
    traffic = Traffic([s.port for s in instances], threads=24, timeout=5.0)
    runner = threading.Thread(target=traffic.run,
                              args=([("fw", k) for k in old_keys + new_keys], stop))
    runner.start()
    try:
        # Half-moved slots under traffic: wait until new keys have gone by ASK.
        wait_until(lambda: metric_sum(instances, "sluice_redis_redirections_total",
                                      kind="ask") > 0, timeout=10, what="an ASK redirection")
        for tag in moving:
            slot = cluster.slot(tag)
            while True:
                keys = src.command("CLUSTER", "GETKEYSINSLOT", slot, 100)
                if not keys:
                    break
                src.command("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", *keys)
            for node in (dst, src, cluster.nodes[2]):
                node.command("CLUSTER", "SETSLOT", slot, "NODE", dst.node_id())
        time.sleep(0.5)  # moved slots under traffic: old maps meet MOVED
    finally:
        stop.set()
        runner.join()

    assert not traffic.errors, traffic.errors[:5]
    statuses = traffic.all_statuses()
    assert len(statuses) > 50
    assert all(s in (200, 429) for s in statuses), sorted(set(statuses))
    # No decision hung: redis.timeout bounds the store, the rest is the proxying.
    assert traffic.max_latency < timeout + 1.0, traffic.max_latency
    assert metric_sum(instances, "sluice_redis_redirections_total", kind="moved") > 0
    assert metric_sum(instances, "sluice_redis_redirections_total", kind="ask") > 0
    # Under failure_mode open an error would admit: none happened, so counts are exact.
    assert metric_sum(instances, "sluice_store_errors_total") == 0
    for tag in moving:
        slot = cluster.slot(tag)
        assert cluster.owner(slot) is dst
        # The three old keys migrated, the three new ones created there after ASK.
        assert dst.command("CLUSTER", "COUNTKEYSINSLOT", slot) == 6
        assert src.command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    for k in old_keys + new_keys:
        admitted = traffic.count(("fw", k), 200) + (1 if k in old_keys else 0)
        assert admitted <= 40, (k, admitted)
    # After the move a worker meets at most one MOVED per moved slot (one that saw none
    # during the move still has the old map), then reads the map and goes straight there.
    before = metric_sum(instances, "sluice_redis_redirections_total")
    after_move = Traffic([s.port for s in instances], threads=6)
    after_move.run([("fw", k) for k in new_keys] * 4)
    assert set(after_move.all_statuses()) <= {200, 429}
    workers = 2 * len(instances)
    assert metric_sum(instances, "sluice_redis_redirections_total") - before <= (
        workers * len(moving))


def test_batch_over_a_half_moved_slot(sluice_factory, upstream, cluster):
    # One slot MIGRATING from src to dst, one key of it still on src and others never used:
    # a call carrying both is refused whole (TRYAGAIN), and each decision must still be made,
    # exactly, where its key is.
    tag = tags_per_node(cluster, 1)[cluster.nodes[0]][0]
    src, dst = cluster.nodes[0], cluster.nodes[1]
    slot = cluster.slot(tag)
    limit = 20
    routes = route("fw", [dict(name="per_key", algorithm="fixed_window", rate=f"{limit}/1h",
                               key='"header:X-Key"')])
    cfg = cluster_config(cluster.seeds, routes, failure_mode="closed", timeout="2s")
    s = sluice_factory(cfg, upstream=upstream)
    wait_connected(s)
    wait_past_hour_edge(cluster.nodes[0])
    present = f"{{{tag}}}present"
    Traffic([s.port], threads=1).run([("fw", present)])
    dst.command("CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id())
    src.command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.node_id())

    absent = [f"{{{tag}}}absent{i}" for i in range(8)]
    jobs = [("fw", k) for _ in range(2 * limit) for k in [present] + absent]
    traffic = Traffic([s.port], threads=32)
    traffic.run(jobs)

    assert not traffic.errors, traffic.errors[:5]
    assert s.metrics().value("sluice_store_errors_total") == 0
    assert traffic.count(("fw", present), 200) == limit - 1
    for k in absent:
        assert traffic.count(("fw", k), 200) == limit, (k, traffic.statuses[("fw", k)])
    # The key that was there stayed; the new ones were made on the target after ASK.
    assert src.command("CLUSTER", "COUNTKEYSINSLOT", slot) == 1
    assert dst.command("CLUSTER", "COUNTKEYSINSLOT", slot) == len(absent)
    assert s.metrics().value("sluice_redis_redirections_total", kind="ask") >= len(absent)


def test_master_killed(sluice_factory, upstream, cluster):
    timeout = 0.5
    tags = tags_per_node(cluster, 2)
    victim = cluster.nodes[2]
    routes = route("fw", [dict(name="per_key", algorithm="fixed_window", rate="1000/1h",
                               key='"header:X-Key"')])
    cfg = cluster_config(cluster.seeds, routes, failure_mode="closed", timeout=f"{int(timeout * 1000)}ms")
    instances = [sluice_factory(cfg, upstream=upstream) for _ in range(2)]
    for s in instances:
        wait_connected(s)
    dead_keys = [f"{{{t}}}k" for t in tags[victim]]
    live_keys = [f"{{{t}}}k" for node in cluster.nodes[:2] for t in tags[node]]
    ports = [s.port for s in instances]

    warm = Traffic(ports, threads=8)
    warm.run([("fw", k) for k in dead_keys + live_keys] * 2)
    assert set(warm.all_statuses()) == {200}

    victim.kill()
    wait_connected(instances[0], want=0, timeout=5)
    # Right after the kill, and again once the cluster has marked it failed (node timeout 2 s).
    for _ in range(2):
        traffic = Traffic(ports, threads=16)
        traffic.run([("fw", k) for k in dead_keys + live_keys] * 3)
        assert not traffic.errors, traffic.errors[:5]
        for k in dead_keys:
            assert traffic.count(("fw", k), 503) == 3, (k, traffic.statuses[("fw", k)])
        for k in live_keys:
            assert traffic.count(("fw", k), 200) == 3, (k, traffic.statuses[("fw", k)])
        assert traffic.max_latency < timeout + 1.0, traffic.max_latency
        wait_until(lambda: "fail" in cluster.nodes[0].command("CLUSTER", "NODES").split(
            str(victim.port))[1].split("\n")[0], 10, 0.1, "the cluster to mark the node failed")
    for s in instances:
        assert s.metrics().value("sluice_redis_connected") == 0
        assert s.metrics().value("sluice_store_errors_total", kind="connection") > 0
