"""Errors sluice answers itself (SPEC section 6): 400, 408, 413, 431, 502, 504, each with
a short JSON body, and what did or did not reach the upstream."""
import select
import socket
import time

import pytest

from conftest import Client, base_config, http, request, wait_until


def assert_json_error(resp, status):
    assert resp.status == status, resp
    assert (resp.header("content-type") or "").split(";")[0].strip() == "application/json", resp
    body = resp.json()
    assert isinstance(body, dict) and "error" in body, body
    return body


def assert_closes(c, resp):
    assert "close" in resp.tokens("connection"), resp
    assert c.closed_by_peer(), "the connection stayed open after the error"


@pytest.fixture
def limited(sluice_factory, upstream):
    """sluice with small limits: 1 s header timeout, 1 KiB head and body, 1 s upstream timeout."""
    s = sluice_factory(base_config(upstream_timeout="1s", header_timeout="1s",
                                   max_header_bytes="1k", max_body_bytes="1k"), upstream=upstream)
    s.upstream = upstream
    return s


def healthy(port):
    resp = http(port, request("GET", "/healthy"))
    assert resp.status == 200 and resp.json()["target"] == "/healthy", resp


# ---------------------------------------------------------------- 400

@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1 trailing\r\nHost: x\r\n\r\n",
    b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / FTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
    b"GET / HTTP/1.1\r\n: empty-name\r\n\r\n",
], ids=["garbage", "extra-token", "bad-method-char", "bad-protocol", "header-no-colon", "empty-name"])
def test_400_malformed(proxy, raw):
    with Client(proxy.port) as c:
        c.send(raw)
        resp = c.read_response()
        assert_json_error(resp, 400)
        assert_closes(c, resp)
    assert proxy.upstream.log() == []
    healthy(proxy.port)


# ---------------------------------------------------------------- 408

def test_408_incomplete_head(limited):
    with Client(limited.port) as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Partial: yes\r\n")
        t0 = time.monotonic()
        resp = c.read_response()
        elapsed = time.monotonic() - t0
        assert_json_error(resp, 408)
        assert 0.5 < elapsed < 4, f"408 after {elapsed:.2f}s with header_timeout 1s"
        assert_closes(c, resp)
    assert limited.upstream.log() == []
    healthy(limited.port)


def test_408_head_trickled_byte_by_byte(limited):
    # Bytes keep arriving, but the whole head must arrive within header_timeout.
    head = b"GET /trickle HTTP/1.1\r\nHost: x\r\nX-Long-Header: " + b"a" * 100 + b"\r\n\r\n"
    with Client(limited.port) as c:
        t0 = time.monotonic()
        for i in range(len(head)):
            if select.select([c.sock], [], [], 0.1)[0]:
                break
            try:
                c.send(head[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            assert time.monotonic() - t0 < 5, "no 408 while the head trickled in"
        resp = c.read_response()
        assert_json_error(resp, 408)
        assert time.monotonic() - t0 < 4
    assert limited.upstream.log() == []


def test_header_timeout_does_not_limit_slow_upstream_or_body(sluice_factory, upstream):
    s = sluice_factory(base_config(header_timeout="1s", upstream_timeout="5s"), upstream=upstream)
    assert http(s.port, request("GET", "/sleep/1500")).status == 200
    with Client(s.port) as c:
        c.send(request("POST", "/upload", [("Content-Length", "10")]))
        c.send(b"12345")
        time.sleep(1.3)  # the body, unlike the head, is not bound by header_timeout
        c.send(b"67890")
        resp = c.read_response()
        assert resp.status == 200 and resp.json()["body_length"] == 10


# ---------------------------------------------------------------- 413

def test_413_content_length_over_limit(limited):
    with Client(limited.port) as c:
        # Only the head: the answer must not wait for a body it will refuse.
        c.send(request("POST", "/upload", [("Content-Length", "1025")]))
        resp = c.read_response()
        assert_json_error(resp, 413)
        assert_closes(c, resp)
    assert limited.upstream.log() == []
    healthy(limited.port)


def test_413_instead_of_100_continue(limited):
    with Client(limited.port) as c:
        c.send(request("POST", "/upload", [("Expect", "100-continue"), ("Content-Length", "5000")]))
        resp = c.read_response()  # never send the body: a 100 would leave us waiting
        assert resp.interim == [], "100 Continue for a body that will be refused"
        assert_json_error(resp, 413)
    assert limited.upstream.log() == []


def test_body_at_limit_is_accepted(limited):
    resp = http(limited.port, request("POST", "/upload", body=b"x" * 1024))
    assert resp.status == 200 and resp.json()["body_length"] == 1024


def test_413_chunked_over_limit(limited):
    with Client(limited.port) as c:
        c.send(request("POST", "/upload", body=b"x" * 2000, chunked=True))
        resp = c.read_response()
        assert_json_error(resp, 413)
        assert_closes(c, resp)
    for e in limited.upstream.log():
        assert not (e["body_complete"] and e["body_length"] > 1024), e
    healthy(limited.port)


# ---------------------------------------------------------------- 431

@pytest.mark.parametrize("headers,target", [
    ([("X-Big", "a" * 2000)], "/"),
    ([(f"X-H{i}", "b" * 40) for i in range(40)], "/"),
    ([], "/" + "c" * 2000),
], ids=["one-big-header", "many-headers", "long-target"])
def test_431_head_over_limit(limited, headers, target):
    with Client(limited.port) as c:
        c.send(request("GET", target, headers))
        resp = c.read_response()
        assert_json_error(resp, 431)
        assert_closes(c, resp)
    assert limited.upstream.log() == []
    healthy(limited.port)


def test_head_under_limit_is_accepted(limited):
    resp = http(limited.port, request("GET", "/", [("X-Big", "a" * 700)]))
    assert resp.status == 200


# ---------------------------------------------------------------- 502

def test_502_upstream_unreachable(sluice_factory, free_port):
    s = sluice_factory(base_config(), upstream=f"http://127.0.0.1:{free_port()}")
    with Client(s.port) as c:
        t0 = time.monotonic()
        resp = c.exchange(request("GET", "/nobody-home"))
        assert_json_error(resp, 502)
        assert time.monotonic() - t0 < 3


def test_502_upstream_unreachable_counted(sluice_factory, free_port):
    s = sluice_factory(base_config(), upstream=f"http://127.0.0.1:{free_port()}")
    assert http(s.port, request("GET", "/x")).status == 502
    assert s.metrics().value("sluice_upstream_errors_total", kind="connect") >= 1


@pytest.mark.parametrize("target", ["/reset", "/reset?partial=1"])
def test_502_upstream_reset_before_head(proxy, target):
    resp = http(proxy.port, request("GET", target))
    assert_json_error(resp, 502)
    log = proxy.upstream.log()
    assert log and {e["target"] for e in log} == {target}
    healthy(proxy.port)
    assert proxy.metrics().value("sluice_upstream_errors_total", kind="reset") >= 1


def test_502_then_same_connection_still_answers(proxy):
    with Client(proxy.port) as c:
        resp = c.exchange(request("GET", "/reset"))
        assert_json_error(resp, 502)
        if "close" in resp.tokens("connection"):
            assert c.closed_by_peer()
        else:
            assert c.exchange(request("GET", "/after")).json()["target"] == "/after"


def test_upstream_reset_after_head_closes_client(proxy):
    # Once the head went out, no error page can follow: the client sees a short body.
    with Client(proxy.port) as c:
        c.send(request("GET", f"/stream/{64 * 1024 * 1024}?cl=1"))
        head = c.read_head()
        assert head.status == 200
        proxy.upstream.stop()
        got = 0
        with pytest.raises((EOFError, ConnectionResetError)):  # not a timeout: it must close
            while True:
                if not c.buf:
                    c._fill()
                got += len(c.buf)
                c.buf.clear()
        assert got < 64 * 1024 * 1024


# ---------------------------------------------------------------- 504

def test_504_upstream_timeout(limited):
    with Client(limited.port) as c:
        t0 = time.monotonic()
        resp = c.exchange(request("GET", "/sleep/3000"))
        elapsed = time.monotonic() - t0
        assert_json_error(resp, 504)
        assert 0.8 < elapsed < 2.8, f"504 after {elapsed:.2f}s with upstream.timeout 1s"
        assert [e["target"] for e in limited.upstream.log()] == ["/sleep/3000"]
        # The late answer to /sleep must never be served to anyone.
        if "close" in resp.tokens("connection"):
            assert c.closed_by_peer()
        else:
            assert c.exchange(request("GET", "/after-504")).json()["target"] == "/after-504"
    deadline = t0 + 3.3
    with Client(limited.port) as c:
        while time.monotonic() < deadline:
            assert c.exchange(request("GET", "/probe")).json()["target"] == "/probe"
            time.sleep(0.1)
    assert limited.metrics().value("sluice_upstream_errors_total", kind="timeout") >= 1


@pytest.fixture
def blackhole():
    """A port whose connects hang: a listener with a full accept queue drops new SYNs."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        fillers.append(f)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", port))
        pytest.skip("this kernel accepts connects beyond the backlog")
    except OSError:
        pass
    finally:
        probe.close()
    yield port
    for f in fillers:
        f.close()
    lsock.close()


def test_connect_timeout_is_502_or_504(sluice_factory, blackhole):
    text = base_config().replace("connect_timeout: 1s", "connect_timeout: 500ms")
    s = sluice_factory(text, upstream=f"http://127.0.0.1:{blackhole}")
    t0 = time.monotonic()
    resp = http(s.port, request("GET", "/blackhole"))
    elapsed = time.monotonic() - t0
    assert resp.status in (502, 504), resp
    assert_json_error(resp, resp.status)
    assert 0.3 < elapsed < 3, f"answered after {elapsed:.2f}s with connect_timeout 500ms"


def test_errors_keep_the_process_healthy(limited):
    for raw in [b"GARBAGE\r\n\r\n", request("GET", "/", [("X-Big", "a" * 2000)]),
                request("POST", "/", [("Content-Length", "5000")]), request("GET", "/reset")]:
        try:
            http(limited.port, raw)
        except (ConnectionResetError, EOFError):
            pass
    wait_until(limited.alive, 1)
    healthy(limited.port)
