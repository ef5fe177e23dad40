"""The harness itself: upstream.py and the client helpers, with no sluice in between.
When these fail, every proxy test result is suspect."""
import hashlib
import socket

import pytest

from conftest import Client, http, parse_metrics, request
from upstream import pattern_chunks, pattern_sha256


def test_echo_reports_request_exactly(upstream):
    resp = http(upstream.port, request("GET", "/a%2Fb/./c?x=%20&y", [("X-One", "1"), ("x-one", "2")]))
    assert resp.status == 200
    echo = resp.json()
    assert echo["method"] == "GET"
    assert echo["target"] == "/a%2Fb/./c?x=%20&y"
    assert echo["version"] == "HTTP/1.1"
    assert echo["headers"] == [["Host", "localhost"], ["X-One", "1"], ["x-one", "2"]]
    assert echo["body_sha256"] == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("chunked", [False, True])
def test_upload_length_and_digest(upstream, chunked):
    body = bytes(range(256)) * 1000
    echo = http(upstream.port, request("POST", "/upload", body=body, chunked=chunked)).json()
    assert echo["body_length"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("cl", [False, True])
def test_stream_is_the_pattern(upstream, cl):
    n = 3 * 1024 * 1024 + 7
    h = hashlib.sha256()
    with Client(upstream.port) as c:
        c.send(request("GET", f"/stream/{n}" + ("?cl=1" if cl else "")))
        resp = c.read_response(sink=h.update)
    assert resp.body_length == n
    assert (resp.header("content-length") is not None) == cl
    assert h.hexdigest() == resp.header("x-body-sha256") == pattern_sha256(n)
    assert b"".join(pattern_chunks(600))[250:253] == bytes([250, 0, 1])


def test_keepalive_pipelining_and_peer_ports(upstream):
    with Client(upstream.port) as c:
        c.send(b"".join(request("GET", f"/p/{i}") for i in range(5)))
        echoes = [r.json() for r in c.read_responses(5)]
    assert [e["target"] for e in echoes] == [f"/p/{i}" for i in range(5)]
    assert len({e["conn_id"] for e in echoes}) == 1
    assert [e["conn_seq"] for e in echoes] == [1, 2, 3, 4, 5]
    assert len({e["peer_port"] for e in upstream.log()}) == 1


def test_expect_continue_status_sleep_close(upstream):
    with Client(upstream.port) as c:
        c.send(request("POST", "/upload", [("Expect", "100-continue"), ("Content-Length", "3")]))
        assert c.read_head().status == 100
        c.send(b"abc")
        assert c.read_response().json()["body_length"] == 3
        assert c.exchange(request("GET", "/status/404")).status == 404
        assert c.exchange(request("GET", "/status/204")).status == 204
        assert c.exchange(request("GET", "/sleep/50")).status == 200
        resp = c.exchange(request("GET", "/close"))
        assert resp.header("connection") == "close"
        assert c.closed_by_peer()


@pytest.mark.parametrize("partial", [False, True])
def test_reset(upstream, partial):
    with Client(upstream.port) as c:
        c.send(request("GET", "/reset" + ("?partial=1" if partial else "")))
        with pytest.raises((ConnectionResetError, EOFError, ValueError)):
            c.read_response()


def test_websocket_echo(upstream):
    with Client(upstream.port) as c:
        c.send(request("GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                      ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                      ("Sec-WebSocket-Version", "13")]))
        resp = c.read_response()
        assert resp.status == 101
        assert resp.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        c.send(b"\x81\x05hello")
        got = b""
        while len(got) < 7:
            got += c.sock.recv(100)
        assert got == b"\x81\x05hello"
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed_by_peer()


def test_log_count_and_clear(upstream):
    http(upstream.port, request("GET", "/one"))
    http(upstream.port, request("POST", "/two", body=b"xy"))
    assert upstream.count() == 2
    log = upstream.log()
    assert [(e["method"], e["target"], e["body_length"], e["body_complete"]) for e in log] == [
        ("GET", "/one", 0, True), ("POST", "/two", 2, True)]
    upstream.clear_log()
    assert upstream.log() == []
    assert http(upstream.port, request("GET", "/count/reset")).json() == {"count": 0}


def test_metrics_parser():
    samples = parse_metrics('# HELP x y\n# TYPE a counter\na_total{route="r",code="200"} 3\n'
                            'a_total{route="q\\"x",code="200"} 4\nb 1.5\nc{} 2 1700000000\n')
    assert samples.value("a_total", code="200") == 7
    assert samples.value("a_total", route='q"x') == 4
    assert samples.value("b") == 1.5 and samples.value("c") == 2 and samples.value("d") == 0


def test_redis_server_restarts_on_the_same_port(redis_server):
    assert redis_server.command("SET", "k", "v") == "OK"
    assert redis_server.command("GET", "k") == "v"
    port = redis_server.port
    redis_server.stop()
    with pytest.raises(OSError):
        redis_server.command("PING")
    redis_server.start()
    assert redis_server.port == port
    assert redis_server.command("PING") == "PONG"
    assert redis_server.command("GET", "k") is None  # no persistence


def test_upstream_on_unix_socket(upstream_factory):
    up = upstream_factory(unix=True)
    assert up.url == f"unix:{up.unix}"
    echo = http(None, request("POST", "/u", body=b"abc"), unix=up.unix).json()
    assert (echo["target"], echo["body_length"], echo["peer_port"]) == ("/u", 3, 0)
    assert [e["target"] for e in up.log()] == ["/u"]
