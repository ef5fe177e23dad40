"""Redis over TLS where it must fail, and a server that lies about its replies (SPEC.md
sections 5 and 11): a certificate that does not name the server or is not signed by the CA
sluice trusts, a server asking for a client certificate, a CA bundle that is not there, and a
reply announcing two billion elements. Each failure is a connection failure: logged with
its reason, failure_mode answers, nothing hangs, and sluice exits 0 with no sanitizer
report. (The other Redis tests run over TLS too, with SLUICE_REDIS_TLS=1.)"""
import re
import select
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import get, pick_port, wait_until
from harness_procs import REDIS_TLS, Redis
from redis_support import redis_config, route, wait_connected
from tls_support import redis_tls_args, tls_files

pytestmark = pytest.mark.skipif(REDIS_TLS, reason="runs once, in the plain run: it makes its "
                                                  "own TLS servers")

SLACK = 1.5


def config(url, failure_mode="closed", tls=None, timeout="200ms"):
    routes = route("r", [dict(name="all", algorithm="fixed_window", rate="100000/1m",
                              key="route")], prefix="/")
    text = redis_config(url, routes, failure_mode=failure_mode, timeout=timeout)
    if tls is not None:
        text = text.replace("\nredis:\n", "\nredis:\n  tls: {%s}\n" % tls, 1)
    return text


@pytest.fixture
def tls_redis(tmp_path):
    """start(auth_clients="no") -> a redis-server serving TLS only with the test CA's
    certificate for 127.0.0.1 and localhost."""
    started = []

    def start(auth_clients="no"):
        port = pick_port()
        r = Redis(str(tmp_path), port=port,
                  tls_args=redis_tls_args(tls_files(), port, auth_clients)).start()
        started.append(r)
        return r
    yield start
    for r in started:
        r.stop()


def answered_in_time(s, want, timeout_s):
    start = time.monotonic()
    status = get(s.port, "/").status
    return status == want and time.monotonic() - start < timeout_s + SLACK


def test_verified_connection(sluice_factory, upstream, tls_redis):
    redis = tls_redis()
    t = tls_files()
    s = sluice_factory(config(f"rediss://localhost:{redis.port}/0", tls=f'ca: "{t.ca}"'),
                       upstream=upstream)
    wait_connected(s)
    assert get(s.port, "/").status == 200
    assert redis.command("GET", "sluice:r:all:fw:r") is not None
    assert re.search(rf"redis \(worker \d\): connected to localhost:{redis.port}", s.stderr_text())


@pytest.mark.parametrize("tls", ['server_name: "redis.example"', "other"])
def test_unverified_server_fails_the_store(sluice_factory, upstream, tls_redis, tls):
    """A certificate for another name, or from a CA sluice does not trust: no connection,
    failure_mode (closed: 503) within the timeout, the reason in the log."""
    redis = tls_redis()
    t = tls_files()
    tls = f'ca: "{t.other_ca}"' if tls == "other" else f'ca: "{t.ca}", {tls}'
    s = sluice_factory(config(f"rediss://127.0.0.1:{redis.port}/0", tls=tls), upstream=upstream)
    wait_until(lambda: "certificate verify failed" in s.stderr_text(), 10, 0.05,
               "the verification failure in the log")
    for _ in range(3):
        assert answered_in_time(s, 503, 0.2)
    m = s.metrics()
    assert m.value("sluice_redis_connected") == 0
    assert m.value("sluice_store_errors_total", store="redis", kind="connection") >= 3
    line = next(l for l in s.stderr_text().splitlines() if "certificate verify failed" in l)
    assert re.search(rf"redis \(worker \d\): 127\.0\.0\.1:{redis.port}: cannot connect: TLS: ",
                     line), line


def test_verify_false_accepts_any_certificate(sluice_factory, upstream, tls_redis):
    redis = tls_redis()
    t = tls_files()
    s = sluice_factory(config(f"rediss://127.0.0.1:{redis.port}/0",
                              tls=f'ca: "{t.other_ca}", verify: false'), upstream=upstream)
    wait_connected(s)
    assert get(s.port, "/").status == 200


def test_client_certificate(sluice_factory, upstream, tls_redis):
    """A server with --tls-auth-clients yes refuses sluice without redis.tls.cert/key, and
    takes it with them."""
    redis = tls_redis(auth_clients="yes")
    t = tls_files()
    without = sluice_factory(config(f"rediss://127.0.0.1:{redis.port}/0", tls=f'ca: "{t.ca}"'),
                             upstream=upstream)
    wait_until(lambda: re.search(r"127\.0\.0\.1:\d+: (cannot connect|connection lost): ",
                                 without.stderr_text()), 10, 0.05, "the refusal in the log")
    assert answered_in_time(without, 503, 0.2)
    assert without.metrics().value("sluice_redis_connected") == 0

    with_cert = sluice_factory(config(
        f"rediss://127.0.0.1:{redis.port}/0",
        tls=f'ca: "{t.ca}", cert: "{t.client_cert}", key: "{t.client_key}"'), upstream=upstream)
    wait_connected(with_cert)
    assert get(with_cert.port, "/").status == 200
    assert without.metrics().value("sluice_redis_connected") == 0


def test_bad_ca_path_is_a_configuration_error(sluice_binary, tmp_path):
    path = tmp_path / "sluice.yaml"
    path.write_text('upstream:\n  url: "http://127.0.0.1:9"\n'
                    'redis:\n  url: "rediss://127.0.0.1:6380/0"\n'
                    '  tls: {ca: "/nonexistent/redis-ca.pem"}\nroutes: []\n')
    out = subprocess.run([sluice_binary, "-t", "-c", str(path)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode != 0
    assert re.search(r"sluice\.yaml:5:\d+: redis\.tls\.ca: cannot read /nonexistent/redis-ca\.pem: "
                     r"No such file or directory", out.stderr), out.stderr


class TlsFront:
    """Terminates TLS (the test CA's server certificate) in front of a plain redis-server,
    and records whether each connection resumed a session. close_all() ends every
    connection, as a restarting proxy would."""

    def __init__(self, backend_port):
        t = tls_files()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(t.server_cert, t.server_key)
        self.backend_port = backend_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.resumed = []
        self.backends = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(raw,), daemon=True).start()

    def _relay(self, raw):
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        self.resumed.append(conn.session_reused)
        try:
            backend = socket.create_connection(("127.0.0.1", self.backend_port))
        except OSError:  # the test is over: redis-server is gone
            conn.close()
            return
        self.backends.append(backend)
        try:
            while True:
                ready = [conn] if conn.pending() else select.select([conn, backend], [], [])[0]
                if conn in ready:
                    data = conn.recv(65536)
                    if not data:
                        break
                    backend.sendall(data)
                if backend in ready:
                    data = backend.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            backend.close()
            try:
                conn.settimeout(1)
                conn.unwrap()  # close_notify: a clean close, which keeps the session good
            except (OSError, ssl.SSLError, ValueError):
                pass
            conn.close()

    def close_all(self):
        """Ends every connection cleanly (TLS close_notify): OpenSSL does not resume the
        session of a connection that ended in an error."""
        for b in self.backends:
            try:
                b.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.backends = []

    def close(self):
        self.close_all()
        self.sock.close()


def test_reconnect_resumes_the_session(sluice_factory, upstream, redis_server):
    """A connection lost and made again offers the session the server gave before: the
    handshake is abbreviated, and decisions go on."""
    front = TlsFront(redis_server.port)
    try:
        s = sluice_factory(config(f"rediss://127.0.0.1:{front.port}/0",
                                  tls=f'ca: "{tls_files().ca}"'), upstream=upstream)
        wait_connected(s)
        assert get(s.port, "/").status == 200
        first = len(front.resumed)
        assert first >= 2 and not any(front.resumed), front.resumed  # one a worker, full
        front.close_all()
        wait_until(lambda: len(front.resumed) >= 2 * first, 10, 0.05, "sluice to reconnect")
        wait_connected(s)
        assert get(s.port, "/").status == 200
        assert all(front.resumed[first:]), front.resumed
    finally:
        front.close()


class LyingServer:
    """Answers every read with a reply announcing 2147483647 elements, and counts
    connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stopped = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            try:
                while conn.recv(65536):
                    conn.sendall(b"*2147483647\r\n")
            except OSError:
                pass

    def close(self):
        self.stopped = True
        self.sock.close()


def test_huge_element_count_refused(sluice_factory, upstream):
    """hiredis would allocate 16 GiB for this reply (AddressSanitizer aborts on it): the
    connection is closed as a protocol error, and failure_mode (open) keeps serving."""
    liar = LyingServer()
    try:
        s = sluice_factory(config(f"redis://127.0.0.1:{liar.port}/0", failure_mode="open"),
                           upstream=upstream)
        wait_until(lambda: "protocol error: a reply of 2147483647 elements" in s.stderr_text(),
                   10, 0.05, "the refused reply in the log")
        for _ in range(5):
            assert answered_in_time(s, 200, 0.2)
        m = s.metrics()
        assert m.value("sluice_redis_connected") == 0
        assert m.value("sluice_store_errors_total", store="redis", kind="connection") >= 5
        assert liar.connections >= 2, "sluice reconnects after the refused reply"
    finally:
        liar.close()
