#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ from the project's own inputs:
conf/sluice.yaml, examples/, the YAML and values of tests/unit, and the requests and
configurations of tests/integration, each in the input format its target reads (see the
comment at the top of each fuzz_<target>.c). Files are named by their SHA-1, as libFuzzer
names what it adds, so running this again adds nothing twice.

    tests/fuzz/seeds.py            # from the repository root
"""
import ast
import hashlib
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fuzz" / "corpus"


def write(target, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


C_LITERAL = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def c_string_runs(path):
    """Each run of adjacent C string literals of a file, joined and unescaped."""
    text = path.read_text()
    runs, current, last_end = [], [], None
    for m in C_LITERAL.finditer(text):
        if current and text[last_end:m.start()].strip() == "":
            current.append(m.group(1))
        else:
            if current:
                runs.append("".join(current))
            current = [m.group(1)]
        last_end = m.end()
    if current:
        runs.append("".join(current))
    return [r.encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1")
            for r in runs]


def py_constants(path, kind):
    """Every str or bytes constant of a Python file."""
    tree = ast.parse(path.read_text())
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, kind)]


# ---- config ----

def config_seeds():
    for p in [ROOT / "conf" / "sluice.yaml", *sorted((ROOT / "examples").glob("*.yaml"))]:
        write("config", p.read_bytes())
    for p in sorted((ROOT / "tests" / "unit").glob("test_config_*.c")) + \
            sorted((ROOT / "tests" / "unit" / "support").glob("*.h")):
        for s in c_string_runs(p):
            if b":" in s and b"\n" in s:
                write("config", s)
    # The integration tests' configurations: limits_support.config() around each routes text.
    template = None
    for s in py_constants(ROOT / "tests" / "integration" / "limits_support.py", str):
        if s.startswith('listen: "{listen}"'):
            template = s
    fill = {"listen": "127.0.0.1:8080", "admin": "127.0.0.1:9901",
            "upstream": "http://127.0.0.1:3000", "access_log": "off"}
    for p in sorted((ROOT / "tests" / "integration").glob("test_*.py")):
        for s in py_constants(p, str):
            if "- name:" not in s:
                continue
            if template:
                text = template.replace("{{", "\0").replace("}}", "\1")
                for k, v in fill.items():
                    text = text.replace("{" + k + "}", v)
                text = re.sub(r"\{[a-z_]+\}", "", text)
                text = text.replace("\0", "{").replace("\1", "}")
                write("config", (text + "routes:\n" + s).encode())
            write("config", s.encode())


# ---- request: byte 0 = peer/answer/when, byte 1 = write size, then the client's bytes ----

REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"POST /api/login HTTP/1.1\r\nHost: a\r\nX-User: bob\r\nContent-Length: 3\r\n\r\nabc",
    b"PUT /api/login HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.2\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"GET /users/42?id=7&x=%20 HTTP/1.1\r\nHost: API.Example.com:8080\r\n"
    b"Cookie: a=1; session=s3\r\n\r\n",
    b"GET /v2/items HTTP/1.1\r\nHost: h\r\nX-Api-Version: 2\r\n\r\n",
    b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET /slow HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /api//x/../login HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET http://api.example.com/users/1 HTTP/1.1\r\nHost: other\r\n\r\n",
    b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n0\r\nTrailer-Field: x\r\n\r\n",
    b"POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    b"\x81\x05hello",
    b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\n"
    b"TE: trailers\r\nProxy-Connection: x\r\nX-Forwarded-Proto: https\r\n"
    b"X-Forwarded-Host: evil\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: ::1, junk\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000\r\n\r\n" + b"x" * 100,
    b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
]


# Byte 0: bits 0-1 the peer, 2-4 the upstream's answer (fuzz_request.c `answers`), 6 answer
# early, 7 the other peers; byte 1: bit 7 all at once (then bit 0: half-close), else pieces.
FLAGGED_REQUESTS = [
    (0x00, 0x80, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" * 6),  # past the limit: 429
    (0x02, 0x80, b"POST /api/login HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd" * 3),
    (0x18, 0x80, b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
     b"\r\n\x81\x05hello"),  # 101: the tunnel
    (0x18, 0x81, b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nbye"),
    (0x40, 0x80, b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n12345"),
    (0x1c, 0x81, b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"),
    (0x08, 0x05, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"),
    (0x83, 0x80, b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n"),
    (0x00, 0x81, b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /x HTTP/1.1\r\nHo"),
]


def request_seeds():
    for b0, b1, req in FLAGGED_REQUESTS:
        write("request", bytes([b0, b1]) + req)
    found = []
    for p in sorted((ROOT / "tests" / "integration").glob("*.py")):
        found += [b for b in py_constants(p, bytes) if re.match(rb"[A-Z]+ \S+ HTTP/", b)]
    # Peer 10.0.0.1 (trusted), answer 200 with Content-Length, all at once; then variations.
    for i, req in enumerate(REQUESTS + found):
        write("request", bytes([0x00, 0x80]) + req)
        write("request", bytes([(i * 37) & 0xff, (i * 11) & 0x7f]) + req)


# ---- response: byte 0 = requests/when, byte 1 = write size, then the upstream's bytes ----

RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\nX-Trailer: 1\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    b"\x81\x02hi",
    b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
    b"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
    b"Content-Length: 1\r\n\r\nx",
    b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nab",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw bytes",
]


def response_seeds():
    for i, resp in enumerate(RESPONSES):
        for which in range(8):
            write("response", bytes([which | (i << 3 & 0x38), 0x80]) + resp)
        write("response", bytes([(i * 29) & 0xff, (i * 7) & 0x7f]) + resp)


# ---- h2: byte 0 = answer/when/preface/half-close/peer, byte 1 = write size, then frames ----
# The conversations are made with python3-h2 as a client would send them; a few frames it
# would not send (CONTINUATION, a body shorter than its content-length) are made by hand.

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_client():
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    c = H2Connection(H2Configuration(client_side=True, header_encoding=None,
                                     validate_outbound_headers=False,
                                     normalize_outbound_headers=False))
    c.initiate_connection()
    # sluice's SETTINGS (fuzz_h2.c's configuration: 8 streams, a window of 256 KiB, 2 KiB
    # of header list) and its connection window, as if read: the client acks them and
    # sends as much as they allow.
    settings = b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big")
                        for k, v in [(3, 8), (4, 256 * 1024), (6, 2048)])
    c.receive_data(h2_frame(4, 0, 0, settings) + h2_frame(8, 0, 0, (960 * 1024).to_bytes(4, "big")))
    return c


def h2_head(method, path, extra=(), authority="api.example.com"):
    return [(":method", method), (":scheme", "http"), (":authority", authority),
            (":path", path), *extra]


def h2_frame(kind, flags, stream, payload):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + \
        stream.to_bytes(4, "big") + payload


def h2_conversations():
    """(name, bytes the client sends after the preface) for each conversation."""
    import hpack
    out = []

    def conv(name, steps):
        c = h2_client()
        steps(c)
        out.append((name, c.data_to_send()[len(H2_PREFACE):]))

    conv("get", lambda c: c.send_headers(1, h2_head("GET", "/"), end_stream=True))
    conv("head", lambda c: c.send_headers(1, h2_head("HEAD", "/a"), end_stream=True))

    def limited(c):
        for i in range(4):
            c.send_headers(1 + 2 * i, h2_head("GET", "/limited/x", [("x-user", "bob")]),
                           end_stream=True)
    conv("limited", limited)

    def slow(c):
        for i in range(3):
            c.send_headers(1 + 2 * i, h2_head("GET", "/slow"), end_stream=True)
    conv("slow", slow)

    def post_length(c):
        c.send_headers(1, h2_head("POST", "/up", [("content-length", "5"),
                                                  ("content-type", "text/plain")]))
        c.send_data(1, b"hello", end_stream=True)
    conv("post-content-length", post_length)

    def post_chunked(c):
        c.send_headers(1, h2_head("POST", "/up"))
        c.send_data(1, b"hel")
        c.send_data(1, b"lo")
        c.send_data(1, b"", end_stream=True)
    conv("post-no-length", post_chunked)

    def trailers(c):
        c.send_headers(1, h2_head("PUT", "/up", [("te", "trailers")]))
        c.send_data(1, b"abc")
        c.send_headers(1, [("x-checksum", "1")], end_stream=True)
    conv("trailers", trailers)

    def reset(c):
        c.send_headers(1, h2_head("POST", "/up"))
        c.send_data(1, b"abc")
        c.reset_stream(1)
        c.send_headers(3, h2_head("GET", "/after-reset"), end_stream=True)
    conv("rst-stream", reset)

    def control(c):
        c.ping(b"12345678")
        c.update_settings({1: 0, 4: 1 << 20, 5: 1 << 15, 3: 4})
        c.increment_flow_control_window(1 << 20)
        c.send_headers(1, h2_head("GET", "/big"), end_stream=True)
        c.increment_flow_control_window(1 << 20, stream_id=1)
        c.prioritize(1, weight=200)
        c.ping(b"abcdefgh")
    conv("ping-settings-window", control)

    def many(c):
        for i in range(8):
            c.send_headers(1 + 2 * i, h2_head("GET", "/s/%d" % i, [("cookie", "a=%d" % i),
                                                                  ("cookie", "b=2")]),
                           end_stream=i % 3 != 2)
        for i in range(8):
            if i % 3 == 2:
                c.send_data(1 + 2 * i, b"x" * i, end_stream=True)
    conv("many-streams", many)

    def too_many(c):
        many(c)
        # More than the 8 sluice allows at once, which python3-h2 will not send: literals
        # never indexed, so that the server's HPACK table stays as the client's.
        for i in range(8, 12):
            block = hpack.Encoder().encode([(n, v, True) for n, v in h2_head("GET", "/m")])
            c._data_to_send += h2_frame(1, 0x5, 1 + 2 * i, block)
    conv("too-many-streams", too_many)

    def body_over_limit(c):  # no content-length: found out as the DATA comes
        c.send_headers(1, h2_head("POST", "/up"))
        for _ in range(3):
            c.send_data(1, b"z" * 2000)
        c.end_stream(1)
    conv("body-no-length-over-limit", body_over_limit)

    def big_body(c):
        c.send_headers(1, h2_head("POST", "/up", [("content-length", "5000")]))
        c.send_data(1, b"y" * 4096)
        c.send_data(1, b"y" * 904, end_stream=True)
    conv("body-over-limit", big_body)

    def goaway(c):
        c.send_headers(1, h2_head("GET", "/"), end_stream=True)
        c.close_connection()
    conv("goaway", goaway)

    conv("connect", lambda c: c.send_headers(
        1, [(":method", "CONNECT"), (":authority", "example.com:443")], end_stream=True))
    conv("big-head", lambda c: c.send_headers(
        1, h2_head("GET", "/", [("x-big", "v" * 3000)]), end_stream=True))
    conv("underscore", lambda c: c.send_headers(
        1, h2_head("GET", "/", [("x_user", "1"), ("host", "other")]), end_stream=True))

    # A header block in HEADERS and two CONTINUATION frames.
    block = hpack.Encoder().encode(h2_head("GET", "/continued", [("x-a", "1" * 40)]))
    third = len(block) // 3
    out.append(("continuation",
                h2_frame(1, 0x1, 1, block[:third]) + h2_frame(9, 0, 1, block[third:2 * third]) +
                h2_frame(9, 0x4, 1, block[2 * third:])))
    # A content-length the DATA does not match.
    block = hpack.Encoder().encode(h2_head("POST", "/up", [("content-length", "10")]))
    out.append(("short-body", h2_frame(1, 0x4, 1, block) + h2_frame(0, 0x1, 1, b"abc")))
    return out


def h2_seeds():
    try:
        convs = h2_conversations()
    except ImportError:
        print("h2: python3-h2 not installed, no seeds written")
        return
    # Byte 0: bits 0-2 the upstream's answer (fuzz_h2.c `answers`), 3 answer early, 4 the
    # input carries the preface, 5 half-close, 6-7 the peer; byte 1: bit 7 all at once,
    # else pieces of byte 1 + 1 bytes.
    for i, (name, frames) in enumerate(convs):
        for answer in range(8):
            write("h2", bytes([answer, 0x80]) + frames)
        write("h2", bytes([0x10 | (i & 7), 0x80]) + H2_PREFACE + frames)
        write("h2", bytes([0x08 | (i * 3 & 7) | (i & 3) << 6, (i * 13) & 0x7f]) + frames)
        write("h2", bytes([0x20 | (i * 5 & 7), 0x80]) + frames)


# ---- h2_upstream: byte 0 = client requests/protocol, own SETTINGS, made head, close,
# half-close; byte 1 = write size; byte 2 = the made head; then the upstream's frames ----
# Header blocks use the static table and literals that add nothing to the dynamic one, so
# each block decodes alone whatever came before.

def hp_literal(name, value):
    """A literal field without indexing, its name a literal too (RFC 7541 6.2.2)."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


STATUS_200, STATUS_204, STATUS_404 = b"\x88", b"\x89", b"\x8d"


def hp_status(code):
    """:status by the static table's name (index 8) and a literal value."""
    return b"\x08\x03" + code


def h2u_response(stream, body=b"hello", extra=b"", status=STATUS_200):
    head = status + hp_literal(b"content-type", b"text/plain") + extra
    if not body:
        return h2_frame(1, 0x5, stream, head)
    return h2_frame(1, 0x4, stream, head) + h2_frame(0, 0x1, stream, body)


def h2u_scripts():
    settings = lambda *kv: h2_frame(4, 0, 0, b"".join(
        k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in kv))
    ack = h2_frame(4, 1, 0, b"")
    rst = lambda stream, code: h2_frame(3, 0, stream, code.to_bytes(4, "big"))
    goaway = lambda last, code: h2_frame(7, 0, 0, last.to_bytes(4, "big") +
                                         code.to_bytes(4, "big"))
    update = lambda stream, n: h2_frame(8, 0, stream, n.to_bytes(4, "big"))
    ok = h2u_response(1)
    trailers = (h2_frame(1, 0x4, 1, STATUS_200) + h2_frame(0, 0, 1, b"ab") +
                h2_frame(1, 0x5, 1, hp_literal(b"x-checksum", b"1")))
    yield "ok", 0, ok
    yield "ok-length", 0, h2u_response(1, extra=hp_literal(b"content-length", b"5"))
    yield "no-content", 0, h2u_response(1, b"", status=STATUS_204)
    yield "not-found", 0, h2u_response(1, b"missing", status=STATUS_404)
    yield "trailers", 0, trailers
    yield "trailers-only", 0, h2_frame(1, 0x5, 1, STATUS_200 + hp_literal(
        b"content-type", b"application/grpc") + hp_literal(b"grpc-status", b"0"))
    yield "interim", 0, h2_frame(1, 0x4, 1, hp_status(b"103") + hp_literal(b"link", b"</a>")) + ok
    yield "continuation", 0, (h2_frame(1, 0, 1, STATUS_200) +
                              h2_frame(9, 0x4, 1, hp_literal(b"x-a", b"1")) +
                              h2_frame(0, 0x1, 1, b"hi"))
    yield "refused", 0, rst(1, 7) + h2u_response(3)
    yield "reset", 0, h2_frame(1, 0x4, 1, STATUS_200) + h2_frame(0, 0, 1, b"ab") + rst(1, 2)
    yield "goaway", 0, goaway(0, 0)
    yield "goaway-after", 0, ok + goaway(1, 0)
    yield "goaway-error", 0, goaway(0, 1)
    yield "ping", 0, h2_frame(6, 0, 0, b"12345678") + ok
    # 65535 bytes fill an HTTP/2 client's window, 256 KiB more sluice's buffer for it, and
    # with the stream's window of 256 KiB then shut, the rest goes past it.
    yield "flood", 0, h2_frame(1, 0x4, 1, STATUS_200) + b"".join(
        h2_frame(0, 0, 1, b"x" * 16384) for _ in range(36))
    # Only sluice's buffer full: the upstream waits until the client opens its window.
    yield "flood-held", 0, h2_frame(1, 0x4, 1, STATUS_200) + b"".join(
        h2_frame(0, 0, 1, b"x" * 16384) for _ in range(21))
    yield "max-streams-1", 0x10, settings((3, 1)) + ack + ok + h2u_response(3)
    yield "window-0", 0x10, settings((4, 0)) + ack + update(0, 1 << 20) + update(1, 2) + \
        update(3, 100) + ok + h2u_response(3)
    yield "big-frames", 0x10, settings((5, 1 << 20), (4, 1 << 20)) + ack + ok
    yield "early-close", 0x40, h2_frame(1, 0x4, 1, STATUS_200) + h2_frame(0, 0, 1, b"par")
    yield "garbage", 0, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    yield "wrong-stream", 0, h2u_response(2) + h2u_response(9)


def h2_upstream_seeds():
    # Byte 0: bits 0-2 the requests (HTTP/1.1: fuzz_h2_upstream.c `requests`; HTTP/2: 1 to
    # 4 streams, trailers asked), 3 HTTP/2, 4 own SETTINGS, 5 a head made for stream 1 from
    # byte 2, 6 close after, 7 half-close; byte 1: bit 7 all at once, else pieces of
    # byte 1 + 1 bytes.
    for i, (name, flags, frames) in enumerate(h2u_scripts()):
        # The floods once, to an HTTP/2 client with a shut window: they are large.
        for which in (0, 1, 2, 3, 5, 8, 9, 11) if len(frames) < 4096 else (8,):
            write("h2_upstream", bytes([which | flags, 0x80, 0]) + frames)
        if len(frames) < 4096:
            write("h2_upstream", bytes([(i * 3 & 7) | flags, (i * 13) & 0x7f, 0]) + frames)
    for how in range(32):
        write("h2_upstream", bytes([0x20 | (how & 0xb), 0x80, how]) + h2_frame(0, 0x1, 1,
                                                                         b"hello"))


# ---- redis_reply: byte 0 = where the input is cut in two, then RESP bytes ----

REPLIES = [
    b"*5\r\n:1\r\n:4\r\n:60000000\r\n:0\r\n:0\r\n",
    b"*5\r\n:0\r\n:0\r\n:60000000\r\n:1500000\r\n:0\r\n",
    b"*5\r\n:1\r\n:0\r\n:1000\r\n:0\r\n:250000\r\n",
    b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
    b"-ERR Error running script\r\n",
    b"$40\r\n" + b"a" * 40 + b"\r\n",
    b"+OK\r\n+PONG\r\n",
    b"*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n",
    b"*5\r\n:1\r\n$1\r\n2\r\n:3\r\n:4\r\n:5\r\n",
    b"*5\r\n:1\r\n:-1\r\n:3\r\n:4\r\n:5\r\n",
    b"*5\r\n:9223372036854775807\r\n:1\r\n:1\r\n:1\r\n:1\r\n",
    b"*5\r\n:1\r\n*-1\r\n:1\r\n:1\r\n:1\r\n",
    b"*5\r\n*5\r\n:1\r\n:1\r\n:1\r\n:1\r\n:1\r\n:1\r\n:1\r\n:1\r\n:1\r\n",
    b"$-1\r\n*-1\r\n*0\r\n",
]


def redis_seeds():
    for r in REPLIES:
        write("redis_reply", b"\xff" + r)
        write("redis_reply", b"\x40" + r)


# ---- parsers: byte 0 = the parser (enum parser in fuzz_parsers.c), then its input ----

P_DURATION, P_SIZE, P_RATE, P_SOCKADDR, P_CIDR, P_IP, P_UPSTREAM_URL, P_REDIS_URL, \
    P_EXPAND, P_JSON, P_PATH, P_HOST = range(12)

PARSERS_BY_TEST = {
    "test_config_parse.c": [P_DURATION, P_SIZE, P_RATE, P_SOCKADDR, P_EXPAND],
    "test_config_errors.c": [P_UPSTREAM_URL, P_REDIS_URL, P_RATE, P_DURATION],
    "test_config_load.c": [P_UPSTREAM_URL, P_REDIS_URL, P_EXPAND],
    "test_cidr.c": [P_CIDR, P_IP],
    "test_client_ip.c": [P_IP, P_CIDR],
    "test_json.c": [P_JSON],
    "test_normalize.c": [P_PATH, P_HOST],
    "test_route_match.c": [P_PATH, P_HOST],
}

PARSER_VALUES = {
    P_DURATION: [b"250ms", b"2s", b"5m", b"1h", b"1d", b"0s", b"18446744073709551615d"],
    P_SIZE: [b"512", b"16k", b"1m", b"1g", b"0", b"17179869184g"],
    P_RATE: [b"100/s", b"5/1m", b"1000/h", b"20/10s", b"10/250ms", b"1/0s"],
    P_SOCKADDR: [b"0.0.0.0:8080", b"[::1]:9901", b"unix:/run/sluice.sock", b"localhost:1"],
    P_CIDR: [b"10.0.0.0/8", b"::1", b"2001:db8::/32", b"::ffff:10.0.0.0/104"],
    P_IP: [b"192.0.2.1", b"::ffff:1.2.3.4", b"fe80::1%eth0"],
    P_UPSTREAM_URL: [b"http://127.0.0.1:3000", b"http://[::1]/", b"unix:/tmp/app.sock"],
    P_REDIS_URL: [b"redis://127.0.0.1:6379/0", b"redis://user:p%40ss@localhost:1/15",
                  b"unix:/run/redis.sock?db=3"],
    P_EXPAND: [b"${SLUICE_FUZZ_A}", b"${UNSET:-x}", b"${SLUICE_FUZZ_NESTED}", b"${"],
    P_JSON: [b"a\"b\\c\x01", "é€😀".encode(), b"\xc3\x28\xed\xa0\x80"],
    P_PATH: [b"/api/./x/../%6Cogin?q", b"http://h/p", b"*", b"//a//b/"],
    P_HOST: [b"API.example.com.:8080", b"[::1]:80", b"user@h"],
}


def parser_seeds():
    for name, parsers in PARSERS_BY_TEST.items():
        path = ROOT / "tests" / "unit" / name
        if not path.exists():
            continue
        for s in c_string_runs(path):
            # Values, not the tests' messages and format strings.
            if 0 < len(s) < 100 and b"%" not in s and s.count(b" ") < 2:
                for p in parsers:
                    write("parsers", bytes([p]) + s)
    for p, values in PARSER_VALUES.items():
        for v in values:
            write("parsers", bytes([p]) + v)


# ---- rls ----

def rls_seeds():
    """ShouldRateLimit bodies for fuzz_rls: the requests of the rls integration tests, built
    by their own encoder, after fuzz_rls's option byte."""
    import sys
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from rls_support import descriptor, framed, rate_limit_request
    requests = [
        rate_limit_request("d", [[("a", "x")]]),
        rate_limit_request("d", [[("a", "v")], [("a", "x")]], hits_addend=2),
        rate_limit_request("d", [[("w", "x1y")], [("p", "prefix")], [("n", "1"), ("m", "2")]]),
        rate_limit_request("d", [[("n", "1"), ("q", "2")], [("u", "1")], [("z", "1")]]),
        rate_limit_request("d", [descriptor([("l", "1")], hits_addend=0),
                                 descriptor([("c", "1")], hits_addend=5),
                                 descriptor([("o", "1")], limit=(2, "minute"))]),
        rate_limit_request("other", [[("a", "x")]]),
        rate_limit_request("", [[("a", "x")]]),
        rate_limit_request("d", []),
    ]
    for i, r in enumerate(requests):
        write("rls", bytes([i]) + framed(r))
    write("rls", b"\x00" + framed(requests[0])[:-1])
    write("rls", b"\x03\x00\x00\x20\x00\x00")


if __name__ == "__main__":
    config_seeds()
    request_seeds()
    response_seeds()
    h2_seeds()
    h2_upstream_seeds()
    redis_seeds()
    parser_seeds()
    rls_seeds()
    for d in sorted(CORPUS.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds")
