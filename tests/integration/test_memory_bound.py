"""memory.max_bytes: a flood of distinct keys never takes sluice's resident memory past the
bound plus a constant (README, "Memory"). Resident memory is only meaningful without the
sanitizers' shadow memory and redzones, so this test runs a release build of the same tree
(SLUICE_RELEASE_DIR, else ./build-release, built here when missing)."""
import os
import re
import socket
import subprocess

import pytest

from conftest import metrics
from harness_procs import ROOT, Sluice
from limits_support import config

MAX_BYTES = 4 << 20
# What the store may hold past max_bytes (spare chunks, the allocator's free lists: README
# states 1 MiB), and 1 MiB for what else the process may grow by under this load.
CONSTANT = 2 << 20
KEYS = 200_000  # about three times what fits
BATCH = 2000


@pytest.fixture(scope="module")
def release_binary():
    build = os.environ.get("SLUICE_RELEASE_DIR") or os.path.join(ROOT, "build-release")
    subprocess.run(["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
                    "-DSLUICE_TESTS=OFF"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", build, "-j2", "--target", "sluice"], check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.join(build, "sluice")


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


# An answer: its status, and the head up to its Content-Length and the blank line.
ANSWER = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r]*\r\n(?:[^\r]*\r\n)*?"
                    rb"[Cc]ontent-[Ll]ength: (\d+)\r\n(?:[^\r]*\r\n)*?\r\n")


def flood(port, first, count):
    """`count` requests with distinct X-Key values, pipelined BATCH at a time on one
    connection; returns the statuses."""
    statuses = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(30)
        for start in range(first, first + count, BATCH):
            n = min(BATCH, first + count - start)
            s.sendall(b"".join(b"GET / HTTP/1.1\r\nHost: x\r\nX-Key: %032d\r\n\r\n" % k
                               for k in range(start, start + n)))
            buf, pos, got = b"", 0, 0
            while got < n:
                chunk = s.recv(1 << 20)
                assert chunk, "sluice closed the connection"
                buf = buf[pos:] + chunk
                pos = 0
                while (m := ANSWER.match(buf, pos)) and len(buf) >= m.end() + int(m.group(2)):
                    statuses.append(int(m.group(1)))
                    pos = m.end() + int(m.group(2))
                    got += 1
            assert pos == len(buf), "bytes after the last answer of a batch"
    return statuses


def test_flood_of_distinct_keys_stays_within_max_bytes(release_binary, upstream, tmp_path):
    # Every request is decided by both limits: `per_key` keeps a state for each X-Key, and
    # `everyone` answers 429 from the second request on, so the flood never waits for the
    # upstream.
    routes = """\
  - name: api
    match:
      path_prefix: "/"
    limits:
      - name: per_key
        algorithm: token_bucket
        rate: 10/1h
        key: "header:X-Key"
      - name: everyone
        algorithm: fixed_window
        rate: 1/1h
        key: route
"""
    yaml_text = config(routes, workers=2,
                       extra=f"memory:\n  max_keys: 10000000\n  max_bytes: {MAX_BYTES}\n")
    s = Sluice(release_binary, str(tmp_path), 0, yaml_text, upstream.url, True, None)
    s.start()
    try:
        # Warm up: connections, buffers and the first chunks of every stripe.
        assert flood(s.port, 0, BATCH).count(429) == BATCH - 1
        base = status_kib(s.pid, "VmRSS")
        statuses = flood(s.port, BATCH, KEYS)
        assert statuses == [429] * KEYS
        peak = status_kib(s.pid, "VmHWM")
        m = {name: value for name, _, value in metrics(s.admin_port)}
        keys = m["sluice_memory_keys"]
        evictions = m["sluice_memory_evictions_total"]
    finally:
        s.stop()
    # The store filled to its bound and evicted the rest ...
    assert keys * 49 <= MAX_BYTES
    assert keys >= 0.75 * MAX_BYTES / 56
    assert evictions >= KEYS + BATCH - keys
    # ... and resident memory followed the bound, not the keys seen.
    grown = (peak - base) * 1024
    assert grown <= MAX_BYTES + CONSTANT, f"grew by {grown / 1048576:.2f} MiB"
