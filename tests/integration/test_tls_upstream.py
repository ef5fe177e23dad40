"""Upstreams over TLS (SPEC section 11): `https://` and `h2://` to a real nginx with TLS,
the chain and name verified by default, SNI, a client certificate, a failed handshake
answered 502 and counted as kind="tls", and new connections resuming the session the
previous one was given. nginx answers with what it saw: the protocol, whether the session
was resumed, the client certificate's subject and the X-Forwarded-Proto it received."""
import os
import shutil
import subprocess

import pytest

from conftest import get, pick_port, wait_until
from tls_certs import certs  # noqa: F401 (a fixture)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

NGINX_CONF = """\
daemon off;
master_process off;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    ssl_certificate %(cert)s;
    ssl_certificate_key %(key)s;
    ssl_session_tickets on;
    %(client)s
    server {
        listen 127.0.0.1:%(port)d ssl http2;
        location / {
            return 200 "proto=$server_protocol|reused=$ssl_session_reused|sni=$ssl_server_name|client=$ssl_client_s_dn|fwd=$http_x_forwarded_proto\\n";
        }
    }
}
"""


@pytest.fixture
def nginx_tls(tmp_path, certs):
    procs = []

    def start(client_ca=False):
        d = tmp_path / f"nginx{len(procs)}"
        d.mkdir()
        port = pick_port()
        client = (f"ssl_client_certificate {certs.ca}; ssl_verify_client optional;"
                  if client_ca else "")
        (d / "nginx.conf").write_text(NGINX_CONF % dict(
            dir=d, cert=certs.path("server", "pem"), key=certs.path("server", "key"),
            port=port, client=client))
        p = subprocess.Popen([NGINX, "-c", str(d / "nginx.conf"), "-p", str(d)],
                             stdout=subprocess.DEVNULL, stderr=open(d / "stderr", "w"))
        procs.append(p)
        wait_until(lambda: _listening(port), 10, 0.05, "nginx with TLS")
        return port
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed")
    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def _listening(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


CONFIG = """\
listen: "{listen}"
workers: 1
admin:
  listen: "{admin}"
upstream:
  url: "%(url)s"
  connect_timeout: 2s
  timeout: 5s
  keepalive: %(keepalive)d
%(tls)s
access_log: "{access_log}"
routes:
  - name: all
    match:
      path_prefix: "/"
    limits: []
"""


def config(url, tls="", keepalive=16):
    return CONFIG % dict(url=url, tls=tls, keepalive=keepalive)


def tls_block(**kw):
    return "  tls:\n" + "".join(f"    {k}: {v}\n" for k, v in kw.items())


def answer(s, target="/"):
    r = get(s.port, target)
    return r.status, dict(kv.split("=", 1) for kv in r.body.decode().strip().split("|")
                          if "=" in kv)


def test_https_upstream_verified_against_its_ca(sluice_factory, nginx_tls, certs):
    port = nginx_tls()
    s = sluice_factory(config(f"https://localhost:{port}", tls_block(ca=certs.ca)))
    status, seen = answer(s)
    assert status == 200
    assert seen["proto"] == "HTTP/1.1" and seen["sni"] == "localhost" and seen["fwd"] == "http"
    # By address: no SNI is sent, and the certificate must name the address.
    s2 = sluice_factory(config(f"https://127.0.0.1:{port}", tls_block(ca=certs.ca)))
    status, seen = answer(s2)
    assert status == 200 and seen["sni"] == ""


def test_h2_upstream_speaks_http2_over_tls(sluice_factory, nginx_tls, certs):
    port = nginx_tls()
    s = sluice_factory(config(f"h2://localhost:{port}", tls_block(ca=certs.ca)))
    for _ in range(3):
        status, seen = answer(s)
        assert status == 200 and seen["proto"] == "HTTP/2.0", seen


def test_an_unverified_upstream_is_a_502_counted_as_tls(sluice_factory, nginx_tls, certs):
    port = nginx_tls()
    # The system's trust store does not hold the test CA.
    s = sluice_factory(config(f"https://localhost:{port}"))
    assert get(s.port, "/").status == 502
    assert s.metrics().value("sluice_upstream_errors_total", kind="tls") == 1
    assert "TLS handshake failed" in s.stderr_text()
    # A name the certificate does not carry fails too, over either protocol.
    for scheme in ("https", "h2"):
        s2 = sluice_factory(config(f"{scheme}://localhost:{port}",
                                   tls_block(ca=certs.ca, server_name="elsewhere.test")))
        assert get(s2.port, "/").status == 502
        assert s2.metrics().value("sluice_upstream_errors_total", kind="tls") >= 1
    # verify: false trusts whatever answers.
    s3 = sluice_factory(config(f"https://localhost:{port}", tls_block(verify="false")))
    assert answer(s3)[0] == 200


def test_new_connections_resume_the_session(sluice_factory, nginx_tls, certs):
    port = nginx_tls()
    # No keep-alive: every request is a new connection to the upstream.
    s = sluice_factory(config(f"https://localhost:{port}", tls_block(ca=certs.ca),
                              keepalive=0))
    reused = [answer(s)[1]["reused"] for _ in range(4)]
    assert reused[0] == "." and reused[1:] == ["r", "r", "r"], reused


def test_client_certificate_to_the_upstream(sluice_factory, nginx_tls, certs):
    port = nginx_tls(client_ca=True)
    s = sluice_factory(config(f"https://localhost:{port}", tls_block(
        ca=certs.ca, cert=certs.path("client", "pem"), key=certs.path("client", "key"))))
    status, seen = answer(s)
    assert status == 200 and seen["client"] == "CN=client one", seen
    plain = sluice_factory(config(f"https://localhost:{port}", tls_block(ca=certs.ca)))
    assert answer(plain)[1]["client"] == ""


def test_upstream_tls_configuration_errors(sluice_binary, tmp_path, certs):
    def check(text):
        path = tmp_path / "c.yaml"
        path.write_text(text.replace("{listen}", "127.0.0.1:18080").replace("{admin}", "off")
                        .replace("{access_log}", "off"))
        return subprocess.run([sluice_binary, "-t", "-c", str(path)], capture_output=True,
                              text=True, timeout=20)
    r = check(config("http://127.0.0.1:3000", tls_block(ca=certs.ca)))
    assert r.returncode != 0 and "upstream.tls" in r.stderr and "https://" in r.stderr, r.stderr
    missing = str(tmp_path / "nope.pem")
    r = check(config("https://127.0.0.1:3000", tls_block(ca=missing)))
    assert r.returncode != 0 and missing in r.stderr, r.stderr
    r = check(config("h2://api.example.com", ""))
    assert r.returncode == 0, r.stderr
