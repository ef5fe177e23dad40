"""gRPC through sluice to an h2c:// upstream (SPEC section 10): a python3-grpcio client in
front and a python3-grpcio service behind (grpc_upstream.py), with the four call shapes,
metadata and trailers intact, an upstream that dies mid-stream, and grpc-timeout honoured
as a deadline by sluice itself."""
import queue
import struct
import time

import grpc
import pytest

from h2_support import H2Conn, h2_config

ROUTES = """\
  - name: grpc
    match:
      path_prefix: "/test.Echo/"
    limits:
      - name: per_caller
        algorithm: token_bucket
        rate: 1000/1s
        burst: 1000
        key: "header:x-caller"
"""


@pytest.fixture
def grpc_app(upstream_factory):
    up = upstream_factory(script="grpc_upstream.py")
    up.url = f"h2c://127.0.0.1:{up.port}"
    return up


@pytest.fixture
def s(sluice_factory, grpc_app):
    return sluice_factory(h2_config(routes=ROUTES, workers=1, upstream_timeout="5s"),
                          upstream=grpc_app)


@pytest.fixture
def channel(s):
    ch = grpc.insecure_channel(f"127.0.0.1:{s.port}")
    grpc.channel_ready_future(ch).result(timeout=10)
    yield ch
    ch.close()


def frame(msg):
    return b"\0" + struct.pack(">I", len(msg)) + msg


def test_unary_with_metadata_and_trailers(channel):
    call = channel.unary_unary("/test.Echo/Unary")
    resp, info = call.with_call(b"hello", metadata=(("x-meta", "m1"), ("x-caller", "a")),
                                timeout=10)
    assert resp == b"olleh"
    assert ("x-meta", "m1") in info.initial_metadata()
    assert ("x-trailer", "done") in info.trailing_metadata()
    assert info.code() == grpc.StatusCode.OK


def test_server_streaming(channel):
    call = channel.unary_stream("/test.Echo/ServerStream")
    got = list(call(b"m", metadata=(("x-count", "50"),), timeout=10))
    assert got == [b"m%d" % i for i in range(50)]


def test_client_streaming(channel):
    call = channel.stream_unary("/test.Echo/ClientStream")
    parts = [b"part%d," % i for i in range(100)]
    assert call(iter(parts), timeout=10) == b"".join(parts)


def test_bidirectional_streaming_interleaves(channel):
    call = channel.stream_stream("/test.Echo/Bidi")
    outbox = queue.Queue()

    def requests():
        while True:
            m = outbox.get()
            if m is None:
                return
            yield m
    responses = call(requests(), timeout=10)
    # Each answer arrives before the next message is sent: nothing waits for the end.
    for i in range(10):
        outbox.put(b"msg%d" % i)
        assert next(responses) == b"MSG%d" % i
    outbox.put(None)
    assert list(responses) == []


def test_large_messages_both_ways(channel):
    big = bytes(range(256)) * 8192  # 2 MiB, past every window
    call = channel.unary_unary("/test.Echo/Unary")
    assert call(big, timeout=20) == big[::-1]


def test_status_and_details_from_the_service(channel):
    with pytest.raises(grpc.RpcError) as e:
        channel.unary_unary("/test.Echo/Fail")(b"x", timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert e.value.details() == "no such thing"


def test_upstream_dying_mid_stream(channel):
    got = []
    with pytest.raises(grpc.RpcError) as e:
        for m in channel.unary_stream("/test.Echo/Die")(b"first", timeout=10):
            got.append(m)
    assert got == [b"first"]
    assert e.value.code() != grpc.StatusCode.OK


def test_grpc_timeout_is_answered_deadline_exceeded(s):
    # A raw client: it sends grpc-timeout but enforces no deadline itself, so what ends the
    # call is sluice.
    with H2Conn(s.port) as c:
        t0 = time.monotonic()
        st = c.request("POST", "/test.Echo/Slow", headers=[
            ("content-type", "application/grpc"), ("te", "trailers"),
            ("grpc-timeout", "300m"), ("x-sleep-ms", "3000")], body=frame(b"z"))
        c.response(st, timeout=10)
        took = time.monotonic() - t0
    assert st.status == 200, st
    assert (st.trailers or st.headers) is not None
    status = dict(st.trailers or []).get("grpc-status") or st.header("grpc-status")
    assert status == "4", st
    assert 0.25 < took < 2.0, took
