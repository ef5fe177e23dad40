"""HTTP/2 upstreams (SPEC section 10): upstream.url h2c:// sends every request as a stream,
multiplexed on few connections per worker, from HTTP/1.1 and HTTP/2 clients alike, with
bodies both ways under flow control, trailers end to end, streams the upstream refused sent
again, and everything else that breaks answered 502 or cut. The upstream is a real HTTP/2
server (h2_upstream.py, python3-h2)."""
import concurrent.futures
import socket
import time

import pytest

from conftest import Client, base_config, metrics, request
from h2_support import H2Conn, h2_config
from harness_http import wait_until

LIMITED = """\
  - name: all
    match:
      path_prefix: "/"
    limits:
      - name: per_client
        algorithm: fixed_window
        rate: 3/1h
        key: "header:X-Client"
"""


@pytest.fixture
def h2app(upstream_factory):
    up = upstream_factory(script="h2_upstream.py")
    up.url = f"h2c://127.0.0.1:{up.port}"
    return up


@pytest.fixture
def s(sluice_factory, h2app):
    sl = sluice_factory(h2_config(workers=1, upstream_timeout="5s"), upstream=h2app)
    sl.app = h2app
    return sl


def conns(app):
    return app._direct("GET", "/__conns").json()["connections"]


def upstream_errors(admin_port, kind):
    return metrics(admin_port).value("sluice_upstream_errors_total", kind=kind) or 0


# ---------------------------------------------------------------- HTTP/1.1 clients

def test_http1_get_is_translated(s):
    with Client(s.port) as c:
        r = c.exchange(request("GET", "/hello?x=1", [("X-Forwarded-For", "10.0.0.1"),
                                                      ("Connection", "keep-alive, X-Drop"),
                                                      ("X-Drop", "1"), ("Keep-Alive", "5"),
                                                      ("TE", "trailers")]))
        assert r.status == 200 and r.reason == "OK", r
        seen = r.json()
        assert r.header("content-length") == str(len(r.body))
        # Still open for the next request, answered over the same upstream connection.
        assert c.exchange(request("GET", "/again")).status == 200
    h = dict((k, v) for k, v in seen["headers"])
    assert (h[":method"], h[":path"], h[":scheme"], h[":authority"]) == \
        ("GET", "/hello?x=1", "http", "localhost")
    assert h["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert h["x-forwarded-proto"] == "http" and h["x-forwarded-host"] == "localhost"
    assert h["te"] == "trailers"
    for gone in ("host", "connection", "keep-alive", "x-drop"):
        assert gone not in h, seen
    assert conns(s.app) == 1


def test_http1_body_without_length_is_chunked_and_http10_gets_close(s):
    with Client(s.port) as c:
        r = c.exchange(request("GET", "/nolength"))
        assert r.status == 200 and r.header("transfer-encoding") == "chunked", r
        assert r.json()["path"] == "/nolength"
        assert c.exchange(request("GET", "/nolength")).status == 200  # still keep-alive
    with Client(s.port) as c:
        r = c.exchange(request("GET", "/nolength", version="HTTP/1.0"))
        assert r.status == 200 and r.header("transfer-encoding") is None, r
        assert r.json()["path"] == "/nolength"
        assert c.closed_by_peer()


def test_http1_trailers_arrive_in_the_last_chunk(s):
    with Client(s.port) as c:
        c.send(request("GET", "/trailers"))
        raw = b""
        while not raw.endswith(b"\r\n0\r\nx-checksum: abc\r\ngrpc-status: 0\r\n\r\n"):
            chunk = c.sock.recv(65536)
            assert chunk, raw
            raw += chunk
        assert b"Transfer-Encoding: chunked" in raw and b"\r\n4\r\ndata\r\n" in raw, raw


@pytest.mark.parametrize("chunked", [False, True])
def test_http1_request_bodies_go_up_as_data(s, chunked):
    body = bytes(range(256)) * 4096  # 1 MiB: more than any window
    with Client(s.port) as c:
        r = c.exchange(request("POST", "/upload", body=body, chunked=chunked))
        assert r.status == 200, r
        assert r.json()["body_length"] == len(body)
        headers = dict(r.json()["headers"])
        assert "transfer-encoding" not in headers
        assert headers.get("content-length") == (None if chunked else str(len(body)))


def test_head_and_large_download(s):
    with Client(s.port) as c:
        r = c.exchange(request("HEAD", "/hello"))
        assert r.status == 200 and r.body == b"", r
        r = c.exchange(request("GET", "/big?n=5000000"))
        assert r.status == 200 and len(r.body) == 5000000


# ---------------------------------------------------------------- HTTP/2 clients

def test_http2_client_streams_and_trailers(s):
    with H2Conn(s.port) as c:
        streams = [c.request("GET", f"/many/{i}") for i in range(20)]
        c.responses(streams)
        assert [st.status for st in streams] == [200] * 20
        assert sorted(st.json()["path"] for st in streams) == sorted(f"/many/{i}" for i in range(20))
        t = c.request("GET", "/trailers")
        c.response(t)
        assert t.status == 200 and bytes(t.body) == b"data"
        assert t.trailers == [("x-checksum", "abc"), ("grpc-status", "0")], t.trailers
        only = c.request("POST", "/trailers-only", body=b"x")
        c.response(only)
        assert only.status == 200 and only.header("grpc-status") == "7" and not only.body
        post = c.request("POST", "/upload", body=b"y" * 300000)
        c.response(post)
        assert post.status == 200 and post.json()["body_length"] == 300000
    assert conns(s.app) == 1


def test_http2_client_bidirectional_echo(s):
    with H2Conn(s.port) as c:
        st = c.request("POST", "/echo", end_stream=False)
        for i in range(5):
            c.send_body(st, b"chunk%d;" % i, end=False)
            c.wait(lambda: bytes(st.body).endswith(b"chunk%d;" % i), what=f"echo {i}")
        c.send_body(st, b"", end=True)
        c.response(st)
        assert st.trailers == [("x-echoed", str(len(b"chunk0;") * 5))], st


def test_many_concurrent_calls_share_few_connections(sluice_factory, h2app):
    sl = sluice_factory(h2_config(workers=1), upstream=h2app)

    def one(i):
        with Client(sl.port) as c:
            return c.exchange(request("GET", f"/c/{i}")).status
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(one, range(200)))
    assert statuses == [200] * 200
    # Requests that came before the first connection was up went over it too.
    assert conns(h2app) <= 2, conns(h2app)


def test_limits_apply_before_the_upstream(sluice_factory, h2app):
    sl = sluice_factory(h2_config(routes=LIMITED, workers=1), upstream=h2app)
    with Client(sl.port) as c:
        got = [c.exchange(request("GET", "/l", [("X-Client", "a")])).status for _ in range(5)]
    with H2Conn(sl.port) as c:
        st = c.request("GET", "/l", headers=[("x-client", "a")])
        c.response(st)
    assert got == [200, 200, 200, 429, 429] and st.status == 429
    assert h2app.count() == 3


# ---------------------------------------------------------------- failures

def read_to_close(port, raw):
    """Everything the server sends on a connection carrying `raw`, until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        got = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return got
            if not chunk:
                return got
            got += chunk


def test_reset_before_the_response_is_502(s):
    with Client(s.port) as c:
        assert c.exchange(request("GET", "/rst")).status == 502
    with Client(s.port) as c:
        assert c.exchange(request("GET", "/after")).status == 200
    assert upstream_errors(s.admin_port, "reset") == 1


def test_reset_mid_response_cuts_the_client(s):
    got = read_to_close(s.port, request("GET", "/rst-mid"))
    head, body = got.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and 0 < len(body) < 100000, got[:200]
    with H2Conn(s.port) as c:
        st = c.request("GET", "/rst-mid")
        c.response(st)
        assert st.status == 200 and st.reset is not None and len(st.body) < 100000, st
        ok = c.request("GET", "/after")  # the connection goes on
        c.response(ok)
        assert ok.status == 200


def test_refused_streams_go_again(s):
    with Client(s.port) as c:
        r = c.exchange(request("GET", "/refuse-once"))
        assert r.status == 200, r
        r = c.exchange(request("GET", "/goaway-once"))
        assert r.status == 200, r
    paths = [e["path"] for e in s.app.log()]
    assert paths == ["/refuse-once", "/refuse-once", "/goaway-once", "/goaway-once"], paths
    assert conns(s.app) == 2  # the GOAWAY ended the first


def test_refused_stream_whose_body_left_is_502(s):
    # Bytes of the body went up with the request: they cannot be sent again.
    with Client(s.port) as c:
        r = c.exchange(request("POST", "/refuse-once", body=b"z" * 10))
    assert r.status == 502, r
    assert [e["path"] for e in s.app.log()] == ["/refuse-once"]


def test_upstream_dying_mid_response(s):
    got = read_to_close(s.port, request("GET", "/die-mid"))
    assert got.startswith(b"HTTP/1.1 200") and len(got) < 100000, got[:200]
    with Client(s.port) as c:
        assert c.exchange(request("GET", "/after")).status == 200
    assert conns(s.app) == 2


def test_upstream_timeout_is_504(sluice_factory, h2app):
    sl = sluice_factory(h2_config(workers=1, upstream_timeout="300ms"), upstream=h2app)
    with Client(sl.port) as c:
        t0 = time.monotonic()
        assert c.exchange(request("GET", "/slow?ms=3000")).status == 504
        assert time.monotonic() - t0 < 2.5
    with Client(sl.port) as c:
        assert c.exchange(request("GET", "/slow?ms=10")).status == 200
    assert upstream_errors(sl.admin_port, "timeout") == 1


def test_grpc_timeout_is_a_deadline(s):
    with Client(s.port) as c:
        t0 = time.monotonic()
        r = c.exchange(request("POST", "/slow?ms=3000", [("grpc-timeout", "200m")], body=b"x"))
        took = time.monotonic() - t0
    assert r.status in (200, 504), r
    assert took < 2.0, took


def test_unreachable_upstream_is_502(sluice_factory, free_port):
    sl = sluice_factory(h2_config(workers=1), upstream=f"h2c://127.0.0.1:{free_port()}")
    with Client(sl.port) as c:
        assert c.exchange(request("GET", "/x")).status == 502
    with H2Conn(sl.port) as c:
        st = c.request("GET", "/x")
        c.response(st)
        assert st.status == 502
    assert upstream_errors(sl.admin_port, "connect") == 2


def test_reload_moves_to_another_upstream(s, upstream_factory):
    other = upstream_factory(script="h2_upstream.py")
    with Client(s.port) as c:
        assert c.exchange(request("GET", "/before")).status == 200
    text = open(s.config_path).read().replace(f"127.0.0.1:{s.app.port}", f"127.0.0.1:{other.port}")
    s.reload(text)
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="success") == 1,
               5, 0.05, "the reload to be counted")
    with Client(s.port) as c:
        assert c.exchange(request("GET", "/after")).status == 200
    assert [e["path"] for e in other.log()] == ["/after"]
    assert [e["path"] for e in s.app.log()] == ["/before"]
    # The first upstream's idle connection was let go, with a GOAWAY.
    assert conns(other) == 1
