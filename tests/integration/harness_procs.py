"""The processes the integration tests start: upstream.py, sluice and redis-server."""
import functools
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

from harness_http import (READY_TIMEOUT, TIMEOUT, can_connect, http, metrics, pick_port,
                          proc_status_kib, request, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STOP_TIMEOUT = 15.0  # sluice draining (10 s) plus slack
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error", "ThreadSanitizer")


# ---------------------------------------------------------------- the upstream

class Upstream:
    """upstream.py (or another `script` of this folder taking --listen and printing
    "ready") in its own process on 127.0.0.1:port, or on a unix socket (then .port is
    None and .unix the path)."""

    def __init__(self, tmp_dir, unix=False, script="upstream.py"):
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
                [sys.executable, os.path.join(HERE, script)] + where,
                stdout=subprocess.PIPE, stderr=open(self.err_path, "w"))
            if self._wait_ready():
                break
            self.stop()
        else:
            pytest.fail(f"{script} did not start")
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

class _PortTaken(Exception):
    """sluice could not bind a port picked for it."""


@functools.lru_cache(maxsize=None)
def is_asan_binary(path):
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


class Sluice:
    """One sluice process with its configuration file, logs and ports."""

    def __init__(self, binary, tmp_dir, index, yaml_text, upstream_url, admin, env,
                 config_file=None):
        self.binary = binary
        self.tmp_dir = tmp_dir
        self.name = f"sluice{index}"
        self.port = pick_port()
        self.admin_port = self._other_port() if admin else None
        self.upstream_url = upstream_url
        # config_file: an object with .path and .write(text) that lays the file out itself
        # (a Kubernetes ConfigMap's symlinks, say); else a plain file replaced by rename.
        self.config_file = config_file
        self.config_path = config_file.path if config_file else os.path.join(
            tmp_dir, f"{self.name}.yaml")
        self.access_log_path = os.path.join(tmp_dir, f"{self.name}-access.log")
        self.stdout_path = os.path.join(tmp_dir, f"{self.name}.out")
        self.stderr_path = os.path.join(tmp_dir, f"{self.name}.err")
        self.env = env
        self.admin_token = None  # sent as "Authorization: Bearer" by metrics() when set
        self.proc = None
        self.exit_code = None
        self.terminating = False
        self.write_config(yaml_text)

    def _other_port(self):
        """A free port other than self.port (the kernel may hand out one port twice)."""
        while True:
            port = pick_port()
            if port != self.port:
                return port

    def render(self, yaml_text):
        """Fills {listen} {admin} {admin_port} {upstream} {access_log} {tmp}; other braces are
        left alone."""
        values = {
            "{listen}": f"127.0.0.1:{self.port}",
            "{admin}": f"127.0.0.1:{self.admin_port}" if self.admin_port else "off",
            "{admin_port}": str(self.admin_port),
            "{upstream}": self.upstream_url or "http://127.0.0.1:9",
            "{access_log}": self.access_log_path,
            "{tmp}": self.tmp_dir,
        }
        for key, value in values.items():
            yaml_text = yaml_text.replace(key, value)
        return yaml_text

    def write_config(self, yaml_text, raw=False):
        if not raw:
            self.yaml_text = yaml_text
        text = yaml_text if raw else self.render(yaml_text)
        if self.config_file:
            self.config_file.write(text)
            return
        tmp = self.config_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def start(self, wait=True):
        """Starts the process; with `wait`, until it serves. A port picked free may be taken
        by another socket before sluice binds it: then new ports are picked (twice)."""
        for attempt in range(3):
            self._spawn()
            if not wait:
                return self
            try:
                self.wait_ready(port_retry=attempt < 2)
                return self
            except _PortTaken:
                self.port = pick_port()
                self.admin_port = self._other_port() if self.admin_port else None
                self.write_config(self.yaml_text)
        return self

    def _spawn(self):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        env.update(self.env or {})
        self.proc = subprocess.Popen([self.binary, "-c", self.config_path], env=env,
                                     stdout=open(self.stdout_path, "wb"),
                                     stderr=open(self.stderr_path, "wb"), cwd=self.tmp_dir)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=READY_TIMEOUT, port_retry=False):
        def ready():
            if not self.alive():
                if port_retry and "Address already in use" in self.stderr_text():
                    raise _PortTaken()
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

    def admin_headers(self):
        """The Authorization header for admin.token, when the test set self.admin_token."""
        return [("Authorization", f"Bearer {self.admin_token}")] if self.admin_token else []

    def metrics(self):
        return metrics(self.admin_port, self.admin_headers())

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


# SLUICE_REDIS_TLS=1: every redis-server (and sentinel) of the tests serves TLS only, with
# the certificates of tls_support.py, and redis_support.redis_config() points sluice at it
# with rediss:// and redis.tls.ca, so that the same tests run over TLS (scripts/test.sh runs
# the Redis tests a second time so).
REDIS_TLS = os.environ.get("SLUICE_REDIS_TLS") == "1"


def redis_connect(port, timeout):
    """A socket to the redis-server (or sentinel) on `port`, over TLS under SLUICE_REDIS_TLS."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if REDIS_TLS:
        from tls_support import client_context, tls_files
        s = client_context(tls_files()).wrap_socket(s, server_hostname="127.0.0.1")
    return s


class Redis:
    """redis-server on 127.0.0.1:port; stop() and start() keep the port. `args` are extra
    command-line options, e.g. ("--requirepass", "secret"). `tls_args` (a list of options,
    see tls_support.redis_tls_args) serves TLS only; None: as SLUICE_REDIS_TLS says."""

    def __init__(self, tmp_dir, args=(), port=None, tls_args=None):
        self.tmp_dir = tmp_dir
        self.port = port or pick_port()
        self.args = list(args)
        self.proc = None
        if tls_args is None and REDIS_TLS:
            from tls_support import redis_tls_args, tls_files
            tls_args = redis_tls_args(tls_files(), self.port)
        self.tls_args = tls_args

    def start(self):
        listen = self.tls_args if self.tls_args else ["--port", str(self.port)]
        self.proc = subprocess.Popen(
            ["redis-server", *listen, "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.tmp_dir] + self.args,
            stdout=open(os.path.join(self.tmp_dir, f"redis-{self.port}.log"), "ab"),
            stderr=subprocess.STDOUT)

        def pong():
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited with {self.proc.returncode}")
            try:
                return self.command("PING") == "PONG"
            except OSError:
                return False
            except RuntimeError as e:  # up, but wants AUTH (--requirepass)
                return str(e).startswith("NOAUTH")
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

    def command(self, *args, timeout=2):
        """Runs one command; returns str, int, None, list, or raises RuntimeError."""
        if self.tls_args and not REDIS_TLS:
            from tls_support import client_context, tls_files
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
            s = client_context(tls_files()).wrap_socket(raw, server_hostname="127.0.0.1")
        else:
            s = redis_connect(self.port, timeout)
        with s:
            s.sendall(resp_command(*args))
            return _resp_read(s.makefile("rb"))

    @property
    def url(self):
        return f"{'rediss' if self.tls_args else 'redis'}://127.0.0.1:{self.port}/0"


def resp_command(*args):
    """One command in the Redis protocol (RESP), for tests that drive a raw socket."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


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


@functools.lru_cache(maxsize=None)
def redis_version():
    """redis-server's version as a tuple of ints, e.g. (7, 0, 15)."""
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def redis_debug_args():
    """Options that let local clients run DEBUG (refused by default since Redis 7)."""
    return ["--enable-debug-command", "local"] if redis_version() >= (7, 0, 0) else []
