"""Redis Cluster and Sentinel processes for the integration tests: a cluster of masters made
with redis-cli --cluster create, and a master with a replica watched by redis-sentinel."""
import os
import queue
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import Client, request
from redis_support import redis_config

from harness_http import READY_TIMEOUT, pick_port, wait_until
from harness_procs import REDIS_TLS, Redis, redis_connect, resp_command, _resp_read


def redis_cli_tls():
    """redis-cli's options to reach the tests' servers under SLUICE_REDIS_TLS."""
    if not REDIS_TLS:
        return []
    from tls_support import tls_files
    t = tls_files()
    return ["--tls", "--cacert", t.ca, "--cert", t.client_cert, "--key", t.client_key]


def sentinel_listen(port):
    """The lines of a sentinel's configuration that make it listen on `port`."""
    if not REDIS_TLS:
        return f"port {port}\n"
    from tls_support import tls_files
    t = tls_files()
    return (f"port 0\ntls-port {port}\ntls-cert-file {t.server_cert}\n"
            f"tls-key-file {t.server_key}\ntls-ca-cert-file {t.ca}\n"
            "tls-auth-clients no\ntls-replication yes\n")


class ClusterNode(Redis):
    """One redis-server --cluster-enabled yes; the cluster bus gets its own free port (the
    default, port + 10000, may be past 65535 for an ephemeral port)."""

    def __init__(self, tmp_dir):
        port = pick_port()
        super().__init__(tmp_dir, ["--cluster-enabled", "yes", "--cluster-port", str(pick_port()),
                                   "--cluster-config-file", f"nodes-{port}.conf",
                                   "--cluster-node-timeout", "2000",
                                   # A dead master without a replica leaves its slots
                                   # unserved; the others keep serving theirs.
                                   "--cluster-require-full-coverage", "no"], port)

    def node_id(self):
        return self.command("CLUSTER", "MYID")

    def kill(self):
        """SIGKILL: the node vanishes without a goodbye, as a crashed host would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Cluster:
    """`n` masters, no replicas, every slot assigned. .nodes, .seeds ("host:port" list)."""

    def __init__(self, tmp_dir, n=3):
        self.nodes = [ClusterNode(tmp_dir).start() for _ in range(n)]
        addrs = [f"127.0.0.1:{r.port}" for r in self.nodes]
        out = subprocess.run(["redis-cli", *redis_cli_tls(), "--cluster", "create", *addrs,
                              "--cluster-replicas", "0", "--cluster-yes"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed: {out.stdout}{out.stderr}")
        wait_until(self._ok, READY_TIMEOUT * 2, 0.05, "the cluster to be ok on every node")
        self.seeds = addrs

    def _ok(self):
        for r in self.nodes:
            info = r.command("CLUSTER", "INFO")
            if "cluster_state:ok" not in info or "cluster_slots_assigned:16384" not in info:
                return False
        return True

    def owner(self, slot):
        """The node serving `slot` now, by the first node's view."""
        for start, end, master, *_ in self.nodes[0].command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(r for r in self.nodes if r.port == int(master[1]))
        return None

    def slot(self, key):
        return self.nodes[0].command("CLUSTER", "KEYSLOT", key)

    def command(self, key, *args):
        """Runs a command on the master of `key`'s slot."""
        return self.owner(self.slot(key)).command(*args)

    def stop(self):
        for r in self.nodes:
            r.stop()


class Sentinels:
    """A master, one replica and three redis-sentinel processes watching them as `name`."""

    def __init__(self, tmp_dir, name="mymaster", down_after_ms=1000):
        self.name = name
        self.master = Redis(tmp_dir).start()
        self.replica = Redis(tmp_dir, ["--replicaof", "127.0.0.1", str(self.master.port)]).start()
        wait_until(lambda: "master_link_status:up" in self.replica.command("INFO", "replication"),
                   READY_TIMEOUT, 0.05, "the replica to sync")
        self.procs, self.ports = [], []
        for i in range(3):
            port = pick_port()
            conf = os.path.join(tmp_dir, f"sentinel-{port}.conf")
            with open(conf, "w") as f:
                f.write(sentinel_listen(port) + f"bind 127.0.0.1\ndir {tmp_dir}\n"
                        f"sentinel monitor {name} 127.0.0.1 {self.master.port} 2\n"
                        f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
                        f"sentinel failover-timeout {name} 10000\n")
            self.procs.append(subprocess.Popen(
                ["redis-sentinel", conf], stdout=open(conf + ".log", "ab"),
                stderr=subprocess.STDOUT))
            self.ports.append(port)
        for port in self.ports:
            wait_until(lambda: self._knows_replica(port), READY_TIMEOUT * 3, 0.1,
                       f"sentinel {port} to see the master and replica")
        self.addresses = [f"127.0.0.1:{p}" for p in self.ports]

    def sentinel(self, i, *args, timeout=2):
        with redis_connect(self.ports[i], timeout) as s:
            s.sendall(resp_command(*args))
            return _resp_read(s.makefile("rb"))

    def _knows_replica(self, port):
        try:
            i = self.ports.index(port)
            replicas = self.sentinel(i, "SENTINEL", "REPLICAS", self.name)
            sentinels = self.sentinel(i, "SENTINEL", "SENTINELS", self.name)
        except (OSError, RuntimeError):
            return False
        return len(replicas) >= 1 and len(sentinels) >= 2

    def master_addr(self, i=0):
        host, port = self.sentinel(i, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return host, int(port)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.replica.stop()
        self.master.stop()


def cluster_config(seeds, routes, **kw):
    """redis_config() with redis.cluster: [seeds] in place of redis.url."""
    text = redis_config("redis://unused", routes, **kw)
    return re.sub(r'  url: "rediss?://unused"', "  cluster: [%s]" % ", ".join(
        f'"{a}"' for a in seeds), text)


def sentinel_config(master, addresses, routes, **kw):
    """redis_config() with redis.sentinel in place of redis.url."""
    text = redis_config("redis://unused", routes, **kw)
    return re.sub(r'  url: "rediss?://unused"', "  sentinel: {master: %s, addresses: [%s]}" % (
        master, ", ".join(f'"{a}"' for a in addresses)), text)


def tags_per_node(cluster, per_node, prefix="t"):
    """`per_node` hash tags for each node of `cluster`: {node: [tag, ...]}. A key value
    "{tag}x" lands in the slot of `tag` whatever the key prefix, route and limit names."""
    out = {id(r): [] for r in cluster.nodes}
    slots = dict((start, (end, int(m[1]))) for start, end, m, *_ in
                 cluster.nodes[0].command("CLUSTER", "SLOTS"))
    by_port = {r.port: r for r in cluster.nodes}
    i = 0
    while any(len(v) < per_node for v in out.values()):
        tag = f"{prefix}{i}"
        i += 1
        slot = cluster.slot(tag)
        for start, (end, port) in slots.items():
            if start <= slot <= end and len(out[id(by_port[port])]) < per_node:
                out[id(by_port[port])].append(tag)
    return {r: out[id(r)] for r in cluster.nodes}


class Traffic:
    """`threads` keep-alive clients spread over `ports`, each sending GET /route with the
    X-Key header of the next job from a shared queue of (route, key). Records per job the
    statuses and the slowest request."""

    def __init__(self, ports, threads=48, timeout=10.0):
        self.ports, self.threads, self.timeout = ports, threads, timeout
        self.statuses = {}
        self.errors = []
        self.max_latency = 0.0
        self.lock = threading.Lock()

    def run(self, jobs, stop=None):
        """Sends every job of `jobs` (an iterable), or keeps cycling it until `stop` is set."""
        q = queue.Queue()
        for j in jobs:
            q.put(j)

        def work(port):
            c = None
            while True:
                try:
                    job = q.get_nowait()
                except queue.Empty:
                    break
                if stop is not None:
                    if stop.is_set():
                        break
                    q.put(job)
                route, key = job
                t0 = time.monotonic()
                try:
                    if c is None:
                        c = Client(port, timeout=self.timeout)
                    status = c.exchange(request("GET", f"/{route}", [("X-Key", key)])).status
                except (OSError, ValueError, EOFError) as e:
                    with self.lock:
                        self.errors.append(repr(e))
                    if c is not None:
                        c.close()
                    c = None
                    continue
                dt = time.monotonic() - t0
                with self.lock:
                    self.statuses.setdefault(job, []).append(status)
                    self.max_latency = max(self.max_latency, dt)
            if c is not None:
                c.close()

        workers = [threading.Thread(target=work, args=(self.ports[i % len(self.ports)],))
                   for i in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    def count(self, job, status):
        return sum(1 for s in self.statuses.get(job, []) if s == status)

    def all_statuses(self):
        return [s for v in self.statuses.values() for s in v]


def need_cluster_tools():
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def metric_sum(instances, name, **labels):
    return sum(s.metrics().value(name, **labels) for s in instances)


def wait_log(s, pattern, timeout=10.0):
    from harness_http import wait_until
    return wait_until(lambda: re.search(pattern, s.stderr_text()), timeout, 0.05,
                      f"{pattern!r} in {s.name}'s log")
