"""Upgrade by allow-list (SPEC section 7): only client.upgrades are tunnelled after 101;
h2c never is, so an application that speaks HTTP/2 after the switch cannot be used to
carry requests past the limits ("h2c smuggling"). CONNECT is answered 405."""
import shutil
import subprocess

import pytest

from conftest import Client, metrics, request

# What a smuggling client sends with its upgrade (an empty SETTINGS payload is valid too).
SETTINGS = "AAMAAABkAARAAAAAAAIAAAAA"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

CONFIG = """\
listen: "{listen}"
workers: 2
admin:
  listen: "{admin}"
upstream:
  url: "{upstream}"
access_log: "{access_log}"
%(client)s
routes:
  - name: all
    match:
      path_prefix: "/"
    limits:
      - name: per_client
        algorithm: fixed_window
        rate: 3/1h
        key: "header:X-Client"
"""

VARIANTS = {
    # nghttp -u and h2csmuggler send this
    "upgrade_h2c": ("GET", [("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings"),
                            ("HTTP2-Settings", SETTINGS)], b""),
    # HTTP2-Settings not named by Connection: it would otherwise pass as an end-to-end field
    "settings_not_named": ("GET", [("Upgrade", "h2c"), ("Connection", "Upgrade"),
                                   ("HTTP2-Settings", SETTINGS)], b""),
    "uppercase": ("GET", [("Upgrade", "H2C"), ("Connection", "Upgrade, HTTP2-Settings"),
                          ("HTTP2-Settings", SETTINGS)], b""),
    # an allowed protocol beside h2c: only the allowed one goes up
    "websocket_and_h2c": ("GET", [("Upgrade", "websocket, h2c"), ("Connection", "Upgrade"),
                                  ("HTTP2-Settings", SETTINGS)], b""),
    "post_with_body": ("POST", [("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings"),
                                ("HTTP2-Settings", SETTINGS)], b"x" * 1000),
}


@pytest.fixture
def h2c_app(upstream_factory):
    return upstream_factory(script="h2c_upstream.py")


def start(sluice_factory, app, client=""):
    return sluice_factory(CONFIG % {"client": client}, upstream=app)


def allowed_and_limited(admin_port):
    m = metrics(admin_port)
    return (m.value("sluice_requests_total", route="all", decision="allowed"),
            m.value("sluice_requests_total", route="all", decision="limited"))


def assert_no_h2c_reached(app):
    for entry in app.log():
        names = {k.lower() for k, _ in entry["headers"]}
        upgrade = ",".join(v for k, v in entry["headers"] if k.lower() == "upgrade").lower()
        assert entry["proto"] == "1.1", entry
        assert "http2-settings" not in names, entry
        assert "h2c" not in upgrade, entry


def test_the_application_does_upgrade_when_reached_directly(h2c_app):
    # The test application is a real smuggling target: without sluice it switches.
    with Client(h2c_app.port) as c:
        c.send(request("GET", "/direct", VARIANTS["upgrade_h2c"][1]))
        head = c.read_head()
        assert head.status == 101, head
        assert head.header("upgrade").lower() == "h2c"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_h2c_upgrade_is_served_as_http1_and_counted(sluice_factory, h2c_app, variant):
    s = start(sluice_factory, h2c_app)
    method, headers, body = VARIANTS[variant]
    who = [("X-Client", variant)]
    with Client(s.port) as c:
        resp = c.exchange(request(method, "/smuggle", headers + who, body=body))
        assert resp.status == 200, resp
        assert resp.body == b"http/1.1"
        assert "upgrade" not in resp.tokens("connection")
        # Further requests on this connection are HTTP/1.1, each one seen by the limit.
        assert c.exchange(request("GET", "/next", who)).status == 200
        assert c.exchange(request("GET", "/next", who)).status == 200
        assert c.exchange(request("GET", "/next", who)).status == 429
        # And an HTTP/2 preface sent anyway is not HTTP/1.1: it never reaches the app.
        c.send(PREFACE)
        assert c.read_response().status in (400, 505)
        assert c.closed_by_peer()
    assert allowed_and_limited(s.admin_port) == (3, 1)
    log = h2c_app.log()
    assert [e["path"] for e in log] == ["/smuggle", "/next", "/next"], log
    assert log[0]["method"] == method and log[0]["body_length"] == len(body)
    assert_no_h2c_reached(h2c_app)
    upgrade = [v for k, v in log[0]["headers"] if k.lower() == "upgrade"]
    assert upgrade == (["websocket"] if variant == "websocket_and_h2c" else []), log[0]


@pytest.mark.skipif(shutil.which("nghttp") is None, reason="nghttp (nghttp2-client) is absent")
def test_nghttp_upgrade_gets_http1_and_the_limit(sluice_factory, h2c_app):
    s = start(sluice_factory, h2c_app)
    statuses = []
    for _ in range(5):
        out = subprocess.run(["nghttp", "-u", "-v", "-H", "X-Client: nghttp",
                              f"http://127.0.0.1:{s.port}/nghttp"],
                             capture_output=True, text=True, timeout=20)
        # nghttp reports the refused upgrade; the HTTP/1.1 status line is in its trace.
        text = out.stdout + out.stderr
        statuses.append(429 if " 429 " in text else 200 if " 200 " in text else text)
    assert statuses == [200, 200, 200, 429, 429], statuses
    assert allowed_and_limited(s.admin_port) == (3, 2)
    assert len(h2c_app.log()) == 3
    assert_no_h2c_reached(h2c_app)


def test_a_switch_to_h2c_is_never_tunnelled(sluice_factory, h2c_app):
    # Asked for WebSocket, the application switches to h2c anyway: sluice answers 502
    # and closes rather than relay HTTP/2 it would never count.
    s = start(sluice_factory, h2c_app)
    with Client(s.port) as c:
        resp = c.exchange(request("GET", "/force-h2c", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("X-Client", "forced")]))
        assert resp.status == 502, resp
        assert c.closed_by_peer()


def test_empty_list_serves_websocket_as_plain_http(sluice_factory, upstream):
    s = sluice_factory(CONFIG % {"client": "client:\n  upgrades: []"}, upstream=upstream)
    ws = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("X-Client", "ws"),
          ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]
    with Client(s.port) as c:
        resp = c.exchange(request("GET", "/ws", ws))
        assert resp.status == 200, resp
        seen = {k.lower() for k, _ in resp.json()["headers"]}
        assert "upgrade" not in seen
        assert c.exchange(request("GET", "/after", [("X-Client", "ws")])).status == 200


def test_listed_protocol_is_tunnelled(sluice_factory, upstream):
    # A listed name matches whatever its case and version: WebSocket/13 goes up.
    s = sluice_factory(CONFIG % {"client": "client:\n  upgrades: [WebSocket]"}, upstream=upstream)
    ws = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("X-Client", "ws"),
          ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]
    with Client(s.port) as c:
        c.send(request("GET", "/ws", ws))
        head = c.read_head()
        assert head.status == 101, head
        c.send(b"ping")
        got = []
        c._read_body(4, got.append)
        assert b"".join(got) == b"ping"
