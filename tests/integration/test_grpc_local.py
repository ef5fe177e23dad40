"""gRPC calls answered by sluice itself (SPEC section 10): a denial, a store failing closed,
a call an http:// upstream cannot carry, and sluice's own errors reach a gRPC client as
trailers-only responses (HTTP 200, grpc-status, grpc-message, and the RateLimit fields and
retry-after as metadata), in front of an http:// upstream and of a gRPC service on h2c://
(grpc_upstream.py). The client is python3-grpcio, with no generated stubs: methods called
by name with raw bytes."""
import json
import socket
import urllib.parse

import grpc
import pytest

from conftest import Client, http, pick_port, request, wait_until
from h2_support import DATA, HEADERS, H2Conn, h2_config

ROUTES = """\
  - name: svc
    match:
      path_prefix: "/pkg.Svc/"
    limits:
      - name: per_call
        algorithm: fixed_window
        rate: 1/1h
        key: route
  - name: free
    match:
      path_prefix: "/"
    limits: []
"""

COST_ROUTES = """\
  - name: svc
    match:
      path_prefix: "/pkg.Svc/"
    limits:
      - name: per_call
        algorithm: fixed_window
        rate: 100/1h
        key: route
        cost: "header:X-Cost%"
"""

UNIMPLEMENTED_MESSAGE = "gRPC needs an h2c:// or h2:// upstream.url"
GRPC_HEADERS = [("content-type", "application/grpc"), ("te", "trailers")]
# A unary call's message: not compressed, 3 bytes long.
FRAMED = b"\x00\x00\x00\x00\x03abc"


def call(port, method="/pkg.Svc/Method", body=b"abc"):
    """Calls `method` once; returns (code, details, metadata). A trailers-only response has
    no initial metadata: everything is in the trailing metadata."""
    options = [("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as ch:
        stub = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            _, c = stub.with_call(body, timeout=10)
        except grpc.RpcError as e:
            c = e
        assert not c.initial_metadata(), c.initial_metadata()
        return c.code(), c.details(), dict(c.trailing_metadata() or ())


def denial_body(retry):
    return json.dumps({"error": "rate_limited", "route": "svc", "limit": "per_call",
                       "retry_after": retry}, separators=(",", ":"))


def check_ratelimit_metadata(meta, remaining):
    assert meta["ratelimit-policy"] == '"per_call";q=1;w=3600', meta
    r, _, t = meta["ratelimit"].partition(";t=")
    assert r == f'"per_call";r={remaining}', meta
    assert 0 < int(t) <= 3600
    assert meta["x-ratelimit-limit"] == "1"
    assert meta["x-ratelimit-remaining"] == str(remaining)


def counted(s, route, n):
    def ready():
        m = s.metrics()
        return m if m.value("sluice_requests_total", route=route) == n else None
    return wait_until(ready, 5, 0.05, f"{n} requests on route {route!r} in the metrics")


def test_denial_is_resource_exhausted_with_ratelimit_metadata(sluice_factory, upstream):
    s = sluice_factory(h2_config(routes=ROUTES), upstream=upstream)
    # The first call is admitted, and meets the http:// upstream it cannot go through.
    code, details, meta = call(s.port)
    assert code == grpc.StatusCode.UNIMPLEMENTED, (code, details)
    assert details == UNIMPLEMENTED_MESSAGE
    check_ratelimit_metadata(meta, 0)
    assert "retry-after" not in meta

    code, details, meta = call(s.port)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    retry = int(meta["retry-after"])
    assert 0 < retry <= 3600
    assert json.loads(details) == json.loads(denial_body(retry))
    check_ratelimit_metadata(meta, 0)
    assert meta["ratelimit"] == f'"per_call";r=0;t={retry}'

    # Another method on the same route shares its limit.
    code, _, _ = call(s.port, "/pkg.Svc/Other")
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert upstream.log() == []

    m = counted(s, "svc", 3)
    assert m.value("sluice_requests_total", route="svc", decision="allowed") == 1
    assert m.value("sluice_requests_total", route="svc", decision="limited") == 2
    assert m.value("sluice_limit_checks_total", route="svc", limit="per_call",
                   result="deny") == 2
    assert m.value("sluice_responses_total", route="svc", code="200") == 3
    # Two workers write the log: its lines may come in another order.
    lines = [json.loads(l) for l in s.wait_access_log(3)]
    assert sorted((l["path"], l["status"], l["decision"], l["proto"]) for l in lines) == [
        ("/pkg.Svc/Method", 200, "allowed", "2"), ("/pkg.Svc/Method", 200, "limited", "2"),
        ("/pkg.Svc/Other", 200, "limited", "2")], lines


def test_denial_is_one_headers_frame(sluice_factory, upstream):
    # Trailers-only, on the wire: one HEADERS frame with END_STREAM and no DATA.
    s = sluice_factory(h2_config(routes=ROUTES), upstream=upstream)
    with H2Conn(s.port) as c:
        first = c.response(c.request("POST", "/pkg.Svc/M", GRPC_HEADERS, body=FRAMED))
        second = c.response(c.request("POST", "/pkg.Svc/M", GRPC_HEADERS, body=FRAMED))
        assert c.frames_in.get(DATA, 0) == 0, c.frames_in
        assert c.frames_in.get(HEADERS, 0) == 2, c.frames_in
        assert not c.goaways
    assert first.header("grpc-status") == "12"
    assert first.trailers is None and not first.body
    # Answered before its body ended, the stream may then be stopped with
    # RST_STREAM(NO_ERROR) (RFC 9113 8.1): the response is complete all the same.
    assert second.ended and second.reset in (None, 0) and second.trailers is None
    names = [n for n, _ in second.headers]
    assert names[:4] == [":status", "content-type", "grpc-status", "grpc-message"], names
    assert second.status == 200
    assert second.header("content-type") == "application/grpc"
    assert second.header("grpc-status") == "8"
    retry = int(second.header("retry-after"))
    assert second.header("grpc-message") == denial_body(retry)
    assert second.header("ratelimit-policy") == '"per_call";q=1;w=3600'
    assert second.header("content-length") is None


def test_grpc_status_14_sends_unavailable(sluice_factory, upstream):
    s = sluice_factory(h2_config(routes=ROUTES, extra="response:\n  grpc_status: 14\n"),
                       upstream=upstream)
    assert call(s.port)[0] == grpc.StatusCode.UNIMPLEMENTED
    code, details, meta = call(s.port)
    assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
    assert json.loads(details)["error"] == "rate_limited"
    assert int(meta["retry-after"]) > 0
    check_ratelimit_metadata(meta, 0)
    config = http(s.admin_port, request("GET", "/config")).json()
    assert config["response"] == {"status": 429, "headers": "both", "grpc_status": 14}


def test_unimplemented_on_an_http_upstream(sluice_factory, upstream):
    s = sluice_factory(h2_config(), upstream=upstream)
    for method in ("/pkg.Svc/Method", "/other.Svc/Call"):
        code, details, meta = call(s.port, method)
        assert code == grpc.StatusCode.UNIMPLEMENTED, (code, details)
        assert details == UNIMPLEMENTED_MESSAGE
        assert "ratelimit" not in meta  # the route has no limits
    # Nothing reached the upstream; other requests on the connection's kind still do.
    assert upstream.log() == []
    with H2Conn(s.port) as c:
        st = c.response(c.request("POST", "/pkg.Svc/Method",
                                  [("content-type", "application/grpc-web")], body=b"x"))
    assert st.status == 200 and st.header("grpc-status") is None
    assert [e["target"] for e in upstream.log()] == ["/pkg.Svc/Method"]
    m = counted(s, "all", 3)
    assert m.value("sluice_requests_total", route="all", decision="allowed") == 3


def test_store_failing_closed_is_unavailable(sluice_factory, upstream):
    port = pick_port()  # nothing listens there
    extra = (f"redis:\n  url: \"redis://127.0.0.1:{port}/0\"\n  timeout: 100ms\n"
             "failure_mode: closed\n")
    s = sluice_factory(h2_config(routes=ROUTES, extra=extra), upstream=upstream)
    for _ in range(2):
        code, details, meta = call(s.port)
        assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
        assert json.loads(details) == {"error": "store_unavailable"}
        assert meta["retry-after"] == "1"
    m = counted(s, "svc", 2)
    assert m.value("sluice_requests_total", route="svc", decision="store_error") == 2
    # A plain request still gets the JSON 503.
    with Client(s.port) as c:
        r = c.exchange(request("GET", "/pkg.Svc/Method"))
    assert r.status == 503 and r.json() == {"error": "store_unavailable"}


def test_grpc_message_is_percent_encoded(sluice_factory, upstream):
    # A cost header whose value is not a number is a 400 naming the header, whose name may
    # hold "%": on the wire it is %25, and the gRPC client decodes it back.
    s = sluice_factory(h2_config(routes=COST_ROUTES), upstream=upstream)
    with H2Conn(s.port) as c:
        st = c.response(c.request("POST", "/pkg.Svc/M", GRPC_HEADERS + [("x-cost%", "lots")],
                                  body=FRAMED))
    body = {"error": "bad_cost", "route": "svc", "limit": "per_call", "header": "X-Cost%"}
    assert st.status == 200 and st.header("grpc-status") == "13", st
    raw = st.header("grpc-message")
    assert raw == json.dumps(body, separators=(",", ":")).replace("%", "%25"), raw
    assert json.loads(urllib.parse.unquote(raw)) == body
    # Names cannot hold other bytes a message must encode; the unit test of grpc.c covers
    # them. A gRPC client sees the decoded text of an encoded one:
    code, details, _ = call(s.port)
    assert code == grpc.StatusCode.UNIMPLEMENTED and details == UNIMPLEMENTED_MESSAGE


def read_h1_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = [tuple(p.strip() for p in l.split(":", 1)) for l in lines[1:]]
    return lines[0], {n.lower(): v for n, v in fields}, rest


def test_http1_form(sluice_factory, upstream):
    s = sluice_factory(h2_config(routes=ROUTES), upstream=upstream)
    req = (b"POST /pkg.Svc/Method HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: Application/GRPC+proto\r\nContent-Length: 8\r\n\r\n" + FRAMED)
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
        sock.sendall(req)
        line, fields, rest = read_h1_response(sock)
        assert line == "HTTP/1.1 200 OK"
        assert fields["grpc-status"] == "12"
        assert urllib.parse.unquote(fields["grpc-message"]) == UNIMPLEMENTED_MESSAGE
        assert fields["content-length"] == "0" and rest == b""
        assert fields["ratelimit"].startswith('"per_call";r=0;')
        # The connection goes on: the next call on it is denied.
        sock.sendall(req)
        line, fields, rest = read_h1_response(sock)
    assert line == "HTTP/1.1 200 OK"
    assert fields["content-type"] == "application/grpc"
    assert fields["grpc-status"] == "8"
    retry = int(fields["retry-after"])
    assert fields["grpc-message"] == denial_body(retry)
    assert fields["x-ratelimit-remaining"] == "0"
    assert fields["content-length"] == "0" and rest == b""
    assert "connection" not in fields
    assert upstream.log() == []
    lines = [json.loads(l) for l in s.wait_access_log(2)]
    assert sorted((l["status"], l["decision"], l["proto"]) for l in lines) == [
        (200, "allowed", "1.1"), (200, "limited", "1.1")]


def test_other_requests_keep_json_answers(sluice_factory, upstream):
    s = sluice_factory(h2_config(routes=ROUTES), upstream=upstream)
    assert call(s.port)[0] == grpc.StatusCode.UNIMPLEMENTED
    with H2Conn(s.port) as c:
        for ctype in ("application/json", "application/grpc-web+proto"):
            st = c.response(c.request("POST", "/pkg.Svc/M", [("content-type", ctype)],
                                      body=b"{}"))
            assert st.status == 429, st
            assert st.header("content-type") == "application/json"
            assert st.header("grpc-status") is None
            assert st.json() == json.loads(denial_body(int(st.header("retry-after"))))
    with Client(s.port) as c:
        r = c.exchange(request("POST", "/pkg.Svc/M", [("Content-Type", "text/plain")],
                               body=b"x"))
    assert r.status == 429 and r.json()["error"] == "rate_limited"
    assert r.header("grpc-status") is None


@pytest.mark.parametrize("proto", ["1.1", "2"])
def test_own_errors_before_the_limits(sluice_factory, upstream, proto):
    # A body over client.max_body_bytes: 413, RESOURCE_EXHAUSTED, as gRPC servers answer a
    # message over their limit.
    extra_client = "  max_body_bytes: 4\n"
    s = sluice_factory(h2_config(routes=ROUTES, client=extra_client), upstream=upstream)
    if proto == "2":
        with H2Conn(s.port) as c:
            st = c.response(c.request("POST", "/pkg.Svc/M",
                                      GRPC_HEADERS + [("content-length", "8")], body=FRAMED))
        assert st.status == 200 and st.header("grpc-status") == "8", st
        assert st.header("grpc-message") == '{"error":"body_too_large"}'
    else:
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
            sock.sendall(b"POST /pkg.Svc/M HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/grpc\r\nContent-Length: 8\r\n\r\n" + FRAMED)
            line, fields, _ = read_h1_response(sock)
        assert line == "HTTP/1.1 200 OK"
        assert fields["grpc-status"] == "8"
        assert fields["grpc-message"] == '{"error":"body_too_large"}'
        assert fields["connection"] == "close"
    assert upstream.log() == []


def test_h2c_upstream_is_not_refused(sluice_factory):
    # upstream.url h2c:// can carry gRPC: the call goes for the upstream, and an upstream
    # that cannot be reached is a 502, which a gRPC client sees as UNAVAILABLE.
    s = sluice_factory(h2_config(), upstream=f"h2c://127.0.0.1:{pick_port()}")
    code, details, _ = call(s.port)
    assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
    assert details == '{"error":"bad_gateway"}'
    m = counted(s, "all", 1)
    assert m.value("sluice_upstream_errors_total", kind="connect") == 1


def test_denial_in_front_of_a_grpc_service(sluice_factory, upstream_factory):
    # On an h2c:// upstream admitted calls reach the service, and the one over the limit is
    # answered by sluice, its status where the service's would be.
    app = upstream_factory(script="grpc_upstream.py")
    routes = ROUTES.replace("/pkg.Svc/", "/test.Echo/").replace("rate: 1/1h", "rate: 2/1h")
    s = sluice_factory(h2_config(routes=routes), upstream=f"h2c://127.0.0.1:{app.port}")
    options = [("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0)]
    with grpc.insecure_channel(f"127.0.0.1:{s.port}", options=options) as ch:
        unary = ch.unary_unary("/test.Echo/Unary", request_serializer=None,
                               response_deserializer=None)
        for remaining in (1, 0):
            reply, c = unary.with_call(b"abc", timeout=10)
            assert reply == b"cba" and c.code() == grpc.StatusCode.OK
            # Admitted: the RateLimit fields are in the response head, the initial metadata.
            head = dict(c.initial_metadata())
            assert head["ratelimit"].startswith(f'"per_call";r={remaining};'), head
            assert dict(c.trailing_metadata())["x-trailer"] == "done"
        with pytest.raises(grpc.RpcError) as e:
            unary.with_call(b"abc", timeout=10)
    err = e.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
    assert not err.initial_metadata()
    meta = dict(err.trailing_metadata())
    retry = int(meta["retry-after"])
    assert json.loads(err.details()) == {"error": "rate_limited", "route": "svc",
                                         "limit": "per_call", "retry_after": retry}
    assert meta["ratelimit"] == f'"per_call";r=0;t={retry}'
    assert meta["ratelimit-policy"] == '"per_call";q=2;w=3600'
