"""Fixtures and helpers for sluice's integration tests: real sockets, a real upstream
(upstream.py), real redis-server, and the sluice binary of SLUICE_BUILD_DIR.

Test modules import the helpers directly: `from conftest import Client, http, request`;
they live in harness_http.py (client side) and harness_procs.py (processes)."""
import os
import shutil

import pytest

# The helpers live in harness_http.py and harness_procs.py; test modules import them from
# here, so both are re-exported whole.
from harness_http import *  # noqa: F401,F403
from harness_http import pick_port
from harness_procs import *  # noqa: F401,F403
from harness_procs import ROOT, STOP_TIMEOUT, Redis, Sluice, Upstream


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

    def start(unix=False, script="upstream.py"):
        up = Upstream(str(tmp_path), unix, script)
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
    """start(yaml_text, upstream=None, admin=True, env=None, wait=True, config_file=None) -> Sluice.

    yaml_text may use {listen} {admin} {admin_port} {upstream} {access_log} {tmp}; upstream is an
    Upstream or a URL string; config_file (.path, .write(text)) lays out the configuration
    file instead of the default plain file. Each sluice gets SIGTERM at teardown and must exit 0
    within 15 s with no sanitizer report."""
    started = []
    request.node._sluices = started

    def start(yaml_text, upstream=None, admin=True, env=None, wait=True, config_file=None):
        url = upstream.url if isinstance(upstream, Upstream) else upstream
        s = Sluice(sluice_binary, str(tmp_path), len(started), yaml_text, url, admin, env,
                   config_file)
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


@pytest.fixture
def redis_factory(tmp_path):
    """start(args=(), port=None, start=True) -> Redis; every one is stopped at teardown."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    started = []

    def start(args=(), port=None, start=True):
        r = Redis(str(tmp_path), args, port)
        started.append(r)
        return r.start() if start else r
    yield start
    for r in started:
        r.stop()


@pytest.fixture
def redis_server(redis_factory):
    """A fresh redis-server: .port, .url, .command(...), .stop(), .start(), .restart()."""
    return redis_factory()


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
