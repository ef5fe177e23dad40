"""client.underscores_in_headers: header names with "_", which many application stacks fold
into "-" (CGI and WSGI read X_Api_Key as X-Api-Key). Under drop (the default) such a field
is invisible to sluice and never forwarded, under reject the request is answered 400, and
under allow it is forwarded unchanged."""
import shutil
import subprocess

import pytest

from conftest import Client, get, request
from limits_support import config

ROUTES = """\
  - name: api
    match:
      path_prefix: "/"
    limits:
      - name: per_key
        algorithm: fixed_window
        rate: 1/1h
        key: "header:X-Api-Key"
"""

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def start(sluice_factory, upstream, mode):
    extra = f"client:\n  underscores_in_headers: {mode}\n" if mode else ""
    s = sluice_factory(config(ROUTES, extra=extra), upstream=upstream)
    s.upstream = upstream
    return s


def names(entry):
    return [n for n, _ in entry["headers"]]


def underscore_count(s, action):
    return s.metrics().value("sluice_headers_underscore_total", action=action)


def test_limit_applies_to_the_real_header(sluice_factory, upstream):
    # The limit under test works: the second request with the key is denied.
    s = start(sluice_factory, upstream, None)
    with Client(s.port) as c:
        assert c.exchange(request("GET", "/", [("X-Api-Key", "victim-key")])).status == 200
        assert c.exchange(request("GET", "/", [("X-Api-Key", "victim-key")])).status == 429


@pytest.mark.parametrize("mode", [None, "drop"])
def test_drop_never_forwards_the_folded_key(sluice_factory, upstream, mode):
    s = start(sluice_factory, upstream, mode)
    with Client(s.port) as c:
        for _ in range(3):
            resp = c.exchange(request("GET", "/", [("X_Api_Key", "victim-key"),
                                                   ("X_Forwarded_For", "203.0.113.9")]))
            assert resp.status == 200, resp
            # The limit did not apply (no X-Api-Key), and the application saw no key either.
            headers = resp.json()["headers"]
            assert "X_Api_Key" not in names(resp.json()), headers
            assert "X_Forwarded_For" not in names(resp.json()), headers
            assert [v for n, v in headers if n == "X-Forwarded-For"] == ["127.0.0.1"]
    assert underscore_count(s, "drop") == 6
    assert underscore_count(s, "reject") == 0


def test_exposition_with_the_counter_passes_promtool(sluice_factory, upstream):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    s = start(sluice_factory, upstream, "drop")
    with Client(s.port) as c:
        assert c.exchange(request("GET", "/", [("X_Api_Key", "k")])).status == 200
    text = get(s.admin_port, "/metrics").body
    assert b'sluice_headers_underscore_total{action="drop"} 1\n' in text
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_reject_answers_400(sluice_factory, upstream):
    s = start(sluice_factory, upstream, "reject")
    with Client(s.port) as c:
        resp = c.exchange(request("GET", "/", [("X_Api_Key", "victim-key")]))
        assert resp.status == 400, resp
        assert resp.json() == {"error": "bad_request"}
        assert "close" in resp.tokens("connection")
        assert c.closed_by_peer()
    with Client(s.port) as c:
        assert c.exchange(request("GET", "/ok", [("X-Api-Key", "k")])).status == 200
    assert [e["target"] for e in upstream.log()] == ["/ok"]
    assert underscore_count(s, "reject") == 1


def test_allow_forwards_unchanged(sluice_factory, upstream):
    s = start(sluice_factory, upstream, "allow")
    with Client(s.port) as c:
        for _ in range(2):
            resp = c.exchange(request("GET", "/", [("X_Api_Key", "victim-key")]))
            assert resp.status == 200, resp
            assert ["X_Api_Key", "victim-key"] in resp.json()["headers"]
    assert underscore_count(s, "allow") == 2
    assert underscore_count(s, "drop") == 0


def framing_attack():
    body = b"0\r\n\r\n" + SMUGGLED
    return request("POST", "/upload", [("Transfer_Encoding", "chunked"),
                                       ("Content-Length", str(len(body)))]) + body


@pytest.mark.parametrize("mode", ["drop", "allow"])
def test_transfer_encoding_with_underscore_is_not_framing(sluice_factory, upstream, mode):
    s = start(sluice_factory, upstream, mode)
    with Client(s.port) as c:
        resp = c.exchange(framing_attack())
        assert resp.status == 200, resp
        assert c.exchange(request("GET", "/after")).status == 200
    log = upstream.log()
    # sluice framed the body by its Content-Length: one request, its whole body, then the
    # next one; the smuggled request is body bytes.
    assert [e["target"] for e in log] == ["/upload", "/after"]
    assert log[0]["body_length"] == len(b"0\r\n\r\n" + SMUGGLED)
    assert ("Transfer_Encoding" in names(log[0])) == (mode == "allow"), names(log[0])


def test_transfer_encoding_with_underscore_rejected(sluice_factory, upstream):
    s = start(sluice_factory, upstream, "reject")
    with Client(s.port) as c:
        resp = c.exchange(framing_attack())
        assert resp.status == 400, resp
        assert c.closed_by_peer()
    assert upstream.log() == []
