"""Disconnects, shutdown, reload (SPEC section 7) and the access log (section 9)."""
import json
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import Client, base_config, can_connect, http, request, wait_until

MIB = 1024 * 1024


def healthy(port, timeout=1.2):
    t0 = time.monotonic()
    resp = http(port, request("GET", "/healthy"))
    assert resp.status == 200 and resp.json()["target"] == "/healthy", resp
    assert time.monotonic() - t0 < timeout, "a healthy request was held up"


class Background:
    """Runs fn() in a thread; result() returns its value or re-raises its exception."""

    def __init__(self, fn):
        self.value = self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.value = fn()
        except BaseException as e:  # noqa: B902 - handed to the test thread
            self.error = e

    def result(self, timeout=10):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "background request did not finish"
        if self.error:
            raise self.error
        return self.value


# ---------------------------------------------------------------- client disconnects

def disconnect_mid_head(s):
    c = Client(s.port)
    c.send(b"GET /half HTTP/1.1\r\nHost: x\r\nX-Incompl")
    c.close()


def disconnect_mid_body(s):
    c = Client(s.port)
    c.send(request("POST", "/upload", [("Content-Length", str(MIB))]) + b"x" * (100 * 1024))
    s.upstream.wait_log(1)
    c.abort()


def disconnect_waiting_for_upstream(s):
    c = Client(s.port)
    c.send(request("GET", "/sleep/1500"))
    s.upstream.wait_log(1)
    c.close()


def disconnect_mid_download(s):
    c = Client(s.port)
    c.send(request("GET", f"/stream/{256 * MIB}"))
    assert c.read_head().status == 200
    got = len(c.buf)
    while got < MIB:
        got += len(c.sock.recv(1 << 20))
    c.abort()


def disconnect_mid_upload_chunked(s):
    c = Client(s.port)
    c.send(request("POST", "/upload", [("Transfer-Encoding", "chunked")]) + b"4000\r\n" + b"y" * 5000)
    s.upstream.wait_log(1)
    c.close()


STAGES = {
    "mid-head": disconnect_mid_head,
    "mid-body": disconnect_mid_body,
    "mid-chunked-body": disconnect_mid_upload_chunked,
    "waiting-for-upstream": disconnect_waiting_for_upstream,
    "mid-download": disconnect_mid_download,
}


@pytest.mark.parametrize("stage", STAGES.values(), ids=STAGES.keys())
def test_client_disconnect_then_healthy(proxy, stage):
    stage(proxy)
    # Immediately, and again after sluice noticed, with both fresh and reused upstream
    # connections: a half-used upstream connection must never be handed out again.
    healthy(proxy.port)
    wait_until(lambda: proxy.metrics().value("sluice_connections_active") == 0, 5, 0.02,
               "sluice to notice the disconnects")
    with Client(proxy.port) as c:
        for i in range(5):
            resp = c.exchange(request("GET", f"/after/{i}"))
            assert resp.json()["target"] == f"/after/{i}"
    for e in proxy.upstream.log():
        if e["target"] in ("/upload", "/half"):
            assert not e["body_complete"] or e["body_length"] == 0, e
    assert proxy.alive()


def test_disconnects_release_connections(proxy):
    for stage in STAGES.values():
        stage(proxy)
        proxy.upstream.clear_log()

    def settled():
        return proxy.metrics().value("sluice_connections_active") == 0
    wait_until(settled, 5, 0.1, "sluice_connections_active to return to 0")
    accepted = proxy.metrics().value("sluice_connections_accepted_total")
    assert accepted >= len(STAGES)


# ---------------------------------------------------------------- shutdown

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_finishes_in_flight_request(proxy, sig):
    bg = Background(lambda: http(proxy.port, request("GET", "/sleep/1500")))
    proxy.upstream.wait_log(1)
    t0 = time.monotonic()
    proxy.signal(sig)
    # It stops accepting promptly, while the request is still in flight.
    wait_until(lambda: not can_connect(proxy.port), 1.0, 0.02, "the listener to close")
    resp = bg.result()
    assert resp.status == 200
    assert resp.json()["target"] == "/sleep/1500"
    assert proxy.stop(timeout=10) == 0
    assert time.monotonic() - t0 < 10


def test_shutdown_does_not_wait_for_idle_keepalive(proxy):
    with Client(proxy.port) as c:
        assert c.exchange(request("GET", "/ka")).status == 200
        t0 = time.monotonic()
        proxy.signal(signal.SIGTERM)
        assert proxy.stop(timeout=10) == 0
        assert time.monotonic() - t0 < 5, "an idle keep-alive connection held up shutdown"


def test_shutdown_waits_at_most_ten_seconds(sluice_factory, upstream):
    s = sluice_factory(base_config(upstream_timeout="60s"), upstream=upstream)
    c = Client(s.port, timeout=20)
    c.send(request("GET", "/sleep/30000"))
    upstream.wait_log(1)
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    assert s.stop(timeout=15) == 0
    elapsed = time.monotonic() - t0
    assert 9 < elapsed < 13, f"drain took {elapsed:.1f}s, expected 10"
    c.close()


def test_second_instance_on_the_same_port_refuses_to_start(proxy, sluice_binary):
    # SO_REUSEPORT would let it share the port and split traffic and limits unnoticed.
    second = subprocess.run([sluice_binary, "-c", proxy.config_path], capture_output=True,
                            timeout=10)
    assert second.returncode == 1
    assert f"127.0.0.1:{proxy.port}: Address already in use" in second.stderr.decode()
    assert http(proxy.port, request("GET", "/after")).status == 200


# ---------------------------------------------------------------- reload

def new_stderr(s, since):
    return s.stderr_text()[since:]


def test_reload_with_broken_file_keeps_serving(proxy):
    since = len(proxy.stderr_text())
    proxy.reload("listen: [this is not\n  valid: yaml\nroutes: {", raw=True)
    wait_until(lambda: proxy.config_path in new_stderr(proxy, since) or
               proxy.config_path.rsplit("/", 1)[1] in new_stderr(proxy, since),
               5, 0.05, "the reload error naming the file on stderr")
    assert proxy.alive()
    for _ in range(5):
        healthy(proxy.port)
    wait_until(lambda: proxy.metrics().value("sluice_config_reloads_total", result="failure") == 1,
               2, 0.05, "the failed reload to be counted")
    assert proxy.metrics().value("sluice_config_reloads_total", result="success") == 0


def test_reload_with_invalid_values_keeps_serving(proxy):
    since = len(proxy.stderr_text())
    bad = base_config().replace('path_prefix: "/"', 'path_prefix: "/"\n    unknown_key: 1')
    proxy.reload(bad)
    wait_until(lambda: "unknown_key" in new_stderr(proxy, since), 5, 0.05,
               "the reload error naming the key")
    healthy(proxy.port)


LIMITED_ROUTE = base_config().replace("    limits: []", """\
    limits:
      - name: two_per_minute
        algorithm: fixed_window
        rate: 2/1m
        key: route""")


def test_reload_with_good_file_applies_it(proxy):
    for _ in range(5):
        healthy(proxy.port)
    proxy.reload(LIMITED_ROUTE)

    def limited():
        resp = http(proxy.port, request("GET", "/after-reload"))
        assert resp.status in (200, 429), resp
        return resp if resp.status == 429 else None
    resp = wait_until(limited, 5, 0.05, "the reloaded limit to answer 429")
    body = resp.json()
    assert body["error"] == "rate_limited" and body["route"] == "all"
    assert body["limit"] == "two_per_minute"
    assert proxy.alive()
    wait_until(lambda: proxy.metrics().value("sluice_config_reloads_total", result="success") == 1,
               2, 0.05, "the reload to be counted")


def test_reload_switches_upstream_and_in_flight_finishes(proxy, upstream_factory):
    first, second = proxy.upstream, upstream_factory()
    bg = Background(lambda: http(proxy.port, request("GET", "/sleep/1000")))
    first.wait_log(1)
    text = open(proxy.config_path).read().replace(first.url, second.url)
    proxy.reload(text, raw=True)

    def moved():
        http(proxy.port, request("GET", "/probe"))
        return second.log()
    wait_until(moved, 5, 0.05, "requests to reach the new upstream")
    resp = bg.result()
    assert resp.status == 200 and resp.json()["target"] == "/sleep/1000"
    first.clear_log()
    for _ in range(5):
        healthy(proxy.port)
    assert first.log() == []


# ---------------------------------------------------------------- access log

FIELDS = {"ts", "client", "method", "path", "status", "route", "decision", "bytes_in",
          "bytes_out", "duration_ms", "upstream_ms", "proto"}
DECISIONS = {"allowed", "limited", "shadow_limited", "exempt", "unmatched", "store_error"}
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$")


def parse_lines(lines):
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError as e:
            pytest.fail(f"access log line is not JSON ({e}): {line!r}")
    return out


def test_access_log_fields(proxy):
    with Client(proxy.port) as c:
        c.exchange(request("GET", "/a/b?x=1"))
        c.exchange(request("POST", "/upload", body=b"y" * 1000))
        c.exchange(request("HEAD", "/h"))
        c.exchange(request("GET", "/status/404"))
    http(proxy.port, request("GET", "/old", version="HTTP/1.0", host=None))
    entries = parse_lines(proxy.wait_access_log(5))
    assert len(entries) == 5
    for e in entries:
        assert FIELDS <= set(e), f"missing {FIELDS - set(e)} in {e}"
        assert RFC3339_MS.match(e["ts"]), e["ts"]
        assert e["client"] == "127.0.0.1"
        assert e["route"] == "all"
        assert e["decision"] in DECISIONS
        for k in ("status", "bytes_in", "bytes_out"):
            assert isinstance(e[k], int) and e[k] >= 0, (k, e)
        for k in ("duration_ms", "upstream_ms"):
            assert isinstance(e[k], (int, float)) and e[k] >= 0, (k, e)
    # Another connection may land on another worker, whose log lines go out on their own.
    (old,) = [e for e in entries if e["path"] == "/old"]
    assert old["proto"] == "1.0"
    entries = [e for e in entries if e is not old]
    by_method = [(e["method"], e["status"]) for e in entries]
    assert by_method == [("GET", 200), ("POST", 200), ("HEAD", 200), ("GET", 404)]
    assert [e["proto"] for e in entries] == ["1.1"] * 4
    assert entries[0]["path"] in ("/a/b", "/a/b?x=1")
    assert entries[1]["bytes_in"] >= 1000
    assert entries[0]["bytes_out"] > 0


def test_access_log_timing(proxy):
    http(proxy.port, request("GET", "/sleep/300"))
    (e,) = parse_lines(proxy.wait_access_log(1))
    assert 250 <= e["upstream_ms"] <= e["duration_ms"] < 5000, e


def test_access_log_escapes_attacker_strings(proxy):
    targets = [
        '/q"uote\\back?x="1"&y=</script>',
        "/ctl\x01\x1f\x7f?z=\x01",
        "/utf8-\xc3\xa9-and-raw-\xff\xfe",
        '/inject"}\n{"status":999',
    ]
    for t in targets:
        try:
            http(proxy.port, request("GET", t))
        except (EOFError, ConnectionResetError, ValueError):
            pass  # refusing such a request is fine; logging it wrongly is not
    healthy(proxy.port)
    wait_until(lambda: any(b'"/healthy"' in l for l in proxy.access_log_raw()), 5, 0.02,
               "the healthy request in the access log")
    entries = parse_lines(proxy.access_log())  # each line is UTF-8 JSON, whatever the bytes were
    assert all(e.get("status") != 999 for e in entries)
    quoted = [e for e in entries if e["status"] == 200 and "uote" in e["path"]]
    for e in quoted:
        assert e["path"].startswith('/q"uote\\back')


def test_access_log_records_errors(sluice_factory, upstream, free_port):
    s = sluice_factory(base_config(max_header_bytes="1k"), upstream=f"http://127.0.0.1:{free_port()}")
    http(s.port, request("GET", "/no-upstream"))
    http(s.port, request("GET", "/", [("X-Big", "a" * 2000)]))
    statuses = sorted(e["status"] for e in parse_lines(s.wait_access_log(2)))
    assert statuses == [431, 502]
