"""HTTP/2 attacks (SPEC section 10, "Protection"): each is sent frame by frame and must end
in GOAWAY or a closed connection at a bounded cost in CPU and memory, while a well-behaved
client on another connection is served.

The figures (sluice's CPU seconds and RSS growth during the attack, how the connection
ended) are printed (pytest -s) and kept in $SLUICE_BUILD_DIR/h2_attacks.txt, one line an
attack. Bounds are generous: they must hold under AddressSanitizer on a busy 2-core
machine, and still catch a connection that runs without bound."""
import os
import threading
import time

import pytest

from conftest import is_asan_binary
from h2_attack_support import Cost, Sender, record_figures
from h2_support import (CANCEL, CONTINUATION, END_HEADERS, END_STREAM, ENHANCE_YOUR_CALM,
                        HEADERS, INITIAL_WINDOW_SIZE, MIB, PREFACE, PROTOCOL_ERROR, H2Conn,
                        assert_served, frame, h2_config, h2_get, literal_block, ping_frame,
                        request_headers, rst_frame, settings_frame)

# A short quarantine keeps freed buffers from looking like growth under ASan.
ASAN_SMALL_QUARANTINE = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1")
                         + ":quarantine_size_mb=4:thread_local_quarantine_size_kb=256"}
GOAWAY_REASONS = ("shutdown", "idle", "stalled", "enhance_your_calm", "protocol_error")


@pytest.fixture
def asan(sluice_binary):
    return is_asan_binary(sluice_binary)


def start(sluice_factory, upstream, **kw):
    """sluice for an attack, warmed up (a stream and its upstream connection) so that the
    baseline includes what any connection allocates."""
    s = sluice_factory(h2_config(**kw), upstream=upstream, env=ASAN_SMALL_QUARANTINE)
    assert_served(s.port, "/warm-up")
    assert h2_get(s.port, f"/stream/{MIB}").status == 200
    upstream.clear_log()
    s.goaways0 = goaway_counts(s)
    return s


def goaway_counts(s):
    m = s.metrics()
    return {r: m.value("sluice_http2_goaways_total", reason=r) for r in GOAWAY_REASONS}


def goaways_since(s):
    now = goaway_counts(s)
    return {r: int(now[r] - s.goaways0[r]) for r in GOAWAY_REASONS if now[r] != s.goaways0[r]}


def counted_goaways(s, c, timeout=3):
    """The GOAWAYs counted since start(), once the attacking connection's is (when it got
    one); {} when none is counted within `timeout`."""
    if not c.goaways:
        return goaways_since(s)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = goaways_since(s)
        if got:
            return got
        time.sleep(0.05)
    return {}


def attack_requests(upstream):
    """What reached the upstream since start(), the well-behaved requests (/bystander/...,
    /after-...) aside."""
    return [e["target"] for e in upstream.log()
            if not e["target"].startswith(("/bystander/", "/after-"))]


def ending(c):
    """How the attacking connection ended, as recorded: the GOAWAY codes, and close/reset."""
    codes = ",".join(c.goaway_names()) or "no GOAWAY"
    return f"{codes}, {'reset' if c.reset_by_peer else 'closed' if c.closed else 'open'}"


class Bystander(threading.Thread):
    """A well-behaved client: one request after another, each on a new connection, until
    stopped. check() asserts every one was answered 200 within `slow` seconds."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.results = []
        self.stopping = threading.Event()
        self.start()

    def run(self):
        i = 0
        while not self.stopping.is_set():
            t0 = time.monotonic()
            try:
                st = h2_get(self.port, f"/bystander/{i}")
                self.results.append((st.status, time.monotonic() - t0))
            except BaseException as e:  # noqa: B902 - reported by check()
                self.results.append((repr(e), time.monotonic() - t0))
            i += 1
            self.stopping.wait(0.05)

    def check(self, slow=5.0):
        self.stopping.set()
        self.join(15)
        assert not self.is_alive()
        assert self.results, "the well-behaved client sent nothing"
        bad = [r for r in self.results if r[0] != 200 or r[1] > slow]
        assert not bad, f"well-behaved requests failed or were slow: {bad[:5]}"
        return len(self.results), max(r[1] for r in self.results)


def attack(s, c, data, timeout=30, reading=True):
    """Sends `data` on c from a second thread; reads (or not) until the connection ends.
    Returns the Sender."""
    sender = Sender(c, data, stall=10)
    sender.start()
    if reading:
        c.wait_end(timeout)
    else:
        sender.join(timeout)
        c.wait_end(timeout)
    sender.stop()
    return sender


# ---------------------------------------------------------------- 1. rapid reset

def test_rapid_reset(sluice_factory, upstream, asan):
    n = 20000
    s = start(sluice_factory, upstream)
    streams0 = s.metrics().value("sluice_http2_streams_total")
    block = literal_block(request_headers("GET", "/rapid-reset"))
    data = PREFACE + settings_frame() + b"".join(
        frame(HEADERS, END_HEADERS | END_STREAM, sid, block) + rst_frame(sid, CANCEL)
        for sid in range(1, 2 * n, 2))
    bystander = Bystander(s.port)
    c = H2Conn(s.port, preface=False, replies=False, timeout=10)
    with Cost(s.pid) as cost:
        sender = attack(s, c, data)
    served, slowest = bystander.check()
    c.close()
    assert_served(s.port, "/after-rapid-reset")
    goaways = counted_goaways(s, c)
    streams = int(s.metrics().value("sluice_http2_streams_total") - streams0) - served - 1
    at_upstream = len(attack_requests(upstream))
    last = c.goaway[1] if c.goaway else None
    record_figures("rapid_reset", f"{cost} ended={ending(c)} last_stream_id={last} "
                   f"goaways={goaways} attack_streams_counted={streams} "
                   f"upstream_requests={at_upstream} sent={sender.sent * 100 // len(data)}% "
                   f"bystander={served} ok, slowest {slowest:.2f}s")
    assert c.goaways, f"no GOAWAY: {ending(c)}"
    assert c.goaway[0] == ENHANCE_YOUR_CALM, ending(c)
    assert goaways == {"enhance_your_calm": 1}, goaways
    # Long before 20 000 streams, and few of them reach the upstream.
    assert last is not None and last < n, last
    assert at_upstream < n // 10, at_upstream
    assert cost.cpu < (20 if asan else 5), cost
    assert cost.rss_kib < (64 if asan else 16) * 1024, cost


# ---------------------------------------------------------------- 2. CONTINUATION flood

@pytest.mark.parametrize("fragment", ["headers", "empty"])
def test_continuation_flood(sluice_factory, upstream, asan, fragment):
    frames = 100000
    s = start(sluice_factory, upstream)
    # Each CONTINUATION carries a whole header of its own, or nothing at all.
    piece = literal_block([("x-flood", "f" * 16)]) if fragment == "headers" else b""
    data = PREFACE + settings_frame() + \
        frame(HEADERS, 0, 1, literal_block(request_headers("GET", "/continuation"))) + \
        frame(CONTINUATION, 0, 1, piece) * frames
    bystander = Bystander(s.port)
    c = H2Conn(s.port, preface=False, replies=False, timeout=10)
    with Cost(s.pid) as cost:
        sender = attack(s, c, data)
    served, slowest = bystander.check()
    c.close()
    assert_served(s.port, "/after-continuation-flood")
    record_figures(f"continuation_flood_{fragment}",
                   f"{cost} ended={ending(c)} goaways={counted_goaways(s, c)} "
                   f"sent={sender.sent * 100 // len(data)}% bystander={served} ok, "
                   f"slowest {slowest:.2f}s")
    assert c.closed
    if c.goaways:
        assert c.goaway[0] in (ENHANCE_YOUR_CALM, PROTOCOL_ERROR), ending(c)
    assert attack_requests(upstream) == []
    assert cost.cpu < (10 if asan else 2), cost
    assert cost.rss_kib < (48 if asan else 8) * 1024, cost


# ---------------------------------------------------------------- 3. header lists

def test_header_lists_over_max_header_bytes(sluice_factory, upstream, asan):
    # 8 KiB of headers against max_header_bytes 4k, 200 times on one connection, each a
    # block of literals never indexed so that each one arrives whole.
    s = start(sluice_factory, upstream, max_header_bytes="4k")
    fields = [(f"x-big-{i}", "b" * 1000) for i in range(8)]
    block = literal_block(request_headers("GET", "/too-big", fields))
    assert len(block) > 8000
    bystander = Bystander(s.port)
    with H2Conn(s.port, timeout=10) as c, Cost(s.pid) as cost:
        c.handshake()
        answered = {"431": 0, "reset": 0}
        for sid in range(1, 400, 2):
            st = c.new_stream(sid)
            c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, block))
            c.response(st)
            if st.status == 431:
                answered["431"] += 1
            elif st.reset is not None:
                answered["reset"] += 1
            else:
                pytest.fail(f"stream over max_header_bytes answered {st}")
        ok = c.response(c.request("GET", "/after-big-heads"))
        assert ok.status == 200, ok
        cost.sample()
    served, slowest = bystander.check()
    record_figures("header_list_over_max", f"{cost} answers={answered} goaways={goaways_since(s)} "
                   f"bystander={served} ok, slowest {slowest:.2f}s")
    assert attack_requests(upstream) == []
    assert cost.cpu < (15 if asan else 3), cost
    assert cost.rss_kib < (32 if asan else 8) * 1024, cost


def test_huge_literal_across_continuations(sluice_factory, upstream, asan):
    # One header whose value claims 16 MiB, its bytes sent in 16 KiB CONTINUATIONs: sluice
    # must give up long before holding it.
    s = start(sluice_factory, upstream)
    value_len = 16 * MIB
    # A literal never indexed with a new name: 0x10, name, then the value's length
    # (7-bit prefix integer), then the value itself.
    head = bytes([0x10, 6]) + b"x-huge" + bytes([0x7F]) + encode_varint(value_len - 127)
    first = literal_block(request_headers("GET", "/huge")) + head
    chunk = b"h" * 16384
    data = PREFACE + settings_frame() + frame(HEADERS, 0, 1, first) + \
        frame(CONTINUATION, 0, 1, chunk) * (value_len // len(chunk))
    bystander = Bystander(s.port)
    c = H2Conn(s.port, preface=False, replies=False, timeout=10)
    with Cost(s.pid) as cost:
        sender = attack(s, c, data)
    served, slowest = bystander.check()
    c.close()
    record_figures("huge_literal", f"{cost} ended={ending(c)} goaways={counted_goaways(s, c)} "
                   f"sent={sender.sent // 1024}KiB bystander={served} ok, slowest {slowest:.2f}s")
    assert c.closed
    assert attack_requests(upstream) == []
    assert cost.rss_kib < (48 if asan else 8) * 1024, cost
    assert cost.cpu < (10 if asan else 2), cost


def encode_varint(n):
    """The continuation bytes of an HPACK integer (RFC 7541 5.1) after a full prefix."""
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# ---------------------------------------------------------------- 4. SETTINGS and PING floods

FLOODS = {
    "settings": settings_frame({INITIAL_WINDOW_SIZE: 65535}),
    "ping": ping_frame(b"floodflo"),
}


@pytest.mark.parametrize("reading", [False, True], ids=["not-reading", "reading"])
@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_control_frame_flood(sluice_factory, upstream, asan, kind, reading):
    frames = 100000
    s = start(sluice_factory, upstream, idle_timeout="1s")
    data = PREFACE + settings_frame() + FLOODS[kind] * frames
    bystander = Bystander(s.port)
    c = H2Conn(s.port, preface=False, replies=False, timeout=10)
    t0 = time.monotonic()
    with Cost(s.pid) as cost:
        sender = attack(s, c, data, timeout=30, reading=reading)
    took = time.monotonic() - t0
    served, slowest = bystander.check()
    c.close()
    assert_served(s.port, "/after-flood")
    record_figures(f"{kind}_flood_{'reading' if reading else 'not_reading'}",
                   f"{cost} ended={ending(c)} after {took:.2f}s goaways={counted_goaways(s, c)} "
                   f"sent={sender.sent * 100 // len(data)}% acks_read={c.frames_in} "
                   f"bystander={served} ok, slowest {slowest:.2f}s")
    assert c.closed
    if c.goaways:
        assert c.goaway[0] in (ENHANCE_YOUR_CALM, 0), ending(c)
    # Ended by a cap or by idle_timeout (1 s): PING and SETTINGS do not keep it open.
    assert took < 15, took
    assert cost.rss_kib < (48 if asan else 8) * 1024, cost
    assert cost.cpu < (20 if asan else 5), cost


# ---------------------------------------------------------------- 5. a reader that never opens its window

@pytest.mark.parametrize("window", ["stream", "connection"])
@pytest.mark.parametrize("streams", [1, 20])
def test_zero_window(sluice_factory, upstream, asan, window, streams):
    s = start(sluice_factory, upstream, idle_timeout="1s", upstream_timeout="30s")
    # "stream": every stream's window is 0 from the start; "connection": streams may take
    # 1 GiB but the connection's 64 KiB is never credited back.
    settings = {INITIAL_WINDOW_SIZE: 0 if window == "stream" else (1 << 30)}
    bystander = Bystander(s.port)
    c = H2Conn(s.port, settings=settings, auto_window=False, timeout=10)
    with Cost(s.pid) as cost:
        c.handshake()
        t0 = time.monotonic()
        sts = [c.request("GET", f"/stream/{256 * MIB}?n={i}") for i in range(streams)]
        c.wait(lambda: all(st.headers for st in sts), 10, "the response heads")
        assert all(st.status == 200 for st in sts), sts
        c.wait_end(15)
        took = c.t_closed - t0
    served, slowest = bystander.check()
    c.close()
    held = sum(len(st.body) for st in sts)
    record_figures(f"zero_window_{window}_{streams}_streams",
                   f"{cost} ended={ending(c)} {took:.2f}s after the requests "
                   f"goaways={counted_goaways(s, c)} body_received={held} "
                   f"bystander={served} ok, slowest {slowest:.2f}s")
    assert held <= 65535
    assert c.goaways, ending(c)
    assert counted_goaways(s, c) == {"stalled": 1}
    # After idle_timeout (1 s) with no progress; not at once, not never.
    assert 0.7 < took < 8, took
    # What sluice holds for a reader that does not read is bounded per stream, not by
    # the response's 256 MiB.
    assert cost.rss_kib < ((24 if asan else 4) + streams * (2 if asan else 1)) * 1024, cost
    assert_served(s.port, "/after-zero-window")


def test_zero_window_with_pings_is_still_stalled(sluice_factory, upstream, asan):
    # PINGs answered are not progress: only requests and DATA are.
    s = start(sluice_factory, upstream, idle_timeout="1s", upstream_timeout="30s")
    c = H2Conn(s.port, settings={INITIAL_WINDOW_SIZE: 0}, auto_window=False, timeout=10)
    with Cost(s.pid) as cost:
        c.handshake()
        t0 = time.monotonic()
        st = c.request("GET", f"/stream/{256 * MIB}")
        next_ping = t0
        while not c.closed and time.monotonic() - t0 < 10:
            if time.monotonic() >= next_ping:  # five a second, far from a flood
                c.ping()
                next_ping += 0.2
            c.pump(max(0.01, next_ping - time.monotonic()))
        took = (c.t_closed or time.monotonic()) - t0
    c.close()
    record_figures("zero_window_pinging", f"{cost} ended={ending(c)} {took:.2f}s after the "
                   f"request goaways={counted_goaways(s, c)} pings_answered={c.ping_acks}")
    assert c.closed, "PINGs kept a stalled stream's connection open for 10 s"
    assert st.status == 200 and len(st.body) == 0, st
    assert c.ping_acks > 0
    assert c.goaways and counted_goaways(s, c) == {"stalled": 1}, ending(c)
    assert 0.7 < took < 8, took
    assert cost.rss_kib < (26 if asan else 5) * 1024, cost


# ---------------------------------------------------------------- 6. slow or absent heads

SLOW_HEADS = {
    # the preface and nothing else
    "preface": PREFACE,
    "preface_settings": PREFACE + settings_frame(),
    # a stream's head begun and never finished
    "open_header_block": PREFACE + settings_frame() +
    frame(HEADERS, 0, 1, literal_block(request_headers("GET", "/never-finished"))),
}


@pytest.mark.parametrize("what", sorted(SLOW_HEADS))
def test_head_never_completed_is_closed_after_header_timeout(sluice_factory, upstream, what):
    s = start(sluice_factory, upstream, header_timeout="1s", idle_timeout="60s")
    bystander = Bystander(s.port)
    # replies=False: an ACK of the server's SETTINGS would come before the client's own
    # SETTINGS, or inside the open header block, and be a protocol error of the test's.
    c = H2Conn(s.port, preface=False, replies=False, timeout=10)
    with Cost(s.pid) as cost:
        c.send(SLOW_HEADS[what])
        took = c.wait_end(10)
    served, slowest = bystander.check()
    record_figures(f"slow_head_{what}", f"{cost} ended={ending(c)} after {took:.2f}s "
                   f"(header_timeout 1s) goaways={counted_goaways(s, c)} "
                   f"bystander={served} ok, slowest {slowest:.2f}s")
    assert 0.7 < took < 5, f"closed {took:.2f}s after {what}, header_timeout 1s"
    assert attack_requests(upstream) == []


def test_many_unfinished_heads_are_all_closed(sluice_factory, upstream, asan):
    n = 50
    s = start(sluice_factory, upstream, header_timeout="1s", idle_timeout="60s")
    bystander = Bystander(s.port)
    with Cost(s.pid) as cost:
        conns = [H2Conn(s.port, preface=False, replies=False, timeout=10) for _ in range(n)]
        t0 = time.monotonic()
        for i, c in enumerate(conns):
            c.send(PREFACE + settings_frame() +
                   frame(HEADERS, 0, 1, literal_block(request_headers("GET", f"/open/{i}"))))
        for c in conns:
            c.wait_end(10 - (time.monotonic() - t0))
        took = time.monotonic() - t0
    served, slowest = bystander.check()
    for c in conns:
        c.close()
    record_figures("slow_head_50_connections", f"{cost} all ended after {took:.2f}s "
                   f"(header_timeout 1s) goaways={goaways_since(s)} "
                   f"bystander={served} ok, slowest {slowest:.2f}s")
    assert took < 6, took
    assert all(c.goaways for c in conns), [ending(c) for c in conns if not c.goaways][:3]
    assert attack_requests(upstream) == []
    assert cost.rss_kib < (32 if asan else 8) * 1024, cost


def test_slowly_dripped_header_block_is_cut_at_header_timeout(sluice_factory, upstream):
    # One small CONTINUATION every 0.4 s: the deadline runs from the head's first byte,
    # so arriving bytes do not extend it (and 8 CONTINUATIONs, nghttp2's own cap, would
    # take 3.2 s).
    s = start(sluice_factory, upstream, header_timeout="1s", idle_timeout="60s")
    c = H2Conn(s.port, timeout=10)
    c.handshake()
    c.wait(lambda: c.settings_acks, 5, "the SETTINGS ACK")
    c.send(frame(HEADERS, 0, 1, literal_block(request_headers("GET", "/drip"))))
    t0 = next_piece = time.monotonic()
    piece = literal_block([("x-d", "d")])
    while not c.closed and time.monotonic() - t0 < 8:
        if time.monotonic() >= next_piece:
            next_piece += 0.4
            c.send(frame(CONTINUATION, 0, 1, piece))
        c.pump(max(0.01, next_piece - time.monotonic()))
    took = (c.t_closed or time.monotonic()) - t0
    record_figures("slow_head_drip", f"ended={ending(c)} after {took:.2f}s "
                   f"(header_timeout 1s) goaways={counted_goaways(s, c)}")
    assert c.closed, "a dripped header block kept the connection for 8 s"
    assert 0.7 < took < 2.8, took
    assert attack_requests(upstream) == []
    assert_served(s.port, "/after-drip")
