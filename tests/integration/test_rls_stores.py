"""The rate limit service on its stores (SPEC section 12 and sections 3 and 5): every
algorithm extension on the memory store and on Redis, two instances on one redis-server
admitting exactly the limit between them, the Redis key layout, the deny cache on an
over-limit flood, and Redis killed under load with each failure_mode honoured."""
import signal
import threading
import time

import pytest

from conftest import wait_until
from harness_http import can_connect, pick_port
from rls_support import OK, OVER_LIMIT, UNITS, Client, rls_config, start_rls, write_files

ALGORITHMS = """\
    domain: algos
    descriptors:
      - key: fixed_window
        rate_limit: {unit: minute, requests_per_unit: 3}
      - key: sliding_window
        rate_limit: {unit: minute, requests_per_unit: 3, algorithm: sliding_window}
      - key: sliding_window_counter
        rate_limit: {unit: minute, requests_per_unit: 3, algorithm: sliding_window_counter}
      - key: token_bucket
        rate_limit: {unit: minute, requests_per_unit: 3, algorithm: token_bucket}
      - key: token_bucket_burst
        rate_limit: {unit: minute, requests_per_unit: 3, algorithm: token_bucket, burst: 5}
      - key: leaky_bucket
        rate_limit: {unit: minute, requests_per_unit: 3, algorithm: leaky_bucket, burst: 2}
"""

EXACT = """\
    domain: edge
    descriptors:
      - key: api_key
        rate_limit: {unit: hour, requests_per_unit: 50}
      - key: tight
        rate_limit: {unit: hour, requests_per_unit: 2}
      - key: five
        rate_limit: {unit: hour, requests_per_unit: 5}
"""

# Admitted before OVER_LIMIT, for 3 a minute: the burst where one is set, a leaky bucket's
# queue of 2 behind the first.
ADMITTED = {"fixed_window": 3, "sliding_window": 3, "sliding_window_counter": 3,
            "token_bucket": 3, "token_bucket_burst": 5, "leaky_bucket": 3}


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_every_algorithm(sluice_factory, redis_factory, tmp_path, store):
    redis = redis_factory() if store == "redis" else None
    s, c = start_rls(sluice_factory, tmp_path, {"algos.yaml": ALGORITHMS}, redis=redis)
    for name, admitted in ADMITTED.items():
        for i in range(admitted + 2):
            r = c.call("algos", [[(name, "k")]])
            status = r.statuses[0]
            want = OK if i < admitted else OVER_LIMIT
            assert (r.overall, status.code) == (want, want), (name, i, r)
            assert status.limit == (3, UNITS["minute"], ""), (name, status)
            if want == OVER_LIMIT:
                assert status.remaining == 0
            assert status.reset is not None and status.reset[0] <= 60 * 3, (name, status)
    if redis:
        keys = redis.command("KEYS", "sluice:rls:*")
        assert "sluice:rls:algos:algos.fixed_window:rfw:fixed_window_k" in keys, keys
        assert "sluice:rls:algos:algos.token_bucket:tb:token_bucket_k" in keys, keys
    c.close()


def hammer(clients, descriptor, n_threads, per_thread):
    """Calls from n_threads threads spread over the clients; returns the OK count."""
    oks = []

    def run(i):
        c = clients[i % len(clients)]
        mine = 0
        for _ in range(per_thread):
            if c.call("edge", [descriptor]).overall == OK:
                mine += 1
        oks.append(mine)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(oks)


def test_two_instances_share_one_limit(sluice_factory, redis_server, tmp_path):
    """Two sluices on one redis-server, two workers each, 8 clients at once: exactly 50 of
    200 calls are OK between them."""
    config_dir = write_files(str(tmp_path / "ratelimit"), {"edge.yaml": EXACT})
    clients = []
    for i in range(2):
        port = pick_port()
        sluice_factory(rls_config(config_dir, port, redis=redis_server, workers=2))
        wait_until(lambda: can_connect(port), 10, 0.02, "the rls listener")
        clients += [Client(port), Client(port)]
    assert hammer(clients, [("api_key", "shared")], 8, 25) == 50
    r = clients[0].call("edge", [[("api_key", "shared")]])
    assert r.statuses[0].code == OVER_LIMIT and r.statuses[0].remaining == 0
    for c in clients:
        c.close()


def test_deny_cache_keeps_a_flood_off_redis(sluice_factory, redis_server, tmp_path):
    """Over the limit, the same answers come from the deny cache: Redis's counter stops at
    the call that went over, and sluice_deny_cache_hits_total counts the rest."""
    s, c = start_rls(sluice_factory, tmp_path, {"edge.yaml": EXACT}, redis=redis_server)
    key = "sluice:rls:edge:edge.tight:rfw:tight_flood"
    for i in range(3):
        c.call("edge", [[("tight", "flood")]])
    for i in range(20):
        r = c.call("edge", [[("tight", "flood")]])
        assert r.overall == OVER_LIMIT
        assert r.statuses[0].remaining == 0 and 1 <= r.statuses[0].reset[0] <= 3600
    assert s.metrics().value("sluice_deny_cache_hits_total") >= 19
    assert redis_server.command("EXISTS", key) == 1
    assert redis_server.command("PTTL", key) > 0
    c.close()


@pytest.mark.parametrize("mode", ["open", "closed", "local"])
def test_redis_killed_under_load(sluice_factory, redis_server, tmp_path, mode):
    """Calls keep coming while redis-server is stopped: each is answered within the budget,
    as failure_mode says (open: OK; closed: OVER_LIMIT; local: this instance's memory store,
    so the limit of 5 still holds), counted as store errors and code="error"; after Redis is
    back, decisions are Redis's again."""
    s, c = start_rls(sluice_factory, tmp_path, {"edge.yaml": EXACT}, redis=redis_server,
                     failure_mode=mode)
    assert c.call("edge", [[("five", "warm")]]).overall == OK
    stop = threading.Event()
    answered = []

    def load():
        lc = Client(s.rls_port)
        while not stop.is_set():
            lc.call("edge", [[("api_key", f"load{len(answered) % 7}")]])
            answered.append(1)
        lc.close()
    t = threading.Thread(target=load)
    t.start()
    time.sleep(0.3)
    redis_server.stop()
    codes = []
    for i in range(8):
        t0 = time.monotonic()
        r = c.call("edge", [[("five", "down")]])
        assert time.monotonic() - t0 < 2.0
        codes.append(r.statuses[0].code)
    if mode == "open":
        assert codes == [OK] * 8
    elif mode == "closed":
        assert codes == [OVER_LIMIT] * 8
    else:
        assert codes == [OK] * 5 + [OVER_LIMIT] * 3
    m = s.metrics()
    assert m.value("sluice_rls_requests_total", domain="edge", code="error") >= 8
    assert m.value("sluice_store_errors_total", store="redis") >= 8
    n = len(answered)
    time.sleep(0.3)
    assert len(answered) > n  # the load is still answered
    redis_server.start()
    wait_until(lambda: s.metrics().value("sluice_redis_connected") == 1, 10, 0.05, "Redis back")
    assert c.call("edge", [[("five", "back")]]).statuses[0].remaining == 4
    assert redis_server.command("EXISTS", "sluice:rls:edge:edge.five:rfw:five_back") == 1
    stop.set()
    t.join()
    assert s.alive()
    c.close()


def test_grpc_timeout_answers_deadline_exceeded(sluice_factory, redis_server, tmp_path):
    """A call whose decision outlives its grpc-timeout (Redis stopped, redis.timeout 3s) is
    answered DEADLINE_EXCEEDED when the timeout passes; the late decision goes nowhere and
    the connection serves on."""
    from h2_support import H2Conn
    from rls_support import framed, rate_limit_request
    s, c = start_rls(sluice_factory, tmp_path, {"edge.yaml": EXACT}, redis=redis_server,
                     redis_timeout="3s")
    assert c.call("edge", [[("five", "t")]]).overall == OK
    body = framed(rate_limit_request("edge", [[("five", "t")]]))
    headers = [("content-type", "application/grpc"), ("te", "trailers"),
               ("grpc-timeout", "300m")]
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        with H2Conn(s.rls_port) as h:
            t0 = time.monotonic()
            st = h.request("POST", "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
                           headers, body)
            h.response(st, timeout=10)
            elapsed = time.monotonic() - t0
            assert st.header("grpc-status") == "4", st
            assert 0.25 <= elapsed < 2.5, elapsed
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    time.sleep(3.5)  # the stopped decision completes and finds its stream gone
    with H2Conn(s.rls_port) as h:
        st = h.request("POST", "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
                       headers, body)
        h.response(st, timeout=10)
        fields = dict(st.trailers or [])
        assert fields.get("grpc-status") == "0", st
    assert s.alive()
    c.close()
