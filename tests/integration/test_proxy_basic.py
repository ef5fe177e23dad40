"""Forwarding (SPEC section 7): request lines, keep-alive on both sides, HTTP/1.0,
pipelining, hop-by-hop headers and X-Forwarded-*."""
import pytest

from conftest import Client, base_config, http, request

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}


def names(headers):
    return [n.lower() for n, _ in headers]


def values(headers, name):
    return [v for n, v in headers if n.lower() == name.lower()]


@pytest.mark.parametrize("target", [
    "/",
    "/plain/path",
    "/q?a=1&b=two&c=%20x%2By&d",
    "/enc%2Fslash/%7Euser/%41%42?x=%2F",
    "/dots/./a/../b//c",
    "/odd;params=1,2/x?y=[1]&z=a:b@c",
])
def test_get_request_line_forwarded_exactly(proxy, target):
    resp = http(proxy.port, request("GET", target))
    assert resp.status == 200, resp
    echo = resp.json()
    assert (echo["method"], echo["target"], echo["version"]) == ("GET", target, "HTTP/1.1")
    assert [e["target"] for e in proxy.upstream.log()] == [target]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_methods_with_bodies_forwarded(proxy, method):
    body = b'{"k": "v"}'
    resp = http(proxy.port, request(method, "/m?x=1", [("Content-Type", "application/json")], body))
    assert resp.status == 200, resp
    echo = resp.json()
    assert (echo["method"], echo["target"]) == (method, "/m?x=1")
    assert echo["body_length"] == len(body)
    assert values(echo["headers"], "content-type") == ["application/json"]


def test_head_has_no_body_and_keeps_the_connection_usable(proxy):
    with Client(proxy.port) as c:
        resp = c.exchange(request("HEAD", "/stream/5000?cl=1"))
        assert resp.status == 200
        assert resp.header("content-length") == "5000"
        assert resp.header("x-body-length") == "5000"
        assert resp.body == b""
        # Any stray body bytes would be read as the next status line.
        resp = c.exchange(request("HEAD", "/echo"))
        assert resp.status == 200 and resp.body == b""
        resp = c.exchange(request("GET", "/after-head"))
        assert resp.status == 200 and resp.json()["target"] == "/after-head"
    assert [e["method"] for e in proxy.upstream.log()] == ["HEAD", "HEAD", "GET"]


@pytest.mark.parametrize("status", [201, 204, 301, 404, 500, 503])
def test_upstream_status_passed_through(proxy, status):
    with Client(proxy.port) as c:
        resp = c.exchange(request("GET", f"/status/{status}"))
        assert resp.status == status
        if status == 204:
            assert resp.body == b""
        else:
            assert resp.json()["target"] == f"/status/{status}"
        assert c.exchange(request("GET", "/next")).status == 200


def test_client_keepalive_many_requests_one_connection(proxy):
    with Client(proxy.port) as c:
        for i in range(20):
            resp = c.exchange(request("GET", f"/ka/{i}"))
            assert resp.status == 200
            assert resp.json()["target"] == f"/ka/{i}"
            assert "close" not in resp.tokens("connection")
    assert len(proxy.upstream.log()) == 20


def test_upstream_connections_are_reused(proxy):
    n = 12
    with Client(proxy.port) as c:
        for i in range(n):
            assert c.exchange(request("GET", f"/reuse/{i}")).status == 200
    conns = {e["peer_port"] for e in proxy.upstream.log()}
    assert len(conns) <= n // 2, f"{n} requests used {len(conns)} upstream connections"


def test_upstream_connections_are_reused_across_clients(proxy):
    n = 12
    for i in range(n):
        assert http(proxy.port, request("GET", f"/reuse/{i}")).status == 200
    conns = {e["peer_port"] for e in proxy.upstream.log()}
    assert len(conns) < n, f"{n} requests used {len(conns)} upstream connections"


def test_upstream_close_is_not_reused(proxy):
    with Client(proxy.port) as c:
        assert c.exchange(request("GET", "/close")).status == 200
        assert c.exchange(request("GET", "/after")).status == 200
    log = proxy.upstream.log()
    assert [e["target"] for e in log] == ["/close", "/after"]
    assert log[0]["conn_id"] != log[1]["conn_id"]


def test_http10_closes_without_keepalive(proxy):
    with Client(proxy.port) as c:
        resp = c.exchange(request("GET", "/ten", version="HTTP/1.0"))
        assert resp.status == 200
        assert resp.json()["target"] == "/ten"
        assert c.closed_by_peer(), "HTTP/1.0 without keep-alive must be closed"


def test_http10_without_host(proxy):
    with Client(proxy.port) as c:
        resp = c.exchange(request("GET", "/nohost", version="HTTP/1.0", host=None))
        assert resp.status == 200
        assert c.closed_by_peer()


def test_http10_keepalive_is_honoured(proxy):
    with Client(proxy.port) as c:
        for i in range(3):
            resp = c.exchange(request("GET", f"/ten/{i}", [("Connection", "keep-alive")],
                                      version="HTTP/1.0"))
            assert resp.status == 200
            assert resp.json()["target"] == f"/ten/{i}"
            assert "keep-alive" in resp.tokens("connection")
            assert resp.header("content-length") is not None


def test_http11_connection_close_is_honoured(proxy):
    with Client(proxy.port) as c:
        resp = c.exchange(request("GET", "/bye", [("Connection", "close")]))
        assert resp.status == 200
        assert "close" in resp.tokens("connection")
        assert c.closed_by_peer()


def test_pipelined_requests_answered_in_order(proxy):
    reqs = []
    for i in range(10):
        if i % 3 == 1:
            reqs.append(request("POST", f"/pipe/{i}", body=b"x" * (i * 1000)))
        elif i % 3 == 2:
            reqs.append(request("GET", f"/sleep/{(10 - i) * 20}?i={i}"))
        else:
            reqs.append(request("GET", f"/pipe/{i}"))
    with Client(proxy.port) as c:
        c.send(b"".join(reqs))
        resps = c.read_responses(10)
        targets = [r.json()["target"] for r in resps]
        lengths = [r.json()["body_length"] for r in resps]
        assert c.exchange(request("GET", "/after")).status == 200
    expected = [f"/pipe/{i}" if i % 3 != 2 else f"/sleep/{(10 - i) * 20}?i={i}" for i in range(10)]
    assert targets == expected
    assert lengths == [i * 1000 if i % 3 == 1 else 0 for i in range(10)]


def test_pipelined_head_and_get(proxy):
    with Client(proxy.port) as c:
        c.send(request("HEAD", "/stream/100?cl=1") + request("GET", "/stream/100?cl=1")
               + request("HEAD", "/h"))
        first = c.read_response("HEAD")
        second = c.read_response("GET")
        third = c.read_response("HEAD")
    assert (first.status, first.body) == (200, b"")
    assert second.body_length == 100
    assert (third.status, third.body) == (200, b"")


def test_hop_by_hop_headers_not_forwarded(proxy):
    headers = [
        ("Connection", "keep-alive, X-Hop-Secret, x-other-hop"),
        ("X-Hop-Secret", "s1"),
        ("X-Other-Hop", "s2"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Upgrade", "h2c"),
        ("X-End-To-End", "kept"),
        ("X-Dup", "a"),
        ("X-Dup", "b"),
    ]
    resp = http(proxy.port, request("POST", "/hop", headers, body=b"hello", chunked=True))
    assert resp.status == 200, resp
    echo = resp.json()
    seen = names(echo["headers"])
    for name in ("x-hop-secret", "x-other-hop", "keep-alive", "proxy-connection", "te",
                 "trailer", "upgrade"):
        assert name not in seen, f"{name} reached the upstream: {echo['headers']}"
    # sluice frames the upstream request itself: at most its own Connection and framing.
    for value in values(echo["headers"], "connection"):
        assert {t.strip().lower() for t in value.split(",")} <= {"keep-alive", "close"}, value
    assert values(echo["headers"], "transfer-encoding") in ([], ["chunked"])
    assert echo["body_length"] == 5
    assert values(echo["headers"], "x-end-to-end") == ["kept"]
    assert values(echo["headers"], "x-dup") == ["a", "b"] or values(echo["headers"], "x-dup") == ["a, b"]


def test_hop_by_hop_response_headers_not_returned(proxy):
    # The upstream's own Connection header is hop-by-hop on the way back too.
    with Client(proxy.port) as c:
        resp = c.exchange(request("GET", "/close"))
        assert resp.status == 200
        # The upstream said close; the client connection stays open.
        assert "close" not in resp.tokens("connection")
        assert c.exchange(request("GET", "/still-open")).status == 200


def test_x_forwarded_for_created(proxy):
    echo = http(proxy.port, request("GET", "/xff")).json()
    assert values(echo["headers"], "x-forwarded-for") == ["127.0.0.1"]


def test_x_forwarded_for_appended(proxy):
    echo = http(proxy.port, request("GET", "/xff", [("X-Forwarded-For", "203.0.113.7, 10.0.0.1")])).json()
    assert values(echo["headers"], "x-forwarded-for") == ["203.0.113.7, 10.0.0.1, 127.0.0.1"]


def test_x_forwarded_proto_and_host(proxy):
    echo = http(proxy.port, request("GET", "/xf", [("X-Forwarded-Proto", "https"),
                                                   ("X-Forwarded-Host", "evil.example")],
                                    host="app.example.com:8443")).json()
    assert values(echo["headers"], "x-forwarded-proto") == ["http"]
    assert values(echo["headers"], "x-forwarded-host") == ["app.example.com:8443"]
    assert values(echo["headers"], "host") == ["app.example.com:8443"]


def test_many_concurrent_connections(proxy):
    clients = [Client(proxy.port) for _ in range(50)]
    try:
        for i, c in enumerate(clients):
            c.send(request("GET", f"/conc/{i}"))
        for i, c in enumerate(clients):
            assert c.read_response().json()["target"] == f"/conc/{i}"
    finally:
        for c in clients:
            c.close()


def test_upstream_on_unix_socket(sluice_factory, upstream_factory):
    up = upstream_factory(unix=True)
    s = sluice_factory(base_config(), upstream=up)
    with Client(s.port) as c:
        for i in range(3):
            resp = c.exchange(request("POST", f"/unix/{i}", body=b"hello"))
            assert resp.status == 200, resp
            assert (resp.json()["target"], resp.json()["body_length"]) == (f"/unix/{i}", 5)
    assert len({e["conn_id"] for e in up.log()}) < 3, "upstream connections were not reused"
