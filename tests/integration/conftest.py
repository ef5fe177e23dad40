"""Fixtures and helpers for sluice's integration tests: real sockets, a real upstream
(upstream.py), real redis-server, and the sluice binary of SLUICE_BUILD_DIR.

Test modules import the helpers directly: `from conftest import Client, http, request`."""
import functools
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TIMEOUT = 5.0  # one socket operation
READY_TIMEOUT = 10.0  # a process becoming ready
STOP_TIMEOUT = 15.0  # sluice draining (10 s) plus slack
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error", "ThreadSanitizer")


# ---------------------------------------------------------------- pytest hooks

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running; runs only when SLUICE_SLOW=1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SLUICE_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: set SLUICE_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attaches the logs of every sluice a failed test started to its report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for s in getattr(item, "_sluices", []):
            rep.sections.append((f"sluice :{s.port} stderr", s.stderr_text()[-20000:]))
            rep.sections.append((f"sluice :{s.port} stdout", s.stdout_text()[-5000:]))


# ---------------------------------------------------------------- small utilities

def pick_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=READY_TIMEOUT, interval=0.02, what="condition"):
    """Polls pred() until it returns a true value, which is returned; fails on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def can_connect(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def proc_status_kib(pid, field):
    """A kB field (VmRSS, VmHWM) of /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss(pid):
    """Resets VmHWM so that it measures from now on; False when the kernel refuses."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- HTTP client side

def request(method="GET", target="/", headers=(), body=b"", version="HTTP/1.1",
            host="localhost", chunked=False, length=None):
    """Builds raw request bytes. Host comes first unless host is None. A body gets a
    Content-Length (or chunked framing with chunked=True) unless headers set framing."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    names = {n.lower() for n, _ in headers}
    lines += [f"{n}: {v}" for n, v in headers]
    if isinstance(body, str):
        body = body.encode()
    if chunked:
        if "transfer-encoding" not in names:
            lines.append("Transfer-Encoding: chunked")
        body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    elif not names & {"content-length", "transfer-encoding"} and (
            body or length is not None or method in ("POST", "PUT")):
        lines.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Response:
    def __init__(self, version, status, reason, headers, raw_head):
        self.version, self.status, self.reason = version, status, reason
        self.headers = headers  # [(name, value)] in order
        self.raw_head = raw_head
        self.body = b""
        self.body_length = 0
        self.interim = []  # 1xx responses that came before this one

    def header(self, name, default=None):
        values = self.header_all(name)
        return values[0] if values else default

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def tokens(self, name):
        return [t.strip().lower() for v in self.header_all(name) for t in v.split(",") if t.strip()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers!r} body={self.body[:200]!r}>"


class Client:
    """One client connection: send raw bytes, read whole responses (pipelining allowed)."""

    def __init__(self, port, host="127.0.0.1", timeout=TIMEOUT, unix=None):
        if unix:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix)
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = bytearray()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def abort(self):
        """Closes with RST rather than FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        self.sock.close()

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("connection closed by peer")
        self.buf += data

    def _read_until(self, delim, limit=1 << 20):
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise ValueError("line too long")
            start = max(0, len(self.buf) - len(delim) + 1)
            self._fill()

    def _read_body(self, n, sink):
        """Reads n bytes (None: until EOF), passing each piece to sink."""
        while n is None or n > 0:
            if not self.buf:
                try:
                    self._fill()
                except EOFError:
                    if n is None:
                        return
                    raise
            take = len(self.buf) if n is None else min(n, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            if n is not None:
                n -= take

    def read_head(self):
        head = self._read_until(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise ValueError(f"bad status line {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.strip(" \t")))
        return Response(m.group(1), int(m.group(2)), m.group(3) or "", headers, head)

    def read_response(self, method="GET", sink=None):
        """Reads one final response (1xx ones land in .interim). With sink, body pieces go
        to sink(bytes) instead of .body; .body_length counts them either way."""
        interim = []
        while True:
            resp = self.read_head()
            if 100 <= resp.status < 200 and resp.status != 101:
                interim.append(resp)
                continue
            break
        resp.interim = interim
        pieces = []

        def take(piece):
            resp.body_length += len(piece)
            (sink or pieces.append)(piece)

        te = resp.tokens("transfer-encoding")
        if method == "HEAD" or resp.status in (101, 204, 304):
            pass
        elif te and te[-1] == "chunked":
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0].strip(), 16)
                if size == 0:
                    while self._read_until(b"\r\n") != b"\r\n":
                        pass
                    break
                self._read_body(size, take)
                if self._read_until(b"\r\n") != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
        elif resp.header("content-length") is not None:
            self._read_body(int(resp.header("content-length")), take)
        else:
            self._read_body(None, take)
        if sink is None:
            resp.body = b"".join(pieces)
        return resp

    def read_responses(self, n, method="GET"):
        return [self.read_response(method) for _ in range(n)]

    def exchange(self, raw, method=None):
        self.send(raw)
        return self.read_response(method or raw.split(b" ", 1)[0].decode())

    def closed_by_peer(self, timeout=TIMEOUT):
        """True when the peer closes (FIN or RST) within timeout with nothing more sent;
        False when it stays open; raises if data arrives."""
        if self.buf:
            raise AssertionError(f"unexpected data {bytes(self.buf[:200])!r}")
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(TIMEOUT)
        if data:
            raise AssertionError(f"unexpected data {data[:200]!r}")
        return True


def http(port, raw, method=None, timeout=TIMEOUT, unix=None):
    """Sends raw request bytes on a new connection and returns the one response."""
    with Client(port, timeout=timeout, unix=unix) as c:
        return c.exchange(raw, method)


def get(port, target="/", headers=()):
    return http(port, request("GET", target, headers))


# ---------------------------------------------------------------- Prometheus metrics

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


class Samples(list):
    """[(name, {label: value}, float)] with lookups."""

    def select(self, name, **labels):
        return [s for s in self if s[0] == name and all(s[1].get(k) == v for k, v in labels.items())]

    def value(self, name, **labels):
        """Sum of the samples named `name` whose labels include `labels`; 0 when none."""
        return sum(v for _, _, v in self.select(name, **labels))


def parse_metrics(text):
    out = Samples()
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"bad exposition line {line!r}")
        labels = {}
        body = m.group(2) or ""
        pos = 0
        while pos < len(body):
            lm = _LABEL.match(body, pos)
            if not lm:
                raise ValueError(f"bad labels in {line!r}")
            labels[lm.group(1)] = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1),
                                         lm.group(2))
            pos = lm.end()
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metrics(admin_port):
    resp = get(admin_port, "/metrics")
    assert resp.status == 200, resp
    return parse_metrics(resp.body.decode())


# ---------------------------------------------------------------- the upstream

class Upstream:
    """upstream.py in its own process on 127.0.0.1:port, or on a unix socket (then
    .port is None and .unix the path)."""

    def __init__(self, tmp_dir, unix=False):
        self.tmp_dir = tmp_dir
        self.proc = None
        self.unix = None
        for attempt in range(3):
            if unix:
                self.port, self.unix = None, os.path.join(tmp_dir, f"upstream-{attempt}.sock")
                where = ["--unix", self.unix]
            else:
                self.port = pick_port()
                where = ["--listen", f"127.0.0.1:{self.port}"]
            self.err_path = os.path.join(tmp_dir, f"upstream-{self.port or attempt}.err")
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "upstream.py")] + where,
                stdout=subprocess.PIPE, stderr=open(self.err_path, "w"))
            if self._wait_ready():
                break
            self.stop()
        else:
            pytest.fail("upstream.py did not start")
        self.url = f"unix:{self.unix}" if unix else f"http://127.0.0.1:{self.port}"

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if r:
                line = self.proc.stdout.readline()
                if line.strip() == b"ready":
                    return True
                if not line:
                    return False
        return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    def _direct(self, method, target):
        return http(self.port, request(method, target, [("Connection", "close")]), unix=self.unix)

    def log(self):
        """Every request that reached the upstream since start or clear_log()."""
        return self._direct("GET", "/__log").json()

    def clear_log(self):
        self._direct("POST", "/__log/clear")

    def count(self):
        return self._direct("GET", "/count").json()["count"]

    def wait_log(self, n=1, timeout=TIMEOUT):
        """Polls until at least n requests reached the upstream; returns the log."""
        return wait_until(lambda: (lambda log: log if len(log) >= n else None)(self.log()),
                          timeout, 0.02, f"{n} request(s) at the upstream")


# ---------------------------------------------------------------- sluice

@functools.lru_cache(maxsize=None)
def is_asan_binary(path):
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


class Sluice:
    """One sluice process with its configuration file, logs and ports."""

    def __init__(self, binary, tmp_dir, index, yaml_text, upstream_url, admin, env):
        self.binary = binary
        self.tmp_dir = tmp_dir
        self.name = f"sluice{index}"
        self.port = pick_port()
        self.admin_port = pick_port() if admin else None
        self.upstream_url = upstream_url
        self.config_path = os.path.join(tmp_dir, f"{self.name}.yaml")
        self.access_log_path = os.path.join(tmp_dir, f"{self.name}-access.log")
        self.stdout_path = os.path.join(tmp_dir, f"{self.name}.out")
        self.stderr_path = os.path.join(tmp_dir, f"{self.name}.err")
        self.env = env
        self.proc = None
        self.exit_code = None
        self.terminating = False
        self.write_config(yaml_text)

    def render(self, yaml_text):
        """Fills {listen} {admin} {upstream} {access_log} {tmp}; other braces are left alone."""
        values = {
            "{listen}": f"127.0.0.1:{self.port}",
            "{admin}": f"127.0.0.1:{self.admin_port}" if self.admin_port else "off",
            "{upstream}": self.upstream_url or "http://127.0.0.1:9",
            "{access_log}": self.access_log_path,
            "{tmp}": self.tmp_dir,
        }
        for key, value in values.items():
            yaml_text = yaml_text.replace(key, value)
        return yaml_text

    def write_config(self, yaml_text, raw=False):
        text = yaml_text if raw else self.render(yaml_text)
        tmp = self.config_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def start(self, wait=True):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        env.update(self.env or {})
        self.proc = subprocess.Popen([self.binary, "-c", self.config_path], env=env,
                                     stdout=open(self.stdout_path, "wb"),
                                     stderr=open(self.stderr_path, "wb"), cwd=self.tmp_dir)
        if wait:
            self.wait_ready()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=READY_TIMEOUT):
        def ready():
            if not self.alive():
                pytest.fail(f"sluice exited with {self.proc.returncode} before it was ready:\n"
                            + self.stderr_text()[-5000:])
            if not can_connect(self.port):
                return False
            if self.admin_port is None:
                return True
            try:
                return http(self.admin_port, request("GET", "/healthz"), timeout=1).status == 200
            except (OSError, ValueError, EOFError):
                return False
        wait_until(ready, timeout, 0.02, f"sluice to listen on {self.port}")

    def stderr_text(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stdout_text(self):
        with open(self.stdout_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def sanitizer_lines(self):
        return [l for l in self.stderr_text().splitlines() if any(m in l for m in SANITIZER_MARKERS)]

    def access_log_raw(self):
        """The complete lines of the access log so far, as bytes."""
        try:
            with open(self.access_log_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        return data.split(b"\n")[:-1]

    def access_log(self):
        """The complete lines of the access log so far, unparsed; raises
        UnicodeDecodeError when a line is not UTF-8 (so not JSON)."""
        return [l.decode("utf-8") for l in self.access_log_raw()]

    def wait_access_log(self, n, timeout=TIMEOUT):
        return wait_until(lambda: (lambda ls: ls if len(ls) >= n else None)(self.access_log()),
                          timeout, 0.02, f"{n} access log line(s)")

    def metrics(self):
        return metrics(self.admin_port)

    def rss_kib(self):
        return proc_status_kib(self.pid, "VmRSS")

    def signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGINT):
            # A second one could cut the drain short; stop() will only wait.
            self.terminating = True
        self.proc.send_signal(sig)

    def reload(self, yaml_text=None, raw=False):
        if yaml_text is not None:
            self.write_config(yaml_text, raw)
        self.signal(signal.SIGHUP)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM (unless one was sent already), then waits; returns the exit code
        (None when it had to be killed)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            if not self.terminating:
                self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.exit_code = None
                return None
        if self.exit_code is None:
            self.exit_code = self.proc.returncode
        return self.exit_code


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def build_dir():
    """SLUICE_BUILD_DIR, else ./build-asan, else ./build (relative to the repository)."""
    env = os.environ.get("SLUICE_BUILD_DIR")
    candidates = [env] if env else [os.path.join(ROOT, "build-asan"), os.path.join(ROOT, "build")]
    for d in candidates:
        if os.path.isfile(os.path.join(d, "sluice")):
            return os.path.abspath(d)
    pytest.fail(f"no sluice binary in {' or '.join(candidates)}: build first")


@pytest.fixture(scope="session")
def sluice_binary(build_dir):
    return os.path.join(build_dir, "sluice")


@pytest.fixture
def free_port():
    """Returns pick_port: call free_port() for a port nothing listens on."""
    return pick_port


@pytest.fixture
def upstream_factory(tmp_path):
    started = []

    def start(unix=False):
        up = Upstream(str(tmp_path), unix)
        started.append(up)
        return up
    yield start
    for up in started:
        up.stop()


@pytest.fixture
def upstream(upstream_factory):
    """A fresh upstream.py: .port, .url, .log(), .clear_log(), .count(), .wait_log(n)."""
    return upstream_factory()


@pytest.fixture
def sluice_factory(request, sluice_binary, tmp_path):
    """start(yaml_text, upstream=None, admin=True, env=None, wait=True) -> Sluice.

    yaml_text may use {listen} {admin} {upstream} {access_log} {tmp}; upstream is an
    Upstream or a URL string. Each sluice gets SIGTERM at teardown and must exit 0
    within 15 s with no sanitizer report."""
    started = []
    request.node._sluices = started

    def start(yaml_text, upstream=None, admin=True, env=None, wait=True):
        url = upstream.url if isinstance(upstream, Upstream) else upstream
        s = Sluice(sluice_binary, str(tmp_path), len(started), yaml_text, url, admin, env)
        started.append(s)
        try:
            return s.start(wait)
        except BaseException:
            s.start_failed = True  # already reported: teardown only cleans up
            raise
    yield start
    problems = []
    for s in started:
        if s.proc is None:
            continue
        rc = s.stop()
        if getattr(s, "start_failed", False):
            continue
        if rc != 0:
            problems.append(f"{s.name} exited with {rc} (None: killed after {STOP_TIMEOUT:.0f}s)")
        bad = s.sanitizer_lines()
        if bad:
            problems.append(f"{s.name} sanitizer report:\n" + "\n".join(bad[:20]))
        if problems:
            problems.append(f"--- {s.name} stderr ---\n" + s.stderr_text()[-10000:])
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


class Redis:
    """redis-server on 127.0.0.1:port; stop() and start() keep the port."""

    def __init__(self, tmp_dir):
        self.tmp_dir = tmp_dir
        self.port = pick_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.tmp_dir],
            stdout=open(os.path.join(self.tmp_dir, f"redis-{self.port}.log"), "ab"),
            stderr=subprocess.STDOUT)

        def pong():
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited with {self.proc.returncode}")
            try:
                return self.command("PING") == "PONG"
            except OSError:
                return False
        wait_until(pong, READY_TIMEOUT, 0.02, "redis-server to answer PING")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self):
        self.stop()
        return self.start()

    def command(self, *args):
        """Runs one command; returns str, int, None, list, or raises RuntimeError."""
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(out)
            return _resp_read(s.makefile("rb"))

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"


def _resp_read(f):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode("latin-1")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RuntimeError(f"bad reply {line!r}")


@pytest.fixture
def redis_server(tmp_path):
    """A fresh redis-server: .port, .url, .command(...), .stop(), .start(), .restart()."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    r = Redis(str(tmp_path))
    r.start()
    yield r
    r.stop()


# ---------------------------------------------------------------- the base configuration

BASE_CONFIG = """\
listen: "{listen}"
workers: 2
admin:
  listen: "{admin}"
upstream:
  url: "{upstream}"
  connect_timeout: 1s
  timeout: %(upstream_timeout)s
client:
  header_timeout: %(header_timeout)s
  max_header_bytes: %(max_header_bytes)s
  max_body_bytes: %(max_body_bytes)s
access_log: "{access_log}"
log_level: info
routes:
  - name: all
    match:
      path_prefix: "/"
    limits: []
"""


def base_config(upstream_timeout="5s", header_timeout="5s", max_header_bytes="16k",
                max_body_bytes="0"):
    """The base configuration: one unlimited route, two workers, access log to a file."""
    return BASE_CONFIG % dict(upstream_timeout=upstream_timeout, header_timeout=header_timeout,
                              max_header_bytes=max_header_bytes, max_body_bytes=max_body_bytes)


@pytest.fixture
def proxy(sluice_factory, upstream):
    """sluice under the base configuration in front of a fresh upstream."""
    s = sluice_factory(base_config(), upstream=upstream)
    s.upstream = upstream
    return s
