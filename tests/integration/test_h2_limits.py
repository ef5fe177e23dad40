"""Limits on HTTP/2 streams (SPEC section 10): each stream is one request through the same
routes, limits, headers, metrics and access log as HTTP/1.1, and a leaky bucket's delay
holds the stream, not the connection."""
import json
import time

from conftest import Client, request, wait_until
from h2_support import H2Conn, h2_config

FIXED = """\
  - name: fixed
    match:
      path_prefix: "/fixed"
    limits:
      - name: per_client
        algorithm: fixed_window
        rate: 3/1h
        key: "header:X-Client"
  - name: free
    match:
      path_prefix: "/"
    limits: []
"""

LEAKY = """\
  - name: queued
    match:
      path_prefix: "/queued"
    limits:
      - name: spaced
        algorithm: leaky_bucket
        rate: 1/2s
        burst: 3
        key: route
  - name: free
    match:
      path_prefix: "/"
    limits: []
"""


def check_allowed(st, remaining):
    assert st.status == 200, st
    assert st.header("ratelimit-policy") == '"per_client";q=3;w=3600', st.headers
    r, _, t = st.header("ratelimit").partition(";t=")
    assert r == f'"per_client";r={remaining}', st.headers
    assert 0 < int(t) <= 3600
    assert st.header("x-ratelimit-limit") == "3"
    assert st.header("x-ratelimit-remaining") == str(remaining)


def check_denied(st):
    assert st.status == 429, st
    retry = int(st.header("retry-after"))
    assert 0 < retry <= 3600, st.headers
    assert st.header("content-type") == "application/json"
    assert st.json() == {"error": "rate_limited", "route": "fixed", "limit": "per_client",
                         "retry_after": retry}
    assert st.header("ratelimit") == f'"per_client";r=0;t={retry}', st.headers
    assert st.header("x-ratelimit-remaining") == "0"


def test_fixed_window_on_streams_of_one_connection(sluice_factory, upstream):
    s = sluice_factory(h2_config(routes=FIXED), upstream=upstream)
    who = [("x-client", "alice")]
    with H2Conn(s.port) as c:
        streams = [c.response(c.request("GET", f"/fixed/{i}", who)) for i in range(5)]
        for st, remaining in zip(streams[:3], (2, 1, 0)):
            check_allowed(st, remaining)
        for st in streams[3:]:
            check_denied(st)
        # Another key, and another route, on the same connection are not affected.
        check_allowed(c.response(c.request("GET", "/fixed/bob", [("x-client", "bob")])), 2)
        assert c.response(c.request("GET", "/other", who)).status == 200
        assert not c.goaways
    assert [e["target"] for e in upstream.log()] == ["/fixed/0", "/fixed/1", "/fixed/2",
                                                     "/fixed/bob", "/other"]
    m = wait_until(lambda: (lambda m: m if m.value("sluice_requests_total", route="fixed") == 6
                            else None)(s.metrics()), 5, 0.05, "the requests to be counted")
    assert m.value("sluice_requests_total", route="fixed", decision="allowed") == 4
    assert m.value("sluice_requests_total", route="fixed", decision="limited") == 2
    assert m.value("sluice_limit_checks_total", route="fixed", limit="per_client", result="deny") == 2
    assert m.value("sluice_responses_total", route="fixed", code="429") == 2
    lines = [json.loads(l) for l in s.wait_access_log(7)]
    fixed = [l for l in lines if l["path"].startswith("/fixed/") and l["path"] != "/fixed/bob"]
    assert sorted(l["status"] for l in fixed) == [200, 200, 200, 429, 429], fixed
    assert all(l["proto"] == "2" and l["route"] == "fixed" for l in fixed), fixed
    assert sorted(l["decision"] for l in fixed) == ["allowed"] * 3 + ["limited"] * 2


def test_fixed_window_on_concurrent_streams(sluice_factory, upstream):
    # Five streams opened at once: the limit admits exactly three, whichever they are.
    s = sluice_factory(h2_config(routes=FIXED), upstream=upstream)
    with H2Conn(s.port) as c:
        streams = c.responses([c.request("GET", f"/fixed/c{i}", [("x-client", "carol")])
                               for i in range(5)])
    assert sorted(st.status for st in streams) == [200, 200, 200, 429, 429], streams
    for st in streams:
        if st.status == 429:
            check_denied(st)
    assert len(upstream.log()) == 3


def test_limit_is_shared_between_http1_and_http2(sluice_factory, upstream):
    s = sluice_factory(h2_config(routes=FIXED), upstream=upstream)
    who = [("X-Client", "dave")]
    with Client(s.port) as c:
        assert c.exchange(request("GET", "/fixed/h1", who)).status == 200
    with H2Conn(s.port) as c:
        got = [c.response(c.request("GET", f"/fixed/h2/{i}", who)).status for i in range(3)]
    assert got == [200, 200, 429]
    with Client(s.port) as c:
        assert c.exchange(request("GET", "/fixed/h1", who)).status == 429


def test_leaky_bucket_delays_the_stream_not_the_connection(sluice_factory, upstream):
    s = sluice_factory(h2_config(routes=LEAKY), upstream=upstream)
    with H2Conn(s.port, timeout=10) as c:
        first = c.response(c.request("GET", "/queued/first"))
        assert first.status == 200, first
        # The next departure is 2 s after the first: this stream waits in the queue...
        held = c.request("GET", "/queued/held")
        # ...while a stream on an unlimited route, sent after it, is answered at once,
        # and so is a second one: the connection is not blocked behind the held stream.
        free = c.response(c.request("GET", "/free/1"))
        assert free.status == 200, free
        assert not held.done, "the queued stream was answered before its departure"
        free2 = c.response(c.request("GET", "/free/2"))
        assert free2.status == 200 and not held.done
        c.response(held, 10)
        assert held.status == 200, held
    # Nothing is admitted before its instant: 2 s after the first was admitted, which was
    # before its answer arrived.
    assert held.t_end - first.t_end > 1.5, held.t_end - first.t_end
    assert free.t_end < held.t_end - 1.0
    assert [e["target"] for e in upstream.log()] == ["/queued/first", "/free/1", "/free/2",
                                                     "/queued/held"]


def test_leaky_bucket_held_stream_reset_by_the_client(sluice_factory, upstream):
    # A held stream the client cancels never reaches the upstream; the connection goes on.
    s = sluice_factory(h2_config(routes=LEAKY), upstream=upstream)
    with H2Conn(s.port, timeout=10) as c:
        assert c.response(c.request("GET", "/queued/a")).status == 200
        held = c.request("GET", "/queued/cancelled")
        assert c.response(c.request("GET", "/free/x")).status == 200
        c.rst(held)
        t0 = time.monotonic()
        after = c.response(c.request("GET", "/free/y"))
        assert after.status == 200
        # Past the held stream's departure time, and a little more.
        c.wait(lambda: time.monotonic() - t0 > 2.5, 5, "the departure time to pass")
        assert c.response(c.request("GET", "/free/z")).status == 200
        assert not c.goaways
    assert "/queued/cancelled" not in [e["target"] for e in upstream.log()]
