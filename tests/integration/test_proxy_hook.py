"""The proxy core against the engine and the sockets: verdicts (429 with a body to skip,
leaky-bucket delays), max_connections, framing the parser alone lets through, half-closed
clients and stale pooled upstream connections."""
import socket
import time

import pytest

from conftest import Client, base_config, http, request

CFG = base_config(upstream_timeout="1s", header_timeout="1s", max_header_bytes="4k",
                  max_body_bytes="1m")

LIMITED = """\
listen: "{listen}"
workers: 1
admin:
  listen: "{admin}"
upstream:
  url: "{upstream}"
client:
  max_connections: 3
access_log: "{access_log}"
routes:
  - name: login
    match:
      path_prefix: "/login"
    limits:
      - name: per_ip
        algorithm: fixed_window
        rate: 1/1h
        key: client_ip
  - name: slow
    match:
      path_prefix: "/slow"
    limits:
      - name: leak
        algorithm: leaky_bucket
        rate: 2/s
        burst: 5
        key: route
  - name: all
    match:
      path_prefix: "/"
    limits: []
"""


@pytest.fixture
def px(sluice_factory, upstream):
    s = sluice_factory(CFG, upstream=upstream)
    s.upstream = upstream
    return s


@pytest.mark.parametrize("raw", [
    # llhttp accepts these; sluice must not.
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    # and these llhttp already refuses.
    b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
], ids=["te-gzip-chunked", "obs-fold", "space-before-colon", "no-host", "two-hosts",
        "te-in-http10", "bare-cr", "nul", "duplicate-cl"])
def test_framing_rejected_and_never_forwarded(px, raw):
    with Client(px.port) as c:
        c.send(raw)
        r = c.read_response()
        assert r.status == 400
        assert r.header("connection") == "close"
        assert c.closed_by_peer()
    assert px.upstream.count() == 0


def test_half_closed_client_still_gets_its_response(px):
    with Client(px.port) as c:
        c.send(request("GET", "/sleep/100"))
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_response().status == 200


def test_upstream_closing_pooled_connections_is_invisible(px):
    for _ in range(3):
        assert http(px.port, request("GET", "/close")).status == 200
        time.sleep(0.05)  # the upstream's close reaches the pooled connection (or not)
        assert http(px.port, request("GET", "/after")).status == 200


def test_429_skips_the_body_and_keeps_the_connection(sluice_factory, upstream):
    s = sluice_factory(LIMITED, upstream=upstream)
    with Client(s.port) as c:
        assert c.exchange(request("POST", "/login", body=b"a" * 100)).status == 200
        r = c.exchange(request("POST", "/login", body=b"b" * 100000))
        assert r.status == 429 and r.json()["error"] == "rate_limited"
        assert r.header("retry-after") is not None
        assert r.header("content-type") == "application/json"
        assert c.exchange(request("GET", "/other")).status == 200
        # With Expect the body never comes: the answer ends the connection instead.
        c.send(request("POST", "/login", [("Expect", "100-continue"), ("Content-Length", "5")]))
        r = c.read_response()
        assert r.status == 429 and r.interim == [] and r.header("connection") == "close"
    assert upstream.count() == 2


def test_leaky_bucket_delay_holds_the_request(sluice_factory, upstream):
    s = sluice_factory(LIMITED, upstream=upstream)
    start = time.monotonic()
    with Client(s.port) as c:
        for _ in range(3):
            assert c.exchange(request("GET", "/slow")).status == 200
    assert time.monotonic() - start >= 0.9  # 2/s: the third leaves a second after the first


def test_max_connections_leaves_the_rest_in_the_accept_queue(sluice_factory, upstream):
    s = sluice_factory(LIMITED, upstream=upstream, admin=False)
    clients = [Client(s.port) for _ in range(3)]
    for c in clients:
        assert c.exchange(request("GET", "/")).status == 200
    waiting = Client(s.port, timeout=0.5)  # the kernel accepts it; sluice does not yet
    waiting.send(request("GET", "/"))
    with pytest.raises(socket.timeout):
        waiting.read_response()
    clients[0].close()
    waiting.sock.settimeout(5)
    assert waiting.read_response().status == 200
    for c in clients[1:] + [waiting]:
        c.close()
