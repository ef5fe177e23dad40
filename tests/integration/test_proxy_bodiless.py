"""Responses whose framing RFC 9112 puts on the proxy rather than the parser (section 6.3):
1xx, 204 and 304 end with their head whatever Content-Length or Transfer-Encoding say,
and an upstream whose framing sluice cannot relay unambiguously is answered 502. The
upstream sends exact bytes (upstream.py /raw); each bodiless case has a request pipelined
behind it, which must be answered at once on the same upstream connection."""
import base64
import time

import pytest

from conftest import Client, http, request

AFTER = request("GET", "/after")


def raw(response, method="GET", target="/raw", headers=(), body=b"", version="HTTP/1.1"):
    """A request that the upstream answers with exactly the bytes `response`."""
    encoded = base64.b64encode(response).decode()
    return request(method, target, [("X-Raw-Response", encoded), *headers], body, version=version)


def head(status_line, *headers):
    return ("\r\n".join([status_line, *headers]) + "\r\n\r\n").encode()


def assert_one_upstream_connection(upstream, n=2):
    log = upstream.log()
    assert len(log) == n, log
    assert len({e["conn_id"] for e in log}) == 1, "the upstream connection was not reused"
    assert [e["conn_seq"] for e in log] == list(range(1, n + 1))


BODILESS = {
    "304": head("HTTP/1.1 304 Not Modified", 'ETag: "v1"'),
    "304-content-length": head("HTTP/1.1 304 Not Modified", 'ETag: "v1"', "Content-Length: 10"),
    "304-chunked": head("HTTP/1.1 304 Not Modified", 'ETag: "v1"', "Transfer-Encoding: chunked"),
    "204": head("HTTP/1.1 204 No Content"),
    "204-content-length": head("HTTP/1.1 204 No Content", "Content-Length: 10"),
    "204-chunked": head("HTTP/1.1 204 No Content", "Transfer-Encoding: chunked"),
}


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
@pytest.mark.parametrize("name", BODILESS.keys())
def test_bodiless_response_then_pipelined_request(proxy, name, version):
    keep = [("Connection", "keep-alive")] if version == "HTTP/1.0" else []
    status = int(name[:3])
    start = time.monotonic()
    with Client(proxy.port) as c:
        c.send(raw(BODILESS[name], headers=keep, version=version) + AFTER)
        first = c.read_response()
        second = c.read_response()
        assert c.closed_by_peer(timeout=0.3) is False, "the client connection was closed"
    assert time.monotonic() - start < 3, "sluice waited for a body that never came"
    assert first.status == status, first
    assert first.header("etag") == ('"v1"' if status == 304 else None)
    # Nothing that describes a body reaches the client, except a 304's Content-Length
    # (RFC 9110 8.6: the length of the representation that was not sent).
    assert first.header("transfer-encoding") is None, first
    want_cl = "10" if name == "304-content-length" else None
    assert first.header("content-length") == want_cl, first
    assert "close" not in first.tokens("connection"), first
    if version == "HTTP/1.0":
        assert "keep-alive" in first.tokens("connection"), first
    assert second.status == 200 and second.json()["target"] == "/after", second
    # An HTTP/1.0 request goes upstream as HTTP/1.0, which upstream.py closes after.
    if version == "HTTP/1.1":
        assert_one_upstream_connection(proxy.upstream)


def test_304_to_head_request(proxy):
    resp304 = head("HTTP/1.1 304 Not Modified", "Content-Length: 10")
    with Client(proxy.port) as c:
        c.send(raw(resp304, method="HEAD") + AFTER)
        assert c.read_response("HEAD").status == 304
        assert c.read_response().json()["target"] == "/after"
    assert_one_upstream_connection(proxy.upstream)


FINAL = head("HTTP/1.1 200 OK", "Content-Length: 2") + b"hi"
INTERIM = {
    "103": head("HTTP/1.1 103 Early Hints", "Link: </style.css>; rel=preload"),
    "103-content-length": head("HTTP/1.1 103 Early Hints", "Link: </a>", "Content-Length: 5"),
    "103-chunked": head("HTTP/1.1 103 Early Hints", "Transfer-Encoding: chunked"),
    "100-content-length": head("HTTP/1.1 100 Continue", "Content-Length: 5"),
    "102-connection-close": head("HTTP/1.1 102 Processing", "Connection: close"),
    "two-interim": head("HTTP/1.1 100 Continue") + head("HTTP/1.1 103 Early Hints",
                                                        "Content-Length: 3"),
}


@pytest.mark.parametrize("name", INTERIM.keys())
def test_unsolicited_interim_response_then_final(proxy, name):
    with Client(proxy.port) as c:
        c.send(raw(INTERIM[name] + FINAL) + AFTER)
        final = c.read_response()
        second = c.read_response()
    # Interim responses from the upstream are not relayed: the client sees the final one.
    assert final.status == 200 and final.interim == [], final
    assert final.body == b"hi"
    assert second.status == 200 and second.json()["target"] == "/after", second
    assert_one_upstream_connection(proxy.upstream)


@pytest.mark.parametrize("cl", [False, True])
def test_expect_100_continue_with_upstream_100(proxy, cl):
    # sluice answers Expect itself; an upstream's own 100 (here with a Content-Length that
    # frames nothing) is not a second one for the client, nor part of the final response.
    upstream_100 = head("HTTP/1.1 100 Continue", *(["Content-Length: 4"] if cl else []))
    req = raw(upstream_100 + FINAL, method="POST", headers=[("Expect", "100-continue")],
              body=b"hello")
    head_part, body = req[:-5], req[-5:]
    with Client(proxy.port) as c:
        c.send(head_part)
        cont = c.read_head()
        assert cont.status == 100, cont
        c.send(body + AFTER)
        final = c.read_response()
        second = c.read_response()
    assert final.status == 200 and final.interim == [] and final.body == b"hi", final
    assert second.json()["target"] == "/after"
    log = proxy.upstream.log()
    assert log[0]["body_length"] == 5 and "expect" not in {n.lower() for n, _ in log[0]["headers"]}
    assert_one_upstream_connection(proxy.upstream)


def test_101_with_content_length_tunnels_everything(proxy):
    resp101 = head("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket",
                   "Connection: Upgrade", "Content-Length: 3") + b"tunnelled bytes"
    req = raw(resp101, headers=[("Upgrade", "websocket"), ("Connection", "Upgrade")])
    with Client(proxy.port) as c:
        c.send(req)
        resp = c.read_head()
        assert resp.status == 101, resp
        assert resp.header("content-length") is None, resp
        data = bytes(c.buf)
        while len(data) < len(b"tunnelled bytes"):
            c._fill()
            data = bytes(c.buf)
        assert data == b"tunnelled bytes"


# ---------------------------------------------------------------- framing sluice refuses

BAD_FRAMING = {
    "te-and-content-length": head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked",
                                  "Content-Length: 5") + b"0\r\n\r\n",
    "two-content-lengths": head("HTTP/1.1 200 OK", "Content-Length: 2", "Content-Length: 2") + b"hi",
    "content-length-list": head("HTTP/1.1 200 OK", "Content-Length: 2, 2") + b"hi",
    "content-length-negative": head("HTTP/1.1 200 OK", "Content-Length: -2") + b"hi",
    "content-length-garbage": head("HTTP/1.1 200 OK", "Content-Length: 2x") + b"hi",
    "http10-chunked": head("HTTP/1.0 200 OK", "Transfer-Encoding: chunked") + b"2\r\nhi\r\n0\r\n\r\n",
    "te-gzip": head("HTTP/1.1 200 OK", "Transfer-Encoding: gzip") + b"hi",
    "te-gzip-chunked": head("HTTP/1.1 200 OK", "Transfer-Encoding: gzip, chunked")
    + b"2\r\nhi\r\n0\r\n\r\n",
    "te-chunked-twice": head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked",
                             "Transfer-Encoding: chunked") + b"2\r\nhi\r\n0\r\n\r\n",
    "status-below-100": head("HTTP/1.1 099 Odd", "Content-Length: 2") + b"hi",
    "status-above-599": head("HTTP/1.1 600 Odd", "Content-Length: 2") + b"hi",
    "http2-status-line": head("HTTP/2.0 200 OK", "Content-Length: 2") + b"hi",
}


@pytest.mark.parametrize("name", BAD_FRAMING.keys())
def test_ambiguous_response_framing_is_502(proxy, name):
    with Client(proxy.port) as c:
        resp = c.exchange(raw(BAD_FRAMING[name]))
        assert resp.status == 502, resp
        assert resp.json() == {"error": "bad_gateway"}
        assert "close" in resp.tokens("connection")
        assert c.closed_by_peer()
    # The connection that sent it is not reused for the next request.
    assert http(proxy.port, AFTER).json()["target"] == "/after"
    log = proxy.upstream.log()
    assert log[0]["conn_id"] != log[1]["conn_id"]


def test_response_before_request_body_closes_both_sides(proxy):
    early = head("HTTP/1.1 200 OK", "Content-Length: 2") + b"hi"
    req = raw(early, method="POST", target="/raw?early=1", headers=[("Content-Length", "100")])
    with Client(proxy.port) as c:
        c.send(req + b"x" * 10)
        resp = c.read_response()
        assert resp.status == 200 and resp.body == b"hi", resp
        # The rest of the body would be read as the next request: the connection ends.
        assert "close" in resp.tokens("connection")
        c.send(b"y" * 90)
        assert c.closed_by_peer()
    assert http(proxy.port, AFTER).json()["target"] == "/after"
    log = proxy.upstream.log()
    assert log[0]["conn_id"] != log[1]["conn_id"], "a connection with a half-sent body was reused"


def test_connect_is_never_forwarded(proxy):
    # A 2xx to CONNECT turns the connection into a tunnel, a framing llhttp's response
    # parser cannot know of, and a tunnel to wherever the client names would pass every
    # limit: sluice answers CONNECT 405, so it never reads such a response.
    with Client(proxy.port) as c:
        resp = c.exchange(request("CONNECT", "example.com:443", host="example.com:443"))
        assert resp.status == 405, resp
        assert resp.json() == {"error": "method_not_allowed"}
        assert c.closed_by_peer()
    assert proxy.upstream.log() == []
