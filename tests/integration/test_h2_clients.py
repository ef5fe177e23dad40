"""Real HTTP/2 clients against sluice (SPEC section 10): curl --http2-prior-knowledge,
nghttp (prior knowledge on http://) and h2load, also against a limit."""
import hashlib
import json
import re
import shutil
import subprocess

import pytest

from conftest import wait_until
from h2_support import MIB, h2_config


def need(tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (scripts/install-deps.sh --test)")


def run(args, timeout=60):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


LIMITED = """\
  - name: limited
    match:
      path_prefix: "/limited"
    limits:
      - name: per_route
        algorithm: fixed_window
        rate: 25/1h
        key: route
  - name: all
    match:
      path_prefix: "/"
    limits: []
"""


# ---------------------------------------------------------------- curl

def test_curl_prior_knowledge_get(sluice_factory, upstream):
    need("curl")
    s = sluice_factory(h2_config(), upstream=upstream)
    out = run(["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null",
               "-w", "%{http_version} %{http_code}\n", f"http://127.0.0.1:{s.port}/curl?x=1"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HTTP/2 200"), out.stdout
    assert out.stdout.rstrip().endswith("2 200"), out.stdout
    entry = upstream.log()[0]
    assert entry["target"] == "/curl?x=1" and entry["version"] == "HTTP/1.1", entry
    lines = [json.loads(l) for l in s.wait_access_log(1)]
    assert lines[0]["proto"] == "2" and lines[0]["path"] == "/curl?x=1", lines


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "no-length"])
def test_curl_prior_knowledge_post(sluice_factory, upstream, tmp_path, chunked):
    need("curl")
    s = sluice_factory(h2_config(), upstream=upstream)
    body = bytes(range(251)) * (MIB // 251 + 1)
    path = tmp_path / "body.bin"
    path.write_bytes(body)
    args = ["curl", "-sS", "--http2-prior-knowledge", "--data-binary", f"@{path}",
            "-H", "Content-Type: application/octet-stream"]
    if chunked:
        # curl sends no content-length when asked for chunked; on HTTP/2 it sends none.
        args += ["-H", "Transfer-Encoding: chunked"]
    out = run(args + [f"http://127.0.0.1:{s.port}/upload"])
    assert out.returncode == 0, out.stderr
    echo = json.loads(out.stdout)
    assert echo["method"] == "POST"
    assert echo["body_length"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_curl_large_download(sluice_factory, upstream, tmp_path):
    need("curl")
    s = sluice_factory(h2_config(), upstream=upstream)
    n = 8 * MIB + 7
    dest = tmp_path / "down.bin"
    out = run(["curl", "-sS", "--http2-prior-knowledge", "-o", str(dest), "-D", "-",
               f"http://127.0.0.1:{s.port}/stream/{n}"])
    assert out.returncode == 0, out.stderr
    want = re.search(r"x-body-sha256: (\w+)", out.stdout).group(1)
    data = dest.read_bytes()
    assert len(data) == n and hashlib.sha256(data).hexdigest() == want


# ---------------------------------------------------------------- nghttp

def test_nghttp_prior_knowledge(sluice_factory, upstream):
    need("nghttp")
    s = sluice_factory(h2_config(), upstream=upstream)
    base = f"http://127.0.0.1:{s.port}"
    out = run(["nghttp", "-v", "-n", f"{base}/ng/1", f"{base}/ng/2", f"{base}/ng/3"])
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "HTTP Upgrade" not in text, text  # straight to HTTP/2, no h2c upgrade
    assert "recv SETTINGS frame" in text
    # Three streams, each answered, on the one connection (one SETTINGS from sluice).
    assert len(re.findall(r"recv \(stream_id=\d+\) :status: 200", text)) == 3, text
    assert len(re.findall(r"recv SETTINGS frame <length=\d+, flags=0x00", text)) == 1, text
    assert sorted(e["target"] for e in upstream.log()) == ["/ng/1", "/ng/2", "/ng/3"]


def test_nghttp_post(sluice_factory, upstream, tmp_path):
    need("nghttp")
    s = sluice_factory(h2_config(), upstream=upstream)
    body = b"nghttp body " * 10000
    path = tmp_path / "body.txt"
    path.write_bytes(body)
    out = run(["nghttp", "-d", str(path), f"http://127.0.0.1:{s.port}/ng-upload"])
    assert out.returncode == 0, out.stdout + out.stderr
    echo = json.loads(out.stdout)
    assert echo["method"] == "POST" and echo["body_length"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


# ---------------------------------------------------------------- h2load

def h2load(port, path, n, c, m, timeout=180):
    need("h2load")
    out = run(["h2load", "-n", str(n), "-c", str(c), "-m", str(m),
               f"http://127.0.0.1:{port}{path}"], timeout)
    text = out.stdout + out.stderr
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    assert req and codes, text
    keys = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    result = dict(zip(keys, map(int, req.groups())))
    result.update(zip(("2xx", "3xx", "4xx", "5xx"), map(int, codes.groups())))
    result["text"] = text
    return result


def test_h2load_all_requests_succeed(sluice_factory, upstream):
    need("h2load")
    s = sluice_factory(h2_config(), upstream=upstream)
    r = h2load(s.port, "/h2load", 2000, 4, 10)
    assert (r["succeeded"], r["2xx"], r["failed"], r["errored"]) == (2000, 2000, 0, 0), r["text"]

    def counted():
        m = s.metrics()
        return m if m.value("sluice_requests_total", route="all") >= 2000 else None
    m = wait_until(counted, 10, 0.1, "2000 requests to be counted")
    assert m.value("sluice_http2_streams_total") == 2000
    assert m.value("sluice_responses_total", route="all", code="200") == 2000
    assert upstream.count() == 2000


def test_h2load_against_a_limit_gets_exactly_the_limit(sluice_factory, upstream):
    need("h2load")
    s = sluice_factory(h2_config(routes=LIMITED), upstream=upstream)
    r = h2load(s.port, "/limited/x", 200, 4, 10)
    assert r["done"] == 200, r["text"]
    assert (r["2xx"], r["4xx"]) == (25, 175), r["text"]
    assert upstream.count() == 25
    m = s.metrics()
    assert m.value("sluice_requests_total", route="limited", decision="allowed") == 25
    assert m.value("sluice_requests_total", route="limited", decision="limited") == 175
