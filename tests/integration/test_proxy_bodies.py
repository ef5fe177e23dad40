"""Bodies (SPEC section 7): Content-Length and chunked in both directions, streamed with
bounded memory; Expect: 100-continue; Upgrade tunnelled after 101."""
import hashlib
import os
import threading
import time

import pytest

from conftest import Client, base_config, is_asan_binary, proc_status_kib, request, reset_peak_rss
from upstream import pattern_chunks, pattern_sha256

KIB, MIB = 1024, 1024 * 1024
SIZES = [0, 1, 64 * KIB, 8 * MIB]


def send_body(c, n, chunked):
    """Sends the n-byte pattern as the body (framing per `chunked`); returns its sha256."""
    h = hashlib.sha256()
    for piece in pattern_chunks(n):
        h.update(piece)
        c.send(b"%x\r\n" % len(piece) + bytes(piece) + b"\r\n" if chunked else piece)
    if chunked:
        c.send(b"0\r\n\r\n")
    return h.hexdigest()


def upload(port, n, chunked, target="/upload", extra=()):
    framing = [("Transfer-Encoding", "chunked")] if chunked else [("Content-Length", str(n))]
    with Client(port, timeout=10) as c:
        c.send(request("POST", target, list(extra) + framing))
        sha = send_body(c, n, chunked)
        resp = c.read_response()
    return resp, sha


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s}B")
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_upload(proxy, size, chunked):
    resp, sha = upload(proxy.port, size, chunked)
    assert resp.status == 200, resp
    echo = resp.json()
    assert echo["body_length"] == size
    assert echo["body_sha256"] == sha
    if not chunked and size:
        # A known length stays known.
        assert [v for n, v in echo["headers"] if n.lower() == "content-length"] == [str(size)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s}B")
@pytest.mark.parametrize("cl", [False, True], ids=["chunked", "content-length"])
def test_download(proxy, size, cl):
    h = hashlib.sha256()
    with Client(proxy.port, timeout=10) as c:
        c.send(request("GET", f"/stream/{size}" + ("?cl=1" if cl else "")))
        resp = c.read_response(sink=h.update)
        assert resp.status == 200
        assert resp.body_length == size
        assert h.hexdigest() == pattern_sha256(size)
        if cl:
            assert resp.header("content-length") == str(size)
        # The connection is still in step after the body.
        assert c.exchange(request("GET", "/next")).status == 200


def test_download_to_http10_client(proxy):
    size = 100 * KIB
    h = hashlib.sha256()
    with Client(proxy.port) as c:
        c.send(request("GET", f"/stream/{size}", version="HTTP/1.0"))
        resp = c.read_response(sink=h.update)
    assert resp.status == 200
    assert "chunked" not in resp.tokens("transfer-encoding"), "HTTP/1.0 cannot read chunked"
    assert h.hexdigest() == pattern_sha256(size)


def test_upload_and_download_interleaved_on_one_connection(proxy):
    with Client(proxy.port, timeout=10) as c:
        for i, size in enumerate([10, 70000, 0, 300000]):
            chunked = i % 2 == 0
            framing = [("Transfer-Encoding", "chunked")] if chunked else [("Content-Length", str(size))]
            c.send(request("PUT", "/upload", framing))
            sha = send_body(c, size, chunked)
            echo = c.read_response().json()
            assert (echo["body_length"], echo["body_sha256"]) == (size, sha)
            h = hashlib.sha256()
            c.send(request("GET", f"/stream/{size}"))
            c.read_response(sink=h.update)
            assert h.hexdigest() == pattern_sha256(size)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_expect_100_continue(proxy, chunked):
    size = 200 * KIB
    framing = [("Transfer-Encoding", "chunked")] if chunked else [("Content-Length", str(size))]
    with Client(proxy.port) as c:
        c.send(request("POST", "/upload", [("Expect", "100-continue")] + framing))
        interim = c.read_head()  # no body sent yet: only a 100 can come back
        assert interim.status == 100, interim
        sha = send_body(c, size, chunked)
        resp = c.read_response()
        assert resp.status == 200
        echo = resp.json()
        assert (echo["body_length"], echo["body_sha256"]) == (size, sha)
        assert c.exchange(request("GET", "/next")).status == 200


def test_expect_100_continue_with_empty_body(proxy):
    with Client(proxy.port) as c:
        resp = c.exchange(request("POST", "/upload", [("Expect", "100-continue"), ("Content-Length", "0")]))
        assert resp.status == 200
        assert resp.json()["body_length"] == 0


WS_HEADERS = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]


def recv_exact(c, n):
    out = bytearray(c.buf)
    c.buf.clear()
    while len(out) < n:
        data = c.sock.recv(1 << 20)
        assert data, f"tunnel closed after {len(out)} of {n} bytes"
        out += data
    assert len(out) == n, "more bytes than were sent came back"
    return bytes(out)


def test_websocket_tunnel_echo(proxy):
    with Client(proxy.port) as c:
        resp = c.exchange(request("GET", "/ws", WS_HEADERS))
        assert resp.status == 101, resp
        assert "websocket" in resp.tokens("upgrade")
        assert "upgrade" in resp.tokens("connection")
        assert resp.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        # Bytes that look like HTTP must pass untouched: the tunnel is opaque.
        messages = [b"\x81\x05hello", b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
                    bytes(range(256)) * 4096]
        for m in messages:
            c.send(m)
            assert recv_exact(c, len(m)) == m
    log = proxy.upstream.log()
    assert [e["target"] for e in log] == ["/ws"]
    up_headers = {n.lower(): v for n, v in log[0]["headers"]}
    assert up_headers.get("upgrade", "").lower() == "websocket"
    assert "upgrade" in up_headers.get("connection", "").lower()


def test_websocket_client_close_ends_tunnel(proxy):
    with Client(proxy.port) as c:
        assert c.exchange(request("GET", "/ws", WS_HEADERS)).status == 101
        c.send(b"ping")
        assert recv_exact(c, 4) == b"ping"
    # The proxy still serves afterwards.
    with Client(proxy.port) as c:
        assert c.exchange(request("GET", "/after-ws")).status == 200


def test_upgrade_refused_by_upstream_is_plain_response(proxy):
    # /status/200 ignores Upgrade: the response is an ordinary one. The connection then
    # either stays HTTP or is closed, as announced; it never turns into a tunnel.
    with Client(proxy.port) as c:
        resp = c.exchange(request("GET", "/status/200", WS_HEADERS))
        assert resp.status == 200
        assert resp.json()["target"] == "/status/200"
        if "close" in resp.tokens("connection"):
            assert c.closed_by_peer()
        else:
            assert c.exchange(request("GET", "/after")).json()["target"] == "/after"


# ---------------------------------------------------------------- memory bound

class RssWatch:
    """Samples VmRSS of pid in a thread; peak() is the highest value seen (and VmHWM
    when the kernel lets us reset it)."""

    def __init__(self, pid):
        self.pid = pid
        self.base = proc_status_kib(pid, "VmRSS")
        self.hwm_reset = reset_peak_rss(pid)
        self.max = self.base
        self.stop_evt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_evt.wait(0.02):
            self.max = max(self.max, proc_status_kib(self.pid, "VmRSS"))

    def growth_kib(self):
        self.stop_evt.set()
        self.thread.join()
        peak = self.max
        if self.hwm_reset:
            peak = max(peak, proc_status_kib(self.pid, "VmHWM"))
        return peak - self.base


def bound_mib(binary):
    # ASan's shadow memory and redzones inflate every live buffer; a release build must
    # stay within a few MiB.
    return 64 if is_asan_binary(binary) else 8


# A short quarantine keeps freed buffers from looking like growth under ASan.
ASAN_SMALL_QUARANTINE = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1")
                         + ":quarantine_size_mb=4:thread_local_quarantine_size_kb=256"}


def transfer_and_measure(sluice_factory, upstream, sluice_binary, size, report=None):
    s = sluice_factory(base_config(upstream_timeout="30s"), upstream=upstream, env=ASAN_SMALL_QUARANTINE)
    # Warm up both directions so pools and buffers exist before the baseline.
    upload(s.port, MIB, True)
    with Client(s.port) as c:
        c.send(request("GET", f"/stream/{MIB}"))
        c.read_response(sink=lambda _: None)
    results = {}
    for direction in ("upload", "download"):
        watch = RssWatch(s.pid)
        t0 = time.monotonic()
        if direction == "upload":
            resp, sha = upload(s.port, size, True)
            echo = resp.json()
            assert (echo["body_length"], echo["body_sha256"]) == (size, sha)
        else:
            h = hashlib.sha256()
            with Client(s.port, timeout=30) as c:
                c.send(request("GET", f"/stream/{size}"))
                resp = c.read_response(sink=h.update)
            assert resp.body_length == size
            assert h.hexdigest() == pattern_sha256(size)
        growth = watch.growth_kib()
        results[direction] = (growth, time.monotonic() - t0)
    if report:
        for direction, (growth, secs) in results.items():
            report(f"{direction} {size // MIB} MiB: RSS growth {growth / 1024:.1f} MiB, "
                   f"{size / MIB / secs:.0f} MiB/s")
    return results


def test_streaming_memory_is_bounded(sluice_factory, upstream, sluice_binary):
    bound = bound_mib(sluice_binary)
    results = transfer_and_measure(sluice_factory, upstream, sluice_binary, 256 * MIB)
    for direction, (growth, _) in results.items():
        assert growth < bound * 1024, \
            f"{direction} of 256 MiB grew RSS by {growth / 1024:.1f} MiB (bound {bound} MiB)"


@pytest.mark.slow
def test_streaming_memory_1gib(sluice_factory, upstream, sluice_binary, capsys):
    bound = bound_mib(sluice_binary)
    with capsys.disabled():
        results = transfer_and_measure(sluice_factory, upstream, sluice_binary, 1024 * MIB,
                                       report=lambda line: print("\n" + line))
    for direction, (growth, _) in results.items():
        assert growth < bound * 1024, \
            f"{direction} of 1 GiB grew RSS by {growth / 1024:.1f} MiB (bound {bound} MiB)"
