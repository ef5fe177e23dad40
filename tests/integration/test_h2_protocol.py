"""HTTP/2 from clients (SPEC section 10): prior knowledge on the cleartext listener beside
HTTP/1.1, `client.http2: false`, the SETTINGS sluice advertises and enforces
(http2_max_streams, max_header_bytes), streams as requests to an HTTP/1.1 upstream with
bodies both ways, and the streams in metrics and the access log."""
import hashlib
import json
import os
import socket
import time

import pytest

from conftest import (Client, is_asan_binary, proc_status_kib, request, reset_peak_rss,
                      wait_until)
from h2_support import (DATA, END_HEADERS, END_STREAM, HEADERS, MAX_CONCURRENT_STREAMS,
                        MAX_HEADER_LIST_SIZE, MIB, PREFACE, PROTOCOL_ERROR, REFUSED_STREAM,
                        SETTINGS, H2Conn, assert_served, frame, h2_config, h2_get,
                        literal_block, request_headers, settings_frame, window_update_frame)

# A short quarantine keeps freed buffers from looking like growth under ASan.
ASAN_SMALL_QUARANTINE = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1")
                         + ":quarantine_size_mb=4:thread_local_quarantine_size_kb=256"}
HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade")


def pattern(n):
    """n bytes that no buffer size lines up with."""
    block = bytes(range(251)) * 4096
    return (block * (n // len(block) + 1))[:n]


def upstream_header(entry, name):
    return [v for k, v in entry["headers"] if k.lower() == name]


# ---------------------------------------------------------------- which protocol

def test_preface_is_served_as_http2_and_http1_beside_it(sluice_factory, upstream):
    s = sluice_factory(h2_config(), upstream=upstream)
    with H2Conn(s.port) as c:
        c.handshake()
        st = c.response(c.request("GET", "/h2?q=1", [("x-test", "one")], authority="api.example"))
        assert st.status == 200, st
        # Only lower-case fields and no connection-specific ones (RFC 9113 8.2.2).
        assert all(n == n.lower() for n, _ in st.headers), st.headers
        assert not [n for n, _ in st.headers if n in HOP_BY_HOP], st.headers
    entry = upstream.log()[0]
    # Translated to HTTP/1.1 for the upstream: :authority becomes Host, the target is kept.
    assert entry["method"] == "GET" and entry["target"] == "/h2?q=1", entry
    assert entry["version"] == "HTTP/1.1"
    assert upstream_header(entry, "host") == ["api.example"], entry
    assert upstream_header(entry, "x-test") == ["one"], entry
    assert upstream_header(entry, "x-forwarded-proto") == ["http"], entry
    # HTTP/1.1 on the same listener, before and after, is unchanged.
    with Client(s.port) as c:
        for i in range(2):
            resp = c.exchange(request("GET", f"/h1/{i}"))
            assert resp.status == 200 and resp.version == "HTTP/1.1", resp
            assert resp.json()["target"] == f"/h1/{i}"


def test_preface_arriving_a_byte_at_a_time_is_still_http2(sluice_factory, upstream):
    s = sluice_factory(h2_config(), upstream=upstream)
    with H2Conn(s.port, preface=False) as c:
        for b in PREFACE:
            c.send(bytes([b]))
            time.sleep(0.005)
        c.send(settings_frame())
        c.handshake()
        assert c.response(c.request("GET", "/slow-preface")).status == 200


def test_http2_off_gives_the_preface_to_the_http1_parser(sluice_factory, upstream):
    s = sluice_factory(h2_config(client="  http2: false\n"), upstream=upstream)
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
        sock.sendall(PREFACE + settings_frame())
        got = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                got += data
        except (ConnectionResetError, socket.timeout):
            pass
    # An HTTP/1.1 error or a plain close; never a SETTINGS frame.
    assert got == b"" or got.startswith(b"HTTP/1.1 4"), got[:200]
    assert not (len(got) >= 9 and got[3] == SETTINGS), got[:200]
    assert upstream.log() == []
    # HTTP/1.1 itself is served as before.
    with Client(s.port) as c:
        assert c.exchange(request("GET", "/h1")).status == 200


# ---------------------------------------------------------------- SETTINGS

@pytest.mark.parametrize("client,streams,header_bytes", [
    ("", 128, 16384),
    ("  http2_max_streams: 7\n", 7, 4096),
], ids=["defaults", "configured"])
def test_settings_advertise_streams_and_header_list(sluice_factory, upstream, client, streams,
                                                     header_bytes):
    mhb = "16k" if header_bytes == 16384 else "4k"
    s = sluice_factory(h2_config(client=client, max_header_bytes=mhb), upstream=upstream)
    with H2Conn(s.port) as c:
        settings = c.handshake()
        assert settings.get(MAX_CONCURRENT_STREAMS) == streams, settings
        assert settings.get(MAX_HEADER_LIST_SIZE) == header_bytes, settings
        assert c.response(c.request("GET", "/after-settings")).status == 200


def test_streams_over_the_limit_are_refused(sluice_factory, upstream):
    # A client may send requests before it has the server's SETTINGS: those over
    # http2_max_streams are refused (REFUSED_STREAM, safe to retry), the others served.
    s = sluice_factory(h2_config(client="  http2_max_streams: 4\n"), upstream=upstream)
    with H2Conn(s.port, replies=False) as c:
        streams = [c.request("GET", f"/sleep/1000?n={i}") for i in range(7)]
        c.responses(streams, 15)
        served = [st for st in streams if st.status == 200]
        refused = [st for st in streams if st.reset == REFUSED_STREAM]
        assert len(served) == 4 and len(refused) == 3, streams
        # Streams are taken in the order they were opened.
        assert [st.id for st in served] == [1, 3, 5, 7], streams
    assert sorted(e["target"] for e in upstream.log()) == [f"/sleep/1000?n={i}" for i in range(4)]


def test_streams_over_the_acknowledged_limit_never_reach_the_upstream(sluice_factory, upstream):
    # Once the client has acknowledged the limit, going over it is a protocol violation:
    # the excess stream is refused, or the connection ends with PROTOCOL_ERROR.
    s = sluice_factory(h2_config(client="  http2_max_streams: 2\n"), upstream=upstream)
    with H2Conn(s.port) as c:
        c.handshake()
        c.wait(lambda: c.settings_acks > 0, what="the SETTINGS ACK")
        held = [c.request("GET", f"/sleep/1500?n={i}") for i in range(2)]
        upstream.wait_log(2)
        extra = c.request("GET", "/sleep/1500?n=extra")
        c.wait(lambda: extra.done or c.goaways, 5, "the excess stream to be refused")
        print(f"stream over the acknowledged limit: reset {extra.reset}, GOAWAY {c.goaway_names()}")
        if extra.reset is not None:
            assert extra.reset == REFUSED_STREAM, extra
            c.responses(held, 10)
            assert [st.status for st in held] == [200, 200]
        else:
            assert c.goaway[0] == PROTOCOL_ERROR, c.goaway_names()
            assert c.goaway[1] < extra.id
    assert "/sleep/1500?n=extra" not in [e["target"] for e in upstream.log()]
    assert_served(s.port)


def test_header_list_over_max_header_bytes_fails_the_stream_only(sluice_factory, upstream):
    s = sluice_factory(h2_config(max_header_bytes="4k"), upstream=upstream)
    big = [(f"x-big-{i}", "v" * 1000) for i in range(8)]  # 8 KiB, over 4 KiB
    with H2Conn(s.port) as c:
        c.handshake()
        st = c.response(c.request("GET", "/big-head", big))
        assert st.status == 431 or st.reset is not None, st
        # The connection goes on serving, HPACK state intact.
        for i in range(3):
            ok = c.response(c.request("GET", f"/after/{i}", [("x-small", "s")]))
            assert ok.status == 200 and ok.json()["target"] == f"/after/{i}", ok
        assert not c.goaways, c.goaway_names()
    assert [e["target"] for e in upstream.log()] == ["/after/0", "/after/1", "/after/2"]


def test_header_list_just_under_max_header_bytes_is_served(sluice_factory, upstream):
    s = sluice_factory(h2_config(max_header_bytes="4k"), upstream=upstream)
    # RFC 9113 counts each field as name + value + 32 bytes.
    fields = [(f"x-fit-{i}", "v" * 400) for i in range(8)]
    assert sum(len(n) + len(v) + 32 for n, v in fields) < 4096 - 200
    with H2Conn(s.port) as c:
        st = c.response(c.request("GET", "/fits", fields))
        assert st.status == 200, st
    assert upstream_header(upstream.log()[0], "x-fit-7") == ["v" * 400]


# ---------------------------------------------------------------- streams and bodies

def test_streams_run_concurrently_on_one_connection(sluice_factory, upstream):
    s = sluice_factory(h2_config(), upstream=upstream)
    with H2Conn(s.port) as c:
        t0 = time.monotonic()
        streams = [c.request("GET", f"/sleep/700?n={i}") for i in range(16)]
        c.responses(streams, 20)
        elapsed = time.monotonic() - t0
        assert [st.status for st in streams] == [200] * 16
        assert [st.json()["target"] for st in streams] == [f"/sleep/700?n={i}" for i in range(16)]
    # One after another they would take 11 s.
    assert elapsed < 5, f"16 streams of 0.7 s took {elapsed:.1f}s"


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "no-length"])
def test_upload_reaches_the_upstream_intact(sluice_factory, upstream, with_length):
    s = sluice_factory(h2_config(), upstream=upstream)
    body = pattern(MIB)
    headers = [("content-length", str(len(body)))] if with_length else []
    with H2Conn(s.port, timeout=20) as c:
        st = c.response(c.request("POST", "/upload", headers + [("content-type", "x/y")], body), 30)
        assert st.status == 200, st
        echo = st.json()
    assert echo["body_length"] == MIB
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    entry = upstream.log()[0]
    assert entry["body_complete"] and entry["body_length"] == MIB, entry
    if with_length:
        assert upstream_header(entry, "content-length") == [str(MIB)], entry
    else:
        # No length known: the HTTP/1.1 upstream gets it chunked.
        assert upstream_header(entry, "transfer-encoding") == ["chunked"], entry


def test_upload_and_an_empty_post_on_the_same_connection(sluice_factory, upstream):
    s = sluice_factory(h2_config(), upstream=upstream)
    with H2Conn(s.port, timeout=20) as c:
        empty = c.response(c.request("POST", "/empty", body=b""))
        assert empty.status == 200 and empty.json()["body_length"] == 0, empty
        small = c.response(c.request("PUT", "/small", [("content-length", "5")], b"hello"))
        assert small.json()["body_sha256"] == hashlib.sha256(b"hello").hexdigest()


@pytest.mark.parametrize("query", ["", "?cl=1"], ids=["chunked", "content-length"])
def test_large_response_comes_back_intact(sluice_factory, upstream, query):
    s = sluice_factory(h2_config(), upstream=upstream)
    n = 6 * MIB + 12345
    with H2Conn(s.port, timeout=30) as c:
        st = c.response(c.request("GET", f"/stream/{n}{query}"), 60)
        assert st.status == 200, st
        assert len(st.body) == n
        assert hashlib.sha256(st.body).hexdigest() == st.header("x-body-sha256")
        assert st.header("transfer-encoding") is None
        if query:
            assert st.header("content-length") == str(n)
        # The connection is still good for more.
        assert c.response(c.request("GET", "/after-stream")).status == 200


def test_two_large_responses_interleave(sluice_factory, upstream):
    s = sluice_factory(h2_config(), upstream=upstream)
    n = 3 * MIB
    with H2Conn(s.port, timeout=30) as c:
        a, b = c.request("GET", f"/stream/{n}"), c.request("GET", f"/stream/{n}?cl=1")
        c.responses([a, b], 60)
        for st in (a, b):
            assert st.status == 200 and len(st.body) == n, st
            assert hashlib.sha256(st.body).hexdigest() == st.header("x-body-sha256")


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "no-length"])
def test_body_over_max_body_bytes_is_413_on_the_stream(sluice_factory, upstream, with_length):
    s = sluice_factory(h2_config(client="  max_body_bytes: 1k\n"), upstream=upstream)
    body = b"z" * 4096
    headers = [("content-length", str(len(body)))] if with_length else []
    with H2Conn(s.port) as c:
        st = c.request("POST", "/too-long", headers, end_stream=False)
        c.send_body(st, body, stall_ok=True, timeout=2)
        c.response(st)
        assert st.status == 413 or st.reset is not None, st
        if st.status == 413:
            assert st.json()  # sluice's own short JSON body
        ok = c.response(c.request("POST", "/fits", body=b"y" * 100))
        assert ok.status == 200 and ok.json()["body_length"] == 100, ok
        assert not c.goaways
    assert all(e["target"] != "/too-long" or not e["body_complete"] for e in upstream.log())


def test_a_stalled_upload_holds_its_stream_not_the_connection(sluice_factory, upstream):
    # The upstream stops reading one request's body: that stream's window shuts, and
    # another upload on the same connection goes through.
    s = sluice_factory(h2_config(upstream_timeout="30s"), upstream=upstream,
                       env=ASAN_SMALL_QUARANTINE)
    assert h2_get(s.port, "/warm-up").status == 200
    rss0 = proc_status_kib(s.pid, "VmRSS")
    with H2Conn(s.port, timeout=10) as c:
        stalled = c.request("POST", "/stall", [("content-length", str(64 * MIB))], end_stream=False)
        sent = c.send_body(stalled, pattern(64 * MIB), timeout=1.5, stall_ok=True)
        assert 0 < sent < 64 * MIB, sent
        body = pattern(MIB)
        other = c.response(c.request("POST", "/upload", body=body), 20)
        assert other.status == 200, other
        assert other.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
        growth = proc_status_kib(s.pid, "VmRSS") - rss0
        print(f"stalled upload: {sent / MIB:.1f} MiB taken before the window shut, "
              f"RSS growth {growth / 1024:.1f} MiB")
        # What sluice holds of the stalled body is its window, not what the client has.
        assert growth < (32 if is_asan_binary(s.binary) else 8) * 1024, growth
        assert not stalled.done


@pytest.mark.parametrize("direction", ["upload", "download"])
def test_64_mib_streams_through_in_bounded_memory(sluice_factory, upstream, direction):
    s = sluice_factory(h2_config(upstream_timeout="30s"), upstream=upstream,
                       env=ASAN_SMALL_QUARANTINE)
    n = 64 * MIB
    with H2Conn(s.port, timeout=30) as c:  # warm up both directions on this connection
        assert c.response(c.request("POST", "/upload", body=pattern(MIB)), 30).status == 200
        assert c.response(c.request("GET", f"/stream/{MIB}"), 30).status == 200
        rss0 = proc_status_kib(s.pid, "VmRSS")
        peak = reset_peak_rss(s.pid)
        if direction == "upload":
            body = pattern(n)
            st = c.response(c.request("POST", "/upload", body=body), 60)
            assert st.status == 200 and st.json()["body_length"] == n, st
            assert st.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
        else:
            st = c.response(c.request("GET", f"/stream/{n}"), 60)
            assert st.status == 200 and len(st.body) == n, st
            assert hashlib.sha256(st.body).hexdigest() == st.header("x-body-sha256")
        growth = proc_status_kib(s.pid, "VmHWM" if peak else "VmRSS") - rss0
    print(f"{direction} 64 MiB over HTTP/2: RSS growth {growth / 1024:.1f} MiB")
    assert growth < (64 if is_asan_binary(s.binary) else 8) * 1024, growth


# ---------------------------------------------------------------- metrics, access log

def test_streams_are_counted_and_logged_with_proto_2(sluice_factory, upstream):
    s = sluice_factory(h2_config(), upstream=upstream)
    before = s.metrics()
    with H2Conn(s.port) as c:
        streams = [c.request("GET", f"/m/{i}") for i in range(5)]
        streams.append(c.request("POST", "/m/post", body=b"abc"))
        c.responses(streams)
        assert all(st.status == 200 for st in streams), streams
    with Client(s.port) as c:
        assert c.exchange(request("GET", "/m/h1")).status == 200

    def counted():
        m = s.metrics()
        return m if m.value("sluice_requests_total", route="all") >= 7 else None
    m = wait_until(counted, 5, 0.05, "the requests to be counted")
    assert m.value("sluice_http2_streams_total") - before.value("sluice_http2_streams_total") == 6
    reasons = {labels.get("reason") for n, labels, _ in m if n == "sluice_http2_goaways_total"}
    assert reasons <= {"shutdown", "idle", "stalled", "enhance_your_calm", "protocol_error"}, reasons
    assert m.value("sluice_requests_total", route="all", decision="allowed") == 7
    assert m.value("sluice_responses_total", route="all", code="200") == 7
    lines = [json.loads(l) for l in s.wait_access_log(7)]
    by_path = {l["path"]: l for l in lines}
    for i in range(5):
        assert by_path[f"/m/{i}"]["proto"] == "2", by_path[f"/m/{i}"]
        assert by_path[f"/m/{i}"]["status"] == 200
    assert by_path["/m/post"]["method"] == "POST" and by_path["/m/post"]["proto"] == "2"
    assert by_path["/m/post"]["bytes_in"] >= 3
    assert by_path["/m/h1"]["proto"] == "1.1"


def test_a_new_connection_is_served_after_many(sluice_factory, upstream):
    s = sluice_factory(h2_config(), upstream=upstream)
    for i in range(20):
        assert h2_get(s.port, f"/conn/{i}").status == 200
    wait_until(lambda: s.metrics().value("sluice_connections_active") == 0, 5, 0.05,
               "the connections to be released")
    assert s.metrics().value("sluice_http2_streams_total") == 20
    assert_served(s.port)


def test_the_unmatched_route_and_errors_keep_the_connection(sluice_factory, upstream):
    routes = """\
  - name: api
    match:
      path_prefix: "/api"
    limits: []
"""
    s = sluice_factory(h2_config(routes=routes), upstream=upstream)
    with H2Conn(s.port) as c:
        assert c.response(c.request("GET", "/api/x")).status == 200
        assert c.response(c.request("GET", "/elsewhere")).status == 200
        st = c.response(c.request("GET", "/status/503"))
        assert st.status == 503, st
        assert c.response(c.request("GET", "/api/y")).status == 200
    m = s.metrics()
    assert m.value("sluice_requests_total", route="", decision="unmatched") == 2
    assert m.value("sluice_requests_total", route="api", decision="allowed") == 2



def test_bodiless_responses(sluice_factory, upstream):
    s = sluice_factory(h2_config(), upstream=upstream)
    with H2Conn(s.port) as c:
        head = c.response(c.request("HEAD", "/stream/1000?cl=1"))
        assert head.status == 200 and head.body == b"", head
        assert head.header("content-length") == "1000"
        for code in (204, 304):
            st = c.response(c.request("GET", f"/status/{code}"))
            assert st.status == code and st.body == b"", st
        assert c.response(c.request("GET", "/after")).status == 200


def test_sluice_own_errors_fail_the_stream_not_the_connection(sluice_factory, upstream):
    # A margin of seconds on both sides: a loaded machine may take one to answer /fast.
    s = sluice_factory(h2_config(upstream_timeout="3s"), upstream=upstream)
    with H2Conn(s.port, timeout=15) as c:
        slow = c.request("GET", "/sleep/8000")
        fast = c.response(c.request("GET", "/fast"))
        assert fast.status == 200 and not slow.done
        c.response(slow)
        assert slow.status == 504, slow
        assert c.response(c.request("GET", "/after-504")).status == 200
        assert not c.goaways


def test_unreachable_upstream_is_502_per_stream(sluice_factory):
    s = sluice_factory(h2_config(), upstream="http://127.0.0.1:9")
    with H2Conn(s.port) as c:
        sts = c.responses([c.request("GET", f"/down/{i}") for i in range(3)])
        assert [st.status for st in sts] == [502, 502, 502], sts
        assert not c.goaways


@pytest.mark.parametrize("bad", ["data_on_stream_0", "headers_on_even_stream", "window_update_0"])
def test_protocol_errors_end_the_connection_and_are_counted(sluice_factory, upstream, bad):
    s = sluice_factory(h2_config(), upstream=upstream)
    frames = {
        "data_on_stream_0": frame(DATA, 0, 0, b"x"),
        "headers_on_even_stream": frame(HEADERS, END_HEADERS | END_STREAM, 2,
                                        literal_block(request_headers("GET", "/even"))),
        "window_update_0": window_update_frame(0, 0),
    }
    with H2Conn(s.port) as c:
        c.handshake()
        assert c.response(c.request("GET", "/first")).status == 200
        c.send(frames[bad])
        c.wait_end(5)
        assert c.goaway_names() == ["PROTOCOL_ERROR"], c.goaways
    wait_until(lambda: s.metrics().value("sluice_http2_goaways_total", reason="protocol_error") == 1,
               3, 0.05, "the GOAWAY to be counted as reason protocol_error")
    assert [e["target"] for e in upstream.log()] == ["/first"]
    assert_served(s.port)
