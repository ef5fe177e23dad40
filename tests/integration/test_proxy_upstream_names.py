"""An upstream given by host name (SPEC.md section 2: upstream.url is host:port), as
compose and Kubernetes services are reached: looked up without blocking a worker, reused
while it answers, and counted as kind="resolve" when the name does not resolve."""
import os
import socket
import time

import pytest

from conftest import Client, base_config, http, request

TEST_NAME = "sluice-upstream-test.internal"


def loopback_name():
    """A name that resolves to 127.0.0.1 through /etc/hosts: the machine's own host name
    when it does, else one added to /etc/hosts for the test (root only)."""
    own = socket.gethostname()
    try:
        if "127.0.0.1" in {a[4][0] for a in socket.getaddrinfo(own, 80, socket.AF_INET)}:
            return own, None
    except socket.gaierror:
        pass
    if not os.access("/etc/hosts", os.W_OK):
        pytest.skip("no host name resolves to 127.0.0.1 and /etc/hosts is read-only")
    with open("/etc/hosts") as f:
        saved = f.read()
    with open("/etc/hosts", "a") as f:
        f.write(f"\n127.0.0.1 {TEST_NAME}\n")
    return TEST_NAME, saved


@pytest.fixture
def upstream_name():
    name, saved = loopback_name()
    yield name
    if saved is not None:
        with open("/etc/hosts", "w") as f:
            f.write(saved)


def named(config, upstream, name):
    return config.replace("{upstream}", f"http://{name}:{upstream.port}")


def test_upstream_reached_by_host_name(sluice_factory, upstream, upstream_name):
    s = sluice_factory(named(base_config(), upstream, upstream_name))
    with Client(s.port) as c:
        for i in range(5):
            resp = c.exchange(request("GET", f"/n/{i}"))
            assert resp.status == 200, resp
    assert [e["target"] for e in upstream.log()] == [f"/n/{i}" for i in range(5)]
    # Five requests on one client connection need one upstream connection per worker at
    # most: the looked-up address is reused and matched in the pool.
    assert len({e["conn_id"] for e in upstream.log()}) == 1
    m = s.metrics()
    assert m.value("sluice_upstream_errors_total") == 0


def test_unresolvable_upstream_name_is_a_502_counted_as_resolve(sluice_factory, upstream):
    s = sluice_factory(named(base_config(), upstream, "no-such-upstream.invalid"))
    t0 = time.monotonic()
    resp = http(s.port, request("GET", "/x"))
    elapsed = time.monotonic() - t0
    # connect_timeout is 1 s: the lookup gives up within it, and the worker was never
    # blocked (a second request on another connection is answered the same way).
    assert resp.status == 502, resp
    assert elapsed < 3.0
    assert http(s.port, request("GET", "/y")).status == 502
    m = s.metrics()
    assert m.value("sluice_upstream_errors_total", kind="resolve") == 2
    assert m.value("sluice_upstream_errors_total", kind="connect") == 0
