"""The client side of the integration tests: raw HTTP requests and responses over
sockets, polling helpers, and the Prometheus text parser."""
import json
import re
import socket
import time

import pytest

TIMEOUT = 5.0  # one socket operation
READY_TIMEOUT = 10.0  # a process becoming ready


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


def metrics(admin_port, headers=()):
    resp = get(admin_port, "/metrics", headers)
    assert resp.status == 200, resp
    return parse_metrics(resp.body.decode())
