"""Rolling restarts (SPEC.md section 7): with shutdown.drain_delay, SIGTERM makes /readyz
fail at once while sluice keeps accepting and serving for the delay, every response
closing its connection; then it drains as without a delay."""
import signal
import threading
import time

from conftest import Client, base_config, get, request, wait_until

DELAY = 2.0
CLIENTS = 6


def drain_config(delay):
    return base_config().replace("routes:", f"shutdown:\n  drain_delay: {int(delay * 1000)}ms\nroutes:")


class KeepAliveClient(threading.Thread):
    """Sends requests back to back on a keep-alive connection, opening a new one when the
    server said Connection: close. Records (start, end, outcome, closes) per request."""

    def __init__(self, port, n):
        super().__init__(daemon=True)
        self.port, self.n = port, n
        self.stop = threading.Event()
        self.records = []

    def run(self):
        conn, i = None, 0
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                if conn is None:
                    conn = Client(self.port, timeout=5)
                resp = conn.exchange(request("GET", f"/c{self.n}/{i}"))
                closes = "close" in resp.tokens("connection")
                self.records.append((start, time.monotonic(), resp.status, closes))
                if closes:
                    conn.close()
                    conn = None
            except (OSError, EOFError) as e:
                self.records.append((start, time.monotonic(), type(e).__name__, None))
                if conn:
                    conn.close()
                conn = None
                time.sleep(0.01)
            i += 1
        if conn:
            conn.close()


def test_drain_delay_serves_and_closes_before_draining(sluice_factory, upstream):
    s = sluice_factory(drain_config(DELAY), upstream=upstream)
    clients = [KeepAliveClient(s.port, n) for n in range(CLIENTS)]
    for c in clients:
        c.start()
    wait_until(lambda: all(len(c.records) >= 5 for c in clients), what="clients running")

    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    wait_until(lambda: get(s.admin_port, "/readyz").status == 503, 0.5, 0.01,
               "/readyz to fail at once")
    # Let the whole delay pass with the clients running, and a little beyond it.
    wait_until(lambda: time.monotonic() > t0 + DELAY + 1.0, DELAY + 3, 0.05, "the delay")
    for c in clients:
        c.stop.set()
    for c in clients:
        c.join(10)
    assert s.stop(timeout=15) == 0

    records = [r for c in clients for r in c.records]
    # Before the delay ends, no request fails: none refused, none cut off.
    early = [r for r in records if r[0] < t0 + DELAY - 0.2]
    assert [r for r in early if r[2] != 200] == []
    # Requests that started after the signal was handled all close their connection, and
    # new connections kept being accepted and served through the delay.
    during = [r for r in records if t0 + 0.2 < r[0] < t0 + DELAY - 0.2]
    assert len(during) >= CLIENTS, f"only {len(during)} requests served during the delay"
    assert all(r[3] for r in during)
    # Before the signal, connections were kept alive.
    before = [r for r in records if r[1] < t0]
    assert before and not all(r[3] for r in before)

