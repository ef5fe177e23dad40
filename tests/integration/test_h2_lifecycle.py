"""The life of an HTTP/2 connection (SPEC sections 7 and 10): SIGTERM lets open streams
finish and sends GOAWAY, with shutdown.drain_delay too; client.idle_timeout ends a
connection with no open stream (PING does not keep it); a stream the client resets while
the upstream works is let go, and the next stream is served."""
import signal
import threading
import time

from conftest import get, http, request, wait_until
from h2_support import NO_ERROR, H2Conn, assert_served, h2_config


def established(local_port, remote_port):
    """True while a TCP socket 127.0.0.1:local_port -> :remote_port is ESTABLISHED."""
    want = (f"0100007F:{local_port:04X}", f"0100007F:{remote_port:04X}")
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if (fields[1], fields[2]) == want and fields[3] == "01":
                return True
    return False


class Background(threading.Thread):
    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.value, self.error = fn, None, None
        self.start()

    def run(self):
        try:
            self.value = self.fn()
        except BaseException as e:  # noqa: B902 - handed to the test thread
            self.error = e

    def result(self, timeout=15):
        self.join(timeout)
        assert not self.is_alive(), "background request did not finish"
        if self.error:
            raise self.error
        return self.value


# ---------------------------------------------------------------- shutdown

def test_sigterm_lets_open_streams_finish_then_goaway(sluice_factory, upstream):
    s = sluice_factory(h2_config(), upstream=upstream)
    with H2Conn(s.port, timeout=15) as c:
        c.handshake()
        slow = [c.request("GET", f"/sleep/1500?n={i}") for i in range(3)]
        upstream.wait_log(3)
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        # GOAWAY comes at once, while the streams are still open, and is counted.
        c.wait(lambda: c.goaways, 5, "GOAWAY")
        assert not any(st.done for st in slow), slow
        assert s.metrics().value("sluice_http2_goaways_total", reason="shutdown") == 1
        c.responses(slow, 10)
        assert [st.status for st in slow] == [200, 200, 200], slow
        assert [st.json()["target"] for st in slow] == [f"/sleep/1500?n={i}" for i in range(3)]
        c.wait_end(10)
        assert c.goaways, "closed without GOAWAY"
        code, last_id, _ = c.goaways[-1]
        assert code == NO_ERROR, c.goaway_names()
        assert last_id >= slow[-1].id, c.goaways
    assert s.stop(10) == 0
    assert time.monotonic() - t0 < 10


def test_sigterm_closes_an_idle_http2_connection_at_once(sluice_factory, upstream):
    s = sluice_factory(h2_config(), upstream=upstream)
    with H2Conn(s.port) as c:
        assert c.response(c.request("GET", "/before")).status == 200
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        c.wait_end(5)
        assert [g[0] for g in c.goaways] and c.goaways[-1][0] == NO_ERROR, c.goaway_names()
    assert s.stop(10) == 0
    assert time.monotonic() - t0 < 5, "an idle HTTP/2 connection held up shutdown"


def test_drain_delay_serves_existing_http2_connections_then_goaway(sluice_factory, upstream):
    delay = 2.0
    s = sluice_factory(h2_config(extra=f"shutdown:\n  drain_delay: {int(delay * 1000)}ms\n"),
                       upstream=upstream)
    # An HTTP/1.1 request in flight through the whole delay and beyond keeps the process
    # (and its admin listener) up until the test has read the metrics.
    long = Background(lambda: http(s.port, request("GET", f"/sleep/{int(delay * 1000) + 5000}"),
                                   timeout=15))
    upstream.wait_log(1)
    with H2Conn(s.port, timeout=10) as c:
        assert c.response(c.request("GET", "/before")).status == 200
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        wait_until(lambda: get(s.admin_port, "/readyz").status == 503, 1, 0.01,
                   "/readyz to fail at once")
        # The connection is in use during the delay (a PING, as clients send to keep a
        # connection warm), and the client's next request on it is served.
        c.ping()
        c.wait(lambda: c.ping_acks, 2, "the PING's ACK")
        during = c.response(c.request("GET", "/during"))
        assert during.status == 200, during
        assert time.monotonic() - t0 < delay, "the delay was over before the stream was served"
        # And so is a new connection.
        assert_served(s.port, "/new-connection")
        c.wait(lambda: c.goaways, delay + 5, "GOAWAY")
        assert c.goaways[-1][0] == NO_ERROR, c.goaway_names()
        assert c.goaways[-1][1] >= during.id
        wait_until(lambda: s.metrics().value("sluice_http2_goaways_total", reason="shutdown") >= 1,
                   2, 0.05, "the GOAWAY to be counted as reason shutdown")
        c.wait_end(5)
    assert long.result().status == 200
    assert s.stop(15) == 0


# ---------------------------------------------------------------- idle connections

def test_idle_connection_gets_goaway_after_idle_timeout(sluice_factory, upstream):
    s = sluice_factory(h2_config(idle_timeout="1s"), upstream=upstream)
    with H2Conn(s.port, timeout=10) as c:
        assert c.response(c.request("GET", "/once")).status == 200
        t0 = time.monotonic()
        took = c.wait_end(8)
        assert 0.7 < took < 5, f"closed {took:.2f}s after the last stream, idle_timeout 1s"
        assert c.goaways, "closed without GOAWAY"
    assert time.monotonic() - t0 < 6
    wait_until(lambda: s.metrics().value("sluice_http2_goaways_total", reason="idle") == 1, 3,
               0.05, "the GOAWAY to be counted as reason idle")


def test_pings_do_not_keep_an_idle_connection_open(sluice_factory, upstream):
    s = sluice_factory(h2_config(idle_timeout="1s"), upstream=upstream)
    with H2Conn(s.port, timeout=10) as c:
        assert c.response(c.request("GET", "/once")).status == 200
        t0 = next_ping = time.monotonic()
        while not c.closed and time.monotonic() - t0 < 8:
            if time.monotonic() >= next_ping:  # five a second, far from a flood
                c.ping()
                next_ping += 0.2
            c.pump(max(0.01, next_ping - time.monotonic()))
        assert c.closed, "PING kept an idle connection open for 8 s"
        assert c.ping_acks > 0
        assert time.monotonic() - t0 < 5
        assert c.goaway_names() == ["NO_ERROR"], c.goaways
    wait_until(lambda: s.metrics().value("sluice_http2_goaways_total", reason="idle") == 1, 3,
               0.05, "the GOAWAY to be counted as reason idle")


HELD = """\
  - name: held
    match:
      path_prefix: "/held"
    limits:
      - name: spaced
        algorithm: leaky_bucket
        rate: 1/2500ms
        burst: 2
        key: route
  - name: all
    match:
      path_prefix: "/"
    limits: []
"""


def test_a_stream_waiting_for_the_upstream_is_not_idle(sluice_factory, upstream):
    # idle_timeout is for connections with nothing to do; a slow upstream has upstream.timeout.
    s = sluice_factory(h2_config(idle_timeout="1s"), upstream=upstream)
    with H2Conn(s.port, timeout=10) as c:
        st = c.response(c.request("GET", "/sleep/2500"), 8)
        assert st.status == 200 and st.json()["target"] == "/sleep/2500", st
        assert not c.goaways, c.goaway_names()


def test_a_stream_held_by_a_leaky_bucket_is_not_idle(sluice_factory, upstream):
    s = sluice_factory(h2_config(routes=HELD, idle_timeout="1s"), upstream=upstream)
    with H2Conn(s.port, timeout=10) as c:
        assert c.response(c.request("GET", "/held/1")).status == 200
        st = c.response(c.request("GET", "/held/2"), 8)
        assert st.status == 200 and st.elapsed > 2, st
        assert not c.goaways, c.goaway_names()


# ---------------------------------------------------------------- client resets

def test_reset_stream_waiting_for_the_upstream_is_let_go(sluice_factory, upstream):
    s = sluice_factory(h2_config(workers=1), upstream=upstream)
    with H2Conn(s.port, timeout=10) as c:
        slow = c.request("GET", "/sleep/3000")
        entry = upstream.wait_log(1)[0]
        c.rst(slow)
        t0 = time.monotonic()
        nxt = c.response(c.request("GET", "/next"))
        assert nxt.status == 200 and nxt.json()["target"] == "/next", nxt
        assert time.monotonic() - t0 < 2, "the next stream waited for the cancelled one"
        assert slow.status is None, "an answer came on the reset stream"

        # The upstream connection of the reset stream is closed, or, once the upstream has
        # answered, back in the pool: two concurrent streams then use the pooled
        # connections and one of them is it.
        def freed():
            if not established(entry["peer_port"], upstream.port):
                return "closed"
            if time.monotonic() - t0 < 3.5:
                return None
            upstream.clear_log()
            pair = c.responses([c.request("GET", "/reuse/a"), c.request("GET", "/reuse/b")])
            assert [st.status for st in pair] == [200, 200], pair
            ids = {e["conn_id"] for e in upstream.log()}
            return "reused" if entry["conn_id"] in ids else None
        how = wait_until(freed, 8, 0.05, "the reset stream's upstream connection to be freed")
        print(f"the reset stream's upstream connection was {how}")
        assert how in ("closed", "reused")
        assert not c.goaways
    assert_served(s.port)


def test_reset_stream_during_a_large_download_leaves_the_connection_usable(sluice_factory, upstream):
    s = sluice_factory(h2_config(), upstream=upstream)
    with H2Conn(s.port, timeout=10) as c:
        big = c.request("GET", f"/stream/{256 << 20}")
        c.wait(lambda: len(big.body) > (1 << 20), 10, "the download to start")
        c.rst(big)
        for i in range(3):
            st = c.response(c.request("GET", f"/after/{i}"))
            assert st.status == 200 and st.json()["target"] == f"/after/{i}", st
        assert not c.goaways
    wait_until(lambda: s.metrics().value("sluice_connections_active") == 0, 5, 0.05,
               "the connection to be released")
