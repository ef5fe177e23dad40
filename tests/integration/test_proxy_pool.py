"""The upstream keep-alive pool (SPEC section 7): how many upstream connections requests
over keep-alive clients take, counted by the upstream itself."""
import os
import signal

from conftest import Client, request, wait_until

# One worker, so that one pool serves every client.
POOL_CONFIG = """\
listen: "{listen}"
workers: 1
admin:
  listen: "{admin}"
upstream:
  url: "{upstream}"
  connect_timeout: 1s
  timeout: 10s
  keepalive: %(keepalive)d
access_log: "{access_log}"
log_level: info
routes:
  - name: all
    match:
      path_prefix: "/"
    limits: []
"""


def upstream_conns(up, prefix=""):
    return {e["conn_id"] for e in up.log() if e["target"].startswith(prefix)}


def sockets_with_unread_bytes(remote_port):
    """Loopback TCP sockets connected to remote_port with bytes in their receive queue:
    responses the upstream sent that sluice has not read yet."""
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            rem_port = int(cols[2].rsplit(":", 1)[1], 16)
            rx_queue = int(cols[4].split(":")[1], 16)
            if rem_port == remote_port and rx_queue > 0:
                n += 1
    return n


def stopped(pid):
    """Every thread of pid is stopped (state T): a thread woken by SIGSTOP may otherwise
    still return from epoll_wait with whatever became ready meanwhile."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] != "T":
                return False
    return True


def test_sequential_requests_from_many_clients_share_one_connection(sluice_factory, upstream):
    s = sluice_factory(POOL_CONFIG % dict(keepalive=8), upstream=upstream)
    clients = [Client(s.port) for _ in range(10)]
    try:
        for round_ in range(3):
            for i, c in enumerate(clients):
                resp = c.exchange(request("GET", f"/seq/{round_}/{i}"))
                assert resp.status == 200 and resp.json()["target"] == f"/seq/{round_}/{i}"
    finally:
        for c in clients:
            c.close()
    assert len(upstream.log()) == 30
    assert len(upstream_conns(upstream)) == 1


def test_concurrent_bursts_reuse_the_pool(sluice_factory, upstream):
    k = 8
    s = sluice_factory(POOL_CONFIG % dict(keepalive=k), upstream=upstream)
    clients = [Client(s.port) for _ in range(k)]
    try:
        for round_ in range(5):
            for i, c in enumerate(clients):
                c.send(request("GET", f"/burst/{round_}/{i}"))
            for i, c in enumerate(clients):
                assert c.read_response().json()["target"] == f"/burst/{round_}/{i}"
    finally:
        for c in clients:
            c.close()
    # Each burst finds the previous burst's connections idle in the pool.
    assert len(upstream_conns(upstream)) <= k


def test_responses_return_connections_before_new_requests_take_them(sluice_factory, upstream):
    """Responses and new requests arrive in the same loop turn, the requests first: the
    pool must get the responses' connections back before the requests look in it, or each
    request connects anew and the full pool closes the returning connections."""
    n = 12  # both sets fit one poll: libevent's epoll backend starts with room for 32 events
    s = sluice_factory(POOL_CONFIG % dict(keepalive=n), upstream=upstream)
    slow = [Client(s.port) for _ in range(n)]
    fresh = [Client(s.port) for _ in range(n)]
    try:
        # Accepted by sluice before it is stopped: one request each, one at a time.
        for i, c in enumerate(fresh):
            assert c.exchange(request("GET", f"/warm/{i}")).status == 200
        for i, c in enumerate(slow):
            c.send(request("GET", f"/sleep/1500?i={i}"))
        upstream.wait_log(2 * n)
        assert len(upstream_conns(upstream, "/sleep/")) == n
        s.signal(signal.SIGSTOP)
        try:
            wait_until(lambda: stopped(s.pid), what="sluice to stop")
            for i, c in enumerate(fresh):
                c.send(request("GET", f"/fresh/{i}"))
            wait_until(lambda: sockets_with_unread_bytes(upstream.port) >= n, timeout=10,
                       what="the slow responses to reach sluice")
        finally:
            s.signal(signal.SIGCONT)
        for i, c in enumerate(slow):
            assert c.read_response().status == 200
        for i, c in enumerate(fresh):
            assert c.read_response().json()["target"] == f"/fresh/{i}"
    finally:
        for c in slow + fresh:
            c.close()
    assert len(upstream_conns(upstream, "/fresh/") - upstream_conns(upstream, "/sleep/")) == 0
    assert len(upstream_conns(upstream)) == n
